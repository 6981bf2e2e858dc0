"""Data stages on the LLM layer: instructions, self-instruct, split, translation, ranking."""

import functools
import hashlib
import json
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from okapi_pipeline.config import llm_defaults
from okapi_pipeline.data.generation import generate_responses
from okapi_pipeline.data.instructions import load_instructions
from okapi_pipeline.data.ranking import preference_pairs, rank_shard, valid_ranking
from okapi_pipeline.data.self_instruct import RougeFilter, fetch_seed_tasks, seed_records, self_instruct, shape_reason
from okapi_pipeline.data.split import scaled_sizes, source_groups, split_instructions
from okapi_pipeline.data.translate import gather, translate_shard, translation_qa
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.llm import JsonRequest
from tests.support.fake_openai import CANARY_KEY, fake_translation, files_containing
from tests.support.workflow import REPO

PROMPTS = REPO / "prompts"


def english(n: int, prefix: str = "alpaca") -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i:05d}",
            "instruction": f"Give {i} tips for staying healthy.",
            "input": "" if i % 2 else f"Context number {i}.",
            "output": f"Eat well, sleep {i} hours.",
        }
        for i in range(n)
    ]


# ---- instructions ------------------------------------------------------------------


def test_load_instructions_from_json_array_and_jsonl(tmp_path):
    records = [
        {"instruction": "Name a colour.", "output": "Blue."},
        {"instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
    ]
    (tmp_path / "a.json").write_text(json.dumps(records))
    write_jsonl(tmp_path / "a.jsonl", records)
    for name in ("a.json", "a.jsonl"):
        assert load_instructions(str(tmp_path / name), None, tmp_path / "out.jsonl") == 2
        assert read_jsonl(tmp_path / "out.jsonl") == [
            {"id": "alpaca-00000", "instruction": "Name a colour.", "input": "", "output": "Blue."},
            {"id": "alpaca-00001", "instruction": "Add the numbers.", "input": "2, 3", "output": "5"},
        ]
    assert load_instructions(str(tmp_path / "a.json"), 1, tmp_path / "one.jsonl") == 1


def test_load_instructions_from_url(tmp_path):
    (tmp_path / "data.json").write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=tmp_path))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/data.json"
        assert load_instructions(url, None, tmp_path / "out.jsonl") == 1
    finally:
        server.shutdown()
        server.server_close()
    assert read_jsonl(tmp_path / "out.jsonl")[0]["output"] == "Hi."


def test_seed_tasks_are_fetched_only_with_the_expected_checksum(tmp_path):
    seeds = (
        json.dumps(
            {"id": "seed_task_0", "instruction": "Name a colour.", "instances": [{"input": "", "output": "Blue."}]}
        )
        + "\n"
    )
    (tmp_path / "seed_tasks.jsonl").write_text(seeds)
    good = hashlib.sha256(seeds.encode()).hexdigest()
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(SimpleHTTPRequestHandler, directory=tmp_path))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/seed_tasks.jsonl"
        fetch_seed_tasks(url, good, tmp_path / "resources" / "seeds.jsonl")
        with pytest.raises(ValueError, match="SHA-256 .* is not self_instruct.seed_tasks_sha256"):
            fetch_seed_tasks(url, "0" * 64, tmp_path / "resources" / "bad.jsonl")
    finally:
        server.shutdown()
        server.server_close()
    assert seed_records(tmp_path / "resources" / "seeds.jsonl") == [
        {"instruction": "Name a colour.", "input": "", "output": "Blue."}
    ]
    assert not (tmp_path / "resources" / "bad.jsonl").exists()


def test_a_record_without_output_is_named_by_index(tmp_path):
    write_jsonl(tmp_path / "bad.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "c"}])
    with pytest.raises(ValueError, match="record 1: 'output'"):
        load_instructions(str(tmp_path / "bad.jsonl"), None, tmp_path / "out.jsonl")


# ---- split ---------------------------------------------------------------------------


def split_paths(tmp_path, shards: dict[str, int]):
    splits = {name: str(tmp_path / f"{name}.jsonl") for name in shards}
    shard_paths = {name: [str(tmp_path / name / f"{i:04d}.jsonl") for i in range(n)] for name, n in shards.items()}
    return splits, shard_paths


PAPER_PLAN = {
    "sft": {"sources": ["alpaca"], "size": 20},
    "rm": {"sources": ["self_instruct"], "size": 10},
    "ppo": {"sources": ["self_instruct"], "size": 15},
}


POOLED_PLAN = {
    name: {"sources": ["alpaca", "self_instruct"], "size": size}
    for name, size in {"sft": 32, "rm": 24, "ppo": 24}.items()
}


def write_sources(tmp_path, alpaca: int, self_instruct: int) -> dict:
    write_jsonl(tmp_path / "a.jsonl", english(alpaca))
    write_jsonl(tmp_path / "b.jsonl", english(self_instruct, "selfinstruct"))
    return {"alpaca": tmp_path / "a.jsonl", "self_instruct": tmp_path / "b.jsonl"}


def test_sft_takes_only_alpaca_records_and_rm_ppo_only_self_instruct(tmp_path):
    sources = write_sources(tmp_path, 30, 25)
    splits, shards = split_paths(tmp_path, {"sft": 2, "rm": 1, "ppo": 2})
    taken = split_instructions(sources, PAPER_PLAN, seed=0, items_per_shard=10, split_paths=splits, shard_paths=shards)
    assert taken == {"sft": 20, "rm": 10, "ppo": 15}
    assert all(r["id"].startswith("alpaca-") for r in read_jsonl(splits["sft"]))
    assert all(r["id"].startswith("selfinstruct-") for name in ("rm", "ppo") for r in read_jsonl(splits[name]))
    ids = [r["id"] for name in splits for r in read_jsonl(splits[name])]
    assert len(ids) == len(set(ids)) == 45
    assert [len(read_jsonl(p)) for p in shards["ppo"]] == [10, 5]
    assert read_jsonl(splits["sft"]) == read_jsonl(shards["sft"][0]) + read_jsonl(shards["sft"][1])


def test_a_short_source_scales_down_only_its_own_splits(tmp_path):
    sources = write_sources(tmp_path, 30, 10)  # rm + ppo want 25 self-instruct records
    splits, shards = split_paths(tmp_path, {"sft": 2, "rm": 1, "ppo": 2})
    taken = split_instructions(sources, PAPER_PLAN, seed=0, items_per_shard=10, split_paths=splits, shard_paths=shards)
    assert taken == {"sft": 20, "rm": 4, "ppo": 6}


def test_pooled_split_scales_down_proportionally_with_empty_trailing_shards(tmp_path):
    sources = write_sources(tmp_path, 25, 15)
    splits, shards = split_paths(tmp_path, {"sft": 4, "rm": 3, "ppo": 3})
    taken = split_instructions(sources, POOLED_PLAN, seed=1, items_per_shard=8, split_paths=splits, shard_paths=shards)
    assert taken == {"sft": 16, "rm": 12, "ppo": 12}
    assert {r["id"].split("-")[0] for r in read_jsonl(splits["sft"])} == {"alpaca", "selfinstruct"}
    assert [len(read_jsonl(p)) for p in shards["sft"]] == [8, 8, 0, 0]
    assert scaled_sizes({"sft": 52, "rm": 42, "ppo": 64}, 100) == {"sft": 33, "rm": 27, "ppo": 40}
    # The same seed gives the same split.
    first = read_jsonl(splits["rm"])
    split_instructions(sources, POOLED_PLAN, seed=1, items_per_shard=8, split_paths=splits, shard_paths=shards)
    assert read_jsonl(splits["rm"]) == first


def test_splits_must_share_their_sources_or_none():
    with pytest.raises(ValueError, match="equal or disjoint|same sources or disjoint"):
        source_groups(
            {
                "sft": {"sources": ["alpaca"], "size": 1},
                "rm": {"sources": ["alpaca", "self_instruct"], "size": 1},
                "ppo": {"sources": ["self_instruct"], "size": 1},
            }
        )


# ---- self-instruct -------------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction, reason",
    [
        ("Summarise it.", "length"),
        ("word " * 151, "length"),
        ("Draw a picture of a cat sitting down.", "blacklist keyword"),
        ("Describe this image in a few words.", "blacklist keyword"),
        ("Tell me how to go to the station.", "blacklist keyword"),
        ("- List three fruits that are red.", "starts with punctuation"),
        ("¿Cuál es la capital de Francia hoy?", "non-ASCII start"),
        ("Write a program that sorts a list.", "write a program"),
        ("Name three rivers.", "length"),  # Alpaca drops 3 words or fewer
        ("Explain the rules of chess to a child.", None),
        ("Describe the mapping between sets briefly.", None),  # "map" only as a whole word
    ],
)
def test_instruction_shape_filters(instruction, reason):
    assert shape_reason(instruction) == reason


def test_rouge_l_filter_against_everything_kept():
    rouge = RougeFilter(0.7, ["Give three tips for staying healthy."])
    assert rouge.reason("give three tips for staying healthy.") == "duplicate"
    assert rouge.reason("Give three tips for staying very healthy.") == "rouge-l"
    new = "Explain why the sky is blue during the day."
    assert rouge.reason(new) is None
    rouge.add(new)
    assert rouge.reason("Explain why the sky is blue during the night.") == "rouge-l"


def test_rouge_l_filter_scores_equal_rouge_score_on_real_instructions():
    from rouge_score import rouge_scorer

    root = REPO
    instructions = [task["instruction"] for task in read_jsonl(root / "demo/instructions.jsonl")]
    instructions += [task["instruction"] for task in seed_records(root / "demo/seed_tasks.jsonl")]
    # Edge cases: no tokens at all, one token, nothing shared.
    instructions += ["", "?!", "Summarise.", "zebra quokka"]
    pool = RougeFilter(0.7, instructions)
    tokenize = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)._tokenizer.tokenize
    for new in instructions:
        expected = [rouge_scorer._score_lcs(tokenize(new), tokenize(old)).fmeasure for old in instructions]
        assert pool.scores(new).tolist() == expected  # the same floats, not merely close


def test_self_instruct_reaches_the_target_and_a_rerun_is_free(fake_openai, openai_settings, tmp_path):
    write_jsonl(tmp_path / "seeds.jsonl", english(5))
    fake_openai.faults = [("malformed",)] * 2
    openai_settings["max_retries"] = 0
    kwargs = dict(
        seed_tasks=tmp_path / "seeds.jsonl",
        prompt_file=f"{PROMPTS}/self_instruct.txt",
        llm_settings=openai_settings,
        target_count=6,
        max_attempts=40,
        tasks_per_request=2,
        rouge_l_threshold=0.7,
        seed=3,
        out_path=tmp_path / "si.jsonl",
        report_path=tmp_path / "si.report.json",
    )
    report = self_instruct(**kwargs)
    kept = read_jsonl(tmp_path / "si.jsonl")
    assert report["kept"] == len(kept) == 6
    assert report["kept"] + report["rejected"] + report["not_needed"] == report["attempts"]
    assert report["reasons"]["not JSON"] == 2 * 2  # two unusable answers, two tasks each
    assert [r["id"] for r in kept] == [f"selfinstruct-{i:05d}" for i in range(6)]
    sent = fake_openai.count
    assert self_instruct(**kwargs) == report and fake_openai.count == sent
    assert read_jsonl(tmp_path / "si.jsonl") == kept


def test_self_instruct_stops_at_max_attempts(fake_openai, openai_settings, tmp_path):
    write_jsonl(tmp_path / "seeds.jsonl", english(5))
    openai_settings["max_retries"] = 0
    fake_openai.faults = [("malformed",)] * 100
    report = self_instruct(
        tmp_path / "seeds.jsonl",
        f"{PROMPTS}/self_instruct.txt",
        openai_settings,
        5,
        9,
        3,
        0.7,
        0,
        tmp_path / "si.jsonl",
        tmp_path / "si.report.json",
    )
    assert report == {
        "target": 5,
        "requests": 3,
        "tasks_per_request": 3,
        "attempts": 9,
        "kept": 0,
        "rejected": 9,
        "reasons": {"not JSON": 9},
        "not_needed": 0,
    }


def test_one_request_asks_for_n_tasks_after_3_seed_examples_and_parses_n(fake_openai, openai_settings, tmp_path):
    write_jsonl(tmp_path / "seeds.jsonl", english(5))
    report = self_instruct(
        tmp_path / "seeds.jsonl",
        f"{PROMPTS}/self_instruct.txt",
        openai_settings,
        16,
        16,
        16,
        0.7,
        0,
        tmp_path / "si.jsonl",
        tmp_path / "si.report.json",
    )
    [request] = fake_openai.requests
    prompt = request["messages"][-1]["content"]
    assert "16 new, diverse task instructions" in prompt and "instruction_16, input_16, output_16" in prompt
    assert sum(f'"instruction": "{seed["instruction"]}"' in prompt for seed in english(5)) == 3
    assert report["requests"] == 1 and report["kept"] == 16
    assert len({r["instruction"] for r in read_jsonl(tmp_path / "si.jsonl")}) == 16


# ---- translation ---------------------------------------------------------------------


def test_translate_shard_keeps_ids_and_keys_and_reports_rejects(fake_openai, openai_settings, tmp_path):
    write_jsonl(tmp_path / "en.jsonl", english(6))
    openai_settings["max_retries"] = 1
    openai_settings["max_concurrency"] = 1
    # Record 0 is malformed twice (rejected); record 1 once (asked again, accepted).
    fake_openai.faults = [("malformed",), ("malformed",), (None,), (None,), (None,), (None,), ("malformed",)]
    out = {name: tmp_path / f"vi.{name}" for name in ("jsonl", "rejects.jsonl", "report.json")}
    report = translate_shard(
        tmp_path / "en.jsonl",
        out["jsonl"],
        out["rejects.jsonl"],
        out["report.json"],
        "vi",
        f"{PROMPTS}/translate.txt",
        openai_settings,
        "translation/vi/sft/0000",
    )
    translated = read_jsonl(out["jsonl"])
    rejects = read_jsonl(out["rejects.jsonl"])
    assert report == {"language": "vi", "total": 6, "accepted": 5, "rejected": 1, "reasons": {"not JSON": 1}}
    assert [r["id"] for r in rejects] == ["alpaca-00000"]
    assert [r["id"] for r in translated] == [f"alpaca-{i:05d}" for i in range(1, 6)]
    assert translated[0] == {
        "id": "alpaca-00001",
        "instruction": fake_translation("Give 1 tips for staying healthy.", "Vietnamese"),
        "input": "",
        "output": fake_translation("Eat well, sleep 1 hours.", "Vietnamese"),
    }
    # Empty inputs are not sent at all.
    sent_objects = [json.loads(r["messages"][-1]["content"]) for r in fake_openai.requests]
    odd = [o for o in sent_objects if o["instruction"] == "Give 1 tips for staying healthy."]
    assert odd and all("input" not in o for o in odd)
    sent = fake_openai.count
    assert (
        translate_shard(
            tmp_path / "en.jsonl",
            out["jsonl"],
            out["rejects.jsonl"],
            out["report.json"],
            "vi",
            f"{PROMPTS}/translate.txt",
            openai_settings,
            "translation/vi/sft/0000",
        )
        == report
    )
    assert fake_openai.count == sent
    assert (tmp_path / "cache" / "translation" / "vi" / "sft" / "0000.jsonl").exists()
    assert files_containing(tmp_path, CANARY_KEY) == []


def test_an_empty_answer_for_a_non_empty_field_is_rejected(fake_openai, openai_settings, tmp_path, monkeypatch):
    import tests.support.fake_openai as fake

    monkeypatch.setattr(fake, "answer", lambda body: json.dumps({"instruction": "x", "output": ""}))
    write_jsonl(tmp_path / "en.jsonl", english(2)[1:])
    openai_settings["max_retries"] = 0
    report = translate_shard(
        tmp_path / "en.jsonl",
        tmp_path / "t.jsonl",
        tmp_path / "r.jsonl",
        tmp_path / "rep.json",
        "id",
        f"{PROMPTS}/translate.txt",
        openai_settings,
        "t",
    )
    assert report["reasons"] == {"'output' is empty": 1}


def test_gather_and_translation_qa(tmp_path):
    en = english(4)
    write_jsonl(tmp_path / "en" / "sft.jsonl", en)
    vi = [dict(r, output="Ăn uống tốt.") for r in en[:3]]
    vi[1]["output"] = en[1]["output"]  # left in English
    vi[2]["output"] = "x"  # far too short
    write_jsonl(tmp_path / "s0.jsonl", vi[:2])
    write_jsonl(tmp_path / "s1.jsonl", vi[2:])
    write_jsonl(tmp_path / "s2.jsonl", [])
    assert gather([tmp_path / f"s{i}.jsonl" for i in range(3)], tmp_path / "translated-a.jsonl") == 3
    assert read_jsonl(tmp_path / "translated-a.jsonl") == vi
    # Named by the split they are given under, not by where they lie.
    report = tmp_path / "report-b.json"
    report.write_text(json.dumps({"total": 2, "accepted": 1, "rejected": 1, "reasons": {"not JSON": 1}}))
    qa = translation_qa(
        {"sft": tmp_path / "en" / "sft.jsonl"},
        {"sft": tmp_path / "translated-a.jsonl"},
        {"sft": [report]},
        tmp_path / "qa.json",
        "vi",
    )
    sft = qa["splits"]["sft"]
    assert (sft["english"], sft["translated"], sft["missing"], sft["rejected"]) == (4, 3, 1, 1)
    assert sft["reasons"] == {"not JSON": 1}
    assert sft["untranslated_outputs"] == 1 and sft["untranslated_share"] == pytest.approx(1 / 3, abs=1e-3)
    assert sft["length_ratio_outlier_ids"] == ["alpaca-00002"]
    assert json.loads((tmp_path / "qa.json").read_text())["totals"]["translated"] == 3


# ---- ranking ---------------------------------------------------------------------------


def responses(n: int) -> list[dict]:
    return [
        {
            "id": f"alpaca-{i:05d}",
            "instruction": f"Hãy kể {i}",
            "input": "",
            "responses": ["Một.", "Một hai ba bốn.", "Một hai.", "Một hai ba."],
        }
        for i in range(n)
    ]


def test_ranking_must_be_a_permutation():
    request = JsonRequest("", {"instruction": "x", "responses": ["a", "b", "c"]}, ("ranking",))
    assert valid_ranking(request, {"ranking": [2, 3, 1]}) is None
    for bad in ([1, 2], [1, 1, 2], [0, 1, 2], [1, 2, 4], "1,2,3", [1.0, 2, 3], [True, 2, 3]):
        assert valid_ranking(request, {"ranking": bad}) == "ranking is not a permutation of 1..3"


def test_rank_shard_with_the_openai_judge(fake_openai, openai_settings, tmp_path):
    # A shard's responses file holds its items only (here items 3 and 4): all are ranked.
    write_jsonl(tmp_path / "0001.responses.jsonl", responses(5)[3:])
    openai_settings["max_concurrency"] = 1
    openai_settings["max_retries"] = 1
    # Back-translations first (2), then rankings: item 3 answers an invalid ranking once,
    # item 4 twice (rejected).
    fake_openai.faults = [(None,), (None,), ("bad_ranking",), ("bad_ranking",), (None,), ("bad_ranking",)]
    out = [tmp_path / name for name in ("ranked.jsonl", "rejects.jsonl", "report.json")]
    report = rank_shard(
        tmp_path / "0001.responses.jsonl",
        *out,
        "vi",
        f"{PROMPTS}/rank.txt",
        f"{PROMPTS}/back_translate.txt",
        openai_settings,
        "ranking/m/vi/0001",
    )
    assert report == {
        "language": "vi",
        "total": 2,
        "ranked": 1,
        "rejected": 1,
        "reasons": {"ranking: ranking is not a permutation of 1..4": 1},
    }
    [ranked] = read_jsonl(out[0])
    assert ranked["id"] == "alpaca-00003"
    assert ranked["ranking"] == [1, 3, 2, 0]  # the fake judge prefers longer answers
    assert ranked["english"]["responses"][0] == fake_translation("Một.", "English")
    assert ranked["english"]["input"] == ""
    assert read_jsonl(out[1])[0]["stage"] == "ranking"
    # A shard whose prompts were all rejected in translation has no responses: nothing to rank.
    write_jsonl(tmp_path / "0002.responses.jsonl", [])
    empty = rank_shard(
        tmp_path / "0002.responses.jsonl",
        *out,
        "vi",
        f"{PROMPTS}/rank.txt",
        f"{PROMPTS}/back_translate.txt",
        openai_settings,
        "ranking/m/vi/0002",
    )
    assert empty["total"] == 0 and read_jsonl(out[0]) == []


def test_preference_pairs_in_the_released_keys(tmp_path):
    record = dict(responses(1)[0], ranking=[1, 3, 2, 0], english={})
    write_jsonl(tmp_path / "0000.jsonl", [record])
    write_jsonl(tmp_path / "0001.jsonl", [])
    assert preference_pairs([tmp_path / "0000.jsonl", tmp_path / "0001.jsonl"], tmp_path / "pairs.jsonl") == 6
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert set(pairs[0]) == {"id", "instruction", "input", "prefered_output", "rejected_output"}
    assert (pairs[0]["prefered_output"], pairs[0]["rejected_output"]) == ("Một hai ba bốn.", "Một hai ba.")
    assert pairs[-1] == {
        "id": "alpaca-00000",
        "instruction": "Hãy kể 0",
        "input": "",
        "prefered_output": "Một hai.",
        "rejected_output": "Một.",
    }


def test_generate_and_rank_with_the_local_model(tiny_llama_dir, tmp_path):
    write_jsonl(
        tmp_path / "rm.jsonl",
        [
            {"id": "a", "instruction": "Give three tips.", "input": ""},
            {"id": "b", "instruction": "Translate.", "input": "Con mèo"},
        ],
    )
    settings = {
        "engine": "hf",
        "responses_per_prompt": 3,
        "max_new_tokens": 6,
        "temperature": 1.0,
        "top_p": 0.75,
        "top_k": 40,
        "seed": 0,
    }
    progress = tmp_path / "progress.jsonl"
    generate_responses(tiny_llama_dir, tmp_path / "rm.jsonl", tmp_path / "responses.jsonl", settings, progress)
    generated = read_jsonl(tmp_path / "responses.jsonl")
    assert [len(r["responses"]) for r in generated] == [3, 3]
    generate_responses(tiny_llama_dir, tmp_path / "rm.jsonl", tmp_path / "again.jsonl", settings, progress)
    assert read_jsonl(tmp_path / "again.jsonl") == generated  # seeded
    llm = {
        **llm_defaults(),
        "backend": "hf",
        "model": str(tiny_llama_dir),
        "temperature": 0.0,
        "max_new_tokens": 6,
        "max_concurrency": 8,
        "max_retries": 1,
        "timeout_s": 10,
        "cache_dir": str(tmp_path / "cache"),
        "api_key_env": "UNUSED",
        "base_url": None,
    }
    out = [tmp_path / name for name in ("ranked.jsonl", "rejects.jsonl", "report.json")]
    report = rank_shard(
        tmp_path / "responses.jsonl",
        *out,
        "vi",
        f"{PROMPTS}/rank.txt",
        f"{PROMPTS}/back_translate.txt",
        llm,
        "ranking/tiny/vi/0000",
    )
    assert report["total"] == 2 and report["ranked"] + report["rejected"] == 2
    for record in read_jsonl(out[0]):
        assert sorted(record["ranking"]) == [0, 1, 2]


# ---- the one job runner ------------------------------------------------------------


def test_every_stage_job_refuses_over_budget_before_any_request(fake_openai, openai_settings, tmp_path):
    from okapi_pipeline.llm import BudgetCheck, BudgetExceeded, run_llm_job

    paid = dict(openai_settings, budget_usd=0.0, price_input_per_1k=1.0)
    worked = []
    budget = BudgetCheck(requests=[JsonRequest("Translate.", "hello " * 200, ("text",))], budget_key="x.llm.budget_usd")
    with pytest.raises(BudgetExceeded, match=r"^job: the estimated cost \$.* set x.llm.budget_usd to at least 1 "):
        run_llm_job("job", paid, "job", lambda clients: worked.append(clients) or (0, []), budget=budget)
    write_jsonl(tmp_path / "en.jsonl", english(3))
    with pytest.raises(BudgetExceeded):
        translate_shard(
            tmp_path / "en.jsonl",
            tmp_path / "t.jsonl",
            tmp_path / "r.jsonl",
            tmp_path / "rep.json",
            "vi",
            PROMPTS / "translate.txt",
            paid,
            "t",
            budget=budget,
        )
    assert worked == [] and fake_openai.count == 0 and not (tmp_path / "t.jsonl").exists()
    # Free (no budget, or not a paid backend): the same job runs.
    report = run_llm_job(
        "job",
        openai_settings,
        "job",
        lambda clients: (2, [{"reason": "r", "stage": "s"}]),
        budget=budget,
        report_path=tmp_path / "job.json",
        rejects_path=tmp_path / "job.jsonl",
    )
    assert report == {"total": 2, "accepted": 1, "rejected": 1, "reasons": {"s: r": 1}}
    assert json.loads((tmp_path / "job.json").read_text()) == report and len(read_jsonl(tmp_path / "job.jsonl")) == 1


def test_user_fixable_errors_end_a_script_in_one_line_and_others_keep_their_traceback():
    from okapi_pipeline.llm import BudgetExceeded, TooManyRejects, exit_on_user_error
    from okapi_pipeline.llm.mt_languages import UnsupportedLanguage

    for error in (TooManyRejects("too many"), BudgetExceeded("over budget"), UnsupportedLanguage("no code")):
        with pytest.raises(SystemExit) as exit_:
            with exit_on_user_error():
                raise error
        assert exit_.value.code == str(error)
    with pytest.raises(KeyError):
        with exit_on_user_error():
            raise KeyError("a bug")

"""The `mt` backend: language codes, segments, the per-segment cache, the translator comparison."""

import json

import pandas as pd
import pytest
import yaml

from okapi_pipeline.config import llm_defaults
from okapi_pipeline.jsonl import read_jsonl, write_jsonl
from okapi_pipeline.languages import OKAPI_GROUPS
from okapi_pipeline.llm import JsonRequest, LLMClient, Rejected
from okapi_pipeline.llm.mt_languages import UnsupportedLanguage, detect_family, language_code
from okapi_pipeline.llm.segments import Piece, cut, join, pieces, segments
from okapi_pipeline.report.translators import COLUMNS, comparison_table
from tests.support.configs import mt_settings
from tests.support.tiny_models import tiny_mt_model
from tests.support.workflow import REPO

OKAPI_26 = [code for group in OKAPI_GROUPS.values() for code in group]


CODE_AND_URL = (
    "Fix the bug in this function. Then push it.\n\n```python\ndef add(a, b):\n    return a - b\n```\n"
    "See https://docs.python.org/3/tutorial/index.html for more, {name}.\n  - 42\n1. Run `pytest -q` now."
)


# ---- language codes ------------------------------------------------------------------


def test_every_okapi_language_has_a_code_in_every_family_that_covers_it():
    assert len(OKAPI_26) == 26
    flores = {lang: language_code("nllb", lang) for lang in ["en", *OKAPI_26]}
    assert flores["vi"] == "vie_Latn" and flores["zh"] == "zho_Hans" and flores["ne"] == "npi_Deva"
    assert len(set(flores.values())) == 27
    assert all(language_code("madlad", lang) == f"<2{lang}>" for lang in OKAPI_26)
    # M2M100 has 25 of the 26: no Telugu, and it says so.
    assert [lang for lang in OKAPI_26 if lang != "te" and language_code("m2m100", lang) != f"__{lang}__"] == []
    with pytest.raises(UnsupportedLanguage, match="M2M100 does not cover 'te'"):
        language_code("m2m100", "te")
    with pytest.raises(UnsupportedLanguage, match="no FLORES-200 code known for 'xh'"):
        language_code("nllb", "xh")


def test_the_family_is_read_from_the_vocabulary():
    assert detect_family({"eng_Latn": 5, "vie_Latn": 6}) == "nllb"
    assert detect_family({"__en__": 5}) == "m2m100"
    assert detect_family({"<2en>": 5}) == "madlad"
    with pytest.raises(ValueError, match="not a known MT model"):
        detect_family({"hello": 1})


# ---- segments --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        CODE_AND_URL,
        "One sentence. Two sentences!  Three?\nA new line\r\n\r\n2024\n",
        "Email me at someone@example.org. Use <noinput> and {{var}}.",
        "",
        "   ",
        "1234\n56.7",
        "Trailing space. ",
    ],
)
def test_pieces_join_back_to_the_same_bytes(text):
    parts = pieces(text)
    assert "".join(piece.text for piece in parts) == text
    assert join(parts, [piece.text for piece in parts if piece.translate]) == text


def test_code_urls_placeholders_and_number_lines_never_reach_the_model():
    sent = segments(CODE_AND_URL)
    assert sent == ["Fix the bug in this function.", "Then push it.", "See", "for more,", "Run", "now."]
    translated = join(pieces(CODE_AND_URL), [s.upper() for s in sent])
    for kept in (
        "```python\ndef add(a, b):\n    return a - b\n```",
        "https://docs.python.org/3/tutorial/index.html",
        "{name}",
        "\n  - 42\n",
        "1. ",
        "`pytest -q`",
    ):
        assert kept in translated


def test_abbreviations_do_not_end_a_sentence():
    text = "Dr. Smith is taller, e.g. by a head, than Mr. Jones. He knows it."
    assert segments(text) == ["Dr. Smith is taller, e.g. by a head, than Mr. Jones.", "He knows it."]
    assert segments("Dr. Müller kam z.B. am Montag. Gut.", "de") == ["Dr. Müller kam z.B. am Montag.", "Gut."]
    # Stops without a space after them (Chinese) end sentences too.
    assert segments("你好。我是学生。", "zh") == ["你好。", "我是学生。"]


def test_a_protected_span_inside_a_sentence_with_abbreviations_stays_intact():
    text = "Dr. Smith said: run `pip install -e .` first, e.g. at https://example.org/a.b?c=1. Then test."
    parts = pieces(text)
    # The spans with the whitespace around them (and the URL's full stop) never reach the model.
    assert [piece.text for piece in parts if not piece.translate] == [
        " `pip install -e .` ",
        " https://example.org/a.b?c=1. ",
    ]
    assert segments(text) == ["Dr. Smith said: run", "first, e.g. at", "Then test."]
    assert "".join(piece.text for piece in parts) == text


def test_a_long_sentence_is_cut_at_whitespace_and_nothing_is_lost():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    words = [(text.index(w), text.index(w) + len(w)) for w in text.split()]
    parts = cut(Piece(text, True), words, 3)
    assert [p.text for p in parts if p.translate] == ["alpha beta gamma", "delta epsilon zeta", "eta theta"]
    assert "".join(p.text for p in parts) == text
    assert cut(Piece("short one", True), words[:2], 3) == [Piece("short one", True)]


def mt_request(fields, languages=("en", "vi")):
    return JsonRequest("unused by mt", fields, tuple(fields), languages=languages)


def test_a_field_with_code_and_a_url_comes_back_with_both_byte_identical(tiny_nllb_dir, tmp_path):
    client = LLMClient.from_settings(mt_settings(tiny_nllb_dir, tmp_path), tmp_path / "c.jsonl")
    [result] = client.json_requests([mt_request({"output": CODE_AND_URL, "instruction": "Fix it."})])
    client.close()
    # Random weights never stop: the answer is rejected as truncated, and still shows what was kept.
    assert isinstance(result, Rejected) and result.reason == "truncated (finish_reason length)"
    answer = json.loads(result.answer)
    assert "```python\ndef add(a, b):\n    return a - b\n```" in answer["output"]
    assert "https://docs.python.org/3/tutorial/index.html" in answer["output"]
    assert "{name}" in answer["output"] and "`pytest -q`" in answer["output"]
    # The counts travel in the answer's own field (into the stage's report), not in its JSON.
    assert "_mt" not in answer and client.mt_counts == {"segments": 7, "cut": 0}
    assert client.backend.stats["translated"] == 7
    reread = LLMClient.from_settings(mt_settings(tiny_nllb_dir, tmp_path), tmp_path / "c.jsonl")
    reread.json_requests([mt_request({"output": CODE_AND_URL, "instruction": "Fix it."})])
    reread.close()
    assert reread.mt_counts == {"segments": 7, "cut": 0} and reread.backend.stats["translated"] == 0


def test_long_sentences_are_cut_and_counted(tiny_nllb_dir, tmp_path):
    client = LLMClient.from_settings(mt_settings(tiny_nllb_dir, tmp_path, max_segment_tokens=8), tmp_path / "c.jsonl")
    long = "The cat sits on the mat and the dog runs in the park while the sun is hot and water is wet"
    [result] = client.json_requests([mt_request({"output": long})])
    client.close()
    assert client.mt_counts["cut"] == 1 and client.backend.stats["cut"] == 1
    assert client.backend.stats["segments"] > 2
    # A tokenizer without offsets (M2M100's SentencePiece) cuts at word boundaries too.
    backend = client.backend
    real = backend.tokenizer

    class SlowTokenizer:
        def __call__(self, text, **options):
            if options.get("return_offsets_mapping"):
                raise NotImplementedError("return_offset_mapping is not available when using Python tokenizers")
            return real(text, **options)

    backend.tokenizer = SlowTokenizer()
    slow = backend.token_offsets(long)
    assert {long[s:e] for s, e in slow} == set(long.split()) and len(slow) >= len(long.split())
    parts = cut(Piece(long, True), slow, 8)
    assert "".join(p.text for p in parts) == long and sum(p.translate for p in parts) > 1


def test_every_family_marks_languages_its_own_way(tmp_path_factory, tiny_corpus_dir, tiny_nllb_dir, tmp_path):
    from okapi_pipeline.llm.mt import MTBackend

    for model_dir, family, first in [
        (tiny_nllb_dir, "nllb", "eng_Latn"),
        (tiny_mt_model(tmp_path_factory, tiny_corpus_dir, "m2m100"), "m2m100", "__en__"),
        (tiny_mt_model(tmp_path_factory, tiny_corpus_dir, "madlad"), "madlad", "<2vi>"),
    ]:
        backend = MTBackend(mt_settings(model_dir, tmp_path))
        backend._load_tokenizer()
        assert backend.family == family
        ids = backend.encode("Hello.", "en", "vi")
        assert backend.tokenizer.convert_ids_to_tokens(ids[0]) == first and ids[-1] == backend.tokenizer.eos_token_id
        if family == "m2m100":
            with pytest.raises(UnsupportedLanguage, match="'te'"):
                backend.token_id("te")
            # A job stops before translating anything.
            with pytest.raises(UnsupportedLanguage, match="M2M100 does not cover 'te'"):
                backend.answer([mt_request({"output": "Hello."}, ("en", "te"))], ["k"], None)
        backend.prepare()
        [(text, finish)] = backend.generate(["Hello."], "en", "vi")
        assert finish == "length" and isinstance(text, str)


def test_the_ctranslate2_engine_translates_the_same_segments_from_a_converted_copy(tiny_nllb_dir, tmp_path):
    from okapi_pipeline.llm.mt import convert_ctranslate2

    convert_ctranslate2(tiny_nllb_dir, tmp_path / "ct2")
    settings = mt_settings(tiny_nllb_dir, tmp_path, engine="ctranslate2", ctranslate2_dir=str(tmp_path / "ct2"))
    client = LLMClient.from_settings(settings, tmp_path / "c.jsonl")
    [result] = client.json_requests([mt_request({"output": CODE_AND_URL})])
    client.close()
    assert type(client.backend.model).__name__ == "Translator"  # CTranslate2, int8 on this CPU
    answer = json.loads(result.answer)
    assert "```python\ndef add(a, b):\n    return a - b\n```" in answer["output"]
    assert "https://docs.python.org/3/tutorial/index.html" in answer["output"]
    assert client.mt_counts["segments"] == 6 and client.backend.stats["translated"] == 6
    # Its segments are cached apart from the transformers engine's.
    other = LLMClient.from_settings(mt_settings(tiny_nllb_dir, tmp_path), tmp_path / "c.jsonl")
    other.json_requests([mt_request({"output": CODE_AND_URL})])
    other.close()
    assert other.backend.stats["translated"] == 6 and other.backend.stats["cached"] == 0


def test_the_hf_and_openai_stages_refuse_an_mt_judge():
    from okapi_pipeline.config import ConfigError, load_schema, validate_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["ranking"]["llm"] = {"backend": "mt", "model": "x"}
    with pytest.raises(ConfigError, match="'ranking.llm.backend': mt only translates"):
        validate_config(config, load_schema(REPO / "schemas/config.schema.yaml"))


def test_a_back_translation_job_of_its_own_ranks_the_same_as_one_job(fake_openai, openai_settings, tmp_path):
    from okapi_pipeline.data.ranking import back_translate_shard, rank_shard

    items = [
        {
            "id": f"a-{i}",
            "instruction": f"Hãy kể {i} điều.",
            "input": "",
            "responses": [f"Một {i}.", f"Hai hai {i}.", f"Ba ba ba {i}.", f"Bốn bốn bốn bốn {i}."],
        }
        for i in range(3)
    ]
    write_jsonl(tmp_path / "responses.jsonl", items)
    prompts = (str(REPO / "prompts/rank.txt"), str(REPO / "prompts/back_translate.txt"))
    one = [tmp_path / f"one.{name}" for name in ("jsonl", "rejects.jsonl", "report.json")]
    two = [tmp_path / f"two.{name}" for name in ("jsonl", "rejects.jsonl", "report.json")]
    together = rank_shard(tmp_path / "responses.jsonl", *one, "vi", *prompts, openai_settings, "r/one")
    back_translate_shard(
        tmp_path / "responses.jsonl",
        tmp_path / "english.jsonl",
        "vi",
        prompts[1],
        openai_settings,
        "r/two.back_translation",
    )
    sent = fake_openai.count
    apart = rank_shard(
        tmp_path / "responses.jsonl",
        *two,
        "vi",
        *prompts,
        openai_settings,
        "r/two",
        back_translated_path=tmp_path / "english.jsonl",
    )
    assert fake_openai.count - sent == 3  # only the judge's requests: the English came from the file
    assert together == apart and together["ranked"] == 3
    assert read_jsonl(one[0]) == read_jsonl(two[0])


def test_the_cost_estimate_gives_an_mt_stage_gpu_hours_instead_of_dollars():
    from okapi_pipeline.report.cost import estimate_costs

    prompts = {
        name: REPO / "prompts" / file
        for name, file in (
            ("translation", "translate.txt"),
            ("self_instruct", "self_instruct.txt"),
            ("rank", "rank.txt"),
            ("back_translation", "back_translate.txt"),
        )
    }
    api = {
        **llm_defaults(),
        "backend": "openai",
        "model": "local-server-model",
        "price_input_per_1k": 0.0015,
        "price_output_per_1k": 0.002,
    }
    mt = {**llm_defaults(), "backend": "mt", "segments_per_second": 40}
    rows = estimate_costs(
        {"self_instruct": api, "translation": mt, "ranking": api, "back_translation": mt},
        instructions=REPO / "demo/instructions.jsonl",
        seed_tasks=REPO / "demo/seed_tasks.jsonl",
        prompts=prompts,
        languages=["vi"],
        responders=["m"],
        sizes={"sft": 1000, "rm": 500, "ppo": 500},
        self_instruct={"count": 0, "max_attempts": 0, "tasks_per_request": 1},
        ranking={"responses_per_prompt": 4, "max_new_tokens": 256},
    )
    by_stage = {row["stage"]: row for row in rows}
    translation = by_stage["translation"]
    assert translation["usd"] == 0.0 and translation["segments"] > 2000  # about 3.8 sentences a demo record
    assert translation["gpu_hours"] == round(translation["segments"] / 40 / 3600, 2)
    assert by_stage["back_translation"]["gpu_hours"] > 0 and by_stage["back_translation"]["usd"] == 0.0
    assert by_stage["ranking"]["usd"] > 0 and by_stage["ranking"]["gpu_hours"] is None


# ---- the comparison table -------------------------------------------------------------------


def test_the_comparison_table_has_one_row_per_language_and_translator(tmp_path):
    paths = []
    for lang in ("vi", "bn"):
        for name, backend in (("gpt", "openai"), ("nllb", "mt"), ("llama", "hf")):
            row = {column: None for column in COLUMNS}
            row.update(
                language=lang,
                translator=name,
                backend=backend,
                model=name,
                records=4,
                accepted=4,
                rejected=0,
                chrf_round_trip=50.0,
                untranslated_share=0.0,
                seconds_per_1k=10.0,
            )
            path = tmp_path / f"{name}-{lang}.json"
            path.write_text(json.dumps({**row, "qa": {}}))
            paths.append(path)
    rows = comparison_table(paths, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.png")
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(rows) == len(table) == 6
    assert sorted(zip(table["language"], table["translator"])) == sorted(
        (lang, name) for lang in ("vi", "bn") for name in ("gpt", "nllb", "llama")
    )
    assert list(table.columns) == list(COLUMNS)
    assert (tmp_path / "t.png").stat().st_size > 0 and "chrf_round_trip" in (tmp_path / "t.md").read_text()

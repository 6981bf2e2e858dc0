"""The budget primitives of the LLM layer, and a paid job's gate on its stage's row of the estimate file."""

import csv
import json

import pytest

from okapi_pipeline.config import llm_defaults
from okapi_pipeline.llm import Answer, BudgetCheck, BudgetExceeded, JsonRequest, ResponseCache, run_llm_job
from okapi_pipeline.llm.budget import (
    MESSAGE_TOKENS,
    check_stage_budget,
    is_budgeted,
    stage_usd,
    tokens,
    translation_requests_usd,
    usd,
)
from okapi_pipeline.report.cost import TOKEN_COLUMNS, estimate_costs, write_rows
from tests.support.workflow import REPO

# A model tiktoken has no encoding for: 4 characters a token, with or without network.
PAID = {
    **llm_defaults(),
    "backend": "openai",
    "model": "local-server-model",
    "price_input_per_1k": 1.0,
    "price_output_per_1k": 2.0,
}


def write_token_counts(path, rows: list[tuple[str, str, int, int]]) -> None:
    """A token counts file as `snakemake cost_tokens` writes it: (stage, language, input, output) rows."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=TOKEN_COLUMNS)
        writer.writeheader()
        for stage, language, tokens_in, tokens_out in rows:
            writer.writerow(
                {"stage": stage, "language": language, "model": "", "requests": 1, "segments": ""}
                | {"input_tokens": tokens_in, "output_tokens": tokens_out}
            )


def test_tokens_and_dollars_at_the_stage_prices_and_only_a_paid_budgeted_backend_is_checked():
    assert [tokens(""), tokens("abcd"), tokens("abcde")] == [0, 1, 2]
    assert usd(1000, 500, PAID) == 2.0
    assert usd(1000, 500, {**PAID, "backend": "hf"}) == 0.0 and usd(10**6, 10**6, {**PAID, "backend": "mt"}) == 0.0
    assert is_budgeted({**PAID, "budget_usd": 1.0})
    assert not is_budgeted({**PAID, "budget_usd": None}) and not is_budgeted({**PAID, "backend": "hf"})
    request = JsonRequest("x" * 40, {"text": "y" * 100}, ("text",))
    user = tokens(request.user_text())
    # In: prompt, fields and the chat overhead; out: the fields, in the target script's tokens.
    assert translation_requests_usd([request], "vi", PAID) == usd(10 + user + MESSAGE_TOKENS, user, PAID)
    assert translation_requests_usd([request], "bn", PAID) == usd(10 + user + MESSAGE_TOKENS, 4 * user, PAID)


def test_a_paid_job_prices_its_stage_rows_of_the_token_counts_before_any_request(tmp_path):
    counts = tmp_path / "tokens.csv"
    # At $1 per 1K input and $2 per 1K output tokens: translation $0.60 + $0.50, ranking $50.
    write_token_counts(
        counts, [("translation", "vi", 200, 200), ("translation", "bn", 100, 200), ("ranking", "vi", 50000, 0)]
    )
    assert stage_usd(counts, "translation", PAID) == 1.1
    assert stage_usd(counts, "translation", {**PAID, "price_output_per_1k": 0.0}) == 0.3  # the job's prices
    worked = []

    def work(clients):
        worked.append(True)
        return 0, []

    check = BudgetCheck(counts, ("translation",))
    with pytest.raises(BudgetExceeded) as failure:
        run_llm_job("translation vi/sft/0000", {**PAID, "budget_usd": 1.0}, "t", work, budget=check)
    assert str(failure.value) == (
        "translation: the estimated cost $1.10 (see `snakemake cost_estimate`) exceeds budget_usd $1.00; "
        "to allow it, set llm.budget_usd (or translation.llm.budget_usd) to at least 2 in your config file "
        "and run again"
    )
    assert worked == []
    # Only its own stage counts (ranking's $50 is another stage's budget), and the file
    # is the whole input: the job reads no config, instructions or prompts.
    run_llm_job("translation vi/sft/0000", {**PAID, "budget_usd": 1.2}, "t", work, budget=check)
    assert worked == [True]
    # A job of two stages (ranking with the judge's own back-translation) passes both.
    with pytest.raises(BudgetExceeded, match="^ranking: the estimated cost \\$50.00"):
        run_llm_job(
            "rank", {**PAID, "budget_usd": 10.0}, "r", work, budget=BudgetCheck(counts, ("translation", "ranking"))
        )
    # A free backend (or no budget) never reads the file.
    run_llm_job("t", {**PAID, "backend": "hf", "budget_usd": 0.0}, "t", work, budget=BudgetCheck("absent.csv", ("x",)))
    run_llm_job("t", {**PAID, "budget_usd": None}, "t", work, budget=BudgetCheck("absent.csv", ("x",)))
    with pytest.raises(ValueError, match="no row of the stage 'benchmarks'"):
        check_stage_budget(counts, "benchmarks", {**PAID, "budget_usd": 1.0})


def test_the_estimate_prices_benchmark_translation_as_the_job_sends_it(tmp_path):
    prompts = {
        name: REPO / "prompts" / file
        for name, file in (
            ("translation", "translate.txt"),
            ("self_instruct", "self_instruct.txt"),
            ("rank", "rank.txt"),
            ("back_translation", "back_translate.txt"),
            ("benchmarks", "translate_benchmark.txt"),
        )
    }
    fields = {
        "arc": [{"instruction": "Which gas do plants take in?", "option_a": "Oxygen", "option_b": "Carbon dioxide"}],
        "mmlu": [{"instruction": "2 + 2 = ?", "option_a": "3", "option_b": "4"}] * 3,
    }
    free = {**PAID, "backend": "hf"}
    rows = estimate_costs(
        {"self_instruct": free, "translation": free, "ranking": free, "back_translation": free, "benchmarks": PAID},
        tmp_path / "estimate.csv",
        instructions=None,
        seed_tasks=None,
        prompts=prompts,
        languages=["en", "vi", "bn"],
        responders=[],
        sizes={},
        self_instruct=None,
        ranking={"responses_per_prompt": 2, "max_new_tokens": 8},
        benchmark_fields=fields,
    )
    benchmark_rows = {row["language"]: row for row in rows if row["stage"] == "benchmarks"}
    assert sorted(benchmark_rows) == ["bn", "vi"]  # English is the source: nothing to translate
    assert benchmark_rows["vi"]["requests"] == 4
    prompt = prompts["benchmarks"].read_text()
    sent = [JsonRequest(prompt, record, tuple(record)) for records in fields.values() for record in records]
    for lang, row in benchmark_rows.items():
        assert row["usd"] == pytest.approx(translation_requests_usd(sent, lang, PAID), abs=1e-4)
    assert benchmark_rows["bn"]["usd"] > benchmark_rows["vi"]["usd"]
    # The job's gate prices the same token counts as the estimate file does.
    write_rows(tmp_path / "tokens.csv", rows, TOKEN_COLUMNS)
    assert stage_usd(tmp_path / "tokens.csv", "benchmarks", PAID) == pytest.approx(
        benchmark_rows["vi"]["usd"] + benchmark_rows["bn"]["usd"], abs=1e-4
    )


def test_the_mt_counts_are_a_field_of_the_answer_and_survive_the_cache(tmp_path):
    cache = ResponseCache(tmp_path / "c.jsonl")
    cache.put("mt", Answer(json.dumps({"output": "Xin chào."}), "stop", {"segments": 2, "cut": 1}))
    cache.put("api", Answer("{}", "stop"))
    cache.close()
    reread = ResponseCache(tmp_path / "c.jsonl")
    assert reread.get("mt").mt_counts == {"segments": 2, "cut": 1} and reread.get("api").mt_counts is None
    assert json.loads(reread.get("mt").content) == {"output": "Xin chào."}


def test_a_paid_translator_comparison_over_its_budget_refuses_before_any_request(
    fake_openai, openai_settings, tmp_path
):
    from okapi_pipeline.jsonl import write_jsonl
    from okapi_pipeline.report.translators import compare_translator

    records = [
        {"id": f"r{i}", "instruction": f"Name a colour, number {i}.", "input": "", "output": "Blue."} for i in range(4)
    ]
    write_jsonl(tmp_path / "en.jsonl", records)
    arguments = dict(
        english_path=tmp_path / "en.jsonl",
        language="vi",
        name="gpt",
        prompt_file=REPO / "prompts/translate.txt",
        back_prompt_file=REPO / "prompts/back_translate.txt",
        size=4,
        seed=0,
        out_path=tmp_path / "gpt.json",
        budget_key="translator_comparison.translators.gpt.budget_usd",
    )
    paid = {**openai_settings, "price_input_per_1k": 1.0, "budget_usd": 0.01, "answer_checks": "basic"}
    with pytest.raises(
        BudgetExceeded,
        match=r"^translator comparison gpt vi: the estimated cost \$1\.2.* "
        r"set translator_comparison.translators.gpt.budget_usd to at least 2 ",
    ):
        compare_translator(settings=paid, **arguments)
    assert fake_openai.count == 0 and not (tmp_path / "gpt.json").exists()
    row = compare_translator(settings={**paid, "budget_usd": 5.0}, **arguments)
    # There and back: 4 forward and 4 back-translation requests, priced per 1K records.
    assert fake_openai.count == 8 and row["accepted"] + row["rejected"] == 4
    assert row["usd_per_1k"] > 0 and json.loads((tmp_path / "gpt.json").read_text())["translator"] == "gpt"

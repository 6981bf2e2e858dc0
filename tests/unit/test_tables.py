"""The paper tables' arithmetic: group and overall averages, paper differences, missing cells."""

import json
from pathlib import Path

import pandas as pd
import pytest

from okapi_pipeline.languages import OKAPI_GROUPS
from okapi_pipeline.report.tables import (
    MISSING,
    NOT_AVAILABLE,
    SOURCE_PRIORITY,
    build_table,
    format_table,
    mean_or_missing,
    paper_numbers,
    paper_table,
    read_reference,
    read_scores,
)
from tests.support.scores import write_score
from tests.support.workflow import REPO

REFERENCE = REPO / "reference" / "paper_scores.csv"


OKAPI_26 = [lang for members in OKAPI_GROUPS.values() for lang in members]


def cells(table: pd.DataFrame, column: str) -> dict:
    """(group, language) -> formatted cell."""
    formatted = format_table(table)
    return {(g, lang): v for g, lang, v in zip(formatted["group"], formatted["language"], formatted[column])}


def test_mean_or_missing():
    assert mean_or_missing([30.0, 40.0, 20.0]) == 30.0
    assert mean_or_missing([30.0, None]) is None
    assert mean_or_missing([]) is None


# Two high, one medium, two low languages and one outside the Okapi 26.
LANGUAGES = ["vi", "de", "id", "bn", "ta", "sw"]


SCORES = {
    ("m", "base", "vi"): 40.0,
    ("m", "base", "de"): 50.0,
    ("m", "base", "id"): 30.0,
    ("m", "base", "bn"): 20.0,
    ("m", "base", "ta"): 26.0,
    ("m", "base", "sw"): 10.0,
    ("m", "sft", "vi"): 41.0,
    ("m", "sft", "de"): 51.0,
    ("m", "sft", "id"): 31.0,
    ("m", "sft", "sw"): 11.0,
}


def test_groups_in_order_with_an_average_after_each_and_overall():
    table = build_table(SCORES, {}, [("m", "base")], LANGUAGES, {"sw": "other"})
    assert list(zip(table["group"], table["language"])) == [
        ("high", "vi"),
        ("high", "de"),
        ("high", "average"),
        ("medium", "id"),
        ("medium", "average"),
        ("low", "bn"),
        ("low", "ta"),
        ("low", "average"),
        ("other", "sw"),
        ("other", "average"),
        ("all", "average"),
    ]
    base = cells(table, "m base")
    assert (base[("high", "average")], base[("medium", "average")], base[("low", "average")]) == (
        "45.0",
        "30.0",
        "23.0",
    )
    # Overall: the mean over the six languages (29.3), not over the four group means (27.0).
    assert base[("all", "average")] == "29.3"
    assert list(table.columns) == ["group", "language", "m base"]  # no reference, no paper columns


def test_a_missing_language_shows_as_a_dash_and_blanks_its_averages():
    sft = cells(build_table(SCORES, {}, [("m", "sft")], LANGUAGES), "m sft")
    assert sft[("low", "bn")] == MISSING and sft[("low", "ta")] == MISSING
    assert sft[("low", "average")] == MISSING and sft[("all", "average")] == MISSING
    assert sft[("high", "average")] == "46.0" and sft[("other", "sw")] == "11.0"


def test_paper_column_and_signed_difference():
    paper = {
        ("m", "base", "vi"): 42.5,
        ("m", "base", "de"): 47.0,
        ("m", "base", "bn"): 20.0,
        ("m", "base", "high"): 99.0,
        ("m", "base", "avg"): 99.0,
    }
    table = build_table(SCORES, paper, [("m", "base"), ("m", "sft")], LANGUAGES)
    theirs, diff = cells(table, "m base (paper)"), cells(table, "m base (diff)")
    assert (theirs[("high", "vi")], diff[("high", "vi")]) == ("42.5", "-2.5")
    assert (theirs[("high", "de")], diff[("high", "de")]) == ("47.0", "+3.0")
    assert (theirs[("low", "bn")], diff[("low", "bn")]) == ("20.0", "+0.0")
    assert theirs[("medium", "id")] == MISSING and diff[("medium", "id")] == MISSING
    # Two of eight high languages: compared with the paper's numbers for those two,
    # never with its average over all eight (99.0).
    assert (theirs[("high", "average")], diff[("high", "average")]) == ("44.8", "+0.2")
    assert theirs[("all", "average")] == MISSING
    assert "m sft (paper)" not in table.columns


def test_published_averages_are_used_when_the_run_covers_their_languages():
    """The authors' per-language HellaSwag logs reproduce their own group means."""
    reference = read_reference(REFERENCE)
    paper = {key: score for key, (score, _) in paper_numbers(reference, "hellaswag", "acc_norm", "validation").items()}
    logs = reference[
        (reference["source"] == "author_logs")
        & (reference["model"] == "bloom-7b1")
        & (reference["benchmark"] == "hellaswag")
        & reference["language"].isin(OKAPI_26)
    ]
    scores = {("bloom-7b1", "base", row.language): row.score for row in logs.itertuples()}
    assert len(scores) == 26
    table = build_table(scores, paper, [("bloom-7b1", "base")], OKAPI_26)
    ours, theirs = cells(table, "bloom-7b1 base"), cells(table, "bloom-7b1 base (paper)")
    for group, published in [("high", "43.8"), ("medium", "35.7"), ("low", "30.3"), ("all", "36.8")]:
        assert ours[(group, "average")] == theirs[(group, "average")] == published


def test_reference_prefers_the_paper_then_the_summary_then_the_logs():
    reference = read_reference(REFERENCE)
    hellaswag = paper_numbers(reference, "hellaswag", "acc_norm", "validation")
    assert hellaswag[("llama-7b", "base", "avg")] == (46.4, "third_party_summary")  # logs say 39.1
    assert hellaswag[("bloom-7b1", "ppo", "avg")] == (39.5, "paper")
    assert hellaswag[("bloom-7b1", "base", "vi")] == (48.3, "author_logs")
    # The logs scored ARC on validation: a test-split table does not use them.
    assert paper_numbers(reference, "arc", "acc_norm", "test")[("bloom-7b1", "base", "avg")] == (
        28.2,
        "third_party_summary",
    )
    assert ("bloom-7b1", "base", "high") not in paper_numbers(reference, "arc", "acc_norm", "test")


def test_reference_file_is_well_formed():
    reference = read_reference(REFERENCE)
    assert list(reference.columns) == [
        "benchmark",
        "model",
        "variant",
        "language",
        "metric",
        "split",
        "score",
        "source",
        "note",
    ]
    assert set(reference["benchmark"]) == {"arc", "hellaswag", "mmlu"}
    assert set(reference["model"]) == {"bloom-7b1", "bloomz-7b1", "llama-7b"}
    assert set(reference["variant"]) == {"base", "sft", "ppo"}
    assert set(reference["language"]) <= set(OKAPI_26) | {"avg", "high", "medium", "low"}
    assert set(reference["source"]) <= set(SOURCE_PRIORITY)
    assert reference["score"].between(0, 100).all()
    key = ["benchmark", "model", "variant", "language", "metric", "split", "source"]
    assert not reference.duplicated(key).any()
    # Every average of the paper's table: 3 benchmarks x 7 (model, variant) columns.
    averages = reference[(reference["language"] == "avg") & (reference["source"] != "author_logs")]
    assert len(averages) == 21


def write_table(paths, languages, models, variants, out, released_models=None):
    """The HellaSwag (acc_norm, validation) table of these score files into out[csv/md/tex/html]."""
    return paper_table(
        bench="hellaswag",
        score_files=paths,
        reference_file=REFERENCE,
        languages=languages,
        models=models,
        variants=variants,
        metric="acc_norm",
        split="validation",
        language_groups={},
        csv_path=out["csv"],
        markdown_path=out["md"],
        latex_path=out["tex"],
        html_path=out["html"],
        released_models=released_models,
    )


def table_files(folder: Path) -> dict:
    return {kind: folder / f"hellaswag.{kind}" for kind in ("csv", "md", "tex", "html")}


def test_read_scores_takes_each_benchmarks_configured_metric(tmp_path):
    paths = [
        write_score(tmp_path, "tiny-llama", "sft", "vi", "arc", 0.25, 0.5),
        write_score(tmp_path, "tiny-llama", "sft", "vi", "mmlu", 0.25, 0.5),
    ]
    assert read_scores(paths, {"arc": "acc_norm", "mmlu": "acc"}) == {
        ("arc", "tiny-llama", "sft", "vi"): 50.0,
        ("mmlu", "tiny-llama", "sft", "vi"): 25.0,
    }


def test_read_scores_refuses_a_score_file_that_does_not_say_what_it_scores(tmp_path):
    path = tmp_path / "tiny-llama" / "sft" / "vi" / "arc.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"benchmark": "arc", "language": "vi", "metrics": {"acc": 0.2, "acc_norm": 0.3}}))
    with pytest.raises(ValueError, match="without model, variant"):
        read_scores([path], {"arc": "acc"})


def test_paper_tables_writes_csv_and_markdown(tmp_path):
    paths = [
        write_score(tmp_path / "scores", model, variant, lang, "hellaswag", 0.3, 0.4)
        for model in ("bloom-7b1", "tiny-llama")
        for variant in ("base", "sft")
        for lang in ("vi", "bn")
    ]
    paths.pop()  # tiny-llama sft bn
    out = table_files(tmp_path / "tables")
    csv_path, md_path, html_path = out["csv"], out["md"], out["html"]
    write_table(paths, ["vi", "bn"], ["bloom-7b1", "tiny-llama"], ["base", "sft"], out)
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(table.columns) == [
        "group",
        "language",
        "bloom-7b1 base",
        "bloom-7b1 base (paper)",
        "bloom-7b1 base (diff)",
        "bloom-7b1 sft",
        "bloom-7b1 sft (paper)",
        "bloom-7b1 sft (diff)",
        "tiny-llama base",
        "tiny-llama sft",
    ]
    rows = {(g, lang): row for g, lang, row in zip(table["group"], table["language"], table.to_dict("records"))}
    assert rows[("high", "vi")]["bloom-7b1 base (paper)"] == "48.3"
    assert rows[("high", "vi")]["bloom-7b1 base (diff)"] == "-8.3"
    assert rows[("all", "average")]["bloom-7b1 base (paper)"] == "40.5"  # mean of vi 48.3 and bn 32.8
    assert rows[("low", "bn")]["tiny-llama sft"] == MISSING
    assert rows[("all", "average")]["tiny-llama sft"] == MISSING
    markdown = md_path.read_text(encoding="utf-8")
    assert markdown.startswith("# HellaSwag (acc_norm, %, validation split)")
    assert "| high    | vi         | 40.0" in markdown and MISSING in markdown
    html = html_path.read_text(encoding="utf-8")
    assert "<h2>HellaSwag (acc_norm, %, validation split)</h2>" in html
    assert html.count('<tr class="average">') == 3 and "<td>-8.3</td>" in html


def test_latex_table_is_booktabs_with_dashes_for_missing_cells(tmp_path):
    paths = [write_score(tmp_path / "scores", "tiny_llama", "sft", "vi", "hellaswag", 0.3, 0.4)]
    out = table_files(tmp_path)
    tex_path = out["tex"]
    write_table(paths, ["vi", "bn"], ["tiny_llama"], ["sft"], out)
    latex = tex_path.read_text(encoding="utf-8")
    lines = [line.strip() for line in latex.splitlines()]
    assert "\\toprule" in lines and "\\midrule" in lines and "\\bottomrule" in lines
    assert "group & language & tiny\\_llama sft \\\\" in lines  # escaped for LaTeX
    assert "high & vi & 40.0 \\\\" in lines
    assert "low & bn & -- \\\\" in lines and "all & average & -- \\\\" in lines
    assert MISSING not in latex
    assert "\\caption{HellaSwag (acc\\_norm, \\%, validation split)}" in latex


def test_a_released_model_column_is_set_against_the_model_it_reproduces(tmp_path):
    paths = [
        write_score(tmp_path / "scores", "okapi-bloom", "released", lang, "hellaswag", 0.3, 0.5)
        for lang in ("vi", "bn")
    ]
    paths.append(write_score(tmp_path / "scores", "tiny-llama", "base", "vi", "hellaswag", 0.3, 0.4))
    out = table_files(tmp_path)
    csv_path = out["csv"]
    write_table(
        paths, ["vi", "bn"], ["tiny-llama"], ["base"], out, released_models={"okapi-bloom": ["bloom-7b1", "base"]}
    )
    table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    assert list(table.columns) == [
        "group",
        "language",
        "tiny-llama base",
        "okapi-bloom released",
        "okapi-bloom released (paper)",
        "okapi-bloom released (diff)",
    ]
    vi = table[table["language"] == "vi"].iloc[0]
    assert (
        vi["okapi-bloom released"],
        vi["okapi-bloom released (paper)"],
        vi["okapi-bloom released (diff)"],
    ) == ("50.0", "48.3", "+1.7")


@pytest.mark.parametrize(
    "value, signed, text",
    [
        (None, False, MISSING),
        (float("nan"), True, MISSING),
        (33.333, False, "33.3"),
        (-0.04, True, "+0.0"),
        (1.25, True, "+1.2"),
    ],
)
def test_cell_format(value, signed, text):
    from okapi_pipeline.report.tables import format_cell

    assert format_cell(value, signed) == text


def test_an_unavailable_benchmark_shows_not_available_with_its_reason_and_the_rest_is_scored(tmp_path):
    paths = [
        write_score(tmp_path / "scores", "tiny-llama", "sft", lang, "hellaswag", 0.3, 0.4) for lang in ("vi", "id")
    ]
    unavailable = tmp_path / "scores" / "unavailable.json"
    reason = "alexandrainst/m_hellaswag[zh]: BuilderConfig 'zh' not found"
    unavailable.write_text(
        json.dumps(
            {"model": "tiny-llama", "variant": "sft", "benchmark": "hellaswag", "language": "zh", "unavailable": reason}
        )
    )
    out = table_files(tmp_path / "tables")
    write_table([*paths, unavailable], ["zh", "vi", "id"], ["tiny-llama"], ["sft"], out)
    table = pd.read_csv(out["csv"], dtype=str, keep_default_na=False)
    rows = {
        (g, lang): row["tiny-llama sft"]
        for g, lang, row in zip(table["group"], table["language"], table.to_dict("records"))
    }
    assert rows[("high", "zh")] == NOT_AVAILABLE
    assert rows[("high", "vi")] == "40.0" and rows[("medium", "id")] == "40.0"
    assert rows[("high", "average")] == MISSING and rows[("medium", "average")] == "40.0"
    assert f"- n/a: tiny-llama sft, zh: {reason}" in out["md"].read_text(encoding="utf-8")
    assert "BuilderConfig &#x27;zh&#x27; not found" in out["html"].read_text(encoding="utf-8")

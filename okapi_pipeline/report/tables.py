"""The paper's tables: one per benchmark, languages grouped by resource level.

Rows are the languages of each group (high / medium / low, then any others, then the
English control) with a group-average row after each group and an overall average (of
the target languages) at the end; columns are
the (model, variant) pairs, each followed by the paper's number and the difference
where the reference has one. Missing cells show as "–" and benchmarks not available
in a language (no file, or a malformed one) as "n/a", with the reason in the notes
under the table: an average is only taken when every language of its group has a
score, so a partial run never passes for a complete one.
"""

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from okapi_pipeline.languages import GROUP_ORDER, OKAPI_GROUPS, language_group, target_languages
from okapi_pipeline.report.table_formats import AVERAGE, MISSING, to_html, to_latex, to_markdown

log = logging.getLogger(__name__)

NOT_AVAILABLE = "n/a"
ALL_LANGUAGES = "all"
# The reference's key for the mean over all languages (a group's mean uses its name).
OVERALL_KEY = "avg"
SOURCE_PRIORITY = ("paper", "third_party_summary", "author_logs")
# The variant name of a released model's scores and column (evaluated, not trained).
RELEASED = "released"
TITLES = {"arc": "ARC-Challenge", "hellaswag": "HellaSwag", "mmlu": "MMLU"}


@dataclass(frozen=True)
class Unavailable:
    """A score that could not be computed: the benchmark is not available in that language."""

    reason: str


# ---- arithmetic (pure) -------------------------------------------------------------


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mean_or_missing(values: list) -> float | None:
    """The mean, or None when there is nothing to average or any value is missing."""
    if not values or not all(is_number(value) for value in values):
        return None
    return sum(values) / len(values)


def cell_value(values: list):
    """A language's score (or "n/a"), or a group's mean."""
    if len(values) == 1 and isinstance(values[0], Unavailable):
        return NOT_AVAILABLE
    return mean_or_missing(values)


def difference(ours, paper: float | None) -> float | None:
    return ours - paper if is_number(ours) and paper is not None else None


def grouped_languages(languages: list[str], extra_groups: dict | None = None) -> list[tuple[str, list[str]]]:
    """(group, languages in config order) in high / medium / low / other / control order, empty groups left out."""
    groups = {group: [] for group in GROUP_ORDER}
    for lang in languages:
        groups.setdefault(language_group(lang, extra_groups), []).append(lang)
    return [(group, members) for group, members in groups.items() if members]


def table_rows(languages: list[str], extra_groups: dict | None = None) -> list[tuple[str, str, list[str], str]]:
    """Each row as (group, label, the languages it averages, reference key)."""
    rows = []
    for group, members in grouped_languages(languages, extra_groups):
        rows += [(group, lang, [lang], lang) for lang in members]
        rows.append((group, AVERAGE, members, group))
    # Like the paper's, the overall average is over the target languages: not the English control.
    rows.append((ALL_LANGUAGES, AVERAGE, target_languages(languages), OVERALL_KEY))
    return rows


def published_languages(reference_key: str) -> set[str] | None:
    """The languages a published average is over: an Okapi group, or all 26 for "avg"."""
    if reference_key == OVERALL_KEY:
        return {lang for members in OKAPI_GROUPS.values() for lang in members}
    return set(OKAPI_GROUPS.get(reference_key, ())) or None


def paper_value(paper: dict, model: str, variant: str, members: list[str], reference_key: str) -> float | None:
    """The paper's number for a row.

    A language row: its published number. An average row: the published average when
    the row covers exactly the languages it was taken over; otherwise the mean of the
    published per-language numbers of the row's languages (so a run on some
    languages is never set against an average over others).
    """
    if set(members) == published_languages(reference_key):
        published = paper.get((model, variant, reference_key))
        if published is not None:
            return published
    return mean_or_missing([paper.get((model, variant, lang)) for lang in members])


def column_label(model: str, variant: str) -> str:
    return f"{model} {variant}"


def build_table(
    scores: dict,
    paper: dict,
    columns: list[tuple[str, str]],
    languages: list[str],
    extra_groups: dict | None = None,
) -> pd.DataFrame:
    """The numeric table (percent; None where missing).

    scores: (model, variant, lang) -> percent. paper: (model, variant, lang or
    avg/high/medium/low) -> percent. A (model, variant) gets "paper" and "diff"
    columns only when the reference has a number for it.
    """
    with_paper = {column for column in columns if any(key[:2] == column for key in paper)}
    records = []
    for group, label, members, reference_key in table_rows(languages, extra_groups):
        record = {"group": group, "language": label}
        for model, variant in columns:
            ours = cell_value([scores.get((model, variant, lang)) for lang in members])
            record[column_label(model, variant)] = ours
            if (model, variant) in with_paper:
                theirs = paper_value(paper, model, variant, members, reference_key)
                record[f"{column_label(model, variant)} (paper)"] = theirs
                record[f"{column_label(model, variant)} (diff)"] = difference(ours, theirs)
        records.append(record)
    return pd.DataFrame.from_records(records)


def format_cell(value, signed: bool = False) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    value = round(value, 1) + 0.0  # no "-0.0"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Percent with one decimal, differences signed, missing cells as "–"."""
    formatted = table[["group", "language"]].copy()
    for column in table.columns[2:]:
        signed = column.endswith("(diff)")
        formatted[column] = [format_cell(value, signed) for value in table[column].astype(object)]
    return formatted


# ---- files ----------------------------------------------------------------------------


def read_scores(paths: list, metrics: dict) -> dict:
    """(benchmark, model, variant, lang) -> percent in the benchmark's configured metric,
    or Unavailable with the reason the benchmark data gave.

    Each score file says what it scores (model, variant, benchmark, language); where it
    lies does not matter. A benchmark that `metrics` does not name is skipped.
    """
    scores = {}
    for path in map(Path, paths):
        data = json.loads(path.read_text(encoding="utf-8"))
        missing = [key for key in ("model", "variant", "benchmark", "language") if not data.get(key)]
        if missing:
            raise ValueError(f"{path}: a score file without {', '.join(missing)} (rerun its evaluation)")
        bench = data["benchmark"]
        if bench not in metrics:
            continue
        key = (bench, data["model"], data["variant"], data["language"])
        scores[key] = (
            Unavailable(data["unavailable"]) if "unavailable" in data else 100 * data["metrics"][metrics[bench]]
        )
    return scores


def read_reference(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"score": float}, keep_default_na=False)


def paper_numbers(reference: pd.DataFrame, bench: str, metric: str, split: str) -> dict:
    """(model, variant, language) -> (percent, source) for one benchmark, metric and split.

    When two sources give the same number's place, the paper wins over the summary,
    and the summary over the authors' logs.
    """
    rows = reference[
        (reference["benchmark"] == bench) & (reference["metric"] == metric) & (reference["split"] == split)
    ]
    rank = {source: index for index, source in enumerate(SOURCE_PRIORITY)}
    numbers = {}
    for row in sorted(rows.itertuples(), key=lambda r: rank.get(r.source, len(rank)), reverse=True):
        numbers[(row.model, row.variant, row.language)] = (float(row.score), row.source)
    return numbers


def unavailable_notes(scores: dict) -> list[str]:
    """One line per "n/a" cell: the column, the language and why."""
    return [
        f"{NOT_AVAILABLE}: {column_label(model, variant)}, {lang}: {value.reason}"
        for (model, variant, lang), value in sorted(scores.items())
        if isinstance(value, Unavailable)
    ]


def paper_table(
    bench: str,
    score_files: list,
    reference_file,
    languages: list[str],
    models: list[str],
    variants: list[str],
    metric: str,
    split: str,
    language_groups: dict,
    csv_path,
    markdown_path,
    latex_path,
    html_path,
    released_models: dict | None = None,
) -> pd.DataFrame:
    """Write one benchmark's table as CSV, Markdown, LaTeX and HTML.

    score_files: that benchmark's score files (another benchmark's are ignored).
    released_models: released model name -> the reference (model, variant) its
    numbers are compared with, or None; each adds a "{name} released" column.
    """
    scores = read_scores(score_files, {bench: metric})
    ours = {key[1:]: value for key, value in scores.items() if key[0] == bench}
    released_models = released_models or {}
    columns = [(model, variant) for model in models for variant in variants]
    columns += [(name, RELEASED) for name in released_models]
    # A released model's column is set against the reference numbers of the model it reproduces.
    reference_of = {column: column for column in columns}
    reference_of.update({(name, RELEASED): tuple(compared) for name, compared in released_models.items() if compared})
    shown = {row[3] for row in table_rows(languages, language_groups)}
    published = paper_numbers(read_reference(reference_file), bench, metric, split)
    paper = {
        (*column, key): published[(*reference_of[column], key)]
        for column in columns
        for key in shown
        if (*reference_of[column], key) in published
    }
    table = format_table(
        build_table(ours, {key: score for key, (score, _) in paper.items()}, columns, languages, language_groups)
    )
    sources = [source for source in SOURCE_PRIORITY if source in {source for _, source in paper.values()}]
    title = f"{TITLES.get(bench, bench)} ({metric}, %, {split} split)"
    Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(csv_path, index=False)
    notes = unavailable_notes(ours)
    for line in notes:
        log.warning("%s %s", bench, line)
    Path(markdown_path).write_text(to_markdown(table, title, sources, notes), encoding="utf-8")
    Path(latex_path).write_text(to_latex(table, title, sources), encoding="utf-8")
    Path(html_path).write_text(to_html(table, title, sources, notes), encoding="utf-8")
    log.info("%s: %d rows, %d columns -> %s", bench, len(table), len(table.columns), csv_path)
    return table

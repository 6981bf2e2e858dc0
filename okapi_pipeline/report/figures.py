"""The paper's figures: SFT vs RLHF per language, the RLHF gain by resource group,
the joint models against the per-language ones, and the training curves of every
trained model (PNG, for the report).

"RLHF" is every preference-tuned variant the config trains: `ppo` (the paper's,
labelled "RLHF (PPO)") and, when enabled, `dpo`; a joint model's variants are
joint-sft, joint-ppo, joint-dpo.
"""

import json
import logging
from pathlib import Path

from okapi_pipeline.languages import target_languages
from okapi_pipeline.report.tables import TITLES, grouped_languages, is_number, mean_or_missing, read_scores

log = logging.getLogger(__name__)

VARIANT_COLOURS = {"sft": "#7f9fc6", "ppo": "#d9822b", "dpo": "#6aa56a"}
VARIANT_LABELS = {"sft": "SFT", "ppo": "RLHF (PPO)", "dpo": "DPO"}
STAGE_NAMES = {"sft": "SFT", "reward_model": "Reward model", "ppo": "PPO policy", "dpo": "DPO"}


def variant_label(variant: str) -> str:
    """ "RLHF (PPO)" for ppo, "RLHF (PPO), joint" for joint-ppo."""
    if variant.startswith("joint-"):
        return f"{variant_label(variant.removeprefix('joint-'))}, joint"
    return VARIANT_LABELS.get(variant, variant)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def differences(scores: dict, models: list[str], languages: list[str], pairs: list[tuple[str, str]]) -> dict:
    """(model, variant, lang) -> the variant's score minus its baseline's, in points.

    scores: (model, variant, lang) -> percent; pairs: (variant, baseline), e.g. (ppo,
    sft) or (joint-ppo, ppo). A missing score gives None.
    """
    result = {}
    for model in models:
        for variant, baseline in pairs:
            for lang in languages:
                ours, theirs = scores.get((model, variant, lang)), scores.get((model, baseline, lang))
                result[(model, variant, lang)] = None if ours is None or theirs is None else ours - theirs
    return result


def gains_by_group(
    scores: dict,
    models: list[str],
    languages: list[str],
    pairs: list[tuple[str, str]],
    extra_groups: dict | None = None,
) -> dict:
    """(model, variant, group) -> the mean of `differences` over the group's languages.

    Groups in high / medium / low / other / control order, then "all" (the target
    languages: not the English control). As in the tables, a group
    with a missing score has no mean (None).
    """
    per_language = differences(scores, models, languages, pairs)
    groups = grouped_languages(languages, extra_groups) + [("all", target_languages(languages))]
    return {
        (model, variant, group): mean_or_missing([per_language[(model, variant, lang)] for lang in members])
        for model in models
        for variant, _ in pairs
        for group, members in groups
    }


def _grouped_bars(axis, categories: list[str], series: list[tuple[str, list, str | None]]) -> None:
    """One bar per series side by side at each category (a None value draws no bar).

    series: (legend label, one value per category, colour or None).
    """
    width = 0.8 / max(len(series), 1)
    for number, (label, values, colour) in enumerate(series):
        offset = (number - (len(series) - 1) / 2) * width
        positions = [index + offset for index, value in enumerate(values) if value is not None]
        axis.bar(positions, [value for value in values if value is not None], width, label=label, color=colour)
    axis.set_xticks(range(len(categories)), categories)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)


def plot_sft_vs_rlhf(
    scores: dict,
    models: list[str],
    languages: list[str],
    variants: list[str],
    title: str,
    out_path,
    extra_groups: dict | None = None,
    baseline: str = "sft",
) -> None:
    """Grouped bars: SFT and each RLHF variant per language (ordered by resource group), one panel per model."""
    plt = _pyplot()
    ordered = [lang for _, members in grouped_languages(languages, extra_groups) for lang in members]
    figure, axes = plt.subplots(
        len(models), 1, figsize=(max(6, 0.6 * len(ordered) + 2), 2.8 * len(models)), squeeze=False, sharey=True
    )
    for axis, model in zip(axes[:, 0], models):
        series = [
            (
                variant_label(variant),
                [scores.get((model, variant, lang)) for lang in ordered],
                VARIANT_COLOURS.get(variant.removeprefix("joint-")),
            )
            for variant in [baseline, *variants]
        ]
        _grouped_bars(axis, ordered, series)
        axis.set_title(model, fontsize=10)
        axis.set_ylabel("accuracy (%)")
    figure.suptitle(title)
    _save(figure, out_path)


def _differences_panel(axis, differences: dict, title: str, ylabel: str) -> None:
    """Bars of (model, variant, category) -> points, one series per (model, variant)."""
    categories = list(dict.fromkeys(category for _, _, category in differences))
    series = [
        (f"{model} {variant_label(variant)}", [differences.get((model, variant, c)) for c in categories], None)
        for model, variant in dict.fromkeys((model, variant) for model, variant, _ in differences)
    ]
    _grouped_bars(axis, categories, series)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_ylabel(ylabel)
    axis.set_title(title)


def plot_gains_by_group(gains: dict, title: str, out_path) -> None:
    """Bars of the mean gain over SFT per resource group, one bar per (model, variant)."""
    figure, axis = _pyplot().subplots(figsize=(8, 3.5))
    _differences_panel(axis, gains, title, "gain over SFT (points)")
    _save(figure, out_path)


def benchmark_scores(score_files: list, bench: str, metric: str) -> dict:
    """(model, variant, lang) -> percent of one benchmark; a benchmark not available in a
    language is left out, like a missing score."""
    scores = read_scores(score_files, {bench: metric})
    return {key[1:]: value for key, value in scores.items() if key[0] == bench and is_number(value)}


def paper_figures(
    bench: str,
    score_files: list,
    models: list[str],
    variants: list[str],
    languages: list[str],
    metric: str,
    language_groups: dict,
    comparison_path,
    gain_path,
    baseline: str = "sft",
) -> dict:
    """One benchmark's figures: SFT vs RLHF per language, and the gain over SFT by group.

    score_files: that benchmark's score files (another benchmark's are ignored).
    variants: the preference-tuned variants set against `baseline` (ppo, dpo against
    sft; joint-ppo, joint-dpo against joint-sft).
    """
    ours = benchmark_scores(score_files, bench, metric)
    name = f"{TITLES.get(bench, bench)} ({metric})"
    plot_sft_vs_rlhf(
        ours, models, languages, variants, f"{name}: SFT vs RLHF", comparison_path, language_groups, baseline
    )
    gains = gains_by_group(ours, models, languages, [(variant, baseline) for variant in variants], language_groups)
    plot_gains_by_group(gains, f"{name}: gain over SFT by resource group", gain_path)
    log.info("%s: gains %s", bench, {" ".join(key): value for key, value in gains.items()})
    return gains


def joint_figure(
    bench: str,
    score_files: list,
    models: list[str],
    variants: list[str],
    languages: list[str],
    metric: str,
    language_groups: dict,
    out_path,
) -> dict:
    """Each joint model's score minus its per-language counterpart's (joint-sft minus
    sft, ...): per language, ordered by resource group, above; by group below.

    variants: the trained variants of both scopes (sft, ppo, dpo). Returns the group means.
    """
    ours = benchmark_scores(score_files, bench, metric)
    pairs = [(f"joint-{variant}", variant) for variant in variants]
    per_language = differences(ours, models, languages, pairs)
    gains = gains_by_group(ours, models, languages, pairs, language_groups)
    ordered = [lang for _, members in grouped_languages(languages, language_groups) for lang in members]
    by_language = {
        (model, variant, lang): per_language[(model, variant, lang)]
        for model in models
        for variant, _ in pairs
        for lang in ordered
    }
    bars = len(models) * len(pairs)
    figure, (top, bottom) = _pyplot().subplots(2, 1, figsize=(max(8, 0.25 * len(ordered) * bars + 3), 7))
    name = f"{TITLES.get(bench, bench)} ({metric})"
    _differences_panel(top, by_language, f"{name}: joint minus per-language, by language", "points")
    _differences_panel(bottom, gains, "by resource group", "mean difference (points)")
    _save(figure, out_path)
    log.info("%s: joint minus per-language %s", bench, {" ".join(key): value for key, value in gains.items()})
    return gains


# ---- training curves --------------------------------------------------------------------


def training_panels(summaries: dict) -> list[tuple[str, str, list[tuple[str, list, list]]]]:
    """(stage, y label, [(series label, steps, values)]) for each panel with data.

    summaries: stage name (sft, reward_model, ppo, dpo) -> the parsed training_summary.json.
    """
    panels = []
    for stage, summary in summaries.items():
        losses = [
            (key.replace("_", " "), [p["step"] for p in summary.get(key, [])], [p[key] for p in summary.get(key, [])])
            for key in ("loss", "eval_loss")
        ]
        name = STAGE_NAMES.get(stage, stage)
        panels.append((f"{name} loss", "loss", [series for series in losses if series[1]]))
        # PPO keeps its reward and KL per step (okapi_pipeline.training.ppo.CURVES).
        for key, label in (("reward", "reward-model score"), ("kl", "KL to SFT")):
            if summary.get(key):
                points = summary[key]
                panels.append(
                    (f"PPO {label}", label, [(key, [p["step"] for p in points], [p["value"] for p in points])])
                )
    return [panel for panel in panels if panel[2]]


def plot_training_curves(summary_paths: dict, title: str, out_path) -> None:
    """One panel per curve of the SFT, reward-model, PPO and DPO summaries of one model."""
    plt = _pyplot()
    summaries = {stage: json.loads(Path(path).read_text(encoding="utf-8")) for stage, path in summary_paths.items()}
    panels = training_panels(summaries)
    columns = min(3, max(len(panels), 1))
    rows = max(1, -(-len(panels) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3 * rows), squeeze=False)
    for axis, (name, label, series) in zip(axes.flat, panels):
        for series_label, steps, values in series:
            axis.plot(steps, values, marker="o", markersize=3, label=series_label)
        axis.set_title(name, fontsize=10)
        axis.set_xlabel("step")
        axis.set_ylabel(label)
        if len(series) > 1:
            axis.legend(fontsize=8)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    figure.suptitle(title)
    _save(figure, out_path)


def _save(figure, out_path) -> None:
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    figure.clf()
    _pyplot().close(figure)

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

from okapi_pipeline.tables import TITLES, grouped_languages, is_number, mean_or_missing, read_scores

log = logging.getLogger(__name__)

VARIANT_COLOURS = {"sft": "#7f9fc6", "ppo": "#d9822b", "dpo": "#6aa56a"}
VARIANT_LABELS = {"sft": "SFT", "ppo": "RLHF (PPO)", "dpo": "DPO"}
STAGE_NAMES = {"sft": "SFT", "rm": "Reward model", "ppo": "PPO policy", "dpo": "DPO"}


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

    Groups in high / medium / low / other order, then "all". As in the tables, a group
    with a missing score has no mean (None).
    """
    per_language = differences(scores, models, languages, pairs)
    groups = grouped_languages(languages, extra_groups) + [("all", list(languages))]
    return {
        (model, variant, group): mean_or_missing([per_language[(model, variant, lang)] for lang in members])
        for model in models
        for variant, _ in pairs
        for group, members in groups
    }


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
    shown = [baseline, *variants]
    width = 0.8 / len(shown)
    for axis, model in zip(axes[:, 0], models):
        for number, variant in enumerate(shown):
            offset = (number - (len(shown) - 1) / 2) * width
            values = [scores.get((model, variant, lang)) for lang in ordered]
            positions = [index + offset for index, value in enumerate(values) if value is not None]
            axis.bar(
                positions,
                [value for value in values if value is not None],
                width,
                label=variant_label(variant),
                color=VARIANT_COLOURS.get(variant.removeprefix("joint-")),
            )
        axis.set_xticks(range(len(ordered)), ordered)
        axis.set_title(model, fontsize=10)
        axis.set_ylabel("accuracy (%)")
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.suptitle(title)
    _save(figure, out_path)


def plot_gains_by_group(gains: dict, title: str, out_path, axis=None, ylabel: str = "gain over SFT (points)") -> None:
    """Bars of the mean gain per resource group, one bar per (model, variant); drawn on
    `axis` when given (and saved by the caller)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(group for _, _, group in gains))
    series = list(dict.fromkeys((model, variant) for model, variant, _ in gains))
    figure, axis = plt.subplots(figsize=(8, 3.5)) if axis is None else (None, axis)
    width = 0.8 / max(len(series), 1)
    for index, (model, variant) in enumerate(series):
        values = [gains.get((model, variant, group)) for group in groups]
        positions = [g + (index - (len(series) - 1) / 2) * width for g, value in enumerate(values) if value is not None]
        axis.bar(
            positions,
            [value for value in values if value is not None],
            width,
            label=f"{model} {variant_label(variant)}",
        )
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylabel(ylabel)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axis.set_title(title)
    if figure is not None:
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
    series = [(model, variant) for model in models for variant, _ in pairs]
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.5 * len(ordered) * len(series) / 2 + 3), 7))
    width = 0.8 / max(len(series), 1)
    for index, (model, variant) in enumerate(series):
        values = [per_language[(model, variant, lang)] for lang in ordered]
        positions = [i + (index - (len(series) - 1) / 2) * width for i, value in enumerate(values) if value is not None]
        top.bar(positions, [v for v in values if v is not None], width, label=f"{model} {variant_label(variant)}")
    top.axhline(0, color="black", linewidth=0.8)
    top.set_xticks(range(len(ordered)), ordered)
    top.set_ylabel("joint minus per-language (points)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    name = f"{TITLES.get(bench, bench)} ({metric})"
    top.set_title(f"{name}: joint minus per-language, by language")
    plot_gains_by_group(gains, "by resource group", out_path, axis=bottom, ylabel="mean difference (points)")
    _save(figure, out_path)
    log.info("%s: joint minus per-language %s", bench, {" ".join(key): value for key, value in gains.items()})
    return gains


# ---- training curves --------------------------------------------------------------------


def training_panels(summaries: dict) -> list[tuple[str, str, list[tuple[str, list, list]]]]:
    """(stage, y label, [(series label, steps, values)]) for each panel with data.

    summaries: stage name (sft, rm, ppo, dpo) -> the parsed training_summary.json.
    """
    panels = []
    for stage, summary in summaries.items():
        losses = [
            (key.replace("_", " "), [p["step"] for p in summary.get(key, [])], [p[key] for p in summary.get(key, [])])
            for key in ("loss", "eval_loss")
        ]
        name = STAGE_NAMES.get(stage, stage)
        panels.append((f"{name} loss", "loss", [series for series in losses if series[1]]))
        # PPO keeps its reward and KL per step (okapi_pipeline.ppo.CURVES).
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

"""The paper's figures: SFT vs RLHF per language, the RLHF gain by resource group,
and the training curves of every trained model (PNG, for the report).

"RLHF" is every preference-tuned variant the config trains: `ppo` (the paper's,
labelled "RLHF (PPO)") and, when enabled, `dpo`.
"""

import json
import logging
from pathlib import Path

from okapi_pipeline.tables import TITLES, grouped_languages, is_number, mean_or_missing, read_scores

log = logging.getLogger(__name__)

VARIANT_COLOURS = {"sft": "#7f9fc6", "ppo": "#d9822b", "dpo": "#6aa56a"}
VARIANT_LABELS = {"sft": "SFT", "ppo": "RLHF (PPO)", "dpo": "DPO"}
STAGE_NAMES = {"sft": "SFT", "rm": "Reward model", "ppo": "PPO policy", "dpo": "DPO"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def gains_by_group(
    scores: dict, models: list[str], languages: list[str], variants: list[str], extra_groups: dict | None = None
) -> dict:
    """(model, variant, group) -> mean gain over SFT in points over the group's languages.

    scores: (model, variant, lang) -> percent. Groups in high / medium / low / other
    order, then "all". As in the tables, a group with a missing score has no mean (None).
    """
    gains = {}
    groups = grouped_languages(languages, extra_groups) + [("all", list(languages))]
    for model in models:
        for variant in variants:
            for group, members in groups:
                per_language = []
                for lang in members:
                    sft, tuned = scores.get((model, "sft", lang)), scores.get((model, variant, lang))
                    per_language.append(None if sft is None or tuned is None else tuned - sft)
                gains[(model, variant, group)] = mean_or_missing(per_language)
    return gains


def plot_sft_vs_rlhf(
    scores: dict,
    models: list[str],
    languages: list[str],
    variants: list[str],
    title: str,
    out_path,
    extra_groups: dict | None = None,
) -> None:
    """Grouped bars: SFT and each RLHF variant per language (ordered by resource group), one panel per model."""
    plt = _pyplot()
    ordered = [lang for _, members in grouped_languages(languages, extra_groups) for lang in members]
    figure, axes = plt.subplots(
        len(models), 1, figsize=(max(6, 0.6 * len(ordered) + 2), 2.8 * len(models)), squeeze=False, sharey=True
    )
    shown = ["sft", *variants]
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
                label=VARIANT_LABELS.get(variant, variant),
                color=VARIANT_COLOURS.get(variant),
            )
        axis.set_xticks(range(len(ordered)), ordered)
        axis.set_title(model, fontsize=10)
        axis.set_ylabel("accuracy (%)")
        axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    figure.suptitle(title)
    _save(figure, out_path)


def plot_gains_by_group(gains: dict, title: str, out_path) -> None:
    """Bars of the mean gain over SFT per resource group, one bar per (model, variant)."""
    plt = _pyplot()
    groups = list(dict.fromkeys(group for _, _, group in gains))
    series = list(dict.fromkeys((model, variant) for model, variant, _ in gains))
    figure, axis = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / max(len(series), 1)
    for index, (model, variant) in enumerate(series):
        values = [gains.get((model, variant, group)) for group in groups]
        positions = [g + (index - (len(series) - 1) / 2) * width for g, value in enumerate(values) if value is not None]
        axis.bar(
            positions,
            [value for value in values if value is not None],
            width,
            label=f"{model} {VARIANT_LABELS.get(variant, variant)}",
        )
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylabel("gain over SFT (points)")
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    axis.set_title(title)
    _save(figure, out_path)


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
) -> dict:
    """One benchmark's figures: SFT vs RLHF per language, and the gain over SFT by group.

    score_files: that benchmark's score files (another benchmark's are ignored).
    variants: the preference-tuned variants set against SFT (ppo, dpo).
    """
    scores = read_scores(score_files, {bench: metric})
    # A benchmark not available in a language is left out, like a missing score.
    ours = {key[1:]: value for key, value in scores.items() if key[0] == bench and is_number(value)}
    name = f"{TITLES.get(bench, bench)} ({metric})"
    plot_sft_vs_rlhf(ours, models, languages, variants, f"{name}: SFT vs RLHF", comparison_path, language_groups)
    gains = gains_by_group(ours, models, languages, variants, language_groups)
    plot_gains_by_group(gains, f"{name}: gain over SFT by resource group", gain_path)
    log.info("%s: gains %s", bench, {" ".join(key): value for key, value in gains.items()})
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

"""The paper's figures: SFT vs RLHF per language, the RLHF gain by resource group,
and the training curves of every trained model (PNG, for the report)."""

import json
import logging
from pathlib import Path

from okapi_pipeline.tables import TITLES, grouped_languages, mean_or_missing, read_scores

log = logging.getLogger(__name__)

VARIANT_COLOURS = {"sft": "#7f9fc6", "rlhf": "#d9822b"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def gains_by_group(scores: dict, models: list[str], languages: list[str],
                   extra_groups: dict | None = None) -> dict:
    """(model, group) -> mean RLHF-minus-SFT gain in points over the group's languages.

    scores: (model, variant, lang) -> percent. Groups in high / medium / low / other
    order, then "all". As in the tables, a group with a missing score has no mean (None).
    """
    gains = {}
    groups = grouped_languages(languages, extra_groups) + [("all", list(languages))]
    for model in models:
        for group, members in groups:
            per_language = []
            for lang in members:
                sft, rlhf = scores.get((model, "sft", lang)), scores.get((model, "rlhf", lang))
                per_language.append(None if sft is None or rlhf is None else rlhf - sft)
            gains[(model, group)] = mean_or_missing(per_language)
    return gains


def plot_sft_vs_rlhf(scores: dict, models: list[str], languages: list[str], title: str, out_path,
                     extra_groups: dict | None = None) -> None:
    """Grouped bars: SFT and RLHF per language (ordered by resource group), one panel per model."""
    plt = _pyplot()
    ordered = [lang for _, members in grouped_languages(languages, extra_groups) for lang in members]
    figure, axes = plt.subplots(len(models), 1, figsize=(max(6, 0.6 * len(ordered) + 2), 2.8 * len(models)),
                                squeeze=False, sharey=True)
    width = 0.4
    for axis, model in zip(axes[:, 0], models):
        for offset, variant in ((-width / 2, "sft"), (width / 2, "rlhf")):
            values = [scores.get((model, variant, lang)) for lang in ordered]
            positions = [index + offset for index, value in enumerate(values) if value is not None]
            axis.bar(positions, [value for value in values if value is not None], width,
                     label=variant.upper(), color=VARIANT_COLOURS[variant])
        axis.set_xticks(range(len(ordered)), ordered)
        axis.set_title(model, fontsize=10)
        axis.set_ylabel("accuracy (%)")
        axis.legend(loc="upper right", fontsize=8)
    figure.suptitle(title)
    _save(figure, out_path)


def plot_gains_by_group(gains: dict, models: list[str], title: str, out_path) -> None:
    """Bars of the mean RLHF-minus-SFT gain per resource group, one colour per model."""
    plt = _pyplot()
    groups = list(dict.fromkeys(group for _, group in gains))
    figure, axis = plt.subplots(figsize=(6, 3.5))
    width = 0.8 / max(len(models), 1)
    for index, model in enumerate(models):
        values = [gains.get((model, group)) for group in groups]
        positions = [g + (index - (len(models) - 1) / 2) * width for g, value in enumerate(values) if value is not None]
        axis.bar(positions, [value for value in values if value is not None], width, label=model)
    axis.axhline(0, color="black", linewidth=0.8)
    axis.set_xticks(range(len(groups)), groups)
    axis.set_ylabel("RLHF - SFT (points)")
    axis.legend(fontsize=8)
    axis.set_title(title)
    _save(figure, out_path)


def paper_figures(score_files: list, models: list[str], languages: list[str], benchmarks: list[str],
                  metrics: dict, language_groups: dict, comparison_paths: list, gain_paths: list) -> dict:
    """Per benchmark (paths in `benchmarks` order): SFT vs RLHF per language, and the gain by group."""
    scores = read_scores(score_files, metrics)
    all_gains = {}
    for bench, comparison_path, gain_path in zip(benchmarks, comparison_paths, gain_paths):
        ours = {key[1:]: value for key, value in scores.items() if key[0] == bench}
        name = f"{TITLES.get(bench, bench)} ({metrics[bench]})"
        plot_sft_vs_rlhf(ours, models, languages, f"{name}: SFT vs RLHF", comparison_path, language_groups)
        all_gains[bench] = gains_by_group(ours, models, languages, language_groups)
        plot_gains_by_group(all_gains[bench], models, f"{name}: RLHF gain by resource group", gain_path)
        log.info("%s: gains %s", bench, {f"{m} {g}": v for (m, g), v in all_gains[bench].items()})
    return all_gains


# ---- training curves --------------------------------------------------------------------


def training_panels(summaries: dict) -> list[tuple[str, str, list[tuple[str, list, list]]]]:
    """(stage, y label, [(series label, steps, values)]) for each panel with data.

    summaries: stage name (sft, rm, rlhf) -> the parsed training_summary.json.
    """
    panels = []
    for stage, summary in summaries.items():
        losses = [(key.replace("_", " "), [p["step"] for p in summary.get(key, [])],
                   [p[key] for p in summary.get(key, [])]) for key in ("loss", "eval_loss")]
        name = "PPO policy" if stage == "rlhf" else stage.upper()
        panels.append((f"{name} loss", "loss", [series for series in losses if series[1]]))
        # PPO keeps its reward and KL per step (okapi_pipeline.ppo.CURVES).
        for key, label in (("reward", "reward-model score"), ("kl", "KL to SFT")):
            if summary.get(key):
                points = summary[key]
                panels.append((f"PPO {label}", label, [(key, [p["step"] for p in points],
                                                        [p["value"] for p in points])]))
    return [panel for panel in panels if panel[2]]


def plot_training_curves(summary_paths: dict, title: str, out_path) -> None:
    """One panel per curve of the SFT, reward-model and PPO summaries of one model."""
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
    for axis in list(axes.flat)[len(panels):]:
        axis.axis("off")
    figure.suptitle(title)
    _save(figure, out_path)


def _save(figure, out_path) -> None:
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(out_path, dpi=110)
    figure.clf()
    _pyplot().close(figure)

"""The paper's figures and the training curves: the gain arithmetic and the PNG files."""

import json

import pytest

from okapi_pipeline.report.figures import (
    gains_by_group,
    joint_figure,
    paper_figures,
    plot_training_curves,
    training_panels,
    variant_label,
)
from tests.support.scores import write_score

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_gain_is_ppo_minus_sft_averaged_per_group_and_overall():
    scores = {
        ("m", "sft", "vi"): 30.0,
        ("m", "ppo", "vi"): 34.0,  # high: +4
        ("m", "sft", "id"): 40.0,
        ("m", "ppo", "id"): 41.0,  # medium: +1 and +3
        ("m", "sft", "hu"): 20.0,
        ("m", "ppo", "hu"): 23.0,
        ("m", "sft", "bn"): 25.0,
        ("m", "ppo", "bn"): 24.0,
    }  # low: -1
    gains = gains_by_group(scores, ["m"], ["vi", "id", "hu", "bn"], [("ppo", "sft")])
    assert list(gains) == [("m", "ppo", "high"), ("m", "ppo", "medium"), ("m", "ppo", "low"), ("m", "ppo", "all")]
    assert gains[("m", "ppo", "high")] == pytest.approx(4.0)
    assert gains[("m", "ppo", "medium")] == pytest.approx(2.0)
    assert gains[("m", "ppo", "low")] == pytest.approx(-1.0)
    assert gains[("m", "ppo", "all")] == pytest.approx((4 + 1 + 3 - 1) / 4)


def test_a_group_with_a_missing_score_has_no_gain():
    scores = {
        ("m", "sft", "vi"): 30.0,
        ("m", "ppo", "vi"): 34.0,
        ("m", "sft", "bn"): 25.0,
        ("m", "dpo", "vi"): 29.0,
        ("m", "dpo", "bn"): 26.0,
    }
    gains = gains_by_group(scores, ["m"], ["vi", "bn"], [("ppo", "sft"), ("dpo", "sft")])
    assert gains[("m", "ppo", "high")] == pytest.approx(4.0)
    assert gains[("m", "ppo", "low")] is None and gains[("m", "ppo", "all")] is None
    assert gains[("m", "dpo", "all")] == pytest.approx(0.0)  # -1 and +1


def is_png(path) -> bool:
    return path.exists() and path.read_bytes()[:8] == PNG_SIGNATURE and path.stat().st_size > 5000


def test_paper_figures_are_written_per_benchmark(tmp_path):
    paths = [
        write_score(tmp_path / "scores", model, variant, lang, bench, 0.3 + 0.01 * index, 0.4 + 0.02 * index)
        for model in ("tiny-llama", "tiny-bloom")
        for index, variant in enumerate(("sft", "ppo"))
        for lang in ("vi", "id", "bn")
        for bench in ("arc", "mmlu")
    ]
    comparison = {bench: tmp_path / "figures" / bench / "sft_vs_rlhf.png" for bench in ("arc", "mmlu")}
    gain = {bench: tmp_path / "figures" / bench / "gain_by_group.png" for bench in ("arc", "mmlu")}
    gains = {
        bench: paper_figures(
            bench=bench,
            score_files=paths,
            models=["tiny-llama", "tiny-bloom"],
            variants=["ppo"],
            languages=["vi", "id", "bn"],
            metric=metric,
            language_groups={},
            comparison_path=comparison[bench],
            gain_path=gain[bench],
        )
        for bench, metric in (("arc", "acc_norm"), ("mmlu", "acc"))
    }
    assert all(is_png(path) for path in [*comparison.values(), *gain.values()])
    assert gains["arc"][("tiny-bloom", "ppo", "all")] == pytest.approx(2.0)  # acc_norm 0.42 - 0.40
    assert gains["mmlu"][("tiny-llama", "ppo", "low")] == pytest.approx(1.0)  # acc 0.31 - 0.30


def test_the_joint_figure_is_joint_minus_per_language_per_language_and_group(tmp_path):
    accuracies = {("sft", "vi"): 0.30, ("joint-sft", "vi"): 0.34, ("sft", "bn"): 0.20, ("joint-sft", "bn"): 0.18}
    accuracies |= {("ppo", lang): 0.25 for lang in ("vi", "bn")} | {("joint-ppo", lang): 0.27 for lang in ("vi", "bn")}
    paths = [
        write_score(tmp_path / "scores", "m", variant, lang, "arc", value, value)
        for (variant, lang), value in accuracies.items()
    ]
    out = tmp_path / "figures" / "arc" / "joint_minus_per_language.png"
    gains = joint_figure("arc", paths, ["m"], ["sft", "ppo"], ["vi", "bn"], "acc", {}, out)
    assert is_png(out)
    assert gains[("m", "joint-sft", "high")] == pytest.approx(4.0)  # vi: 34 - 30
    assert gains[("m", "joint-sft", "low")] == pytest.approx(-2.0)  # bn: 18 - 20
    assert gains[("m", "joint-sft", "all")] == pytest.approx(1.0)
    assert gains[("m", "joint-ppo", "all")] == pytest.approx(2.0)
    assert variant_label("joint-ppo") == "RLHF (PPO), joint"


def summary(stage: str, steps: int, extra: dict | None = None) -> dict:
    return {
        "stage": stage,
        "steps": steps,
        "loss": [{"step": s, "loss": 2.0 / s} for s in range(1, steps + 1)],
        "eval_loss": [{"step": steps, "eval_loss": 1.5}],
        **(extra or {}),
    }


def test_training_curves_plot_losses_and_ppo_reward_and_kl(tmp_path):
    ppo = summary(
        "ppo",
        4,
        {
            "reward": [{"step": s, "episode": 8 * s, "value": 0.1 * s} for s in range(1, 5)],
            "kl": [{"step": s, "episode": 8 * s, "value": 0.01 * s} for s in range(1, 5)],
        },
    )
    paths = {}
    for stage, data in (
        ("sft", summary("sft", 6)),
        ("reward_model", summary("reward_model", 3)),
        ("ppo", ppo),
        ("dpo", summary("dpo", 2)),
    ):
        paths[stage] = tmp_path / stage / "training_summary.json"
        paths[stage].parent.mkdir()
        paths[stage].write_text(json.dumps(data))
    panels = training_panels({stage: json.loads(path.read_text()) for stage, path in paths.items()})
    assert [name for name, _, _ in panels] == [
        "SFT loss",
        "Reward model loss",
        "PPO policy loss",
        "PPO reward-model score",
        "PPO KL to SFT",
        "DPO loss",
    ]
    assert [label for label, _, _ in panels[0][2]] == ["loss", "eval loss"]
    assert panels[4][2][0][1:] == ([1, 2, 3, 4], [0.01, 0.02, 0.03, 0.04])
    out = tmp_path / "curves.png"
    plot_training_curves(paths, "tiny-llama vi", out)
    assert is_png(out)

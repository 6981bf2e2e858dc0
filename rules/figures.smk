"""The paper's figures and the training curves, for the Snakemake report."""


rule paper_figures:
    """One benchmark: SFT vs RLHF per language, and the RLHF gain by resource group."""
    input:
        scores=trained_benchmark_scores,
    output:
        comparison=report(
            "results/figures/{bench}/sft_vs_rlhf.png",
            caption="../report/sft_vs_rlhf.rst",
            category="Figures",
            subcategory="SFT vs RLHF",
            labels={"benchmark": "{bench}"},
        ),
        gain=report(
            "results/figures/{bench}/gain_by_group.png",
            caption="../report/gain_by_group.rst",
            category="Figures",
            subcategory="Gain over SFT by resource group",
            labels={"benchmark": "{bench}"},
        ),
    log:
        "logs/figures/{bench}.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        models=MODELS,
        baseline=BASELINE,
        variants=TUNED_VARIANTS,
        languages=LANGUAGES,
        metric=evaluation_metric,
        language_groups=config["language_groups"],
    script:
        "../scripts/paper_figures.py"


rule training_curves:
    """Loss of SFT and the reward model, PPO's loss, reward and KL (and DPO's loss) of one model."""
    input:
        unpack(trained_models),
    output:
        report(
            "results/figures/training/{model}/{lang}.png",
            caption="../report/training_curves.rst",
            category="Training curves",
            subcategory="{model}",
            labels={"model": "{model}", "language": "{lang}"},
        ),
    log:
        "logs/figures/training/{model}/{lang}.log",
    wildcard_constraints:
        lang=LANGUAGE_OR_JOINT,
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/training_curves.py"


rule joint_figure:
    """One benchmark: each joint model's score minus its per-language counterpart's,
    per language and by resource group (training.scope with both scopes)."""
    input:
        scores=trained_benchmark_scores,
    output:
        report(
            "results/figures/{bench}/joint_minus_per_language.png",
            caption="../report/joint_minus_per_language.rst",
            category="Figures",
            subcategory="Joint minus per-language",
            labels={"benchmark": "{bench}"},
        ),
    log:
        "logs/figures/{bench}/joint.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        models=MODELS,
        variants=TRAINED_VARIANTS,
        languages=LANGUAGES,
        metric=evaluation_metric,
        language_groups=config["language_groups"],
    script:
        "../scripts/joint_figure.py"


rule figures:
    """Target: the paper's figures and every model's training curves."""
    input:
        expand(
            "results/figures/{bench}/{figure}.png",
            bench=BENCHMARKS if MODELS else [],
            figure=["sft_vs_rlhf", "gain_by_group"]
            + (["joint_minus_per_language"] if PER_LANGUAGE and JOINT else []),
        ),
        expand(
            "results/figures/training/{model}/{lang}.png",
            model=MODELS,
            lang=TRAINING_UNITS,
        ),

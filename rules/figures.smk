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
    localrule: True
    conda:
        "../envs/report.yaml"
    script:
        "../scripts/training_curves.py"


rule figures:
    """Target: the paper's figures and every model's training curves."""
    input:
        expand(
            "results/figures/{bench}/{figure}.png",
            bench=BENCHMARKS if MODELS else [],
            figure=["sft_vs_rlhf", "gain_by_group"],
        ),
        expand(
            "results/figures/training/{model}/{lang}.png", model=MODELS, lang=LANGUAGES
        ),

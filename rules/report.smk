"""The paper's figures and the training curves, for the Snakemake report."""


rule paper_figures:
    """Per benchmark: SFT vs RLHF per language, and the RLHF gain by resource group."""
    input:
        scores=trained_scores(),
    output:
        comparison=report(
            expand("results/figures/{bench}/sft_vs_rlhf.png", bench=BENCHMARKS),
            caption="../report/sft_vs_rlhf.rst",
            category="Figures",
            subcategory="SFT vs RLHF",
        ),
        gain=report(
            expand("results/figures/{bench}/gain_by_group.png", bench=BENCHMARKS),
            caption="../report/gain_by_group.rst",
            category="Figures",
            subcategory="Gain over SFT by resource group",
        ),
    log:
        "logs/figures/paper_figures.log",
    localrule: True
    conda:
        "../envs/report.yaml"
    params:
        models=MODELS,
        variants=TUNED_VARIANTS,
        languages=LANGUAGES,
        benchmarks=list(BENCHMARKS),
        metrics={bench: config["evaluation"][bench]["metric"] for bench in BENCHMARKS},
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
        rules.paper_figures.output if MODELS else [],
        expand(
            "results/figures/training/{model}/{lang}.png", model=MODELS, lang=LANGUAGES
        ),

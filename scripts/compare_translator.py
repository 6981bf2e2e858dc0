import logging
import sys

from okapi_pipeline.config import account_share, translator_settings
from okapi_pipeline.llm import exit_on_user_error
from okapi_pipeline.report.translators import compare_translator

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
name = snakemake.wildcards.translator
comparison = snakemake.params.comparison
with exit_on_user_error():
    compare_translator(
        english_path=snakemake.input.english,
        language=snakemake.wildcards.lang,
        name=name,
        # Answer-shaping settings from the params (they decide reruns), the rest from config;
        # an API translator paces itself to its share of the account's limits.
        settings=account_share(
            snakemake.config, {**translator_settings(snakemake.config, name), **snakemake.params.llm}
        ),
        prompt_file=snakemake.input.prompt,
        back_prompt_file=snakemake.input.back_translation_prompt,
        size=comparison["sample_size"],
        seed=comparison["seed"],
        out_path=snakemake.output[0],
        threads=snakemake.threads,
        gpu_hour_usd=comparison["gpu_hour_usd"],
        budget_key=(
            f"translator_comparison.translators.{name}.budget_usd"
            if name in comparison["translators"]
            else "llm.budget_usd (or translation.llm.budget_usd)"
        ),
    )

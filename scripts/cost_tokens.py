import logging
import sys

from okapi_pipeline.report.cost import TOKEN_COLUMNS, benchmark_fields, count_tokens, write_rows

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
rows = count_tokens(
    instructions=snakemake.input.instructions or None,
    seed_tasks=snakemake.input.seed_tasks or None,
    prompts={
        "translation": snakemake.input.translation_prompt,
        "self_instruct": snakemake.input.self_instruct_prompt,
        "rank": snakemake.input.rank_prompt,
        "back_translation": snakemake.input.back_translation_prompt,
        "benchmarks": snakemake.input.benchmark_prompt,
    },
    languages=snakemake.params.languages,
    responders=snakemake.params.responders,
    sizes=snakemake.params.sizes,
    self_instruct=snakemake.params.self_instruct,
    ranking=snakemake.params.ranking,
    stages=tuple(snakemake.params.stages),
    benchmark_fields=benchmark_fields(snakemake.params.benchmarks),
    models=snakemake.params.models,
)
write_rows(snakemake.output[0], rows, TOKEN_COLUMNS)

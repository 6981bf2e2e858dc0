import logging
import sys
from pathlib import Path

from okapi_pipeline.report.figures import plot_training_curves

sys.stderr = open(snakemake.log[0], "w", buffering=1)
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
plot_training_curves(
    summary_paths={stage: Path(model_dir) / "training_summary.json" for stage, model_dir in snakemake.input.items()},
    title=f"{snakemake.wildcards.model} {snakemake.wildcards.lang}: training curves",
    out_path=snakemake.output[0],
)

"""okapi-pipeline: Okapi (Lai et al. 2023) as a Snakemake workflow.

Multilingual instruction data, ranked responses, SFT, reward model, PPO and
translated-benchmark evaluation, ending in the paper's tables.
"""

import os
import sys

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


# The okapi_pipeline package comes from this checkout: for the rules here and for every
# job, whatever its environment (the venv, a per-rule conda env, a cluster node).
sys.path.insert(0, workflow.basedir)
os.environ.update(
    PYTHONPATH=os.pathsep.join(
        filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])
    )
)


# A job the cluster cancels must fail and be retried, not be waited on forever
# (okapi_pipeline/cluster/slurm_states.py).
if "snakemake_executor_plugin_slurm" in sys.modules:
    from okapi_pipeline.cluster.slurm_states import read_first_words

    read_first_words(sys.modules["snakemake_executor_plugin_slurm"])


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/models.smk"
include: "rules/okapi_release.smk"
include: "rules/instructions.smk"
include: "rules/translate.smk"
include: "rules/translators.smk"
include: "rules/cost.smk"
include: "rules/joint.smk"
include: "rules/sft.smk"
include: "rules/ranking.smk"
include: "rules/reward_model.smk"
include: "rules/ppo.smk"
include: "rules/dpo.smk"
include: "rules/benchmarks.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"


rule all:
    """Everything: the paper's tables and all that they depend on."""
    default_target: True
    input:
        rules.tables.input,
        rules.figures.input,
        rules.translations.input,


onstart:
    # A stage that will call the API needs its key before the first job runs, not after
    # the jobs before it (a dry run plans without any key).
    from okapi_pipeline.config import missing_api_keys

    message = missing_api_keys(
        config, {job.rule.name for job in workflow.dag.needrun_jobs()}
    )
    if message:
        sys.exit(message)

"""Job states read from sacct or squeue as the SLURM executor plugin must read them."""

import asyncio
import types

from okapi_pipeline.cluster.slurm_states import read_first_words, slurm_state


def test_the_state_is_the_first_word_of_what_sacct_reports():
    assert slurm_state("CANCELLED by 1234") == "CANCELLED"
    assert slurm_state("COMPLETED") == "COMPLETED"
    assert slurm_state("") == ""


def test_the_plugin_reads_a_cancelled_job_as_cancelled_and_its_timings_are_kept():
    async def query_job_status(command, logger):
        return {"1": "CANCELLED by 0", "2": "RUNNING", "3": "TIMEOUT"}, 0.25

    plugin = types.SimpleNamespace(query_job_status=query_job_status)
    read_first_words(plugin)
    read_first_words(plugin)  # applied once, however often the workflow is read
    states, seconds = asyncio.run(plugin.query_job_status("sacct ...", None))
    assert states == {"1": "CANCELLED", "2": "RUNNING", "3": "TIMEOUT"}
    assert seconds == 0.25


def test_a_failed_query_stays_a_failed_query():
    async def query_job_status(command, logger):
        return None, None

    plugin = types.SimpleNamespace(query_job_status=query_job_status)
    read_first_words(plugin)
    assert asyncio.run(plugin.query_job_status("sacct ...", None)) == (None, None)


def test_the_installed_plugin_is_the_one_the_fix_is_for():
    import snakemake_executor_plugin_slurm as plugin

    read_first_words(plugin)
    assert plugin.query_job_status.reads_first_words

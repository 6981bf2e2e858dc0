"""SLURM job states as snakemake-executor-plugin-slurm must read them.

`sacct` writes the state of a job someone cancelled as "CANCELLED by 1234" (the uid that
cancelled it). Plugin 2.8 compares states exactly (`status in fail_stati`), so it takes
such a job for one still running and waits on it forever: a job an admin cancels never
fails, is never retried, and Snakemake ignores SIGTERM while it waits. The workflow makes
the plugin read the first word, the state itself (`read_first_words`, applied from
rules/common.smk); slurm/plugin-state-first-word.patch is the same change offered upstream.
"""


def slurm_state(reported: str) -> str:
    """The state in what sacct or squeue reports: "CANCELLED by 0" -> "CANCELLED"."""
    words = reported.split()
    return words[0] if words else reported


def read_first_words(plugin) -> None:
    """Make the slurm executor plugin module `plugin` read each job's state as its first word."""
    query = getattr(plugin, "query_job_status", None)
    if query is None or getattr(query, "reads_first_words", False):
        return  # another plugin version (see the patch), or already applied

    async def query_job_status(command, logger):
        states, seconds = await query(command, logger)
        if states is not None:
            states = {job: slurm_state(state) for job, state in states.items()}
        return states, seconds

    query_job_status.reads_first_words = True
    plugin.query_job_status = query_job_status

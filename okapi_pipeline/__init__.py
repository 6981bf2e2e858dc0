"""okapi-pipeline: the library behind the Okapi reproduction workflow.

Each module is one stage of the paper (self-instruct, translation, SFT, ranking,
reward model, PPO, evaluation, tables); the Snakemake scripts call them.
"""

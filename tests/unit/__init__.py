"""Unit layer: the package's functions in process; no subprocess, no training, no Snakemake run."""

"""Workflow layer: Snakemake plans and runs the workflow (dry runs and whole runs)."""

"""Integration layer: tiny models trained, lm-eval runs, the package's commands in subprocesses."""

"""Evaluation: the benchmark files, their lm-eval tasks, and running lm-eval on a model."""

"""Tiny MT models of each family (NLLB, M2M100, MADLAD), built with random weights."""


def tiny_mt_model(tmp_path_factory, corpus_dir, architecture):
    from okapi_pipeline.tiny.models import build_tiny_model

    out = tmp_path_factory.mktemp(f"tiny-{architecture}")
    build = {"architecture": architecture, "hidden_size": 32, "intermediate_size": 64, "num_layers": 1, "num_heads": 2}
    # Random weights: fast to build; outputs are nonsense that never ends (truncated).
    build_tiny_model(
        None, corpus_dir, out, build, {"vocab_size": 600, "max_length": 64, "pretrain_epochs": 0, "seed": 0}
    )
    return out

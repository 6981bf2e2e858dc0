"""Tiny causal base models for the offline demo and the tests.

Small Llama-, Qwen2- or BLOOM-architecture models are built from config with the
tokenizer of okapi_pipeline.tiny.tokenizers and briefly pretrained on the bundled
multilingual text, so the demo's generations look like words. `build_tiny_model` is the
one entry for every tiny base model: translation architectures go on to
okapi_pipeline.tiny.mt_models. The results are ordinary Hugging Face directories: every
later stage loads them exactly as it loads a hub model.
"""

import logging
import math
import time
from pathlib import Path

from okapi_pipeline.jsonl import write_json
from okapi_pipeline.schema import MT_ARCHITECTURES
from okapi_pipeline.tiny.mt_models import build_tiny_mt_model
from okapi_pipeline.tiny.tokenizers import MAX_POSITIONS, corpus_files

log = logging.getLogger(__name__)


def model_config(build: dict, tokenizer):
    """A LlamaConfig, Qwen2Config or BloomConfig from the `build` settings of a base model."""
    from transformers import BloomConfig, LlamaConfig, Qwen2Config

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    architecture, heads = build["architecture"], build["num_heads"]
    if architecture == "bloom":
        # BLOOM uses ALiBi: no position table, any prompt length works.
        return BloomConfig(hidden_size=build["hidden_size"], n_layer=build["num_layers"], n_head=heads, **ids)
    if architecture not in ("llama", "qwen2"):
        raise ValueError(f"unknown architecture {architecture!r} (llama, qwen2 or bloom)")
    decoder = dict(
        hidden_size=build["hidden_size"],
        intermediate_size=build["intermediate_size"],
        num_hidden_layers=build["num_layers"],
        num_attention_heads=heads,
        max_position_embeddings=MAX_POSITIONS,
        **ids,
    )
    # `num_key_value_heads` (not in the config schema) is for tools/gpu_check's real shapes.
    kv_heads = build.get("num_key_value_heads")
    if architecture == "llama":
        return LlamaConfig(num_key_value_heads=kv_heads or heads, **decoder)
    # Like Qwen2.5-7B: grouped-query attention (there 28 query heads share 4 key/value
    # heads), biases on q/k/v, no sliding window, and an lm_head of its own, not tied to
    # the input embeddings (Qwen2.5-0.5B to 3B tie them; 7B does not).
    return Qwen2Config(
        num_key_value_heads=kv_heads or (heads // 2 if heads % 2 == 0 else heads),
        tie_word_embeddings=False,
        use_sliding_window=False,
        **decoder,
    )


def pack_corpus(tokenizer, corpus_dir, block: int):
    """The corpus as consecutive token blocks of length `block` (one line = one text)."""
    import torch

    ids: list[int] = []
    for path in corpus_files(corpus_dir):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                ids.extend(tokenizer(line)["input_ids"] + [tokenizer.eos_token_id])
    count = max(1, len(ids) // block)
    ids = (ids * math.ceil(count * block / max(len(ids), 1)))[: count * block]
    return torch.tensor(ids).view(count, block)


def pretrain(model, blocks, epochs: int, seed: int, batch_size: int = 8, learning_rate: float = 1e-2) -> list[float]:
    """A short causal-LM pretraining; returns the mean loss of each epoch."""
    import torch
    from transformers import get_cosine_schedule_with_warmup

    generator = torch.Generator().manual_seed(seed)
    steps = epochs * math.ceil(len(blocks) / batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    schedule = get_cosine_schedule_with_warmup(optimizer, max(1, steps // 10), steps)
    model.train()
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(blocks), generator=generator)
        total = 0.0
        batches = 0
        for start in range(0, len(blocks), batch_size):
            batch = blocks[order[start : start + batch_size]]
            loss = model(input_ids=batch, labels=batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item()
            batches += 1
        losses.append(total / batches)
        log.info("pretraining epoch %d: loss %.3f", epoch + 1, losses[-1])
    model.eval()
    return losses


def build_tiny_model(tokenizer_dir, corpus_dir, out_dir, build: dict, pretraining: dict, threads: int = 1) -> dict:
    """Build a tiny model from `build`, pretrain it on the corpus, save model + tokenizer.

    `pretraining` holds max_length, pretrain_epochs and seed. Returns the build summary
    (also written to build_summary.json in out_dir). Translation architectures (nllb,
    m2m100, madlad) train their own tokenizer: `tokenizer_dir` is not used.
    """
    if build["architecture"] in MT_ARCHITECTURES:
        return build_tiny_mt_model(corpus_dir, out_dir, build, pretraining, threads)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    started = time.time()
    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = model_config(build, tokenizer)
    set_seed(pretraining["seed"])
    model = AutoModelForCausalLM.from_config(config)
    blocks = pack_corpus(tokenizer, corpus_dir, pretraining["max_length"])
    losses = pretrain(model, blocks, pretraining["pretrain_epochs"], pretraining["seed"])
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    summary = {
        "build": build,
        "config_class": type(config).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretraining": {
            "max_length": pretraining["max_length"],
            "epochs": pretraining["pretrain_epochs"],
            "seed": pretraining["seed"],
            "blocks": len(blocks),
            "loss_per_epoch": losses,
        },
        "wall_time_s": round(time.time() - started, 2),
    }
    write_json(out_dir / "build_summary.json", summary)
    log.info("built %s model with %d parameters -> %s", build["architecture"], summary["parameters"], out_dir)
    return summary

"""Tiny base models for the offline demo and the tests.

A byte-level BPE tokenizer is trained on the bundled multilingual text, and small
Llama- or BLOOM-architecture models are built from config and briefly pretrained on
the same text, so the demo's generations look like words. The results are ordinary
Hugging Face directories: every later stage loads them exactly as it loads a hub model.
"""

import logging
import math
import time
from pathlib import Path

from okapi_pipeline.jsonl import write_json

log = logging.getLogger(__name__)

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
# Long enough for 25-shot evaluation prompts.
MAX_POSITIONS = 2048


def corpus_files(corpus_dir) -> list[Path]:
    files = sorted(Path(corpus_dir).glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no *.txt files in {corpus_dir}")
    return files


def train_tokenizer(corpus_dir, out_dir, vocab_size: int) -> None:
    """Train a byte-level BPE on every *.txt of corpus_dir and save it as a HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, BOS, EOS, UNK],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(path) for path in corpus_files(corpus_dir)], trainer)
    # Like Llama's tokenizer: every encoded text starts with the BOS token.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tokenizer.token_to_id(BOS))],
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=MAX_POSITIONS,
    )
    wrapped.save_pretrained(out_dir)
    log.info("tokenizer: %d tokens -> %s", wrapped.vocab_size, out_dir)


def model_config(build: dict, tokenizer):
    """A LlamaConfig or BloomConfig from the `build` settings of a base model."""
    from transformers import BloomConfig, LlamaConfig

    ids = dict(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    architecture = build["architecture"]
    if architecture == "llama":
        return LlamaConfig(
            hidden_size=build["hidden_size"],
            intermediate_size=build["intermediate_size"],
            num_hidden_layers=build["num_layers"],
            num_attention_heads=build["num_heads"],
            num_key_value_heads=build["num_heads"],
            max_position_embeddings=MAX_POSITIONS,
            **ids,
        )
    if architecture == "bloom":
        # BLOOM uses ALiBi: no position table, any prompt length works.
        return BloomConfig(
            hidden_size=build["hidden_size"],
            n_layer=build["num_layers"],
            n_head=build["num_heads"],
            **ids,
        )
    raise ValueError(f"unknown architecture {architecture!r} (llama or bloom)")


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
    (also written to build_summary.json in out_dir).
    """
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

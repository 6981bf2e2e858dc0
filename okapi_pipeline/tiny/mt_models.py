"""Tiny machine-translation base models (NLLB / M2M100 / MADLAD-400 architectures).

Each gets its own tokenizer with its family's language tokens
(okapi_pipeline.tiny.tokenizers), random weights, and a short copy pretraining on the
bundled corpus that teaches it to stop, so its outputs end and look like text. The
results are Hugging Face directories the `mt` backend (okapi_pipeline.llm.mt) loads as it
loads facebook/nllb-200-3.3B; okapi_pipeline.tiny.models.build_tiny_model sends the
translation architectures here.
"""

import logging
import time
from pathlib import Path

from okapi_pipeline.jsonl import write_json
from okapi_pipeline.llm.mt_languages import UnsupportedLanguage, language_code
from okapi_pipeline.tiny.tokenizers import MT_MAX_POSITIONS, corpus_files, train_mt_tokenizer

log = logging.getLogger(__name__)

# The copy pretraining needs about this many epochs before outputs end with EOS; with
# fewer, the tiny model repeats a token until the length cap and every answer is
# rejected as truncated. 0 in tiny_models.pretrain_epochs keeps the random weights.
MT_COPY_EPOCHS = 8
# Sentences longer than this are cut for the copy pretraining (they are rare and slow).
MT_COPY_MAX_TOKENS = 64


def mt_model_config(build: dict, tokenizer):
    from transformers import M2M100Config, T5Config

    hidden, heads, layers = build["hidden_size"], build["num_heads"], build["num_layers"]
    ffn = build.get("intermediate_size", 2 * hidden)
    if build["architecture"] == "madlad":
        return T5Config(
            vocab_size=len(tokenizer),
            d_model=hidden,
            d_kv=hidden // heads,
            d_ff=ffn,
            num_layers=layers,
            num_decoder_layers=layers,
            num_heads=heads,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
        )
    return M2M100Config(
        vocab_size=len(tokenizer),
        d_model=hidden,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_position_embeddings=MT_MAX_POSITIONS,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.eos_token_id,
    )


def copy_pairs(tokenizer, corpus_dir, family: str, max_length: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """(encoder input, labels) pairs that teach the model to copy a sentence after any
    target-language token, and to stop: enough for outputs that end and look like text."""
    import random

    from okapi_pipeline.llm.segments import segments

    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    corpus = {}
    for path in corpus_files(corpus_dir):
        try:
            language_code(family, path.stem)
        except UnsupportedLanguage:
            continue
        corpus[path.stem] = [
            s for line in path.read_text(encoding="utf-8").splitlines() for s in segments(line, path.stem)
        ]
    languages = sorted(corpus) or ["en"]
    eos = tokenizer.eos_token_id
    pairs = []
    for source, sentences in corpus.items():
        for sentence in sentences:
            ids = tokenizer(sentence, add_special_tokens=False)["input_ids"][: max_length - 2]
            target = vocab[language_code(family, rng.choice(languages))]
            if family == "madlad":
                pairs.append(([target, *ids, eos], [*ids, eos]))
            else:
                pairs.append(([vocab[language_code(family, source)], *ids, eos], [target, *ids, eos]))
    return pairs


def pretrain_copy(
    model, pairs, epochs: int, seed: int, pad: int, batch_size: int = 16, learning_rate: float = 3e-3
) -> list[float]:
    import torch

    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    model.train()
    losses = []
    # Batches of similar lengths (little padding), in a new random order every epoch.
    by_length = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
    batches_of_pairs = [by_length[start : start + batch_size] for start in range(0, len(pairs), batch_size)]
    for epoch in range(epochs):
        order = torch.randperm(len(batches_of_pairs), generator=generator).tolist()
        total = batches = 0
        for index in order:
            batch = [pairs[i] for i in batches_of_pairs[index]]
            width = max(len(x) for x, _ in batch)
            label_width = max(len(y) for _, y in batch)
            input_ids = torch.tensor([x + [pad] * (width - len(x)) for x, _ in batch])
            labels = torch.tensor([y + [-100] * (label_width - len(y)) for _, y in batch])
            loss = model(input_ids=input_ids, attention_mask=(input_ids != pad).long(), labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            total += loss.item()
            batches += 1
        losses.append(total / max(batches, 1))
        log.info("copy pretraining epoch %d: loss %.3f", epoch + 1, losses[-1])
    model.eval()
    return losses


def build_tiny_mt_model(corpus_dir, out_dir, build: dict, pretraining: dict, threads: int = 1) -> dict:
    """A tiny translation model: its own tokenizer with the family's language tokens,
    random weights, a short copy pretraining on the corpus; saved in Hugging Face format
    so the `mt` backend loads it as it loads facebook/nllb-200-3.3B."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, set_seed

    started = time.time()
    torch.set_num_threads(threads)
    family = build["architecture"]
    out_dir = Path(out_dir)
    tokenizer = train_mt_tokenizer(corpus_dir, out_dir, pretraining.get("vocab_size", 1000), family)
    config = mt_model_config(build, tokenizer)
    set_seed(pretraining["seed"])
    model = AutoModelForSeq2SeqLM.from_config(config)
    pairs = copy_pairs(
        tokenizer, corpus_dir, family, min(pretraining["max_length"], MT_COPY_MAX_TOKENS), pretraining["seed"]
    )
    epochs = MT_COPY_EPOCHS if pretraining["pretrain_epochs"] else 0
    losses = pretrain_copy(model, pairs, epochs, pretraining["seed"], tokenizer.pad_token_id)
    model.save_pretrained(out_dir)
    summary = {
        "build": build,
        "config_class": type(config).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "pretraining": {
            "task": "copy",
            "pairs": len(pairs),
            "epochs": epochs,
            "seed": pretraining["seed"],
            "loss_per_epoch": losses,
        },
        "wall_time_s": round(time.time() - started, 2),
    }
    write_json(out_dir / "build_summary.json", summary)
    log.info("built %s translation model with %d parameters -> %s", family, summary["parameters"], out_dir)
    return summary

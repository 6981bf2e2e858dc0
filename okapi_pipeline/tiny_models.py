"""Tiny base models for the offline demo and the tests.

A byte-level BPE tokenizer is trained on the bundled multilingual text, and small
Llama-, Qwen2- or BLOOM-architecture models are built from config and briefly pretrained on
the same text, so the demo's generations look like words. Tiny translation models
(NLLB / M2M100 / MADLAD architectures) get a tokenizer with their family's language
tokens and a short copy pretraining. The results are ordinary
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


def _train_bpe(corpus_dir, vocab_size: int, extra_special: list[str]):
    """A byte-level BPE trained on every *.txt of corpus_dir, with pad/bos/eos/unk first."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size + len(extra_special),
        special_tokens=[PAD, BOS, EOS, UNK, *extra_special],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train([str(path) for path in corpus_files(corpus_dir)], trainer)
    return tokenizer


def _save_wrapped(tokenizer, out_dir, max_length: int, extra_special: list[str]):
    """The trained tokenizer as a transformers fast tokenizer, saved to out_dir."""
    from transformers import PreTrainedTokenizerFast

    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=max_length,
        **({"extra_special_tokens": extra_special} if extra_special else {}),
    )
    wrapped.save_pretrained(out_dir)
    return wrapped


def train_tokenizer(corpus_dir, out_dir, vocab_size: int) -> None:
    """Train a byte-level BPE on every *.txt of corpus_dir and save it as a HF tokenizer."""
    from tokenizers import processors

    tokenizer = _train_bpe(corpus_dir, vocab_size, [])
    # Like Llama's tokenizer: every encoded text starts with the BOS token.
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A",
        pair=f"{BOS} $A {BOS} $B",
        special_tokens=[(BOS, tokenizer.token_to_id(BOS))],
    )
    wrapped = _save_wrapped(tokenizer, out_dir, MAX_POSITIONS, [])
    log.info("tokenizer: %d tokens -> %s", wrapped.vocab_size, out_dir)


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


# ---- tiny machine-translation models (the `mt` backend) -----------------------------

# Encoder-decoder builds: NLLB (m2m_100 architecture, FLORES-200 language tokens), M2M100
# (m2m_100, __xx__ tokens) and MADLAD-400 (T5, <2xx> tokens).
MT_ARCHITECTURES = {"nllb": "nllb", "m2m100": "m2m100", "madlad": "madlad"}
MT_MAX_POSITIONS = 512
# The copy pretraining needs about this many epochs before outputs end with EOS; with
# fewer, the tiny model repeats a token until the length cap and every answer is
# rejected as truncated. 0 in tiny_models.pretrain_epochs keeps the random weights.
MT_COPY_EPOCHS = 8
# Sentences longer than this are cut for the copy pretraining (they are rare and slow).
MT_COPY_MAX_TOKENS = 64


def mt_language_tokens(family: str) -> list[str]:
    from okapi_pipeline.mt import FLORES, M2M100, MADLAD, language_code

    codes = {"nllb": FLORES, "m2m100": M2M100, "madlad": MADLAD}[family]
    return [language_code(family, code) for code in sorted(codes)]


def train_mt_tokenizer(corpus_dir, out_dir, vocab_size: int, family: str):
    """A byte-level BPE like the causal models', with the family's language tokens as
    special tokens (never split, skipped when decoding) and no added BOS."""
    languages = mt_language_tokens(family)
    return _save_wrapped(_train_bpe(corpus_dir, vocab_size, languages), out_dir, MT_MAX_POSITIONS, languages)


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

    from okapi_pipeline.mt import UnsupportedLanguage, language_code
    from okapi_pipeline.segments import segments

    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    corpus = {}
    for path in corpus_files(corpus_dir):
        try:
            language_code(family, path.stem)
        except UnsupportedLanguage:
            continue
        corpus[path.stem] = [s for line in path.read_text(encoding="utf-8").splitlines() for s in segments(line)]
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
    family = MT_ARCHITECTURES[build["architecture"]]
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

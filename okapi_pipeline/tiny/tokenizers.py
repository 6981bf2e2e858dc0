"""Byte-level BPE tokenizers for the tiny models of the offline demo and the tests.

Both kinds are trained on every *.txt of the bundled multilingual corpus and saved as
Hugging Face fast tokenizers: the causal-LM tokenizer puts BOS before every text, like
Llama's; the translation tokenizer has its model family's language tokens (FLORES-200
codes, __xx__ or <2xx>) as special tokens and no added BOS. The position limits here are
the tiny models' too (okapi_pipeline.tiny.models, okapi_pipeline.tiny.mt_models).
"""

import logging
from pathlib import Path

from okapi_pipeline.llm.mt_languages import FLORES, M2M100, MADLAD, language_code

log = logging.getLogger(__name__)

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
# Long enough for 25-shot evaluation prompts.
MAX_POSITIONS = 2048
MT_MAX_POSITIONS = 512


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


def mt_language_tokens(family: str) -> list[str]:
    codes = {"nllb": FLORES, "m2m100": M2M100, "madlad": MADLAD}[family]
    return [language_code(family, code) for code in sorted(codes)]


def train_mt_tokenizer(corpus_dir, out_dir, vocab_size: int, family: str):
    """A byte-level BPE like the causal models', with the family's language tokens as
    special tokens (never split, skipped when decoding) and no added BOS."""
    languages = mt_language_tokens(family)
    return _save_wrapped(_train_bpe(corpus_dir, vocab_size, languages), out_dir, MT_MAX_POSITIONS, languages)

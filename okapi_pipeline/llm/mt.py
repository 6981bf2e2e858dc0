"""Dedicated machine-translation models (NLLB-200, MADLAD-400, M2M100) as the `mt` backend.

A seq2seq model from transformers (`AutoModelForSeq2SeqLM`) translates the segments of
each field (okapi_pipeline.llm.segments): code, URLs, placeholders and numbers-only lines
never reach it. Segments are cached one by one in the request's cache file, keyed by
the model, the language pair and the text, so a job killed halfway translates only
the segments it had not finished. Missing segments are translated in length-sorted
batches (max_concurrency per batch): with transformers in bf16 on a GPU and fp32 on
CPU, or with CTranslate2 (`engine: ctranslate2`, the checkpoint converted once into
resources/ctranslate2/) in fp16 on a GPU and int8 on CPU.

How a model marks languages is read from its vocabulary, not from its name
(okapi_pipeline.llm.mt_languages).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from collections import Counter

from okapi_pipeline.llm.backend import Backend, model_fingerprint
from okapi_pipeline.llm.cache import ResponseCache
from okapi_pipeline.llm.mt_languages import UnsupportedLanguage, detect_family, language_code
from okapi_pipeline.llm.requests import Answer, JsonRequest
from okapi_pipeline.llm.segments import Piece, cut, join, pieces

log = logging.getLogger(__name__)


def segment_key(model_id: str, source: str, target: str, text: str, generation: dict) -> str:
    payload = {"mt": model_id, "source": source, "target": target, "text": text, **generation}
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
    return "segment:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()


class MTBackend(Backend):
    """The `mt` backend. Tokenizer and model load on first need: a rerun answered from
    the cache loads neither."""

    def __init__(self, settings: dict, threads: int = 1):
        self.settings = settings
        self.threads = threads
        self.engine = settings["engine"]
        # int8 / fp16 outputs may differ from the transformers engine's: other cache keys.
        self.model_id = model_fingerprint(settings["model"]) + ("+ctranslate2" if self.engine == "ctranslate2" else "")
        self.tokenizer = None
        self.model = None
        self.generation = {
            "num_beams": settings["num_beams"],
            "max_new_tokens": settings["max_new_tokens"],
            "max_segment_tokens": settings["max_segment_tokens"],
        }
        # Counts of this job: segments seen, translated now, found in the cache, cut.
        self.stats = Counter()
        self.seconds = 0.0

    # ---- loading --------------------------------------------------------------------

    def _load_tokenizer(self) -> None:
        if self.tokenizer is not None:
            return
        from transformers import AutoConfig, AutoTokenizer  # lazy: a rerun from the cache loads no transformers

        self.tokenizer = AutoTokenizer.from_pretrained(self.settings["model"])
        config = AutoConfig.from_pretrained(self.settings["model"])
        if not getattr(config, "is_encoder_decoder", False):
            raise ValueError(
                f"{self.settings['model']}: backend mt needs an encoder-decoder (seq2seq) "
                f"translation model, got model_type {config.model_type}; use backend hf for a causal LM"
            )
        self.family = detect_family(self.tokenizer.get_vocab())
        limits = [
            self.generation["max_segment_tokens"],
            getattr(config, "max_position_embeddings", None),
            self.tokenizer.model_max_length,
        ]
        # Room for the language token and the end of sequence.
        self.max_tokens = min(limit for limit in limits if limit) - 2
        log.info("%s: %s family, segments of at most %d tokens", self.settings["model"], self.family, self.max_tokens)

    def prepare(self) -> None:
        """Load tokenizer and model now (e.g. before timing)."""
        self._load_tokenizer()
        if self.model is not None:
            return
        import torch  # lazy, as transformers

        self.torch = torch
        torch.set_num_threads(self.threads)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.engine == "ctranslate2":
            import ctranslate2  # lazy: only the ctranslate2 engine needs it

            converted = self.settings.get("ctranslate2_dir")
            if not converted:
                raise ValueError(
                    "engine ctranslate2 needs the model as a base_models entry (converted once into "
                    "resources/ctranslate2/)"
                )
            self.model = ctranslate2.Translator(
                converted,
                device=self.device,
                compute_type="float16" if self.device == "cuda" else "int8",
                intra_threads=self.threads,
            )
            return
        from transformers import AutoModelForSeq2SeqLM  # lazy, as above

        dtype = torch.bfloat16 if self.device == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
        self.model = AutoModelForSeq2SeqLM.from_pretrained(self.settings["model"], dtype=dtype).to(self.device)
        self.model.eval()

    def token_id(self, lang: str) -> int:
        code = language_code(self.family, lang)
        vocab = self.tokenizer.get_vocab()
        if code not in vocab:
            raise UnsupportedLanguage(
                f"the MT model {self.settings['model']} ({self.family}) has no token {code} for '{lang}'"
            )
        return vocab[code]

    # ---- segments -------------------------------------------------------------------

    def field_pieces(self, text: str, language: str) -> list[Piece]:
        """The field's pieces (sentences as `language` ends them), every sentence cut to the model's limit."""
        self._load_tokenizer()
        out = []
        for piece in pieces(text, language):
            if not piece.translate:
                out.append(piece)
                continue
            offsets = self.token_offsets(piece.text)
            parts = cut(piece, offsets, self.max_tokens)
            if len(parts) > 1:
                self.stats["cut"] += 1
                log.warning(
                    "a sentence of %d tokens was cut into %d parts (limit %d)",
                    len(offsets),
                    sum(p.translate for p in parts),
                    self.max_tokens,
                )
            out.extend(parts)
        return out

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """The character span of each token. A slow (SentencePiece) tokenizer such as
        M2M100's has no offsets: every token of a word then spans the whole word."""
        try:
            return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        except (NotImplementedError, ValueError, TypeError):
            offsets = []
            for word in re.finditer(r"\S+", text):
                count = len(self.tokenizer(word.group(), add_special_tokens=False)["input_ids"])
                offsets += [word.span()] * count
            return offsets

    def answer(self, requests: list[JsonRequest], keys: list[str], cache: ResponseCache) -> None:
        plans = []  # per request: {field: (pieces, segment keys)}, the language pair, the cuts
        missing: dict[str, tuple[str, str, str]] = {}
        for request in requests:
            if request.languages is None:
                raise ValueError("backend mt translates only: every request needs its (source, target) languages")
            source, target = request.languages
            self._load_tokenizer()
            self.token_id(source), self.token_id(target)  # a language the model lacks stops here
            cuts_before = self.stats["cut"]
            fields = {}
            for name in request.keys:
                parts = self.field_pieces(request.user[name], source)
                texts = [piece.text for piece in parts if piece.translate]
                segment_keys = [segment_key(self.model_id, source, target, text, self.generation) for text in texts]
                for key, text in zip(segment_keys, texts):
                    self.stats["segments"] += 1
                    if cache.get(key) is None:
                        missing[key] = (source, target, text)
                    else:
                        self.stats["cached"] += 1
                fields[name] = (parts, segment_keys)
            plans.append((fields, self.stats["cut"] - cuts_before))
        if missing:
            self.translate_segments(missing, cache)
        for (fields, cuts), key in zip(plans, keys):
            values, truncated, count = {}, False, 0
            for name, (parts, segment_keys) in fields.items():
                answers = [cache.get(k) for k in segment_keys]
                truncated = truncated or any(a.finish_reason == "length" for a in answers)
                values[name] = join(parts, [a.content for a in answers])
                count += len(segment_keys)
            content = json.dumps(values, ensure_ascii=False)
            cache.put(key, Answer(content, "length" if truncated else "stop", {"segments": count, "cut": cuts}))

    def translate_segments(self, missing: dict[str, tuple[str, str, str]], cache: ResponseCache) -> None:
        """Translate every missing segment, grouped by language pair, longest first in
        batches of max_concurrency; each batch goes into the cache as soon as it is done."""
        self.prepare()
        batch_size = self.settings["max_concurrency"]
        pairs: dict[tuple[str, str], list[str]] = {}
        for key, (source, target, _) in missing.items():
            pairs.setdefault((source, target), []).append(key)
        started = time.monotonic()
        for (source, target), segment_keys in pairs.items():
            lengths = {
                key: len(self.tokenizer(missing[key][2], add_special_tokens=False)["input_ids"]) for key in segment_keys
            }
            ordered = sorted(segment_keys, key=lambda k: -lengths[k])
            for start in range(0, len(ordered), batch_size):
                batch = ordered[start : start + batch_size]
                outputs = self.generate([missing[key][2] for key in batch], source, target)
                for key, (text, finish) in zip(batch, outputs):
                    cache.put(key, Answer(text, finish))
                self.stats["translated"] += len(batch)
        self.seconds += time.monotonic() - started
        log.info(
            "%d segments translated in %.1f s (%.1f segments/s, batches of %d, %s)",
            len(missing),
            self.seconds,
            len(missing) / max(self.seconds, 1e-9),
            batch_size,
            self.device,
        )

    def encode(self, text: str, source: str, target: str) -> list[int]:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.max_tokens]
        eos = self.tokenizer.eos_token_id
        if self.family == "madlad":
            return [self.token_id(target), *ids, eos]
        return [self.token_id(source), *ids, eos]

    def generate(self, texts: list[str], source: str, target: str) -> list[tuple[str, str]]:
        """(translation, finish reason) of each text: `length` when the output reached its
        cap (twice the input plus 16 tokens, at most max_new_tokens) without ending."""
        encoded = [self.encode(text, source, target) for text in texts]
        width = max(len(ids) for ids in encoded)
        cap = min(self.settings["max_new_tokens"], 2 * width + 16)
        if self.engine == "ctranslate2":
            return self._generate_ctranslate2(encoded, target, cap)
        torch = self.torch
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids in encoded], device=self.device)
        attention_mask = torch.tensor(
            [[1] * len(ids) + [0] * (width - len(ids)) for ids in encoded], device=self.device
        )
        options = {"forced_bos_token_id": self.token_id(target)} if self.family != "madlad" else {}
        with torch.no_grad():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                max_new_tokens=cap,
                num_beams=self.generation["num_beams"],
                do_sample=False,
                **options,
            )
        eos = self.tokenizer.eos_token_id
        results = []
        for row in output:
            generated = row[1:].tolist()  # after the decoder's start token
            finished = eos in generated
            text = self.tokenizer.decode(row, skip_special_tokens=True).strip()
            results.append((text, "stop" if finished else "length"))
        return results

    def _generate_ctranslate2(self, encoded: list[list[int]], target: str, cap: int) -> list[tuple[str, str]]:
        """The same inputs through CTranslate2 (tokens as strings, the target language as
        the decoder's prefix for NLLB and M2M100)."""
        tokenizer = self.tokenizer
        source = [tokenizer.convert_ids_to_tokens(ids) for ids in encoded]
        prefix = None if self.family == "madlad" else [[language_code(self.family, target)]] * len(source)
        results = []
        for result in self.model.translate_batch(
            source,
            target_prefix=prefix,
            max_decoding_length=cap + 1,
            beam_size=self.generation["num_beams"],
            return_end_token=True,
        ):
            tokens = result.hypotheses[0]
            finished = bool(tokens) and tokens[-1] == tokenizer.eos_token
            text = tokenizer.decode(tokenizer.convert_tokens_to_ids(tokens), skip_special_tokens=True).strip()
            results.append((text, "stop" if finished else "length"))
        return results


def convert_ctranslate2(model_dir, out_dir) -> None:
    """Convert a transformers translation model once for the ctranslate2 engine (weights
    in fp16; int8 on CPU and fp16 on GPU are chosen when it loads)."""
    from ctranslate2.converters import TransformersConverter  # lazy: only the ctranslate2 engine needs it

    TransformersConverter(str(model_dir)).convert(str(out_dir), quantization="float16", force=True)
    log.info("%s converted for CTranslate2 -> %s", model_dir, out_dir)

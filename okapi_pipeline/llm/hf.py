"""The `hf` backend: a local transformers causal LM, for offline runs."""

from __future__ import annotations

import json
from typing import Sequence

from okapi_pipeline.llm.backend import Backend, model_fingerprint
from okapi_pipeline.llm.requests import Answer, JsonRequest


class HFBackend(Backend):
    """A local causal LM. It cannot be trusted to write JSON, so it fills one key at a time.

    The model loads on first use: a rerun answered from the cache never imports torch.
    """

    def __init__(self, settings: dict, threads: int = 1):
        self.settings = settings
        self.threads = threads
        self.model_id = model_fingerprint(settings["model"])
        self.model = None

    def prepare(self) -> None:
        self._load()

    def _load(self) -> None:
        if self.model is not None:
            return
        # Lazy: torch and transformers load only when an answer is not in the cache.
        import torch

        from okapi_pipeline.training.modeling import load_for_generation

        self.torch = torch
        self.tokenizer, self.model, precision = load_for_generation(self.settings["model"], self.threads)
        self.device = precision.device

    @staticmethod
    def key_prompt(request: JsonRequest, key: str) -> str:
        head = f"{request.system}\n\n" if request.system else ""
        return f"{head}{request.user_text()}\n\n{key}:"

    def answer(self, requests, keys, cache) -> None:
        prompts = [self.key_prompt(r, key) for r in requests for key in r.keys]
        values = self.generate(prompts, seed=int(keys[0][:8], 16))
        position = 0
        for request, key in zip(requests, keys):
            fields = values[position : position + len(request.keys)]
            position += len(request.keys)
            content = json.dumps(dict(zip(request.keys, fields)), ensure_ascii=False)
            cache.put(key, Answer(content, "stop"))

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        """One line of visible text after each prompt (up to max_new_tokens), batched."""
        self._load()
        torch = self.torch
        from transformers import LogitsProcessorList, StoppingCriteriaList  # lazy, as torch

        torch.manual_seed(seed)
        sample = self.settings["temperature"] > 0
        batch_size = self.settings["max_concurrency"]
        values = []
        for start in range(0, len(prompts), batch_size):
            batch = self.tokenizer(prompts[start : start + batch_size], return_tensors="pt", padding=True).to(
                self.device
            )
            visible_first, stop_at_line_end, line = _one_line_controls(self.tokenizer, batch["input_ids"].shape[1])
            with torch.no_grad():
                output = self.model.generate(
                    **batch,
                    max_new_tokens=self.settings["max_new_tokens"],
                    do_sample=sample,
                    temperature=self.settings["temperature"] if sample else None,
                    top_p=None,
                    top_k=None,
                    logits_processor=LogitsProcessorList([visible_first]),
                    stopping_criteria=StoppingCriteriaList([stop_at_line_end]),
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            values += [line(row).strip() for row in output]
        return values

    def score(self, prompt: str, continuations: Sequence[str]) -> list[float]:
        self._load()
        torch = self.torch
        prompt_ids = self.tokenizer(prompt)["input_ids"]
        scores = []
        for text in continuations:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if not ids:
                scores.append(float("-inf"))
                continue
            input_ids = torch.tensor([prompt_ids + ids], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids).logits[0, len(prompt_ids) - 1 : -1].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            target = torch.tensor(ids, device=self.device)
            scores.append(logprobs.gather(1, target[:, None]).mean().item())
        return scores


def _one_line_controls(tokenizer, prompt_length: int):
    """A logits processor and a stopping criterion for one line of visible text: no end of
    sequence before the first visible character (a weak model often ends at once), and a
    stop at the first newline after it. Returns them with the function that cuts the line."""
    import torch  # lazy, as in HFBackend._load
    from transformers import LogitsProcessor, StoppingCriteria

    def line(row) -> str:
        return tokenizer.decode(row[prompt_length:], skip_special_tokens=True).lstrip().split("\n", 1)[0]

    def ended(row) -> bool:
        text = tokenizer.decode(row[prompt_length:], skip_special_tokens=True).lstrip()
        return "\n" in text

    class VisibleFirst(LogitsProcessor):
        def __call__(self, input_ids, scores):
            for index, row in enumerate(input_ids):
                if not line(row).strip():
                    scores[index, tokenizer.eos_token_id] = -float("inf")
            return scores

    class StopAtLineEnd(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.tensor([ended(row) for row in input_ids], device=input_ids.device)

    return VisibleFirst(), StopAtLineEnd(), line

"""What every backend (openai, hf, mt) offers the client, and a local model's identity."""

from __future__ import annotations

import hashlib
from pathlib import Path

from okapi_pipeline.llm.cache import ResponseCache
from okapi_pipeline.llm.requests import JsonRequest


class Backend:
    model_id: str

    def answer(self, requests: list[JsonRequest], keys: list[str], cache: ResponseCache) -> None:
        """Answer every request and put each answer into the cache as soon as it arrives."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what answering needs (a local model), e.g. before timing it."""


# What a model directory records about how it was made (timings, its card, where it came
# from): not the model, so not its identity (else each fresh run would sample anew).
RUN_RECORDS = frozenset({"build_summary.json", "training_summary.json", "README.md", "source.json"})


def model_fingerprint(model: str) -> str:
    """A local model directory's identity for the cache: a rebuilt model is a new model.

    Names, sizes and the first MiB of each file: cheap for a 7B model, and any change
    of weights shows in the first tensors.
    """
    path = Path(model)
    if not path.is_dir():
        return model
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.name not in RUN_RECORDS):
        digest.update(f"{file.relative_to(path)}:{file.stat().st_size}:".encode())
        with open(file, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return f"{path.name}@{digest.hexdigest()[:16]}"

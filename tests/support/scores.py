"""Score files as the evaluation writes them, for the table and figure tests."""

import json
from pathlib import Path


def write_score(root: Path, model, variant, lang, bench, acc, acc_norm) -> Path:
    """A score file as evaluate writes it, under a name that says nothing of what it holds."""
    path = root / f"{model}.{variant}.{lang}.{bench}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "model": model,
                "variant": variant,
                "benchmark": bench,
                "language": lang,
                "metrics": {"acc": acc, "acc_norm": acc_norm},
            }
        ),
        encoding="utf-8",
    )
    return path

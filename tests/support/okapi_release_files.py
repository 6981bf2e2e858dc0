"""Small files in the released Okapi data's formats, and their checksum table.

    python -m tests.support.okapi_release_files resources/okapi_release_files

writes {folder}/{dataset}/{lang}.json for the languages of .test/config_okapi_release.yaml
and prints their table. The bytes depend on nothing but this file, so the table is
checked in (.test/okapi_release_checksums.csv) and a test keeps the two in step.
Formats as the original loaders read them: the Alpaca set and the ranking pairs as an
indented JSON array (like alpaca_data.json), the PPO prompts as JSON Lines with a
number where text is expected (rl_training.py reads such values as text).
"""

import csv
import hashlib
import io
import json
import sys
from pathlib import Path

LANGUAGES = ("vi", "bn")
SFT_RECORDS, RANKED_PROMPTS, PAIRS_PER_PROMPT, PPO_PROMPTS = 32, 12, 3, 16
WORDS = {
    "vi": ["con mèo", "con chó", "biển", "mặt trời", "công viên", "sức khỏe", "bài thơ", "thủ đô"],
    "bn": ["বিড়াল", "কুকুর", "সমুদ্র", "সূর্য", "পার্ক", "স্বাস্থ্য", "কবিতা", "রাজধানী"],
}


def _word(lang: str, index: int) -> str:
    return WORDS[lang][index % len(WORDS[lang])]


def alpaca_records(lang: str) -> list[dict]:
    return [
        {
            "instruction": f"Write a sentence about {_word(lang, i)} ({i}).",
            "input": _word(lang, i + 3) if i % 3 == 0 else "",
            "output": f"{_word(lang, i)} {_word(lang, i + 1)} {_word(lang, i + 2)}.",
        }
        for i in range(SFT_RECORDS)
    ]


def ranking_records(lang: str) -> list[dict]:
    """Pairs as reward_modeling.py reads them: several per prompt, the keys spelled as released."""
    records = []
    for prompt in range(RANKED_PROMPTS):
        for pair in range(PAIRS_PER_PROMPT):
            records.append(
                {
                    "instruction": f"Describe {_word(lang, prompt)} ({prompt}).",
                    "input": "",
                    "prefered_output": f"{_word(lang, prompt)} {_word(lang, prompt + 1)} {_word(lang, pair)}.",
                    "rejected_output": _word(lang, prompt + pair + 5),
                }
            )
    return records


def ppo_records(lang: str) -> list[dict]:
    return [
        {
            "instruction": f"Tell me about {_word(lang, i)} ({i}).",
            "input": i if i % 4 == 0 else "",
            "output": _word(lang, i + 1),
        }
        for i in range(PPO_PROMPTS)
    ]


def release_bytes(lang: str) -> dict[str, bytes]:
    """dataset -> the file's bytes."""
    array = {
        "multilingual-alpaca-52k": alpaca_records(lang),
        "multilingual-ranking-data-42k": ranking_records(lang),
    }
    files = {dataset: json.dumps(records, ensure_ascii=False, indent=4).encode() for dataset, records in array.items()}
    lines = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in ppo_records(lang))
    files["multilingual-rl-tuning-64k"] = lines.encode()
    return files


def write_release_files(folder, languages=LANGUAGES) -> list[dict]:
    """Write {folder}/{dataset}/{lang}.json; return the checksum rows."""
    rows = []
    for lang in languages:
        for dataset, data in release_bytes(lang).items():
            path = Path(folder) / dataset / f"{lang}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            rows.append(
                {"dataset": dataset, "file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            )
    return sorted(rows, key=lambda row: (row["dataset"], row["file"]))


def checksum_table(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=("dataset", "file", "sha256", "size"), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


if __name__ == "__main__":
    sys.stdout.write(checksum_table(write_release_files(sys.argv[1])))

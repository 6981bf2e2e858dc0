"""Small benchmark files in the released Okapi layout, and the paper's evaluation protocol over them."""

import json
from pathlib import Path

from okapi_pipeline.evaluation.benchmarks import prepare_benchmark

SHOTS = 25


# Small Vietnamese files in the released shape (JSON arrays, released key order).
# Shot and scored questions are told apart by their text, so a test can see where
# a prompt's shots came from.
def arc_item(split: str, index: int, options: int = 4) -> dict:
    a, b = index + 2, index + 3
    texts = [str(a + b), str(a + b + 1), str(a + b + 2), str(a + b + 3), str(a + b + 4)][:options]
    record = {
        "id": f"ARC-Challenge/{split}/Mercury_{index:05d}",
        "answer": "A",
        "instruction": f"Câu hỏi {split} số {index}: {a} cộng {b} bằng bao nhiêu?",
    }
    record.update({f"option_{letter}": text for letter, text in zip("abcde", texts)})
    return record


def mmlu_item(split: str, index: int) -> dict:
    return {
        "instruction": f"Câu hỏi {split} số {index}: Thủ đô của nước Pháp là thành phố nào?",
        "option_a": "Thành phố Luân Đôn",
        "option_b": "Thành phố Paris",
        "option_c": "Thành phố Berlin",
        "option_d": "Thành phố Rôma",
        "answer": "B",
        "id": f"high_school_geography/{split}/{index}",
    }


def hellaswag_item(index: int) -> dict:
    ctx_a = "[header] Cách nấu cơm [title] Vo gạo thật sạch."
    ctx_b = "cho  gạo vào nồi"
    return {
        "ind": 4000 + index,
        "activity_label": "Nấu ăn",
        "ctx_a": ctx_a,
        "ctx_b": ctx_b,
        "ctx": f"{ctx_a} {ctx_b}",
        "endings": ["và đổ nước [step] vừa đủ.", "rồi bay lên trời.", "và hát một bài.", "rồi đi ngủ."],
        "source_id": f"wikihow~{index}",
        "split": "val",
        "split_type": "indomain",
        "label": "0",
    }


RELEASED = {
    ("arc", "train"): [arc_item("train", i) for i in range(28)] + [arc_item("train", 28, 3), arc_item("train", 29, 5)],
    ("arc", "validation"): [arc_item("validation", i) for i in range(3)],
    ("arc", "test"): [arc_item("test", 0), arc_item("test", 1, 3), arc_item("test", 2, 5), arc_item("test", 3)],
    ("mmlu", "dev"): [mmlu_item("dev", i) for i in range(SHOTS + 1)],
    ("mmlu", "val"): [mmlu_item("val", i) for i in range(SHOTS + 1)],
    ("mmlu", "test"): [mmlu_item("test", i) for i in range(4)],
    ("hellaswag", "validation"): [hellaswag_item(i) for i in range(4)],
}

# The released layout, as Okapi's files (and the demo's) lie on disk; the rules pass the
# package each split's file.
FOLDERS = {"arc": "m_arc", "hellaswag": "m_hellaswag", "mmlu": "m_mmlu"}


def released_path(root, bench: str, lang: str, split: str) -> Path:
    return Path(root) / FOLDERS[bench] / f"{lang}_{split}.json"


def local_source(root, bench: str, lang: str, splits) -> dict:
    return {"source": "local", "files": {split: str(released_path(root, bench, lang, split)) for split in splits}}


def write_released_layout(root: Path, lang: str = "vi") -> Path:
    for (bench, split), records in RELEASED.items():
        path = released_path(root, bench, lang, split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


PROTOCOL = {
    "backend": "hf",
    "batch_size": 8,
    "seed": 1234,
    "limit": None,
    "add_bos_token": None,
    "arc": {"split": "test", "fewshot_split": "train", "num_fewshot": SHOTS, "metric": "acc_norm"},
    "hellaswag": {"split": "validation", "fewshot_split": None, "num_fewshot": 0, "metric": "acc_norm"},
    # mlmm-evaluation's shots come from the dev file (its loader's "validation" split).
    "mmlu": {"split": "test", "fewshot_split": "dev", "num_fewshot": SHOTS, "metric": "acc"},
}

SPLITS = {"arc": ["test", "train"], "hellaswag": ["validation"], "mmlu": ["test", "dev"]}


def prepare_all(root, out_dir) -> dict:
    write_released_layout(root)
    files = {}
    for bench, splits in SPLITS.items():
        files[bench] = out_dir / bench / "vi.json"
        prepare_benchmark(bench, "vi", local_source(root, bench, "vi", splits), splits, files[bench])
    return files

"""The paper's prompts (mlmm-evaluation) as lm-evaluation-harness task YAMLs and data files.

The upstream harness's `okapi` tasks are not the paper's protocol (no shots, letter
targets for MMLU, hub data), so each (benchmark, language) gets a task YAML written
here from the normalised benchmark file:

- ARC-Challenge: "Question: {question}\\nAnswer:", the option texts as choices,
  25 shots from train, test scored.
- HellaSwag: activity_label + ": " + ctx_a + " " + ctx_b.capitalize(), cleaned like
  the harness's hellaswag task, the endings as choices, 0-shot, validation scored.
- MMLU: "Question: ..\\nChoices:\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer:", the FULL
  option texts as choices (not letters), 25 shots, test scored.

The docs are written already formatted (query, choices, gold) so the YAML needs no
Python hooks and a reader sees the exact prompt text in the data files. Split names
and shots come from the benchmark's entry of the `evaluation` config block;
okapi_pipeline.evaluation.evaluate runs lm-eval on the tasks written here.
"""

import json
import re
import shutil
from pathlib import Path

import yaml

from okapi_pipeline.evaluation.benchmarks import LETTERS, option_texts
from okapi_pipeline.jsonl import write_jsonl

# ---- the paper's prompts ---------------------------------------------------------


def arc_doc(record: dict) -> dict:
    return {
        "id": record["id"],
        "query": "Question: " + record["instruction"] + "\nAnswer:",
        "choices": option_texts(record),
        "gold": LETTERS.index(record["answer"]),
    }


def mmlu_doc(record: dict) -> dict:
    choices = option_texts(record)
    listing = "".join(f"{letter}. {choice}\n" for letter, choice in zip(LETTERS, choices))
    return {
        "id": record["id"],
        "query": "Question: " + record["instruction"] + "\nChoices:\n" + listing + "Answer:",
        "choices": choices,
        "gold": LETTERS.index(record["answer"]),
    }


def hellaswag_clean(text: str) -> str:
    """The harness's hellaswag cleanup: WikiHow bracket tags out, double spaces single."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_doc(record: dict) -> dict:
    context = record["ctx_a"] + " " + record["ctx_b"].capitalize()
    return {
        "id": str(record["ind"]),
        "query": hellaswag_clean(record["activity_label"] + ": " + context),
        "choices": [hellaswag_clean(ending) for ending in record["endings"]],
        "gold": int(str(record["label"]).strip()),
    }


TASK_DOCS = {"arc": arc_doc, "hellaswag": hellaswag_doc, "mmlu": mmlu_doc}


# ---- task YAMLs -------------------------------------------------------------------


def task_name(bench: str, lang: str) -> str:
    return f"okapi_paper_{bench}_{lang}"


def write_task(bench: str, benchmark_file, protocol: dict, workdir) -> tuple[str, dict]:
    """Write one task's data files (JSONL, absolute paths) and YAML; return (name, config).

    `protocol` is the benchmark's entry of the `evaluation` config block.
    """
    data = json.loads(Path(benchmark_file).read_text(encoding="utf-8"))
    name = task_name(bench, data["language"])
    shots = protocol["num_fewshot"]
    splits = list(dict.fromkeys([protocol["split"]] + ([protocol["fewshot_split"]] if shots else [])))
    for split in splits:
        if split not in data["splits"]:
            raise ValueError(f"{benchmark_file}: no split {split!r} (has {', '.join(data['splits'])})")
    if not data["splits"][protocol["split"]]:
        raise ValueError(f"{benchmark_file}: split {protocol['split']!r} is empty")
    if shots and len(data["splits"][protocol["fewshot_split"]]) < shots:
        raise ValueError(
            f"{benchmark_file}: {shots} shots asked but split {protocol['fewshot_split']!r} "
            f"has only {len(data['splits'][protocol['fewshot_split']])} records"
        )
    folder = Path(workdir).resolve() / name
    shutil.rmtree(folder, ignore_errors=True)
    data_files = {}
    for split in splits:
        data_files[split] = str(folder / f"{split}.jsonl")
        write_jsonl(data_files[split], [TASK_DOCS[bench](record) for record in data["splits"][split]])
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_name": None,
        "dataset_kwargs": {"data_files": data_files, "cache_dir": str(folder / "hf_datasets")},
        "output_type": "multiple_choice",
        "test_split": protocol["split"],
        "fewshot_split": protocol["fewshot_split"] if shots else None,
        "num_fewshot": shots,
        "doc_to_text": "query",
        "doc_to_choice": "choices",
        "doc_to_target": "gold",
        "target_delimiter": " ",
        "fewshot_delimiter": "\n\n",
        "metric_list": [
            {"metric": "acc", "aggregation": "mean", "higher_is_better": True},
            {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True},
        ],
        "metadata": {"version": 1.0, "benchmark": bench, "language": data["language"]},
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return name, config

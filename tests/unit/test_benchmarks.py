"""Reading the released Okapi benchmark formats, and refusing malformed records."""

import json
from pathlib import Path

import pytest

from okapi_pipeline.evaluation.benchmarks import (
    BenchmarkFormatError,
    option_texts,
    prepare_benchmark,
    read_hub_split,
    read_released_file,
    translate_benchmark,
)
from okapi_pipeline.llm import TooManyRejects
from tests.support.benchmarks import RELEASED, SHOTS, arc_item, local_source, released_path, write_released_layout
from tests.support.fake_openai import fake_translation
from tests.support.workflow import REPO

# The released samples in shared/ beside the checkout (absent on a machine without them).
REAL_SAMPLES = REPO.parent / "shared" / "reference" / "okapi-samples"


@pytest.fixture
def released(tmp_path):
    return write_released_layout(tmp_path / "okapi")


def test_reads_the_released_layout_with_3_4_and_5_option_items(released):
    records = read_released_file("arc", released / "m_arc" / "vi_test.json")
    assert [len(option_texts(r)) for r in records] == [4, 3, 5, 4]
    assert option_texts(records[2])[-1] == records[2]["option_e"]
    assert read_released_file("hellaswag", released / "m_hellaswag" / "vi_validation.json")[0]["label"] == "0"


def test_prepare_benchmark_writes_the_requested_splits(released, tmp_path):
    out = tmp_path / "results" / "arc" / "vi.json"
    prepare_benchmark("arc", "vi", local_source(released, "arc", "vi", ["test", "train"]), ["test", "train"], out)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["benchmark"], data["language"], data["source"]["source"]) == ("arc", "vi", "local")
    assert list(data["splits"]) == ["test", "train"]
    assert data["splits"]["train"] == RELEASED[("arc", "train")]


def test_the_bundled_demo_benchmarks_are_valid():
    demo = REPO / "demo" / "benchmarks"
    for lang in ("vi", "id", "bn"):
        assert len(read_released_file("arc", released_path(demo, "arc", lang, "train"))) >= SHOTS
        assert len(read_released_file("mmlu", released_path(demo, "mmlu", lang, "dev"))) >= SHOTS
        for bench, split in [
            ("arc", "test"),
            ("arc", "validation"),
            ("mmlu", "test"),
            ("mmlu", "dev"),
            ("hellaswag", "validation"),
        ]:
            assert read_released_file(bench, released_path(demo, bench, lang, split))


MALFORMED = [
    ("arc", "test", 2, lambda r: r.update(answer="E", option_e=None), "answer 'E' is not one of the options"),
    ("arc", "test", 1, lambda r: r.pop("instruction"), "missing or empty key(s): instruction"),
    ("arc", "test", 2, lambda r: r.update(option_d=""), "consecutive from option_a"),
    ("arc", "train", 7, lambda r: [r.pop("option_d"), r.pop("option_c")], "missing or empty key(s): option_c"),
    ("mmlu", "test", 0, lambda r: r.update(option_e="thêm"), "5 options, expected 4"),
    ("mmlu", "val", 4, lambda r: r.update(answer="b"), "answer 'b'"),
    ("hellaswag", "validation", 2, lambda r: r["endings"].pop(), "endings must be a list of 4"),
    ("hellaswag", "validation", 3, lambda r: r.update(label=4), "label 4 is out of range"),
    ("hellaswag", "validation", 1, lambda r: r.update(label="một"), "is not an integer"),
]


@pytest.mark.parametrize("bench, split, index, corrupt, message", MALFORMED)
def test_a_malformed_record_raises_naming_file_and_index(released, bench, split, index, corrupt, message):
    path = released_path(released, bench, "vi", split)
    records = json.loads(path.read_text(encoding="utf-8"))
    corrupt(records[index])
    records[index] = {key: value for key, value in records[index].items() if value is not None}
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(BenchmarkFormatError) as error:
        read_released_file(bench, path)
    assert f"{path}: record {index}: " in str(error.value)
    assert message in str(error.value)


def test_a_file_that_is_not_a_json_array_is_refused(tmp_path):
    path = tmp_path / "vi_test.json"
    path.write_text('{"id": "x"}', encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{path}: expected a JSON array"):
        read_released_file("arc", path)
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(BenchmarkFormatError, match=f"{path}: not valid JSON"):
        read_released_file("arc", path)


def test_hub_mirror_split_names_and_absent_columns(monkeypatch):
    """The mirrors call validation "val" and fill absent options (option_e) with None."""
    import datasets

    rows = RELEASED[("hellaswag", "validation")]
    arc_rows = [dict(arc_item("test", 0), option_e=None), arc_item("test", 1, 5)]
    mirrors = {
        ("mirror/m_hellaswag", "vi"): datasets.DatasetDict({"val": datasets.Dataset.from_list(rows)}),
        ("mirror/m_arc", "vi"): datasets.DatasetDict({"test": datasets.Dataset.from_list(arc_rows)}),
    }
    monkeypatch.setattr(datasets, "load_dataset", lambda hub_id, name: mirrors[(hub_id, name)])
    assert read_hub_split("hellaswag", "mirror/m_hellaswag", "vi", "validation") == rows
    records = read_hub_split("arc", "mirror/m_arc", "vi", "test")
    assert [len(option_texts(r)) for r in records] == [4, 5] and "option_e" not in records[0]
    with pytest.raises(BenchmarkFormatError, match=r"mirror/m_arc\[vi\]: no split 'train'"):
        read_hub_split("arc", "mirror/m_arc", "vi", "train")


@pytest.mark.skipif(not REAL_SAMPLES.exists(), reason="the released Vietnamese samples are not on this machine")
def test_the_real_released_vietnamese_files_are_read():
    test = read_released_file("arc", REAL_SAMPLES / "m_arc_vi_test.json")
    train = read_released_file("arc", REAL_SAMPLES / "m_arc_vi_train.json")
    assert (len(test), len(train)) == (1170, 1118)
    assert {len(option_texts(r)) for r in test} == {3, 4, 5}
    assert len(read_released_file("mmlu", REAL_SAMPLES / "m_mmlu_vi_dev.json")) == 271


def test_the_demo_files_are_what_their_generator_writes(tmp_path):
    import runpy

    demo = REPO / "demo"
    runpy.run_path(str(demo / "make_benchmarks.py"))["main"](tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*.json"))
    assert written == sorted(p.relative_to(demo / "benchmarks") for p in (demo / "benchmarks").rglob("*.json"))
    assert all((tmp_path / p).read_bytes() == (demo / "benchmarks" / p).read_bytes() for p in written)


# ---- translation of the English benchmark ---------------------------------------------

ENGLISH = {
    ("arc", "train"): [
        {
            "id": f"Mercury_{i}",
            "answer": "B",
            "instruction": f"Which planet is number {i} from the sun?",
            "option_a": "The planet Mars",
            "option_b": "The planet Venus",
            "option_c": "The planet Jupiter",
            "option_d": "The planet Saturn",
        }
        for i in range(3)
    ],
    ("arc", "test"): [
        {
            "id": "Mercury_9",
            "answer": "C",
            "instruction": "What do plants need to make their food?",
            "option_a": "Only darkness",
            "option_b": "Cold winter air",
            "option_c": "Light from the sun",
        }
    ],
    ("hellaswag", "validation"): [
        {
            "ind": 7,
            "activity_label": "Cooking rice",
            "ctx_a": "A man washes the rice in cold water.",
            "ctx_b": "he puts the rice in the pot",
            "ctx": "A man washes the rice in cold water. he puts the rice in the pot",
            "endings": [
                "and adds water to cover it.",
                "and throws the pot away.",
                "and sings to the rice.",
                "and goes to sleep.",
            ],
            "source_id": "activitynet~v_1",
            "split": "val",
            "split_type": "indomain",
            "label": "0",
        }
    ],
}


PROMPT = REPO / "prompts" / "translate_benchmark.txt"


def english_layout(root: Path) -> Path:
    for (bench, split), records in ENGLISH.items():
        path = released_path(root, bench, "en", split)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(records), encoding="utf-8")
    return root


def test_translated_benchmark_is_checked_in_the_released_format_and_cached(tmp_path, fake_openai, openai_settings):
    source = local_source(english_layout(tmp_path / "en"), "arc", "en", ["test", "train"])
    out, qa_path = tmp_path / "arc" / "id.json", tmp_path / "qa" / "arc" / "id.json"
    qa = translate_benchmark("arc", "id", source, ["test", "train"], PROMPT, openai_settings, out, qa_path)
    data = json.loads(out.read_text(encoding="utf-8"))
    assert (data["benchmark"], data["language"], list(data["splits"])) == ("arc", "id", ["test", "train"])
    test_item = data["splits"]["test"][0]
    english_item = ENGLISH[("arc", "test")][0]
    assert (test_item["id"], test_item["answer"]) == (english_item["id"], english_item["answer"])
    assert len(option_texts(test_item)) == 3 and "option_d" not in test_item
    assert test_item["instruction"] == fake_translation(english_item["instruction"], "Indonesian")
    assert option_texts(test_item) == [fake_translation(text, "Indonesian") for text in option_texts(english_item)]
    assert [f" {i} " in r["instruction"] for i, r in enumerate(data["splits"]["train"])] == [True] * 3  # numbers kept
    system = fake_openai.requests[0]["messages"][0]["content"]
    assert "into Indonesian" in system
    assert qa["total"] == 4 and qa["accepted"] == 4 and qa["rejected"] == 0
    assert json.loads(qa_path.read_text())["splits"]["test"]["total"] == 1
    sent = fake_openai.count
    assert sent == 4
    translate_benchmark("arc", "id", source, ["test", "train"], PROMPT, openai_settings, out, qa_path)
    assert fake_openai.count == sent  # every answer came from the cache
    assert sorted(p.name for p in (Path(openai_settings["cache_dir"]) / "benchmarks" / "arc" / "id").iterdir()) == [
        "test.jsonl",
        "train.jsonl",
    ]


def test_translated_hellaswag_keeps_label_and_four_endings(tmp_path, fake_openai, openai_settings):
    source = local_source(english_layout(tmp_path / "en"), "hellaswag", "en", ["validation"])
    out = tmp_path / "hellaswag.json"
    translate_benchmark("hellaswag", "vi", source, ["validation"], PROMPT, openai_settings, out, tmp_path / "qa.json")
    item = json.loads(out.read_text(encoding="utf-8"))["splits"]["validation"][0]
    english = ENGLISH[("hellaswag", "validation")][0]
    assert (item["ind"], item["label"], len(item["endings"])) == (7, "0", 4)
    assert item["ctx"] == item["ctx_a"] + " " + item["ctx_b"]
    assert all(ours != theirs for ours, theirs in zip(item["endings"], english["endings"]))
    assert json.loads(fake_openai.requests[0]["messages"][-1]["content"])["ending_3"] == "and goes to sleep."


def test_a_rejected_benchmark_record_is_left_out_listed_and_fails_the_job_over_the_limit(
    tmp_path, fake_openai, openai_settings
):
    source = local_source(english_layout(tmp_path / "en"), "arc", "en", ["train"])
    # One of the three first answers is malformed, and so are both of its re-asks.
    fake_openai.faults = [("malformed",), ("none",), ("none",), ("malformed",), ("malformed",)]
    settings = {**openai_settings, "max_reject_share": 0.1}
    out, qa_path = tmp_path / "arc.json", tmp_path / "qa.json"
    with pytest.raises(TooManyRejects, match="1 of 3 items rejected"):
        translate_benchmark("arc", "id", source, ["train"], PROMPT, settings, out, qa_path)
    qa = json.loads(qa_path.read_text())
    assert (qa["accepted"], qa["rejected"], qa["reasons"]) == (2, 1, {"not JSON": 1})
    assert len(json.loads(out.read_text())["splits"]["train"]) == 2


def test_a_missing_benchmark_file_is_marked_unavailable_unless_strict(released, tmp_path):
    source = local_source(released, "hellaswag", "zh", ["validation"])
    out = tmp_path / "hellaswag" / "zh.json"
    data = prepare_benchmark("hellaswag", "zh", source, ["validation"], out, strict=False)
    assert data["splits"] == {} and "zh_validation.json" in data["unavailable"]
    assert json.loads(out.read_text(encoding="utf-8"))["unavailable"] == data["unavailable"]
    with pytest.raises(FileNotFoundError):
        prepare_benchmark("hellaswag", "zh", source, ["validation"], tmp_path / "strict.json", strict=True)


def test_a_malformed_record_is_marked_unavailable_with_its_file_and_index(released, tmp_path):
    path = released_path(released, "mmlu", "vi", "test")
    records = json.loads(path.read_text(encoding="utf-8"))
    records[2]["answer"] = "Z"
    path.write_text(json.dumps(records), encoding="utf-8")
    data = prepare_benchmark(
        "mmlu", "vi", local_source(released, "mmlu", "vi", ["test"]), ["test"], tmp_path / "out.json", strict=False
    )
    assert data["unavailable"].startswith(f"{path}: record 2: answer 'Z'")


def test_an_unavailable_benchmark_is_not_scored_and_its_score_file_says_why(tmp_path):
    from okapi_pipeline.evaluation.evaluate import evaluate_model

    data = tmp_path / "hellaswag.json"
    data.write_text(
        json.dumps(
            {
                "benchmark": "hellaswag",
                "language": "zh",
                "splits": {},
                "unavailable": "m_hellaswag/zh_validation.json: no such file",
            }
        ),
        encoding="utf-8",
    )
    out = tmp_path / "score.json"
    # No model is loaded: the path does not even exist.
    evaluate_model(tmp_path / "no-model", {"hellaswag": data}, {"backend": "hf"}, {"hellaswag": out}, tmp_path / "w")
    assert json.loads(out.read_text(encoding="utf-8"))["unavailable"] == "m_hellaswag/zh_validation.json: no such file"

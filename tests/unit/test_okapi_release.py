"""The released Okapi data as a source: the checksum table, the checked fetch (a local HTTP
server standing in for the LFS host), the converters on records in the original formats,
the config checks."""

import hashlib
import json

import pytest

from okapi_pipeline.config import ConfigError, check_files, load_schema, validate_config
from okapi_pipeline.data.okapi_release import (
    DATASETS,
    ReleaseError,
    convert_release_file,
    expected_file,
    fetch_release_file,
    missing_languages,
    read_checksums,
)
from okapi_pipeline.jsonl import read_jsonl
from okapi_pipeline.languages import OKAPI_GROUPS
from tests.support.okapi_release_files import checksum_table, write_release_files
from tests.support.workflow import REPO, load_tool, merged_config


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- the checksum table ---------------------------------------------------------------------


def test_the_checked_in_table_covers_the_26_languages_in_every_released_set():
    checksums = read_checksums(REPO / "reference/okapi_release.csv")
    assert len(checksums) == 95  # every pointer file at nlp-uoregon/Okapi@07aaf12
    okapi_26 = [lang for members in OKAPI_GROUPS.values() for lang in members]
    assert len(okapi_26) == 26
    for split in DATASETS:
        assert missing_languages(checksums, split, okapi_26) == [], split
    vi = expected_file(checksums, "sft", "vi")
    assert vi == {
        "dataset": "multilingual-alpaca-52k",
        "file": "vi.json",
        "sha256": "da6cfbd8a44f0f8bd4be1f0671e85fbc54bff44658d1a7e1189e41243fa43159",
        "size": 32341413,
    }
    # Japanese is jp.json in the release; English has SFT data only.
    assert expected_file(checksums, "sft", "ja")["file"] == "jp.json"
    assert missing_languages(checksums, "rm", ["en", "ja", "vi"]) == ["en", "ja"]


def test_the_table_tool_reads_git_lfs_pointers():
    parse_pointer = load_tool("okapi_release_table").parse_pointer
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:" + "ab" * 32 + "\nsize 32341413\n"
    assert parse_pointer(pointer) == ("ab" * 32, 32341413)


# ---- fetching -----------------------------------------------------------------------------


def test_a_file_with_the_right_size_and_checksum_is_fetched(lfs_host, tmp_path):
    served, url = lfs_host
    data = json.dumps([{"instruction": "Xin chào", "input": "", "output": "Chào bạn"}], ensure_ascii=False).encode()
    (served / "vi.json").write_bytes(data)
    out = tmp_path / "resources/okapi_release/multilingual-alpaca-52k/vi.json"
    fetch_release_file(f"{url}/vi.json", out, digest(data), len(data))
    assert out.read_bytes() == data
    assert [p.name for p in out.parent.iterdir()] == ["vi.json"]


@pytest.mark.parametrize(
    "served_bytes, message",
    [
        (b'[{"instruction": "the 0riginal"}]', "SHA-256"),  # same size, one byte changed
        (b'[{"instruction": "the original", "more": 1}]', "more than the expected"),
        (b'[{"instruction": "cut"', "bytes, not the expected 33"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 9\n", "a git-LFS pointer"),
    ],
)
def test_a_wrong_file_writes_nothing(lfs_host, tmp_path, served_bytes, message):
    served, url = lfs_host
    expected = b'[{"instruction": "the original"}]'
    (served / "vi.json").write_bytes(served_bytes)
    out = tmp_path / "out/vi.json"
    size = len(expected) if message != "a git-LFS pointer" else 4096
    with pytest.raises(ReleaseError, match=message) as error:
        fetch_release_file(f"{url}/vi.json", out, digest(expected), size)
    assert "\n" not in str(error.value)
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_missing_file_on_the_host_writes_nothing(lfs_host, tmp_path):
    _, url = lfs_host
    out = tmp_path / "out/vi.json"
    with pytest.raises(OSError, match="404"):
        fetch_release_file(f"{url}/vi.json", out, "0" * 64, 10)
    assert list(out.parent.iterdir()) == []


def test_a_local_copy_is_checked_like_a_download(tmp_path):
    rows = {(row["dataset"], row["file"]): row for row in write_release_files(tmp_path / "datasets", ["vi"])}
    row = rows[("multilingual-rl-tuning-64k", "vi.json")]
    source = tmp_path / "datasets/multilingual-rl-tuning-64k/vi.json"
    fetch_release_file(str(source), tmp_path / "copy.json", row["sha256"], row["size"])
    assert (tmp_path / "copy.json").read_bytes() == source.read_bytes()
    with pytest.raises(ReleaseError, match="SHA-256"):
        fetch_release_file(str(source), tmp_path / "bad.json", "0" * 64, row["size"])
    assert not (tmp_path / "bad.json").exists()


def test_the_test_files_match_their_checked_in_table(tmp_path):
    """.test/config_okapi_release.yaml checks the files tests/support/okapi_release_files.py writes."""
    rows = write_release_files(tmp_path)
    assert checksum_table(rows) == (REPO / ".test/okapi_release_checksums.csv").read_text()


# ---- converting -----------------------------------------------------------------------------


def write_json(path, records, lines=False):
    text = (
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records) if lines else json.dumps(records, indent=4)
    )
    path.write_text(text, encoding="utf-8")
    return path


def test_sft_records_are_the_alpaca_records_with_ids(tmp_path):
    source = write_json(
        tmp_path / "vi.json",
        [
            {"instruction": "Đưa ra ba lời khuyên.", "input": "", "output": "Ăn uống cân bằng."},
            {"instruction": "Dịch câu này.", "input": "The cat.", "output": "Con mèo."},
            {"instruction": "Đếm.", "output": "Một, hai."},  # no input key: no input, as datasets reads it
        ],
    )
    assert convert_release_file("sft", source, tmp_path / "sft.jsonl", "vi") == 3
    records = read_jsonl(tmp_path / "sft.jsonl")
    assert records[1] == {
        "id": "okapi-vi-000001",
        "instruction": "Dịch câu này.",
        "input": "The cat.",
        "output": "Con mèo.",
    }
    assert records[2]["input"] == ""


def test_ranking_pairs_are_kept_as_released_and_a_prompt_keeps_one_id(tmp_path):
    """reward_modeling.py reads one pair per record (instruction, input, prefered_output,
    rejected_output): each record is one pair; the pairs of one prompt share its id."""
    pair = {"instruction": "Viết một câu.", "input": "", "prefered_output": "Câu hay.", "rejected_output": "Câu."}
    records = [pair, {**pair, "rejected_output": "Không."}, {**pair, "instruction": "Khác."}]
    source = write_json(tmp_path / "vi.json", records)
    assert convert_release_file("rm", source, tmp_path / "pairs.jsonl", "vi") == 3
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    assert [p["id"] for p in pairs] == ["okapi-vi-000000", "okapi-vi-000000", "okapi-vi-000002"]
    assert pairs[1] == {**pair, "rejected_output": "Không.", "id": "okapi-vi-000000"}


def test_ppo_prompts_read_numbers_as_text_as_the_original_loader_did(tmp_path):
    records = [{"instruction": "Cộng hai số.", "input": 42, "output": 7}, {"instruction": "Chào.", "input": None}]
    source = write_json(tmp_path / "vi.json", records, lines=True)
    convert_release_file("ppo", source, tmp_path / "ppo.jsonl", "vi")
    assert read_jsonl(tmp_path / "ppo.jsonl") == [
        {"id": "okapi-vi-000000", "instruction": "Cộng hai số.", "input": "42"},
        {"id": "okapi-vi-000001", "instruction": "Chào.", "input": ""},
    ]


@pytest.mark.parametrize(
    "split, records, lines, message",
    [
        (
            "sft",
            [{"instruction": "a", "input": "", "output": "b"}, {"instruction": "c", "input": ""}],
            False,
            "vi.json: record 1: 'output' is missing",
        ),
        (
            "rm",
            [{"instruction": "a", "prefered_output": "b", "rejected_output": ["c"]}],
            False,
            "vi.json: record 0: 'rejected_output' is a JSON list, not text",
        ),
        ("ppo", [{"instruction": "a"}, {"instruction": " "}], True, "vi.json: record 1: 'instruction' is empty"),
        ("ppo", [{"instruction": "a"}, "just a string"], True, "vi.json: record 1 is a JSON str, not an object"),
    ],
)
def test_a_record_that_does_not_parse_is_named_by_file_and_index(tmp_path, split, records, lines, message):
    source = write_json(tmp_path / "vi.json", records, lines=lines)
    with pytest.raises(ReleaseError, match=message) as error:
        convert_release_file(split, source, tmp_path / "out.jsonl", "vi")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out.jsonl").exists()


def test_a_file_that_is_not_json_is_named_with_the_place(tmp_path):
    (tmp_path / "lines.json").write_text('{"instruction": "a"}\n{"instruction": \n', encoding="utf-8")
    with pytest.raises(ReleaseError, match=r"lines.json: record 1 \(line 2\) is not valid JSON"):
        convert_release_file("ppo", tmp_path / "lines.json", tmp_path / "out.jsonl", "vi")
    (tmp_path / "array.json").write_text('[\n    {"instruction": "a"},\n    {"instruction" "b"}\n]', encoding="utf-8")
    with pytest.raises(ReleaseError, match=r"array.json: not valid JSON \(line 3, column 20\)"):
        convert_release_file("sft", tmp_path / "array.json", tmp_path / "out.jsonl", "vi")


# ---- config -----------------------------------------------------------------------------------


def release_config(**split_sources) -> dict:
    config = merged_config(".test/config_okapi_release.yaml")
    for split, source in split_sources.items():
        config["split"][split]["source"] = source
    return validate_config(config, load_schema())


def test_a_released_split_plans_no_translation_and_costs_nothing():
    from okapi_pipeline.config import ranking_responders, split_plan, split_sizes
    from okapi_pipeline.report.cost import config_estimate

    config = release_config()
    assert split_plan(config) == {} and split_sizes(config) == {} and ranking_responders(config) == []
    assert sum(row["usd"] for row in config_estimate({**config, "llm": {**config["llm"], "backend": "openai"}})) == 0
    mixed = release_config(rm="pipeline")  # released SFT data and PPO prompts, own ranking
    assert list(split_plan(mixed)) == ["rm"] and ranking_responders(mixed) == ["tiny-bloom"]


def test_a_release_url_without_the_file_is_a_config_error():
    config = merged_config(".test/config_okapi_release.yaml")
    config["okapi_release"] = {"path": None, "url": "https://example.org/okapi/vi.json"}
    with pytest.raises(ConfigError, match=r"^config: 'okapi_release.url': it needs \{dataset\} and \{file\}"):
        validate_config(config, load_schema())


def test_a_language_a_released_set_lacks_is_a_config_error(monkeypatch):
    monkeypatch.chdir(REPO)
    config = release_config()
    check_files(config)
    config["languages"] = ["vi", "id"]
    with pytest.raises(
        ConfigError, match=r"'split.sft.source': the Okapi release has no multilingual-alpaca-52k file for id"
    ):
        check_files(config)


def test_a_benchmark_folder_that_does_not_exist_is_a_config_error(monkeypatch):
    monkeypatch.chdir(REPO)
    config = validate_config(merged_config(), load_schema())
    check_files(config)
    config["benchmarks"]["mmlu"]["path"] = "demo/benchmark"
    with pytest.raises(ConfigError, match=r"^config: 'benchmarks.mmlu.path': no folder demo/benchmark$"):
        check_files(config)

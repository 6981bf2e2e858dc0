"""A base model's fetch records the commit its revision resolved to (a stand-in for the hub:
huggingface_hub's ModelInfo from the JSON the hub answers, and a snapshot_download that
writes the files)."""

import json
import logging
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub.hf_api import ModelInfo

from okapi_pipeline.training.hub import fetch_base_model

COMMIT = "6f4f3e24a7b1c9d0e8f7a6b5c4d3e2f1a0b9c8d7"


@pytest.fixture
def hub(monkeypatch):
    """The hub as seen through HfApi().model_info and snapshot_download; `hub.files` is the
    repository at COMMIT, `hub.downloads` what was asked for."""

    class Hub:
        files = ["config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json"]
        downloads = []

    class StandInApi:
        def model_info(self, repo_id, revision=None):
            # The hub resolves a branch or tag to its commit and lists that commit's files.
            return ModelInfo(id=repo_id, sha=COMMIT, siblings=[{"rfilename": name} for name in Hub.files])

    def snapshot_download(repo_id, *, revision, local_dir, ignore_patterns):
        Hub.downloads.append({"repo_id": repo_id, "revision": revision, "ignore_patterns": ignore_patterns})
        for name in Hub.files:
            if not any(name.endswith(pattern.lstrip("*")) for pattern in ignore_patterns):
                (Path(local_dir) / name).write_text("{}")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "HfApi", StandInApi)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return Hub


def test_the_fetch_downloads_the_resolved_commit_and_records_it_beside_the_model(hub, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="okapi_pipeline.training.hub")
    out = tmp_path / "bloom-7b1"
    out.mkdir()
    assert fetch_base_model("bigscience/bloom-7b1", "main", out) == COMMIT
    # The files are the commit's, not whatever "main" is when the download runs.
    assert [d["revision"] for d in hub.downloads] == [COMMIT]
    assert json.loads((out / "source.json").read_text()) == {
        "hub_id": "bigscience/bloom-7b1",
        "revision": "main",
        "commit": COMMIT,
    }
    # safetensors in the repository: the PyTorch pickles are not downloaded.
    assert sorted(p.name for p in out.iterdir()) == [
        "config.json",
        "model.safetensors",
        "source.json",
        "tokenizer.json",
    ]
    assert (
        f"bigscience/bloom-7b1@main is commit {COMMIT}; to fetch exactly this model again, set its revision: {COMMIT}"
        in (caplog.messages)
    )


def test_a_repository_without_safetensors_keeps_its_pytorch_weights(hub, tmp_path):
    hub.files = ["config.json", "pytorch_model.bin", "flax_model.msgpack"]
    fetch_base_model("huggyllama/llama-7b", COMMIT, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "pytorch_model.bin", "source.json"]
    assert json.loads((tmp_path / "source.json").read_text())["revision"] == COMMIT

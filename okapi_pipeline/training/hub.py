"""Base models from the Hugging Face hub."""

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# Formats other than PyTorch weights: never needed here, often many gigabytes.
FOREIGN_WEIGHTS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.gguf", "*.tflite"]
# What a fetch got, written beside the model: the hub id, the revision asked for, the commit.
SOURCE_FILE = "source.json"


def fetch_base_model(hub_id: str, revision: str, out_dir) -> str:
    """Download a hub model into out_dir (safetensors only when the repo has them) and
    record in out_dir/source.json the commit that `revision` resolved to; returns it.

    The files are those of that commit, even if the branch moves during the download:
    copying the commit into the config's `revision` pins a later run to the same model."""
    from huggingface_hub import HfApi, snapshot_download

    info = HfApi().model_info(hub_id, revision=revision)
    commit = info.sha
    files = [sibling.rfilename for sibling in info.siblings or []]
    ignore = list(FOREIGN_WEIGHTS)
    if any(name.endswith(".safetensors") for name in files):
        ignore += ["*.bin", "*.pt", "*.pth"]
    log.info(
        "downloading %s@%s (commit %s) into %s (skipping %s)", hub_id, revision, commit, out_dir, ", ".join(ignore)
    )
    snapshot_download(hub_id, revision=commit, local_dir=out_dir, ignore_patterns=ignore)
    source = {"hub_id": hub_id, "revision": revision, "commit": commit}
    (Path(out_dir) / SOURCE_FILE).write_text(json.dumps(source, indent=2) + "\n", encoding="utf-8")
    log.info(
        "%s@%s is commit %s; to fetch exactly this model again, set its revision: %s", hub_id, revision, commit, commit
    )
    return commit

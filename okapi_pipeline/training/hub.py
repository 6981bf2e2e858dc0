"""Base models from the Hugging Face hub."""

import logging

log = logging.getLogger(__name__)

# Formats other than PyTorch weights: never needed here, often many gigabytes.
FOREIGN_WEIGHTS = ["*.h5", "*.msgpack", "*.ot", "*.onnx", "*.gguf", "*.tflite"]


def fetch_base_model(hub_id: str, revision: str, out_dir) -> None:
    """Download a hub model into out_dir (safetensors only when the repo has them)."""
    from huggingface_hub import HfApi, snapshot_download

    files = HfApi().list_repo_files(hub_id, revision=revision)
    ignore = list(FOREIGN_WEIGHTS)
    if any(name.endswith(".safetensors") for name in files):
        ignore += ["*.bin", "*.pt", "*.pth"]
    log.info("downloading %s@%s into %s (skipping %s)", hub_id, revision, out_dir, ", ".join(ignore))
    snapshot_download(hub_id, revision=revision, local_dir=out_dir, ignore_patterns=ignore)

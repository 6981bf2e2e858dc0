"""The bit-identical check: every weight below the top trainable blocks unchanged by training."""

import json
from pathlib import Path


def safetensors_index(model_dir) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it (one file, or sharded with an index)."""
    model_dir = Path(model_dir)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        return {name: model_dir / file for name, file in json.loads(index.read_text())["weight_map"].items()}
    from safetensors import safe_open

    with safe_open(model_dir / "model.safetensors", "pt") as handle:
        return {name: model_dir / "model.safetensors" for name in handle.keys()}


def block_count(model_dir) -> int:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    return config.get("num_hidden_layers") or config["n_layer"]


# How the saved weights of the checked families name their block list and final norm
# (read from the files, so that a 7B model need not be loaded to check it).
BLOCK_LIST_NAMES = ("layers", "h", "blocks")
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm")


def is_frozen(name: str, blocks: int, trainable_top_blocks: int, freeze_embeddings: bool) -> bool:
    """Whether freezing leaves this weight untouched: every block below the top k, and
    with `freeze_embeddings` the rest of the backbone but its final norm (the embeddings)."""
    parts = name.split(".")
    for position, part in enumerate(parts[:-1]):
        if part in BLOCK_LIST_NAMES and parts[position + 1].isdigit():
            return int(parts[position + 1]) < blocks - trainable_top_blocks
    return freeze_embeddings and parts[0] in ("model", "transformer") and parts[1] not in FINAL_NORM_NAMES


def frozen_blocks_check(before_dir, after_dir, trainable_top_blocks: int, freeze_embeddings: bool) -> dict:
    """Compare the saved weights one tensor at a time (a 7B model need not fit in memory).

    The base model may be saved in bf16 and the trained one in fp32: bf16 -> fp32 is
    exact, so a frozen weight must still compare equal.
    """
    import torch
    from safetensors import safe_open

    before, after = safetensors_index(before_dir), safetensors_index(after_dir)
    blocks = block_count(before_dir)
    handles = {}

    def tensor(path: Path, name: str):
        if path not in handles:
            handles[path] = safe_open(path, "pt")
        return handles[path].get_tensor(name)

    frozen, changed_frozen, trained_changed = 0, [], False
    for name in sorted(set(before) & set(after)):
        old, new = tensor(before[name], name), tensor(after[name], name)
        same = old.shape == new.shape and torch.equal(old.to(new.dtype), new)
        if is_frozen(name, blocks, trainable_top_blocks, freeze_embeddings):
            frozen += 1
            if not same:
                changed_frozen.append(name)
        elif not same:
            trained_changed = True
    return {
        "frozen_tensors": frozen,
        "frozen_identical": frozen > 0 and not changed_frozen,
        "changed_frozen": changed_frozen[:5],
        "top_blocks_changed": trained_changed,
    }

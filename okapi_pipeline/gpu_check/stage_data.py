"""Training data that fill the configured lengths, cut from the demo corpus."""

from pathlib import Path

from okapi_pipeline.gpu_check.settings import REPO


def long_texts(tokenizer, count: int, min_tokens: int) -> list[str]:
    """`count` different texts of at least `min_tokens` tokens, cut from the demo corpus."""
    lines = [
        line
        for path in sorted((REPO / "demo" / "corpus").glob("*.txt"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    lengths = [len(ids) for ids in tokenizer(lines, add_special_tokens=False)["input_ids"]]
    texts = []
    for index in range(count):
        start, parts, total = (index * 37) % len(lines), [], 0
        while total < min_tokens + 8:  # a little over: joining lines can merge tokens
            position = (start + len(parts)) % len(lines)
            parts.append(lines[position])
            total += lengths[position] + 1
        texts.append(" ".join(parts))
    return texts


def sft_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    from okapi_pipeline.jsonl import write_jsonl

    outputs = long_texts(tokenizer, count, settings["max_length"])
    write_jsonl(
        path,
        [
            {"id": f"sft-{i:05d}", "instruction": "Continue the text.", "input": "", "output": text}
            for i, text in enumerate(outputs)
        ],
    )
    return path, count * settings["max_length"]


def pair_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    """Preference pairs whose prompt + response fills max_length; the tokens both sides take."""
    from okapi_pipeline.jsonl import write_jsonl
    from okapi_pipeline.training.reward_model import tokenize_pair

    texts = long_texts(tokenizer, 2 * count, settings["max_length"])
    pairs = [
        {
            "id": f"pair-{i:05d}",
            "instruction": "Continue the text.",
            "input": "",
            "prefered_output": texts[2 * i],
            "rejected_output": texts[2 * i + 1],
        }
        for i in range(count)
    ]
    write_jsonl(path, pairs)
    tokens = sum(len(ids) for pair in pairs for ids in tokenize_pair(pair, tokenizer, settings["max_length"]).values())
    return path, tokens


def ppo_data(tokenizer, settings: dict, count: int, path: Path) -> tuple[Path, int]:
    """Prompts longer than max_prompt_length (cut from the left to it), so rollouts are full length."""
    from okapi_pipeline.jsonl import write_jsonl

    texts = long_texts(tokenizer, count, settings["max_prompt_length"])
    write_jsonl(path, [{"id": f"ppo-{i:05d}", "instruction": text, "input": ""} for i, text in enumerate(texts)])
    return path, count * (settings["max_prompt_length"] + settings["response_length"])


DATA = {"sft": sft_data, "reward_model": pair_data, "dpo": pair_data, "ppo": ppo_data}
# Each stage starts from the base model; PPO's reward and value models are the base model with a new head.
STAGE_INPUTS = {
    "sft": lambda model, data: {"base_dir": model, "data_path": str(data)},
    "reward_model": lambda model, data: {"sft_dir": model, "pairs_path": str(data)},
    "dpo": lambda model, data: {"sft_dir": model, "pairs_path": str(data)},
    "ppo": lambda model, data: {"sft_dir": model, "reward_model_dir": model, "prompts_path": str(data)},
}

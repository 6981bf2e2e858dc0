"""Chat with a trained model in the Alpaca prompt it was trained on.

    python -m okapi_pipeline.training.chat MODEL_DIR                 # one instruction a line, until EOF
    python -m okapi_pipeline.training.chat MODEL_DIR --prompt TEXT   # one answer, then exit

Sampling as the original's chat script: top_p 0.75, top_k 40, up to 256 new tokens.
Each instruction is answered on its own (the models were trained on single turns).
"""

import argparse
import sys
from pathlib import Path

from okapi_pipeline.template import alpaca_prompt
from okapi_pipeline.training.modeling import load_for_generation

CHAT_SAMPLING = {"do_sample": True, "top_p": 0.75, "top_k": 40, "max_new_tokens": 256}


def reply(tokenizer, model, instruction: str, input: str = "", seed: int | None = None) -> str:
    """The model's answer to one instruction (with an optional input)."""
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    encoded = tokenizer(alpaca_prompt(instruction, input), return_tensors="pt").to(model.device)
    with torch.no_grad():
        output = model.generate(**encoded, **CHAT_SAMPLING, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(output[0, encoded["input_ids"].shape[1] :], skip_special_tokens=True).strip()


def main(argv: list[str] | None = None, stdin=None, stdout=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a trained model's folder (results/models/MODEL/LANG/STAGE)")
    parser.add_argument("--prompt", help="answer this instruction and exit")
    parser.add_argument("--input", default="", help="the instruction's input (context), with --prompt")
    parser.add_argument("--seed", type=int, default=None, help="sampling seed (default: a fresh one each run)")
    options = parser.parse_args(argv)
    if not (options.model_dir / "config.json").is_file():
        parser.error(f"{options.model_dir} is not a saved model folder (no config.json)")
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    tokenizer, model, _ = load_for_generation(options.model_dir)
    if options.prompt is not None:
        print(reply(tokenizer, model, options.prompt, options.input, options.seed), file=stdout)
        return
    interactive = stdin.isatty()
    while True:
        if interactive:
            print("> ", end="", file=stdout, flush=True)
        line = stdin.readline()
        if not line:
            break
        if line.strip():
            print(reply(tokenizer, model, line.strip(), seed=options.seed), file=stdout, flush=True)


if __name__ == "__main__":
    main()

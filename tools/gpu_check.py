"""Check and time every GPU path of the pipeline in one command.

    python tools/gpu_check.py --size 1b     # LLaMA- and BLOOM-shaped ~1B models: the quick GPU pass
    python tools/gpu_check.py --size 7b     # LLaMA-7B, BLOOM-7B1, Qwen2.5-7B, Llama-3.1-8B shapes
    python tools/gpu_check.py --tiny        # the demo's model sizes, on CPU (part of the tests)

What each stage runs and measures: okapi_pipeline/gpu_check (README: "The GPU check").
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package
from okapi_pipeline.gpu_check.runner import run_check  # noqa: E402
from okapi_pipeline.gpu_check.shapes import MODEL_STAGES, SIZES  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:6]),
    )
    parser.add_argument("--size", choices=SIZES, default="1b")
    parser.add_argument("--tiny", action="store_true", help="the demo's model sizes (same as --size tiny)")
    parser.add_argument("--out", type=Path, help="the JSON report (default results/gpu_check/SIZE.json)")
    parser.add_argument("--work", type=Path, help="models, data, logs (default results/gpu_check/SIZE/)")
    parser.add_argument(
        "--record",
        type=Path,
        metavar="TABLE",
        help="append the GPU stages' rates to the measured table (reference/gpu_measurements.csv)",
    )
    parser.add_argument("--models", help="comma-separated model names (default: every model of the size)")
    parser.add_argument("--stages", help=f"comma-separated stages (default: {','.join(MODEL_STAGES)})")
    parser.add_argument("--steps", type=int, help="optimizer steps of SFT, reward model and DPO")
    parser.add_argument("--ppo-rounds", type=int, help="PPO rounds (rollouts, then the PPO epochs over them)")
    parser.add_argument(
        "--ppo-processes",
        type=int,
        help="processes the configured PPO batches are shared by (default: 7 for the paper)",
    )
    parser.add_argument("--threads", type=int, help="torch threads per stage (default: 1 for --tiny, else all)")
    parser.add_argument("--stage-timeout", type=float, help="seconds per stage, for every stage")
    parser.add_argument(
        "--inject",
        action="append",
        default=[],
        metavar="STAGE=fail|hang",
        help="make a stage fail or hang (to test the checker itself)",
    )
    options = parser.parse_args(argv)
    if options.tiny:
        options.size = "tiny"
    del options.tiny
    return options


def main(argv=None) -> int:
    return run_check(**vars(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())

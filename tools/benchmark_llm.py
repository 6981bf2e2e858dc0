"""Measure the LLM layer against the fake OpenAI-compatible server.

    .venv/bin/python tools/benchmark_llm.py [--items 5000] [--latency 0.2] [--rpm 3000]
                                            [--concurrency 32] [--sequential-sample 50]

The server answers every request after `latency` seconds and answers 429 (with
Retry-After) beyond `rpm` requests a minute; the client is told the same limit.
Reports: throughput of the layer as a share of the limit; the same items through a
plain sequential loop of the openai client (timed on a sample and extrapolated:
the whole loop would take items x latency); and the items per second replayed from a
warm cache (loading the cache file included, and excluded).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from okapi_pipeline.llm import JsonRequest, LLMClient  # noqa: E402
from tests.fake_openai import CANARY_KEY, KEY_VARIABLE, FakeOpenAI  # noqa: E402

SYSTEM = "Translate every string value of the JSON object in the user message from English into German."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-sample", type=int, default=50)
    args = parser.parse_args()

    os.environ[KEY_VARIABLE] = CANARY_KEY
    server = FakeOpenAI().start()
    server.latency, server.requests_per_minute = args.latency, args.rpm
    requests = [JsonRequest(SYSTEM, {"instruction": f"Give {i} tips for staying healthy.",
                                     "output": f"Eat well and sleep {i % 9 + 6} hours."}, ("instruction", "output"))
                for i in range(args.items)]
    with tempfile.TemporaryDirectory() as folder:
        settings = {"backend": "openai", "model": "fake", "base_url": server.base_url, "api_key_env": KEY_VARIABLE,
                    "temperature": 0.0, "max_new_tokens": 256, "max_concurrency": args.concurrency,
                    "requests_per_minute": args.rpm, "tokens_per_minute": None, "max_retries": 5, "timeout_s": 30,
                    "cache_dir": folder, "mode": "online"}
        cache = Path(folder) / "bench.jsonl"

        client = LLMClient.from_settings(settings, cache)
        start = time.perf_counter()
        results = client.json_requests(requests)
        online = time.perf_counter() - start
        client.close()
        assert all(isinstance(r, dict) for r in results)
        rate = args.items / online * 60

        from openai import OpenAI

        plain = OpenAI(api_key=CANARY_KEY, base_url=server.base_url)
        sample = requests[: args.sequential_sample]
        start = time.perf_counter()
        for request in sample:
            plain.chat.completions.create(model="fake", messages=[{"role": "system", "content": request.system},
                                                                  {"role": "user", "content": request.user_text()}])
        sequential = (time.perf_counter() - start) / len(sample) * args.items

        start = time.perf_counter()
        warm = LLMClient.from_settings(settings, cache)
        loaded = time.perf_counter()
        again = warm.json_requests(requests)
        done = time.perf_counter()
        assert again == results and warm.sent == 0
        warm.close()
    server.stop()

    print(f"items: {args.items}; server latency {args.latency * 1000:.0f} ms; limit {args.rpm:.0f} requests/min; "
          f"max_concurrency {args.concurrency}")
    print(f"layer: {online:.1f} s = {rate:.0f} requests/min = {rate / args.rpm:.1%} of the limit "
          f"({server.rate_limited} answered 429 by the server and retried)")
    print(f"plain sequential loop: {sequential:.1f} s (extrapolated from {len(sample)} items) "
          f"= {args.items / sequential * 60:.0f} requests/min; the layer is {sequential / online:.1f}x faster")
    print(f"warm cache: {args.items / (done - start):,.0f} items/s including loading the cache file, "
          f"{args.items / (done - loaded):,.0f} items/s from memory")


if __name__ == "__main__":
    main()

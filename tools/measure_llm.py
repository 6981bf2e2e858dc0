"""Measure the LLM layer against the fake OpenAI-compatible server.

    .venv/bin/python tools/measure_llm.py [--items 5000] [--latency 0.2] [--rpm 3000]
                                            [--concurrency 32] [--sequential-sample 50]

At the limit of a top OpenAI usage tier (30,000 requests/minute):

    .venv/bin/python tools/measure_llm.py --items 5000 --latency 0.2 --rpm 30000 --concurrency 200

The server runs in a process of its own (so the client's CPU time is the layer's
alone), answers every request after `latency` seconds and answers 429 (with
Retry-After) beyond `rpm` requests a minute; the client is told the same limit.
Reports: requests/s overall and steady (between 10% and 90% of the answers put into
the cache), the layer's CPU seconds per 1,000 requests (time.process_time of this
process: the event loop and the cache's writer); the same items through a plain
sequential loop of the openai client (timed on a sample and extrapolated: the whole
loop would take items x latency); and the items per second replayed from a warm
cache (loading the cache file included, and excluded).
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from okapi_pipeline.llm import JsonRequest, LLMClient  # noqa: E402
from tests.support.fake_openai import CANARY_KEY, KEY_VARIABLE, FakeOpenAI  # noqa: E402

SYSTEM = "Translate every string value of the JSON object in the user message from English into German."


def serve(connection, latency: float, rpm: float) -> None:
    """The fake server in its own process: sends its URL, then its 429 count when told to stop."""
    server = FakeOpenAI().start()
    server.latency, server.requests_per_minute = latency, rpm
    connection.send(server.base_url)
    connection.recv()
    connection.send(server.rate_limited)
    server.stop()


def steady_rate(samples: list[tuple[float, int]], total: int) -> float:
    """Answers per second between 10% and 90% of the total (ramp-up and tail left out)."""
    low = next((t, n) for t, n in samples if n >= 0.1 * total)
    high = next(((t, n) for t, n in samples if n >= 0.9 * total), samples[-1])
    return (high[1] - low[1]) / (high[0] - low[0]) if high[0] > low[0] else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=5000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--rpm", type=float, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sequential-sample", type=int, default=50)
    args = parser.parse_args()

    os.environ[KEY_VARIABLE] = CANARY_KEY
    ours, theirs = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(
        target=serve, args=(theirs, args.latency, args.rpm), daemon=True
    )
    process.start()
    base_url = ours.recv()
    requests = [
        JsonRequest(
            SYSTEM,
            {"instruction": f"Give {i} tips for staying healthy.", "output": f"Eat well and sleep {i % 9 + 6} hours."},
            ("instruction", "output"),
        )
        for i in range(args.items)
    ]
    with tempfile.TemporaryDirectory() as folder:
        settings = {
            "backend": "openai",
            "model": "fake",
            "base_url": base_url,
            "api_key_env": KEY_VARIABLE,
            "temperature": 0.0,
            "max_new_tokens": 256,
            "max_concurrency": args.concurrency,
            "requests_per_minute": args.rpm,
            "tokens_per_minute": None,
            "max_retries": 5,
            "timeout_s": 30,
            "cache_dir": folder,
            "mode": "online",
        }
        cache = Path(folder) / "bench.jsonl"

        client = LLMClient.from_settings(settings, cache)
        samples, done_sampling = [], threading.Event()

        def sample() -> None:
            while not done_sampling.is_set():
                samples.append((time.perf_counter(), len(client.cache.answers)))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        cpu, start = time.process_time(), time.perf_counter()
        sampler.start()
        results = client.json_requests(requests)
        client.close()
        online, cpu = time.perf_counter() - start, time.process_time() - cpu
        done_sampling.set()
        sampler.join()
        samples.append((start + online, args.items))
        assert all(isinstance(r, dict) for r in results)
        steady = steady_rate(samples, args.items)

        from openai import OpenAI

        plain = OpenAI(api_key=CANARY_KEY, base_url=base_url)
        sample_items = requests[: args.sequential_sample]
        start = time.perf_counter()
        for request in sample_items:
            plain.chat.completions.create(
                model="fake",
                messages=[
                    {"role": "system", "content": request.system},
                    {"role": "user", "content": request.user_text()},
                ],
            )
        sequential = (time.perf_counter() - start) / len(sample_items) * args.items

        start = time.perf_counter()
        warm = LLMClient.from_settings(settings, cache)
        loaded = time.perf_counter()
        again = warm.json_requests(requests)
        done = time.perf_counter()
        assert again == results and warm.sent == 0
        warm.close()
    ours.send("stop")
    rate_limited = ours.recv()
    process.join(timeout=10)

    rate = args.items / online
    print(
        f"items: {args.items}; server latency {args.latency * 1000:.0f} ms; limit {args.rpm:.0f} requests/min; "
        f"max_concurrency {args.concurrency}"
    )
    print(
        f"layer: {online:.1f} s = {rate:.0f} requests/s overall, {steady:.0f} requests/s steady "
        f"= {rate * 60 / args.rpm:.1%} of the limit overall "
        f"({rate_limited} answered 429 by the server and retried)"
    )
    print(f"layer CPU: {cpu:.1f} s = {cpu / args.items * 1000:.2f} CPU s per 1,000 requests")
    print(
        f"plain sequential loop: {sequential:.1f} s (extrapolated from {len(sample_items)} items) "
        f"= {args.items / sequential * 60:.0f} requests/min; the layer is {sequential / online:.1f}x faster"
    )
    print(
        f"warm cache: {args.items / (done - start):,.0f} items/s including loading the cache file, "
        f"{args.items / (done - loaded):,.0f} items/s from memory"
    )


if __name__ == "__main__":
    main()

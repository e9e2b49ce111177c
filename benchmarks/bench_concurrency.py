"""Concurrent clients on the served UI's API while the index is updated.

    .venv/bin/python benchmarks/bench_concurrency.py [--clients 20] [--rounds 5] [--updates]

A copy of the shipped corpus is indexed and served by `rag serve` (a separate process, as users run
it). Then, against the same server in one run:
1. one client alone asks the question list (the baseline latency);
2. N clients at once ask the same list, while another process adds and removes a document and
   publishes a new index generation continuously (--updates, on by default).
Prints p50/p95/max latency of both, the ratio p95(loaded)/p50(alone), errors (must be 0) and how many
generations the answers came from.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks._common import ROOT, machine  # noqa: E402

QUESTIONS = [
    "What does the AI Action Plan say about open-weight AI models?",
    "What must agencies do under OMB memo M-24-10?",
    "What are the four functions of the NIST AI Risk Management Framework?",
    "What did the NTIA request comment on?",
    "What is the Genesis Mission?",
    "What is the recipe for sourdough bread?",
]


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * (len(xs) - 1) + 0.5))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5, help="questions per client")
    ap.add_argument("--no-updates", dest="updates", action="store_false")
    ap.add_argument("--concurrency", type=int, default=2, help="ui_concurrency of the server")
    args = ap.parse_args()
    from gradio_client import Client

    work = Path(tempfile.mkdtemp(prefix="bench-conc-"))
    corpus, index = work / "corpus", work / "index"
    shutil.copytree(ROOT / "corpus", corpus)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "RAG_CONFIG": str(work / "none.toml"),
           "RAG_CORPUS": str(corpus), "RAG_INDEX": str(index), "RAG_UI__CONCURRENCY": str(args.concurrency)}
    subprocess.run([sys.executable, "-m", "rag.cli", "index", "build"], env=env, check=True, capture_output=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(work / "serve.log", "w")  # noqa: SIM115
    server = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--port", str(port)], env=env, stdout=log,
                              stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        c = Client(url, verbose=False)
        c.predict(QUESTIONS[0], 5, "extractive", "", api_name="/ask")  # warm-up
        alone = []
        for _ in range(2):
            for q in QUESTIONS:
                t0 = time.perf_counter()
                c.predict(q, 5, "extractive", "", api_name="/ask")
                alone.append(time.perf_counter() - t0)

        stop = threading.Event()
        n_updates = [0]

        def updater() -> None:
            note = corpus / "bench-update.md"
            i = 0
            while not stop.is_set():
                i += 1
                if i % 2:
                    note.write_text(f"# Update {i}\n\nBenchmark note {i} about harbor dredging permits.\n")
                else:
                    note.unlink(missing_ok=True)
                subprocess.run([sys.executable, "-m", "rag.cli", "index", "build"], env=env, check=True, capture_output=True)
                n_updates[0] += 1

        lat: list[float] = []
        gens: set[str] = set()
        errors: list[str] = []
        lock = threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client(n: int) -> None:
            cl = Client(url, verbose=False)
            barrier.wait()
            for r in range(args.rounds):
                q = QUESTIONS[(n + r) % len(QUESTIONS)]
                t0 = time.perf_counter()
                try:
                    res = cl.predict(q, 5, "extractive", "", api_name="/ask")
                except Exception as e:  # counted, never hidden
                    with lock:
                        errors.append(f"{type(e).__name__}: {e}")
                    continue
                with lock:
                    lat.append(time.perf_counter() - t0)
                    gens.add(res["record"]["index"]["generation"])

        up = threading.Thread(target=updater, daemon=True)
        if args.updates:
            up.start()
        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        stop.set()
        if args.updates:
            up.join(300)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    print(f"machine: {machine()}")
    print(f"one client alone: {len(alone)} questions, p50 {statistics.median(alone):.3f} s, p95 {pct(alone, 0.95):.3f} s")
    print(f"{args.clients} clients at once (ui_concurrency {args.concurrency}, index updates: {n_updates[0]} published): "
          f"{len(lat)} answers in {wall:.1f} s, {len(errors)} errors, {len(gens)} generations served; "
          f"p50 {statistics.median(lat):.3f} s, p95 {pct(lat, 0.95):.3f} s, max {max(lat):.3f} s")
    print(f"ratio p95(loaded) / p50(alone): {pct(lat, 0.95) / statistics.median(alone):.1f}x; "
          f"throughput {len(lat) / wall:.1f} answers/s vs {1 / statistics.median(alone):.1f} alone")
    if errors:
        print("errors:", errors[:5])
        sys.exit(1)


if __name__ == "__main__":
    main()

"""20 clients ask the served UI's API at once while index updates are published underneath.

No request may fail, no answer may mix generations (a torn read), and every passage and citation
must be a chunk that exists, with the same text, in the generation the answer names.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from rag.index.build import build_index
from rag.index.reader import IndexStore
from rag.settings import Settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 20
QUESTIONS = [
    "What must drone operators keep and for how long?",
    "How many gigawatts of interconnection requests are queued?",
    "What does the quantum readiness plan require of agencies?",
    "Which bridges must be inspected before winter?",
    "What is the recipe for sourdough bread?",
]


def _snapshot(index: Path) -> tuple[str, dict[str, str]]:
    store = IndexStore(index)
    return store.generation.name, {c.chunk_id: c.text for c in store.iter_chunks()}


def _edit(corpus: Path, i: int) -> None:
    d = corpus / "updates"
    d.mkdir(exist_ok=True)
    (d / f"bridges-{i}.md").write_text(f"# Bridge memo {i}\n\nMemo {i} orders inspections of {10 + i} county bridges "
                                      f"before winter {2020 + i}, paid from the state road fund.\n")
    old = d / f"bridges-{i - 2}.md"
    if old.exists():
        old.unlink()


@pytest.mark.timeout(900)
def test_twenty_clients_during_index_updates(free_port, built_fixture_index, embedder, tmp_path, capsys):
    import shutil

    from gradio_client import Client

    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(built_fixture_index[0], corpus)
    shutil.copytree(built_fixture_index[1], index)
    gens: dict[str, dict[str, str]] = dict([_snapshot(index)])
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAG_CONFIG": str(tmp_path / "none.toml"), "HF_HUB_OFFLINE": "1",
           "RAG_UI__CONCURRENCY": "4"}
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "rag.cli", "serve", "--corpus", str(corpus), "--index", str(index),
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.time() < deadline, "server did not start"
                time.sleep(1)

        builds_done = threading.Event()
        build_errors: list[BaseException] = []

        def updater() -> None:  # another process's view: the server only sees new generations appear
            try:
                for i in range(1, 100):
                    _edit(corpus, i)
                    build_index(Settings(corpus=corpus, index=index), embedder=embedder)
                    gen, chunks = _snapshot(index)
                    gens[gen] = chunks
                    if i >= 4:
                        builds_done.set()
                    if stop.is_set():
                        return
            except BaseException as e:  # reported by the main thread
                build_errors.append(e)
                builds_done.set()

        stop = threading.Event()
        results: list[tuple[float, dict]] = []
        errors: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(CLIENTS)

        def client(n: int) -> None:
            c = Client(url, verbose=False)
            start.wait()
            i = 0
            while i < 5 or not builds_done.is_set():
                q = QUESTIONS[(n + i) % len(QUESTIONS)]
                t0 = time.perf_counter()
                try:
                    res = c.predict(q, 3, "extractive", "", api_name="/ask")
                except Exception as e:
                    with lock:
                        errors.append(f"client {n}: {type(e).__name__}: {e}")
                    return
                with lock:
                    results.append((time.perf_counter() - t0, res))
                i += 1
                if i > 40:
                    break

        up = threading.Thread(target=updater)
        threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        up.start()
        for t in threads:
            t.join(600)
        stop.set()
        up.join(300)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()

    assert not build_errors, build_errors
    assert not errors, errors[:5]
    assert len(results) >= CLIENTS * 5
    seen_gens = set()
    for _, res in results:
        gen = res["record"]["index"]["generation"]
        seen_gens.add(gen)
        assert gen in gens, f"answer names generation {gen}, never published"
        rows = gens[gen]
        passage_ids = [p["chunk_id"] for p in res["passages"]]
        for p in res["passages"]:  # a torn read would pair a chunk id with another generation's row
            assert rows.get(p["chunk_id"]) == p["text"], f"passage {p['chunk_id']} not in {gen} as served"
        for c in res["citations"]:
            assert c["chunk_id"] in passage_ids and c["chunk_id"] in rows
        if "sourdough" in res["question"]:
            assert res["refused"]
        else:
            assert res["citations"] or res["refused"]
    lat = sorted(t for t, _ in results)
    p50 = statistics.median(lat)
    p95 = lat[int(0.95 * (len(lat) - 1))]
    with capsys.disabled():
        print(f"\nconcurrency: {CLIENTS} clients, {len(results)} answers, 0 errors, {len(gens) - 1} index updates, "
              f"{len(seen_gens)} generations served; latency p50 {p50:.2f} s, p95 {p95:.2f} s, max {lat[-1]:.2f} s")
    assert len(seen_gens) >= 2  # the answers really spanned index updates

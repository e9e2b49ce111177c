"""Time to the first token of an `auto` answer with the evidence-first prompt, broken down, and the prompts
compared (evidence-first vs five whole passages), same model, same questions, one run.

    .venv/bin/python benchmarks/bench_prompt.py --index /tmp/me/index [--n 8] [--threads 2] [--passages]

For each answerable question of eval/shipped.jsonl (the first --n):
- the phases before generation, wall and CPU: retrieval (query embedding, hybrid search, rerank of the
  candidates), evidence selection (sentence embeddings, the best sentences), prompt building (messages,
  chat template, tokenization);
- the generator's first token, split into prompt evaluation (only the tokens after the prefix already in the
  KV cache; its last position's logits give the first token) and choosing that token, for the backend in use (`auto`: llama.cpp on CPU, the Q8_0 copy of
  the shipped GGUF, the prompt head cached at load) and, interleaved in the same process, for this issue's
  starting point (the Q4_1 file, no cache: every prompt token evaluated);
- the whole `ask(mode="auto")` from the question to the first streamed token (`--ask`), which is what a user
  waits for: retrieval + scorer + evidence + prompt + first token.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks._common import ROOT, machine  # noqa: E402


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.t, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *a: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.t, time.process_time() - self.c


def first_token(gen, messages, fresh: bool = False) -> dict:
    """One generation step: the first token's time, split into prompt evaluation and first decode."""
    if fresh:
        gen.llm.reset()  # nothing cached: every prompt token is evaluated
    with Clock() as k:
        r = gen.generate(messages, 1)
    return {
        "first_token_s": r.first_token_s,
        "cpu_s": k.cpu,
        "prompt_tokens": r.prompt_tokens,
        "prompt_eval_s": r.timings.get("prompt_eval_s", r.first_token_s),
        "first_sample_s": r.timings.get("first_sample_s", 0.0),
        "cached_tokens": int(r.timings.get("cached_prompt_tokens", 0)),
    }


def long_label_evidence(passages, chosen) -> str:
    """The evidence prompt's source tags before this issue: the full label (title, page, section path)."""
    from rag.answer.prompts import fence

    blocks = []
    for n in sorted(chosen):
        c = passages[n - 1].chunk
        body = " … ".join(fence(x) for x in chosen[n])
        blocks.append(f'<source id="{n}" label="{fence(c.label)}">\n{body}\n</source>')
    return "\n".join(blocks)


def titles_ab(svc, n: int) -> dict:
    """Short titles vs full labels in the evidence prompt: `ask(mode="auto")` on the first n answerable questions of
    the *calibrate* half of eval/paraphrased.jsonl; how many answers keep the model's draft (supported), how many
    contain a gold answer string, prompt tokens."""
    import rag.answer.prompts as prompts

    rows = [json.loads(line) for line in (ROOT / "eval" / "paraphrased.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "calibrate" and r.get("answerable")][:n]
    short = prompts.format_evidence
    out: dict = {}
    for name, fmt in (("short title", short), ("full label", long_label_evidence)):
        prompts.format_evidence = fmt
        try:
            answers = [svc.ask(r["question"], mode="auto") for r in rows]
        finally:
            prompts.format_evidence = short
        hit = sum(
            any(g.lower() in a.text.lower() for g in r.get("answers", [])) for r, a in zip(rows, answers, strict=True)
        )
        out[name] = {
            "questions": len(rows),
            "generative (draft kept)": sum(a.produced_by == "generative" for a in answers),
            "extractive fallback": sum(a.produced_by == "extractive" for a in answers),
            "refused": sum(a.refused for a in answers),
            "gold answer in text": hit,
            "prompt tokens median": statistics.median(a.timings.get("prompt_tokens", 0) for a in answers),
        }
        print(json.dumps({name: out[name]}), flush=True)
    return out


def med(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--n", type=int, default=8, help="questions (answerable ones of eval/shipped.jsonl)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passages", action="store_true", help="also the five-passage prompt (slow: ~1100 tokens)")
    ap.add_argument("--ask", action="store_true", help="also ask(mode=auto) end to end, question to first token")
    ap.add_argument(
        "--titles-ab", type=int, default=0, help="also short titles vs full labels on N calibrate questions"
    )
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    from rag.answer.answerer import select_evidence
    from rag.answer.backends_llamacpp import LlamaCppGenerator
    from rag.answer.evidence import Evidence
    from rag.answer.generate import shipped_gguf
    from rag.answer.prompts import build_messages
    from rag.service import RagService
    from rag.settings import Settings

    load0 = os.getloadavg()[0]
    s = Settings(index=a.index, answer={"prompt": "evidence"}, llm={"threads": a.threads})
    svc = RagService(s)
    rows = [json.loads(line) for line in (ROOT / "eval" / "shipped.jsonl").read_text().splitlines() if line.strip()]
    qs = [r["question"] for r in rows if r.get("answerable")][: a.n]
    with Clock() as k_load:
        gen = svc.answerer.generator()  # as `rag ask` loads it: llama.cpp on CPU, the prompt head evaluated
    old = LlamaCppGenerator(shipped_gguf(), name="smollm2", threads=a.threads, requantize=False)
    emb = svc.retriever.embedder
    svc.search(["warm up"], 5)
    emb.encode(["warm up"])
    res: list[dict] = []
    for q in qs:
        with Clock() as k_ret:
            passages = svc.search([q], s.retrieval.top_k)[0]
        with Clock() as k_ev:
            ev = Evidence(passages, emb)
            chosen = select_evidence(emb.encode([q])[0], ev, len(passages), s.answer.evidence_sentences)
        with Clock() as k_build:
            msgs = build_messages(q, passages, evidence=chosen)
            gen.prompt_tokens(msgs)
        row = {
            "retrieve_s": k_ret.wall,
            "retrieve_cpu_s": k_ret.cpu,
            "evidence_s": k_ev.wall,
            "evidence_cpu_s": k_ev.cpu,
            "build_s": k_build.wall,
            "build_cpu_s": k_build.cpu,
        }
        before = first_token(old, msgs, fresh=True)
        now = first_token(gen, msgs)
        row.update({f"now_{k}": v for k, v in now.items()})
        row.update({f"before_{k}": v for k, v in before.items()})
        if a.passages:
            full = build_messages(q, passages, s.answer.max_chars_per_passage)
            row.update({f"passages_{k}": v for k, v in first_token(gen, full).items()})
        res.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    asks = []
    if a.ask:
        for q in qs:
            t0, first = time.perf_counter(), []
            c0 = time.process_time()
            ans = svc.ask(
                q, mode="auto", on_token=lambda _p, t0=t0, first=first: first or first.append(time.perf_counter() - t0)
            )
            asks.append(
                {
                    "question_to_first_token_s": first[0] if first else None,
                    "cpu_s": time.process_time() - c0,
                    "produced_by": ans.produced_by,
                    "timings": {k: v for k, v in ans.timings.items() if k.endswith("_s")},
                }
            )
            print(json.dumps(asks[-1], default=str), flush=True)

    print(
        f"\n# bench_prompt on {machine()}; {gen.name} {gen.backend} {Path(str(getattr(gen, 'gguf', ''))).name}, "
        f"{a.threads} threads; load average {load0:.1f} at start, {os.getloadavg()[0]:.1f} at the end; "
        f"{len(res)} questions, medians"
    )
    print(f"model load + prompt head: {k_load.wall:.2f} s wall, {k_load.cpu:.2f} s CPU (once per process)")
    print("| phase | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| retrieval (embed, hybrid, rerank) | {med(res, 'retrieve_s'):.3f} | {med(res, 'retrieve_cpu_s'):.3f} |")
    print(f"| evidence selection | {med(res, 'evidence_s'):.3f} | {med(res, 'evidence_cpu_s'):.3f} |")
    print(f"| prompt building + tokenization | {med(res, 'build_s'):.3f} | {med(res, 'build_cpu_s'):.3f} |")
    for tag, name in (("before", "Q4_1, no cache (before)"), ("now", "auto now (Q8_0, head cached)")):
        print(
            f"| {name}: prompt evaluation ({med(res, tag + '_prompt_tokens'):.0f} tokens, "
            f"{med(res, tag + '_cached_tokens'):.0f} cached) | {med(res, tag + '_prompt_eval_s'):.3f} | |"
        )
        print(
            f"| {name}: choosing the first token (logits of the last prompt token) | {med(res, tag + '_first_sample_s'):.4f} | |"
        )
        print(f"| {name}: **first token** | {med(res, tag + '_first_token_s'):.3f} | {med(res, tag + '_cpu_s'):.3f} |")
    print(
        f"first token before/now = {med(res, 'before_first_token_s') / med(res, 'now_first_token_s'):.2f} (wall), "
        f"{med(res, 'before_cpu_s') / med(res, 'now_cpu_s'):.2f} (CPU)"
    )
    if a.passages:
        print(
            f"five passages ({med(res, 'passages_prompt_tokens'):.0f} tokens): first token "
            f"{med(res, 'passages_first_token_s'):.3f} s; passages/evidence = "
            f"{med(res, 'passages_first_token_s') / med(res, 'now_first_token_s'):.2f}"
        )
    timed = [x for x in asks if x["question_to_first_token_s"] is not None]
    if timed:
        print(
            f"ask(auto), question to first streamed token: median {med(timed, 'question_to_first_token_s'):.2f} s "
            f"over {len(timed)} generated answers ({len(asks) - len(timed)} answered without the LLM)"
        )
    ab = titles_ab(svc, a.titles_ab) if a.titles_ab else {}
    if a.out:
        a.out.write_text(json.dumps({"rows": res, "asks": asks, "load_s": k_load.wall, "titles_ab": ab}, indent=1))


if __name__ == "__main__":
    main()

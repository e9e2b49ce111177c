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
import contextlib
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
    """Current source tags vs full labels in the evidence prompt: `ask(mode="auto")` on the first n answerable questions of
    the *calibrate* half of eval/paraphrased.jsonl; how many answers keep the model's draft (supported), how many
    contain a gold answer string, prompt tokens."""
    import rag.answer.prompts as prompts

    rows = [json.loads(line) for line in (ROOT / "eval" / "paraphrased.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "calibrate" and r.get("answerable")][:n]
    short = prompts.format_evidence
    out: dict = {}
    for name, fmt in (("current tags", short), ("full label", long_label_evidence)):
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


# Prompt variants compared by `--prompt-ab`: (format reminder after the question, title words in the source tags).
PROMPT_VARIANTS = {
    "session start": (
        "Answer in one to three sentences, using only the sources above. End each sentence with its source number "
        "in square brackets, e.g. [1]. If the sources do not contain the answer, reply exactly: "
        "I cannot answer from the documents.",
        8,
    ),
    "short reminder": (
        "Answer in one to three short sentences from the sources, each ending with its source number, e.g. [1].",
        8,
    ),
    "short reminder + 4-word titles": (
        "Answer in one to three short sentences from the sources, each ending with its source number, e.g. [1].",
        4,
    ),
    "short reminder + no titles": (
        "Answer in one to three short sentences from the sources, each ending with its source number, e.g. [1].",
        0,
    ),
}


START = "session start"


@contextlib.contextmanager
def prompt_variant(name: str | None):
    """The evidence prompt as PROMPT_VARIANTS[name] words it (None: as rag.answer.prompts does now)."""
    import rag.answer.prompts as prompts

    saved = (prompts.EVIDENCE_REMINDER, prompts.EVIDENCE_TITLE_WORDS)
    if name is not None:
        prompts.EVIDENCE_REMINDER, prompts.EVIDENCE_TITLE_WORDS = PROMPT_VARIANTS[name]
    try:
        yield
    finally:
        prompts.EVIDENCE_REMINDER, prompts.EVIDENCE_TITLE_WORDS = saved


def ask_first_token(svc, q: str) -> dict:
    """`ask(mode="auto")` from the question to the first streamed token: wall and CPU seconds of this process. The
    reranker's memo of recent (question, passage) scores is emptied first: a user's new question has none."""
    memo = getattr(getattr(svc.retriever, "scorer", None), "_memo", None)
    if memo is not None:
        memo.clear()
    t0, c0, first = time.perf_counter(), time.process_time(), []

    def on_token(_piece: str) -> None:
        if not first:
            first.append((time.perf_counter() - t0, time.process_time() - c0))

    ans = svc.ask(q, mode="auto", on_token=on_token)
    return {
        "question_to_first_token_s": first[0][0] if first else None,
        "question_to_first_token_cpu_s": first[0][1] if first else None,
        "cpu_s": time.process_time() - c0,
        "produced_by": ans.produced_by,
        "timings": {k: round(v, 3) for k, v in ans.timings.items() if k.endswith("_s")},
    }


def prompt_ab(svc, n: int, names: list[str]) -> dict:
    """Evidence-prompt variants on the first n questions (answerable and not) of the *calibrate* half of
    eval/paraphrased.jsonl: retrieval and evidence once per question, then each variant's draft through the same
    attribution and `auto` decision as `ask`. Per variant: drafts kept (generative answers), answers holding a gold
    answer string (key fact), drafts holding one, unanswerable questions refused, prompt and uncached tokens."""
    import copy
    import dataclasses

    import rag.answer.prompts as prompts
    from rag.answer.answerer import select_evidence
    from rag.answer.markers import is_refusal
    from rag.types import Answer

    rows = [json.loads(line) for line in (ROOT / "eval" / "paraphrased.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("split") == "calibrate"][:n]
    ans = svc.answerer
    gen = ans.generator()
    head = len(gen.prompt_tokens(prompts.fixed_head()))
    stats = {
        v: {
            "questions": len(rows),
            "reached the LLM": 0,
            "draft kept": 0,
            "key fact (answerable)": 0,
            "key fact in draft": 0,
            "unanswerable refused": 0,
            "model refused": 0,
            "tokens": [],
            "uncached": [],
        }
        for v in names
    }
    for r in rows:
        q, cfg = r["question"], ans.config(mode="auto")
        store = ans.retriever.store
        passages = ans.retriever.search([q], cfg.k, None, store=store)[0]
        state = ans._compare(q, cfg, None, None, store) or ans._prepare(
            q, q, cfg, passages, 0.0, None, None, None, store=store
        )
        for v in names:
            st = stats[v]
            if isinstance(state, Answer):
                a = state
            else:
                with prompt_variant(v):
                    chosen = select_evidence(
                        ans.embedder.encode([q])[0],
                        state.evidence,
                        len(state.prompt_passages),
                        cfg.opts.evidence_sentences,
                    )
                    msgs = prompts.build_messages(q, state.prompt_passages, evidence=chosen)
                res = gen.generate(msgs, cfg.max_new_tokens)
                a = ans._complete(
                    dataclasses.replace(
                        state, messages=msgs, timings=dict(state.timings), record=copy.deepcopy(state.record)
                    ),
                    res,
                )
                st["reached the LLM"] += 1
                st["tokens"].append(res.prompt_tokens)
                st["uncached"].append(res.prompt_tokens - head)
                st["model refused"] += is_refusal(res.text)
                st["key fact in draft"] += r.get("answerable", False) and any(
                    g.lower() in res.text.lower() for g in r.get("answers", [])
                )
            st["draft kept"] += a.produced_by == "generative"
            if r.get("answerable"):
                st["key fact (answerable)"] += any(g.lower() in a.text.lower() for g in r.get("answers", []))
            else:
                st["unanswerable refused"] += a.refused
    for v in names:
        st = stats[v]
        st["tokens"] = statistics.median(st["tokens"]) if st["tokens"] else 0
        st["uncached"] = statistics.median(st["uncached"]) if st["uncached"] else 0
        print(json.dumps({v: st}), flush=True)
    return stats


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
    ap.add_argument(
        "--prompt-ab", type=int, default=0, help="also the prompt variants (PROMPT_VARIANTS) on N calibrate questions"
    )
    ap.add_argument("--variants", default=",".join(PROMPT_VARIANTS), help="--prompt-ab: comma-separated variant names")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    from rag.answer.answerer import select_evidence
    from rag.answer.backends_llamacpp import LlamaCppGenerator
    from rag.answer.evidence import Evidence
    from rag.answer.generate import shipped_gguf
    from rag.answer.prompts import build_messages, fixed_head
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
    q8 = LlamaCppGenerator(shipped_gguf(), name="smollm2", threads=a.threads, fast_type="q8_0")
    q8.warm(fixed_head())
    gens = {"before": old, "start": q8, "now": gen}
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
        with prompt_variant(START):
            msgs_start = build_messages(q, passages, evidence=chosen)
        row = {
            "retrieve_s": k_ret.wall,
            "retrieve_cpu_s": k_ret.cpu,
            "evidence_s": k_ev.wall,
            "evidence_cpu_s": k_ev.cpu,
            "build_s": k_build.wall,
            "build_cpu_s": k_build.cpu,
        }
        for tag, g in gens.items():  # interleaved: the same load for all three
            m = msgs if tag == "now" else msgs_start
            row.update({f"{tag}_{k}": v for k, v in first_token(g, m, fresh=tag == "before").items()})
        if a.passages:
            full = build_messages(q, passages, s.answer.max_chars_per_passage)
            row.update({f"passages_{k}": v for k, v in first_token(gen, full).items()})
        res.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    asks: list[dict] = []
    if a.ask:
        for q in qs:
            for tag in ("start", "now"):  # the session's starting point (Q8_0, its prompt) and now, interleaved
                svc.answerer._generator = gens[tag]
                with prompt_variant(START if tag == "start" else None):
                    asks.append({"config": tag, **ask_first_token(svc, q)})
                print(json.dumps(asks[-1], default=str), flush=True)
        svc.answerer._generator = gen

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
    names = {
        "before": "Q4_1, no cache (issue start)",
        "start": "Q8_0, head cached, session-start prompt",
        "now": f"auto now ({gen.fast_type.upper()}, head cached, current prompt)",
    }
    for tag, name in names.items():
        print(
            f"| {name}: prompt evaluation ({med(res, tag + '_prompt_tokens'):.0f} tokens, "
            f"{med(res, tag + '_cached_tokens'):.0f} cached) | {med(res, tag + '_prompt_eval_s'):.3f} | |"
        )
        print(
            f"| {name}: choosing the first token (logits of the last prompt token) | {med(res, tag + '_first_sample_s'):.4f} | |"
        )
        print(f"| {name}: **first token** | {med(res, tag + '_first_token_s'):.3f} | {med(res, tag + '_cpu_s'):.3f} |")
    for tag in ("before", "start"):
        print(
            f"first token {tag}/now = {med(res, tag + '_first_token_s') / med(res, 'now_first_token_s'):.2f} (wall), "
            f"{med(res, tag + '_cpu_s') / med(res, 'now_cpu_s'):.2f} (CPU)"
        )
    if a.passages:
        print(
            f"five passages ({med(res, 'passages_prompt_tokens'):.0f} tokens): first token "
            f"{med(res, 'passages_first_token_s'):.3f} s; passages/evidence = "
            f"{med(res, 'passages_first_token_s') / med(res, 'now_first_token_s'):.2f}"
        )
    for tag in ("start", "now"):
        timed = [x for x in asks if x["config"] == tag and x["question_to_first_token_s"] is not None]
        if timed:
            print(
                f"ask(auto) {names[tag]}: question to first streamed token median "
                f"{med(timed, 'question_to_first_token_s'):.2f} s wall, {med(timed, 'question_to_first_token_cpu_s'):.2f} s CPU "
                f"over {len(timed)} generated answers ({sum(x['config'] == tag for x in asks) - len(timed)} without the LLM)"
            )
    ab = titles_ab(svc, a.titles_ab) if a.titles_ab else {}
    if a.prompt_ab:
        ab["prompt_ab"] = prompt_ab(svc, a.prompt_ab, a.variants.split(","))
    if a.out:
        a.out.write_text(json.dumps({"rows": res, "asks": asks, "load_s": k_load.wall, "titles_ab": ab}, indent=1))


if __name__ == "__main__":
    main()

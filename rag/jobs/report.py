"""The evaluation report: metrics.json, per_question.jsonl, report.md and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BUDGET_RULE = ("recall@10wN: a hit among the top 10 counted in rank order until N words of retrieved text are read; "
               "a passage counts only if all its words fit in the budget (reading stops at the first that does not), "
               "except the first passage, which always counts")


def write_report(out: Path, name: str, settings: Any, store: Any, retrieval: dict[str, dict[str, float]],
                 answers: dict[str, dict[str, Any]], per_question: list[dict[str, Any]], sims: dict[str, list[float]],
                 ks: Sequence[int] = (1, 2, 3, 5, 10), word_budgets: Sequence[int] = ()) -> tuple[list[Path], dict[str, Any]]:
    """report.md, metrics.json, per_question.jsonl and PNG plots in `out`; returns (files, metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = {"dataset": name, "retrieval": retrieval, "answers": answers, "word_budgets": list(word_budgets), "word_budget_rule": BUDGET_RULE,
               "index": {"index_id": store.index_id, "generation": store.generation.name, "embedding_model": store.manifest.embedding.model,
                         "documents": store.manifest.n_documents, "chunks": store.manifest.n_chunks},
               "settings": settings.model_dump(mode="json", exclude={"ui": {"password"}})}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "per_question.jsonl", "w", encoding="utf-8") as f:
        for r in per_question:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    written += [out / "metrics.json", out / "per_question.jsonl"]

    # recall@k curves
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {m: v.get("curve", {}) for m, v in retrieval.items()}
    for mode, curve in curves.items():
        xs = sorted(int(k) for k in curve)
        ax.plot(xs, [curve[str(x)] if str(x) in curve else curve[x] for x in xs], marker="o", label=mode)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.set_title(f"{name}: recall@k by retrieval mode")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)
    written.append(out / "recall_at_k.png")

    # score distributions with the refusal threshold
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(-4, 41)]
    for label, vals in sims.items():
        if vals:
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{label} ({len(vals)})")
    ax.axvline(settings.answer.refusal_threshold, color="red", linestyle="--", label=f"refusal threshold {settings.answer.refusal_threshold:.2f}")
    ax.set_xlabel("best passage similarity to the question")
    ax.set_ylabel("questions")
    ax.set_title(f"{name}: answerable vs unanswerable")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_distribution.png", dpi=110)
    plt.close(fig)
    written.append(out / "score_distribution.png")

    lines = [f"# Evaluation: {name}", "",
             f"Index `{store.index_id}` ({store.generation.name}): {metrics['index']['documents']} documents, "
             f"{metrics['index']['chunks']} chunks, embedding model `{metrics['index']['embedding_model']}`; "
             f"LLM `{settings.llm.model}`; refusal threshold {settings.answer.refusal_threshold}, support threshold {settings.answer.support_threshold}.", "",
             "## Retrieval", ""]
    lines += _retrieval_table(retrieval, word_budgets, settings)
    lines += ["", "![recall@k](recall_at_k.png)", ""]
    if answers:
        def f(v: Any) -> str:
            return "–" if v is None else f"{v:.3f}"

        lines += ["## Answers", "", "| answer mode | questions | EM | F1 | key fact | citation precision | gold-doc citations | answers citing a gold doc | "
                  "citation recall | refusal accuracy | false refusals |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for mode, m in answers.items():
            lines.append(f"| {mode} | {int(m['questions'])} | {f(m['exact_match'])} | {f(m['f1'])} | {f(m.get('key_fact'))} | {f(m['citation_precision'])} | "
                         f"{f(m['citation_gold_precision'])} | {f(m.get('answers_citing_gold_doc'))} | {f(m['citation_recall'])} | "
                         f"{f(m['refusal_accuracy'])} | {f(m['false_refusal_rate'])} |")
        lines += ["", "Key fact: the answer holds a gold answer (normalised). Gold-doc citations: share of citations "
                  "that name a gold document; answers citing a gold doc: share of answered, answerable questions with at "
                  "least one. Refusal accuracy: unanswerable questions refused; false refusals: answerable questions refused.", ""]
    lines += ["![scores](score_distribution.png)", "", "## Worst 10 questions (first mode)", ""]
    first = next(iter(retrieval), None)
    worst = sorted((r for r in per_question if r.get("mode") == first and r.get("answerable", True)), key=lambda r: (r.get("rank") or 99))[::-1][:10]
    for r in worst:
        lines.append(f"- **{r['question']}** — gold rank: {r.get('rank') or 'not in top 10'}")
        for h in r.get("retrieved", [])[:3]:
            lines.append(f"  - {h['label']} ({h['source']}, score {h['score']})")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.insert(0, out / "report.md")
    return written, metrics


def _retrieval_table(retrieval: dict[str, dict[str, Any]], word_budgets: Sequence[int], settings: Any) -> list[str]:
    def f(m: dict[str, Any], key: str, fmt: str = "{:.3f}") -> str:
        return "–" if m.get(key) is None else fmt.format(m[key])

    head = ["mode", "questions", "recall@1", "recall@5", "recall@10", *(f"recall@10 ≤{b} words" for b in word_budgets),
            "MRR", "nDCG@10", "MAP@10", "words/hit", "ms/question"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for mode, m in retrieval.items():
        cells = [mode, f(m, "questions", "{:.0f}"), f(m, "recall@1"), f(m, "recall@5"), f(m, "recall@10"),
                 *(f(m, f"recall@10w{b}") for b in word_budgets), f(m, "mrr"), f(m, "ndcg@10"), f(m, "map@10"),
                 f(m, "words_per_hit", "{:.0f}"), f(m, "ms_per_question", "{:.1f}")]
        lines.append("| " + " | ".join(cells) + " |")
    if word_budgets:
        lines += ["", f"Within a word budget ({BUDGET_RULE}): bigger chunks earn nothing for being bigger."]
    reranked = {mode: m for mode, m in retrieval.items() if "rerank_ms_per_question" in m}
    if reranked:
        lines += ["", f"Reranking with `{settings.retrieval.reranker}` ({settings.retrieval.rerank_top} candidates; goal ≤ 400 ms a question), "
                  "cross-encoder time alone: " + "; ".join(f"{mode} mean {m['rerank_ms_per_question']:.0f} ms, p95 {m['rerank_ms_p95']:.0f} ms"
                                                          for mode, m in reranked.items()) + ". ms/question above is all of retrieval, batched."]
    return lines

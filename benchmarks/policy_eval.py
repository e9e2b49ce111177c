"""Issue 13 measurements: relation extraction precision/recall against eval/relations_gold.jsonl, and
top-3 retrieval of the document a question names (eval/doc_questions.jsonl).

    .venv/bin/python benchmarks/policy_eval.py relations [--corpus corpus]
    .venv/bin/python benchmarks/policy_eval.py docs --index /tmp/x/index [--no-prefer-named]

Relations are scored per (document, sentence, target): a predicted relation (not "none") counts as
correct when the gold list gives the same relation for that sentence and target. The gold list was
labelled by hand, sentence by sentence (see benchmarks/RESULTS.md, "Issue 13").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _key(source: str, sentence: str, target: str) -> tuple[str, str, str]:
    return source, " ".join(sentence.split(" … ")[-1].split())[:120], target


def relations(corpus: Path, gold_path: Path) -> dict[str, float]:
    from rag.index.relations import extract_relations
    from rag.ingest.files import discover, load_corpus_metadata, relative_source
    from rag.ingest.identity import extract_identity
    from rag.ingest.load import load_document

    meta = load_corpus_metadata(corpus)
    pred: dict[tuple[str, str, str], str] = {}
    corpus = corpus.resolve()
    for path in discover(corpus)[0]:
        src = relative_source(path, corpus)
        doc = load_document(path, corpus, meta=meta.get(src))
        ident = extract_identity(doc.source, doc.title, doc.text, doc.date, meta.get(src))
        for r in extract_relations(doc.text, ident["kind"], lambda o, d=doc: d.page_at(o), tuple(ident["identifiers"])):
            k = _key(doc.source, r["sentence"], r["target"]["identifier"] or r["target"]["text"])
            if r["type"] != "none" or k not in pred:
                pred[k] = r["type"]
    gold = {}
    for line in gold_path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            g = json.loads(line)
            gold[_key(g["source"], g["sentence"], g["target"])] = g["relation"]
    p_rel = {k: v for k, v in pred.items() if v != "none"}
    g_rel = {k: v for k, v in gold.items() if v != "none"}
    tp = sum(1 for k, v in p_rel.items() if g_rel.get(k) == v)
    fp = [(k, v, gold.get(k, "not in gold")) for k, v in p_rel.items() if g_rel.get(k) != v]
    fn = [(k, v, pred.get(k, "not found")) for k, v in g_rel.items() if p_rel.get(k) != v]
    out = {
        "gold_sentences": len(gold),
        "gold_relations": len(g_rel),
        "predicted_relations": len(p_rel),
        "correct": tp,
        "precision": round(tp / max(1, len(p_rel)), 4),
        "recall": round(tp / max(1, len(g_rel)), 4),
        "mentions_not_in_gold": sum(1 for k in pred if k not in gold),
    }
    for name, rows in (("false positive", fp), ("missed", fn)):
        for k, v, other in rows:
            print(f"{name}: {k[0]} | {k[2]} | {v} (other: {other}) | {k[1][:90]}", file=sys.stderr)
    return out


def doc_questions(index: Path, path: Path, prefer_named: bool, k: int = 3) -> dict[str, float]:
    from rag.service import RagService
    from rag.settings import load_settings

    s = load_settings(index=str(index), **{"retrieval.prefer_named": prefer_named})
    svc = RagService(s)
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    hits = svc.search([r["question"] for r in rows], 5)
    n_top1 = n_top3 = 0
    for r, h in zip(rows, hits, strict=True):
        sources = [p.chunk.source for p in h]
        top3 = r["gold_source"] in sources[:k]
        n_top3 += top3
        n_top1 += bool(sources) and sources[0] == r["gold_source"]
        print(
            f"{'ok ' if top3 else 'MISS'} {r['id']} {r['question'][:70]} -> {sources[0] if sources else '-'}",
            file=sys.stderr,
        )
    return {
        "questions": len(rows),
        "top1": round(n_top1 / len(rows), 4),
        f"top{k}": round(n_top3 / len(rows), 4),
        "prefer_named": prefer_named,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["relations", "docs"])
    ap.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    ap.add_argument("--gold", type=Path, default=ROOT / "eval" / "relations_gold.jsonl")
    ap.add_argument("--questions", type=Path, default=ROOT / "eval" / "doc_questions.jsonl")
    ap.add_argument("--index", type=Path)
    ap.add_argument("--no-prefer-named", action="store_true")
    a = ap.parse_args()
    if a.what == "relations":
        print(json.dumps(relations(a.corpus, a.gold)))
    else:
        if a.index is None:
            ap.error("docs needs --index")
        print(json.dumps(doc_questions(a.index, a.questions, not a.no_prefer_named)))


if __name__ == "__main__":
    main()

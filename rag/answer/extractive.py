"""Extractive answers: quote the passages' sentences that answer the question, cited (no LLM).

Similarity alone quotes sentences that *resemble* the question: headings, captions, lead-ins, the
sentence that repeats the question's words. So only quotable units are candidates (sentences, list
items, lead-ins together with their lists; see evidence.passage_units), and the question's type
decides what an answer must hold: a "when" question is answered by a sentence with a date, "who" by
one naming an agency, office or role, and that span is put first: `March 27, 2024 [2]: “...”`.
Summary questions ("what does X say about Y") get several cited points from the best-matching
section, in document order, instead of one sentence. "Why", "define" and "which kinds" questions
prefer a reason, a definition and a list (`shapes`); a deadline question the deadline over an event's
date; a date the question states pins the sentence holding it; a "when" question whose dates all sit
in sentences sharing no word with it gets no answer (the dates are of other events).

Ranking signal: a `scorer(question, sentences) -> scores` when one is given (a trained relevance
model; > 0 means relevant), else embedding similarity blended with question-word overlap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from rag.answer.evidence import Evidence, Unit, clean_sentence, not_quotable, passage_units
from rag.answer.instructions import without_instructions
from rag.answer.prompts import neutralise_markers
from rag.answer.qtypes import TYPED, classify, date_spans
from rag.answer.requirements import date_fits, lead_fits, measure_asked
from rag.answer.shapes import (
    DEADLINE_WINDOW,
    EXACT_DATE_BONUS,
    deadline_question,
    holds_date,
    is_deadline,
    is_masthead,
    pinned_dates,
    shape,
    shape_bonus,
)
from rag.answer.spans import counts_asked, past_event_question, scored_answer_spans
from rag.settings import AnswerSettings
from rag.text.lexical import lexical_tokens
from rag.types import AnswerSentence, Passage

Scorer = Callable[[str, Sequence[str]], np.ndarray]

TYPE_BONUS = 0.25  # added to a unit holding a span of the wanted kind (x the span's score, 0..1.5)
TYPED_WINDOW = 0.2  # a typed question quotes the best unit holding a wanted span if it ranks within this of the best unit
MIN_LEAD = 0.55  # a weaker span (a capitalised run that may be no name at all) earns no bonus and is not put first
SUMMARY_POINTS = (3, 6)  # a summary answer quotes this many points (fewer only when the section has fewer)
SUMMARY_WINDOW = 0.25  # summary points score within this of the section's best point
POINT_WORDS = 60  # a longer summary point is cut (at a clause end where possible) and marked "…"


@dataclass(frozen=True)
class Candidate:
    """A quotable unit of passage n with its scores."""

    n: int  # 1-based passage number
    unit: Unit
    base: float  # relevance alone (scorer, or similarity + overlap + rank prior)
    rank: float  # base on a 0..1-ish scale plus the type bonus: what candidates are sorted by
    lead: str | None  # the answer span to put first, for typed questions

    @property
    def order(self) -> tuple[int, int]:
        return self.n, self.unit.parts[0]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, x))))


def _stems(text: str) -> set[str]:
    """Content-word stems (5-letter prefixes: "developed" ~ "Development"), URLs left out: a URL
    such as .../ai-risk-management-framework is no statement about AI risk management; an identifier
    is one word."""
    out: set[str] = set()
    for word in re.sub(r"\S*(?:https?://|www\.)\S*", " ", text).split():
        toks = lexical_tokens(word)
        if toks and any(c.isdigit() for c in toks[0]):
            toks = toks[:1]  # "M-24-10" counts once, not also as "24" and "10"
        out.update(t[:5] if t.isalpha() else t for t in toks)
    return out


_ACRONYM = re.compile(r"\b([A-Z][A-Za-z]?[A-Z]{1,5})s?\b")  # CAIO, CAIOs, EDAG, AISI, CAISI, OSTP
_SKIP = frozenset(["of", "and", "the", "for", "on", "in", "to", "a", "an", "&"])
NAMED_BONUS = 0.1  # for units of a document the question names (marked by retrieval: Passage.scores["named"])
CONTEXT_WEIGHT = 0.5  # a question word found only in the unit's heading context counts this much


def acronym_expansions(text: str, words: Sequence[str]) -> dict[str, set[str]]:
    """{acronym of `text`: stems of the run of `words` it abbreviates}: "designate a CAIO" with the
    words of "Chief AI Officers" -> {"caio": {chief, ai, offic}}.

    A document defines its acronyms once ("Chief AI Officer (CAIO)") and uses them on every page, so
    the sentence that answers a question asked in full words often holds only the acronym (and the
    other way round). A capitalised word gives its initial, an all-caps word ("AI") all its letters;
    small words ("of", "and") may be skipped.
    """
    acrs = {m.group(1).upper() for m in _ACRONYM.finditer(text) if sum(c.isupper() for c in m.group(1)) >= 2}
    out: dict[str, set[str]] = {}
    if not acrs:
        return out
    cores = [w.strip(".,;:()“”\"'’?!") for w in words]
    for i in range(len(cores)):
        built, run = "", []
        for core in cores[i : i + 8]:
            if not core or not core[0].isalpha():
                break
            if core.lower() in _SKIP and built:
                run.append(core)
                continue
            built += core.upper() if core.isupper() else core[0].upper()
            run.append(core)
            if built in acrs and len(run) >= 2:
                out.setdefault(built.lower(), set()).update(_stems(" ".join(run)))
            if not any(x.startswith(built) for x in acrs):
                break
    return out


_POINTS_BACK = re.compile(r"^(?:such|this|these|that|those|it|they|its|their|the same|said)\b", re.I)


def context_before(sents: Sequence[str], unit: Unit) -> int | None:
    """Index of the line a reader needs just above the unit, if there is one: the heading ("i. Designating
    Chief AI Officers." above "Within 60 days ..., the head of each agency must designate a CAIO."), or the
    sentence a unit that opens by pointing back refers to ("Such an extension request must be submitted to
    OMB by October 15, 2024." after the sentence saying what may be extended). Read alone, such a unit
    shares few words with the question it answers."""
    i = unit.parts[0] - 1
    if i < 0:
        return None
    if not_quotable(clean_sentence(sents[i])) == "heading" or _POINTS_BACK.match(clean_sentence(sents[unit.parts[0]])):
        return i
    return None


def _context(passage: Passage, sents: Sequence[str], unit: Unit) -> str:
    """What a reader sees above a unit: its section's own heading and the line just before it that it needs
    (`context_before`). A sentence often answers in the words of its heading, not its own."""
    h = context_before(sents, unit)
    return " ".join([passage.chunk.section.rsplit(" > ", 1)[-1], *([sents[h]] if h is not None else [])])


def _read_stems(text: str, question: str, qwords: Sequence[str]) -> set[str]:
    """The unit's stems with acronyms read in full both ways: the question's words an acronym of the
    text abbreviates, and the question's acronyms whose words the text spells out."""
    out = _stems(text)
    for full in acronym_expansions(text, qwords).values():
        out |= full
    for acr in acronym_expansions(question, text.split()):
        out |= _stems(acr)
    return out


def lexical_match(question: str, text: str, context: str = "") -> float:
    """Share of the question's content words in the unit (acronyms read in full), plus CONTEXT_WEIGHT
    for each further one found only in its heading context; at most 1."""
    qtok = _stems(question)
    if not qtok:
        return 0.0
    qwords = question.split()
    own = _read_stems(text, question, qwords)
    around = (_read_stems(context, question, qwords) - own) if context else set()
    return min(1.0, (len(qtok & own) + CONTEXT_WEIGHT * len(qtok & around)) / len(qtok))


def off_question(question: str, text: str) -> bool:
    """A sentence that shares no content word with the question (acronyms read in full): its date says
    when something *else* happened ("President Biden signed the order on October 30, 2023" for "When
    did NTIA hand over its final findings?")."""
    return bool(_stems(question)) and lexical_match(question, text) == 0.0


def score_candidates(question: str, passages: Sequence[Passage], ev: Evidence, embedder: Any, o: AnswerSettings,
                     scorer: Scorer | None = None, qtype: str | None = None) -> list[Candidate]:
    """Every quotable unit of the passages, scored for the question (unsorted).

    For typed questions a unit holding a span of the wanted kind gets a bonus of TYPE_BONUS x the
    span's score (its weight, whether the question already says it, whether it follows a question
    word). A stronger weight on where the span stands (IDF-weighted question words around it) was
    tried and lost more answers than it won on the shipped questions.
    """
    qtype = qtype or classify(question)
    units: list[tuple[int, Unit, float, float, str]] = []  # n, unit, dense, prior, heading context
    qvec = embedder.encode([question])[0] if scorer is None else None
    for n, (sents, vecs) in enumerate(zip(ev.sentences, ev.vectors, strict=True), 1):
        if not sents:
            continue
        sims = vecs @ qvec if qvec is not None else np.zeros(len(sents))
        prior = o.extractive_rank_prior * (len(passages) - n) / max(1, len(passages))  # retrieval rank as a small prior
        if passages[n - 1].scores.get("named"):
            prior += NAMED_BONUS
        for u in passage_units(sents):
            safe = without_instructions(u.text)  # text planted to steer a model is never quoted as an answer
            if safe is not None:
                dense = float(max(sims[i] for i in u.parts))
                h = context_before(sents, u)
                if h is not None:  # read with its heading ("Designating Chief AI Officers. Within 60 days ...") or antecedent
                    dense = max(dense, (dense + float(sims[h])) / 2)
                units.append((n, u if safe == u.text else replace(u, text=safe), dense, prior, _context(passages[n - 1], sents, u)))
    if not units:
        return []
    if scorer is not None:
        raw = np.asarray(scorer(question, [u.text for _, u, _, _, _ in units]), dtype=float).reshape(-1)
        bases = [float(x) for x in raw]
        scaled = [_sigmoid(x) + prior for x, (_, _, _, prior, _) in zip(bases, units, strict=True)]
    else:
        w = o.extractive_dense_weight
        bases = [w * dense + (1 - w) * lexical_match(question, u.text, ctx) + prior for _, u, dense, prior, ctx in units]
        scaled = list(bases)
    out = []
    form, pinned = shape(question), pinned_dates(question)
    measured = qtype == "how_many" and measure_asked(question) is not None
    for (n, u, _, _, _), base, sc in zip(units, bases, scaled, strict=True):
        if is_masthead(u.text):
            continue  # a letterhead run into the first sentence
        lead, bonus = None, shape_bonus(form, u.text, u.kind) + (EXACT_DATE_BONUS if pinned and holds_date(u.text, pinned) else 0.0)
        if qtype in TYPED:
            spans = scored_answer_spans(u.text, question, qtype)
            if measured:  # only a number of what the question counts (or money, a share, a penalty) is a lead
                spans = [(sc_, sp) for sc_, sp in spans if lead_fits(question, u.text, sp.text)]
            elif qtype == "when":  # only a date as fine, and in the year, the question asks for
                spans = [(sc_, sp) for sc_, sp in spans if date_fits(question, sp.text)]
            if spans:
                score, span = spans[0]
                if score >= MIN_LEAD and not (qtype == "when" and off_question(question, u.text)):
                    lead, bonus = span.text, bonus + TYPE_BONUS * score  # (a weak span, a capitalised run, is no answer of the kind)
        out.append(Candidate(n, u, base, sc + bonus, lead))
    return out


def _quote(text: str) -> str:
    # the quote is shown verbatim except for bracketed numbers, which only our citations may use
    return f"“{neutralise_markers(text.rstrip())}”"


def clip(text: str, max_words: int) -> str:
    """The text cut to about `max_words` words, at a clause end when one is near, marked with "…"."""
    words = text.split()
    if len(words) <= max_words:
        return text
    head = " ".join(words[:max_words])
    cut = max(head.rfind(c) for c in (";", ",", "—", ":"))
    if cut > len(head) * 0.6:
        head = head[:cut]
    return head.rstrip(" ,;:—") + " …"


def _lead_text(span: str) -> str:
    span = re.sub(r"\s*[–—‑]\s*(?=\d)", "-", neutralise_markers(span.strip(" ,;:")))  # "NTIA– 2023–0009" -> "NTIA-2023-0009"
    return span[:1].upper() + span[1:]


def _overlap(a: Candidate, b: Candidate) -> bool:
    return a.n == b.n and bool(set(a.unit.parts) & set(b.unit.parts))


def repeats(c: Candidate, chosen: Sequence[Candidate]) -> bool:
    """Whether c says again what a chosen candidate says: the same text, or overlapping parts of one passage."""
    return any(c.unit.text == x.unit.text or _overlap(c, x) for x in chosen)


def _pick(cands: list[Candidate], k: int, floor: float) -> list[Candidate]:
    """Up to k best candidates above floor, without repeats (same text, or overlapping parts)."""
    chosen: list[Candidate] = []
    for c in cands:
        if len(chosen) >= k or c.rank < floor:
            break
        if repeats(c, chosen):
            continue
        chosen.append(c)
    return chosen


def summary_points(cands: list[Candidate], passages: Sequence[Passage]) -> list[Candidate]:
    """Several points from the best-matching section: its sentences, list items and recommended actions.

    The section is the (document, section) whose best unit scores highest; its units within
    SUMMARY_WINDOW of that best are taken (at least SUMMARY_POINTS[0] when it has them), at most
    SUMMARY_POINTS[1], and returned in document order.
    """
    if not cands:
        return []
    groups: dict[tuple[str, str], list[Candidate]] = {}
    for c in cands:
        ch = passages[c.n - 1].chunk
        groups.setdefault((ch.doc_id, ch.section), []).append(c)
    best_group = max(groups.values(), key=lambda g: max(c.rank for c in g))
    ordered = sorted(best_group, key=lambda c: -c.rank)
    top = ordered[0].rank
    lo, hi = SUMMARY_POINTS
    chosen = _pick(ordered, hi, top - SUMMARY_WINDOW)
    if len(chosen) < lo:
        chosen = _pick(ordered, lo, top - 2 * SUMMARY_WINDOW)
    return sorted(chosen, key=lambda c: (passages[c.n - 1].chunk.ordinal, passages[c.n - 1].chunk.char_start, c.unit.parts[0]))


# ---------------------------------------------------------------------------------------------
def extractive(question: str, passages: Sequence[Passage], embedder: Any, n_sentences: int | None = None, evidence: Evidence | None = None,
               min_score: float = 0.0, opts: AnswerSettings | None = None, scorer: Scorer | None = None, qtype: str | None = None,
               ) -> tuple[list[AnswerSentence], dict[int, tuple[str, float]], float]:
    """The units of the passages that best answer the question, quoted and cited; also the best score.

    `scorer(question, sentences)` -> relevance scores (higher = answers better, > 0 relevant) replaces
    the embedding + overlap score as the main ranking signal when given. The returned best score is
    the best unit's relevance alone (the scorer's raw score when a scorer is given) over all units,
    without the type bonus, so refusal thresholds keep their meaning.
    """
    o = opts or AnswerSettings()
    n_sentences = n_sentences or o.extractive_sentences
    ev = evidence or Evidence(passages, embedder)
    qtype = qtype or classify(question)  # a follow-up's own type ("By when?") over its condensed query's
    cands = score_candidates(question, passages, ev, embedder, o, scorer, qtype)
    if not cands:
        return [], {}, 0.0
    cands.sort(key=lambda c: (-c.rank, c.n, c.unit.parts[0]))
    best = cands[0]
    top_base = max(c.base for c in cands)  # the refusal signal: how well the best unit matches, whatever its type
    floor = max(min_score, best.rank - o.extractive_window)
    if qtype == "summary":
        chosen = summary_points(cands, passages)
        if len(chosen) >= 2:
            sents = [AnswerSentence(text=f"- {_quote(clip(c.unit.text, POINT_WORDS))}", citations=(c.n,), support=c.base, supported=True)
                     for c in chosen]
            return sents, _quotes(chosen, ev), top_base
    typed = next((c for c in cands if c.lead is not None), None) if qtype in TYPED else None
    if typed is None and qtype == "when" and past_event_question(question):
        return [], {}, top_base  # no date that reports the event asked about (spans.reports_event): the documents don't say when
    dated = [c for c in cands if date_spans(c.unit.text)] if typed is None and qtype == "when" else []
    if dated and all(off_question(question, c.unit.text) for c in dated):
        return [], {}, top_base  # dates, but only in sentences about something else: the documents don't say when
    window = TYPED_WINDOW
    if typed is not None and qtype == "when" and deadline_question(question):
        # "By what date ...?" asks for a deadline ("must be received on or before March 27, 2024"), not the date
        # of an event the passage also mentions ("On October 30, 2023, the President issued ...")
        due = next((c for c in cands if c.lead is not None and is_deadline(c.unit.text, c.lead)), None)
        if due is not None and due.rank >= best.rank - DEADLINE_WINDOW:
            typed, window = due, DEADLINE_WINDOW
    if qtype == "how_many" and measure_asked(question) and (typed is None or typed.rank < best.rank - TYPED_WINDOW):
        # every lead measures what is asked (requirements.lead_fits); none near the best unit: the documents don't say
        # (answering from the best unit without one would quote a number of something else, or none at all)
        return [], {}, top_base
    if typed is not None and qtype == "how_many":
        # "for how many weeks ...?" quotes the count of weeks though a count of something else resembles the question more
        counted = next((c for c in cands if c.lead is not None and counts_asked(c.unit.text, c.lead, question)), None)
        if counted is not None and counted is not typed and counted.rank >= best.rank - DEADLINE_WINDOW:
            typed, window = counted, DEADLINE_WINDOW
    if typed is not None and typed.rank >= best.rank - window:
        # the best unit holding an answer of the wanted kind, though a unit without one may resemble the
        # question more ("By when?" is answered by "Within 60 days ...", not by the duties it refers to);
        # at most one more, and only another sentence holding a different answer of the wanted kind
        best = typed
        others = [c for c in cands if c is not best and c.lead is not None and c.lead.lower() != (best.lead or "").lower()
                  and not _overlap(c, best)]
        chosen = [best, *_pick(others, min(n_sentences, 2) - 1, max(min_score, best.rank - o.extractive_window))]
        sents = [AnswerSentence(text=f"{_lead_text(c.lead or '')}: {_quote(c.unit.text)}", citations=(c.n,), support=c.base,
                                supported=True) for c in chosen]
        return sents, _quotes(chosen, ev), top_base
    chosen = _pick(cands, n_sentences, floor)
    chosen.sort(key=lambda c: c.order)
    sents = [AnswerSentence(text=_quote(c.unit.text), citations=(c.n,), support=c.base, supported=True) for c in chosen]
    return sents, _quotes(chosen, ev), top_base


def _quotes(chosen: Sequence[Candidate], ev: Evidence) -> dict[int, tuple[str, float]]:
    """Per cited passage, the quoted text (its first sentence, as it stands in the passage) and its score."""
    out: dict[int, tuple[str, float]] = {}
    for c in chosen:
        raw = ev.sentences[c.n - 1][c.unit.parts[0]]
        text = c.unit.text if c.unit.kind != "list" else raw
        if c.n not in out or c.base > out[c.n][1]:
            out[c.n] = (text, c.base)
    return out

"""Which span of a sentence answers the question, and how well.

`qtypes` says what kind of answer a question wants and finds every span of that kind; this room
scores them against the question: a span restating the question answers nothing, a span right after
a question word is where answers sit, a how-many question wants a count of what it names, and a
question about a past event wants a date that reports one, not a deadline an order sets.
"""

from __future__ import annotations

import re

from rag.answer.qtypes import AUX_VERBS, LEAD_CLAUSE, MODIFIERS, RELATIVE_DATE, Span, question_core, spans_for
from rag.text.lexical import lexical_tokens


def _stem(tok: str) -> str:
    return tok[:5] if tok.isalpha() else tok


_IDENT_Q = re.compile(rf"(?:^|\b(?:in|under|at|of) )(?:which|what) {MODIFIERS}(?:order|memo|memorandum|section|provision|docket|"
                      r"number|law|act|code|grade|identifier|publication|circular|citation|subsection)s?\b", re.I)
_PERSON_Q = re.compile(r"\b(?:staffer|person|individual|contact|employee|named|name|whom)\b", re.I)


_PAST_EVENT = re.compile(r"(?:\bwhen|^(?:in|on|during) (?:what|which) (?:[\w-]+ ){0,2}?(?:date|day|month|year)s?) (?:did|had|was|were)\b"
                         r"(?!.*\b(?:have|has|had|need|needs|needed|required|supposed|expected|"
                         r"due|allowed|given|asked|told|directed|ordered|instructed|must|deadline|to be)\b)", re.I)


def past_event_question(question: str) -> bool:
    """"When did the litigation team file its first case?" asks when something happened: a date. An
    order's "within 30 days of this order" says when it must happen, and answers "when did it have to
    ...?", "when was it supposed to ...?", not this."""
    return bool(_PAST_EVENT.search(question_core(question)))


_DOC_DATE = re.compile(r"\b(?:Order|Memorandum|Proclamation|Directive|Memo)\s+(?:No\.\s*)?[\w.-]*\d[\w.-]*,?\s+of\s*$", re.I)
_LETTER_DATE = re.compile(r"\W*(?:(?:From|To|Re|Subject|Attn|Via)\s*:|(?:Mr|Ms|Mrs|Dr)\.\s|Dear\b|The Honorable\b)", re.I)
_ABOUT_DOCUMENT = re.compile(r"\b(?:sign|signed|issu\w*|order|memo\w*|proclamation|directive|dated|enact\w*)\b", re.I)
_PRESCRIBES = re.compile(r"\b(?:shall|must|will|should|may|is to|are to|required to|no later than)\b", re.I)


def reports_event(sentence: str, span: Span, question: str) -> bool:
    """Whether a date in the sentence can say when something *happened* (a past-event question): not a
    period ("within 30 days"), not a prescription ("By December 16, 2024, each agency must ...": policy
    texts order the future), and a document's own date ("Executive Order 12250 of November 2, 1980")
    only when the question asks when a document was signed or issued."""
    if span.weight == RELATIVE_DATE:
        return False
    if _DOC_DATE.search(sentence[: span.start]) or not sentence[: span.start].strip() or _LETTER_DATE.match(sentence[span.end :]):
        # or a dateline opening the text, or a letter's date (before its "From:", "Mr. ...", "Dear ...")
        return bool(_ABOUT_DOCUMENT.search(question))
    return not _PRESCRIBES.search(sentence)


_TIME_UNITS = frozenset(_stem(t) for t in ("day", "days", "week", "weeks", "month", "months", "year", "years", "hours"))


def _question_units(question: str) -> set[str]:
    """What a how-many question counts: "how many frontier models was ..." -> {frontier, model}."""
    m = re.search(rf"\bhow (?:many|much)\s+((?:(?!{AUX_VERBS}\b)[\w-]+\s+){{0,3}})", question, re.I)
    return {_stem(t) for t in lexical_tokens(m.group(1))} if m else set()


def _counted(sentence: str, s: Span) -> set[str]:
    """Stems of what a number span counts: its own words, or the words after a bare number ("at least 20 ...")."""
    stoks = {_stem(t) for t in lexical_tokens(s.text)}
    if re.search(r"[A-Za-z]{3,}$", s.text):
        return stoks
    return stoks | {_stem(t) for t in lexical_tokens(" ".join(sentence[s.end:].split()[:4]))}


def counts_asked(sentence: str, span_text: str, question: str) -> bool:
    """Whether the span (found in the sentence) counts what a how-many question names ("how many weeks" ->
    "a seven-week span"); False when the question names nothing to count."""
    units, at = _question_units(question), sentence.find(span_text)
    return bool(units) and at >= 0 and bool(units & _counted(sentence, Span(at, at + len(span_text), span_text, "number")))


def scored_answer_spans(sentence: str, question: str, qtype: str) -> list[tuple[float, Span]]:
    """Spans of the wanted kind that the question does not already hold, with a score, best first.

    A span restating the question ("AI Risk Management Framework" for "who developed the AI Risk
    Management Framework?") answers nothing. Among the rest, a span right after a question word
    ("designate a Chief AI Officer", "received on or before March 27, 2024") is preferred: that is
    where the answer usually sits. Score: the span's weight, less for words the question has, plus
    0.5 right after a question word (0.25 within 40 characters): 0..1.5.
    """
    qtoks = {_stem(t) for t in lexical_tokens(question)}
    qnorm = " ".join(question.lower().split())
    person = qtype == "who" and bool(_PERSON_Q.search(question))
    ident_q = qtype == "which" and bool(_IDENT_Q.search(LEAD_CLAUSE.sub("", " ".join(question.split()))))
    spans: list[tuple[float, Span]] = []
    # the words that mark an answer's slot ("designate a", "received on or before"): not a name's words ("... Diplomacy
    # and Security – that the Trump Administration"), so a capitalised word counts only at the sentence's start
    sent_words = [(m.end(), _stem(t)) for m in re.finditer(r"[\w’'-]+", sentence) for t in lexical_tokens(m.group(0))[:1]
                  if m.start() == 0 or not m.group(0)[0].isupper()]
    units = _question_units(question) if qtype == "how_many" else set()
    past = qtype == "when" and past_event_question(question)
    for s in spans_for(sentence, qtype):
        stoks = {_stem(t) for t in lexical_tokens(s.text)}
        if not stoks or stoks <= qtoks or s.text.lower() in qnorm or s.text.rstrip().endswith(("-", "–")):
            continue  # (a span cut at a hyphen, "Turbo and GPT-", is a name broken by the text's extraction)
        if s.kind == "number" and s.weight < 0.5:
            continue  # a footnote marker, the number of a name ("Llama 2"), "several": never an answer, whatever its place
        if s.kind == "date" and past and not reports_event(sentence, s, question):
            continue  # "within 30 days of this order ... shall" says when it must happen, not when it did
        if s.kind == "date" and {t for t in stoks if not (t.isdigit() and len(t) <= 2)} <= qtoks:
            continue  # "December 1, 2024" for "... in time for December 2024, by what date ...?": the question's own date
        weight = s.weight
        if person and s.weight < 0.6 and 2 <= len(s.text.split()) <= 3:
            weight = 0.9  # "Which NTIA staffer ...": a person's name is the answer
        if qtype == "which" and (s.kind == "identifier") != ident_q:
            weight *= 0.5  # "which executive order" wants "EO 14110"; "what must agencies designate" no "Section 5(b)"
        fresh = len(stoks - qtoks) / len(stoks - units) if stoks - units else 0.0  # the unit counted is the question's own
        if s.kind == "identifier":  # "Executive Order 14110" is new when its number is, whatever the words
            fresh = float(any(any(c.isdigit() for c in t) and t not in qtoks for t in stoks))
        if units:  # "how many frontier models": the count of models, not "180 days"
            if units & _counted(sentence, s):
                weight += 0.5
            elif stoks & _TIME_UNITS or units & _TIME_UNITS:
                weight *= 0.5  # "how many frontier models" is no "180 days"; "how many weeks" no "over 90 actions"
        gaps = [s.start - end for end, w in sent_words if w in qtoks and len(w) >= 3 and 0 <= s.start - end <= 40]
        near = 0.5 if gaps and min(gaps) <= 12 else (0.25 if gaps else 0.0)  # "designate a Chief AI Officer"
        spans.append((weight * (0.6 + 0.4 * fresh) + near, s))
    spans.sort(key=lambda x: (-x[0], x[1].start))
    return spans


def answer_spans(sentence: str, question: str, qtype: str) -> list[Span]:
    """Spans of the wanted kind that answer the question, best first (see scored_answer_spans)."""
    return [s for _, s in scored_answer_spans(sentence, question, qtype)]


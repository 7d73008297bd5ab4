"""Auto-tagging and sentiment, each with a confidence.

The built-in classifier is deliberately plain: keyword rules from ``[classify] keywords`` propose tags, and a
small lexicon scores sentiment from -100 to +100. Plugins add better classifiers through the
``classify`` hook.
A value a system already supplies (tags, sentiment) always stands.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache

_NEGATIVE = {
    "angry": 3,
    "annoyed": 2,
    "awful": 3,
    "bad": 1,
    "blocked": 2,
    "blocking": 2,
    "broken": 2,
    "cancel": 2,
    "churn": 3,
    "disappointed": 3,
    "down": 1,
    "error": 1,
    "fail": 2,
    "failed": 2,
    "failing": 2,
    "frustrated": 3,
    "furious": 4,
    "horrible": 4,
    "impossible": 2,
    "outage": 3,
    "refund": 1,
    "slow": 1,
    "terrible": 4,
    "unacceptable": 4,
    "unusable": 4,
    "urgent": 2,
    "useless": 3,
    "worst": 4,
    "charged": 1,
    "twice": 1,
    "crash": 2,
    "crashes": 2,
    "lost": 2,
    "wrong": 1,
    "still": 1,
    "again": 1,
    "escalate": 2,
    "lawyer": 4,
}
_POSITIVE = {
    "amazing": 3,
    "awesome": 3,
    "great": 2,
    "good": 1,
    "happy": 2,
    "helpful": 2,
    "love": 3,
    "nice": 1,
    "perfect": 3,
    "resolved": 1,
    "thank": 2,
    "thanks": 2,
    "excellent": 3,
    "works": 1,
    "fixed": 1,
    "appreciate": 2,
}
_WORD = re.compile(r"[a-z']+")


def sentiment(text: str) -> int:
    """A lexicon score of ``text`` from -100 (most negative) to +100."""
    words = _WORD.findall(text.casefold())
    if not words:
        return 0
    score = 0
    for i, word in enumerate(words):
        weight = _POSITIVE.get(word, 0) - _NEGATIVE.get(word, 0)
        if weight and i and words[i - 1] in ("not", "no", "never", "don't", "isn't"):
            weight = -weight
        score += weight
    if "!" in text:
        score -= text.count("!") if score < 0 else 0
    scaled = round(100 * score / (abs(score) + 6))
    return max(-100, min(100, scaled))


def fold(text: str) -> str:
    """``text`` case-folded and in one Unicode form (NFC): a word a mail client wrote decomposed ("u" and a
    combining diaeresis for "ü") is the same word."""
    folded = text.casefold()
    return folded if folded.isascii() else unicodedata.normalize("NFC", folded)


@lru_cache(maxsize=64)
def _compiled(items: tuple[tuple[str, tuple[str, ...]], ...]) -> tuple[tuple[str, re.Pattern[str]], ...]:
    # a keyword is a whole word or phrase: no word character touches either end. (Not ``\b``, which needs a
    # word character inside the keyword's edge: ``c++``, ``.net`` or ``#1 priority`` could never match)
    return tuple(
        (tag, re.compile("|".join(r"(?<!\w)" + re.escape(fold(w)) + r"(?!\w)" for w in words)))
        for tag, words in items
        if words
    )


def keyword_tags(text: str, keywords: Mapping[str, Sequence[str]]) -> list[tuple[str, float]]:
    """Tags whose keywords occur in ``text``, with a confidence growing with the number of hits."""
    if not keywords or not text:
        return []
    folded = fold(text)
    out = []
    for tag, pattern in _compiled(tuple((t, tuple(ws)) for t, ws in keywords.items())):
        hits = len(pattern.findall(folded))
        if hits:
            out.append((tag, min(0.95, 0.5 + 0.2 * hits)))
    return out

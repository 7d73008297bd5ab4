"""The tag taxonomy: naming rules, tag → field mapping, and ``bridge taxonomy lint``.

Tags are ``prefix/topic`` (``billing/refund``). ``[taxonomy]`` declares the naming ``pattern`` (a regular
expression a whole tag must match), the known ``prefixes`` and optional ``synonyms`` (canonical tag -> other
spellings that mean it). ``[[tags]]`` mappings set typed fields when a tag matches their glob
(:class:`TagMapper`); :func:`lint` finds what is wrong with the tags a dataset actually uses.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import itertools
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from bridge.errors import FieldValueError
from bridge.fields import FieldType, coerce
from bridge.settings import Config, TagMapping

FINDING_KINDS = ("pattern", "prefix", "near_duplicate", "unmapped", "dead_mapping")
# topic words that do not change what a tag is about (refund_request ~ refund)
NOISE_SUFFIXES = frozenset(
    {"request", "issue", "problem", "question", "inquiry", "enquiry", "query", "ticket", "help"}
)
_GLOB_CHARS = re.compile(r"[*?\[]")
_SEPARATORS = re.compile(r"[\s_]+")
_DASHES = re.compile(r"-{2,}")
_WORDS = re.compile(r"[\W_]+")
_DIGITS = re.compile(r"\D+")
_CACHE_MAX = 100_000  # distinct tags remembered by a TagMapper before it starts over
_MIN_FUZZY = 5  # keys shorter than this are compared exactly (sev1/sev2, sso/ssl)


@dataclasses.dataclass
class Finding:
    """One lint finding; ``dataclasses.asdict`` gives its JSON form.

    ``kind`` is one of :data:`FINDING_KINDS`. ``tag`` is the tag concerned; for ``near_duplicate`` the
    spelling to keep; for ``dead_mapping`` the mapping's config key ``tags.N`` (N from 0, as
    ``LoadedConfig.where`` takes it); for config problems the key (``taxonomy.pattern``,
    ``taxonomy.prefixes``). ``related`` names the other tags involved: every member of a near-duplicate
    group, the glob of a dead mapping, a suggested spelling.
    """

    kind: str
    tag: str
    message: str
    related: list[str] = dataclasses.field(default_factory=list)


def normalise_tag(tag: str) -> str:
    """The tidy spelling of a tag: lowercase, trimmed, spaces and underscores turned into ``-``.

    Each ``/``-separated segment is trimmed, its runs of whitespace and ``_`` become one ``-``, repeated ``-``
    collapse and ``-`` at a segment's ends go; empty segments are dropped (``Billing / Refund Request``
    -> ``billing/refund-request``). Only changes that cannot alter meaning are made: a separator never
    becomes ``/`` (``billing_refund`` gives ``billing-refund``, not ``billing/refund``, because ``_`` may
    join words of one topic), nothing is singularised and other characters stay; lint's ``near_duplicate``
    covers the rest.
    """
    segments = (_DASHES.sub("-", _SEPARATORS.sub("-", s.strip().lower())).strip("-") for s in tag.split("/"))
    return "/".join(seg for seg in segments if seg)


def synonym_table(config: Config) -> dict[str, str]:
    """Normalised synonym -> canonical tag (as written in the config)."""
    table: dict[str, str] = {}
    for canonical, names in config.taxonomy.synonyms.items():
        for name in names:
            table.setdefault(normalise_tag(name), canonical)
    return table


def _is_glob(match: str) -> bool:
    return _GLOB_CHARS.search(match) is not None


class TagMapper:
    """Turns a ticket's tags into field values, as the config's ``[[tags]]`` mappings say.

    A mapping fires for a tag when its glob (:mod:`fnmatch` semantics: ``*`` also crosses ``/``) matches
    the tag case-insensitively, as written or normalised (:func:`normalise_tag`) or as the canonical tag it
    is a declared synonym of. Values are coerced to their field's canonical form once, here; a
    ``(field, value)`` that cannot apply (unknown field, value not an option) is left out and listed in
    :attr:`skipped` (lint reports it as a ``dead_mapping``). Results are cached per tag string, so a stream
    of tickets costs a dict lookup per tag.
    """

    def __init__(self, config: Config) -> None:
        types = config.field_types()
        self.skipped: list[tuple[int, str, str]] = []
        """``(mapping index, field, reason)`` for each value left out."""
        self._values: list[tuple[tuple[str, Any], ...]] = []
        self._literal: dict[str, list[int]] = {}
        self._globs: list[tuple[int, re.Pattern[str]]] = []
        self._synonyms = synonym_table(config)
        self._cache: dict[str, tuple[int, ...]] = {}
        for index, mapping in enumerate(config.tags):
            self._values.append(tuple(self._prepare(index, mapping, types)))
            if _is_glob(mapping.match):
                self._globs.append((index, re.compile(fnmatch.translate(mapping.match), re.IGNORECASE)))
            else:
                self._literal.setdefault(mapping.match.strip().lower(), []).append(index)

    def _prepare(
        self, index: int, mapping: TagMapping, types: Mapping[str, FieldType]
    ) -> Iterator[tuple[str, Any]]:
        for name, raw in mapping.set.items():
            ft = types.get(name)
            if ft is None:
                self.skipped.append((index, name, f"sets {name!r}, which is not a declared field"))
                continue
            try:
                value = coerce(ft, raw)
            except FieldValueError as exc:
                self.skipped.append((index, name, str(exc)))
                continue
            # multi-select values are stored as tuples so that callers cannot change the cached value
            yield name, tuple(value) if isinstance(value, list) else value

    def _forms(self, tag: str) -> set[str]:
        low = tag.strip().lower()
        norm = normalise_tag(tag)
        forms = {low, norm}
        canonical = self._synonyms.get(norm)
        if canonical is not None:
            forms.update((canonical.strip().lower(), normalise_tag(canonical)))
        return forms

    def mappings_for(self, tag: str) -> tuple[int, ...]:
        """Indices (in ``config.tags``) of the mappings that fire for ``tag``, in config order."""
        hit = self._cache.get(tag)
        if hit is not None:
            return hit
        forms = self._forms(tag)
        found = {i for form in forms for i in self._literal.get(form, ())}
        found.update(i for i, rx in self._globs if any(rx.match(form) for form in forms))
        result = tuple(sorted(found))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[tag] = result
        return result

    def apply(self, tags: Iterable[str]) -> list[tuple[str, str, Any]]:
        """``(tag, field, value)`` for each mapping that fires, by tag order then mapping order.

        Values are canonical (multi-selects as a fresh list of options); a tag given twice counts once.
        Accumulating several values of one field (``fields.merge``) is the caller's business.
        """
        out: list[tuple[str, str, Any]] = []
        done: set[str] = set()
        for tag in tags:
            if not tag or tag in done:
                continue
            done.add(tag)
            for index in self.mappings_for(tag):
                for name, value in self._values[index]:
                    out.append((tag, name, list(value) if isinstance(value, tuple) else value))
        return out


# ---------------------------------------------------------------- lint


def _split(norm: str, prefixes: frozenset[str]) -> tuple[str | None, str]:
    """(prefix, topic) of a normalised tag; an unslashed tag that starts with a known prefix word has it."""
    if "/" in norm:
        head, _, rest = norm.partition("/")
        return head, rest
    for prefix in sorted(prefixes, key=len, reverse=True):
        if norm.startswith(prefix + "-") and len(norm) > len(prefix) + 1:
            return prefix, norm[len(prefix) + 1 :]
    return None, norm


def _singular(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def _topic_key(topic: str) -> str:
    """What a topic is about: its words singular, noise suffixes dropped, separators gone."""
    words = [_singular(w) for w in _WORDS.split(topic) if w]
    while len(words) > 1 and words[-1] in NOISE_SUFFIXES:
        words.pop()
    return "".join(words)


def _one_edit(a: str, b: str) -> bool:
    """Whether ``b`` is ``a`` with one insertion, deletion, substitution or swap of neighbours."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = next((k for k in range(len(a)) if a[k] != b[k]), len(a))
    if len(a) < len(b):
        return a[i:] == b[i + 1 :]
    return a[i + 1 :] == b[i + 1 :] or (a[i + 2 :] == b[i + 2 :] and a[i : i + 2] == b[i : i + 2][::-1])


def _fuzzy_groups(keys: Iterable[str]) -> dict[str, str]:
    """Key -> representative key, joining keys one edit apart (not for short keys, nor when digits differ)."""
    parent = {k: k for k in keys}

    def root(k: str) -> str:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    # keys one edit apart share a one-deletion variant: index by those instead of comparing every pair
    variants: dict[str, list[str]] = {}
    for key in parent:
        if len(key) < _MIN_FUZZY:
            continue
        for variant in {key} | {key[:i] + key[i + 1 :] for i in range(len(key))}:
            variants.setdefault(variant, []).append(key)
    for members in variants.values():
        for a, b in itertools.combinations(members, 2):
            if _DIGITS.sub("", a) == _DIGITS.sub("", b) and _one_edit(a, b):
                parent[root(a)] = root(b)
    return {k: root(k) for k in parent}


class _Lint:
    """One lint run; split from :func:`lint` only to share its tables between the checks."""

    def __init__(self, config: Config, seen: Counter[str]) -> None:
        self.config = config
        self.seen = seen
        self.findings: list[Finding] = []
        self.mapper = TagMapper(config)
        self.synonyms = synonym_table(config)
        self.pattern = self._pattern()
        self.declared = set(config.taxonomy.prefixes)
        self.config_tags = {m.match for m in config.tags if not _is_glob(m.match)} | set(
            config.taxonomy.synonyms
        )
        used = {normalise_tag(t).partition("/")[0] for t in (*seen, *self.config_tags) if "/" in t}
        # without declared prefixes, the prefixes tags actually use tell categories apart
        self.prefixes = frozenset(self.declared or used)

    def _pattern(self) -> re.Pattern[str] | None:
        try:
            return re.compile(self.config.taxonomy.pattern)
        except re.error as exc:
            self.add("pattern", "taxonomy.pattern", f"is not a valid regular expression: {exc}")
            return None

    def add(self, kind: str, tag: str, message: str, related: Iterable[str] = ()) -> None:
        self.findings.append(Finding(kind, tag, message, list(related)))

    def fits(self, tag: str) -> bool:
        return self.pattern is None or self.pattern.fullmatch(tag) is not None

    def times(self, tag: str) -> str:
        n = self.seen.get(tag, 0)
        return f" (seen {n} time{'s' if n != 1 else ''})" if n else ""

    def run(self) -> list[Finding]:
        self.naming()
        self.near_duplicates()
        self.unmapped()
        self.dead_mappings()
        order = {kind: i for i, kind in enumerate(FINDING_KINDS)}
        return sorted(self.findings, key=lambda f: (order[f.kind], f.tag, f.message))

    # -- pattern and prefix

    def naming(self) -> None:
        pattern = self.config.taxonomy.pattern
        for declared in self.config.taxonomy.prefixes:
            if not any(self.fits(f"{declared}/{topic}") for topic in ("a", "a-b", "a1", "1", "a_b", "A")):
                why = f"prefix {declared!r} cannot begin any tag of the naming pattern {pattern}"
                self.add("prefix", "taxonomy.prefixes", why, [declared])
        checked = [t for t in self.seen if normalise_tag(t) not in self.synonyms]
        for tag in sorted({*checked, *self.config.taxonomy.synonyms}):
            where = self.times(tag) if tag in self.seen else " (a [taxonomy] synonyms key)"
            norm = normalise_tag(tag)
            if not self.fits(tag):
                hint = [norm] if norm != tag and norm and self.fits(norm) else []
                tail = f"; {norm!r} would fit" if hint else ""
                why = f"breaks the naming pattern {self.config.taxonomy.pattern}{where}{tail}"
                self.add("pattern", tag, why, hint)
            prefix = norm.partition("/")[0] if "/" in norm else None
            if not self.declared:
                continue
            if prefix is None:
                if self.fits(tag):  # a pattern without '/' lets it through; it still has no prefix
                    known = ", ".join(sorted(self.declared))
                    self.add("prefix", tag, f"has no prefix{where}; prefixes: {known}")
            elif prefix not in self.declared:
                close = _closest(prefix, self.declared)
                hint = [f"{close}/{norm.partition('/')[2]}"] if close else []
                tail = f"; did you mean {close!r}?" if close else ""
                self.add(
                    "prefix", tag,
                    f"prefix {prefix!r} is not one of {', '.join(sorted(self.declared))}{where}{tail}", hint,
                )

    # -- near duplicates

    def near_duplicates(self) -> None:
        tags = {*self.seen, *self.config_tags}
        info: dict[str, tuple[str | None, str]] = {}
        for tag in tags:
            prefix, topic = _split(normalise_tag(tag), self.prefixes)
            key = _topic_key(topic)
            if key:
                info[tag] = (prefix if prefix in self.prefixes else None, key)
        rep = _fuzzy_groups({key for _, key in info.values()})
        buckets: dict[str, list[str]] = {}
        for tag, (_, key) in info.items():
            buckets.setdefault(rep[key], []).append(tag)
        groups: set[frozenset[str]] = set()
        for members in buckets.values():
            loose = [t for t in members if info[t][0] is None]
            by_prefix: dict[str, list[str]] = {}
            for t in members:
                prefix = info[t][0]
                if prefix is not None:
                    by_prefix.setdefault(prefix, []).append(t)
            # the same topic under two known prefixes is two tags (bug/login, how-to/login), not a duplicate
            if len(by_prefix) <= 1:
                groups.add(frozenset(members))
            else:
                groups.update(frozenset(group + loose) for group in by_prefix.values())
        for group in groups:
            identities = {self.synonyms.get(normalise_tag(t), t) for t in group}
            if len(group) > 1 and len(identities) > 1:
                self.report_group(sorted(group, key=lambda t: (-self.seen.get(t, 0), t)))

    def report_group(self, members: list[str]) -> None:
        def merit(tag: str) -> tuple[bool, bool, bool, int, int, str]:
            norm = normalise_tag(tag)
            prefix = norm.partition("/")[0] if "/" in norm else None
            return (
                not (tag == norm and self.fits(tag)),
                not (prefix is not None and (not self.declared or prefix in self.declared)),
                tag not in self.config_tags,
                -self.seen.get(tag, 0),
                len(tag),
                tag,
            )

        keep = min(members, key=merit)
        listed = ", ".join(f"{t}{self.times(t)}" for t in members)
        self.add(
            "near_duplicate", keep,
            f"{len(members)} spellings of one topic: {listed}; keep {keep!r}, rename the others "
            f"or declare them as its [taxonomy] synonyms",
            members,
        )

    # -- unmapped

    def unmapped(self) -> None:
        for tag in self.seen:
            if not self.mapper.mappings_for(tag):
                self.add("unmapped", tag, f"no [[tags]] mapping matches it{self.times(tag)}")

    # -- dead mappings

    def dead_mappings(self) -> None:
        skipped: dict[int, list[str]] = {}
        for index, _name, why in self.mapper.skipped:
            skipped.setdefault(index, []).append(why)
        fired = {i for tag in self.seen for i in self.mapper.mappings_for(tag)}
        for index, mapping in enumerate(self.config.tags):
            key = f"tags.{index}"
            for why in skipped.get(index, []):
                self.add("dead_mapping", key, f"match = {mapping.match!r}: {why}", [mapping.match])
            if not mapping.set:
                self.add("dead_mapping", key, f"match = {mapping.match!r} sets no field", [mapping.match])
            if index in fired:
                continue  # it fires on real data, whatever the taxonomy says
            unreachable = self.unreachable(mapping.match)
            if unreachable:
                self.add("dead_mapping", key, f"match = {mapping.match!r}: {unreachable}", [mapping.match])

    def unreachable(self, glob: str) -> str | None:
        """Why no well-formed tag can match ``glob``, or None when some can (judged on generated examples)."""
        fitting = [e for e in _glob_examples(glob, sorted(self.prefixes)) if self.fits(e)]
        if not fitting:
            return f"cannot match any tag of the naming pattern {self.config.taxonomy.pattern}"
        if self.declared and not any("/" in e and e.partition("/")[0] in self.declared for e in fitting):
            heads = sorted({e.partition("/")[0] for e in fitting if "/" in e})
            prefix = f"prefix {heads[0]!r}" if len(heads) == 1 else "its prefix"
            return f"{prefix} is not one of {', '.join(sorted(self.declared))}"
        return None


def _closest(word: str, choices: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def _glob_examples(glob: str, prefixes: list[str], limit: int = 4000) -> Iterator[str]:
    """Lowercase strings ``glob`` matches, with a spread of fillers for its wildcards (for reachability)."""
    parts: list[list[str]] = []
    i = 0
    star = ["", "a", "x1", "a-b", "0", "a/", "/a", "a/a", *prefixes, *(f"{p}/" for p in prefixes),
            *(f"{p}/a" for p in prefixes)]
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            parts.append(star)
        elif ch == "?":
            parts.append(["a", "0", "-", "/"])
        elif ch == "[" and (end := _set_end(glob, i)) > 0:
            parts.append(_set_chars(glob[i + 1 : end]))
            i = end
        else:
            parts.append([ch.lower()])
        i += 1
    for combo in itertools.islice(itertools.product(*parts), limit):
        yield "".join(combo)


def _set_end(glob: str, start: int) -> int:
    j = start + 1
    if j < len(glob) and glob[j] == "!":
        j += 1
    if j < len(glob) and glob[j] == "]":
        j += 1
    end = glob.find("]", j)
    return end


def _set_chars(body: str) -> list[str]:
    rx = re.compile(fnmatch.translate(f"[{body}]"), re.IGNORECASE)
    pool = "abcdefghijklmnopqrstuvwxyz0123456789-_/."
    return [c for c in pool if rx.match(c)][:6] or ["?"]


def lint(config: Config, seen_tags: Iterable[str] | Mapping[str, int]) -> list[Finding]:
    """Everything wrong with a taxonomy and the tags a dataset uses, sorted by kind then tag.

    ``seen_tags`` are the tags found in data: a mapping tag -> count, or an iterable of tags (repeats count).
    Kinds (:data:`FINDING_KINDS`):

    - ``pattern``: a seen tag or synonyms key breaks ``[taxonomy] pattern`` (or the pattern is invalid);
    - ``prefix``: a tag's prefix is not in ``prefixes`` (or a declared prefix cannot fit the pattern);
    - ``near_duplicate``: spellings of one topic: same words up to prefix, separators, case, plural, noise
      suffixes such as ``_request``, or one edit; the same topic under two known prefixes is two tags, and
      a tag without a known prefix may join either;
    - ``unmapped``: a seen tag that no mapping matches;
    - ``dead_mapping``: ``tags.N`` sets an unknown field or option, or its glob can match no tag of the
      pattern with a known prefix (judged on examples generated from the glob; a mapping that matches a
      seen tag is never dead for that reason).

    The config's literal mapping tags and synonyms keys take part in near-duplicate groups as known tags.
    Declared synonyms are exempt from pattern and prefix findings and never form a group with their
    canonical tag.
    """
    if isinstance(seen_tags, str):
        seen_tags = [seen_tags]
    seen: Counter[str] = Counter()
    if isinstance(seen_tags, Mapping):
        for tag, n in seen_tags.items():
            seen[tag] += int(n)
    else:
        seen.update(seen_tags)
    del seen[""]
    return _Lint(config, seen).run()


def format_findings(findings: Iterable[Finding]) -> str:
    """Human output of :func:`lint`: one line per finding, grouped by kind, then a count."""
    items = list(findings)
    if not items:
        return "taxonomy: no findings"
    lines: list[str] = []
    for kind in FINDING_KINDS:
        of_kind = [f for f in items if f.kind == kind]
        if of_kind:
            lines.append(f"{kind} ({len(of_kind)})")
            lines.extend(f"  {f.tag}: {f.message}" for f in of_kind)
    counts = Counter(f.kind for f in items)
    lines.append(f"{len(items)} finding{'s' if len(items) != 1 else ''}: "
                 + ", ".join(f"{counts[k]} {k}" for k in FINDING_KINDS if counts[k]))
    return "\n".join(lines)


__all__ = ["FINDING_KINDS", "Finding", "TagMapper", "format_findings", "lint", "normalise_tag"]

"""Runbooks: Markdown files with YAML front matter, matched to findings, and their linter.

A runbook is ``runbooks/<id>.md``: front matter between ``---`` lines, then Markdown. The
front matter names the runbook and says which findings it applies to::

    ---
    id: psp-outage
    title: PSP outage or degradation
    owner: payments-platform
    last_reviewed: 2026-11-25
    applies_to:
      - detectors: [decline_spike]
        dimensions: [psp]            # keys the finding must carry (any value) ...
        when: {cause: technical}     # ... and conditions on its details
      - detectors: [capture_failures]
    ---

``dimensions`` is a list of keys, or a mapping of key to a shell-style pattern (or a list
of them): ``{signal: "*duplicate*"}``. ``when`` maps a details key to a value (strings
are patterns), a list of values (any of them), or a numeric range
(``{gt: 120}``, ``{gte: 0.5, lt: 1}``). A rule applies when the detector is listed and every
condition holds; the most specific rule wins (most conditions, then the fewest detectors
listed, then the runbook id and rule order), so a generic rule and a narrow one can live
side by side.

A runbook's *steps* (what an incident summary lists as open next steps) are the numbered
and checkbox list items under a ``Steps`` (or ``Next steps``, ``Checklist``) heading and
its subsections; each step is the item's first paragraph. The list items under an
``Escalation`` heading say who to call; the paragraphs and fenced code blocks under a
``Queries`` heading are the runbook's queries, which steps refer to ("(PromQL below)").

For an incident, :meth:`Runbook.for_incident` gives what readers show (the evidence's
``RunbookSection``): every step under its heading, the escalation and the queries, with
relative links made absolute (or plain text when no base URL is known) and the quoted
placeholders of queries and inline code (``psp="<psp>"``) filled in with the incident's
dimensions, only with values that are plain label values (:func:`fill_placeholders`).

Everything here is pure apart from reading the files; nothing touches the network.
"""

from __future__ import annotations

import difflib
import json
import math
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal, cast
from urllib.parse import quote, unquote, urljoin

import yaml

from paytriage.config.loader import line_index
from paytriage.core.files import FileProblem, load_yaml, read_text
from paytriage.core.promql import promql_string
from paytriage.domain.evidence import RunbookGroup, RunbookQuery, RunbookSection

__all__ = [
    "SOURCE_DOWN",
    "Condition",
    "LintProblem",
    "QueryBlock",
    "Rule",
    "Runbook",
    "RunbookError",
    "RunbookMatch",
    "extract_steps",
    "fill_placeholders",
    "heading_anchors",
    "lint",
    "load_runbooks",
    "match",
    "parse_runbook",
    "refers_to_queries",
    "resolve_links",
    "runbook_files",
    "safe_label_value",
]

SOURCE_DOWN = "source_down"
"""The detector id of the incidents the bot raises itself when a data source is down."""

BOT_DETECTORS = frozenset({SOURCE_DOWN})
"""Detector ids that exist without a module in ``detectors/``: always known, always need a
runbook."""

REQUIRED_KEYS = ("id", "title", "owner", "last_reviewed", "applies_to")
RULE_KEYS = ("detectors", "dimensions", "when")
RANGE_OPS = ("gt", "gte", "lt", "lte")
STEP_HEADINGS = frozenset({"steps", "next steps", "checklist"})
ESCALATION_HEADINGS = frozenset({"escalation", "escalate", "who to call"})
QUERY_HEADINGS = frozenset({"queries", "query"})
SUMMARY_STEPS = 8  # the steps an incident's summary lists (RunbookSection.steps)
MAX_REVIEW_AGE = timedelta(days=365)

_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_DETECTOR_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_STEP_ITEM = re.compile(r"^( {0,3})(?:\d{1,3}[.)]|[-*+]\s+\[[ xX]\])\s+(.*\S)\s*$")
_ANY_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*+])\s")
_CHECKBOX = re.compile(r"^\[[ xX]\]\s+")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+[^)]*)?\)")
_REF_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_ITEM = re.compile(r"^\s*(?:\d{1,3}[.)]|[-*+])\s+(?:\[[ xX]\]\s+)?(.*\S)\s*$")
# An inline code span, or an inline link with its text and target (and an optional title).
_MD_TOKEN = re.compile(
    r"(?P<code>(?P<ticks>`+)(?:(?!(?P=ticks)).)+?(?P=ticks))"
    r"|(?P<link>!?\[(?P<text>(?:[^\[\]]|\[[^\]]*\])*)\]"
    r"\(\s*(?P<target><[^>]*>|(?:[^()\s]|\([^()\s]*\))+)(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*\))"
)
# A step referring to the runbook's queries: "(query below)", "(P95 and P99 PromQL below)",
# "(PromQL)".
_QUERY_REF = re.compile(
    r"\((?:[^()]*\b(?:query|queries|promql|opensearch)\b[^()]*\bbelow|"
    r"\s*(?:the\s+)?(?:query|queries|promql)\s*)\)",
    re.IGNORECASE,
)
_BELOW = re.compile(r"\bbelow\)", re.IGNORECASE)
# A placeholder the bot fills: a dimension key in angle brackets, inside double quotes.
_PLACEHOLDER = re.compile(r'"<([A-Za-z_][A-Za-z0-9_]{0,63})>"')
_LABEL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/+\-]{0,63}")

Scalar = str | int | float | bool
Severity = Literal["error", "warning"]


class RunbookError(ValueError):
    """A runbook file is invalid: ``path`` is the file, ``key`` the front-matter key."""

    def __init__(self, path: Path, key: str, problem: str, line: int | None = None) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        self.line = line
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {key}: {problem}")


@dataclass(frozen=True)
class Condition:
    """A condition on one details value: any of ``values`` (strings are shell-style patterns,
    matched case-sensitively) or, when ``values`` is empty, the numeric range given."""

    values: tuple[Scalar, ...] = ()
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    def holds(self, actual: object) -> bool:
        if isinstance(actual, list | tuple | set | frozenset):
            return any(self.holds(a) for a in actual)
        if self.values:
            return any(_value_matches(v, actual) for v in self.values)
        if isinstance(actual, bool) or not isinstance(actual, int | float):
            return False
        x = float(actual)
        if not math.isfinite(x):
            return False
        return (
            (self.gt is None or x > self.gt)
            and (self.gte is None or x >= self.gte)
            and (self.lt is None or x < self.lt)
            and (self.lte is None or x <= self.lte)
        )

    def describe(self) -> str:
        if self.values:
            shown = [_show(v) for v in self.values]
            return shown[0] if len(shown) == 1 else "one of " + "|".join(shown)
        ops = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
        parts = [
            f"{ops[op]} {getattr(self, op):g}" for op in RANGE_OPS if getattr(self, op) is not None
        ]
        return " and ".join(parts)


def _value_matches(expected: Scalar, actual: object) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(expected, str):
        return isinstance(actual, str) and fnmatchcase(actual, expected)
    if isinstance(actual, int | float):
        return float(actual) == float(expected)
    return False


def _show(v: Scalar) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


@dataclass(frozen=True)
class Rule:
    """One ``applies_to`` entry."""

    detectors: tuple[str, ...]
    dimensions: tuple[tuple[str, tuple[str, ...]], ...] = ()
    when: tuple[tuple[str, Condition], ...] = ()

    @property
    def specificity(self) -> int:
        """How many conditions the rule sets beyond the detector: more wins."""
        return len(self.dimensions) + len(self.when)

    def matches(
        self, detector: str, dimensions: Mapping[str, str], details: Mapping[str, object]
    ) -> bool:
        if detector not in self.detectors:
            return False
        for key, patterns in self.dimensions:
            value = dimensions.get(key)
            if not isinstance(value, str) or not value:
                return False
            if not any(fnmatchcase(value, p) for p in patterns):
                return False
        return all(key in details and cond.holds(details[key]) for key, cond in self.when)

    def conditions(self) -> tuple[tuple[str, str, str], ...]:
        """(kind, key, expectation) per condition, for messages and tie detection."""
        dims = tuple(("dimension", k, "|".join(p)) for k, p in self.dimensions)
        return dims + tuple(("detail", k, c.describe()) for k, c in self.when)


@dataclass(frozen=True)
class Runbook:
    """One runbook file, parsed."""

    id: str
    title: str
    owner: str
    last_reviewed: date
    rules: tuple[Rule, ...]
    path: Path
    name: str  # the file's path relative to the runbooks directory (posix), for links
    body: str  # the Markdown after the front matter
    steps: tuple[str, ...]  # the next-step items, in order (see extract_steps)
    step_sections: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (heading, its steps)
    escalation: tuple[str, ...] = ()  # the items under the Escalation heading
    queries: tuple[QueryBlock, ...] = ()  # the paragraphs and code under Queries

    @property
    def detectors(self) -> frozenset[str]:
        return frozenset(d for r in self.rules for d in r.detectors)

    def link(self, base_url: str | None = None, anchor: str | None = None) -> str:
        """``base_url`` (where runbooks are published, e.g. a Git web URL of the runbooks
        directory) joined with the file name; without one, the file's path as loaded."""
        url = f"{base_url.rstrip('/')}/{quote(self.name)}" if base_url else self.path.as_posix()
        return f"{url}#{anchor}" if anchor else url

    def for_incident(
        self,
        dimensions: Mapping[str, str],
        *,
        base_url: str | None = None,
        reason: str | None = None,
    ) -> RunbookSection:
        """What readers show of this runbook for an incident on ``dimensions``: every step
        under its heading, the escalation and the queries, links resolved against
        ``base_url`` (:func:`resolve_links`) and placeholders filled in
        (:func:`fill_placeholders`). The first group whose steps refer to the queries
        ("(PromQL below)") is marked: readers show the queries right after it, and later
        references say "above"; without queries, they say "in the runbook"."""
        dims = dict(dimensions)
        has_queries = any(q.code or _INLINE_CODE.search(q.text) for q in self.queries)
        placed = False

        def prose(text: str, queries_shown: str | None = None) -> str:
            """``queries_shown``: where the queries are, as a step reads it: "below"
            (unchanged), "above", or "in the runbook" when they are not shown."""
            text = _fill_inline(resolve_links(text, base_url, self.name), dims)[0]
            if not has_queries:
                queries_shown = "in the runbook"
            return text if queries_shown is None else _BELOW.sub(f"{queries_shown})", text)

        groups: list[RunbookGroup] = []
        for heading, steps in self.step_sections:
            texts = tuple(prose(s, "above" if placed else None) for s in steps)
            refers = has_queries and not placed and any(refers_to_queries(s) for s in steps)
            placed = placed or refers
            groups.append(RunbookGroup(heading=heading, steps=texts, queries=refers))
        queries: list[RunbookQuery] = []
        for q in self.queries:
            text, notes = _fill_inline(resolve_links(q.text, base_url, self.name), dims)
            code, code_notes = fill_placeholders(q.code, dims, q.lang) if q.code else ("", ())
            notes = tuple(dict.fromkeys((*notes, *code_notes)))
            queries.append(RunbookQuery(text=text, lang=q.lang, code=code, notes=notes))
        return RunbookSection(
            id=self.id,
            title=self.title,
            link=self.link(base_url),
            owner=self.owner,
            reason=reason,
            steps=tuple(prose(s, "in the runbook") for s in self.steps[:SUMMARY_STEPS]),
            name=self.name,
            groups=tuple(groups),
            escalation=tuple(prose(e, "above") for e in self.escalation),
            queries=tuple(queries),
        )


@dataclass(frozen=True)
class QueryBlock:
    """One item of a runbook's Queries section: a paragraph (``text``, Markdown) and the
    fenced code block right after it (``lang`` from its info string), either may be empty."""

    text: str = ""
    lang: str = ""
    code: str = ""


@dataclass(frozen=True)
class RunbookMatch:
    """The runbook for a finding, or None; ``reason`` says why (or that none fits)."""

    runbook: Runbook | None
    reason: str
    rule: Rule | None = None


@dataclass(frozen=True)
class LintProblem:
    path: Path
    message: str
    severity: Severity = "error"
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else str(self.path)
        return f"{where}: {self.severity}: {self.message}"


# --------------------------------------------------------------------------- parsing


@dataclass
class _Problems:
    path: Path
    lines: dict[tuple[str | int, ...], int] = field(default_factory=dict)
    found: list[RunbookError] = field(default_factory=list)

    def add(self, key: tuple[str | int, ...], problem: str) -> None:
        line = self.lines.get(key) or self.lines.get(key[:1])
        self.found.append(RunbookError(self.path, _key_path(key), problem, line))


def _key_path(key: tuple[str | int, ...]) -> str:
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "front matter"


def _split_front_matter(text: str) -> tuple[str, str, int] | None:
    """(front matter, body, line of the body's first line) or None when there is none."""
    lines = text.lstrip("\ufeff").splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        return None
    for n, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            return "".join(lines[1:n]), "".join(lines[n + 1 :]), n + 2
    return None


def _yaml_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Each key path of the front matter to its line in the file (front matter starts on 2)."""
    return line_index(text, first_line=2)


def _unknown_key(
    problems: _Problems, key: tuple[str | int, ...], name: str, allowed: Sequence[str]
) -> None:
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    problems.add((*key, name), f"unknown key{hint}; allowed: {', '.join(allowed)}")


def _scalar(v: object) -> bool:
    return isinstance(v, str | int | float | bool)


def _condition(problems: _Problems, key: tuple[str | int, ...], raw: object) -> Condition | None:
    if isinstance(raw, Mapping):
        bad = [str(k) for k in raw if k not in RANGE_OPS]
        if bad or not raw:
            problems.add(
                key,
                f"a range takes {', '.join(RANGE_OPS)} (got {', '.join(bad) or 'nothing'}); "
                "write a value or a list of values to compare with",
            )
            return None
        bounds: dict[str, float] = {}
        for op, v in raw.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                problems.add((*key, str(op)), f"must be a number, got {v!r}")
                return None
            bounds[str(op)] = float(v)
        return Condition(
            gt=bounds.get("gt"), gte=bounds.get("gte"), lt=bounds.get("lt"), lte=bounds.get("lte")
        )
    values = list(raw) if isinstance(raw, list) else [raw]
    if not values or not all(_scalar(v) for v in values):
        problems.add(
            key, f"must be a value, a non-empty list of values or a range ({{gt: 1}}), got {raw!r}"
        )
        return None
    return Condition(values=tuple(cast(list[Scalar], values)))


def _dimension_patterns(
    problems: _Problems, key: tuple[str | int, ...], raw: object
) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    if isinstance(raw, list):
        if not raw or not all(isinstance(k, str) and k for k in raw):
            problems.add(key, f"must be a list of dimension names or a mapping, got {raw!r}")
            return None
        return tuple((k, ("*",)) for k in dict.fromkeys(raw))
    if isinstance(raw, Mapping) and raw:
        out: list[tuple[str, tuple[str, ...]]] = []
        for k, v in raw.items():
            pats = v if isinstance(v, list) else [v]
            if not pats or not all(isinstance(p, str) and p for p in pats):
                problems.add(
                    (*key, str(k)),
                    f"must be a pattern or a list of patterns (strings; quote values YAML "
                    f"reads as something else, such as NO or 1), got {v!r}",
                )
                return None
            out.append((str(k), tuple(pats)))
        return tuple(out)
    problems.add(key, f"must be a list of dimension names or a mapping, got {raw!r}")
    return None


def _rule(problems: _Problems, key: tuple[str | int, ...], raw: object) -> Rule | None:
    if not isinstance(raw, Mapping):
        problems.add(
            key,
            f"must be a mapping with 'detectors' (and optionally {RULE_KEYS[1]}, "
            f"{RULE_KEYS[2]}), got {raw!r}",
        )
        return None
    ok = True
    for k in raw:
        if k not in RULE_KEYS:
            _unknown_key(problems, key, str(k), RULE_KEYS)
            ok = False
    raw_dets = raw.get("detectors")
    dets: list[str] = []
    if isinstance(raw_dets, str):
        raw_dets = [raw_dets]
    if (
        isinstance(raw_dets, list)
        and raw_dets
        and all(isinstance(d, str) and _DETECTOR_ID.match(d) for d in raw_dets)
    ):
        dets = [str(d) for d in raw_dets]
    else:
        problems.add(
            (*key, "detectors"), f"must be a non-empty list of detector ids, got {raw_dets!r}"
        )
        ok = False
    dims: tuple[tuple[str, tuple[str, ...]], ...] | None = ()
    if raw.get("dimensions") is not None:
        dims = _dimension_patterns(problems, (*key, "dimensions"), raw["dimensions"])
    when: list[tuple[str, Condition]] = []
    raw_when = raw.get("when")
    if raw_when is not None:
        if not isinstance(raw_when, Mapping) or not raw_when:
            problems.add(
                (*key, "when"), f"must be a mapping of details key to value, got {raw_when!r}"
            )
            ok = False
        else:
            for k, v in raw_when.items():
                cond = _condition(problems, (*key, "when", str(k)), v)
                if cond is None:
                    ok = False
                else:
                    when.append((str(k), cond))
    if not ok or dims is None:
        return None
    return Rule(tuple(dict.fromkeys(dets)), dims, tuple(when))


def parse_runbook(path: Path, text: str, name: str | None = None) -> Runbook:
    """One runbook from its text; raises RunbookError naming the first bad key."""
    runbook, problems = _parse(path, text, name)
    if problems:
        raise problems[0]
    assert runbook is not None
    return runbook


def _parse(path: Path, text: str, name: str | None) -> tuple[Runbook | None, list[RunbookError]]:
    """The runbook and every problem found in its front matter."""
    problems = _Problems(path)
    split = _split_front_matter(text)
    if split is None:
        problems.add((), "missing: the file must start with YAML front matter between '---' lines")
        return None, problems.found
    front, body, _ = split
    problems.lines = _yaml_lines(front)
    try:
        meta = load_yaml(front)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 2 if mark is not None else None
        problems.found.append(RunbookError(path, "front matter", f"invalid YAML: {e}", line))
        return None, problems.found
    if not isinstance(meta, Mapping):
        problems.add((), "must be a YAML mapping of keys (id, title, owner, ...)")
        return None, problems.found
    for k in meta:
        if k not in REQUIRED_KEYS:
            _unknown_key(problems, (), str(k), REQUIRED_KEYS)
    for k in REQUIRED_KEYS:
        if meta.get(k) is None:
            problems.add((k,), "missing")
    rb_id = meta.get("id")
    if rb_id is not None and not (isinstance(rb_id, str) and _ID.match(rb_id)):
        problems.add(("id",), f"must be lowercase letters, digits and dashes, got {rb_id!r}")
    for k in ("title", "owner"):
        v = meta.get(k)
        if v is not None and not (isinstance(v, str) and v.strip()):
            problems.add((k,), f"must be a non-empty string, got {v!r}")
    reviewed = _date(problems, meta.get("last_reviewed"))
    rules: list[Rule] = []
    raw_rules = meta.get("applies_to")
    if raw_rules is not None:
        if not isinstance(raw_rules, list) or not raw_rules:
            problems.add(("applies_to",), "must be a non-empty list of rules ({detectors: [...]})")
        else:
            for i, raw in enumerate(raw_rules):
                rule = _rule(problems, ("applies_to", i), raw)
                if rule is not None:
                    rules.append(rule)
    if problems.found:
        return None, problems.found
    assert reviewed is not None
    sectioned = _sectioned_steps(body)
    runbook = Runbook(
        id=str(rb_id),
        title=str(meta["title"]).strip(),
        owner=str(meta["owner"]).strip(),
        last_reviewed=reviewed,
        rules=tuple(rules),
        path=path,
        name=name or path.name,
        body=body,
        steps=tuple(text for _, text in sectioned),
        step_sections=_group_sections(sectioned),
        escalation=_escalation(body),
        queries=_query_blocks(body),
    )
    return runbook, []


def _group_sections(steps: list[tuple[str, str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    out: list[tuple[str, list[str]]] = []
    for heading, text in steps:
        if not out or out[-1][0] != heading:
            out.append((heading, []))
        out[-1][1].append(text)
    return tuple((h, tuple(t)) for h, t in out)


def _date(problems: _Problems, raw: object) -> date | None:
    if raw is None:
        return None
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        try:
            return date.fromisoformat(raw.strip())
        except ValueError:
            pass
    problems.add(("last_reviewed",), f"must be a date written YYYY-MM-DD, got {raw!r}")
    return None


def runbook_files(directory: Path) -> list[Path]:
    """The runbook files of a directory: every ``*.md`` but its README, sorted."""
    return sorted(
        p for p in directory.glob("*.md") if p.is_file() and p.name.lower() != "readme.md"
    )


def _read(path: Path) -> str:
    try:
        return read_text(path)
    except FileProblem as exc:
        raise RunbookError(path, "file", exc.problem) from None


def load_runbooks(directory: Path) -> list[Runbook]:
    """Every runbook in ``directory``, sorted by id; raises RunbookError on a bad file or a
    duplicate id (and when the directory does not exist)."""
    if not directory.is_dir():
        raise RunbookError(directory, "runbooks.dir", "not a directory")
    out: dict[str, Runbook] = {}
    for path in runbook_files(directory):
        rb = parse_runbook(path, _read(path), path.name)
        if rb.id in out:
            raise RunbookError(path, "id", f"duplicate id {rb.id!r} (also in {out[rb.id].path})")
        out[rb.id] = rb
    return sorted(out.values(), key=lambda r: r.id)


# --------------------------------------------------------------------------- Markdown


def _scan(text: str) -> Iterator[tuple[int, str, bool]]:
    """(1-based line number, line, inside a fenced code block) for every line; the fence
    lines themselves count as inside."""
    fence: str | None = None
    for n, line in enumerate(text.splitlines(), start=1):
        m = _FENCE.match(line)
        if fence is None:
            if m:
                fence = m.group(1)
            yield n, line, fence is not None
            continue
        if m and m.group(1).startswith(fence) and not line.strip().lstrip(fence[0]):
            fence = None
        yield n, line, True


def _outside_fences(text: str) -> Iterator[tuple[int, str]]:
    for n, line, fenced in _scan(text):
        if not fenced:
            yield n, line


def _headings(text: str) -> Iterator[tuple[int, int, str]]:
    """(line, level, text) of every ATX heading outside code blocks."""
    for n, line in _outside_fences(text):
        m = _HEADING.match(line)
        if m:
            yield n, len(m.group(1)), m.group(2).strip()


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped, spaces to dashes."""
    text = _INLINE_CODE.sub(lambda m: m.group(0).strip("`"), heading)
    text = re.sub(r"\[(.*?)\]\([^)]*\)", r"\1", text)  # [text](url) -> text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown text (duplicates get -1, -2...)."""
    seen: Counter[str] = Counter()
    out: set[str] = set()
    for _, _, heading in _headings(text):
        slug = _slug(heading)
        out.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
        seen[slug] += 1
    return out


def extract_steps(body: str) -> list[str]:
    """The numbered and checkbox items (first paragraph each, whitespace collapsed) under a
    heading named in STEP_HEADINGS, including its subsections."""
    return [text for _, text in _sectioned_steps(body)]


def _sectioned_steps(body: str) -> list[tuple[str, str]]:
    """(heading the step sits under, step) for every step, in order."""
    steps: list[tuple[str, str]] = []
    section: int | None = None  # level of the steps heading we are under
    heading = ""
    current: list[str] | None = None
    for _, line, fenced in _scan(body):
        if fenced:
            current = None
            continue
        h = _HEADING.match(line)
        if h:
            current = None
            level = len(h.group(1))
            if section is not None and level <= section:
                section = None
            if section is None and h.group(2).strip().rstrip(":").lower() in STEP_HEADINGS:
                section = level
            heading = h.group(2).strip()
            continue
        if section is None:
            continue
        item = _STEP_ITEM.match(line)
        if item:
            current = [_CHECKBOX.sub("", item.group(2))]
            steps.append((heading, ""))
        elif not line.strip() or _ANY_ITEM.match(line):
            current = None
        elif current is not None:
            current.append(line.strip())
        if current is not None:
            steps[-1] = (heading, " ".join(" ".join(current).split()))
    return [(h, text) for h, text in steps if text]


def _section_lines(body: str, names: frozenset[str]) -> list[str]:
    """The lines under the first heading named in ``names`` (case-insensitive, a trailing
    colon ignored), up to the next heading of the same or a higher level."""
    out: list[str] = []
    level: int | None = None
    for _, line, fenced in _scan(body):
        h = None if fenced else _HEADING.match(line)
        if h:
            if level is not None and len(h.group(1)) <= level:
                break
            if level is None and h.group(2).strip().rstrip(":").lower() in names:
                level = len(h.group(1))
                continue
        if level is not None:
            out.append(line)
    return out


def _escalation(body: str) -> tuple[str, ...]:
    """The items (first paragraph each, whitespace collapsed) under the Escalation heading;
    a paragraph outside a list counts as one item."""
    items: list[list[str]] = []
    current: list[str] | None = None
    for _, line in _outside_fences("\n".join(_section_lines(body, ESCALATION_HEADINGS))):
        item = _ITEM.match(line)
        if item:
            current = [item.group(1)]
            items.append(current)
        elif not line.strip() or _HEADING.match(line):
            current = None
        elif current is not None:
            current.append(line.strip())
        else:
            current = [line.strip()]
            items.append(current)
    return tuple(" ".join(" ".join(i).split()) for i in items if i)


def _query_blocks(body: str) -> tuple[QueryBlock, ...]:
    """The Queries section: each paragraph with the fenced code block right after it (if
    one is), and code blocks on their own."""
    parts: list[QueryBlock] = []  # paragraphs (text only) and code blocks (no text), in order
    para: list[str] = []
    fence: str | None = None
    lang = ""
    code: list[str] = []
    for line in [*_section_lines(body, QUERY_HEADINGS), ""]:
        if fence is not None:
            if (
                _FENCE.match(line)
                and line.strip().startswith(fence)
                and not line.strip().strip(fence[0])
            ):
                parts.append(QueryBlock("", lang, "\n".join(code).rstrip()))
                fence, code = None, []
            else:
                code.append(line)
            continue
        m = _FENCE.match(line)
        if m or not line.strip():
            if para:
                parts.append(QueryBlock(" ".join(para)))
                para = []
            if m:
                fence = m.group(1)
                info = line.strip()[len(fence) :].split()
                lang = info[0].lower() if info else ""
            continue
        para.append(line.strip())
    if fence is not None and code:  # an unclosed fence runs to the end
        parts.append(QueryBlock("", lang, "\n".join(code).rstrip()))
    out: list[QueryBlock] = []
    for part in parts:
        if part.code and out and out[-1].text and not out[-1].code:
            out[-1] = QueryBlock(out[-1].text, part.lang, part.code)
        else:
            out.append(part)
    return tuple(out)


def refers_to_queries(step: str) -> bool:
    """Whether a step refers to the runbook's queries: "(query below)", "(PromQL below)",
    "(P95 and P99 PromQL below)", "(PromQL)"."""
    return _QUERY_REF.search(_INLINE_CODE.sub("", step)) is not None


def resolve_links(text: str, base_url: str | None, name: str) -> str:
    """Runbook Markdown with every inline link usable where the runbook is read out of its
    directory. Absolute links (http, https, mailto) stay; relative ones (``other.md``,
    ``other.md#heading``, ``#heading``, ``../config/x.yaml``) become links to where the
    runbooks are published when ``base_url`` is known (``name``: this runbook's path in the
    runbooks directory), else plain text: the link's text, naming the runbook file for a
    link to another runbook (``PSP outage (`psp-outage.md`)``). Links of any other scheme
    (``javascript:``) become their text. Code spans are left alone."""

    def one(m: re.Match[str]) -> str:
        if m.group("code"):
            return m.group(0)
        label = m.group("text").strip()
        target = m.group("target").strip("<>").strip()
        if target.lower().startswith(("http://", "https://", "mailto:")):
            return f"[{label}]({target})"
        if _SCHEME.match(target) or target.startswith("//"):
            return label
        file_part = target.partition("#")[0]
        if base_url:
            page = f"{base_url.rstrip('/')}/{quote(name)}"
            return f"[{label}]({urljoin(page, target)})"
        if not file_part:
            return label
        path = posixpath.normpath(posixpath.join(posixpath.dirname(name), unquote(file_part)))
        if path.lower().endswith(".md") and not path.startswith("../"):
            return f"{label} (`{path}`)"
        return label

    return _MD_TOKEN.sub(one, text)


def safe_label_value(value: object) -> bool:
    """Whether a dimension value may be filled into a query: a plain label value (a letter
    or digit, then letters, digits and ``_ . : / + -``, 64 characters at most). Nothing
    such a value holds can end a quoted string in PromQL, JSON or a Lucene query."""
    return isinstance(value, str) and _LABEL_VALUE.fullmatch(value) is not None


def _quoted(value: str, lang: str) -> str | None:
    """``value`` as a double-quoted string of ``lang``; None unless that is just the value
    between quotes (so that escaping could never be needed)."""
    quoted = promql_string(value) if lang == "promql" else json.dumps(value)
    return quoted if quoted == f'"{value}"' else None


def fill_placeholders(
    code: str, dimensions: Mapping[str, str], lang: str = ""
) -> tuple[str, tuple[str, ...]]:
    """``code`` with each quoted placeholder (``"<psp>"``) replaced by the incident's value
    of that dimension, and notes on the ones left. Only plain label values are filled in
    (:func:`safe_label_value`), never anything else: a refused value leaves the placeholder
    and a note that does not repeat it. A dimension the incident does not have leaves the
    placeholder too; in PromQL (``lang`` ``promql``) an equality matcher on it
    (``psp="<psp>"``) is dropped instead, so the query runs over every value. Unquoted
    placeholders (``--at <time>``) are for people to fill and left alone."""
    missing: dict[str, None] = {}
    refused: dict[str, None] = {}

    def one(m: re.Match[str]) -> str:
        key = m.group(1)
        value = dimensions.get(key)
        if value is None:
            missing[key] = None
            return m.group(0)
        quoted = _quoted(value, lang) if safe_label_value(value) else None
        if quoted is None:
            refused[key] = None
            return m.group(0)
        return quoted

    out = _PLACEHOLDER.sub(one, code)
    notes: list[str] = []
    for key in missing:
        dropped = False
        if lang == "promql":
            out, dropped = _drop_matcher(out, key)
        if dropped:
            notes.append(f"This incident has no {key}: the {key} matcher is left out.")
        else:
            notes.append(f"This incident has no {key}: replace <{key}> or drop that filter.")
    notes += [
        f"The incident's {key} is not a plain label value, so it is not filled in: replace <{key}>."
        for key in refused
    ]
    return out, tuple(notes)


def _drop_matcher(promql: str, key: str) -> tuple[str, bool]:
    """PromQL without the equality matchers ``key="<key>"`` (and their comma); a selector
    left with no matcher loses its braces."""
    matcher = rf'\b{re.escape(key)}\s*=\s*"<{re.escape(key)}>"'
    out = re.sub(rf"(?<=[A-Za-z0-9_:])\{{\s*{matcher}\s*\}}", "", promql)
    out = re.sub(rf"\s*,\s*{matcher}", "", out)
    out = re.sub(rf"{matcher}\s*,\s*", "", out)
    return out, out != promql and f'"<{key}>"' not in out


def _fill_inline(text: str, dimensions: Mapping[str, str]) -> tuple[str, tuple[str, ...]]:
    """Markdown with the quoted placeholders of its code spans filled in, and the notes on
    those left (see :func:`fill_placeholders`)."""
    notes: list[str] = []

    def one(m: re.Match[str]) -> str:
        if not m.group("code"):
            return m.group(0)
        code, why = fill_placeholders(m.group(0), dimensions)
        notes.extend(why)
        return code

    return _MD_TOKEN.sub(one, text), tuple(dict.fromkeys(notes))


def _links(text: str) -> Iterator[tuple[int, str]]:
    """(line, target) of every inline or reference link outside code."""
    for n, line in _outside_fences(text):
        plain = _INLINE_CODE.sub("", line)
        for m in _INLINE_LINK.finditer(plain):
            yield n, m.group(1).strip("<>")
        ref = _REF_LINK.match(plain)
        if ref:
            yield n, ref.group(1).strip("<>")


# --------------------------------------------------------------------------- matching


def _where(dimensions: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in dimensions.items()) or "the whole platform"


def match(
    runbooks: Iterable[Runbook],
    detector: str,
    dimensions: Mapping[str, str],
    details: Mapping[str, object],
    *,
    pinned: str | None = None,
) -> RunbookMatch:
    """The runbook for a finding: the most specific rule that applies (most conditions, then
    the fewest detectors listed, then runbook id and rule order). ``pinned`` (a detector's
    ``runbook:`` setting) wins when it names a loaded runbook."""
    books = sorted(runbooks, key=lambda r: r.id)
    note = ""
    if pinned is not None:
        for rb in books:
            if rb.id == pinned:
                return RunbookMatch(rb, f"{rb.id}: set as the {detector} detector's runbook")
        note = f"pinned runbook {pinned!r} not found; "
    best: tuple[tuple[int, int, str, int], Runbook, Rule] | None = None
    for rb in books:
        for i, rule in enumerate(rb.rules):
            if not rule.matches(detector, dimensions, details):
                continue
            rank = (-rule.specificity, len(rule.detectors), rb.id, i)
            if best is None or rank < best[0]:
                best = (rank, rb, rule)
    if best is None:
        return RunbookMatch(None, f"{note}no runbook applies to {detector} on {_where(dimensions)}")
    (_, _, _, i), rb, rule = best
    conds = [f"{k}={dimensions[k]}" for k, _ in rule.dimensions] + [
        f"{k}={_show_detail(details[k])}" for k, _ in rule.when
    ]
    what = f"{detector} with {', '.join(conds)}" if conds else f"any {detector} finding"
    return RunbookMatch(rb, f"{note}{rb.id} (applies_to[{i}]): {what}", rule)


def _show_detail(v: object) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return _show(v) if isinstance(v, str | int | bool) else repr(v)


# --------------------------------------------------------------------------- lint


def lint(
    directory: Path, detector_ids: Iterable[str], *, today: date | None = None
) -> list[LintProblem]:
    """Every problem in a runbooks directory: front matter (missing or invalid keys, duplicate
    ids, unknown detector ids), relative links to missing files or headings, no steps, review
    dates in the future or over a year old (warnings), and each detector (``source_down``
    included) without a runbook."""
    today = today or date.today()
    known = set(detector_ids) | BOT_DETECTORS
    out: list[LintProblem] = []
    if not directory.is_dir():
        return [LintProblem(directory, "runbooks directory not found")]
    books: list[Runbook] = []
    ids: dict[str, Path] = {}
    for path in runbook_files(directory):
        try:
            text = read_text(path)
        except FileProblem as exc:
            out.append(LintProblem(path, exc.problem))
            continue
        rb, errors = _parse(path, text, path.name)
        out += [LintProblem(path, f"{e.key}: {e.problem}", "error", e.line) for e in errors]
        out += _lint_links(path, text)
        if rb is None:
            continue
        if rb.id in ids:
            out.append(LintProblem(path, f"id: duplicate id {rb.id!r} (also in {ids[rb.id]})"))
        else:
            ids[rb.id] = path
            books.append(rb)
        out += _lint_runbook(rb, known, today)
    for other in sorted(directory.glob("*.md")):
        if other.is_file() and other.name.lower() == "readme.md":
            try:
                out += _lint_links(other, read_text(other))
            except FileProblem as exc:
                out.append(LintProblem(other, exc.problem))
    out += _lint_ties(books)
    covered = {d for rb in books for d in rb.detectors}
    for det in sorted(known - covered):
        out.append(LintProblem(directory, f"no runbook applies to detector {det!r}"))
    return out


def _lint_runbook(rb: Runbook, known: set[str], today: date) -> list[LintProblem]:
    out: list[LintProblem] = []
    for i, rule in enumerate(rb.rules):
        for det in rule.detectors:
            if det not in known:
                close = difflib.get_close_matches(det, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                out.append(
                    LintProblem(
                        rb.path,
                        f"applies_to[{i}].detectors: unknown detector {det!r}{hint}; "
                        f"known: {', '.join(sorted(known))}",
                    )
                )
    if rb.path.stem != rb.id:
        out.append(LintProblem(rb.path, f"id: {rb.id!r} differs from the file name", "warning"))
    if rb.last_reviewed > today:
        out.append(
            LintProblem(rb.path, f"last_reviewed: {rb.last_reviewed} is in the future", "warning")
        )
    elif today - rb.last_reviewed > MAX_REVIEW_AGE:
        out.append(
            LintProblem(
                rb.path,
                f"last_reviewed: {rb.last_reviewed} is over a year ago: review the runbook",
                "warning",
            )
        )
    if not rb.steps:
        out.append(
            LintProblem(
                rb.path,
                "no steps: add numbered or checkbox items under a '## Steps' heading",
            )
        )
    if not any(q.code or _INLINE_CODE.search(q.text) for q in rb.queries):
        for n, step in enumerate(rb.steps, start=1):
            ref = _QUERY_REF.search(_INLINE_CODE.sub("", step))
            if ref is not None:
                out.append(
                    LintProblem(
                        rb.path,
                        f"step {n} refers to a query {ref.group(0)} but the runbook has none: "
                        "add it in a code block under a '## Queries' heading",
                    )
                )
    return out


def _lint_links(path: Path, text: str) -> list[LintProblem]:
    out: list[LintProblem] = []
    split = _split_front_matter(text)
    body, offset = (split[1], split[2] - 1) if split else (text, 0)
    anchors: dict[Path, set[str]] = {}
    for line, target in _links(body):
        if _SCHEME.match(target) or target.startswith("//"):
            continue
        file_part, _, anchor = target.partition("#")
        file_part = unquote(file_part)
        if file_part.startswith("/"):
            continue  # repository-absolute: depends on where the runbooks are published
        dest = (path.parent / file_part) if file_part else path
        where = line + offset
        if not dest.exists():
            out.append(LintProblem(path, f"link {target!r}: {file_part} not found", line=where))
            continue
        if not anchor or dest.suffix.lower() != ".md" or not dest.is_file():
            continue
        if dest not in anchors:
            try:
                d_text = read_text(dest)
            except FileProblem:
                d_text = ""
            d_split = _split_front_matter(d_text)
            anchors[dest] = heading_anchors(d_split[1] if d_split else d_text)
        if unquote(anchor).lower() not in anchors[dest]:
            out.append(
                LintProblem(
                    path,
                    f"link {target!r}: no heading #{anchor} in {dest.name}",
                    line=where,
                )
            )
    return out


def _lint_ties(books: Sequence[Runbook]) -> list[LintProblem]:
    """Rules of different runbooks with the same conditions for the same detector: which one
    a finding gets is decided by the runbook id alone."""
    out: list[LintProblem] = []
    seen: dict[tuple[str, frozenset[tuple[str, str, str]]], tuple[Runbook, int]] = {}
    for rb in books:
        for i, rule in enumerate(rb.rules):
            conds = frozenset(rule.conditions())
            for det in rule.detectors:
                other = seen.setdefault((det, conds), (rb, i))
                if other[0].id != rb.id:
                    out.append(
                        LintProblem(
                            rb.path,
                            f"applies_to[{i}] ties with {other[0].id} applies_to[{other[1]}] "
                            f"for {det}: the runbook id decides which one an incident gets",
                            "warning",
                        )
                    )
    return out

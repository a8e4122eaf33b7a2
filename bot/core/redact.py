"""Redaction of card data, credentials and personal data before anything leaves the bot.

Payment logs leak: a careless ``log.info(request)`` writes a PAN, its CVV, a customer's
e-mail or a bearer token. Whatever the bot posts (Slack, PagerDuty), stores or writes to its
own logs and postmortems goes through :func:`redact` (text) or :func:`redact_value`
(structures) first, so that none of it carries a card number, CVV, secret or token.

Sensitive parts become short typed placeholders: ``[CARD ****1111]`` (the last four digits
only, never the BIN), ``[CVV]``, ``[EMAIL]``, ``[TOKEN]`` (bearer tokens, JWTs, session
cookies, OAuth and platform tokens), ``[SECRET]`` (API keys, passwords, private keys,
credentials in URLs, webhook URLs) and ``[IBAN]``.

How, and why so:

* Passes run most specific first: private keys, credentials in URLs, known token formats
  (JWTs, Stripe, Slack, AWS, GitHub, Adyen keys...), e-mails, IBANs, track data and card
  numbers, then the values of keys named like secrets (``password=``, ``"cvc":``,
  ``Authorization:``), secrets on command lines (``--password x``, ``mysql -pX``, ``curl -u
  user:pw``), bare AWS secret keys, ``Bearer`` tokens and CVVs named in prose. A token's
  digits are gone before the card pass could mistake them; a card is gone before a pass
  that takes one word after a key could split it. The whole sequence is repeated until
  nothing changes and no placeholder is ever matched again, so redaction is idempotent.
* Card numbers and CVVs are read in a normalised view of the text: URL escapes (``%34``,
  ``%2D``, ``%C2%A0``, twice encoded too), JSON and C escapes (``\\u0034``, ``\\n``), HTML
  entities (``&#52;``, ``&nbsp;``), Unicode digits of any script, Unicode spaces, dashes
  and bullets are decoded, zero-width and combining characters dropped. A match in the view
  is mapped back to its span in the original text, which is what gets replaced. Cards are
  also looked for in the text as it is, so a stray character the view reads as a digit
  cannot hide a plain card.
* Every pattern is linear: no nested unbounded quantifiers, possessive loops where a scan
  could otherwise back off, candidates found by regex and judged in Python (Luhn and the
  issuer ranges for cards, ISO 13616 mod-97 for IBANs), so a megabyte of hostile input
  costs about a second, never minutes.
* Cards are looked for in runs of digit groups split by spaces, line breaks, dashes,
  ``+``, ``_``, ``/``, ``,``, ``:`` or ``·`` (mixed and repeated; spaces, dashes and ``+``
  mix freely with one kind of punctuation), glued to letters or punctuation too, and in
  dotted card groupings. Groups have 3+ digits (4-4-4-4, 4-6-5, 4-4-4-4-3) except the
  last, unless they are all alike (``4 1 1 1 ...``, ``41 11 11 ...``) or start the run
  (``4111 1111 1111 11 11``). A window must hold 13-19 digits, pass Luhn *and* start with
  a real issuer prefix at a length that issuer uses: that keeps epoch milliseconds (13
  digits starting with 1), order numbers and trace ids intact. The fraction of a decimal,
  a ``+``-prefixed phone number and a list of round numbers (``4000 1000 2000 3000``) are
  not cards. One unbroken number named as an id by its key (``order_id=``, ``"traceId":``,
  ``<RequestId>``, ``Transaction ID``) or glued inside a long hex string passes Luhn by
  chance (about 4 % of random 16-digit ids do) and is kept, unless it is a famous test
  card; under any other key, or none, it is masked. A key named like a card number
  (``pan``, ``card_number``) is redacted even when its digits fail Luhn.
* Track data is masked whole: track 1 (``%B<PAN>^NAME^YYMM<service code>...?``), track 2
  (``;<PAN>=YYMM<service code>...?``), EMV track 2 equivalent (``<PAN>D<YYMM>...``) and the
  EMV PAN tag (``5A08<PAN>``): the name, expiry and service code go with the PAN.
* A failure inside the redactor never lets text through: it returns a placeholder instead.
"""

from __future__ import annotations

import re
import string
import unicodedata
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

__all__ = ["DEFAULT_REDACTOR", "Redactor", "redact", "redact_value"]

CVV_MARK = "[CVV]"
EMAIL_MARK = "[EMAIL]"
IBAN_MARK = "[IBAN]"
TOKEN_MARK = "[TOKEN]"  # noqa: S105 - a placeholder, not a credential
SECRET_MARK = "[SECRET]"  # noqa: S105 - a placeholder, not a credential
FAILED_MARK = "[REDACTED]"

_MAX_ROUNDS = 8  # passes until nothing changes; real text settles in two
_MAX_DEPTH = 64  # deeper structures are flattened to text and redacted as text

_PLACEHOLDER_RE = re.compile(r"\[(?:CARD(?: \*{4}[0-9]{4})?|CVV|EMAIL|IBAN|TOKEN|SECRET)\]")


def card_mark(last4: str) -> str:
    """The placeholder of a card number: only its last four digits survive."""
    return f"[CARD ****{last4}]"


# ---------------------------------------------------------------------------------------
# Card numbers


_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")


def luhn_ok(digits: str) -> bool:
    """The Luhn check of a string of ASCII digits."""
    odd = digits[-1::-2]
    even = digits[-2::-2].translate(_LUHN_DOUBLE)
    return (sum(map(int, odd)) + sum(map(int, even))) % 10 == 0


def issuer_ok(digits: str) -> bool:
    """Whether a number starts like a card of an issuer that uses its length.

    Luhn alone passes one number in ten; real card prefixes (IIN ranges) and the lengths
    each network issues cut out timestamps (epoch ms start with 1), ids and counters.
    """
    n = len(digits)
    if n < 13 or n > 19:
        return False
    head = int(digits[:4])
    first = digits[0]
    if first == "4":  # Visa: 16 digits, 13 (old) and 19; 14, 15, 17, 18 are ids
        return n in (13, 16, 19)
    if first == "6":  # Discover, UnionPay, Maestro, RuPay and the other 6 ranges
        return True
    if first == "5":  # Mastercard 51-55 is 16 digits; Maestro 50 and 56-59 vary
        return n == 16 if 5100 <= head <= 5599 else True
    if first == "2":  # Mastercard 2221-2720; Mir 2200-2204
        if 2221 <= head <= 2720:
            return n == 16
        return 2200 <= head <= 2204 and n >= 16
    if first == "3":
        if head // 100 in (34, 37):  # American Express
            return n == 15
        if 3000 <= head <= 3059 or head == 3095 or head // 100 in (36, 38, 39):  # Diners
            return n >= 14
        return 3528 <= head <= 3589 and n >= 16  # JCB
    if first == "1":  # UATP; never 13 (epoch ms), 16 (epoch us) or 19 (epoch ns) digits
        return n == 15
    if first == "8":  # UnionPay 81
        return 8100 <= head <= 8171 and n >= 16
    return head == 9792 and n == 16  # Troy


def is_card_number(digits: str) -> bool:
    """A plausible card number: 13-19 ASCII digits, an issuer prefix and Luhn."""
    return digits.isascii() and digits.isdigit() and issuer_ok(digits) and luhn_ok(digits)


# Raw-text separators of digit groups (the values of card keys, digits after a token).
_SEP = r"(?: {2}|[ \t+\-\u00a0\u2007\u2009\u202f\u2010-\u2015]|%20)"


# ---------------------------------------------------------------------------------------
# The normalised view: what the card and CVV passes read
#
# Digits hide behind escapes and look-alikes: "%34%31", "\u0034", "&#52;", fullwidth or
# Arabic-Indic digits, zero-width characters between them, "%2D" or "\u00a0" between
# groups. The view decodes all of these into ASCII digits and plain separators, records
# each edit, and maps a match in the view back to its span in the original text, which is
# what gets replaced. Escapes that decode to letters are left as they are: decoding "%41"
# would hide the digits that follow it.

_ZERO_WIDTH_CHARS = "\u115f\u1160\u2800\u3164\uffa0"  # fillers that render as nothing
_DOT_CHARS = "\u00b7\u2022\u2027\u2219\u22c5\u30fb\uff65\u2024"
_NAMED_ENTITIES = {
    "nbsp": " ", "ensp": " ", "emsp": " ", "thinsp": " ", "hairsp": " ", "numsp": " ",
    "puncsp": " ", "zwsp": "", "zerowidthspace": "", "zwnj": "", "zwj": "", "shy": "",
    "middot": "\u00b7", "centerdot": "\u00b7", "bull": "\u00b7", "bullet": "\u00b7",
    "hyphen": "-", "dash": "-", "ndash": "-", "mdash": "-", "minus": "-", "sol": "/",
    "colon": ":", "comma": ",", "lowbar": "_", "period": ".", "plus": "+", "newline": "\n",
    "tab": "\t", "quot": '"', "apos": "'", "equals": "=", "lpar": "(", "rpar": ")",
    "lsqb": "[", "rsqb": "]", "num": "#",
}  # fmt: skip
_NORM_RE = re.compile(
    r"(?P<pct>(?:%(?:25){0,2}[0-9A-Fa-f]{2})++)"
    r"|\\{1,3}(?:u(?P<u>[0-9A-Fa-f]{4})|x(?P<x>[0-9A-Fa-f]{2})|(?P<esc>[nrt/]))"
    r"|&(?:#(?P<dec>[0-9]{1,7})|#[xX](?P<hex>[0-9A-Fa-f]{1,6})|(?P<name>[A-Za-z]{2,16}));"
    # invisible characters (a single look-alike character is folded by _fold_table)
    r"|(?P<char>[\u00ad\u0300-\u036f\u061c\u115f\u1160\u180b-\u180f\u200b-\u200f"
    r"\u202a-\u202e\u2060-\u206f\u20d0-\u20ff\u2800\u3164\ufe00-\ufe0f\ufe20-\ufe2f\ufeff"
    r"\uffa0\U000e0000-\U000e01ef])"
)


@lru_cache(maxsize=1)
def _fold_table() -> dict[int, str]:
    """``str.translate`` table of the characters that read as one ASCII digit or separator:
    every Unicode digit (fullwidth, Arabic-Indic, Devanagari, mathematical...), super- and
    subscripts, circled digits, Unicode spaces, dashes, bullets and fullwidth punctuation.
    Built on first use, from the regex engine's own idea of a digit and a space."""
    every = "".join(map(chr, range(0x80, 0x20000)))
    candidates = set(re.findall(r"\d|\s", every))
    for start, stop in ((0xB2, 0xBA), (0x2010, 0x2016), (0x2070, 0x208A), (0x2460, 0x249C),
                        (0x24EA, 0x2500), (0x2776, 0x2794), (0xFF01, 0xFF5F),
                        (0x1F100, 0x1F10B)):  # fmt: skip
        candidates.update(map(chr, range(start, stop)))
    candidates.update(
        _DOT_CHARS + "\u2212\u058a\u05be\u1400\u1806\u2e17\u2e1a\u2e3a\u2e3b"
        "\u2e40\u301c\u3030\u30a0\ufe31\ufe32\ufe58\ufe63"
    )  # dashes
    table: dict[int, str] = {}
    for ch in candidates:
        folded = _folded(ch)
        if folded is not None and len(folded) == 1 and folded != ch:
            table[ord(ch)] = folded
    return table


@lru_cache(maxsize=4096)
def _folded(ch: str) -> str | None:
    """What one character reads as in the view: an ASCII digit or separator, nothing (an
    invisible character), the character itself (ASCII), or None (no edit)."""
    if ch.isascii():
        return ch
    digit = unicodedata.digit(ch, None)
    if digit is not None:
        return str(digit)
    category = unicodedata.category(ch)
    if category in ("Cf", "Mn", "Me") or ch in _ZERO_WIDTH_CHARS:
        return ""
    if category == "Zs":
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    if category == "Pd" or ch == "\u2212":
        return "-"
    if ch in _DOT_CHARS:
        return "\u00b7"
    compat = unicodedata.normalize("NFKC", ch)
    return compat if len(compat) == 1 and compat.isascii() else None


def _percent_edits(run: str, start: int) -> Iterable[tuple[int, int, str]]:
    """Edits for a run of %XX escapes: ASCII digits, separators and punctuation, and UTF-8
    sequences of what :func:`_folded` knows (fullwidth digits, no-break or zero-width
    spaces). ``%25`` may be repeated (double encoding). Letters are not decoded."""
    escapes = [(m.start(), m.end(), int(m.group(1), 16))
               for m in re.finditer(r"%(?:25){0,2}([0-9A-Fa-f]{2})", run)]  # fmt: skip
    k = 0
    while k < len(escapes):
        s, e, byte = escapes[k]
        size = 1 if byte < 0x80 else 2 if 0xC2 <= byte < 0xE0 else 3 if byte < 0xF0 else 4
        if byte < 0x80:
            ch = chr(byte)
            if not ch.isalpha() and (ch.isprintable() or ch in "\t\r\n"):
                yield start + s, start + e, ch
            k += 1
            continue
        seq = escapes[k : k + size]
        try:
            ch = bytes(b for _, _, b in seq).decode("utf-8") if 0xC2 <= byte <= 0xF4 else ""
        except UnicodeDecodeError:
            ch = ""
        folded = _folded(ch) if len(ch) == 1 else None
        if folded is not None and len(seq) == size:
            yield start + s, start + seq[-1][1], folded
            k += size
        else:
            k += 1


def _edits(text: str) -> Iterable[tuple[int, int, str]]:
    for m in _NORM_RE.finditer(text):
        kind = m.lastgroup or ""
        if kind == "pct":
            yield from _percent_edits(m.group(), m.start())
            continue
        if kind == "esc":
            ch: str | None = {"n": "\n", "r": "\r", "t": "\t", "/": "/"}[m.group("esc")]
        elif kind == "name":
            ch = _NAMED_ENTITIES.get(m.group("name").lower())
        elif kind == "char":
            ch = _folded(m.group())
        else:
            code = int(m.group(kind), 10 if kind == "dec" else 16)
            ch = _folded(chr(code)) if code < 0xD800 or 0xDFFF < code <= 0x10FFFF else None
        if ch is not None and ch != m.group():
            yield m.start(), m.end(), ch


class _View:
    """``text`` as the card and CVV passes read it, and the way back to the original."""

    __slots__ = ("_ends", "_lens", "_starts", "_vstarts", "text")

    def __init__(self, original: str) -> None:
        self._vstarts: list[int] = []  # where each edit's replacement starts in the view
        self._starts: list[int] = []  # and the span it replaces in the original
        self._ends: list[int] = []
        self._lens: list[int] = []
        pieces: list[str] = []
        last = vpos = 0
        if not original.isascii():  # one character for one: the offsets do not move
            original = original.translate(_fold_table())
        for s, e, rep in _edits(original):
            pieces += (original[last:s], rep)
            vpos += s - last
            self._vstarts.append(vpos)
            self._starts.append(s)
            self._ends.append(e)
            self._lens.append(len(rep))
            vpos += len(rep)
            last = e
        self.text = "".join(pieces) + original[last:] if pieces else original

    def start(self, p: int) -> int:
        """Where the character at view position ``p`` starts in the original."""
        k = bisect_right(self._vstarts, p) - 1
        if k < 0:
            return p
        if p < self._vstarts[k] + self._lens[k]:
            return self._starts[k]
        return self._ends[k] + p - self._vstarts[k] - self._lens[k]

    def end(self, q: int) -> int:
        """Where the character before view position ``q`` ends in the original."""
        p = q - 1
        k = bisect_right(self._vstarts, p) - 1
        if k < 0:
            return q
        if p < self._vstarts[k] + self._lens[k]:
            return self._ends[k]
        return self._ends[k] + p - self._vstarts[k] - self._lens[k] + 1


def _replaced_in_view(text: str, view: _View, spans: Iterable[tuple[int, int, str]]) -> str:
    """``text`` with each (start, end, placeholder) span of its view replaced."""
    parts: list[str] = []
    last = 0
    for vs, ve, mark in spans:
        start, end = view.start(vs), view.end(ve)
        if start < last:
            continue
        parts += (text[last:start], mark)
        last = end
    return _joined(parts, text, last)


# ---------------------------------------------------------------------------------------
# Track data: magnetic stripe tracks 1 and 2, and the EMV tags that carry them

_TRACK1_RE = re.compile(
    r"(?<![0-9A-Za-z])(?P<code>%?[Bb])?(?P<pan>[0-9][0-9 ]{11,22}+)\^[^^\r\n]{1,30}+\^"
    r"(?:[0-9^][^?\s\"'<>&;,]{0,80}+)?\??"
)
_TRACK2_RE = re.compile(
    r"(?P<sentinel>;)?(?P<pan>[0-9]{12,19}+)(?:=(?P<data>[0-9=]{7,40}+)|[Dd][0-9]{7,40}+[Ff]?)"
    r"(?P<end>\?)?"
)
_EMV_PAN_RE = re.compile(r"5[Aa]0(?P<len>[6-9Aa])(?P<pan>[0-9]{12,20})[Ff]?")  # in hex dumps


def _card_suffix(digits: str) -> str | None:
    """The longest card number that ends ``digits`` (a PAN glued to hex or a tag)."""
    for n in range(min(19, len(digits)), 12, -1):
        if is_card_number(digits[-n:]):
            return digits[-n:]
    return None


def _track_spans(view: str) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    if "^" in view:
        for m in _TRACK1_RE.finditer(view):
            pan = m.group("pan").replace(" ", "")
            if 12 <= len(pan) <= 19 and (m.group("code") or is_card_number(pan)):
                spans.append((m.start(), m.end(), card_mark(pan[-4:])))
    if "=" in view or "D" in view or "d" in view:
        for m in _TRACK2_RE.finditer(view):
            pan = m.group("pan")
            card = _card_suffix(pan)
            framed = m.group("data") is not None and (m.group("sentinel") or m.group("end"))
            if card is not None or framed:
                start = m.start("pan") + len(pan) - len(card) if card and not framed else m.start()
                spans.append((start, m.end(), card_mark((card or pan)[-4:])))
    if "5A0" in view or "5a0" in view:
        for m in _EMV_PAN_RE.finditer(view):
            pan = m.group("pan")[: int(m.group("len"), 16) * 2]
            if is_card_number(pan):
                spans.append((m.start(), m.start("pan") + len(pan), card_mark(pan[-4:])))
    spans.sort()
    kept: list[tuple[int, int, str]] = []
    for span in spans:
        if not kept or span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


# ---------------------------------------------------------------------------------------
# Card numbers in runs of digit groups

# Between two groups of a card: spaces, tabs, line breaks, "+", dashes, "_", "/", ",",
# ":" and "·" (a view has already turned "%20", "\u2013" or "&nbsp;" into these), up to 8.
_VIEW_SEP_CHARS = " \t\r\n+\\-_/,:\u00b7\u00a0\u2007\u2009\u202f\u2010-\u2015"
# (the last few, and "%20", are for the text as it is: in a view they are " " and "-")
_STRONG_SEP_CHARS = frozenset(
    " \t\r\n+-\u00a0\u2007\u2009\u202f\u2010\u2011\u2012\u2013\u2014\u2015"
)
_HEX = "[0-9A-Fa-f]"
_DIGIT_RUN_RE = re.compile(
    # A UUID is never a card, even when one of its groups is all digits.
    rf"(?P<uuid>(?<![0-9A-Za-z]){_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-{_HEX}{{12}}(?![0-9A-Za-z]))"
    rf"|(?P<run>[0-9]++(?:(?:[{_VIEW_SEP_CHARS}]|%20){{1,8}}+[0-9]++)*+)"
)
_GROUP_RE = re.compile(r"[0-9]+")
_WS_RE = re.compile(r"\s+")


def _sep_kind(sep: str) -> str:
    """The kind of a separator: the empty string for spaces, line breaks, dashes and "+"
    (mixed freely, as cards are printed), else the punctuation in it without spaces, so
    that ", " and "," are one kind."""
    if set(sep) <= _STRONG_SEP_CHARS:
        return ""
    return _WS_RE.sub("", sep)


@dataclass
class _Run:
    """A run of digit groups: where each group starts, how long it is, all its digits, and
    the kind of separator after each group."""

    starts: list[int]
    lens: list[int]
    digits: str
    offsets: list[int]  # offsets[i]: index in ``digits`` of group i's first digit
    kinds: list[str]  # kinds[i]: the separator between group i and group i + 1
    segment: list[int]  # segment[i]: the last group of the same length as group i, in a row

    def position(self, d: int) -> int:
        """Index in the text of digit ``d`` of the run."""
        g = bisect_right(self.offsets, d) - 1
        return self.starts[g] + d - self.offsets[g]

    def group(self, g: int) -> str:
        return self.digits[self.offsets[g] : self.offsets[g + 1]]


def _make_run(run_start: int, run: str) -> _Run:
    run = run.replace("%20", "   ")  # a separator, not the digits 2 and 0
    matches = list(_GROUP_RE.finditer(run))
    lens = [m.end() - m.start() for m in matches]
    offsets = [0]
    for n in lens:
        offsets.append(offsets[-1] + n)
    kinds = [_sep_kind(run[a.end() : b.start()]) for a, b in pairwise(matches)]
    segment = list(range(len(lens)))
    for g in range(len(lens) - 2, -1, -1):
        if lens[g] == lens[g + 1]:
            segment[g] = segment[g + 1]
    return _Run([run_start + m.start() for m in matches], lens, "".join(m.group() for m in matches),
                offsets, kinds, segment)  # fmt: skip


def _card_spans(text: str, run_start: int, run: str) -> list[tuple[int, int, str]]:
    """(start, end, last four) of each card number in one run of digit groups.

    Windows are taken leftmost first, so one may take a stray number before a card and the
    card's first group with it (a Luhn match by chance). When 12+ digits are left after a
    window, a card starting inside the window and running into them is preferred; failing
    that they are taken with the window: a card is never left mostly visible.
    """
    r = _make_run(run_start, run)
    lens, offsets = r.lens, r.offsets
    if offsets[-1] < 13:
        return []
    if len(lens) == 1 and (
        lens[0] > 19
        or not is_card_number(r.digits)
        or _kept_as_id(text, r.starts[0], r.starts[0] + lens[0], r.digits)
    ):
        return []  # one unbroken group: a card as a whole or nothing
    hits: list[tuple[int, int, int, int]] = []  # (first group, last group, lo, hi) in r.digits
    i = 0
    while i < len(lens):
        hit = None
        if i > 0 or not _number_context_excludes(text, r.starts[0], offsets[-1]):
            hit = _card_from(r, i)
        if hit is None:
            i += 1
            continue
        hits.append((i, *hit))
        i = hit[0] + 1
    spans: list[tuple[int, int, str]] = []
    for k, (first, last, lo, hi) in enumerate(hits):
        following = hits[k + 1][2] if k + 1 < len(hits) else offsets[-1]
        following = min(following, _strong_end(r, last))
        last4 = r.digits[hi - 4 : hi]
        if following - hi >= 12:
            shifted = _card_inside(r, first, last, hi, following)
            if shifted is not None:
                lo, hi = shifted
                last4 = r.digits[hi - 4 : hi]
            else:
                hi = following
        spans.append((r.position(lo), r.position(hi - 1) + 1, last4))
    return spans


def _strong_end(r: _Run, g: int) -> int:
    """End (in ``r.digits``) of the groups joined to group ``g`` by spaces or dashes."""
    while g < len(r.kinds) and r.kinds[g] == "":
        g += 1
    return r.offsets[g + 1]


def _card_inside(r: _Run, first: int, last: int, hi: int, limit: int) -> tuple[int, int] | None:
    """A card that starts inside a window's groups and ends past it, before ``limit``."""
    for g in range(first + 1, last + 1):
        hit = _card_from(r, g)
        if hit is not None and hi < hit[2] <= limit:
            return hit[1], hit[2]
    return None


def _card_from(r: _Run, i: int) -> tuple[int, int, int] | None:
    """The longest card starting at group ``i``: (its last group, first digit, end digit).

    Groups other than the last have 3+ digits (cards are written 4-4-4-4, 4-6-5,
    4-4-4-4-3), unless the groups are all alike (``41 11 11 ...``, ``4 1 1 1 ...``) or the
    window is the whole run. The separators of a window are spaces, dashes and ``+`` mixed
    freely, and at most one kind of punctuation (``4111/1111/1111/1111``, not a date and a
    time side by side). A window of three or more groups may also start inside a longer
    first group or end inside a longer last group, so a grouped card glued to a stray
    digit is still found.
    """
    lens, offsets, kinds = r.lens, r.offsets, r.kinds
    ends: list[int] = []  # last groups of the windows starting at i
    weak = ""
    for j in range(i, len(lens)):
        if j > i:
            if lens[j - 1] < 3:
                break
            kind = kinds[j - 1]
            if kind and kind != weak:
                if weak:
                    break  # a second kind of punctuation
                weak = kind
        if j > i + 1 and offsets[j] - offsets[i + 1] > 15:
            break  # already more than 19 digits
        ends.append(j)
    windows = [(j, offsets[i], offsets[j + 1]) for j in reversed(ends)]  # longest first
    if lens[i] <= 2 or i == 0:
        windows += _short_group_windows(r, i)
        windows.sort(key=lambda w: w[1] - w[2])
    for j, lo, hi in windows:
        if 13 <= hi - lo <= 19 and is_card_number(r.digits[lo:hi]) and not _a_list(r, i, j):
            return j, lo, hi
    if lens[i] <= 4 and all(lens[j] < 5 for j in ends):
        return None
    for j in ends:  # then windows that leave out a digit glued to either end
        for cut_left, cut_right in _cuts(lens[i], lens[j]) if j - i >= 2 else ():
            lo, hi = offsets[i] + cut_left, offsets[j + 1] - cut_right
            if 13 <= hi - lo <= 19 and is_card_number(r.digits[lo:hi]):
                return j, lo, hi
    return None


def _seps_ok(r: _Run, i: int, j: int) -> bool:
    """Whether groups ``i``..``j`` are split by at most one kind of punctuation."""
    kinds = {k for k in r.kinds[i:j] if k}
    return len(kinds) <= 1


def _short_group_windows(r: _Run, i: int) -> list[tuple[int, int, int]]:
    """Windows with groups of one or two digits inside: a row of alike groups starting at
    ``i`` (with a shorter last group; two-digit rows may also be cut short or have a stray
    group before them), or the first groups of the run."""
    lens, offsets = r.lens, r.offsets
    out: list[tuple[int, int, int]] = []
    n = len(lens)
    if i == 0:  # the run's first groups, however split ("4111 1111 1111 11 11 12/29")
        if n > 1 and 13 <= offsets[2] <= 19:  # a number cut in two anywhere (a line wrap)
            out.append((1, 0, offsets[2]))
        for j in range(1, n):
            if offsets[j + 1] > 19 or lens[j] > 6 or not _seps_ok(r, 0, j):
                break
            if offsets[j + 1] >= 13 and max(lens[: j + 1]) <= 6:
                out.append((j, 0, offsets[j + 1]))
    size = lens[i]
    if size > 2:
        return out
    row_start = i == 0 or lens[i - 1] != size
    if not row_start and (size == 1 or (i > 1 and lens[i - 2] == size)):
        return out  # a row of one-digit groups is taken whole; two-digit rows may skip one
    last = r.segment[i]
    candidates = [last]
    if last + 1 < n and lens[last + 1] < size:
        candidates.append(last + 1)
    if size == 2:  # a two-digit row: its first 13-19 digits
        candidates += range(i + 6, min(last, i + 9))
    for j in candidates:
        if i < j < n and 13 <= offsets[j + 1] - offsets[i] <= 19 and _seps_ok(r, i, j):
            out.append((j, offsets[i], offsets[j + 1]))
    return out


_ROUND_RE = re.compile(r"[1-9]0+")


def _a_list(r: _Run, i: int, j: int) -> bool:
    """A list of round numbers (``sizes 4000 1000 2000 3000``), not a card."""
    return j - i >= 2 and all(_ROUND_RE.fullmatch(r.group(g)) for g in range(i, j + 1))


def _cuts(first_len: int, last_len: int) -> list[tuple[int, int]]:
    """Digits to leave out at each end of a window of 3+ groups.

    A card's first group has 4 digits and its last at most 5, so only a longer first group
    (cut to its last 4) or a last group of 5+ (cut to its first 4, 3 or 5) is cut.
    """
    lefts = [0] + ([first_len - 4] if first_len > 4 else [])
    rights = [0] + ([last_len - k for k in (4, 3, 5) if k < last_len] if last_len >= 5 else [])
    return [(a, b) for a in lefts for b in rights if a or b]


def _number_context_excludes(text: str, start: int, total_digits: int) -> bool:
    """Whether what precedes a run says it is not a card.

    The fraction of a decimal (``0.4242424242424242``, a ratio the bot itself prints) and
    a phone number with its ``+`` (E.164 has at most 15 digits) are not card numbers.
    """
    if start >= 2 and text[start - 1] == "." and text[start - 2].isdigit():
        return True
    if start >= 1 and text[start - 1] == "+":
        before = text[start - 2] if start >= 2 else " "
        return not before.isalnum() and total_digits <= 15
    return False


# ---------------------------------------------------------------------------------------
# Numbers that pass Luhn by chance: ids named as such, digits inside a hash

# Famous test cards are cards wherever they appear.
_TEST_PANS = frozenset({
    "4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556",
    "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222",
    "378282246310005", "371449635398431", "6011111111111117", "6011000990139424",
    "3566002020360505", "30569309025904", "38520000023237", "6200000000000005",
    "4000000000000002", "4222222222222", "5454545454545454",
})  # fmt: skip
_CARDISH_WORDS = frozenset({
    "card", "cards", "pan", "cc", "ccn", "account", "acct", "number", "num", "no", "nr",
    "iban", "credit", "debit", "primary", "cvv", "cvc", "track", "instrument", "holder",
})  # fmt: skip
_ID_LAST_WORDS = frozenset({
    "id", "ids", "uuid", "guid", "uid", "nonce", "seq", "sequence", "ts", "timestamp",
    "epoch", "hash", "digest", "checksum", "crc", "count", "size", "bytes", "offset", "port",
    "pid", "version", "ms", "us", "ns", "millis", "micros", "nanos",
})  # fmt: skip
_ID_ANY_WORDS = frozenset({"idempotency", "traceparent", "uuid", "guid"})
_ID_FIRST_WORDS = frozenset({"trace", "span", "request", "correlation"})  # trace_key, span.ref
# "<entity> ID 4532...": the words before an id in prose.
_ID_ENTITIES = frozenset({
    "transaction", "txn", "order", "request", "trace", "payment", "merchant", "customer",
    "correlation", "event", "message", "batch", "job", "session", "user", "account", "refund",
    "dispute", "payout", "invoice", "charge", "subscription",
})  # fmt: skip
_WORD_RE = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# The end of a value: an id is a whole value, not the start of something else.
_VALUE_END_RE = re.compile(r"\Z|[\s\"'&,;}\])<|\\]|\.(?![0-9])")
# A key (set off from what is before it) or a tag right before a number, or "Order ID ".
_KEY_BEFORE_RE = re.compile(
    r"(?:(?<![^\s\"'{},&?;(\[|/])(?P<key>[A-Za-z][A-Za-z0-9_.\-]{0,63})\\{0,3}[\"']?[ \t]{0,3}"
    r"(?:=>|:=|[:=])[ \t]{0,3}\\{0,3}[\"']?"
    r"|<(?P<tag>[A-Za-z][A-Za-z0-9_.\-:]{0,63})(?:\s[^<>]{0,200})?>"
    r"|(?<![^\s\"'(\[|,;])(?P<entity>[A-Za-z]{2,20})[ \t_\-]?(?:ID|Id|id)"
    r"(?:[ \t]{1,3}|[ \t]{0,3}[:#][ \t]{0,3}))\Z"
)


@lru_cache(maxsize=1024)
def id_key(name: str) -> bool:
    """Whether a key names an id, not a card: ``order_id``, ``traceId``, ``X-Request-Id``,
    ``idempotency_key``. A bare ``id`` says too little; a name with a card-like word in it
    (``card_id``, ``account_number``) never does."""
    words = [w.lower() for w in _WORD_RE.findall(name)]
    if not words or any(w in _CARDISH_WORDS for w in words) or key_kind(name) is not None:
        return False
    return len(words) > 1 and (  # "id" or "nonce" alone says too little
        words[-1] in _ID_LAST_WORDS
        or any(w in _ID_ANY_WORDS for w in words)
        or words[0] in _ID_FIRST_WORDS
    )


def _kept_as_id(text: str, start: int, end: int, digits: str) -> bool:
    """An unbroken number named as an id by its key, or a part of a long hex string."""
    if digits in _TEST_PANS:
        return False
    m = _KEY_BEFORE_RE.search(text, max(0, start - 120), start)
    if (
        m is not None
        and _VALUE_END_RE.match(text, end)
        and (
            id_key(m.group("key") or m.group("tag"))
            if m.group("entity") is None
            else m.group("entity").lower() in _ID_ENTITIES
        )
    ):
        return True  # "order_id=...", <TraceId>..., "Transaction ID 4532..."
    a, b = start, end
    while a > 0 and start - a < 128 and text[a - 1].isascii() and text[a - 1].isalnum():
        a -= 1
    while b < len(text) and b - end < 128 and text[b].isascii() and text[b].isalnum():
        b += 1
    token = text[a:b]
    if b - a >= 24 and (a < start or b > end) and all(c in string.hexdigits for c in token):
        return sum(c.isalpha() for c in token) >= 2
    return False


_DOTTED_CARD_RE = re.compile(
    r"(?<![0-9.])(?:[0-9]{4}(?:\.[0-9]{4}){2,3}\.[0-9]{1,7}|[0-9]{4}\.[0-9]{6}\.[0-9]{4,5})"
    r"(?![0-9]|\.[0-9])"
)


def _view_card_spans(view: str) -> list[tuple[int, int, str]]:
    """(start, end, placeholder) of the card numbers and track data in a view."""
    spans = _track_spans(view)
    if spans:  # track data is replaced whole; its digits are not read again
        chars = list(view)
        for s, e, _ in spans:
            chars[s:e] = "\0" * (e - s)
        view = "".join(chars)
    for m in _DIGIT_RUN_RE.finditer(view):
        run = m.group("run")
        if run is not None and len(run) >= 13:
            spans += ((s, e, card_mark(last4)) for s, e, last4 in _card_spans(view, m.start(), run))
    if "." in view:
        for m in _DOTTED_CARD_RE.finditer(view):
            digits = m.group().replace(".", "")
            if is_card_number(digits):
                spans.append((m.start(), m.end(), card_mark(digits[-4:])))
    spans.sort()
    return spans


# Invisible characters inside ASCII words ("sk_li\u200bve_...", "jane\u200b@x.com") only
# hide them: they are dropped before any pass. (Between emoji, a zero-width joiner stays.)
_HIDDEN_RE = re.compile(
    r"(?<=[\x21-\x7e])[\u00ad\u180e\u200b-\u200d\u2060-\u2064\ufeff]++(?=[\x21-\x7e])"
)


def _view_of(text: str, views: dict[str, _View]) -> _View:
    """The view of ``text``, built once per call of :meth:`Redactor.redact` (the passes and
    rounds often see the same text again)."""
    view = views.get(text)
    if view is None:
        view = views[text] = _View(text)
    return view


def _redact_cards(text: str, views: dict[str, _View]) -> str:
    """Cards in the text as it is and in its view. Both: a stray character that the view
    reads as a digit ("4111111111111111²") must not hide a card the text shows plainly.
    Overlapping finds are merged, so the longer reading wins ("6500000000001\\n000")."""
    spans = _view_card_spans(text)
    view = _view_of(text, views)
    if view.text != text:
        spans += ((view.start(s), view.end(e), mark) for s, e, mark in _view_card_spans(view.text))
        spans.sort()
    parts: list[str] = []
    last = 0
    for start, end, mark in spans:
        if start < last:  # overlaps the span before: merge them
            if end > last:
                parts[-1] = mark
                last = end
            continue
        parts += (text[last:start], mark)
        last = end
    return _joined(parts, text, last)


_MASKED_PAN_RE = re.compile(
    r"(?<![0-9A-Za-z])(?P<head>[0-9]{1,8}(?:[ \-][0-9]{1,6})?)[ \-]?"
    r"(?P<mask>[*xX•#]{2,12}(?:[ \-][*xX•#]{1,12}){0,3})[ \-]?"
    r"(?P<tail>[0-9]{4})(?![0-9A-Za-z])"
)


def _masked_pan(m: re.Match[str]) -> str:
    """A masked PAN that still shows its BIN (``411111******1111``) keeps only its last 4."""
    head = sum(c.isdigit() for c in m.group("head"))
    masked = sum(not c.isspace() and c != "-" for c in m.group("mask"))
    if masked >= 4 and 13 <= head + masked + 4 <= 19:
        return card_mark(m.group("tail"))
    return m.group()


# ---------------------------------------------------------------------------------------
# IBANs

# ISO 13616 registry (SWIFT) lengths, plus the countries that use IBANs informally.
_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AO": 25, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BF": 28,
    "BG": 22, "BH": 22, "BI": 27, "BJ": 28, "BR": 29, "BY": 28, "CF": 27, "CG": 27, "CH": 21,
    "CI": 28, "CM": 27, "CR": 22, "CV": 25, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18,
    "DO": 28, "DZ": 26, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GA": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GQ": 27, "GR": 27, "GT": 28, "GW": 25,
    "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IR": 26, "IS": 26, "IT": 27,
    "JO": 30, "KM": 27, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "LY": 25, "MA": 28, "MC": 27, "MD": 24, "ME": 22, "MG": 27, "MK": 19, "ML": 28,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "MZ": 25, "NE": 28, "NI": 28, "NL": 18, "NO": 15,
    "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33,
    "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SN": 28, "SO": 23,
    "ST": 25, "SV": 28, "TD": 27, "TG": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22,
    "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip
_IBAN_START_RE = re.compile(r"(?<![0-9A-Za-z])[A-Za-z]{2}[0-9]{2}(?=[ \u00a0\-]?[0-9A-Za-z])")
_IBAN_SEPARATORS = " \u00a0-"


def iban_ok(compact: str) -> bool:
    """ISO 13616 check: country, length and mod-97 of the rearranged number."""
    compact = compact.upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


def _iban_end(text: str, start: int) -> int | None:
    """End of the valid IBAN starting at ``start`` (grouped by 4 or compact), else None."""
    length = _IBAN_LENGTHS.get(text[start : start + 2].upper())
    if length is None:
        return None
    chars: list[str] = []
    pos, size = start, len(text)
    while len(chars) < length and pos < size:
        ch = text[pos]
        if ch.isascii() and ch.isalnum():
            chars.append(ch)
            pos += 1
        elif ch in _IBAN_SEPARATORS and len(chars) % 4 == 0 and pos + 1 < size:
            pos += 1
        else:
            break
    if len(chars) != length or (pos < size and text[pos].isascii() and text[pos].isalnum()):
        return None
    return pos if iban_ok("".join(chars)) else None


def _redact_ibans(text: str) -> str:
    parts: list[str] = []
    last = 0
    for m in _IBAN_START_RE.finditer(text):
        if m.start() < last:
            continue
        end = _iban_end(text, m.start())
        if end is not None:
            parts += (text[last : m.start()], IBAN_MARK)
            last = end
    return _joined(parts, text, last)


# ---------------------------------------------------------------------------------------
# Tokens and keys recognisable by their own shape

_B = r"(?<![A-Za-z0-9_\-])"  # a token starts at a word boundary (dashes belong to words)
_E = r"(?![A-Za-z0-9_])"


def _has_digit_or_mixed_case(token: str) -> bool:
    return any(c.isdigit() for c in token) or (token.lower() != token != token.upper())


@dataclass(frozen=True)
class _Format:
    """A token format: literal hints (the regex only runs when one occurs), regex, mark."""

    hints: tuple[str, ...]
    pattern: re.Pattern[str]
    mark: str
    check: Callable[[str], bool] | None = None


def _format(
    hints: str, pattern: str, mark: str, check: Callable[[str], bool] | None = None
) -> _Format:
    return _Format(tuple(hints.split()), re.compile(pattern), mark, check)


_TOKEN_FORMATS = (
    # JWT / JWS / JWE: base64url JSON header "eyJ" and 2-4 more dotted parts.
    _format("eyJ", rf"{_B}eyJ[A-Za-z0-9_\-]{{4,}}+\.[A-Za-z0-9_\-]{{2,}}+(?:\.[A-Za-z0-9_\-]*+)*+",
            TOKEN_MARK),
    # Stripe (and look-alikes): secret, restricted, publishable, ephemeral keys; webhook secrets.
    _format("_live_ _test_", rf"{_B}(?:sk|rk|pk|ek)_(?:live|test)_[A-Za-z0-9]++", SECRET_MARK),
    _format("sk_ rk_", rf"{_B}(?:sk|rk)_[A-Za-z0-9_\-]{{20,}}+", SECRET_MARK),
    _format("whsec_", rf"{_B}whsec_[A-Za-z0-9+/=]++", SECRET_MARK),
    _format("_secret_", rf"{_B}(?:pi|seti|src|cs)_[A-Za-z0-9]++_secret_[A-Za-z0-9]++", SECRET_MARK),
    # Slack bot, user, app, config and refresh tokens.
    _format("xox xapp-", rf"{_B}(?:xox[a-z](?:\.xox[a-z])?|xapp)-[A-Za-z0-9\-]++", TOKEN_MARK),
    # AWS access key ids.
    _format("AKIA ASIA ABIA ACCA AGPA AIDA AIPA ANPA ANVA APKA AROA ASCA",
            r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)"
            r"[A-Z0-9]{16}(?![A-Za-z0-9])", SECRET_MARK),
    # GitHub, GitLab, npm, PyPI, Shopify tokens.
    _format("ghp_ gho_ ghu_ ghs_ ghr_ github_pat_",
            rf"{_B}(?:gh[pousr]_[A-Za-z0-9]{{8,}}+|github_pat_[A-Za-z0-9_]{{8,}}+)", TOKEN_MARK),
    _format("glpat- npm_ pypi- shpat_ shpca_ shppa_ shpss_",
            rf"{_B}(?:glpat-[A-Za-z0-9_\-]{{20,}}+|npm_[A-Za-z0-9]{{36}}{_E}"
            rf"|pypi-[A-Za-z0-9_\-]{{50,}}+|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{{32}})", TOKEN_MARK),
    # Adyen API keys: "AQE", base64 parts and a tail of any punctuation (up to a closing tag).
    _format("AQE", r"(?<![A-Za-z0-9+/])AQE(?:[^\s\"'<]|<(?!/)){20,}+", SECRET_MARK),
    # Google, SendGrid, Twilio, Mailgun, Square, Razorpay keys.
    _format("AIza", rf"{_B}AIza[0-9A-Za-z_\-]{{35}}", SECRET_MARK),
    _format("SG.", rf"{_B}SG\.[A-Za-z0-9_\-]{{16,}}+\.[A-Za-z0-9_\-]{{16,}}+", SECRET_MARK),
    _format("SK key-", rf"{_B}(?:SK[0-9a-fA-F]{{32}}|key-[0-9a-f]{{32}}){_E}", SECRET_MARK),
    _format("sq0 EAAA",
            rf"{_B}(?:sq0(?:atp|csp|idp)-[A-Za-z0-9_\-]{{20,}}+|EAAA[A-Za-z0-9_\-]{{40,}}+)",
            SECRET_MARK),
    _format("rzp_", rf"{_B}rzp_(?:live|test)_[A-Za-z0-9]{{8,}}+", SECRET_MARK),
    # PayPal / Braintree access tokens.
    _format("access_token$ A21AA",
            rf"{_B}(?:access_token\$(?:production|sandbox)\$[A-Za-z0-9$]++|A21AA[A-Za-z0-9_\-]{{40,}}+)",
            TOKEN_MARK),
    # OpenAI-style "sk-..." and Mollie / Adyen client keys "live_..." / "test_...".
    _format("sk-", rf"{_B}sk-[A-Za-z0-9_\-]{{20,}}+", SECRET_MARK, _has_digit_or_mixed_case),
    _format("live_ test_", rf"{_B}(?:live|test)_[A-Za-z0-9]{{30,}}+", SECRET_MARK,
            _has_digit_or_mixed_case),
)  # fmt: skip

_WEBHOOK_URL_RE = re.compile(
    r"(?P<keep>https?://(?:hooks\.slack\.com/(?:services|workflows|triggers)"
    r"|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks)/)[A-Za-z0-9/_\-]++"
)
_URL_USERINFO_RE = re.compile(
    r"(?P<scheme>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{1,19}://)"
    r"(?P<userinfo>[^/\s\"'<>?#]{1,512}"
    # a password with "/" in it (not a port and a path: "host:8080/a@b")
    r"|[^/\s\"'<>?#@:]{0,256}:(?![0-9]{1,5}/)[^\s\"'<>@]{1,256})@(?=[^\s@])"
)


def _url_userinfo(m: re.Match[str]) -> str:
    """``scheme://user:password@`` loses both; a bare ``ssh://git@`` is a forge's login."""
    if m.group("userinfo") == "git":
        return m.group()
    return m.group("scheme") + SECRET_MARK + "@"


_PRIVATE_KEY_BEGIN_RE = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_END_RE = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_BODY_RE = re.compile(r"(?:[A-Za-z0-9+/=:,\-\s]|\\[nrt])*+")


def _redact_private_keys(text: str) -> str:
    """PEM private key blocks, through their END line (or, cut short, their base64 body)."""
    parts: list[str] = []
    last, no_end_after = 0, len(text) + 1
    for m in _PRIVATE_KEY_BEGIN_RE.finditer(text):
        if m.start() < last:
            continue
        end_m = None if m.end() >= no_end_after else _PRIVATE_KEY_END_RE.search(text, m.end())
        if end_m is None:
            no_end_after = min(no_end_after, m.end())
            end = _PRIVATE_KEY_BODY_RE.match(text, m.end())
            stop = end.end() if end else m.end()
        else:
            stop = end_m.end()
        parts += (text[last : m.start()], SECRET_MARK)
        last = stop
    return _joined(parts, text, last)


_DIGIT_TAIL_RE = re.compile(rf"(?:{_SEP}[0-9]++)++")


def _token_end(text: str, end: int) -> int:
    """Where a token ends: one ending in digits also takes the digit groups after it when
    they hold 8+ digits, so a token glued to a card ("whsec_4111 1111 1111 1111") never
    leaves most of the card behind."""
    if not text[end - 1].isdigit():
        return end
    tail = _DIGIT_TAIL_RE.match(text, end)
    if tail is None or sum(c.isdigit() for c in tail.group()) < 8:
        return end
    return tail.end()


def _redact_token_formats(text: str) -> str:
    for f in _TOKEN_FORMATS:
        if not any(h in text for h in f.hints):
            continue
        parts: list[str] = []
        last = 0
        for m in f.pattern.finditer(text):
            if m.start() < last or (f.check is not None and not f.check(m.group())):
                continue
            parts += (text[last : m.start()], f.mark)
            last = _token_end(text, m.end())
        text = _joined(parts, text, last)
    return text


# ---------------------------------------------------------------------------------------
# Values of keys that name a secret: key=value, "key": "value", Key: value, <key>value</key>

CARD, CVV, TOKEN, SECRET = "card", "cvv", "token", "secret"
KeyKind = str  # one of CARD, CVV, TOKEN, SECRET

_CARD_KEYS = frozenset(
    {"pan", "cardnumber", "cardno", "cardnum", "ccnumber", "ccnum", "creditcardnumber",
     "creditcard", "primaryaccountnumber", "pannumber", "cardpan", "fullcardnumber"}
)  # fmt: skip
_CVV_WORDS = ("cvv", "cvc", "cvn", "cv2")
_CVV_ENDINGS = ("cvd", "csc", "securitycode", "cardcode", "cardverificationvalue",
                "cardverificationcode", "cardverificationnumber")  # fmt: skip
_NOT_CVV_WORDS = ("check", "result", "response", "status", "match", "outcome", "verified")
_TOKEN_WORDS = ("token", "bearer", "cookie")
_TOKEN_KEYS = frozenset({
    "authorization", "proxyauthorization", "xauthorization", "authorizationheader", "auth",
    "xauth", "authkey", "authheader", "session", "sessionid", "sessionkey", "jwt", "oauth",
})  # fmt: skip
_SECRET_WORDS = (
    "password", "passwd", "passphrase", "secret", "apikey", "accesskey", "secretkey",
    "privatekey", "signingkey", "encryptionkey", "masterkey", "hmackey", "routingkey",
    "integrationkey", "servicekey", "licensekey", "credential", "signature",
)  # fmt: skip
_SECRET_KEYS = frozenset({
    "pwd", "pw", "pass", "pin", "cardpin", "pinblock", "sig", "dsn", "storepass", "keypass",
    "srcstorepass", "deststorepass", "srckeypass", "destkeypass", "passin", "passout",
    "dbpass", "adminpass", "rootpass", "userpass", "track1", "track2", "track3", "trackdata",
    "track1data", "track2data", "track2equivalentdata", "magstripe", "magstripedata",
})  # fmt: skip
_PERCENT_BRACKETS_RE = re.compile(r"%5[bd]", re.IGNORECASE)
_NON_ALNUM_RE = re.compile(r"[\W_]+")


@lru_cache(maxsize=4096)
def key_kind(key: str) -> KeyKind | None:
    """What a key's value holds, judged by its name: card, cvv, token, secret or None.

    Names are compared without case or separators, so ``card[cvc]``, ``cardCvc``,
    ``X-Api-Key``, ``STRIPE_SECRET_KEY`` and ``clientSecret`` are all recognised. The
    ``Authorization`` header is a token, but ``authorization_status`` or ``_code`` (a
    payment's authorisation, not a credential) are not.
    """
    name = _NON_ALNUM_RE.sub("", _PERCENT_BRACKETS_RE.sub("", key).lower())
    if name in _CARD_KEYS:
        return CARD
    if (any(w in name for w in _CVV_WORDS) or name.endswith(_CVV_ENDINGS)) and not any(
        w in name for w in _NOT_CVV_WORDS
    ):
        return CVV  # "card_cvv", "cvc2", "security_code"; not "cvc_check" or "cvv_result"
    if name in _TOKEN_KEYS or any(w in name for w in _TOKEN_WORDS):
        return TOKEN
    if name in _SECRET_KEYS or any(w in name for w in _SECRET_WORDS):
        return SECRET
    return None


_KEY_RE = re.compile(
    r"(?<![\w.\-\\\[\]])"
    r"(?P<kq>\\{0,3}[\"']|)"
    r"(?P<key>-{0,2}[A-Za-z][\w.\-\[\]%]{0,63})"
    r"(?P=kq)"
    r"[ \t]{0,3}(?:=>|:=|[:=])[ \t]{0,3}"
)
_XML_RE = re.compile(
    r"<(?P<tag>[A-Za-z][\w.\-]{0,40}(?::[A-Za-z][\w.\-]{0,40})?)(?:\s[^<>]{0,200})?>"
    r"(?P<value>[^<]{1,4096}+)</(?P=tag)>"
)
_OPEN_QUOTE_RE = re.compile(r"\\{0,3}[\"']")
_QUOTED_BODY_RE = {
    '"': re.compile(r'(?:[^"\\\r\n]|\\.)*+'),
    "'": re.compile(r"(?:[^'\\\r\n]|\\.)*+"),
    '\\"': re.compile(r'(?:[^\\\r\n]|\\\\|\\[^"\\\r\n])*+'),
    "\\'": re.compile(r"(?:[^\\\r\n]|\\\\|\\[^'\\\r\n])*+"),
}
_UNQUOTED_RE = re.compile(r"[^\s\"'&,;<>{}\[\]()|#\\]++")
_DIGIT_GROUPS_RE = re.compile(rf"[0-9]++(?:{_SEP}[0-9]++)*+")
_PAIR_MORE_RE = re.compile(r"[;,][ \t]?[^\s\"'&,;<>{}\[\]()|#\\=]*+=[^\s\"'&,;<>{}\[\]()|#\\]*+")
_NOT_IN_CONN_VALUE_RE = re.compile(r"[=\"'&\r\n<>{}\[\]]")
_ENV_REF_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
_SCHEME_RE = re.compile(
    r"(?i)(?:bearer|basic|digest|token|apikey|api-key|key|negotiate|ntlm|hmac|oauth|ssws"
    r"|sso-key|aws4-hmac-sha256|dpop|mac)[ \t]+(?=\S)"
)
_HARMLESS_VALUES = frozenset({"true", "false", "null", "none", "nil", "undefined", "n/a", "-"})


def _line_end(text: str, pos: int) -> int:
    ends = [i for i in (text.find("\n", pos), text.find("\r", pos)) if i >= 0]
    return min(ends, default=len(text))


def _quoted_span(text: str, pos: int) -> tuple[int, int] | None:
    """(start, end) of the body of a quoted value at ``pos``; unclosed: to the line end."""
    quote = _OPEN_QUOTE_RE.match(text, pos)
    if quote is None:
        return None
    start, opener = quote.end(), quote.group()
    body = _QUOTED_BODY_RE.get(opener)
    if body is not None:
        m = body.match(text, start)
        end = m.end() if m else start
        return start, end
    close = text.find(opener, start)  # deeper escaping: the next identical quote closes it
    return start, close if close >= 0 else _line_end(text, start)


def _unquoted_span(text: str, pos: int, kind: KeyKind) -> tuple[int, int] | None:
    m = (_DIGIT_GROUPS_RE if kind == CARD else _UNQUOTED_RE).match(text, pos)
    if m is None and kind == CARD:
        m = _UNQUOTED_RE.match(text, pos)
    if m is None:
        return None
    end = m.end()
    if kind in (TOKEN, SECRET) and "=" in m.group():
        # a list of pairs is one value: "Cookie: a=1; b=2", "Stripe-Signature: t=1,v1=ab"
        while (more := _PAIR_MORE_RE.match(text, end)) is not None:
            end = more.end()
    elif kind == SECRET and text.startswith(" ", end):
        # a connection string's value runs to its ";": "Password=p@ss w0rd;Server=x"
        semi = text.find(";", end, end + 64)
        if semi > 0 and _NOT_IN_CONN_VALUE_RE.search(text, end, semi) is None:
            end = semi
    return pos, end


def _masked_value(kind: KeyKind, value: str) -> str | None:
    """The placeholder for a key's value, or None when the value needs none."""
    v = value.strip()
    if (
        not v
        or _PLACEHOLDER_RE.fullmatch(v)
        or v.lower() in _HARMLESS_VALUES
        or set(v) <= {"*", "•"}
        or (len(v) >= 4 and set(v) <= {"x", "X"})
        or _ENV_REF_RE.fullmatch(v)
    ):
        return None
    if kind == CVV:
        return CVV_MARK if v.isascii() and v.isdigit() and 3 <= len(v) <= 4 else None
    if kind == CARD:
        digits = "".join(c for c in v if c.isdigit())
        if v.isascii() and set(v) <= set("0123456789 -") and 12 <= len(digits) <= 19:
            return card_mark(digits[-4:])
        return None
    mark = TOKEN_MARK if kind == TOKEN else SECRET_MARK
    scheme = _SCHEME_RE.match(v)
    if scheme is not None:
        rest = v[scheme.end() :].strip()
        return None if _PLACEHOLDER_RE.fullmatch(rest) else v[: scheme.end()] + mark
    return mark


def _value_edit(text: str, pos: int, kind: KeyKind) -> tuple[int, int, str] | None:
    """(start, end, replacement) for the value of a ``kind`` key that starts at ``pos``."""
    span = _quoted_span(text, pos)
    if span is None and kind == SECRET and text.startswith("{", pos):
        close = text.find("}", pos, pos + 256)  # ODBC: "PWD={p;ss w0rd};"
        span = (pos + 1, close) if close > pos + 1 else None
    if span is None:
        if pos >= len(text) or _ENV_REF_RE.match(text, pos):
            return None
        scheme = _SCHEME_RE.match(text, pos) if kind in (TOKEN, SECRET) else None
        span = _unquoted_span(text, scheme.end() if scheme else pos, kind)
        if span is None:
            return None
    mark = _masked_value(kind, text[span[0] : span[1]])
    return None if mark is None else (span[0], span[1], mark)


def _redact_pairs(text: str, kind_of: Callable[[str], KeyKind | None]) -> str:
    parts: list[str] = []
    last = 0
    for m in _KEY_RE.finditer(text):
        if m.start() < last:
            continue
        kind = kind_of(m.group("key"))
        if kind is None:
            continue
        edit = _value_edit(text, m.end(), kind)
        if edit is not None:
            parts += (text[last : edit[0]], edit[2])
            last = edit[1]
    return _joined(parts, text, last)


def _redact_xml(text: str, kind_of: Callable[[str], KeyKind | None]) -> str:
    def one(m: re.Match[str]) -> str:
        kind = kind_of(m.group("tag").rpartition(":")[2])
        mark = None if kind is None else _masked_value(kind, m.group("value"))
        if mark is None:
            return m.group()
        start, end = m.span("value")
        return m.group()[: start - m.start()] + mark + m.group()[end - m.start() :]

    return _XML_RE.sub(one, text)


# ---------------------------------------------------------------------------------------
# Free-standing authorization values, CVVs and e-mail addresses

_FREE_AUTH_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<scheme>bearer|basic)(?P<space>[ \t]+|%20|\+)"
    r"(?P<token>[A-Za-z0-9\-._~+/]++=*+)"
)
# Words after "Bearer" or "Basic" in prose, not credentials.
_AUTH_PROSE = frozenset({
    "token", "tokens", "auth", "authentication", "authorization", "authorisation", "scheme",
    "schemes", "header", "headers", "credential", "credentials", "realm", "missing",
    "invalid", "expired", "required", "is", "was", "are", "the", "a", "an", "of", "and",
    "or", "to", "for", "with", "from", "in", "on", "not", "no", "only", "type", "format",
    "value", "string", "prefix", "plan", "tier", "info", "access", "support", "usage",
    "check", "user", "users", "password", "login", "http", "mode", "flow", "grant", "jwt",
    "oauth", "oauth2", "api", "key", "keys", "account", "level", "error", "failed",
    "instead", "authenticator", "example", "here", "there", "it", "this", "that", "used",
    "sent", "set", "given", "provided", "rejected", "accepted", "ok", "yes",
})  # fmt: skip


def _free_auth(m: re.Match[str]) -> str:
    """``Bearer <token>`` anywhere (short tokens too); ``Basic <credentials>`` when they
    look encoded. Prose ("Basic auth failed", "Bearer token missing") is left."""
    token = m.group("token")
    word = token.lower().strip("-._~+/")
    if word in _AUTH_PROSE or token.lower() in _HARMLESS_VALUES or not word:
        return m.group()
    looks_random = any(c.isdigit() or c in "-._~+/=" for c in token) or (
        token.lower() != token != token.upper()
    )
    if m.group("scheme").lower() == "bearer" or (len(token) >= 4 and looks_random):
        return m.group("scheme") + m.group("space") + TOKEN_MARK
    return m.group()


# A CVV named in free text: "cvv 123", "CVV: 123", "security code is 123", "CVV(123)",
# "card verification value = 1234". It is read in the normalised view, so "cvv%3D123",
# "\u0031\u0032\u0033" and fullwidth digits are found too.
_FREE_CVV_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<key>cvv2?|cvc2?|cvn2?|cv2|csc|cvd|cav2"
    r"|(?:card[ _\-]?)?(?:security|verification)[ _\-]?(?:code|value|number)"
    r"|card[ _\-]?code|sec[ _\-]?code)(?![A-Za-z0-9])"
    r"(?P<sep>(?:[ \t\r\n:=#(\[{\"'\])}>*\-/|.,]|\\{1,3}[\"']"
    r"|(?:is|was|code|number|no|nr|num|value|of|the|entered|provided|used|given|reads?"
    r"|equals?)(?![A-Za-z])){0,12}+)"
    r"(?P<value>[0-9](?:[ \-.]?[0-9]){2,3})(?![0-9])"
)
_CVV_HINTS = ("cv", "csc", "cav2", "securi", "verif", "sec", "card code", "card_code",
              "cardcode", "card-code")  # fmt: skip


def _redact_free_cvvs(text: str, views: dict[str, _View]) -> str:
    view = _view_of(text, views)
    spans = [(*m.span("value"), CVV_MARK) for m in _FREE_CVV_RE.finditer(view.text)]
    return _replaced_in_view(text, view, spans) if spans else text


# The local part never starts right after a digit group ("4111 1111 1111 1111@x.com"): it
# would take the card's last group and leave the rest; the card pass takes it all.
_EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])(?<![0-9][ \t\u00a0])(?<![0-9]%20)"
    r"(?P<local>[\w.%+\-]+)(?:@|%40)(?:[\w\-]+\.)+(?P<tld>[^\W\d_]{2,})"
)
# "icon@2x.png" names a file; these endings are no top-level domains.
_FILE_ENDINGS = frozenset({
    "png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "css", "js", "mjs", "cjs", "json",
    "html", "htm", "txt", "pdf", "xml", "map", "woff", "woff2", "ttf", "yaml", "yml",
    "lock", "log", "tsx", "jsx", "scss", "avif", "mp4", "webm",
})  # fmt: skip
_REMOTE_PATH_RE = re.compile(r":[\w~.\-]++(?:/[\w~.\-]++)*+")


def _email(m: re.Match[str]) -> str:
    """An e-mail address, unless it is an ssh remote (``git@github.com:org/repo.git``),
    a forge's ``git@host`` or a file name (``icon@2x.png``)."""
    if m.group("local") == "git" or m.group("tld").lower() in _FILE_ENDINGS:
        return m.group()
    path = _REMOTE_PATH_RE.match(m.string, m.end())
    if path is not None and ("/" in path.group() or path.group().endswith(".git")):
        return m.group()
    return EMAIL_MARK


# ---------------------------------------------------------------------------------------
# Secrets on command lines, and AWS secret keys without their key name

# "--password hunter2", "-storepass x", "--client-secret 'a b'": a flag named like a
# secret and the word after it ("--password=x" is a key=value pair and found as such).
_CLI_FLAG_RE = re.compile(
    r"(?P<flag>-(?<![\w\-]-)-?[A-Za-z][\w\-]{1,40})[ \t]++"  # "-" first: a fast scan
    r"(?P<value>\"(?:[^\"\\\r\n]|\\.)*+\"|'[^'\r\n]*+'|[^\s\"'\-<>|&;`$(){}\[\]][^\s\"'<>|&;`]*+)"
)
# Flags named like a secret whose value is not one: a file, a name, a length, a mode.
_CLI_FLAG_NOT_SECRET = re.compile(
    r"(?i)[_\-](?:stdin|file|path|dir|env|prompt|length|policy|ttl|expiry|expires|rotation"
    r"|reset|hint|type|mode|name|id|version|algorithm|format|size|count|age|store|manager"
    r"|ref|arn|url|uri|header|scheme|source)$"
)
# Tools whose short flags take a password: mysql -pSECRET, sshpass -p x, redis-cli -a x,
# ldapsearch -w x, sqlcmd -P x, docker login -p x, smbclient -U user%pass.
_CLI_TOOL_RE = re.compile(
    r"(?i)(?<![\w\-])(?:(?P<mysql>mysql\w*|mariadb\w*)|(?P<sshpass>sshpass)"
    r"|(?P<redis>redis-cli)|(?P<ldap>ldap\w+)|(?P<sqlcmd>sqlcmd|bcp)|(?P<smb>smbclient|rpcclient|smbmap)"
    r"|(?P<login>(?:docker|podman|buildah|nerdctl|skopeo|helm[ \t]+registry|oras|oc|az|cf)"
    r"[ \t]+(?:login|auth)|mongo\w*))(?![\w\-])"
)
_CLI_VALUE = r"(?P<value>'[^'\r\n]*+'|\"[^\"\r\n]*+\"|[^\s'\"\-][^\s]*+)"
_CLI_TOOL_FLAGS = {
    "mysql": re.compile(rf"(?<![\w\-])-p{_CLI_VALUE}"),  # glued: "-p x" names a database
    "sshpass": re.compile(rf"(?<![\w\-])-p[ \t]*{_CLI_VALUE}"),
    "redis": re.compile(rf"(?<![\w\-])-a[ \t]*{_CLI_VALUE}"),
    "ldap": re.compile(rf"(?<![\w\-])-w[ \t]*{_CLI_VALUE}"),
    "sqlcmd": re.compile(rf"(?<![\w\-])-P[ \t]*{_CLI_VALUE}"),
    "smb": re.compile(r"(?<![\w\-])-U[ \t]*[^\s%]{1,128}%(?P<value>[^\s]+)"),
    "login": re.compile(rf"(?<![\w\-])-p[ \t]*{_CLI_VALUE}"),
}
# "curl -u user:pass", "--user user:pass", "--proxy-user u:p" (uid:gid pairs are kept).
_CLI_USER_RE = re.compile(
    r"-(?<![\w\-]-)(?:u|-user|-proxy-user)(?:[ \t]*+|=)(?P<q>['\"]?)(?P<user>[^\s:'\"@]{1,128}):"
    r"(?P<value>[^\s'\"]{1,256})(?P=q)"
)
_OPENSSL_PASS_RE = re.compile(r"-(?<![\w\-]-)pass(?:in|out)?[ \t]++pass:(?P<value>[^\s'\"]++)")


def _inner(m: re.Match[str]) -> tuple[int, int]:
    """The span of a value without its quotes."""
    start, end = m.span("value")
    if end - start >= 2 and m.string[start] in "'\"" and m.string[end - 1] == m.string[start]:
        return start + 1, end - 1
    return start, end


def _redact_command_lines(text: str, kind_of: Callable[[str], KeyKind | None]) -> str:
    edits: list[tuple[int, int, str]] = []
    if "-" in text:
        for m in _CLI_FLAG_RE.finditer(text):
            flag = m.group("flag")
            kind = kind_of(flag.lstrip("-"))
            if kind is None or _CLI_FLAG_NOT_SECRET.search(flag):
                continue
            start, end = _inner(m)
            mark = _masked_value(kind, text[start:end])
            if mark is not None:
                edits.append((start, end, mark))
        for m in _CLI_USER_RE.finditer(text):
            if not (m.group("user").isdigit() and m.group("value").isdigit()):
                edits.append((*_inner(m), SECRET_MARK))
        if "pass:" in text:
            edits += ((*m.span("value"), SECRET_MARK) for m in _OPENSSL_PASS_RE.finditer(text))
        done: dict[str, int] = {}  # tool -> end of the line already read for its flags
        for tool in _CLI_TOOL_RE.finditer(text):
            name = tool.lastgroup or ""
            if tool.end() < done.get(name, 0):
                continue
            done[name] = line_end = _line_end(text, tool.end())
            for m in _CLI_TOOL_FLAGS[name].finditer(text, tool.end(), line_end):
                start, end = _inner(m)
                if not _PLACEHOLDER_RE.fullmatch(text[start:end]):
                    edits.append((start, end, SECRET_MARK))
    parts: list[str] = []
    last = 0
    for start, end, mark in sorted(edits):
        if start >= last and not _PLACEHOLDER_RE.fullmatch(text[start:end]):
            parts += (text[last:start], mark)
            last = end
    return _joined(parts, text, last)


# An AWS secret access key: 40 characters of base64, random (mixed case, many changes of
# case), on its own. Hex digests, paths and identifiers are not random enough.
_AWS_SECRET_RE = re.compile(r"(?<![A-Za-z0-9/+=_\-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=_\-])")


def _aws_secret(m: re.Match[str]) -> str:
    s = m.group()
    if s[0] == "/" or s[-1] == "/" or "//" in s or all(c in string.hexdigits for c in s):
        return s
    if not (any(c.isupper() for c in s) and any(c.islower() for c in s)):
        return s
    if not any(c.isdigit() or c in "/+" for c in s):
        return s
    letters = [c.isupper() for c in s if c.isalpha()]
    changes = sum(a != b for a, b in pairwise(letters))
    return SECRET_MARK if changes >= 8 and len(set(s)) >= 20 else s


# ---------------------------------------------------------------------------------------
# The redactor


def _joined(parts: list[str], text: str, last: int) -> str:
    if not parts:
        return text
    parts.append(text[last:])
    return "".join(parts)


class Redactor:
    """Redacts text and structures; extra patterns and secret key names are configurable.

    ``extra_patterns`` are (regex, placeholder) pairs applied before the built-in passes
    (the placeholder must not match its own regex, or redaction stops being idempotent);
    ``secret_keys`` are more key names whose values are replaced by ``[SECRET]``.
    """

    def __init__(
        self,
        extra_patterns: Iterable[tuple[str | re.Pattern[str], str]] = (),
        secret_keys: Iterable[str] = (),
    ) -> None:
        self._extra = tuple(
            (re.compile(p) if isinstance(p, str) else p, mark) for p, mark in extra_patterns
        )
        self._secret_keys = frozenset(_NON_ALNUM_RE.sub("", k.lower()) for k in secret_keys)

    def key_kind(self, key: str) -> KeyKind | None:
        """What a key's value holds (see :func:`key_kind`), with the configured extra names."""
        if self._secret_keys and _NON_ALNUM_RE.sub("", key.lower()) in self._secret_keys:
            return SECRET
        return key_kind(key)

    def redact(self, text: str) -> str:
        """``text`` with card data, credentials and personal data replaced by placeholders."""
        if not isinstance(text, str):  # defensive: callers are typed, data is not
            text = str(text)
        views: dict[str, _View] = {}
        try:
            for _ in range(_MAX_ROUNDS):
                done = self._once(text, views)
                if done == text:
                    return done
                text = done
            return text
        except Exception:  # never let unredacted text through because of a bug here
            return FAILED_MARK

    def _once(self, text: str, views: dict[str, _View]) -> str:
        for pattern, mark in self._extra:
            text = pattern.sub(mark, text)
        # Order matters. Token formats go first: a Slack token's digit groups are not a
        # card. Cards go before the passes that take one word after a key ("cvv=", "Bearer
        # ", "password: "): such a word must never split a card and leave most of it.
        # Each pass is skipped when a literal it needs is absent (a cheap scan).
        if not text.isascii():
            text = _HIDDEN_RE.sub("", text)
        if "PRIVATE KEY" in text:
            text = _redact_private_keys(text)
        if "://" in text:
            text = _URL_USERINFO_RE.sub(_url_userinfo, text)
            text = _WEBHOOK_URL_RE.sub(lambda m: m.group("keep") + SECRET_MARK, text)
        text = _redact_token_formats(text)
        if "@" in text or "%40" in text:
            text = _EMAIL_RE.sub(_email, text)
        text = _redact_ibans(text)
        text = _redact_cards(text, views)
        text = _MASKED_PAN_RE.sub(_masked_pan, text)
        if "</" in text:
            text = _redact_xml(text, self.key_kind)
        text = _redact_pairs(text, self.key_kind)
        text = _redact_command_lines(text, self.key_kind)
        text = _AWS_SECRET_RE.sub(_aws_secret, text)
        lower = text.lower()
        if "bearer" in lower or "basic" in lower:
            text = _FREE_AUTH_RE.sub(_free_auth, text)
        if any(w in lower for w in _CVV_HINTS):
            text = _redact_free_cvvs(text, views)
        return text

    def redact_value(self, value: object) -> object:
        """A copy of ``value`` with every string redacted, recursively.

        Dicts, lists, tuples, sets and bytes keep their shape; string keys are redacted
        too. The value of a key that names a secret (``password``, ``cvv``, ``pan``,
        ``token``, ``api_key``, ``authorization``...) is replaced whole, whatever its type:
        ``[SECRET]``, ``[TOKEN]``, ``[CVV]`` or ``[CARD ****1234]``. Integers that are card
        numbers become their placeholder; other numbers, booleans and None are kept.
        """
        return self._value(value, 0, set())

    def _value(self, value: object, depth: int, active: set[int]) -> object:
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, bool) or value is None or isinstance(value, float):
            return value
        if isinstance(value, int):
            digits = str(value)
            return card_mark(digits[-4:]) if is_card_number(digits) else value
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("utf-8", "surrogateescape")
            return type(value)(self.redact(text).encode("utf-8", "surrogateescape"))
        if not isinstance(value, Mapping | list | tuple | set | frozenset):
            return value
        if depth >= _MAX_DEPTH or id(value) in active:
            return self.redact(repr(value)) if depth >= _MAX_DEPTH else "[...]"
        active.add(id(value))
        try:
            return self._container(value, depth + 1, active)
        finally:
            active.discard(id(value))

    def _container(self, value: object, depth: int, active: set[int]) -> object:
        if isinstance(value, Mapping):
            out: dict[object, object] = {}
            for k, v in value.items():
                key = self.redact(k) if isinstance(k, str) else k
                # judged on the redacted key, so a second pass judges it alike (idempotence)
                kind = self.key_kind(key) if isinstance(key, str) else None
                if kind is None and isinstance(key, str) and id_key(key) and _an_id(v):
                    item = v  # "order_id": 4532015112830366 passes Luhn by chance
                else:
                    item = self._value(v, depth, active) if kind is None else _keyed(kind, v)
                while key in out:  # two keys redacted alike must not overwrite each other
                    key = f"{key} (2)" if isinstance(key, str) else repr(key)
                out[key] = item
            return out
        items = [self._value(v, depth, active) for v in value]  # type: ignore[attr-defined]
        if isinstance(value, list):
            return items
        if isinstance(value, tuple):
            make = getattr(type(value), "_make", None)  # a namedtuple keeps its type
            return make(items) if make is not None else tuple(items)
        try:
            return type(value)(items)  # type: ignore[call-arg]
        except TypeError:  # unhashable redacted items: a set of strings never is
            return items


def _an_id(value: object) -> bool:
    """An unbroken number (int or digits) that is no famous test card."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return False
    digits = str(value)
    return digits.isascii() and digits.isdigit() and digits not in _TEST_PANS


def _keyed(kind: KeyKind, value: object) -> object:
    """The whole value of a key that names a secret, replaced by its placeholder."""
    if value is None or isinstance(value, bool) or value == "":
        return value
    if kind == CVV:
        return CVV_MARK
    if kind == CARD:
        text = value if isinstance(value, str) else str(value)
        digits = "".join(c for c in text if c.isascii() and c.isdigit())
        return card_mark(digits[-4:]) if len(digits) >= 4 else "[CARD]"
    return TOKEN_MARK if kind == TOKEN else SECRET_MARK


DEFAULT_REDACTOR = Redactor()


def redact(text: str) -> str:
    """``text`` with card numbers, CVVs, e-mails, tokens, secrets and IBANs replaced.

    Idempotent, never raises, linear in the length of the text.
    """
    return DEFAULT_REDACTOR.redact(text)


def redact_value(value: object) -> object:
    """A copy of ``value`` with every string in it redacted (see :meth:`Redactor.redact_value`)."""
    return DEFAULT_REDACTOR.redact_value(value)

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
  (JWTs, Stripe, Slack, AWS, GitHub, Adyen keys...), e-mails, IBANs, card numbers, then the
  values of keys named like secrets (``password=``, ``"cvc":``, ``Authorization:``). A
  token's digits are gone before the card pass could mistake them; a card is gone before a
  pass that takes one word after a key could split it. The whole sequence is repeated until
  nothing changes and no placeholder is ever matched again, so redaction is idempotent.
* Every pattern is linear: no nested unbounded quantifiers, possessive loops where a scan
  could otherwise back off, candidates found by regex and judged in Python (Luhn and the
  issuer ranges for cards, ISO 13616 mod-97 for IBANs), so a megabyte of hostile input
  costs about a second, never minutes.
* Cards are looked for in runs of digit groups split by a space, a dash, ``+`` or ``%20``
  (``4111 1111 1111 1111``, Amex ``3782 822463 10005``, form-encoded ``4111+1111+...``),
  glued to letters or punctuation too, and in dotted card groupings. A window must hold
  13-19 digits, pass Luhn *and* start with a real issuer prefix at a length that issuer
  uses: that keeps epoch milliseconds (13 digits starting with 1), order numbers and trace
  ids intact. The fraction of a decimal and a ``+``-prefixed phone number are not cards.
  A key named like a card number (``pan``, ``card_number``) is redacted even when its
  digits fail Luhn.
* A failure inside the redactor never lets text through: it returns a placeholder instead.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

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


_SEP = r"(?: {2}|[ \t+\-\u00a0\u2007\u2009\u202f\u2010-\u2015]|%20)"
_HEX = "[0-9A-Fa-f]"
_DIGIT_RUN_RE = re.compile(
    # A UUID is never a card, even when one of its groups is all digits.
    rf"(?P<uuid>(?<![0-9A-Za-z]){_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-{_HEX}{{12}}(?![0-9A-Za-z]))"
    rf"|(?P<run>[0-9]++(?:{_SEP}[0-9]++)*+)"
)
_GROUP_RE = re.compile(r"[0-9]+")


@dataclass
class _Run:
    """A run of digit groups: where each group starts, how long it is, all its digits."""

    starts: list[int]
    lens: list[int]
    digits: str
    offsets: list[int]  # offsets[i]: index in ``digits`` of group i's first digit

    def position(self, d: int) -> int:
        """Index in the text of digit ``d`` of the run."""
        g = bisect_right(self.offsets, d) - 1
        return self.starts[g] + d - self.offsets[g]


def _card_spans(text: str, run_start: int, run: str) -> list[tuple[int, int, str]]:
    """(start, end, last four) of each card number in one run of digit groups.

    Windows are taken leftmost first, so one may take a stray number before a card and the
    card's first group with it (a Luhn match by chance). When 12+ digits are left after a
    window, a card starting inside the window and running into them is preferred; failing
    that they are taken with the window: a card is never left mostly visible.
    """
    matches = list(_GROUP_RE.finditer(run.replace("%20", "   ")))  # "%20" is a separator
    lens = [m.end() - m.start() for m in matches]
    if not _may_hold_card(lens):
        return []
    offsets = [0]
    for n in lens:
        offsets.append(offsets[-1] + n)
    r = _Run([run_start + m.start() for m in matches], lens, "".join(m.group() for m in matches),
             offsets)  # fmt: skip
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


def _card_inside(r: _Run, first: int, last: int, hi: int, limit: int) -> tuple[int, int] | None:
    """A card that starts inside a window's groups and ends past it, before ``limit``."""
    for g in range(first + 1, last + 1):
        hit = _card_from(r, g)
        if hit is not None and hi < hit[2] <= limit:
            return hit[1], hit[2]
    return None


def _may_hold_card(lens: list[int]) -> bool:
    """Whether some window of groups reaches 13 digits with no short group inside it."""
    total = 0
    for n in lens:
        total += n
        if total >= 13:
            return True
        if n < 3:  # a short group may only end a window
            total = 0
    return False


def _card_from(r: _Run, i: int) -> tuple[int, int, int] | None:
    """The longest card starting at group ``i``: (its last group, first digit, end digit).

    Groups other than the last must have 3+ digits (cards are written 4-4-4-4, 4-6-5,
    4-4-4-4-3, never 2-2-2-...). A window of three or more groups may also start inside a
    longer first group or end inside a longer last group, so a grouped card glued to a
    stray digit is still found.
    """
    lens, offsets = r.lens, r.offsets
    ends: list[int] = []  # last groups of the windows starting at i
    for j in range(i, len(lens)):
        if (j > i and lens[j - 1] < 3) or (j > i + 1 and offsets[j] - offsets[i + 1] > 15):
            break  # a short group inside, or already more than 19 digits
        ends.append(j)
    ends.reverse()  # longest first
    for j in ends:
        lo, hi = offsets[i], offsets[j + 1]
        if 13 <= hi - lo <= 19 and is_card_number(r.digits[lo:hi]):
            return j, lo, hi
    if lens[i] <= 4 and all(lens[j] < 5 for j in ends):
        return None
    for j in ends:  # then windows that leave out a digit glued to either end
        for cut_left, cut_right in _cuts(lens[i], lens[j]) if j - i >= 2 else ():
            lo, hi = offsets[i] + cut_left, offsets[j + 1] - cut_right
            if 13 <= hi - lo <= 19 and is_card_number(r.digits[lo:hi]):
                return j, lo, hi
    return None


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


_DOTTED_CARD_RE = re.compile(
    r"(?<![0-9.])(?:[0-9]{4}(?:\.[0-9]{4}){2,3}\.[0-9]{1,7}|[0-9]{4}\.[0-9]{6}\.[0-9]{4,5})"
    r"(?![0-9]|\.[0-9])"
)


def _dotted_card(m: re.Match[str]) -> str:
    """``4111.1111.1111.1111``: dots only in a card's own grouping (never a float or an IP)."""
    digits = m.group().replace(".", "")
    return card_mark(digits[-4:]) if is_card_number(digits) else m.group()


def _redact_cards(text: str) -> str:
    parts: list[str] = []
    last = 0
    for m in _DIGIT_RUN_RE.finditer(text):
        run = m.group("run")
        if run is None or len(run) < 13:
            continue
        for start, end, last4 in _card_spans(text, m.start(), run):
            parts += (text[last:start], card_mark(last4))
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
    r"[^/\s\"'<>?#]{1,512}@(?=[^\s@])"
)
_PRIVATE_KEY_BEGIN_RE = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_END_RE = re.compile(r"-----END [A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PRIVATE_KEY_BODY_RE = re.compile(r"(?:[A-Za-z0-9+/=:\-\s]|\\[nrt])*+")


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
_SECRET_KEYS = frozenset({"pwd", "pass", "pin", "cardpin", "pinblock", "sig", "dsn"})
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
    r"(?i)(?<![A-Za-z0-9])(?P<scheme>bearer|basic)(?P<space>[ \t]+)"
    r"(?P<token>[A-Za-z0-9\-._~+/]++=*+)"
)
_FREE_CVV_RE = re.compile(
    r"(?i)(?<![A-Za-z0-9])(?P<key>cvv2?|cvc2?|cvn2?|csc|cv2|security[ _\-]?code)"
    r"(?P<sep>[ \t]{1,3}(?:(?:is|code|number|no\.?|#)[ \t]{0,3})?|[ \t]{0,3}#[ \t]{0,3})"
    r"(?P<value>[0-9]{3,4})(?![0-9])"
)
# The local part never starts right after a digit group ("4111 1111 1111 1111@x.com"): it
# would take the card's last group and leave the rest; the card pass takes it all.
_EMAIL_RE = re.compile(
    r"(?<![\w.%+\-])(?<![0-9][ \t\u00a0])(?<![0-9]%20)"
    r"[\w.%+\-]+(?:@|%40)(?:[\w\-]+\.)+[^\W\d_]{2,}"
)


def _free_auth(m: re.Match[str]) -> str:
    """``Bearer <token>`` anywhere; prose ("Basic auth failed", "Bearer token") is left."""
    token = m.group("token")
    looks_random = any(c.isdigit() or c in "-._~+/=" for c in token) or (
        token.lower() != token != token.upper()
    )
    if len(token) >= 8 and looks_random:
        return m.group("scheme") + m.group("space") + TOKEN_MARK
    return m.group()


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
        try:
            for _ in range(_MAX_ROUNDS):
                done = self._once(text)
                if done == text:
                    return done
                text = done
            return text
        except Exception:  # never let unredacted text through because of a bug here
            return FAILED_MARK

    def _once(self, text: str) -> str:
        for pattern, mark in self._extra:
            text = pattern.sub(mark, text)
        # Order matters. Token formats go first: a Slack token's digit groups are not a
        # card. Cards go before the passes that take one word after a key ("cvv=", "Bearer
        # ", "password: "): such a word must never split a card and leave most of it.
        # Each pass is skipped when a literal it needs is absent (a cheap scan).
        if "PRIVATE KEY" in text:
            text = _redact_private_keys(text)
        if "://" in text:
            text = _URL_USERINFO_RE.sub(lambda m: m.group("scheme") + SECRET_MARK + "@", text)
            text = _WEBHOOK_URL_RE.sub(lambda m: m.group("keep") + SECRET_MARK, text)
        text = _redact_token_formats(text)
        if "@" in text or "%40" in text:
            text = _EMAIL_RE.sub(EMAIL_MARK, text)
        text = _redact_ibans(text)
        text = _redact_cards(text)
        text = _DOTTED_CARD_RE.sub(_dotted_card, text)
        text = _MASKED_PAN_RE.sub(_masked_pan, text)
        if "</" in text:
            text = _redact_xml(text, self.key_kind)
        text = _redact_pairs(text, self.key_kind)
        lower = text.lower()
        if "bearer" in lower or "basic" in lower:
            text = _FREE_AUTH_RE.sub(_free_auth, text)
        if any(w in lower for w in ("cv", "csc", "security")):
            text = _FREE_CVV_RE.sub(lambda m: m.group("key") + m.group("sep") + CVV_MARK, text)
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

"""Property: a random card number, written any way the redactor knows, inside random text,
never survives redaction; the look-alikes (ids, sizes, dates, remotes) always do.

The leak check does not trust the redactor: it decodes the output on its own (URL, JSON and
HTML escapes, any Unicode digit) and looks for digits left outside the placeholders.
"""

from __future__ import annotations

import html
import random
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from paytriage.core.redact import is_card_number, redact, redact_value

# (prefix, length): each network at each length it issues.
ISSUERS = [
    ("4", 16), ("4", 13), ("4", 19), ("51", 16), ("53", 16), ("55", 16), ("2221", 16),
    ("2720", 16), ("34", 15), ("37", 15), ("6011", 16), ("6011", 19), ("65", 16), ("644", 16),
    ("3528", 16), ("3589", 19), ("36", 14), ("300", 14), ("38", 16), ("62", 16), ("62", 19),
    ("6759", 16), ("50", 18), ("2200", 16), ("8150", 16), ("9792", 16), ("1", 15),
]  # fmt: skip


def luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str(-total % 10)


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    prefix, length = draw(st.sampled_from(ISSUERS))
    n = length - len(prefix) - 1
    body = str(draw(st.integers(0, 10**n - 1))).zfill(n)
    return luhn_complete(prefix + body)


# How a digit may be written.
DIGIT_FORMS: list[Callable[[str], str]] = [
    lambda d: d,
    lambda d: chr(0xFF10 + int(d)),  # fullwidth
    lambda d: chr(0x0660 + int(d)),  # Arabic-Indic
    lambda d: chr(0x0966 + int(d)),  # Devanagari
    lambda d: chr(0x1D7CE + int(d)),  # mathematical bold
    lambda d: f"%3{d}",  # URL-encoded
    lambda d: f"\\u003{d}",  # JSON escape
    lambda d: f"&#{48 + int(d)};",  # HTML entity
    lambda d: f"&#x3{d};",
]
# Between groups: spaces, dashes and "+" mix freely; one kind of punctuation may join them.
STRONG_SEPS = [" ", "-", "+", "  ", " - ", "--", "\t", "\n", "\r\n", "\u00a0", "\u2009",
               "\u2013", "\u2014", "\u3000", "%20", "%2D", "%C2%A0", "\\u0020", "\\n", "&nbsp;",
               "&#32;", "\\u2013"]  # fmt: skip
WEAK_SEPS = ["/", "_", ",", ":", "\u00b7", "\u2022", ", ", " / ", "%2F", "%2C", "%3A", "%5F",
             "\uff0f", "\uff0c", "\\u002f", "&middot;"]  # fmt: skip
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "%E2%80%8B",
              "\\u200b", "&#8203;"]  # fmt: skip


def split(digits: str, sizes: list[int]) -> list[str]:
    out, i = [], 0
    for n in sizes:
        if i < len(digits):
            out.append(digits[i : i + n])
            i += n
    if i < len(digits):
        out.append(digits[i:])
    return out


LAYOUTS = st.sampled_from(["plain", "fours", "printed", "uniform", "wrapped", "odd"])
SEEDS = st.integers(0, 2**32)
WEAK = st.sampled_from([None, *WEAK_SEPS])
FORMS = st.sampled_from(DIGIT_FORMS)
ZERO_WIDTHS = st.sampled_from([None, None, *ZERO_WIDTH])
LINE_BREAKS = ["\n", "\r\n", "\\n", "\n    ", " \n", "\\r\\n"]


def written(draw: st.DrawFn, card: str) -> str:
    """``card`` as a log might hold it: grouped, separated, encoded, split over lines.

    The few choices that shape it are drawn; the many small ones (each digit's form, each
    separator when they are mixed) come from a seeded ``Random``, which keeps an example
    cheap to generate: 10,000 of them run in seconds.
    """
    layout = draw(LAYOUTS)
    rnd = random.Random(draw(SEEDS))
    n = len(card)
    if layout == "plain":
        groups = [card]
    elif layout == "fours":
        groups = split(card, [4] * 5)
    elif layout == "printed":
        groups = split(card, {15: [4, 6, 5], 14: [4, 6, 4], 19: [4, 4, 4, 4, 3]}.get(n, [4] * 4))
    elif layout == "uniform":  # 4 1 1 1 ..., 41 11 11 ..., 411 111 ...
        groups = split(card, [rnd.randint(1, 6)] * n)
    elif layout == "wrapped":  # a hard wrap anywhere
        cut = rnd.randint(1, n - 1)
        groups = [card[:cut], card[cut:]]
    else:  # the card's first groups as they come: "4111 1111 1111 11 11"
        groups = split(card, [4, 4, 4, 2, 2, 2, 1])
    weak = draw(WEAK)
    seps = LINE_BREAKS if layout == "wrapped" else STRONG_SEPS + ([weak] if weak else [])
    mixed = rnd.random() < 0.5
    form = draw(FORMS)
    sep = rnd.choice(seps)
    zero_width = draw(ZERO_WIDTHS)
    out: list[str] = []
    for g, group in enumerate(groups):
        if g:
            out.append(rnd.choice(seps) if mixed else sep)
        for k, digit in enumerate(group):
            if k and zero_width and rnd.random() < 0.5:
                out.append(zero_width)
            out.append((rnd.choice(DIGIT_FORMS) if mixed else form)(digit))
    return "".join(out)


# Random text around the card, holding no digit of any script and none of the characters
# that would make it something else on purpose: an escape ("%", "\", "&"), a "+" phone or
# a decimal ".", a key the redactor reads as an id ("=", ":", "<", "#"), hex letters (a
# card glued inside a hash is kept), track data ("^", ";"). A space parts it from the
# words before the card, so that it cannot turn "pan=" into "span=".
_NOISE_RANGES = [
    (0x20, 0x7F), (0xA0, 0x250), (0x370, 0x400), (0x400, 0x460), (0x5D0, 0x5EB),
    (0x600, 0x6FF), (0x900, 0x97F), (0x2000, 0x2070), (0x2190, 0x2200), (0x3040, 0x30FF),
    (0x4E00, 0x4E40), (0xAC00, 0xAC40), (0xFE00, 0xFE10), (0x1F300, 0x1F340),
    (0x1D400, 0x1D420),
]  # fmt: skip
_NOISE_ALPHABET = [
    ch
    for start, stop in _NOISE_RANGES
    for ch in map(chr, range(start, stop))
    if unicodedata.digit(ch, None) is None
    and unicodedata.category(ch) not in ("Nd", "No", "Nl", "Cs")
    and ch not in "abcdefABCDEF%\\&+.=:<#^;"
]


@st.composite
def _noise(draw: st.DrawFn) -> str:
    """Up to 30 characters of Latin, Greek, Cyrillic, Hebrew, Arabic, Devanagari, CJK,
    Hangul, emoji, invisible and punctuation characters (but no digit of any script)."""
    rnd = random.Random(draw(SEEDS))
    return "".join(rnd.choices(_NOISE_ALPHABET, k=rnd.randint(0, 30)))


noise = _noise()


BEFORE = ["|", "\n", "card ", "card: ", "pan=", '{"pan":"', '{"card": {"number": "', "<PAN>",
          "card[number]=", "?card=", "(", "[", "'", ">", "\t|", "\u00ab", "x", "paid with ",
          '"number":', "number%3D", "\\\"number\\\":\\\""]  # fmt: skip
AFTER = ["", "\n", " ", '"}', "</PAN>", "&currency=EUR", ")", "]", "'", "<", "\t|", "\u00bb", "y",
         " exp 12/29", '"}}', "\\\"}"]  # fmt: skip

_PLACEHOLDER = re.compile(r"\[(?:CARD(?: \*{4}[0-9]{4})?|CVV|EMAIL|IBAN|TOKEN|SECRET)\]")


def visible_digits(text: str) -> str:
    """The digits anyone could read in ``text`` outside the placeholders, decoded."""
    text = _PLACEHOLDER.sub(" ", text)
    for _ in range(3):
        text = unquote(text)
    text = re.sub(r"\\+u([0-9A-Fa-f]{4})", lambda m: chr(int(m.group(1), 16)), text)
    text = html.unescape(text)
    return "".join(str(d) for d in (unicodedata.digit(c, None) for c in text) if d is not None)


CARDS = card_numbers()
BEFORE_CARD = st.sampled_from(BEFORE)
AFTER_CARD = st.sampled_from(AFTER)


@st.composite
def cards_in_text(draw: st.DrawFn) -> tuple[str, str]:
    card = draw(CARDS)
    text = (
        draw(noise)
        + " "
        + draw(BEFORE_CARD)
        + written(draw, card)
        + draw(AFTER_CARD)
        + " "
        + draw(noise)
    )
    return card, text


@settings(max_examples=10_000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cards_in_text())
@example(("4929176433585617", "card ４９２９ １７６４ ３３５８ ５６１７ exp"))
@example(("4929176433585617", "pan=4\u200b9\u200b2\u200b9\u200b1\u200b7643358\u200b5617"))
@example(("378282246310005", "amex 3782%2D822463%2D10005"))
@example(("4929176433585617", "card 49 29 17 64 33 58 56 17"))
def test_a_card_in_any_form_never_survives(case: tuple[str, str]) -> None:
    card, text = case
    assert is_card_number(card)
    out = redact(text)
    left = visible_digits(out)
    # the only digits in ``text`` are the card's (and an expiry after it)
    assert len(left.replace("1229", "", 1)) == 0, (text, out, left)
    assert redact(out) == out


# ---------------------------------------------------------------------------------------
# Look-alikes

LOOK_ALIKES = [
    "sizes 4000 1000 2000 3000",
    "sizes 4000-1000-2000-3000",
    "git@github.com:org/repo.git",
    "git@gitlab.com:payments/paytriage.git",
    "ssh://git@github.com/org/repo.git",
    "order_id=ORD-2026-11-25-000123",
    "550e8400-e29b-41d4-a716-446655440000",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736",
    "2026-11-25T10:30:00.123456+01:00",
    "2026-11-25 10:30:00,123 ERROR checkout-api",
    "2026/11/25 10:30:00",
    "ts=1732540000000",
    "1732540000000,1732540000001,1732540000002",
    "amount=1234567.89 currency=USD",
    "USD 1 234 567,89",
    "+49 151 1234 5678",
    "decline_rate=0.4242424242424242",
    "192.168.100.200:8080",
    "2001:db8::8a2e:370:7334",
    "card ************1111",
    "last4=1111 bin=411111 exp 12/29",
    "4111111111111112",
    "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
    "cvc_check=pass cvv_result=M",
    "missing Bearer token",
    "Basic auth failed",
    "lodash@4.17.21",
    "icon@2x.png",
    "docker run -p 8080:80 -u 1000:1000 app",
    "mysql -u root -p payments",
    "latencies: 120, 340, 560, 780, 910",
    "10:30:00 10:30:05 10:30:10 10:30:15",
    "Amazon order 123-4567890-1234567",
    "Adyen pspReference 8815329842815468",
]
ID_NAMES = ["order_id", "orderId", "trace_id", "request_id", "X-Request-Id", "span_id",
            "transaction_id", "idempotency_key", "correlationId", "payment_id"]  # fmt: skip
ID_FORMS = ["{name}={id}", '"{name}": {id}', '"{name}":"{id}"', "<{name}>{id}</{name}>",
            "{name}: {id}", "'{name}': '{id}'", "?{name}={id}&x=1"]  # fmt: skip


# Published test cards are cards wherever they appear, even under an id's name.
FAMOUS = {"4111111111111111", "4242424242424242", "4012888888881881", "4000056655665556",
          "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222",
          "6011111111111117", "6011000990139424", "3566002020360505", "6200000000000005",
          "4000000000000002", "5454545454545454"}  # fmt: skip
lucky_numbers = card_numbers().filter(lambda n: len(n) == 16 and n not in FAMOUS)


@st.composite
def lucky_ids(draw: st.DrawFn) -> str:
    """A 16-digit id that passes Luhn and an issuer prefix by chance, under an id's name."""
    number = draw(lucky_numbers)
    form = draw(st.sampled_from(ID_FORMS))
    return form.format(name=draw(st.sampled_from(ID_NAMES)), id=number)


@settings(max_examples=2_000, deadline=None)
@given(
    look_alike=st.one_of(st.sampled_from(LOOK_ALIKES), lucky_ids()),
    before=noise,
    after=noise,
)
def test_look_alikes_survive_in_any_text(look_alike: str, before: str, after: str) -> None:
    out = redact(f"{before} ; {look_alike} ; {after}")
    assert f" ; {look_alike} ; " in out, out


@settings(max_examples=500, deadline=None)
@given(
    number=lucky_numbers,
    name=st.sampled_from(ID_NAMES),
    as_int=st.booleans(),
)
def test_ids_survive_redact_value_and_cards_do_not(number: str, name: str, as_int: bool) -> None:
    value = int(number) if as_int else number
    assert redact_value({name: value}) == {name: value}
    out = redact_value({"card": {"number": value}, "pan": value})
    assert number not in repr(out)

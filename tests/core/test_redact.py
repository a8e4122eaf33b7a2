"""The redactor: no card number, CVV, secret, token, e-mail or IBAN gets through; ids survive."""

from __future__ import annotations

import json
import re
from collections import namedtuple
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from paytriage.core.redact import (
    FAILED_MARK,
    Redactor,
    iban_ok,
    is_card_number,
    issuer_ok,
    key_kind,
    luhn_ok,
    redact,
    redact_value,
)
from paytriage.lab.simulate import SimulationSpec, generate
from paytriage.lab.simulate.logs import luhn_complete

# Public test cards (Stripe, Adyen, Braintree, PayPal documentation) and a few 19-digit
# numbers made Luhn-valid here.
CARDS = [
    # Visa
    "4111111111111111", "4242424242424242", "4000056655665556", "4012888888881881",
    "4222222222222", "4000000000000002", "4988438843884305", "4111111145551142",
    "4000000000000077", "4917610000000000", "4000002500003155", "4000000760000002",
    "4000000000000000006",
    # Mastercard (51-55 and 2221-2720)
    "5555555555554444", "5105105105105100", "5200828282828210", "2223003122003222",
    "5454545454545454", "2221000000000009", "5425233430109903", "2222400010000008",
    "5577000055770004",
    # American Express
    "378282246310005", "371449635398431", "378734493671000", "340000000000009",
    "370000000000002",
    # Discover
    "6011111111111117", "6011000990139424", "6445644564456445", "6500000000000002",
    "6011601160116611", "6011000400000000", "6011000000000000001",
    # Diners Club
    "30569309025904", "38520000023237", "3056930009020004", "36227206271667",
    "36006666333344",
    # JCB
    "3566002020360505", "3530111333300000", "3566111111111113", "3569990010095841",
    "3530111333300000001",
    # UnionPay
    "6200000000000005", "6205500000000000004", "6250946000000016", "6243030000000001",
    "8171999927660000", "8171999900000000021",
    # Maestro, UATP, Mir
    "6759649826438453", "5000550000000029", "6771798021000008", "6731012345678906",
    "135410014004955", "2200000000000004", "2204123456789012343",
]  # fmt: skip


def groups(digits: str, sizes: list[int], sep: str) -> str:
    out, i = [], 0
    for n in sizes:
        out.append(digits[i : i + n])
        i += n
    return sep.join(part for part in out if part)


def fours(digits: str, sep: str) -> str:
    return groups(digits, [4] * 5, sep)


def as_printed(digits: str) -> str:
    """The way each network prints its cards: Amex 4-6-5, Diners 4-6-4, 19 digits 4-4-4-4-3."""
    sizes = {15: [4, 6, 5], 14: [4, 6, 4], 19: [4, 4, 4, 4, 3]}.get(len(digits), [4] * 5)
    return groups(digits, sizes, " ")


FORMATS: dict[str, Callable[[str], str]] = {
    "plain": lambda d: d,
    "spaces": lambda d: fours(d, " "),
    "dashes": lambda d: fours(d, "-"),
    "printed": as_printed,
    "printed-dashes": lambda d: as_printed(d).replace(" ", "-"),
    "form-encoded": lambda d: fours(d, "+"),
    "url-encoded": lambda d: fours(d, "%20"),
    "nbsp": lambda d: fours(d, "\u00a0"),
    "dots": lambda d: fours(d, "."),
}

CONTEXTS = [
    "@@",
    "card @@ exp 12/29",
    "authorization failed: card=@@ declined",
    '{"pan":"@@"}',
    '{"card":{"number":"@@","cvc":"123"}}',
    '{"card": {"number": @@}}',
    'request={\\"card\\":{\\"number\\":\\"@@\\",\\"cvc\\":\\"321\\"}}',
    "{'number': '@@', 'holder': 'J DOE'}",
    "pan=@@&amount=1000&currency=EUR",
    "POST /v1/charges?card[number]=@@&card[cvc]=123",
    "https://pay.example.com/checkout?card=@@#step2",
    "card:@@",
    "card#@@;",
    "x@@y",
    "CARD@@END",
    "(@@)",
    "[@@]",
    "<@@>",
    "'@@'",
    "«@@»",
    "ref=@@.",
    "\n@@\n",
    "\t@@\t",
    "<CardNumber>@@</CardNumber>",
    "number=@@;exp=1229",
    "cvv=@@",
    "password: @@",
    "Bearer @@",
]

_PLACEHOLDER = re.compile(r"\[CARD \*{4}[0-9]{4}\]")
_CHAIN = re.compile(r"[0-9]+(?:(?:[ \t+\-\u00a0]|%20)[0-9]+)*")


def digit_chains(text: str) -> list[str]:
    """The digits of each run of digit groups, card placeholders set aside."""
    return [re.sub(r"[^0-9]", "", c) for c in _CHAIN.findall(_PLACEHOLDER.sub("|", text))]


def leaks(card: str, text: str) -> bool:
    """Whether 12 or more consecutive digits of ``card`` survive in ``text``."""
    windows = {card[i : i + 12] for i in range(len(card) - 11)}
    return any(w in chain for chain in digit_chains(text) for w in windows)


def test_the_test_cards_are_cards() -> None:
    assert len(set(CARDS)) == len(CARDS)
    for card in CARDS:
        assert luhn_ok(card) and issuer_ok(card) and is_card_number(card), card
        assert 13 <= len(card) <= 19


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("card", CARDS)
def test_cards_are_redacted_in_every_format_and_context(card: str, fmt: str) -> None:
    written = FORMATS[fmt](card)
    for context in CONTEXTS:
        text = context.replace("@@", written)
        out = redact(text)
        assert not leaks(card, out), (text, out)
        assert f"[CARD ****{card[-4:]}]" in out, (text, out)
        all_digits = re.sub(r"[^0-9]", "", _PLACEHOLDER.sub("", out))
        assert card[:6] not in all_digits, (text, out)  # never the BIN


def test_card_placeholder_keeps_only_the_last_four() -> None:
    assert redact("card 4111 1111 1111 1111 exp 12/29") == "card [CARD ****1111] exp 12/29"
    assert redact("amex 3782 822463 10005") == "amex [CARD ****0005]"
    assert redact('{"number":"4242-4242-4242-4242"}') == '{"number":"[CARD ****4242]"}'
    assert redact("pan=4111111111111111&x=1") == "pan=[CARD ****1111]&x=1"


def test_several_cards_in_one_line_are_each_redacted() -> None:
    text = "6200 0000 0000 0005 6011 1111 1111 1117 3566 0020 2036 0505 3056 9300 0902 0004"
    assert redact(text) == ("[CARD ****0005] [CARD ****1117] [CARD ****0505] [CARD ****0004]")
    assert redact("cards=[4111111111111111,5555555555554444]") == (
        "cards=[[CARD ****1111],[CARD ****4444]]"
    )


def test_a_card_next_to_other_numbers_is_still_found() -> None:
    assert redact("qty 12 4111 1111 1111 1111") == "qty 12 [CARD ****1111]"
    assert redact("1732540000 4111 1111 1111 1111 99") == "1732540000 [CARD ****1111] 99"
    # a grouped card glued to a stray digit on either side
    assert redact("54111 1111 1111 1111") == "5[CARD ****1111]"
    assert redact("4111 1111 1111 11117") == "[CARD ****1111]7"


def test_unusual_separators() -> None:
    assert redact("4111  1111  1111  1111") == "[CARD ****1111]"
    assert redact("4111\u20131111\u20131111\u20131111") == "[CARD ****1111]"
    assert redact("4000.0000.0000.0000.006") == "[CARD ****0006]"
    assert redact("card 3782.822463.10005.") == "card [CARD ****0005]."
    assert redact("4111 1111 1111 1111\t5555-5555-5555-4444") == "[CARD ****1111]\t[CARD ****4444]"


def test_masked_pans_lose_their_bin() -> None:
    assert redact("card 411111******1111 declined") == "card [CARD ****1111] declined"
    assert redact("4111 11XX XXXX 1111") == "[CARD ****1111]"
    assert redact("card ************1111") == "card ************1111"  # nothing to hide


def test_keys_that_name_a_card_number_are_redacted_even_failing_luhn() -> None:
    assert redact("pan=4111111111111112&x=1") == "pan=[CARD ****1112]&x=1"
    assert redact('{"card_number": "1234 5678 9012 3456"}') == '{"card_number": "[CARD ****3456]"}'
    assert redact("pan=12345") == "pan=12345"  # not a card number


# Epoch timestamps that pass Luhn: no card starts with 1 at 13, 16 or 19 digits.
EPOCH_MS_LUHN = luhn_complete("173254000000")
EPOCH_US_LUHN = luhn_complete("173254000000123")
EPOCH_NS_LUHN = luhn_complete("173254000000123456")
PHONE_LUHN = "+" + luhn_complete("491511234567")  # +49 151... passes Luhn, starts like Visa

SURVIVORS = [
    "pay_8f3k2j",
    "payment pay_8f3k2jAbCdEf12 authorized via stripe in 412.3ms",
    "ORD-2026-11-25-000123",
    "order_id=ORD-2026-11-25-000123 merchant_id=m_1234",
    "550e8400-e29b-41d4-a716-446655440000",
    "123e4567-e89b-12d3-a456-426614174000",
    "41111111-1111-4111-8111-111111111111",
    "trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7",
    "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "2026-11-25T10:30:00Z",
    "2026-11-25T10:30:00.123456+01:00",
    "2026-11-25 10:30:00,123 ERROR checkout-api",
    "@timestamp=2026-11-25T10:30:00.123Z",
    "ts=1732540000",
    "1732540000000",
    f"epoch_ms={EPOCH_MS_LUHN}",
    f"{EPOCH_MS_LUHN} {EPOCH_MS_LUHN}",
    f"t_us={EPOCH_US_LUHN}",
    f"t_ns={EPOCH_NS_LUHN}",
    "1,234.56",
    "EUR 12.00",
    "amount=1234567.89 currency=USD",
    "USD 1 234 567,89",
    "decline_rate=0.4242424242424242",
    "p=0.000012345678901234",
    "HTTP/1.1 502 Bad Gateway",
    "status=429 retry_after=2s",
    "10.0.0.1",
    "192.168.100.200:8080",
    "2001:db8::8a2e:370:7334",
    "v1.2.3",
    "paytriage 0.1.0 (build 2026.11.25.1234)",
    "+1 415 555 2671",
    "+44 20 7946 0958",
    "+49 151 1234 5678",
    "(555) 010-0199",
    f"phone={PHONE_LUHN}",
    "4111111111111112",
    "card 4111 1111 1111 1112 (Luhn fails)",
    "1234 5678 9012 3456",
    "7000000000000000",
    "0004111111111111111",
    "41111111111111111111",
    "Adyen pspReference 8815329842815468",
    "ch_3MmlLrLkdIwHu7ix0snN0B15",
    "pi_3MtwBwLkdIwHu7ix28a3tqPa",
    "cus_NffrFeUfNV2Hib evt_1NG8Du2eZvKYlo2CUI79vXWy",
    "idempotency_key=5d41402abc4b2a76b9719d911017c592",
    "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 by a.kowalski",
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "card ending 1111, last4=4242, exp 12/29, bin=411111",
    "psp=stripe country=DE method=card decline_reason=insufficient_funds",
    "cvc_check=pass cvv_result=M cvvResponseCode=123",
    "authorization_status=approved authorization_code=A1B2C3 auth_code=123456",
    "Amazon order 123-4567890-1234567",
    'avs_result="Y" cvc_check: "unavailable"',
    "Basic auth failed for merchant m_1234",
    "missing Bearer token",
    "password reset requested",
    "secret rotation scheduled for Friday",
    "lodash@4.17.21",
    "<@U024BE7LH> see <#C024BE7LH|payments-oncall>",
    'sum(rate(payments_total{psp="stripe",status="failed"}[5m]))',
    "counts=[12, 15, 19, 22] window=10:30-11:45 on 25/11/2026",
    "latency_ms=412.7 size=1048576 bytes",
    "DE00 3704 0044 0532 0130 00",
    "token=${SLACK_BOT_TOKEN}",
    "password: true",
    "",
]


@pytest.mark.parametrize("text", SURVIVORS)
def test_ids_timestamps_and_amounts_survive(text: str) -> None:
    assert redact(text) == text


def test_epoch_and_phone_examples_really_pass_luhn() -> None:
    """The survivors above are only meaningful if they would pass a Luhn-only check."""
    for number in (EPOCH_MS_LUHN, EPOCH_US_LUHN, EPOCH_NS_LUHN):
        assert luhn_ok(number)
        assert not is_card_number(number)
    assert is_card_number(PHONE_LUHN[1:])  # kept only because of its "+"
    assert EPOCH_MS_LUHN.startswith("17") and len(EPOCH_MS_LUHN) == 13


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cvv=123", "cvv=[CVV]"),
        ("cvc: 1234", "cvc: [CVV]"),
        ('"cvv2":"123"', '"cvv2":"[CVV]"'),
        ("'cvc': '987'", "'cvc': '[CVV]'"),
        ('{"cvc": 123}', '{"cvc": [CVV]}'),
        ("security_code=123&x=1", "security_code=[CVV]&x=1"),
        ("card_verification_value=987", "card_verification_value=[CVV]"),
        ("cardCvc=456", "cardCvc=[CVV]"),
        ("card[cvc]=123", "card[cvc]=[CVV]"),
        ("card%5Bcvc%5D=123", "card%5Bcvc%5D=[CVV]"),
        ("CVV: 123", "CVV: [CVV]"),
        ("cvv 123", "cvv [CVV]"),
        ("CVC2 1234 ok", "CVC2 [CVV] ok"),
        ("<cvv>123</cvv>", "<cvv>[CVV]</cvv>"),
        ('{\\"cvc\\":\\"321\\"}', '{\\"cvc\\":\\"[CVV]\\"}'),
        ("cvv=12345", "cvv=12345"),  # not a CVV
        ("cvc_check=pass", "cvc_check=pass"),
    ],
)
def test_cvv_values_are_redacted_and_keys_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customer=jane.doe@example.com", "customer=[EMAIL]"),
        ("jane.doe+refunds@mail.shop.example.co.uk wrote", "[EMAIL] wrote"),
        ("<mailto:JOHN_SMITH99@Example.ORG|john>", "<mailto:[EMAIL]|john>"),
        ('{"email":"a.b-c@sub.domain.io"}', '{"email":"[EMAIL]"}'),
        ("email=jane%40example.com&x=1", "email=[EMAIL]&x=1"),
        ("email=jane%2Btag%40example.com", "email=[EMAIL]"),
        ("to: müller@beispiel.de", "to: [EMAIL]"),
    ],
)
def test_emails_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected


JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwi"
    "aWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
ADYEN_KEY = (
    "AQEyhmfxK4LLbhVBw0m/n3Q5qf3VaY9UCJ1+XWZe9W27jmlZiv4PD4jhfNMofnLr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw"
    "==-lUKXT9IQre4SYMiyidjnwQ+n0I8S0NGMH3G9BZ8z8wo=-i1iB7a<{[Jsa4*B=,&"
)
TOKEN_CASES = [
    # (text, the secret part that must vanish, expected output or None to skip the exact check)
    (f"Authorization: Bearer {JWT}", JWT, "Authorization: Bearer [TOKEN]"),
    ("Authorization: Bearer abc123opaque", "abc123opaque", "Authorization: Bearer [TOKEN]"),
    ("authorization: basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA==",
     "authorization: basic [TOKEN]"),
    ('{"Authorization": "Bearer sometoken"}', "sometoken", '{"Authorization": "Bearer [TOKEN]"}'),
    ("headers={'authorization': 'Token token=y_NbAkKc66ryYTWUXYEu'}", "y_NbAkKc66ryYTWUXYEu",
     "headers={'authorization': 'Token [TOKEN]'}"),
    (f"sent {JWT} to psp", JWT, "sent [TOKEN] to psp"),
    ("curl -H 'Bearer 0f4c9b2e7d1a'", "0f4c9b2e7d1a", "curl -H 'Bearer [TOKEN]'"),
    ("key sk_live_51HqLyjWDarjtT1zdp7dcXYZ", "sk_live_51HqLyjWDarjtT1zdp7dcXYZ", "key [SECRET]"),
    ("sk_test_4eC39HqLyjWDarjtT1zdp7dc", "sk_test_4eC39HqLyjWDarjtT1zdp7dc", "[SECRET]"),
    ("rk_live_abc123 pk_live_xyz789", "_abc123", "[SECRET] [SECRET]"),
    ("whsec_abcdefghijklmnopqrstuvwxyz012345", "whsec_abc", "[SECRET]"),
    ("client_secret=pi_3MtwBwLkdIwHu7ix28a3tqPa_secret_YrKJUKribcBjcG8HVhfZluoGH", "YrKJUK",
     "client_secret=[SECRET]"),
    ("SLACK_BOT_TOKEN=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
     "1234567890123-AbCd", "SLACK_BOT_TOKEN=[TOKEN]"),
    ("xoxp-1234-5678-abcdef xapp-1-A0123-456-abcdef", "xoxp-1234", "[TOKEN] [TOKEN]"),
    ("webhook https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX ok",
     "XXXXXXXXXXXXXXXXXXXXXXXX", "webhook https://hooks.slack.com/services/[SECRET] ok"),
    ("aws AKIAIOSFODNN7EXAMPLE ASIAY34FZKBOKMUTVV7A", "IOSFODNN7", "aws [SECRET] [SECRET]"),
    ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtn",
     "aws_secret_access_key=[SECRET]"),
    ("GITHUB_TOKEN=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "16C7e42F", "GITHUB_TOKEN=[TOKEN]"),
    ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
     "11ABCDEFG", "[TOKEN]"),
    (f"X-API-Key: {ADYEN_KEY}", "AQEyhmfx", "X-API-Key: [SECRET]"),
    (f"adyen key {ADYEN_KEY}", "AQEyhmfx", "adyen key [SECRET]"),
    ('{"routing_key":"0123456789abcdef0123456789abcdef"}', "0123456789abcdef",
     '{"routing_key":"[SECRET]"}'),
    ("api_key=abc&apikey=def&x-api-key=ghi", "=abc", "api_key=[SECRET]&apikey=[SECRET]&x-api-key=[SECRET]"),
    ("apikey: Zm9vYmFy", "Zm9vYmFy", "apikey: [SECRET]"),
    ("?secret=s3cr3t&password=hunter2&token=t0k&access_token=at&client_secret=cs",
     "hunter2", "?secret=[SECRET]&password=[SECRET]&token=[TOKEN]&access_token=[TOKEN]"
     "&client_secret=[SECRET]"),
    ('{"password": "correct horse battery staple"}', "horse", '{"password": "[SECRET]"}'),
    ('{"clientSecret":"abc\\"def"}', "def", '{"clientSecret":"[SECRET]"}'),
    ("DB_PASSWORD='p@ss w0rd'", "w0rd", "DB_PASSWORD='[SECRET]'"),
    ("--password=hunter2 --user=bob", "hunter2", "--password=[SECRET] --user=bob"),
    ("<password>hunter2</password>", "hunter2", "<password>[SECRET]</password>"),
    ("Cookie: session=abc123; csrftoken=def456 status=200", "def456",
     "Cookie: [TOKEN] status=200"),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7bq\n-----END RSA PRIVATE KEY----- done",
     "MIIEpAIBAAKCAQEA7bq", "[SECRET] done"),
    ('{"key":"-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\n-----END PRIVATE KEY-----\\n"}',
     "MIIEvQIBADANBg", '{"key":"[SECRET]\\n"}'),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA", "b3BlbnNzaC1r", "[SECRET]"),
    ("postgres://paytriage:Sup3rS3cret@db.internal:5432/triage", "Sup3rS3cret",
     "postgres://[SECRET]@db.internal:5432/triage"),
    ("https://user:p@ss@host.example.com/x", "p@ss", "https://[SECRET]@host.example.com/x"),
    ("https://sk_live_abc@api.stripe.com/v1/charges", "sk_live_abc",
     "https://[SECRET]@api.stripe.com/v1/charges"),
    ("AIzaSyA1234567890abcdefghijklmnopqrstuv", "AIzaSyA", "[SECRET]"),
    ("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", "ngeVfQ",
     "[SECRET]"),
    ("access_token$production$abc123$0123456789abcdef0123456789abcdef", "abc123$",
     "[TOKEN]"),
    ("Stripe-Signature: t=1492774577,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
     "5257a869", "Stripe-Signature: [SECRET]"),
    ("password=abc, user=bob", "abc", "password=[SECRET], user=bob"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "secret", "expected"), TOKEN_CASES)
def test_tokens_keys_and_passwords_are_redacted(
    text: str, secret: str, expected: str | None
) -> None:
    out = redact(text)
    assert secret not in out, out
    if expected is not None:
        assert out == expected


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "GB82WEST12345698765432",
        "FR14 2004 1010 0505 0001 3M02 606",
        "FR1420041010050500013M02606",
        "NL91 ABNA 0417 1643 00",
        "CH93 0076 2011 6238 5295 7",
        "BE68 5390 0754 7034",
        "NO93 8601 1117 947",
        "es9121000418450200051332",
    ],
)
def test_valid_ibans_are_redacted(iban: str) -> None:
    assert iban_ok(re.sub(r"\s", "", iban))
    for template in ("@@", "iban=@@&x=1", '{"iban":"@@"}', "pay to @@, thanks", "(@@)"):
        assert redact(template.replace("@@", iban)) == template.replace("@@", "[IBAN]")


def test_iban_looking_strings_failing_mod_97_stay() -> None:
    for text in ("DE00 3704 0044 0532 0130 00", "GB83WEST12345698765432", "XX82WEST1234"):
        assert not iban_ok(text.replace(" ", ""))
        assert redact(text) == text


def test_key_kinds() -> None:
    assert key_kind("password") == key_kind("DB_PASSWORD") == "secret"
    assert key_kind("x-api-key") == key_kind("stripeApiKey") == key_kind("client_secret")
    assert key_kind("Authorization") == key_kind("access_token") == key_kind("Cookie") == "token"
    assert key_kind("card[cvc]") == key_kind("cvv2") == key_kind("securityCode") == "cvv"
    assert (
        key_kind("card_cvv") == key_kind("cvv_code") == key_kind("CardVerificationValue") == "cvv"
    )
    assert key_kind("card_number") == key_kind("pan") == key_kind("cardNumber") == "card"
    for harmless in ("author", "cvc_check", "cvv_result", "idempotency_key", "amount", "span",
                     "company", "authorization_status", "authorization_code"):  # fmt: skip
        assert key_kind(harmless) is None, harmless


# ---------------------------------------------------------------------------------------
# redact_value


def test_redact_value_walks_nested_structures() -> None:
    doc = {
        "@timestamp": "2026-11-25T10:30:00.123Z",
        "message": "card 4111 1111 1111 1111 for jane@example.com",
        "latency_ms": 412.5,
        "http_status": 502,
        "ok": False,
        "missing": None,
        "request": {
            "card": {"number": "4242424242424242", "cvc": "123", "exp_month": 12},
            "headers": [("Authorization", f"Bearer {JWT}"), ("X-Request-Id", "req_123")],
            "tags": ["pay_8f3k2j", "jane@example.com"],
        },
    }
    out = redact_value(doc)
    assert out == {
        "@timestamp": "2026-11-25T10:30:00.123Z",
        "message": "card [CARD ****1111] for [EMAIL]",
        "latency_ms": 412.5,
        "http_status": 502,
        "ok": False,
        "missing": None,
        "request": {
            "card": {"number": "[CARD ****4242]", "cvc": "[CVV]", "exp_month": 12},
            "headers": [("Authorization", "Bearer [TOKEN]"), ("X-Request-Id", "req_123")],
            "tags": ["pay_8f3k2j", "[EMAIL]"],
        },
    }
    assert doc["message"] == "card 4111 1111 1111 1111 for jane@example.com"  # not mutated


def test_redact_value_replaces_whole_values_of_secret_keys() -> None:
    out = redact_value(
        {
            "password": "hunter2",
            "cvv": 123,
            "CVC": "4567",
            "card_number": 4111111111111112,  # fails Luhn, but the key says what it is
            "pan": "411111******1111",
            "token": {"id": "tok_1", "type": "card"},
            "api_key": ["k1", "k2"],
            "secret": b"raw",
            "Authorization": "Basic dXNlcjpwYXNz",
            "client_secret": None,
            "password_set": True,
            "session_token": "",
        }
    )
    assert out == {
        "password": "[SECRET]",
        "cvv": "[CVV]",
        "CVC": "[CVV]",
        "card_number": "[CARD ****1112]",
        "pan": "[CARD ****1111]",
        "token": "[TOKEN]",
        "api_key": "[SECRET]",
        "secret": "[SECRET]",
        "Authorization": "[TOKEN]",
        "client_secret": None,
        "password_set": True,
        "session_token": "",
    }


def test_redact_value_keeps_numbers_and_shapes() -> None:
    Point = namedtuple("Point", "x y")
    value = [1, 2.5, None, True, 1732540000000, Point("jane@x.com", 3), {"a", "b"}, ()]
    assert redact_value(value) == [1, 2.5, None, True, 1732540000000, Point("[EMAIL]", 3),
                                   {"a", "b"}, ()]  # fmt: skip
    assert type(redact_value(value)[5]) is Point  # type: ignore[index]
    assert redact_value(4111111111111111) == "[CARD ****1111]"  # an int that is a card
    assert redact_value(b"pan 4111111111111111 \xff") == b"pan [CARD ****1111] \xff"
    assert redact_value(frozenset({"jane@x.com"})) == frozenset({"[EMAIL]"})


def test_redact_value_redacts_keys_without_losing_entries() -> None:
    out = redact_value({"jane@x.com": 1, "bob@y.org": 2, 7: "ok"})
    assert out == {"[EMAIL]": 1, "[EMAIL] (2)": 2, 7: "ok"}
    assert redact_value(out) == out


def test_redact_value_survives_cycles_and_depth() -> None:
    loop: list[object] = ["4111111111111111"]
    loop.append(loop)
    assert redact_value(loop) == ["[CARD ****1111]", "[...]"]
    deep: object = "4242424242424242"
    for _ in range(500):
        deep = [deep]
    flat = json.dumps(redact_value(deep))
    assert "4242424242424242" not in flat and "[CARD ****4242]" in flat


def test_redactor_takes_extra_patterns_and_secret_keys() -> None:
    r = Redactor(extra_patterns=[(r"\bint_[a-z0-9]{12}\b", "[TOKEN]")], secret_keys=["X-Internal"])
    assert r.redact("id int_abcdef123456 x-internal=zzz") == "id [TOKEN] x-internal=[SECRET]"
    assert r.redact_value({"x_internal": "zzz"}) == {"x_internal": "[SECRET]"}
    assert redact("x-internal=zzz") == "x-internal=zzz"  # the default is unchanged


# ---------------------------------------------------------------------------------------
# Properties: never raises, idempotent, cards never survive


FRAGMENTS = [
    "4111 1111 1111 1111", "4242424242424242", "3782-822463-10005", "6205500000000000004",
    "4111111111111112", "1732540000000", "0.4242424242424242", "+4915112345678",
    "cvv=", "cvc: ", '"cvv2":"', "123", "1234", "password=", "token=", "Authorization: ",
    "Bearer ", "Basic ", "sk_live_", "xoxb-", "eyJ", "AQE", "AKIA", "-----BEGIN PRIVATE KEY-----",
    "-----END PRIVATE KEY-----", "https://", "user:pw@", "hooks.slack.com/services/T0/B0/X",
    "@", "%40", "jane.doe+x@example.com", ".", "-", "+", " ", "\n", "\t", '"', "'", "\\", "\\\"",
    "=", ":", "&", ";", ",", "{", "}", "[", "]", "<", ">", "</", "<cvv>", "</cvv>", "%20",
    "DE89 3704 0044 0532 0130 00", "DE89", "GB82WEST", "****", "XXXX", "[CARD ****1111]",
    "[SECRET]", "[TOKEN]", "[EMAIL]", "[CVV]", "[IBAN]", "pan", "card", "é", "\u00a0", "٣",
]  # fmt: skip
log_like = st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=16).map(
    "".join
)


@settings(max_examples=400, deadline=None)
@given(text=st.one_of(st.text(), log_like))
@example(text="\ud800\udfff surrogates 4111111111111111")
@example(text="cvv 4111 1111 1111 1111")
def test_redact_never_raises_and_is_idempotent(text: str) -> None:
    once = redact(text)
    assert isinstance(once, str)
    assert FAILED_MARK not in once or FAILED_MARK in text
    assert redact(once) == once


digitless = st.text(alphabet=st.characters(exclude_characters="0123456789+.%"), max_size=30)


@settings(max_examples=400, deadline=None)
@given(
    prefix=st.text(max_size=40),
    suffix=st.text(max_size=40),
    card=st.sampled_from(CARDS),
    fmt=st.sampled_from(sorted(FORMATS)),
    sep=st.sampled_from([" ", "\n", "\t", "; ", ", ", " | ", '"', "="]),
)
def test_an_embedded_card_never_survives(
    prefix: str, suffix: str, card: str, fmt: str, sep: str
) -> None:
    assume(not leaks(card, prefix) and not leaks(card, suffix))
    out = redact(prefix + sep + FORMATS[fmt](card) + sep + suffix)
    assert not leaks(card, out), out


@settings(max_examples=300, deadline=None)
@given(prefix=digitless, suffix=digitless, card=st.sampled_from(CARDS),
       fmt=st.sampled_from(sorted(FORMATS)))  # fmt: skip
def test_a_card_glued_to_text_never_survives(prefix: str, suffix: str, card: str, fmt: str) -> None:
    out = redact(prefix + FORMATS[fmt](card) + suffix)
    assert not leaks(card, out), out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | log_like,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.one_of(st.sampled_from(["password", "cvv", "pan", "token"]), st.text()),
                      children, max_size=4),
    max_leaves=12,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_redact_value_is_idempotent(value: object) -> None:
    once = redact_value(value)
    assert redact_value(once) == once


# ---------------------------------------------------------------------------------------
# Real logs and big inputs


def test_the_simulators_planted_secrets_never_survive() -> None:
    start = datetime(2026, 11, 16, tzinfo=UTC)
    data = generate(SimulationSpec(start=start, end=start + timedelta(hours=4), seed=7))
    planted = data.labels["planted_secrets"]
    assert planted["card_numbers"] and planted["emails"] and planted["tokens"]
    docs = redact_value(data.logs)
    assert isinstance(docs, list)
    text = "\n".join(json.dumps(d) for d in docs) + "\n".join(d["message"] for d in docs)
    for card in planted["card_numbers"]:
        assert not leaks(card, text)
        assert f"[CARD ****{card[-4:]}]" in text
    for secret in planted["emails"] + planted["tokens"]:
        assert secret not in text
    assert '"cvc":"[CVV]"' in text
    for cvv in planted["cvvs"]:
        assert f'"cvc":"{cvv}"' not in text
    # and the rest of each document is untouched
    assert [d["@timestamp"] for d in docs] == [d["@timestamp"] for d in data.logs]
    assert [d.get("payment_id") for d in docs] == [d.get("payment_id") for d in data.logs]


def test_a_megabyte_of_logs_is_redacted_whole() -> None:
    line = (
        "2026-11-25T10:30:00.123Z ERROR payment-orchestrator trace=4bf92f3577b34da6a3ce929d0e0e4736"
        ' payment pay_8f3k2j failed: request={"card":{"number":"4111 1111 1111 1111","cvc":"123"}}'
        " customer=jane.doe@example.com Authorization: Bearer " + JWT + " ts=1732540000000\n"
    )
    text = line * (1_000_000 // len(line) + 1)
    out = redact(text)
    assert out.count("[CARD ****1111]") == out.count("\n") == text.count("\n")
    assert "4111" not in out and "jane.doe" not in out and "eyJ" not in out
    assert out.count("pay_8f3k2j") == out.count("ts=1732540000000") == text.count("\n")
    assert out.count('"cvc":"[CVV]"') == text.count("\n")


@pytest.mark.parametrize(
    ("unit", "changed"),
    [
        ("4111 ", False),  # one endless run of groups, never a valid card
        ("411 ", False),
        ("1 ", False),
        ('"', False),
        ("a@", False),
        ("a=", False),
        ('password="', True),
        ("\\", False),
        ("-----BEGIN PRIVATE KEY-----", True),
        ("https://a:", False),
        ("eyJaaaa.", True),
        ("DE89 ", False),
        ("4111%20", False),
    ],
)
def test_hostile_input_is_handled_in_linear_time(unit: str, changed: bool) -> None:
    """Linear time: each of these would take minutes with a backtracking pattern."""
    text = unit * (256_000 // len(unit))
    out = redact(text)
    assert (out != text) is changed
    assert redact(out) == out

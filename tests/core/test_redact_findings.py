"""The red team's findings against the redactor, one test each.

Every case in a test named after a finding failed on the redactor before the fix. The
tests marked as guards passed before too: they pin what the fix must not break (a new
separator must not turn a list into a card, a new pass must not eat prose). All assert
what matters: the secret digits or strings are gone, the look-alikes are kept verbatim.
"""

from __future__ import annotations

import re

import pytest

from paytriage.core.redact import id_key, is_card_number, redact, redact_value

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
# A card number no list of test cards holds (Luhn-valid, Visa).
FRESH = "4929176433585617"

_PLACEHOLDER = re.compile(r"\[(?:CARD(?: \*{4}[0-9]{4})?|CVV|EMAIL|IBAN|TOKEN|SECRET)\]")


def visible_digits(text: str) -> str:
    """Every digit left outside the placeholders, in order."""
    return re.sub(r"[^0-9]", "", _PLACEHOLDER.sub("", text))


def assert_card_gone(text: str, card: str) -> str:
    out = redact(text)
    digits = visible_digits(out)
    assert card[:6] not in digits and card[6:-4] not in digits, (text, out)
    assert f"[CARD ****{card[-4:]}]" in out, (text, out)
    assert redact(out) == out  # idempotent
    return out


def test_the_cards_used_here_are_cards() -> None:
    for card in (VISA, MASTERCARD, AMEX, FRESH):
        assert is_card_number(card)


# -- separators -------------------------------------------------------------------------


@pytest.mark.parametrize("sep", ["/", "_", ",", ":", "\u00b7", ", ", " / ", "\u2022", "\uff0f"])
@pytest.mark.parametrize("card", [VISA, FRESH])
def test_punctuation_between_groups(card: str, sep: str) -> None:
    written = sep.join(card[i : i + 4] for i in range(0, 16, 4))
    for context in ("@@", "card @@ declined", '{"number":"@@"}', "pan=@@&x=1"):
        assert_card_gone(context.replace("@@", written), card)


@pytest.mark.parametrize(
    "written",
    [
        "4929 -1764 -3358 -5617",
        "4929--1764--3358--5617",
        "4929 - 1764 - 3358 - 5617",
        "4929  1764   3358    5617",
        "4929/1764 3358/5617",
        "4929__1764__3358__5617",
        "4929 ,1764 ,3358 ,5617",
    ],
)
def test_mixed_and_repeated_separators(written: str) -> None:
    assert_card_gone(f"card {written} exp 12/29", FRESH)


@pytest.mark.parametrize(
    "written",
    [
        " ".join(FRESH),  # 4 9 2 9 1 7 6 4 ...
        "-".join(FRESH),
        " ".join(FRESH[i : i + 2] for i in range(0, 16, 2)),  # 49 29 17 64 ...
        ":".join(FRESH[i : i + 2] for i in range(0, 16, 2)),
        "4 929 1764 3358 5617",
        "4929 1764 3358 56 17",
        "49 2917 6433 5856 17",
    ],
)
def test_one_and_two_digit_groups(written: str) -> None:
    for context in ("@@", "card: @@.", "pan=@@&x=1", "card @@ 12/29"):
        assert_card_gone(context.replace("@@", written), FRESH)


def test_url_encoded_separators_and_digits() -> None:
    for written in (
        "4929%2D1764%2D3358%2D5617",
        "4929%2F1764%2F3358%2F5617",
        "4929%2C1764%2C3358%2C5617",
        "4929%3A1764%3A3358%3A5617",
        "4929%C2%A01764%C2%A03358%C2%A05617",  # UTF-8 no-break space
        "4929%E2%80%8B1764%E2%80%8B3358%E2%80%8B5617",  # UTF-8 zero-width space
        "4929%25201764%25203358%25205617",  # encoded twice
        "".join(f"%3{d}" for d in FRESH),  # every digit encoded
    ):
        assert_card_gone(f"GET /pay?card={written}&amount=100", FRESH)


@pytest.mark.parametrize(
    ("name", "zero"),
    [
        ("fullwidth", 0xFF10),
        ("arabic-indic", 0x0660),
        ("extended arabic-indic", 0x06F0),
        ("devanagari", 0x0966),
        ("bengali", 0x09E6),
        ("thai", 0x0E50),
        ("mathematical bold", 0x1D7CE),
    ],
)
def test_unicode_digits(name: str, zero: int) -> None:
    written = "".join(chr(zero + int(d)) for d in FRESH)
    out = redact(f"card {written} exp 12/29")
    assert "[CARD ****5617]" in out, (name, out)
    assert written[:6] not in out and written[6:12] not in out
    mixed = "".join(chr(zero + int(d)) if i % 2 else d for i, d in enumerate(FRESH))
    assert "[CARD ****5617]" in redact(mixed)
    spaced = " ".join(written[i : i + 4] for i in range(0, 16, 4))
    assert "[CARD ****5617]" in redact(spaced)


@pytest.mark.parametrize("zw", ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"])
def test_zero_width_characters(zw: str) -> None:
    between_digits = zw.join(FRESH)
    between_groups = zw.join(FRESH[i : i + 4] for i in range(0, 16, 4))
    for written in (between_digits, between_groups, zw + FRESH + zw):
        out = redact(f"pan {written} ok")
        assert "[CARD ****5617]" in out and "4929" not in out.replace(zw, ""), out


def test_zero_width_characters_do_not_hide_tokens_or_addresses() -> None:
    for text, secret in (
        ("key sk_li\u200bve_51HqLyjWDarjtT1zdp7dcXYZ", "51HqLy"),
        ("from jane.doe\u200b@example.com", "jane.doe"),
        ("pass\u2060word=hunter2", "hunter2"),
    ):
        assert secret not in redact(text), text
    assert redact("\U0001f468\u200d\U0001f469\u200d\U0001f467") == (
        "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # an emoji's joiners stay
    )


def test_html_entities() -> None:
    for written in (
        "&#52;&#57;&#50;&#57;&#49;&#55;&#54;&#52;&#51;&#51;&#53;&#56;&#53;&#54;&#49;&#55;",
        "4929&nbsp;1764&nbsp;3358&nbsp;5617",
        "4929&#x2d;1764&#x2d;3358&#x2d;5617",
        "4929&#8203;1764&#8203;3358&#8203;5617",
    ):
        assert_card_gone(f"<td>{written}</td>", FRESH)


def test_a_number_split_over_lines() -> None:
    for text in (
        "card 4929 1764\n3358 5617 declined",
        "card 4929 1764\r\n3358 5617 declined",
        "card 4929 1764 3358\n    5617 declined",
        "payload ...49291764\n33585617...",  # a hard wrap at a fixed width
        '{"msg": "card 4929 1764\\n3358 5617"}',  # an escaped line break
    ):
        assert_card_gone(text, FRESH)


def test_json_unicode_escapes() -> None:
    escaped = "".join(f"\\u003{d}" for d in FRESH)
    assert_card_gone(f'{{"number": "{escaped}", "cvc": "123"}}', FRESH)
    assert_card_gone('{"number": "4929\\u00201764\\u00203358\\u00205617"}', FRESH)
    assert_card_gone('{"number": "4929\\u200b1764\\u200b3358\\u200b5617"}', FRESH)
    assert_card_gone('{"msg": "{\\"number\\": \\"\\\\u0034929176433585617\\"}"}', FRESH)


# -- track data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "%B4929176433585617^DOE/JOHN^25121010000000000000?",
        "track1=%B4929176433585617^DOE/JOHN Q.MR^2512101123400001230000000000000?",
        "B4929176433585617^DOE/JOHN^2512101",
        '{"track1": "%B4929176433585617^DOE/JOHN^25121010000000000000?"}',
    ],
)
def test_track_1_loses_pan_name_expiry_and_service_code(text: str) -> None:
    out = redact(text)
    assert "[CARD ****5617]" in out, out
    assert "DOE" not in out and "JOHN" not in out
    assert "2512" not in out and "101" not in visible_digits(out)


@pytest.mark.parametrize(
    "text",
    [
        ";4929176433585617=25121010000000000000?",
        "track2=4929176433585617=2512101000000000",
        "4929176433585617=25121010000012300000",
        '"track2": ";4929176433585617=25121010000000000000?"',
        # EMV tag 57 (track 2 equivalent data): "D" separates, "F" pads
        "5713 4929176433585617D25121010000000000000F",
        "57134929176433585617D25121010000000000000F",
    ],
)
def test_track_2_loses_pan_expiry_and_service_code(text: str) -> None:
    out = redact(text)
    assert "[CARD ****5617]" in out, out
    assert "2512" not in out and "1010" not in out


def test_track_2_framed_by_sentinels_is_masked_even_failing_luhn() -> None:
    out = redact(";4929176433585619=25121010000000000000?")
    assert "2512" not in out and "49291764" not in out


def test_emv_pan_tag() -> None:
    out = redact("tlv 5A0849291764335856175F2403251231")
    assert "49291764" not in out and "[CARD ****5617]" in out


# -- CVVs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Security Code: 737",
        "the security code was 737",
        "cvv is: 737",
        "the CVV was 737",
        "CVV(737)",
        "cvv (737)",
        "card verification value 737",
        "cvv%3D737",
        "card%5Bcvc%5D%3D737",
        "cvv%3A%20737",
        '"cvc": "\\u0037\\u0033\\u0037"',
        "cvv: \uff17\uff13\uff17",
        "cvv 7 3 7",
        "CVV=[737]",
        "cvv - 737",
    ],
)
def test_cvv_phrasings(text: str) -> None:
    out = redact(text)
    assert "[CVV]" in out, out
    assert "737" not in out and "7 3 7" not in out, out
    assert redact(out) == out


@pytest.mark.parametrize(
    "text",
    ["security code 737", "card security code is 737", "cvv is 737", "CVV/CVC: 737", "cvc2 = 737"],
)
def test_guard_cvv_phrasings_found_before(text: str) -> None:
    test_cvv_phrasings(text)


@pytest.mark.parametrize(
    "text",
    [
        "cvc_check=pass cvv_result=M cvvResponseCode=123",
        "CVV check failed 3 times",
        "cvv mismatch after 1000 ms",
        "security code mismatch",
        "cvv=12345",
    ],
)
def test_guard_cvv_look_alikes_are_kept(text: str) -> None:
    assert redact(text) == text


# -- secrets on command lines and elsewhere --------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("--password hunter2 --user bob", "hunter2"),
        ("psql --password 'p@ss w0rd' -h db", "w0rd"),
        ("deploy --db-password S3cr3t!", "S3cr3t"),
        ("vault login --client-secret c1i3nt -n x", "c1i3nt"),
        ("mysql -u root -pS3cr3t payments", "S3cr3t"),
        ("mysqldump -uroot -p'S3 cr3t' db", "cr3t"),
        ("mariadb -h db -u app -pS3cr3t", "S3cr3t"),
        ("sshpass -p hunter2 ssh deploy@host", "hunter2"),
        ("redis-cli -h cache -a s3cr3t ping", "s3cr3t"),
        ("ldapsearch -x -D cn=admin -w s3cr3t", "s3cr3t"),
        ("docker login -u ci -p s3cr3t registry.example.com", "s3cr3t"),
        ("curl -u admin:S3cr3t https://api.example.com", "S3cr3t"),
        ("curl --user admin:S3cr3t https://api.example.com", "S3cr3t"),
        ("keytool -importkeystore -storepass changeit -keypass k3ypass", "k3ypass"),
        ("smbclient //srv/share -U admin%hunter2", "hunter2"),
    ],
)
def test_passwords_on_command_lines(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out
    assert "[SECRET]" in out or "[TOKEN]" in out
    assert redact(out) == out


@pytest.mark.parametrize(
    "text",
    [
        "mysql -u root -p payments",  # prompts; "payments" is the database
        "docker run -p 8080:80 -u 1000:1000 app",
        "docker login --password-stdin -u ci registry.example.com",
        "vault kv get --secret-name prod/db",
        "ssh -p 2222 deploy@10.0.0.5",
    ],
)
def test_guard_command_lines_without_secrets_are_kept(text: str) -> None:
    assert redact(text) == text


def test_guard_openssl_pass_arguments() -> None:
    for text in (
        "openssl enc -aes256 -pass pass:hunter2 -in x",
        "openssl pkcs12 -passin pass:hunter2",
    ):
        assert "hunter2" not in redact(text)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgres://app:ab/cd+ef@db.internal/pay", "ab/"),
        ("Server=db;Database=pay;User Id=app;Password=p@ss w0rd;", "w0rd"),
        ("Driver={ODBC};Server=db;UID=app;PWD={p;ss w0rd};", "w0rd"),
    ],
)
def test_connection_strings(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out, out


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("postgresql://app:S3cr3t@db.internal:5432/pay", "S3cr3t"),
        ("mongodb+srv://app:S3cr3t@cluster0.example.net/pay", "S3cr3t"),
        ("redis://:S3cr3t@cache:6379/0", "S3cr3t"),
        ("dsn='host=db port=5432 password=S3cr3t dbname=pay'", "S3cr3t"),
        ("psql 'host=db port=5432 password=S3cr3t dbname=pay'", "S3cr3t"),
        ("host=db user=app password='p@ss w0rd' dbname=pay", "w0rd"),
        ("jdbc:postgresql://db/pay?user=app&password=S3cr3t", "S3cr3t"),
    ],
)
def test_guard_connection_strings_found_before(text: str, secret: str) -> None:
    test_connection_strings(text, secret)


@pytest.mark.parametrize(
    "text",
    [
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "aws_access_key_id AKIAIOSFODNN7EXAMPLE secret 9drTJvcXLB89EXAMPLEaLB8SUBGrH3+zjVb1Gy+e",
        "export AWS_CREDS=AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "creds: kU8+3BjWc2hG0qZ7yT5nVx9L1mR4pD6sA2eF8iJo",
    ],
)
def test_bare_aws_secret_keys(text: str) -> None:
    out = redact(text)
    assert "K7MDENG" not in out and "3BjWc2hG" not in out and "9drTJvcX" not in out, out
    assert "[SECRET]" in out


@pytest.mark.parametrize(
    "text",
    [
        "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3",
        "/usr/lib/python3/dist-packages/paytriage/core",
        "AbstractPaymentServiceFactoryBeanProvider",
    ],
)
def test_guard_forty_character_look_alikes_are_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    ["Bearer abc", "Authorization Bearer x1y2", "sent Bearer q7 to psp", "-H 'Bearer sk1'",
     "Basic YTpi"],
)  # fmt: skip
def test_short_bearer_tokens(text: str) -> None:
    out = redact(text)
    assert "[TOKEN]" in out, out
    for secret in ("abc", "x1y2", "q7", "sk1", "YTpi"):
        assert secret not in out


@pytest.mark.parametrize(
    "text", ["missing Bearer token", "Bearer Token expired", "Basic auth failed", "Basic Auth"]
)
def test_guard_auth_prose_is_kept(text: str) -> None:
    assert redact(text) == text


PEM_BODY = [
    "MIIEpAIBAAKCAQEA7bq98xT0aW3dP6Wc1vYh3bN0q8F2ZyV5mQ+RzXc1uJ4tKd9L",
    "Lr2K5i8/0QwV1bDb7kfNy1WIxIIkxgBw+lUKXT9IQre4SYMiyidjnwQn0I8S0NGM",
    "H3G9BZ8z8wo1iB7aJsa4B0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9",
    "f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8==",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\\n"])
def test_guard_a_pem_block_over_several_lines_is_masked_whole(newline: str) -> None:
    """The whole text goes to redact() at once now (the CLI no longer splits it in lines):
    a block over several lines is masked from BEGIN to END."""
    block = newline.join(
        ["-----BEGIN RSA PRIVATE KEY-----", *PEM_BODY, "-----END RSA PRIVATE KEY-----"]
    )
    out = redact(f"config loaded{newline}{block}{newline}done")
    assert out.startswith("config loaded") and out.endswith("done")
    assert "BEGIN" not in out and "END RSA" not in out
    for line in PEM_BODY:
        assert line[:12] not in out


def test_an_encrypted_pem_block_cut_short_is_masked_whole() -> None:
    text = "\n".join(
        [
            "-----BEGIN RSA PRIVATE KEY-----",
            "Proc-Type: 4,ENCRYPTED",
            "DEK-Info: AES-128-CBC,2B5FD8C8B5AE3D0C9F",
            "",
            *PEM_BODY,
        ]
    )
    out = redact(text)
    assert "2B5FD8C8" not in out
    for line in PEM_BODY:
        assert line[:12] not in out


# -- over-masking -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "sizes 4000 1000 2000 3000",
        "sizes 4000-1000-2000-3000",
        "git@github.com:org/repo.git",
        "git remote add origin git@gitlab.com:payments/paytriage.git",
        "ssh://git@github.com/org/repo.git",
        "assets/icon@2x.png",
    ],
)
def test_look_alikes_are_kept(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "sizes: 4000, 1000, 2000, 3000",
        "buckets=[4000,1000,2000,3000]",
        "2026/11/25 10:30:00",
        "6/11/2026 10:30:00",
        "10:30:00 10:30:05 10:30:10 10:30:15 10:30:20",
        "latencies: 120, 340, 560, 780, 910",
        "counts 1 0 1 1 0 1 0 0 1 1 1 0 1 0 1 0",
        "dated 25/11/2026, 26/11/2026, 27/11/2026",
        "12:00-13:00, 14:00-15:00, 16:00-17:00, 18:00-19:00",
        "took 412ms\n1732540000000 GET /v1/charges",
        "60-83-71 12345678",
        "00:1a:2b:3c:4d:5e",
        "ports 8080/8081/8082/8083",
    ],
)
def test_guard_new_separators_do_not_make_cards_of_lists(text: str) -> None:
    assert redact(text) == text


def test_the_look_alike_numbers_pass_luhn_and_a_prefix() -> None:
    assert is_card_number("4000100020003000")  # so only its shape tells it is no card
    assert all(is_card_number(number) for number in IDS)


# Luhn-valid, issuer-valid 16-digit numbers: ids that pass the card check by chance.
IDS = [
    "4532015112830366",
    "4275582823574162",
    "5184889341834482",
    "6771322156728414",
    "2301319654275417",
    "3530511656804290",
]


@pytest.mark.parametrize(
    "template",
    [
        "order_id=@@",
        "trace_id=@@ span_id=x",
        '{"order_id": @@}',
        '{"orderId":"@@"}',
        "request_id: @@",
        "X-Request-Id: @@",
        "<TransactionId>@@</TransactionId>",
        "?idempotency_key=@@&x=1",
        "Transaction ID @@",
        "'correlationId': '@@'",
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 hash deadbeef@@cafebabe",
    ],
)
def test_random_ids_named_as_ids_are_kept(template: str) -> None:
    for number in IDS:
        text = template.replace("@@", number)
        assert redact(text) == text


@pytest.mark.parametrize(
    "template",
    [
        "card=@@",
        "pan: @@",
        '{"number": "@@"}',
        '{"account_number": @@}',
        "card_id=@@",
        "card id @@",
        "paid with @@ today",
        "@@",
        "ref=@@",
        '{"card": {"number": @@}}',
    ],
)
def test_guard_the_same_numbers_are_masked_without_an_id_name(template: str) -> None:
    for number in IDS:
        out = redact(template.replace("@@", number))
        assert number[:12] not in out, out


def test_guard_famous_test_cards_are_masked_even_under_an_id_name() -> None:
    assert "4111111111111111" not in redact("order_id=4111111111111111")


def test_id_key_names() -> None:
    for name in ("order_id", "orderId", "ORDER_ID", "trace_id", "X-Request-Id", "span_id",
                 "idempotency_key", "Transaction ID", "correlationId"):  # fmt: skip
        assert id_key(name), name
    for name in ("card_id", "pan", "card_number", "account_number", "number", "ref", "card id",
                 "session_id", "cc_num", "order", "reference", "id", "nonce", "ts"):  # fmt: skip
        assert not id_key(name), name


def test_redact_value_keeps_ids_and_masks_cards() -> None:
    out = redact_value(
        {
            "order_id": 4532015112830366,
            "trace_id": "4532015112830366",
            "id": 4111111111111111,
            "number": 4532015112830366,
            "pan": "4532015112830366",
            "card": {"id": "4532015112830366 ", "number": "4532015112830366"},
        }
    )
    assert out == {
        "order_id": 4532015112830366,
        "trace_id": "4532015112830366",
        "id": "[CARD ****1111]",
        "number": "[CARD ****0366]",
        "pan": "[CARD ****0366]",
        "card": {"id": "[CARD ****0366] ", "number": "[CARD ****0366]"},
    }

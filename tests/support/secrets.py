"""Finding card numbers in what the bot wrote, for the tests that grep its outputs."""

from __future__ import annotations

import re

from paytriage.lab.simulate import luhn_valid

# 13-19 digits (spaces or dashes allowed) standing alone: not the digits of a Slack
# permalink (p1700000000000100) nor a float's fraction.
_CANDIDATE = re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?!\w)(?!\.\d)")


def card_numbers(text: str) -> list[str]:
    """Every Luhn-valid card-number-shaped run in ``text``, planted or not."""
    return [
        m.group(0) for m in _CANDIDATE.finditer(text) if luhn_valid(re.sub(r"\D", "", m.group(0)))
    ]

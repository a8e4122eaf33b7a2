"""What the root message says of the evidence: only what stands out, counted honestly, and
log templates Slack cannot misread (issue 20, finding 6)."""

from __future__ import annotations

from paytriage.domain.evidence import (
    BreakdownSection,
    DimensionItem,
    Evidence,
    LogsSection,
    PatternItem,
    TopValue,
)
from paytriage.notify.slack.render import evidence_lines


def test_a_dimension_where_nothing_stands_out_says_so_without_listing_noise() -> None:
    quiet = DimensionItem("reason", standing_out=0, values=8)
    loud = DimensionItem(
        "country",
        top=(TopValue("DE", "DE: 2 % → 9 % failures", significant=True),),
        standing_out=4,
        values=9,
    )
    ev = Evidence(breakdown=BreakdownSection(lines=("psp=stripe: …",), dimensions=(quiet, loud)))
    text = "\n".join(evidence_lines(ev)["breakdown"])
    assert "By reason: none of 8 values stands out" in text
    assert "not significant" not in text
    assert "*By country* (top 1 of the 4 that stand out, of 9 values)" in text


def test_a_log_template_is_shown_as_code_so_its_wildcards_are_not_bold() -> None:
    pattern = PatternItem("timeout calling <*> after <*> ms `x`", count_now=40, count_before=2)
    ev = Evidence(logs=LogsSection(patterns=(pattern,)))
    [line] = evidence_lines(ev)["logs"]
    assert line.endswith("`timeout calling &lt;*&gt; after &lt;*&gt; ms 'x'`")
    assert line.count("`") == 2  # one code span: Slack reads no * inside it as bold

"""Ids shared by the incident message (``render``) and the Slack app's handlers.

Every interactive element of an incident message carries the incident id as its ``value``
(the silence menu: the option value is the duration, the block id names the incident).
"""

from __future__ import annotations

ACK = "paytriage_ack"
MITIGATE = "paytriage_mitigate"
ESCALATE = "paytriage_escalate"
SILENCE = "paytriage_silence"  # static_select; option values below
RESOLVE = "paytriage_resolve"
POSTMORTEM = "paytriage_postmortem"
RUNBOOK = "paytriage_runbook"  # a URL button: Slack still sends an action, acknowledged only
POSTMORTEM_APPROVE = "paytriage_pm_approve"  # value: "<incident id>:<version>"
POSTMORTEM_CHANGES = "paytriage_pm_changes"  # value: "<incident id>:<version>"
SILENCE_MODAL = "paytriage_silence_modal"  # the form asking why, after the menu
DECLARE_MODAL = "paytriage_declare_modal"  # the form of `/triage declare` without a title
ACTIONS_BLOCK = "paytriage_actions:"  # + incident id: the block id of the buttons

SILENCE_OPTIONS = {"1h": "Silence 1 h", "4h": "Silence 4 h", "resolved": "Silence until resolved"}

__all__ = [
    "ACK",
    "ACTIONS_BLOCK",
    "DECLARE_MODAL",
    "ESCALATE",
    "MITIGATE",
    "POSTMORTEM",
    "POSTMORTEM_APPROVE",
    "POSTMORTEM_CHANGES",
    "RESOLVE",
    "RUNBOOK",
    "SILENCE",
    "SILENCE_MODAL",
    "SILENCE_OPTIONS",
]

"""paytriage: payment incident triage for Slack."""

__version__ = "0.1.0"

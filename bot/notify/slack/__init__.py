"""Slack: the incident message (Block Kit), the outbox sender, and the ids both sides share."""

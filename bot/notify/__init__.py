"""Notification channels: what the bot sends out, and how."""

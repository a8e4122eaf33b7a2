"""The core every layer shares: value types and durations, redaction, logging, the bot's own
metrics. It imports nothing else of paytriage."""

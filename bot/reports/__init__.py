"""What people read about a stored incident beyond its Slack message: the incident
commander's summary and the postmortem draft."""

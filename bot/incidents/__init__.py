"""The incident pipeline: detector events grouped into incidents with evidence and a runbook,
written with their notifications (``pipeline``); the minute cycle that feeds it (``cycle``)."""

"""Running detectors over time: fetching signals into a Frame (``fetch``), one detector
stepping through it with persistence and hysteresis (``run``), replays of a past range
(``replay``)."""

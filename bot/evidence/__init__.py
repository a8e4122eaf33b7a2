"""Evidence gathered when an incident opens: breakdown, impact, log patterns, changes, chart.

Each module is pure over data it is given (or behind a small source interface), and every
number keeps the query and window that produced it (``detectors.base.QueryRef``).
"""

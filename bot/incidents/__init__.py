"""Incidents: findings grouped into the problems people page, track and write up."""

from bot.incidents.grouping import Grouper, Incident, related

__all__ = ["Grouper", "Incident", "related"]

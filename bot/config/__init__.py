"""Configuration: one YAML file validated into typed settings; secrets from the environment.

The settings model is built on the detectors' own config models (``paytriage.detectors``),
which build only on ``paytriage.core``: nothing here is imported lazily."""

from __future__ import annotations

from paytriage.config.loader import (
    DEFAULT_CONFIG,
    ConfigError,
    ConfigIssue,
    default_config_path,
    load_settings,
    missing_secrets,
    parse_settings,
)
from paytriage.config.models import Settings

__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "ConfigIssue",
    "Settings",
    "default_config_path",
    "load_settings",
    "missing_secrets",
    "parse_settings",
]

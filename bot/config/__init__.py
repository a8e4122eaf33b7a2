"""Configuration: one YAML file validated into typed settings; secrets from the environment.

The loader and the settings model are imported lazily: ``detectors`` builds on
``bot.config.types`` while ``bot.config.models`` builds on ``detectors``, so importing either
package first must work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.config.types import Duration, EnvStr, Secret, format_duration, parse_duration

if TYPE_CHECKING:
    from bot.config.loader import (
        DEFAULT_CONFIG,
        ConfigError,
        ConfigIssue,
        default_config_path,
        load_settings,
        missing_secrets,
        parse_settings,
    )
    from bot.config.models import Settings

_LAZY = {
    "DEFAULT_CONFIG": "bot.config.loader",
    "ConfigError": "bot.config.loader",
    "ConfigIssue": "bot.config.loader",
    "default_config_path": "bot.config.loader",
    "load_settings": "bot.config.loader",
    "missing_secrets": "bot.config.loader",
    "parse_settings": "bot.config.loader",
    "Settings": "bot.config.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bot.config' has no attribute {name!r}")


__all__ = [
    "DEFAULT_CONFIG",
    "ConfigError",
    "ConfigIssue",
    "Duration",
    "EnvStr",
    "Secret",
    "Settings",
    "default_config_path",
    "format_duration",
    "load_settings",
    "missing_secrets",
    "parse_duration",
    "parse_settings",
]

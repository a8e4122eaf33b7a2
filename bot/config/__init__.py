"""Configuration: one YAML file validated into typed settings; secrets from the environment."""

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
from bot.config.types import Duration, EnvStr, Secret, format_duration, parse_duration

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

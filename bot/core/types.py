"""Field types shared by every config model: durations, env-interpolated strings, secrets.

Values are validated with a pydantic *validation context* holding the environment
(``{"env": Mapping[str, str]}``) so tests never touch ``os.environ``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel as _BaseModel
from pydantic import (
    BeforeValidator,
    ConfigDict,
    GetCoreSchemaHandler,
    PlainSerializer,
    ValidationInfo,
)
from pydantic_core import core_schema

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_FULL = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class StrictModel(_BaseModel):
    """Base of every config model: unknown keys are errors, values are not coerced loosely."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        populate_by_name=True,
        validate_default=True,
        allow_inf_nan=False,  # `average_ticket: .inf` is a typo, never a setting
    )


def _env(info: ValidationInfo | None) -> Mapping[str, str]:
    ctx = info.context if info is not None and info.context else None
    if ctx and "env" in ctx:
        return ctx["env"]
    return os.environ


def parse_duration(value: Any) -> timedelta:
    """Parse a Prometheus-style duration ("30s", "5m", "1h30m", "2d", "1w") into a timedelta.

    Plain numbers are seconds. Raises ValueError with a message a person can act on.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: use a number and a unit, like 30s, 5m, 1h, 2d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return _timedelta(value, value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: use a number and a unit, like 30s, 5m, 1h, 2d")
    text = value.strip()
    if not _DURATION_FULL.fullmatch(text):
        raise ValueError(
            f"bad duration {value!r}: use a number and a unit (ms, s, m, h, d, w), "
            "like 30s, 5m, 1h30m, 2d"
        )
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text))
    return _timedelta(seconds, value)


_MAX_SECONDS = 100 * 365 * 86400  # a century: anything longer is a typo


def _timedelta(seconds: float, value: Any) -> timedelta:
    if not math.isfinite(seconds):
        raise ValueError(f"bad duration {value!r}: not a finite number")
    if seconds > _MAX_SECONDS:
        raise ValueError(f"bad duration {value!r}: longer than 100 years")
    return timedelta(seconds=seconds)


def format_duration(td: timedelta) -> str:
    """The shortest Prometheus-style spelling of a duration ("90s" -> "1m30s")."""
    total = td.total_seconds()
    if total == 0:
        return "0s"
    if total < 1:
        return f"{round(total * 1000)}ms"
    out = []
    rest = round(total)
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(out)


def expand_env(value: Any, info: ValidationInfo) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in a string from the environment."""
    if not isinstance(value, str) or "${" not in value:
        return value
    env = _env(info)

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise ValueError(
            f"environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
        )

    return _ENV_REF.sub(sub, value)


def _serialize_duration(td: timedelta) -> str:
    return format_duration(td)


Duration = Annotated[
    timedelta,
    BeforeValidator(lambda v: parse_duration(v)),
    PlainSerializer(_serialize_duration, return_type=str),
]
"""A duration written like Prometheus does: 30s, 5m, 1h30m, 2d."""


def _positive(td: timedelta) -> timedelta:
    if td <= timedelta(0):
        raise ValueError("must be longer than 0s")
    return td


PositiveDuration = Annotated[
    timedelta,
    BeforeValidator(lambda v: _positive(parse_duration(v))),
    PlainSerializer(_serialize_duration, return_type=str),
]
"""A duration that must be longer than zero: a period, a timeout, a window."""

EnvStr = Annotated[str, BeforeValidator(expand_env)]
"""A string in which ``${VAR}`` / ``${VAR:-default}`` are taken from the environment."""


def _label_name(value: Any) -> Any:
    if isinstance(value, str) and not LABEL_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return value


LabelName = Annotated[str, BeforeValidator(_label_name)]


class Secret:
    """A secret that lives in an environment variable, never in the config file.

    Its ``repr``/``str`` never show the value. ``value`` is ``None`` when the variable is
    unset; whether that is an error depends on whether the section using it is enabled
    (see :func:`paytriage.config.loader.missing_secrets`).
    """

    __slots__ = ("_value", "env_var")

    def __init__(self, env_var: str, value: str | None) -> None:
        self.env_var = env_var
        self._value = value

    @property
    def is_set(self) -> bool:
        return bool(self._value)

    def reveal(self) -> str:
        """The secret's value; raises if the environment variable is not set."""
        if not self._value:
            raise LookupError(f"environment variable {self.env_var} is not set")
        return self._value

    def __repr__(self) -> str:
        return f"Secret(${{{self.env_var}}}, {'set' if self.is_set else 'unset'})"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other.env_var == self.env_var

    def __hash__(self) -> int:
        return hash(self.env_var)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda s: f"${{{s.env_var}}}"
            ),
        )

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> Secret:
        if isinstance(value, Secret):
            return value
        if not isinstance(value, str):
            raise ValueError(
                "a secret must be a reference to an environment variable, written ${NAME}"
            )
        name = secret_ref(value)
        if name is None:
            raise ValueError(
                "secrets must come from the environment: write ${NAME} and set "
                "NAME, never put the value in the file"
            )
        # A value read from a file often ends in a newline; one of blanks is no secret.
        return cls(name, (_env(info).get(name) or "").strip() or None)


def secret_ref(value: Any) -> str | None:
    """The environment variable a secret's ``${NAME}`` names, or None if it is not one."""
    if not isinstance(value, str):
        return None
    m = _SECRET_REF.fullmatch(value.strip())
    return m.group(1) if m else None


def iso(t: datetime) -> str:
    """A time as ISO 8601 in UTC with a ``Z``: how the bot writes every time it stores."""
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")

"""Load the YAML file into Settings; every problem becomes a ConfigIssue with a key path."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from paytriage.config.models import Settings
from paytriage.core.files import FileProblem, compose_yaml, load_yaml, read_text
from paytriage.core.redact import redact
from paytriage.core.types import Secret, secret_ref

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "config" / "paytriage.yaml"


def default_config_path() -> Path:
    """$PAYTRIAGE_CONFIG, else ./config/paytriage.yaml, else the checkout's default file."""
    env = os.environ.get("PAYTRIAGE_CONFIG")
    if env:
        return Path(env)
    local = Path("config") / "paytriage.yaml"
    return local if local.exists() else DEFAULT_CONFIG


@dataclass(frozen=True)
class ConfigIssue:
    path: str  # dotted key path, e.g. "detectors.decline_spike.window"
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line else ""
        return f"{self.path or '<root>'}{where}: {self.message}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` says where and why. The message is
    redacted: a value quoted back (a database URL from ``${DATABASE_URL}``) may carry a
    password."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  - {i}" for i in issues)
        super().__init__(
            redact(f"{source}: {len(issues)} problem(s) in the configuration:\n{lines}")
        )


def line_index(text: str, first_line: int = 1) -> dict[tuple[str | int, ...], int]:
    """Map each key path of the YAML document to its line number (the document's first
    line being ``first_line``); empty when the text is not YAML."""
    index: dict[tuple[str | int, ...], int] = {}
    try:
        root = compose_yaml(text)
    except yaml.YAMLError:
        return index
    seen: set[int] = set()

    def walk(node: yaml.Node | None, path: tuple[str | int, ...]) -> None:
        if node is None or id(node) in seen:  # an alias: its lines are the anchor's
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                p = (*path, str(key.value))
                index[p] = key.start_mark.line + first_line
                walk(value, p)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                p = (*path, i)
                index[p] = item.start_mark.line + first_line
                walk(item, p)

    walk(root, ())
    return index


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """Field names (and aliases) of the model at ``loc`` (the parent of an unknown key)."""
    model: Any = Settings
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return []
        model = field.annotation
        for arg in getattr(model, "__args__", ()) or ():
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                model = arg
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [f.alias or n for n, f in model.model_fields.items()]
    return []


def _describe(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    inp = err.get("input")
    if kind == "extra_forbidden":
        key = str(err["loc"][-1])
        close = difflib.get_close_matches(key, _allowed_keys(tuple(err["loc"][:-1])), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown key {key!r}{hint}"
    if kind == "missing":
        return "required key is missing"
    msg: str = err["msg"]
    msg = msg.removeprefix("Value error, ")
    if kind.endswith(("_type", "_parsing")) and inp is not None:
        return f"wrong type: {msg.lower()}, got {type(inp).__name__} {_short(inp)}"
    return msg


_WHERE = re.compile(r"^([A-Za-z_][\w.\[\]]*): (.+)$", re.S)


def _located(err: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """The key path and message of an error. A check across sections (a model validator
    of the whole file) has no key path of its own: its message names one per problem,
    ``path: problem; path: problem``, taken back apart here."""
    loc = tuple(err["loc"])
    message = _describe(err)
    if loc or err["type"] != "value_error":
        return [(loc, message)]
    out: list[tuple[tuple[str | int, ...], str]] = []
    for part in message.split("; "):
        m = _WHERE.match(part)
        if m is None:
            return [(loc, message)]
        path: list[str | int] = []
        for piece in re.findall(r"[^.\[\]]+|\[\d+\]", m.group(1)):
            path.append(int(piece[1:-1]) if piece.startswith("[") else piece)
        out.append((tuple(path), m.group(2)))
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _is_enabled(model: BaseModel) -> bool:
    return bool(getattr(model, "enabled", True))


def _walk_secrets(
    model: BaseModel, loc: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], Secret]]:
    if not _is_enabled(model):
        return
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, Secret):
            yield (*loc, name), value
        elif isinstance(value, BaseModel):
            yield from _walk_secrets(value, (*loc, name))


def _missing(loc: tuple[str | int, ...], env_var: str) -> ConfigIssue:
    return ConfigIssue(
        _path(loc), f"environment variable {env_var} is not set (the secret is read from it)"
    )


def missing_secrets(settings: Settings) -> list[ConfigIssue]:
    """Secrets referenced by enabled sections whose environment variable is not set."""
    return [_missing(loc, s.env_var) for loc, s in _walk_secrets(settings, ()) if not s.is_set]


def _secret_field(annotation: Any) -> bool:
    return annotation is Secret or Secret in (getattr(annotation, "__args__", ()) or ())


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for arg in (annotation, *(getattr(annotation, "__args__", ()) or ())):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _raw_missing_secrets(
    data: Mapping[str, Any],
    model: type[BaseModel],
    env: Mapping[str, str],
    loc: tuple[str | int, ...] = (),
) -> Iterator[ConfigIssue]:
    """Missing secrets found in the raw document, for when it does not validate: they are
    reported with the other problems, not only after those are fixed."""
    enabled_field = model.model_fields.get("enabled")
    enabled = data.get("enabled", enabled_field.default if enabled_field else True)
    if enabled is False:
        return
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = data.get(key, data.get(name))
        if value is None:
            continue
        if _secret_field(field.annotation):
            env_var = secret_ref(value)
            if env_var is not None and not (env.get(env_var) or "").strip():
                yield _missing((*loc, key), env_var)
            continue
        sub = _model_of(field.annotation)
        if sub is not None and isinstance(value, Mapping):
            yield from _raw_missing_secrets(value, sub, env, (*loc, key))


def parse_settings(
    text: str,
    source: str = "<config>",
    env: Mapping[str, str] | None = None,
    secrets_for: tuple[str, ...] | None = None,
) -> Settings:
    """Validate YAML text; raise ConfigError listing every problem with its key path.

    Every referenced secret must be set, or with ``secrets_for`` only those under these
    top-level sections (``paytriage backtest`` reads Prometheus and needs no Slack token).
    """
    env = os.environ if env is None else env
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [ConfigIssue("", f"not valid YAML: {problem}", line)]) from None
    if data is None:
        raise ConfigError(
            source,
            [ConfigIssue("", "the file is empty: write at least one section (see config/)")],
        )
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must be a mapping of keys")])

    def wanted(issue: ConfigIssue) -> bool:
        return secrets_for is None or _split(issue.path)[0] in secrets_for

    lines = line_index(text)
    try:
        settings = Settings.model_validate(data, context={"env": env})
    except ValidationError as exc:
        issues = []
        for err in exc.errors():
            for loc, message in _located(err):
                issues.append(ConfigIssue(_path(loc), message, _nearest_line(lines, loc)))
        named = {i.path for i in issues}
        for issue in _raw_missing_secrets(data, Settings, env):
            if wanted(issue) and issue.path not in named:
                line = _nearest_line(lines, _split(issue.path))
                issues.append(ConfigIssue(issue.path, issue.message, line))
        raise ConfigError(source, issues) from None
    problems = [p for p in missing_secrets(settings) if wanted(p)]
    if problems:
        raise ConfigError(
            source,
            [
                ConfigIssue(p.path, p.message, _nearest_line(lines, _split(p.path)))
                for p in problems
            ],
        )
    return settings


def _split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def _nearest_line(
    lines: Mapping[tuple[str | int, ...], int], loc: tuple[str | int, ...]
) -> int | None:
    for n in range(len(loc), 0, -1):
        line = lines.get(tuple(loc[:n]))
        if line is not None:
            return line
    return None


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    secrets_for: tuple[str, ...] | None = None,
) -> Settings:
    """Load and validate a config file (default: :func:`default_config_path`)."""
    p = Path(path) if path is not None else default_config_path()
    try:
        text = read_text(p)
    except FileProblem as exc:
        raise ConfigError(str(p), [ConfigIssue("", exc.problem)]) from None
    return parse_settings(text, str(p), env, secrets_for)

"""Reading the files a person hands the bot (configuration, runbooks, templates, labels)
with limits: a size cap checked while reading (``/dev/zero`` or a FIFO has no size to
stat), UTF-8 required, and YAML whose aliases cannot expand without bound.

Every problem is a :class:`FileProblem` naming the file and what is wrong with it, never a
traceback: a binary file, a 2 GB file, a "billion laughs" document of nine lines or a
recursive alias are all things a person can mistype or be sent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_TEXT_BYTES",
    "MAX_YAML_VALUES",
    "FileProblem",
    "YamlLimitError",
    "compose_yaml",
    "load_yaml",
    "read_text",
]

MAX_TEXT_BYTES = 1 << 20  # 1 MiB: a configuration or a runbook is a few kilobytes
MAX_YAML_VALUES = 100_000  # values of a document once every alias is expanded


class FileProblem(ValueError):
    """A file cannot be used; the message names it and says why."""

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def read_text(path: Path | str, limit: int = MAX_TEXT_BYTES) -> str:
    """The UTF-8 text of a file of at most ``limit`` bytes."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = f.read(limit + 1)
    except IsADirectoryError:
        raise FileProblem(p, "is a directory, not a file") from None
    except OSError as exc:
        raise FileProblem(p, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise FileProblem(p, f"larger than {limit // 1024} KiB: is this the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            p, f"not UTF-8 text (byte {exc.start}): a binary file or another encoding?"
        ) from None


class YamlLimitError(yaml.MarkedYAMLError):
    """A YAML document whose aliases recurse or expand past :data:`MAX_YAML_VALUES`."""


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node, limit: int) -> None:
    """Raise YamlLimitError when an alias refers to a node that contains it, or when the
    document would hold more than ``limit`` values once every alias is expanded. Sizes are
    counted per node, once (not per use), so the check is linear in the document's text."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, finished = stack.pop()
        key = id(node)
        if finished:
            open_nodes.discard(key)
            size = 1 + sum(sizes[id(c)] for c in _children(node))
            if size > limit:
                raise YamlLimitError(
                    problem=f"aliases expand this document past {limit:,} values",
                    problem_mark=node.start_mark,
                )
            sizes[key] = size
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise YamlLimitError(
                    problem="an alias refers to a value that contains it (recursive alias)",
                    problem_mark=child.start_mark,
                )
            if id(child) not in sizes:
                stack.append((child, False))


def compose_yaml(text: str, limit: int = MAX_YAML_VALUES) -> yaml.Node | None:
    """The node graph of one YAML document (safe tags only), its aliases checked."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
    finally:
        loader.dispose()
    if node is not None:
        _check_expansion(node, limit)
    return node


def load_yaml(text: str, limit: int = MAX_YAML_VALUES) -> Any:
    """``yaml.safe_load`` of one document whose aliases are checked before any value is
    built: raises ``yaml.YAMLError`` (:class:`YamlLimitError` for the aliases)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, limit)
        return loader.construct_document(node)
    finally:
        loader.dispose()

"""The house's layers, read from the code: every import goes down a layer (never up, never
sideways between two packages of one layer), ``paytriage run`` never imports the lab, and
the wheel lists every package of the tree."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top: a package imports only packages of the layers before its own. The README's
# architecture section draws the same list.
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("domain",),
    ("detectors",),
    ("config",),
    ("sources", "store"),
    ("detection", "evidence"),
    ("incidents",),
    ("notify",),
    ("reports",),
    ("slack_app",),
    ("app",),
    ("lab",),
    ("cli",),
]
RANK = {pkg: i for i, layer in enumerate(LAYERS) for pkg in layer}
# Folders and the import names they install as (pyproject.toml's package-dir).
FOLDERS = {"bot": "paytriage", "detectors": "paytriage.detectors"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    base = FOLDERS[rel.parts[0]]
    parts = [p for p in rel.parts[1:] if p != "__init__"]
    return ".".join([base, *parts])


def layer_of(module: str) -> str | None:
    """The first-level package of a ``paytriage`` module (None for ``paytriage`` itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def imports(path: Path) -> list[tuple[int, str]]:
    """The ``paytriage`` modules a file imports (at any depth in the file), with lines."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        out.extend((node.lineno, n) for n in names if n.split(".")[0] == "paytriage")
    return out


def test_every_package_has_a_layer() -> None:
    packages = {layer_of(module_name(p)) for p in sources()} - {None}
    assert packages <= set(RANK), f"packages with no layer: {sorted(packages - set(RANK))}"


def test_no_import_goes_up_or_across_a_layer() -> None:
    wrong = []
    for path in sources():
        own = layer_of(module_name(path))
        if own is None:
            continue
        for line, target in imports(path):
            other = layer_of(target)
            if other is None or other == own:
                continue
            if RANK[other] >= RANK[own]:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target}")
    assert wrong == []


def test_detectors_are_declared_not_discovered() -> None:
    """No lazy imports or reflection stand in for the registry and the layers."""
    found = []
    for path in sources():
        text = path.read_text(encoding="utf-8")
        for needle in ("importlib.import_module", "inspect.signature", "def __getattr__("):
            if needle in text:
                found.append(f"{path.relative_to(ROOT)}: {needle}")
    assert found == []


def test_the_running_bot_never_imports_the_lab() -> None:
    code = (
        "import sys\n"
        "import paytriage.cli, paytriage.app.service, paytriage.app.compose\n"
        "import paytriage.slack_app.app, paytriage.slack_app.run\n"
        "print(sorted(m for m in sys.modules if m.startswith('paytriage.lab')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]"


def test_the_wheel_lists_every_package_of_the_tree() -> None:
    """setuptools cannot find packages in mapped folders: pyproject.toml lists them."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    tree = {
        module_name(init)
        for folder in FOLDERS
        for init in (ROOT / folder).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert listed == tree


def test_the_slack_app_and_the_notifiers_do_not_pull_in_the_detection_cycle() -> None:
    """They speak the notification protocol (``paytriage.domain.notifications``) and read the
    store; the pipeline and the minute cycle are the scheduler's."""
    code = (
        "import sys\n"
        "import paytriage.slack_app.app, paytriage.notify.worker\n"
        "import paytriage.notify.slack.sender, paytriage.notify.pagerduty.sender\n"
        "print(sorted(m for m in sys.modules\n"
        "             if m.startswith(('paytriage.incidents', 'paytriage.detection'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/"
    )
    assert out.stdout.strip() == "[]"

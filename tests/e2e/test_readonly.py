"""The container's promise without a container engine: the bot runs with a read-only root
filesystem apart from its data volume (and a tmpfs on /tmp), as deploy/compose.yaml runs the
image. A private mount namespace (util-linux ``unshare``) remounts / read-only for the bot's
processes only; the data directory is bound at /mnt, as the volume is at /var/lib/paytriage.
The image's own settings (non-root user, the volume, where caches go) are checked against
the Dockerfile and compose file. Running as uid 10001 is left to the image: here the Python
installation is root's."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, Stack
from tests.support.http import free_port, get

pytestmark = pytest.mark.integration
DATA = "/mnt/data"  # inside the namespace
CODE = "/mnt/code"  # the checkout, read-only (it may live under /tmp, which gets a tmpfs)


def in_readonly_root(data: Path, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    q = shlex.quote
    script = (
        f"mount -t tmpfs tmpfs /mnt && mkdir {DATA} {CODE} && "
        f"mount --bind {q(str(data))} {DATA} && "
        f"mount --bind {q(str(ROOT))} {CODE} && mount -o remount,bind,ro {CODE} && "
        "mount --rbind / / && mount -o remount,bind,ro / && mount -t tmpfs tmpfs /tmp && "
        f"cd {DATA} && exec {' '.join(q(a) for a in argv)}"
    )
    return subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


def import_tree(data: Path) -> str:
    """The package as the wheel installs it (``paytriage`` and ``paytriage.detectors``), as
    links into the read-only checkout: the editable install maps the import name to the
    checkout's path, which the tmpfs on /tmp hides when the checkout lives there."""
    tree = data / "site" / "paytriage"
    tree.mkdir(parents=True)
    for entry in (ROOT / "bot").iterdir():
        if entry.name != "__pycache__":
            (tree / entry.name).symlink_to(f"{CODE}/bot/{entry.name}")
    (tree / "detectors").symlink_to(f"{CODE}/detectors")
    return f"{DATA}/site"


def image_env(data: Path) -> dict[str, str]:
    """What the Dockerfile sets, with the checkout's files for the image's /opt ones."""
    return {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": import_tree(data),
        "HOME": DATA,
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PAYTRIAGE_DATA_DIR": DATA,
        "PAYTRIAGE_DB_URL": f"sqlite:///{DATA}/paytriage.db",
        "PAYTRIAGE_RUNBOOKS_DIR": f"{CODE}/runbooks",
        "PAYTRIAGE_TEMPLATES_DIR": f"{CODE}/templates",
        "PAYTRIAGE_CONFIG": f"{CODE}/config/paytriage.yaml",
    }


def test_the_root_filesystem_really_is_read_only_there(tmp_path: Path) -> None:
    script = f"touch {CODE}/x; touch /usr/x; touch {DATA}/y; touch /tmp/z"
    proc = in_readonly_root(tmp_path, ["sh", "-c", script], {})
    out, _ = proc.communicate(timeout=30)
    assert out.count("Read-only file system") == 2, out  # the code and /usr; not data, /tmp
    assert (tmp_path / "y").exists() and not (ROOT / "x").exists()


def test_the_demo_runs_with_only_its_data_volume_writable(tmp_path: Path) -> None:
    # Two hours hold an incident: its Slack messages, chart, page and postmortem are written.
    argv = [sys.executable, "-m", "paytriage.cli", "demo", "--quiet", "--hours", "2"]
    proc = in_readonly_root(tmp_path, [*argv, "--out", f"{DATA}/demo"], image_env(tmp_path))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    assert "Read-only file system" not in out
    assert list((tmp_path / "demo" / "slack").glob("*.json"))
    assert list((tmp_path / "demo" / "charts").glob("*.png"))  # matplotlib: cache on /tmp
    assert list((tmp_path / "demo" / "postmortems").glob("INC-*.md"))
    assert (tmp_path / "demo" / "incidents.json").exists()


def test_run_starts_serves_and_stops_with_only_its_data_volume_writable(
    stack: Stack, tmp_path: Path
) -> None:
    port = free_port()
    cfg = tmp_path / "run.yaml"  # read from the data volume, as a mounted config would be
    cfg.write_text(
        f"sources:\n  prometheus: {{url: '{stack.prometheus_url}'}}\n"
        f"  opensearch: {{hosts: ['{stack.opensearch_url}']}}\n"
        f"slack: {{enabled: false}}\nserver: {{port: {port}}}\n"
        "store: {url: '${PAYTRIAGE_DB_URL}'}\n"
        "evidence: {chart_dir: '${PAYTRIAGE_DATA_DIR}/charts'}\n"
        "runbooks: {dir: '${PAYTRIAGE_RUNBOOKS_DIR}'}\n"
    )
    proc = in_readonly_root(
        tmp_path,
        [sys.executable, "-m", "paytriage.cli", "run", "--config", f"{DATA}/run.yaml"],
        image_env(tmp_path),
    )
    try:
        deadline = time.monotonic() + 60
        status = 0
        while time.monotonic() < deadline and status != 200 and proc.poll() is None:
            try:
                status, _ = get(f"http://127.0.0.1:{port}/readyz")
            except OSError:
                time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert status == 200, out[-3000:]
    assert proc.returncode == 0, out[-3000:]
    assert "Read-only file system" not in out
    assert (tmp_path / "paytriage.db").exists()  # the store is on the volume


def test_the_image_runs_as_non_root_with_its_data_on_the_volume() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    compose = (ROOT / "deploy" / "compose.yaml").read_text()
    user = re.findall(r"^USER\s+(\S+)", docker, re.M)
    assert user and user[-1].split(":")[0] not in ("0", "root")
    env = dict(re.findall(r"(PAYTRIAGE_DATA_DIR|MPLCONFIGDIR|PAYTRIAGE_DB_URL)=(\S+)", docker))
    volume = re.search(r'^VOLUME \["([^"]+)"\]', docker, re.M)
    assert volume and env["PAYTRIAGE_DATA_DIR"] == volume.group(1)
    assert env["PAYTRIAGE_DB_URL"].endswith(f"{volume.group(1)}/paytriage.db")
    assert env["MPLCONFIGDIR"].startswith("/tmp/")
    assert "PYTHONDONTWRITEBYTECODE=1" in docker
    assert "read_only: true" in compose and '"/tmp"' in compose
    assert f":{volume.group(1)}" in compose

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import lensloop, make_image_folder, write_png

COMMANDS = [
    [],
    ["init"],
    ["ingest"],
    ["status"],
    ["datasets"],
    ["datasets", "list"],
    ["datasets", "fetch"],
    ["db", "upgrade"],
    ["demo"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(command: list[str]) -> None:
    result = lensloop(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert len(result.stdout.splitlines()) > 5


def test_import_and_help_stay_light() -> None:
    code = (
        "import sys, lensloop.cli; "
        "print(sorted(m for m in ('numpy','PIL','sqlalchemy','pandas','torch','tifffile') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_version() -> None:
    result = lensloop("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("lensloop ")


def test_init_ingest_status_round_trip(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "data", {"a": 3, "b": 2})
    project = tmp_path / "p"
    assert lensloop("init", project, "--classes", "a,b").returncode == 0

    first = lensloop(
        "ingest", project, tmp_path / "data", "--labels-from-folders", "--split", "val=0.4"
    )
    assert first.returncode == 0, first.stderr
    assert "added" in first.stdout

    again = lensloop("ingest", project, tmp_path / "data", "--labels-from-folders")
    assert again.returncode == 0
    assert "Nothing new: every image is already in the catalog." in again.stdout

    status = lensloop("status", project, "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["schema"] == 1
    assert data["images"]["total"] == 5
    assert data["splits"]["val"] == 2  # round(0.4 * 3) + round(0.4 * 2)
    assert {c["path"]: c["labelled_images"] for c in data["labels"]["classes"]} == {"a": 3, "b": 2}

    human = lensloop("status", project)
    assert "labelled images" in human.stdout
    assert [line.split()[1:4] for line in human.stdout.splitlines() if line.startswith("│ a")] == [
        ["a", "│", "3"]
    ]


def test_bad_files_exit_zero_but_all_bad_exits_one(tmp_path: Path) -> None:
    project = tmp_path / "p"
    lensloop("init", project)
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "zero.png").write_bytes(b"")
    write_png(tmp_path / "mixed" / "ok.png", seed=1)
    mixed = lensloop("ingest", project, tmp_path / "mixed")
    assert mixed.returncode == 0
    assert "zero.png" in mixed.stdout
    assert "could not be ingested" in mixed.stdout

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "zero.png").write_bytes(b"")
    bad = lensloop("ingest", project, tmp_path / "bad")
    assert bad.returncode == 1
    assert "nothing could be ingested" in bad.stderr


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["status", "{tmp}/nowhere"], 1, "no lensloop project at"),
        (["init", "{tmp}/p", "--task", "paint"], 2, "valid tasks are: classify, segment, count"),
        (["ingest", "{tmp}/p", "{tmp}/missing"], 1, "source not found"),
        (["ingest", "{tmp}/p", "{tmp}", "--split", "val=2"], 1, "must be in [0, 1)"),
        (["ingest", "{tmp}/p", "{tmp}", "--depth", "2"], 2, "--depth needs --labels-from-folders"),
        (["ingest", "{tmp}/p", "{tmp}", "--pages", "all"], 2, "valid: each, first, stack"),
        (["datasets", "fetch", "mnist"], 1, "unknown data set 'mnist'; valid names are"),
    ],
)
def test_errors_are_one_clear_line(
    tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    lensloop("init", tmp_path / "p")
    result = lensloop(*[a.format(tmp=tmp_path) for a in args], cache=tmp_path / "cache")
    assert result.returncode == code, result.stdout + result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_killed_ingest_rerun_ends_with_exact_count(tmp_path: Path) -> None:
    """An ingest killed half-way keeps its committed batches; a re-run adds exactly the rest."""
    import signal
    import sqlite3
    import time

    n = 1500
    make_image_folder(tmp_path / "data", {"a": n // 2, "b": n - n // 2})
    project = tmp_path / "p"
    assert lensloop("init", project).returncode == 0
    args = [sys.executable, "-m", "lensloop", "ingest", str(project), str(tmp_path / "data")]
    proc = subprocess.Popen(
        [*args, "--labels-from-folders", "--batch-size", "50", "--workers", "0"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    db = project / "catalog.sqlite"
    committed = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        with sqlite3.connect(db) as connection:
            committed = connection.execute("select count(*) from images").fetchone()[0]
        if committed >= 200:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "ingest finished before it could be killed; raise n"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as connection:
        after_kill = connection.execute("select count(*) from images").fetchone()[0]
        labels = connection.execute("select count(*) from annotations").fetchone()[0]
    assert 200 <= after_kill < n
    assert labels == after_kill  # every committed image came with its label, nothing half-written

    rerun = lensloop("ingest", project, tmp_path / "data", "--labels-from-folders")
    assert rerun.returncode == 0, rerun.stderr
    with sqlite3.connect(db) as connection:
        total = connection.execute("select count(*) from images").fetchone()[0]
        distinct = connection.execute("select count(distinct sha256) from images").fetchone()[0]
        labels = connection.execute("select count(*) from annotations").fetchone()[0]
        unsplit = connection.execute("select count(*) from images where split is null").fetchone()
    assert total == distinct == labels == n
    assert unsplit[0] == 0

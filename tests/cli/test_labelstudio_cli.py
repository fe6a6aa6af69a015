"""`lensloop labelstudio config / export / import` through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree

from conftest import lensloop
from lsfakes import annotation, choice, image_ids, json_task, keypoint, sized_project


def test_config_export_import_round(tmp_path: Path) -> None:
    project = sized_project(tmp_path, task="count", classes=["cell"])
    ids = image_ids(project)
    root = project.root
    project.close()

    done = lensloop("labelstudio", "config", root)
    assert done.returncode == 0, done.stderr
    view = ElementTree.fromstring(done.stdout)
    assert [c.tag for c in view] == ["Image", "KeyPointLabels", "Choices"]

    tasks_file = tmp_path / "tasks.json"
    done = lensloop(
        "labelstudio",
        "export",
        root,
        tasks_file,
        "--image-url",
        "local-files",
        "--files-root",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "2 tasks (0 with predictions)" in done.stderr
    tasks = json.loads(tasks_file.read_text())
    by_id = sorted((i, name) for name, i in ids.items())
    assert [t["data"] for t in tasks] == [
        {"image": f"/data/local-files/?d=images/{name}", "lensloop_image_id": i}
        for i, name in by_id
    ]
    again = lensloop("labelstudio", "export", root, tasks_file)
    assert again.returncode == 1
    assert "pass --force" in again.stderr

    export = tmp_path / "export.json"
    export.write_text(
        json.dumps(
            [
                json_task(
                    1,
                    tasks[0]["data"],
                    [annotation(5, [keypoint(50, 50, "cell"), choice("full", name="status")])],
                )
            ]
        )
    )
    done = lensloop("labelstudio", "import", root, export, "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["added"], report["by_kind"]) == (1, {"points": 1})
    done = lensloop("labelstudio", "import", root, export)
    assert done.returncode == 0
    assert "1 already imported" in done.stdout

    export.write_text(
        json.dumps([json_task(2, tasks[0]["data"], [annotation(6, [keypoint(5, 5, "virus")])])])
    )
    done = lensloop("labelstudio", "import", root, export)
    assert done.returncode == 1
    assert (
        "task 2, annotation 6, result k1: label 'virus' is not in the project's label schema (cell)"
        in done.stderr
    )

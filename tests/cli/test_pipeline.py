"""`lensloop pipeline`: the generated dvc.yaml / params.yaml, and `dvc repro` end to end."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import make_coloured_folder, make_image_folder
from lensloop.cli import app
from lensloop.errors import ConfigError, ProjectError
from lensloop.project import Project
from lensloop.project.ingest import IngestOptions, ingest
from lensloop.project.pipeline import (
    OUTPUT_DIR,
    STAGES,
    PipelineOptions,
    build_dvc_yaml,
    build_params,
    default_epochs,
    source_param,
    stage_summary,
    summary_json,
    write_pipeline,
)
from servers import require_integration

_REF = re.compile(r"\$\{([a-z_]+\.[a-z_]+)\}")


def _files(entries: list[Any]) -> list[str]:
    return [e if isinstance(e, str) else next(iter(e)) for e in entries]


def _commands(stage: dict[str, Any]) -> list[str]:
    cmd = stage["cmd"]
    return cmd if isinstance(cmd, list) else [cmd]


# -- the generated files --------------------------------------------------------------------


def test_stages_chain_deps_to_the_previous_stage_outputs() -> None:
    stages = build_dvc_yaml(PipelineOptions(source="data"))["stages"]
    assert tuple(stages) == STAGES
    assert stages["ingest"]["deps"] == ["${ingest.source}", "lensloop.toml"]
    assert stages["embed"]["deps"] == ["pipeline/ingest.json", "lensloop.toml"]
    assert stages["train"]["deps"] == ["pipeline/embed.json", "lensloop.toml"]
    assert stages["evaluate"]["deps"] == ["pipeline/train.json"]
    assert stages["predict"]["deps"] == ["pipeline/train.json"]
    assert stages["ingest"]["outs"] == ["pipeline/ingest.json"]
    assert stages["embed"]["outs"] == ["pipeline/embed.json"]
    assert stages["train"]["outs"] == ["pipeline/train.json"]
    assert stages["evaluate"]["metrics"] == [{"pipeline/metrics.json": {"cache": False}}]
    assert stages["predict"]["outs"] == ["pipeline/predictions.csv"]
    assert "--labels-from-folders" in _commands(stages["ingest"])[0]
    assert "--model latest" in stages["evaluate"]["cmd"]
    assert "--model latest" in stages["predict"]["cmd"]


def test_no_two_stages_share_an_output_and_the_project_state_is_not_one() -> None:
    stages = build_dvc_yaml(PipelineOptions(source="data", metadata="meta.csv"))["stages"]
    outs = [f for s in stages.values() for f in _files(s.get("outs", []) + s.get("metrics", []))]
    assert len(outs) == len(set(outs))
    assert all(f.startswith(f"{OUTPUT_DIR}/") for f in outs)
    every = outs + [d for s in stages.values() for d in s["deps"]]
    assert not any(p.startswith(("catalog", "embeddings", "models")) for p in every)


@pytest.mark.parametrize("metadata", [None, "meta.csv"])
def test_every_parameter_a_stage_reads_is_declared_and_exists(metadata: str | None) -> None:
    options = PipelineOptions(source="data", metadata=metadata)
    stages = build_dvc_yaml(options)["stages"]
    params = build_params(options)
    for name, stage in stages.items():
        text = " ".join(_commands(stage) + stage["deps"])
        used = set(_REF.findall(text))
        assert used <= set(stage.get("params", [])), name
        for key in stage.get("params", []):
            section, field = key.split(".")
            assert field in params[section], key
    # Only the stages that use a parameter declare it: epochs reruns train and after.
    users = {name for name, s in stages.items() if "train.epochs" in s.get("params", [])}
    assert users == {"train"}
    assert {n for n, s in stages.items() if "embed.backbone" in s.get("params", [])} == {
        "embed",
        "train",
    }


def test_metadata_csv_is_a_dependency_and_a_parameter() -> None:
    options = PipelineOptions(source="data", metadata="meta.csv", key="file")
    ingest_stage = build_dvc_yaml(options)["stages"]["ingest"]
    assert "${ingest.metadata}" in ingest_stage["deps"]
    assert '--metadata "${ingest.metadata}" --key "${ingest.key}"' in ingest_stage["cmd"][0]
    assert build_params(options)["ingest"] == {
        "source": "data",
        "metadata": "meta.csv",
        "key": "file",
        "split": "val=0.2,test=0.1",
        "seed": 0,
    }
    plain = build_dvc_yaml(PipelineOptions(source="data", labels_from_folders=False))
    assert "--labels-from-folders" not in plain["stages"]["ingest"]["cmd"][0]
    assert "--metadata" not in plain["stages"]["ingest"]["cmd"][0]


def test_params_hold_the_options_and_the_trainers_defaults() -> None:
    from lensloop.train.config import TrainConfig

    assert default_epochs("probe") == TrainConfig().max_iter
    assert default_epochs("finetune") == TrainConfig().epochs
    options = PipelineOptions(source="data", backbone="features", epochs=5, seed=3)
    assert build_params(options) == {
        "ingest": {"source": "data", "split": "val=0.2,test=0.1", "seed": 3},
        "embed": {"backbone": "features"},
        "train": {"method": "probe", "epochs": 5, "seed": 3},
        "evaluate": {"split": "test"},
    }
    finetune = build_params(PipelineOptions(source="data", method="finetune"))
    assert finetune["train"]["epochs"] == TrainConfig().epochs


@pytest.mark.parametrize(
    ("field", "value"), [("method", "svm"), ("eval_split", "pool"), ("epochs", 0), ("seed", -1)]
)
def test_bad_options_are_refused(field: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=str(value)):
        PipelineOptions(source="data", **{field: value})


def test_source_paths_are_relative_inside_the_project_else_absolute(tmp_path: Path) -> None:
    root = tmp_path / "p"
    assert source_param(root / "data" / "raw", root) == "data/raw"
    assert source_param(tmp_path / "elsewhere", root) == str((tmp_path / "elsewhere").resolve())


def test_existing_files_are_kept_unless_forced(tmp_path: Path) -> None:
    options = PipelineOptions(source="data")
    written = write_pipeline(tmp_path, options)
    assert [p.name for p in written] == ["dvc.yaml", "params.yaml"]
    assert (tmp_path / OUTPUT_DIR).is_dir()
    text = (tmp_path / "dvc.yaml").read_text()
    assert text.startswith("# Written by `lensloop pipeline init`")
    assert yaml.safe_load(text) == build_dvc_yaml(options)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == build_params(options)
    with pytest.raises(ProjectError, match=r"dvc\.yaml and params\.yaml already in .*--force"):
        write_pipeline(tmp_path, PipelineOptions(source="other"))
    write_pipeline(tmp_path, PipelineOptions(source="other"), force=True)
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["ingest"]["source"] == "other"


# -- the commands ---------------------------------------------------------------------------


def test_init_creates_the_project_and_refuses_to_overwrite(tmp_path: Path) -> None:
    make_image_folder(tmp_path / "p" / "data", {"a": 1})
    runner = CliRunner()
    project = tmp_path / "p"
    args = ["pipeline", "init", str(project), "--source", str(project / "data")]
    first = runner.invoke(app, [*args, "--backbone", "features", "--epochs", "7"])
    assert first.exit_code == 0, first.output
    assert "dvc init --no-scm" in first.output
    assert "dvc repro" in first.output
    assert (project / "lensloop.toml").is_file()
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["ingest"]["source"] == "data"
    assert params["embed"]["backbone"] == "features"
    assert params["train"]["epochs"] == 7
    again = runner.invoke(app, args)
    assert again.exit_code == 1
    assert isinstance(again.exception, ProjectError)
    assert "--force" in str(again.exception)
    forced = runner.invoke(app, [*args, "--force", "--method", "finetune"])
    assert forced.exit_code == 0, forced.output
    assert yaml.safe_load((project / "params.yaml").read_text())["train"]["method"] == "finetune"
    bad = runner.invoke(app, [*args, "--force", "--method", "svm"])
    assert bad.exit_code == 2
    assert "valid: probe, finetune" in bad.output


def test_init_refuses_a_counting_project(tmp_path: Path) -> None:
    runner = CliRunner()
    project = tmp_path / "p"
    assert runner.invoke(app, ["init", str(project), "--task", "count"]).exit_code == 0
    result = runner.invoke(app, ["pipeline", "init", str(project), "--source", str(tmp_path)])
    assert isinstance(result.exception, ConfigError)
    assert "classify projects only" in str(result.exception)
    assert not (project / "dvc.yaml").exists()


def test_summaries_are_deterministic_and_track_the_catalog(
    project: Project, tmp_path: Path
) -> None:
    make_image_folder(tmp_path / "data", {"a": 3, "b": 3})
    ingest(project, [tmp_path / "data"], options=IngestOptions(labels_from_folders=True))
    first = summary_json(stage_summary(project, "ingest"))
    assert summary_json(stage_summary(project, "ingest")) == first
    summary = json.loads(first)
    assert summary["images"] == 6
    assert summary["classes"] == {"a": 3, "b": 3}
    assert "time" not in first
    assert str(project.root) not in first
    embedded = stage_summary(project, "embed", backbone="features")
    assert embedded["sets"] == []
    assert embedded["without_vectors"] == 6
    make_image_folder(tmp_path / "more", {"a": 1}, seed=9)
    ingest(project, [tmp_path / "more"], options=IngestOptions(labels_from_folders=True))
    assert (
        json.loads(summary_json(stage_summary(project, "ingest")))["fingerprint"]
        != (summary["fingerprint"])
    )
    with pytest.raises(ConfigError, match="valid: ingest, embed"):
        stage_summary(project, "train")


def test_summary_command_writes_the_file(project: Project, tmp_path: Path) -> None:
    target = tmp_path / "out" / "ingest.json"
    runner = CliRunner()
    result = runner.invoke(
        app, ["pipeline", "summary", str(project.root), "ingest", "--out", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(target.read_text())["images"] == 0
    missing = runner.invoke(app, ["pipeline", "summary", str(project.root), "embed"])
    assert missing.exit_code == 2
    assert "--backbone" in missing.output


# -- dvc repro, end to end ------------------------------------------------------------------


def _dvc(project: Path, *args: str) -> str:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_NO_UPDATER": "1",  # dvc < 3.60 checked PyPI for a newer version
        "LENSLOOP_CACHE_DIR": str(project.parent / "cache"),
        "NO_COLOR": "1",
        "COLUMNS": "200",
    }
    done = subprocess.run(
        [sys.executable, "-m", "dvc", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"dvc {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z]+)'", output)


def _mtimes(project: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (project / OUTPUT_DIR).iterdir()}


@pytest.mark.integration
@pytest.mark.slow
def test_dvc_repro_reruns_only_what_changed(tmp_path: Path) -> None:
    if shutil.which("dvc", path=str(Path(sys.executable).parent)) is None:
        require_integration("dvc is not installed (pip install 'lensloop[pipeline]')")
    if shutil.which("lensloop", path=str(Path(sys.executable).parent)) is None:
        require_integration("the lensloop script is not beside the interpreter (pip install -e .)")
    project = tmp_path / "p"
    make_coloured_folder(project / "data", per_class=6)
    result = CliRunner().invoke(
        app,
        [
            "pipeline",
            "init",
            str(project),
            "--source",
            str(project / "data"),
            "--backbone",
            "features",
            "--split",
            "val=0.34,test=0.34",
            "--epochs",
            "200",
            "--dvc-init",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (project / ".dvc").is_dir()
    _dvc(project, "config", "core.analytics", "false")

    first = _dvc(project, "repro")
    assert _ran(first) == list(STAGES)
    metrics = json.loads((project / OUTPUT_DIR / "metrics.json").read_text())
    assert metrics["split"] == "test"
    assert metrics["version"] == 1
    assert (project / OUTPUT_DIR / "predictions.csv").read_text().count("\n") == 1 + 18
    before = _mtimes(project)

    second = _dvc(project, "repro")
    assert _ran(second) == []
    assert "Data and pipelines are up to date" in second
    assert all(f"Stage '{s}' didn't change, skipping" in second for s in STAGES)
    assert _mtimes(project) == before

    # Forcing ingest writes the same record, so nothing after it reruns.
    forced = _dvc(project, "repro", "--force", "--single-item", "ingest")
    assert _ran(forced) == ["ingest"]
    assert _ran(_dvc(project, "repro")) == []
    before = _mtimes(project)

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["epochs"] = 100
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = _dvc(project, "repro")
    assert _ran(third) == ["train", "evaluate", "predict"]
    assert json.loads((project / OUTPUT_DIR / "metrics.json").read_text())["version"] == 2
    after = _mtimes(project)
    assert after["ingest.json"] == before["ingest.json"]
    assert after["embed.json"] == before["embed.json"]
    assert after["train.json"] != before["train.json"]
    assert "metrics.json" in _dvc(project, "metrics", "show")

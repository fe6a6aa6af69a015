"""Experiment tracking against a real local MLflow store (SQLite in the test's project)."""

from __future__ import annotations

import http.server
import logging
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import lensloop
from lensloop.errors import ConfigError
from lensloop.project import Project
from lensloop.project.config import TrackingConfig, load_config
from lensloop.settings import Settings
from lensloop.train import tracking
from lensloop.train.tracking import (
    TrackedRun,
    model_name,
    register_release,
    start_run,
    sync_alias,
    tracking_uri,
)
from servers import LOOPBACK, forbid_non_loopback, free_port

TASK = "classify"
LOGGER = "lensloop.train.tracking"


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide the URI themselves, whatever the developer's shell says, and nothing
    (MLflow included) talks to another machine."""
    monkeypatch.delenv("LENSLOOP_MLFLOW_URI", raising=False)
    forbid_non_loopback(monkeypatch)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow database, made once: creating one runs MLflow's migrations (~1.5 s),
    copying it takes milliseconds."""
    path = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    tracking._client(f"sqlite:///{path.as_posix()}")
    return path


@pytest.fixture
def tracked(project: Project, empty_store: Path) -> Project:
    """A project whose default local store already exists (copied from ``empty_store``)."""
    shutil.copyfile(empty_store, project.runs_dir / "mlflow.db")
    return project


def _default(project: Project) -> str:
    return f"sqlite:///{(project.runs_dir / 'mlflow.db').as_posix()}"


def _reader(uri: str) -> Any:
    """An independent MLflow client to read back what was logged."""
    from mlflow import MlflowClient

    with tracking._quiet():
        return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _release_folder(root: Path, version: int) -> Path:
    folder = root / "models" / f"v{version}"
    (folder / "figures").mkdir(parents=True)
    (folder / "card.json").write_text(f'{{"version": {version}}}\n', encoding="utf-8")
    (folder / "head.onnx").write_bytes(b"\x08\x01onnx")
    (folder / "figures" / "confusion.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def _released_run(project: Project, version: int, aliases: list[str]) -> TrackedRun:
    with start_run(project, run_name=f"probe-{version}", task=TASK) as run:
        run.log_artifacts(_release_folder(project.root, version))
        register_release(project, run, task=TASK, version=version, aliases=aliases)
    return run


# -- where runs go ------------------------------------------------------------------------


def test_default_is_a_local_store_in_runs(project: Project) -> None:
    assert tracking_uri(project) == _default(project)
    assert project.settings.mlflow_uri is None
    assert project.config.tracking.mlflow_uri is None


def test_settings_beat_config_beat_default(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    project.config.tracking = TrackingConfig(mlflow_uri="http://config.example:5000")
    assert tracking_uri(project) == "http://config.example:5000"

    monkeypatch.setenv("LENSLOOP_MLFLOW_URI", "http://env.example:5000")
    project.settings = Settings(cache_dir=tmp_path / "cache")
    assert project.settings.mlflow_uri == "http://env.example:5000"
    assert tracking_uri(project) == "http://env.example:5000"

    project.settings = Settings(cache_dir=tmp_path / "cache", mlflow_uri="  ")  # blank: unset
    assert tracking_uri(project) == "http://config.example:5000"


def test_relative_sqlite_in_config_is_inside_the_project(project: Project) -> None:
    project.config.tracking = TrackingConfig(mlflow_uri="sqlite:///runs/team.db")
    assert tracking_uri(project) == f"sqlite:///{(project.root / 'runs/team.db').as_posix()}"
    absolute = f"sqlite:///{(project.root.parent / 'elsewhere.db').as_posix()}"
    project.config.tracking = TrackingConfig(mlflow_uri=absolute)
    assert tracking_uri(project) == absolute


def test_tracking_section_round_trips_and_is_left_out_when_empty(project: Project) -> None:
    path = project.root / "lensloop.toml"
    assert "[tracking]" not in path.read_text(encoding="utf-8")
    project.config.tracking = TrackingConfig(mlflow_uri="http://mlflow.example:5000")
    project.save_config()
    assert "[tracking]" in path.read_text(encoding="utf-8")
    assert load_config(path).tracking.mlflow_uri == "http://mlflow.example:5000"

    path.write_text(path.read_text(encoding="utf-8") + 'uri = "x"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"tracking\.uri"):
        load_config(path)


@pytest.mark.parametrize("where", ["settings", "config"])
def test_off_disables_tracking(project: Project, tmp_path: Path, where: str) -> None:
    if where == "settings":
        project.settings = Settings(cache_dir=tmp_path / "cache", mlflow_uri="OFF")
        project.config.tracking = TrackingConfig(mlflow_uri="http://ignored.example:5000")
    else:
        project.config.tracking = TrackingConfig(mlflow_uri="off")
    assert tracking_uri(project) is None

    with start_run(project, run_name="r", task=TASK) as run:
        assert run.run_id is None
        assert not run.enabled
        run.log_params({"a": 1})
        run.log_metrics({"loss": 0.5}, step=1)
        run.log_artifacts(tmp_path / "does-not-matter")
    register_release(project, run, task=TASK, version=1, aliases=["champion"])
    assert sync_alias(project, task=TASK, alias="champion", version=1) is False
    assert list(project.runs_dir.iterdir()) == []  # no store was created


def test_without_mlflow_metrics_stay_in_the_catalog(
    project: Project, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if the extra were not installed
    assert tracking_uri(project) is None
    run = start_run(project, run_name="r", task=TASK)
    assert run.run_id is None
    assert sync_alias(project, task=TASK, alias="champion", version=1) is False

    project.config.tracking = TrackingConfig(mlflow_uri="Off")
    assert tracking_uri(project) is None

    project.config.tracking = TrackingConfig(mlflow_uri="http://mlflow.example:5000")
    with pytest.raises(ConfigError, match=r"lensloop\.toml.*pip install 'lensloop\[mlflow\]'"):
        tracking_uri(project)
    project.settings = Settings(cache_dir=tmp_path / "cache", mlflow_uri="http://env:5000")
    with pytest.raises(ConfigError, match=r"LENSLOOP_MLFLOW_URI is 'http://env:5000'.*'off'"):
        start_run(project, run_name="r", task=TASK)


# -- runs ---------------------------------------------------------------------------------


def test_default_store_is_created_quietly(
    project: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    assert not (project.runs_dir / "mlflow.db").exists()
    with start_run(project, run_name="first", task=TASK) as run:
        run.log_metrics({"loss": 1.0})
    assert (project.runs_dir / "mlflow.db").is_file()
    experiment = _reader(_default(project)).get_experiment(run.experiment_id)
    assert experiment.name == project.config.project.name
    assert experiment.artifact_location == (project.runs_dir / "artifacts").as_uri()
    assert "Creating initial MLflow database tables" not in capfd.readouterr().err


def test_run_logs_params_metrics_and_artefacts(tracked: Project, tmp_path: Path) -> None:
    project = tracked
    with start_run(project, run_name="finetune-resnet18", task=TASK, tags={"team": "a"}) as run:
        assert run.enabled
        run.log_params(
            {
                "arch": "resnet18",
                "optimiser": {"lr": 0.001, "betas": [0.9, 0.99]},
                "depth": None,
                "notes": "x" * 10_000,
            }
        )
        run.log_params({"arch": "resnet18"})  # the same value again: fine
        for epoch in range(1, 4):
            run.log_metrics(
                {
                    "train": {"loss": 1.0 / epoch},
                    "val": {"accuracy": 0.5 + 0.1 * epoch, "confusion": [[1, 0], [0, 1]]},
                    "improved": True,
                    "fingerprint": "abc",
                },
                step=epoch,
            )
        run.log_metrics({"per_class": {"Chaetoceros sp.": {"f1": 0.5}, "a+b": {"f1": 0.25}}})
        run.log_artifacts(_release_folder(project.root, 1))

    reader = _reader(_default(project))
    logged = reader.get_run(run.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.info.run_name == "finetune-resnet18"
    assert logged.data.tags["lensloop.task"] == TASK
    assert logged.data.tags["lensloop.project"] == project.config.project.name
    assert logged.data.tags["team"] == "a"
    assert logged.data.tags["lensloop.package_version"] == lensloop.__version__

    params = logged.data.params
    assert params["arch"] == "resnet18"
    assert params["optimiser.lr"] == "0.001"
    assert params["optimiser.betas"] == "[0.9, 0.99]"
    assert params["depth"] == "None"
    assert params["notes"].startswith("xxx")
    assert params["notes"].endswith("[truncated by lensloop: 10000 characters]")
    assert len(params["notes"]) <= 6000

    history = reader.get_metric_history(run.run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5), (3, 1.0 / 3)]
    assert [m.step for m in reader.get_metric_history(run.run_id, "val.accuracy")] == [1, 2, 3]
    assert set(logged.data.metrics) == {
        "train.loss",
        "val.accuracy",
        "per_class.Chaetoceros sp..f1",
        "per_class.a_b.f1",
    }  # no bool, list or string; the "+" MLflow refuses became "_"

    downloaded = Path(reader.download_artifacts(run.run_id, "model", str(tmp_path)))
    files = sorted(p.relative_to(downloaded).as_posix() for p in downloaded.rglob("*.*"))
    assert files == ["card.json", "figures/confusion.png", "head.onnx"]
    assert (downloaded / "card.json").read_text(encoding="utf-8") == '{"version": 1}\n'
    local = project.runs_dir / "artifacts" / run.run_id / "artifacts" / "model" / "head.onnx"
    assert local.read_bytes() == b"\x08\x01onnx"  # artefacts live beside the database


def test_changed_param_is_kept_and_warned(
    tracked: Project, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        start_run(tracked, run_name="r", task=TASK) as run,
    ):
        run.log_params({"lr": 0.1})
        run.log_params({"lr": 0.2, "seed": 0})
    params = _reader(_default(tracked)).get_run(run.run_id).data.params
    assert params == {"lr": "0.1", "seed": "0"}
    assert "'lr' was already logged as '0.1'" in caplog.text


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError("boom"), "FAILED"), (KeyboardInterrupt(), "KILLED")]
)
def test_run_that_raises_ends_failed(tracked: Project, error: BaseException, status: str) -> None:
    started: list[TrackedRun] = []

    def train() -> None:
        with start_run(tracked, run_name="r", task=TASK) as run:
            started.append(run)
            run.log_metrics({"loss": 1.0}, step=1)
            raise error

    with pytest.raises(type(error)):
        train()
    assert _reader(_default(tracked)).get_run(started[0].run_id).info.status == status


def test_a_failing_log_call_does_not_stop_training(
    tracked: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def broken(*args: Any, **kwargs: Any) -> None:
        raise MlflowException("the server went away")

    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        start_run(tracked, run_name="r", task=TASK) as run,
    ):
        monkeypatch.setattr(MlflowClient, "log_batch", broken)
        run.log_metrics({"loss": 1.0}, step=1)
        monkeypatch.undo()
        run.log_metrics({"loss": 0.5}, step=2)
    history = _reader(_default(tracked)).get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(2, 0.5)]
    assert "could not log metrics" in caplog.text
    assert "the server went away" in caplog.text


def test_deleted_experiment_is_refused_with_a_fix(tracked: Project) -> None:
    run = start_run(tracked, run_name="r", task=TASK)
    run.end()
    _reader(_default(tracked)).delete_experiment(run.experiment_id)
    with pytest.raises(ConfigError, match=r"was deleted; restore it with `mlflow experiments"):
        start_run(tracked, run_name="again", task=TASK)


def test_what_mlflow_prints_on_ending_is_logged_not_printed(
    tracked: Project,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    from mlflow import MlflowClient

    real = MlflowClient.set_terminated

    def chatty(self: Any, run_id: str, status: str | None = None) -> None:
        print(f"View run at: http://mlflow.example/#/runs/{run_id}")  # as against a server
        real(self, run_id, status)

    monkeypatch.setattr(MlflowClient, "set_terminated", chatty)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        run = start_run(tracked, run_name="r", task=TASK)
        run.end()
    assert capsys.readouterr().out == ""  # stdout stays clean for --json output
    assert f"MLflow: View run at: http://mlflow.example/#/runs/{run.run_id}" in caplog.text
    assert _reader(_default(tracked)).get_run(run.run_id).info.status == "FINISHED"


def test_log_artifacts_needs_a_folder(tracked: Project, tmp_path: Path) -> None:
    run = start_run(tracked, run_name="r", task=TASK)
    with pytest.raises(FileNotFoundError, match="not a folder"):
        run.log_artifacts(tmp_path / "missing")
    run.end()


# -- Model Registry -----------------------------------------------------------------------


def test_release_is_registered_with_tag_and_aliases(tracked: Project) -> None:
    project = tracked
    first = _released_run(project, 1, ["champion", "latest"])
    second = _released_run(project, 2, ["latest"])  # not better: champion stays on 1

    reader = _reader(_default(project))
    name = model_name(project, TASK)
    assert name == "project-classify"
    versions = {v.version: v for v in reader.search_model_versions(f"name = '{name}'")}
    assert sorted(versions) == [1, 2]
    one, two = reader.get_model_version(name, "1"), reader.get_model_version(name, "2")
    assert one.tags == {"lensloop_version": "1"}
    assert two.tags == {"lensloop_version": "2"}
    assert one.run_id == first.run_id
    assert two.run_id == second.run_id
    assert one.source == f"{first.artifact_uri}/model"
    assert one.aliases == ["champion"]
    assert reader.get_model_version_by_alias(name, "champion").version == 1
    assert reader.get_model_version_by_alias(name, "latest").version == 2  # MLflow's own

    assert sync_alias(project, task=TASK, alias="champion", version=2) is True
    assert reader.get_model_version_by_alias(name, "champion").version == 2
    assert reader.get_model_version(name, "1").aliases == []


def test_sync_alias_of_an_unregistered_version(
    tracked: Project, caplog: pytest.LogCaptureFixture
) -> None:
    _released_run(tracked, 1, ["champion", "latest"])
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sync_alias(tracked, task=TASK, alias="champion", version=7) is False
    assert "version 7 was never registered as 'project-classify'" in caplog.text
    name = model_name(tracked, TASK)
    assert _reader(_default(tracked)).get_model_version_by_alias(name, "champion").version == 1


def test_sync_alias_before_any_run_creates_no_store(project: Project) -> None:
    assert sync_alias(project, task=TASK, alias="champion", version=1) is False
    assert not (project.runs_dir / "mlflow.db").exists()


def test_registry_failure_only_warns(
    tracked: Project, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise MlflowException("registry is read-only")

    monkeypatch.setattr(MlflowClient, "create_model_version", refuse)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        run = _released_run(tracked, 1, ["champion", "latest"])
    assert "model version 1 was released but could not be registered" in caplog.text
    assert "registry is read-only" in caplog.text
    reader = _reader(_default(tracked))
    assert reader.get_run(run.run_id).info.status == "FINISHED"
    assert reader.search_model_versions(f"name = '{model_name(tracked, TASK)}'") == []


def test_register_without_model_artefacts_warns(
    tracked: Project, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger=LOGGER),
        start_run(tracked, run_name="r", task=TASK) as run,
    ):
        register_release(tracked, run, task=TASK, version=1, aliases=["champion"])
    assert "has no 'model' artefacts" in caplog.text


# -- servers that cannot be used ----------------------------------------------------------


@pytest.fixture
def quick_http(monkeypatch: pytest.MonkeyPatch) -> None:
    """Belt and braces: MLflow's own HTTP retries would otherwise take minutes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")


@pytest.mark.usefixtures("quick_http")
def test_unreachable_server_fails_fast(
    project: Project, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    uri = f"http://{LOOPBACK}:{free_port()}"  # nothing listens there
    project.settings = Settings(cache_dir=tmp_path / "cache", mlflow_uri=uri)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="LENSLOOP_MLFLOW_URI=off") as caught:
        start_run(project, run_name="r", task=TASK)
    assert uri in str(caught.value)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        assert sync_alias(project, task=TASK, alias="champion", version=1) is False
    assert time.perf_counter() - started < 10
    assert uri in caplog.text


class _Unavailable(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(503)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def unavailable_server() -> Iterator[str]:
    """A server that answers every request with 503 (an MLflow behind a proxy, down)."""
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _Unavailable)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{LOOPBACK}:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_server_answering_503_fails_fast_without_retries(
    project: Project, unavailable_server: str
) -> None:
    project.config.tracking = TrackingConfig(mlflow_uri=unavailable_server)
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"cannot use the MLflow tracking store http://"):
        start_run(project, run_name="r", task=TASK)
    assert time.perf_counter() - started < 10

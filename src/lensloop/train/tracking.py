"""Experiment tracking of training runs with MLflow (the optional extra ``lensloop[mlflow]``).

Every training run logs its parameters, its metrics per epoch and its released folder. Where
the run goes is decided once per run by :func:`tracking_uri`:

1. ``LENSLOOP_MLFLOW_URI`` (:attr:`lensloop.settings.Settings.mlflow_uri`), else
2. ``mlflow_uri`` in the project's ``[tracking]`` section, else
3. the embedded default: ``sqlite:///PROJECT/runs/mlflow.db`` with artefacts in
   ``PROJECT/runs/artifacts`` when MLflow is installed, and no tracking when it is not (the
   metrics are kept in the catalog with every release either way).

The value ``off`` (any case) disables tracking. A released model is also registered in
MLflow's Model Registry as ``<project name>-<task>``, its MLflow version tagged
``lensloop_version=<N>`` and given the release's aliases; the lensloop release stays the
source of truth, so a registry failure only logs a warning.

Library code here never touches MLflow's process-wide state (``mlflow.set_tracking_uri``,
the active-run stack): each run talks to its own :class:`mlflow.MlflowClient`.

Example:
    >>> import tempfile, pathlib
    >>> from lensloop.project import Project
    >>> project = Project.init(pathlib.Path(tempfile.mkdtemp()) / "demo")
    >>> with start_run(project, run_name="probe-logistic", task="classify") as run:
    ...     run.log_params({"head": "logistic", "optimiser": {"lr": 0.01}})
    ...     for epoch in range(1, 3):
    ...         run.log_metrics({"val": {"accuracy": 0.5 + 0.1 * epoch}}, step=epoch)
    >>> project.close()
"""

from __future__ import annotations

import getpass
import io
import logging
import numbers
import posixpath
import re
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, redirect_stdout
from importlib.util import find_spec
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from lensloop import __version__
from lensloop.errors import ConfigError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from lensloop.project import Project

__all__ = [
    "MODEL_ARTIFACT_PATH",
    "OFF",
    "VERSION_TAG",
    "TrackedRun",
    "model_name",
    "register_release",
    "start_run",
    "sync_alias",
    "tracking_uri",
]

logger = logging.getLogger(__name__)

#: The tracking URI value that disables tracking (compared case-insensitively).
OFF = "off"
#: Tag on an MLflow model version naming the lensloop version it is.
VERSION_TAG = "lensloop_version"
#: The artefact folder of a run that holds the released model.
MODEL_ARTIFACT_PATH = "model"

RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

_INSTALL_HINT = "pip install 'lensloop[mlflow]'"
_OFF_HINT = "LENSLOOP_MLFLOW_URI=off"
#: Seconds the reachability check of an HTTP tracking server waits (one try, no retries).
_PROBE_TIMEOUT_S = 10
#: MLflow's limits (mlflow.utils.validation), used when that module does not say.
_DEFAULT_PARAM_LENGTH = 500
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
# Characters MLflow accepts in param and metric keys on every platform.
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
_BAD_MODEL_NAME_CHARS = re.compile(r"[^\w.\- ]")
# MLflow loggers that announce routine steps at INFO (table creation, waiting for a version).
_CHATTY_LOGGERS = ("mlflow.store.db.utils", "mlflow.store.model_registry.abstract_store")
# MLflow reserves these alias names: "latest" always means the highest version.
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$", re.IGNORECASE)


# -- where runs go ------------------------------------------------------------------------


def _mlflow_installed() -> bool:
    try:
        return find_spec("mlflow") is not None
    except (ImportError, ValueError):  # a broken or half-imported package
        return False


def _configured(project: Project) -> tuple[str | None, str]:
    """The explicitly configured URI (blank means unset) and where it came from."""
    from_settings = (project.settings.mlflow_uri or "").strip()
    if from_settings:
        return from_settings, "LENSLOOP_MLFLOW_URI"
    from_config = (project.config.tracking.mlflow_uri or "").strip()
    if from_config:
        return _inside_project(from_config, project.root), "[tracking] mlflow_uri in lensloop.toml"
    return None, "the default"


def _inside_project(uri: str, root: Path) -> str:
    """Resolve a relative SQLite path against the project folder (as for the catalog)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(uri)
    except ArgumentError:
        return uri  # not a database URL (http://, file:, a path): MLflow reads it as it is
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return uri
    if Path(database).is_absolute():
        return uri
    return f"sqlite:///{(root / database).as_posix()}"


def _default_uri(project: Project) -> str:
    return f"sqlite:///{(project.runs_dir / 'mlflow.db').as_posix()}"


def tracking_uri(project: Project) -> str | None:
    """The MLflow tracking URI a training run of ``project`` uses, or ``None`` for none.

    Precedence: ``project.settings.mlflow_uri`` (``LENSLOOP_MLFLOW_URI``), then
    ``[tracking] mlflow_uri`` in ``lensloop.toml``, then the default:
    ``sqlite:///<project>/runs/mlflow.db`` when MLflow is installed, ``None`` (metrics in the
    catalog only) when it is not. ``off`` (any case) gives ``None``.

    Args:
        project: The project whose runs are tracked.

    Returns:
        The URI, or ``None`` when tracking is off.

    Raises:
        ConfigError: A URI is configured but MLflow is not installed.
    """
    configured, source = _configured(project)
    if configured is not None and configured.lower() == OFF:
        return None
    if not _mlflow_installed():
        if configured is None:
            return None
        raise ConfigError(
            f"{source} is {configured!r}, but MLflow is not installed; install it with "
            f"`{_INSTALL_HINT}`, or set it to 'off' to keep run metrics in the catalog only"
        )
    return configured if configured is not None else _default_uri(project)


def _artifact_location(uri: str) -> str | None:
    """Artefacts of a local SQLite store go in ``artifacts/`` beside the database file."""
    if not uri.startswith("sqlite:///") or uri == "sqlite:///:memory:":
        return None
    database = Path(uri.removeprefix("sqlite:///")).expanduser().resolve()
    return (database.parent / "artifacts").as_uri()


def model_name(project: Project, task: str) -> str:
    """The Model Registry name of a project's ``task`` models: ``<project name>-<task>``.

    Characters MLflow refuses in names (``/``, ``:``) and other punctuation become ``-``.
    """
    return _BAD_MODEL_NAME_CHARS.sub("-", f"{project.config.project.name}-{task}")


# -- quiet MLflow -------------------------------------------------------------------------


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the known noise of MLflow's own dependencies around one MLflow call.

    MLflow 3's database models use SQLAlchemy's ``noload`` loader strategy, which SQLAlchemy
    2.1 deprecates (an ``SADeprecationWarning`` when the models are first configured); MLflow
    also announces table creation and registry waits at INFO level on its own handler.
    Nothing else is filtered, and the filters are undone on exit.
    """
    chatty = [logging.getLogger(name) for name in _CHATTY_LOGGERS]
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore",
            message=r"The ``noload`` loader strategy is deprecated",
            category=DeprecationWarning,
        )
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mlflow(\.|$)")
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"mlflow(\.|$)")
        for chatty_logger in chatty:
            chatty_logger.addFilter(_below_warning)
        try:
            yield
        finally:
            for chatty_logger in chatty:
                chatty_logger.removeFilter(_below_warning)


def _client(uri: str) -> MlflowClient:
    """An MLflow client bound to ``uri`` for tracking and the Model Registry."""
    try:
        import mlflow
    except ImportError as exc:
        raise ConfigError(
            f"MLflow is installed but cannot be imported ({exc}); reinstall it with "
            f"`{_INSTALL_HINT}`, or set {_OFF_HINT} to train without tracking"
        ) from exc
    with _quiet():
        return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _probe(uri: str) -> None:
    """Fail fast (one try, a short timeout) when an HTTP tracking server is not reachable.

    MLflow's own requests retry for minutes (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``), which is
    right against a busy server but not for a wrong address.
    """
    if not uri.lower().startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    with _quiet():
        http_request(  # type: ignore[no-untyped-call]
            get_default_host_creds(uri),  # type: ignore[no-untyped-call]
            "/health",
            "GET",
            max_retries=0,
            backoff_factor=0,
            timeout=_PROBE_TIMEOUT_S,
        )


def _experiment_id(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # created meanwhile by a parallel run
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ConfigError(
            f"the MLflow experiment {name!r} (id {experiment.experiment_id}) was deleted; "
            f"restore it with `mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}`, or remove it for good with `mlflow gc`, then "
            "train again"
        )
    return str(experiment.experiment_id)


# -- runs ---------------------------------------------------------------------------------


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _clean_key(key: str) -> str:
    """A param or metric key MLflow accepts: odd characters and path tricks become ``_``."""
    key = _BAD_KEY_CHARS.sub("_", key)
    norm = posixpath.normpath(key) if key else "."
    if norm != key or norm == "." or norm.startswith(("..", "/")):
        key = key.replace("/", "_").strip(".") or "_"
    return key


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _param_length() -> int:
    try:
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
    except ImportError:
        return _DEFAULT_PARAM_LENGTH
    return int(MAX_PARAM_VAL_LENGTH)


def _truncate(key: str, text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    note = f"... [truncated by lensloop: {len(text)} characters]"
    logger.info(
        "parameter %r is %d characters long, over MLflow's limit of %d; it is logged truncated",
        key,
        len(text),
        limit,
    )
    return text[: max(0, limit - len(note))] + note


class TrackedRun:
    """One training run in MLflow; every method does nothing when tracking is off.

    Made by :func:`start_run`; use it as a context manager. On leaving the ``with`` block
    the run ends ``FINISHED``, ``FAILED`` when an exception left it, or ``KILLED`` on
    ``KeyboardInterrupt``. A logging call that fails mid-run (the server went away) logs a
    warning and training goes on: the release and its metrics are kept in the catalog.

    Attributes:
        uri: The tracking URI, ``None`` when tracking is off.
        run_id: MLflow's run id, ``None`` when tracking is off.
        experiment_id: MLflow's experiment id, ``None`` when tracking is off.
        artifact_uri: Root of the run's artefacts, ``None`` when tracking is off.
    """

    def __init__(
        self,
        *,
        uri: str | None = None,
        run_id: str | None = None,
        experiment_id: str | None = None,
        artifact_uri: str | None = None,
        client: MlflowClient | None = None,
    ) -> None:
        self.uri = uri
        self.run_id = run_id
        self.experiment_id = experiment_id
        self.artifact_uri = artifact_uri
        self._client = client
        self._params: dict[str, str] = {}
        self._ended = False

    @property
    def enabled(self) -> bool:
        """Whether this run is tracked (MLflow is configured and reachable)."""
        return self._handle() is not None

    def _handle(self) -> tuple[MlflowClient, str] | None:
        if self._client is None or self.run_id is None:
            return None
        return self._client, self.run_id

    def _call(self, what: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        try:
            with _quiet():
                call(*args, **kwargs)
        except Exception as exc:  # tracking must never stop training
            logger.warning(
                "could not %s in MLflow run %s at %s (%s); training goes on and the release "
                "keeps its metrics in the catalog",
                what,
                self.run_id,
                self.uri,
                exc,
            )
            logger.debug("MLflow failure", exc_info=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters: nested mappings flattened with dots, values as strings.

        Values over MLflow's length limit are truncated with a note. MLflow never changes
        a logged parameter, so a key logged again with another value is skipped with a
        warning.

        Args:
            params: Names to values, e.g. ``config.model_dump()``.
        """
        if (handle := self._handle()) is None:
            return
        client, run_id = handle
        from mlflow.entities import Param

        limit = _param_length()
        batch: list[Param] = []
        for raw_key, raw_value in _flatten(params).items():
            key = _clean_key(raw_key)
            value = _truncate(key, str(raw_value), limit)
            previous = self._params.get(key)
            if previous == value:
                continue
            if previous is not None:
                logger.warning(
                    "parameter %r was already logged as %r; MLflow keeps the first value, "
                    "so %r is not logged",
                    key,
                    previous,
                    value,
                )
                continue
            self._params[key] = value
            batch.append(Param(key, value))
        for start in range(0, len(batch), _PARAMS_PER_BATCH):
            chunk = batch[start : start + _PARAMS_PER_BATCH]
            self._call("log parameters", client.log_batch, run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log the real-number metrics of one step: nested mappings flattened with dots.

        Booleans, strings, lists (per-fold scores, confusion matrices) and ``None`` are
        skipped; NaN and infinities are logged as they are.

        Args:
            metrics: Names to values, e.g. ``{"val": {"accuracy": 0.9}, "loss": 0.3}``.
            step: The epoch or fold; ``None`` logs at step 0.
        """
        if (handle := self._handle()) is None:
            return
        client, run_id = handle
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = [
            Metric(_clean_key(key), float(value), timestamp, step or 0)
            for key, value in _flatten(metrics).items()
            if _is_number(value)
        ]
        for start in range(0, len(batch), _METRICS_PER_BATCH):
            chunk = batch[start : start + _METRICS_PER_BATCH]
            self._call("log metrics", client.log_batch, run_id, metrics=chunk)

    def log_artifacts(self, folder: Path, artifact_path: str = MODEL_ARTIFACT_PATH) -> None:
        """Upload the files of ``folder`` (recursively) under the run's ``artifact_path``.

        Args:
            folder: A local folder, e.g. a released ``models/v3``.
            artifact_path: Folder inside the run's artefacts; :func:`register_release`
                registers the ``model`` folder.

        Raises:
            FileNotFoundError: ``folder`` is not a folder.
        """
        if (handle := self._handle()) is None:
            return
        client, run_id = handle
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"cannot log artefacts from {folder}: it is not a folder")
        self._call(
            f"upload {folder} as artefacts {artifact_path!r}",
            client.log_artifacts,
            run_id,
            str(folder),
            artifact_path,
        )

    def end(self, status: RunStatus = "FINISHED") -> None:
        """End the run with ``status`` (done by the ``with`` block; later calls do nothing)."""
        if (handle := self._handle()) is None or self._ended:
            return
        self._ended = True
        client, run_id = handle
        # Against a server MLflow prints the run's web address to stdout, which would spoil
        # machine-readable output (``--json``); it is logged instead.
        printed = io.StringIO()
        with redirect_stdout(printed):
            self._call(f"mark the run {status}", client.set_terminated, run_id, status)
        for line in printed.getvalue().splitlines():
            if line.strip():
                logger.info("MLflow: %s", line.strip())

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")

    def __repr__(self) -> str:
        if not self.enabled:
            return "TrackedRun(off)"
        return f"TrackedRun(run_id={self.run_id!r}, uri={self.uri!r})"


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (some containers)
        return None


def start_run(
    project: Project,
    *,
    run_name: str,
    task: str,
    tags: dict[str, str] | None = None,
) -> TrackedRun:
    """Start a tracked training run in the experiment named after the project.

    Args:
        project: The project being trained; its name is the MLflow experiment's name.
        run_name: Name shown in MLflow, e.g. ``probe-logistic``.
        task: The task trained (``classify``); logged as the tag ``lensloop.task``.
        tags: More run tags.

    Returns:
        A started run to use as a context manager; a run that does nothing (``run_id``
        ``None``) when tracking is off.

    Raises:
        ConfigError: A URI is configured but MLflow is not installed, or the tracking
            store cannot be reached or opened (the message names the URI and how to
            switch tracking off).
    """
    uri = tracking_uri(project)
    if uri is None:
        return TrackedRun()
    name = project.config.project.name
    all_tags = {
        "lensloop.task": task,
        "lensloop.project": name,
        "lensloop.package_version": __version__,
        **({"mlflow.user": user} if (user := _user()) else {}),
        **(tags or {}),
    }
    if uri == _default_uri(project):
        project.runs_dir.mkdir(parents=True, exist_ok=True)
    try:
        _probe(uri)
        client = _client(uri)
        with _quiet():
            experiment_id = _experiment_id(client, name, _artifact_location(uri))
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
    except ConfigError:
        raise
    except Exception as exc:  # every failure here means: this store cannot be used
        raise ConfigError(
            f"cannot use the MLflow tracking store {uri} ({exc}); check that the server "
            f"is running and the URI is right (LENSLOOP_MLFLOW_URI or [tracking] mlflow_uri "
            f"in lensloop.toml), or set {_OFF_HINT} to train without tracking"
        ) from exc
    logger.debug("tracking run %s of experiment %r at %s", run.info.run_id, name, uri)
    return TrackedRun(
        uri=uri,
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        artifact_uri=run.info.artifact_uri,
        client=client,
    )


# -- Model Registry -----------------------------------------------------------------------


def _set_aliases(client: MlflowClient, name: str, mlflow_version: str, aliases: list[str]) -> None:
    for alias in aliases:
        if alias.lower() == "latest":
            continue  # MLflow's built-in @latest is always the highest version
        if _RESERVED_ALIAS.match(alias):
            logger.warning("MLflow reserves the alias name %r; it is not set on %s", alias, name)
            continue
        client.set_registered_model_alias(name, alias, mlflow_version)


def register_release(
    project: Project,
    run: TrackedRun,
    *,
    task: str,
    version: int,
    aliases: list[str],
) -> None:
    """Register the run's ``model`` artefacts as a new version in MLflow's Model Registry.

    The registered model is :func:`model_name` (``<project name>-<task>``); the new MLflow
    version is tagged ``lensloop_version=<version>`` and gets every alias in ``aliases``.
    ``latest`` is not set: MLflow reserves it and always resolves ``@latest`` to the highest
    version, which is the newest release. Log the folder first with
    :meth:`TrackedRun.log_artifacts`.

    Nothing happens when tracking is off. A failure (server error, missing artefacts) is
    logged as a warning and not raised: the lensloop release is the source of truth.

    Args:
        project: The project released from.
        run: The run that trained the release.
        task: The task of the model (``classify``).
        version: The lensloop version number of the release.
        aliases: The release's lensloop aliases, e.g. ``["champion", "latest"]``.
    """
    if (handle := run._handle()) is None:
        return
    client, run_id = handle
    name = model_name(project, task)
    try:
        from mlflow.exceptions import MlflowException

        with _quiet():
            if not client.list_artifacts(run_id, MODEL_ARTIFACT_PATH):
                logger.warning(
                    "model version %d is not registered in MLflow: run %s has no %r artefacts "
                    "(log the release folder with run.log_artifacts first)",
                    version,
                    run_id,
                    MODEL_ARTIFACT_PATH,
                )
                return
            try:
                client.get_registered_model(name)
            except MlflowException as exc:
                if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
                client.create_registered_model(
                    name,
                    tags={"lensloop.project": project.config.project.name, "lensloop.task": task},
                    description=f"{task} models of the lensloop project "
                    f"{project.config.project.name!r}, registered by lensloop",
                )
            created = client.create_model_version(
                name,
                source=f"{run.artifact_uri}/{MODEL_ARTIFACT_PATH}",
                run_id=run_id,
                tags={VERSION_TAG: str(version)},
                description=f"lensloop model version {version}",
            )
            _set_aliases(client, name, str(created.version), aliases)
    except Exception as exc:  # the release already exists; tracking must not undo it
        logger.warning(
            "model version %d was released but could not be registered in MLflow's Model "
            "Registry at %s as %r (%s); the lensloop release is unaffected",
            version,
            run.uri,
            name,
            exc,
        )
        logger.debug("MLflow registry failure", exc_info=True)
        return
    logger.debug("registered model version %d as %s version %s", version, name, created.version)


def sync_alias(project: Project, *, task: str, alias: str, version: int) -> bool:
    """Point an MLflow alias at the MLflow version of lensloop model ``version``.

    Call it after ``lensloop models promote`` so that, e.g., ``models:/NAME@champion``
    follows the project's champion. ``latest`` needs nothing: MLflow's ``@latest`` is
    always the highest version.

    Args:
        project: The project.
        task: The task of the model (``classify``).
        alias: The lensloop alias that moved, e.g. ``champion``.
        version: The lensloop version it now points at.

    Returns:
        Whether MLflow now agrees. ``False`` (logged) when tracking is off, the version was
        never registered in MLflow, or the registry cannot be reached; the lensloop alias
        has moved either way.
    """
    try:
        uri = tracking_uri(project)
    except ConfigError as exc:
        logger.warning("alias %r not synchronised with MLflow: %s", alias, exc)
        return False
    if uri is None:
        logger.info("alias %r not synchronised with MLflow: tracking is off", alias)
        return False
    if uri == _default_uri(project) and not (project.runs_dir / "mlflow.db").exists():
        logger.info("alias %r not synchronised with MLflow: no run was tracked yet", alias)
        return False  # nothing to point at; do not create an empty store
    name = model_name(project, task)
    try:
        _probe(uri)
        client = _client(uri)
        with _quiet():
            found = client.search_model_versions(
                f"name = '{name}' and tags.{VERSION_TAG} = '{version}'"
            )
            if not found:
                logger.warning(
                    "alias %r not synchronised with MLflow: lensloop model version %d was never "
                    "registered as %r at %s",
                    alias,
                    version,
                    name,
                    uri,
                )
                return False
            newest = max(found, key=lambda mv: int(mv.version))
            _set_aliases(client, name, str(newest.version), [alias])
    except Exception as exc:  # the lensloop alias has moved; MLflow is a mirror
        logger.warning(
            "alias %r not synchronised with MLflow's Model Registry at %s (%s)", alias, uri, exc
        )
        logger.debug("MLflow registry failure", exc_info=True)
        return False
    return True

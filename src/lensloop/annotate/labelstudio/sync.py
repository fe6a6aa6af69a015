"""Live sync with a Label Studio server through its REST API (label-studio-sdk).

``push`` creates (or updates) the Label Studio project: its labelling config from the
project's schema, a local-files storage when images are served that way, one task per
image to label and the current model's predictions. The catalog remembers which task
shows which image (``labelstudio_tasks``), so pushing again updates those tasks, sends a
prediction only when the model changed, and adds tasks only for new images.

``pull`` downloads the project's annotations and imports those updated since the last
pull; re-importing is harmless anyway, since imports are idempotent. Exports name
annotators by user id; ``pull`` asks the server for their e-mails.

The network sits behind :class:`LabelStudioClient`, whose one implementation wraps the
sdk (:class:`SdkClient`); tests put a fake behind the same seam.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, cast

from sqlalchemy import select

from lensloop.annotate.labelstudio.exports import ExportedAnnotation, parse_export
from lensloop.annotate.labelstudio.importer import ImportReport, import_annotations
from lensloop.annotate.labelstudio.tasks import (
    ImageUrls,
    PreAnnotation,
    build_task,
    catalog_images,
)
from lensloop.annotate.schema import LabelSchema, label_config, project_schema
from lensloop.catalog.annotations import read_sync_state, write_sync_state
from lensloop.catalog.images import in_chunks
from lensloop.catalog.models import LabelStudioTask, utcnow
from lensloop.errors import ConfigError, LensloopError

if TYPE_CHECKING:
    from lensloop.project import Project

__all__ = [
    "LabelStudioClient",
    "LabelStudioError",
    "PushReport",
    "SdkClient",
    "pull",
    "push",
    "server_key",
]

logger = logging.getLogger(__name__)

_IMPORT_BATCH = 500


class LabelStudioError(LensloopError):
    """The Label Studio server refused a request or could not be reached."""


class LabelStudioClient(Protocol):
    """The Label Studio calls lensloop makes (see :class:`SdkClient`)."""

    def create_project(self, title: str, label_config: str) -> int:
        """Create a project; return its id."""

    def update_project(self, project_id: int, *, title: str, label_config: str) -> None:
        """Set a project's title and labelling config."""

    def ensure_local_storage(self, project_id: int, path: str) -> None:
        """Connect a local-files import storage for ``path`` unless one exists."""

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Import tasks (with predictions); return their ids in order."""

    def update_task(self, task_id: int, data: Mapping[str, Any]) -> None:
        """Replace a task's data."""

    def create_prediction(
        self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        """Add a prediction to a task."""

    def export(self, project_id: int) -> list[Any]:
        """Return the project's JSON export (every annotated task)."""

    def user_emails(self) -> dict[int, str]:
        """Return ``{user id: e-mail}`` of the server's users (exports name only ids)."""


def server_key(url: str) -> str:
    """A server's base URL as stored in the catalog (no trailing slash)."""
    return url.rstrip("/")


@dataclass
class PushReport:
    """What :func:`push` did."""

    project_id: int
    created_project: bool
    tasks_created: int = 0
    tasks_updated: int = 0
    predictions: int = 0
    model_version: str | None = None
    task_ids: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "project_id": self.project_id,
            "created_project": self.created_project,
            "tasks_created": self.tasks_created,
            "tasks_updated": self.tasks_updated,
            "predictions": self.predictions,
            "model_version": self.model_version,
        }


def _project_key(server: str) -> str:
    return f"labelstudio:{server}:project"


def _pull_key(server: str, project_id: int) -> str:
    return f"labelstudio:{server}:project:{project_id}:pull"


def push(
    project: Project,
    client: LabelStudioClient,
    *,
    server: str,
    image_ids: Sequence[int],
    urls: ImageUrls,
    preannotations: Mapping[int, PreAnnotation] | None = None,
    project_id: int | None = None,
    schema: LabelSchema | None = None,
    tools: Sequence[str] | None = None,
) -> PushReport:
    """Create or update the Label Studio project and its tasks for ``image_ids``.

    Args:
        project: The lensloop project.
        client: The Label Studio client.
        server: The server's base URL (names it in the catalog).
        image_ids: Images to have tasks, in labelling order.
        urls: How tasks name their image.
        preannotations: The current model's output by image id.
        project_id: Label Studio project to use; default the one pushed to before, else a
            new one titled after the lensloop project.
        schema: The label schema; default the project's.
        tools: Config tools (default the task's).

    Raises:
        LabelStudioError: The server refused a request.
        LabelError: An image cannot be named for Label Studio (see :class:`ImageUrls`).
    """
    server = server_key(server)
    schema = schema or project_schema(project)
    config = label_config(schema, tools=tools)
    title = f"lensloop: {project.config.project.name}"
    with project.catalog.reader() as session:
        if project_id is None:
            project_id = read_sync_state(session, _project_key(server)).get("project_id")
        images = catalog_images(session, image_ids)
    # Every URL and storage is worked out before Label Studio is touched, so an image that
    # cannot be named fails the push with nothing half-done on the server.
    task_urls = {image_id: urls.url(image_id, uri) for image_id, (uri, _) in images.items()}
    folders = (
        urls.storage_folders(u for u, _ in images.values()) if urls.mode == "local-files" else []
    )
    created = project_id is None
    if project_id is None:
        project_id = client.create_project(title, config)
        with project.catalog.transaction() as session:
            write_sync_state(session, _project_key(server), {"project_id": project_id})
    else:
        client.update_project(project_id, title=title, label_config=config)
    for folder in folders:
        client.ensure_local_storage(project_id, folder)
    report = PushReport(project_id=project_id, created_project=created)
    pre = preannotations or {}
    with project.catalog.reader() as session:
        links = {
            link.image_id: link
            for chunk in in_chunks(list(image_ids))
            for link in session.scalars(
                select(LabelStudioTask).where(
                    LabelStudioTask.server == server,
                    LabelStudioTask.project_id == project_id,
                    LabelStudioTask.image_id.in_(chunk),
                )
            )
        }
    new_ids = [i for i in image_ids if i not in links]
    for chunk in in_chunks(new_ids, _IMPORT_BATCH):
        tasks = [
            build_task(
                image_id,
                task_urls[image_id],
                images[image_id][1],
                predictions=[pre[image_id]] if image_id in pre else [],
            )
            for image_id in chunk
        ]
        task_ids = client.import_tasks(project_id, tasks)
        if len(task_ids) != len(tasks):
            raise LabelStudioError(
                f"Label Studio created {len(task_ids)} tasks for {len(tasks)} images"
            )
        with project.catalog.transaction() as session:
            for image_id, task_id in zip(chunk, task_ids, strict=True):
                version = pre[image_id].model_version if image_id in pre else None
                session.add(
                    LabelStudioTask(
                        server=server,
                        project_id=project_id,
                        task_id=task_id,
                        image_id=image_id,
                        model_version=version,
                        created_at=utcnow(),
                    )
                )
                report.task_ids[image_id] = task_id
                report.predictions += version is not None
        report.tasks_created += len(chunk)
    for image_id, link in links.items():
        size = images[image_id][1]
        task = build_task(image_id, task_urls[image_id], size)
        client.update_task(link.task_id, task["data"])
        report.tasks_updated += 1
        report.task_ids[image_id] = link.task_id
        item = pre.get(image_id)
        if item is not None and item.model_version != link.model_version:
            prediction = item.to_labelstudio(size)
            client.create_prediction(
                link.task_id,
                result=prediction["result"],
                score=prediction["score"],
                model_version=prediction["model_version"],
            )
            with project.catalog.transaction() as session:
                stored = session.get(LabelStudioTask, link.id)
                if stored is not None:
                    stored.model_version = item.model_version
            report.predictions += 1
    if pre:
        report.model_version = next(iter(pre.values())).model_version
    return report


def _user_id(annotator: str) -> int:
    _, _, number = annotator.partition("user:")
    return int(number) if number.isdigit() else -1


def _updated(annotation: ExportedAnnotation) -> datetime | None:
    try:
        return datetime.fromisoformat(annotation.updated_at)
    except ValueError:
        return None


def pull(
    project: Project,
    client: LabelStudioClient,
    *,
    server: str,
    project_id: int | None = None,
    schema: LabelSchema | None = None,
) -> ImportReport:
    """Import the annotations made or changed in Label Studio since the last pull.

    Raises:
        ConfigError: No Label Studio project given and none pushed to before.
        LabelStudioError: The server refused a request.
        LabelError: An annotation is invalid (nothing is imported).
    """
    server = server_key(server)
    with project.catalog.reader() as session:
        if project_id is None:
            project_id = read_sync_state(session, _project_key(server)).get("project_id")
        if project_id is None:
            raise ConfigError(
                f"no Label Studio project of {server} is known to this project; pass "
                "--project-id, or push first"
            )
        state = read_sync_state(session, _pull_key(server, project_id))
    since = datetime.fromisoformat(state["until"]) if state.get("until") else None
    emails = client.user_emails()
    every = [
        replace(a, annotator=emails.get(_user_id(a.annotator), a.annotator))
        for a in parse_export(client.export(project_id))
    ]
    fresh = [a for a in every if since is None or (stamp := _updated(a)) is None or stamp > since]
    report = import_annotations(project, fresh, schema=schema)
    stamps = [s for s in (_updated(a) for a in every) if s is not None]
    if stamps:
        newest = max(stamps)
        with project.catalog.transaction() as session:
            write_sync_state(session, _pull_key(server, project_id), {"until": newest.isoformat()})
    return report


class SdkClient:
    """:class:`LabelStudioClient` over label-studio-sdk's ``LabelStudio`` client.

    Args:
        url: The server's base URL.
        token: An API token (legacy token, or a personal access token).
        timeout: Seconds per request.

    Raises:
        ConfigError: label-studio-sdk is not installed.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 120.0) -> None:
        try:
            import httpx

            with warnings.catch_warnings():
                # The sdk still uses pydantic v1 idioms and warns about them on import.
                warnings.filterwarnings("ignore", category=DeprecationWarning)
                from label_studio_sdk import LabelStudio
        except ImportError:
            raise ConfigError(
                "talking to a Label Studio server needs label-studio-sdk: "
                "pip install 'lensloop[labelstudio]'"
            ) from None
        self._url = server_key(url)
        # Our own HTTP client, so close() releases its connections (the sdk's own is never
        # closed).
        self._http = httpx.Client(timeout=timeout)
        self._client = LabelStudio(  # type: ignore[no-untyped-call]
            base_url=self._url, api_key=token, httpx_client=self._http
        )

    def close(self) -> None:
        """Close the HTTP connections."""
        self._http.close()

    def __enter__(self) -> SdkClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        from label_studio_sdk.core.api_error import ApiError

        try:
            return call()
        except ApiError as exc:
            raise LabelStudioError(
                f"Label Studio at {self._url} refused to {what}: HTTP {exc.status_code} "
                f"{json.dumps(exc.body)[:500]}"
            ) from None
        except OSError as exc:
            raise LabelStudioError(f"cannot reach Label Studio at {self._url}: {exc}") from None
        except Exception as exc:  # httpx transport errors are not OSError subclasses
            if type(exc).__module__.startswith("httpx"):
                raise LabelStudioError(f"cannot reach Label Studio at {self._url}: {exc}") from None
            raise

    def create_project(self, title: str, label_config: str) -> int:
        """Create a project; return its id."""
        created = self._call(
            "create a project",
            lambda: self._client.projects.create(title=title, label_config=label_config),
        )
        return int(created.id)

    def update_project(self, project_id: int, *, title: str, label_config: str) -> None:
        """Set a project's title and labelling config."""
        self._call(
            f"update project {project_id}",
            lambda: self._client.projects.update(
                id=project_id, title=title, label_config=label_config
            ),
        )

    def ensure_local_storage(self, project_id: int, path: str) -> None:
        """Connect a local-files import storage for ``path`` unless one exists."""
        storages = self._call(
            "list storages",
            lambda: self._client.import_storage.local.list(project=project_id),
        )
        if any(getattr(s, "path", None) == path for s in storages):
            return
        self._call(
            "add a local-files storage",
            lambda: self._client.import_storage.local.create(
                project=project_id, path=path, title="lensloop images", use_blob_urls=True
            ),
        )

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> list[int]:
        """Import tasks (with predictions); return their ids in order."""
        response = self._call(
            "import tasks",
            lambda: self._client.projects.import_tasks(
                id=project_id,
                request=cast(Any, list(tasks)),
                return_task_ids=True,
                commit_to_project=True,
            ),
        )
        ids = getattr(response, "task_ids", None)
        if ids is None and isinstance(response, Mapping):
            ids = response.get("task_ids")
        if ids is None:
            raise LabelStudioError(
                "Label Studio did not return the new task ids (an Enterprise server imports "
                "asynchronously; lensloop needs a Community server or the ids)"
            )
        return [int(i) for i in ids]

    def update_task(self, task_id: int, data: Mapping[str, Any]) -> None:
        """Replace a task's data."""
        self._call(
            f"update task {task_id}",
            lambda: self._client.tasks.update(id=str(task_id), data=dict(data)),
        )

    def create_prediction(
        self, task_id: int, *, result: list[dict[str, Any]], score: float, model_version: str
    ) -> None:
        """Add a prediction to a task."""
        self._call(
            f"add a prediction to task {task_id}",
            lambda: self._client.predictions.create(
                task=task_id, result=result, score=score, model_version=model_version
            ),
        )

    def export(self, project_id: int) -> list[Any]:
        """Return the project's JSON export (every annotated task)."""
        chunks = self._call(
            f"export project {project_id}",
            lambda: b"".join(
                self._client.projects.exports.download_sync(id=project_id, export_type="JSON")
            ),
        )
        try:
            data = json.loads(chunks)
        except json.JSONDecodeError as exc:
            raise LabelStudioError(f"Label Studio's export is not JSON: {exc}") from None
        if not isinstance(data, list):
            raise LabelStudioError("Label Studio's export is not a list of tasks")
        return data

    def user_emails(self) -> dict[int, str]:
        """Return ``{user id: e-mail}`` of the server's users (exports name only ids)."""
        users = self._call("list users", lambda: self._client.users.list())
        return {int(u.id): str(u.email) for u in users if getattr(u, "email", None)}

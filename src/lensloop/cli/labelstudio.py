"""``lensloop labelstudio``: configs, task export, annotation import, live push and pull."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lensloop.cli._app import app, err, open_project, out

if TYPE_CHECKING:
    from lensloop.annotate.labelstudio.tasks import ImageUrls, PreAnnotation
    from lensloop.project import Project

__all__ = ["labelstudio_app"]

labelstudio_app = typer.Typer(
    help="Label Studio: labelling configs, task export, annotation import, live sync.",
    no_args_is_help=True,
)
app.add_typer(labelstudio_app, name="labelstudio")

ProjectDir = Annotated[Path, typer.Argument(help="Project folder.")]
ImageUrlOption = Annotated[
    str,
    typer.Option(
        "--image-url",
        help="How tasks name images: serve (lensloop serve at --base-url), local-files "
        "(Label Studio's local-files storage under --files-root) or uri (the catalog URI: "
        "s3:// or https://).",
    ),
]
BaseUrlOption = Annotated[
    str, typer.Option("--base-url", help="Where `lensloop serve` listens, for --image-url serve.")
]
FilesRootOption = Annotated[
    Path | None,
    typer.Option(
        "--files-root",
        help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT, for --image-url local-files.",
    ),
]
RoundOption = Annotated[
    int | None,
    typer.Option(
        "--round",
        help="Send this selection round's images in selection order (default: "
        "every image without a label for the project's task).",
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model whose predictions become pre-annotations: version or alias "
        "(default: champion, else latest; none released: no predictions).",
    ),
]
NoPredictionsOption = Annotated[
    bool, typer.Option("--no-predictions", help="Send tasks without pre-annotations.")
]
UrlOption = Annotated[str, typer.Option("--url", help="Label Studio's base URL.")]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Label Studio API token (default: the LABEL_STUDIO_API_KEY environment variable).",
    ),
]
ProjectIdOption = Annotated[
    int | None,
    typer.Option(
        "--project-id",
        help="Label Studio project id (default: the one pushed to before; "
        "push creates one if there is none).",
    ),
]
ToolsOption = Annotated[
    str | None,
    typer.Option(
        "--tools",
        help="Comma-separated tools for the config: choices, keypoints, brush, "
        "polygon, rectangle (default: the project task's).",
    ),
]


def _tools(text: str | None) -> tuple[str, ...] | None:
    return tuple(t.strip() for t in text.split(",") if t.strip()) if text else None


def _urls(mode: str, base_url: str, files_root: Path | None) -> ImageUrls:
    from lensloop.annotate.labelstudio.tasks import URL_MODES, ImageUrls
    from lensloop.errors import ConfigError

    if mode not in URL_MODES:
        raise ConfigError(f"unknown --image-url {mode!r}; valid: {', '.join(URL_MODES)}")
    return ImageUrls(mode=mode, base_url=base_url, files_root=files_root)  # type: ignore[arg-type]


def _predictions(
    project: Project, image_ids: list[int], model: str | None, skip: bool
) -> dict[int, PreAnnotation]:
    from lensloop.train.preannotate import current_model, preannotate

    if skip:
        return {}
    loaded = current_model(project, model)
    if loaded is None:
        err.print(f"no {project.task} model released yet: tasks go out without predictions")
        return {}
    return preannotate(project, image_ids, model=loaded)


def _token(token: str | None) -> str:
    from lensloop.errors import ConfigError

    found = token or os.environ.get("LABEL_STUDIO_API_KEY")
    if not found:
        raise ConfigError("pass --token or set LABEL_STUDIO_API_KEY to a Label Studio API token")
    return found


@labelstudio_app.command("config")
def config_command(
    directory: ProjectDir,
    tools: ToolsOption = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write the XML here instead of printing it.")
    ] = None,
) -> None:
    """Print the Label Studio labelling config made from the project's label schema."""
    from lensloop.annotate.schema import label_config, project_schema

    with open_project(directory) as project:
        xml = label_config(project_schema(project), tools=_tools(tools))
    if output is None:
        out.print(xml, markup=False, highlight=False)
    else:
        output.write_text(xml + "\n", encoding="utf-8")
        err.print(f"wrote {output}")


@labelstudio_app.command("export")
def export_command(
    directory: ProjectDir,
    output: Annotated[Path, typer.Argument(help="Tasks file to write (JSON).")],
    round: RoundOption = None,
    image_url: ImageUrlOption = "serve",
    base_url: BaseUrlOption = "http://127.0.0.1:9090",
    files_root: FilesRootOption = None,
    model: ModelOption = None,
    no_predictions: NoPredictionsOption = False,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Write Label Studio tasks for the images to label, with the model's pre-annotations.

    Import the file in Label Studio (Project > Import) after creating the project with
    the config from `lensloop labelstudio config DIR`.
    """
    from lensloop.annotate.labelstudio.tasks import build_task, catalog_images, images_to_label
    from lensloop.errors import ConfigError
    from lensloop.imaging import atomic_write

    if output.exists() and not force:
        raise ConfigError(f"{output} exists; choose another file or pass --force to replace it")
    urls = _urls(image_url, base_url, files_root)
    with open_project(directory) as project:
        image_ids = images_to_label(project, round=round)
        pre = _predictions(project, image_ids, model, no_predictions)
        with project.catalog.reader() as session:
            images = catalog_images(session, image_ids)
        tasks = [
            build_task(
                image_id,
                urls.url(image_id, images[image_id][0]),
                images[image_id][1],
                predictions=[pre[image_id]] if image_id in pre else [],
            )
            for image_id in image_ids
        ]
    atomic_write(output, json.dumps(tasks, indent=1).encode("utf-8"), overwrite=True)
    err.print(f"wrote {len(tasks)} tasks ({len(pre)} with predictions) to {output}")


def _print_import(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        out.print(json.dumps(report), markup=False, highlight=False)
        return
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report["by_kind"].items())) or "nothing"
    out.print(
        f"read {report['annotations']} annotations of {report['images']} images: added "
        f"{report['added']} ({kinds}), {report['superseded']} of them new versions; "
        f"{report['unchanged']} already imported; {report['cancelled']} skipped tasks"
    )
    if report["ignored"]:
        ignored = ", ".join(f"{n} {t}" for t, n in sorted(report["ignored"].items()))
        err.print(f"not stored (result types lensloop does not use): {ignored}")


@labelstudio_app.command("import")
def import_command(
    directory: ProjectDir,
    export: Annotated[Path, typer.Argument(help="Label Studio JSON or JSON_MIN export.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import annotations from a Label Studio export (JSON or JSON_MIN).

    Importing the same export again adds nothing; an annotation edited in Label Studio
    is added as a new version of the old one. A bad record stops the import with its
    task and annotation ids, and nothing is written.
    """
    from lensloop.annotate.labelstudio import import_annotations, read_export

    annotations = read_export(export)
    with open_project(directory) as project:
        report = import_annotations(project, annotations)
    _print_import(report.as_dict(), as_json)


@labelstudio_app.command("push")
def push_command(
    directory: ProjectDir,
    url: UrlOption,
    token: TokenOption = None,
    project_id: ProjectIdOption = None,
    round: RoundOption = None,
    image_url: ImageUrlOption = "serve",
    base_url: BaseUrlOption = "http://127.0.0.1:9090",
    files_root: FilesRootOption = None,
    model: ModelOption = None,
    no_predictions: NoPredictionsOption = False,
    tools: ToolsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Create or update the Label Studio project: config, storage, tasks and predictions.

    Pushing again updates the tasks sent before (and sends predictions of a newer model)
    instead of duplicating them.
    """
    from lensloop.annotate.labelstudio.sync import SdkClient, push
    from lensloop.annotate.labelstudio.tasks import images_to_label

    urls = _urls(image_url, base_url, files_root)
    with SdkClient(url, _token(token)) as client, open_project(directory) as project:
        image_ids = images_to_label(project, round=round)
        pre = _predictions(project, image_ids, model, no_predictions)
        report = push(
            project,
            client,
            server=url,
            image_ids=image_ids,
            urls=urls,
            preannotations=pre,
            project_id=project_id,
            tools=_tools(tools),
        )
    if as_json:
        out.print(json.dumps(report.as_dict()), markup=False, highlight=False)
        return
    verb = "created" if report.created_project else "updated"
    out.print(
        f"{verb} Label Studio project {report.project_id}: {report.tasks_created} new tasks, "
        f"{report.tasks_updated} updated, {report.predictions} predictions"
    )


@labelstudio_app.command("pull")
def pull_command(
    directory: ProjectDir,
    url: UrlOption,
    token: TokenOption = None,
    project_id: ProjectIdOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import the annotations made or changed in Label Studio since the last pull."""
    from lensloop.annotate.labelstudio.sync import SdkClient, pull

    with SdkClient(url, _token(token)) as client, open_project(directory) as project:
        report = pull(project, client, server=url, project_id=project_id)
    _print_import(report.as_dict(), as_json)

"""A DVC pipeline for a project: ``dvc.yaml``, ``params.yaml`` and the stage summaries.

``lensloop pipeline init DIR`` writes a ``dvc.yaml`` whose stages call the lensloop CLI
(ingest → embed → train → evaluate / predict) and a ``params.yaml`` with their settings,
so ``dvc repro`` reruns only the stages whose inputs or parameters changed.

The catalog (``catalog.sqlite``), ``embeddings/`` and ``models/`` are the project's
incremental state: every stage reads and extends them, and commands run by hand share
them. They cannot be stage outputs (DVC forbids two stages declaring one output, and it
deletes or caches outputs before a stage reruns, which would break that state). Each
stage instead declares a small file under ``pipeline/`` that records what it left in the
project: a deterministic JSON summary of the catalog (:func:`stage_summary`) for ingest
and embed, the ``--json`` output of train and evaluate, and the prediction CSV. An
unchanged rerun writes identical bytes, so DVC stops there and skips what follows.

Everything here except :func:`stage_summary` is pure: data in, data out.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from sqlalchemy import func, select

from lensloop.catalog.labels import current_class_paths
from lensloop.catalog.models import EmbeddingSet, Image, IngestFailure
from lensloop.errors import ConfigError, ProjectError
from lensloop.project.config import CONFIG_FILE
from lensloop.project.project import Project

__all__ = [
    "DVC_FILE",
    "METHODS",
    "OUTPUT_DIR",
    "PARAMS_FILE",
    "STAGES",
    "SUMMARY_STAGES",
    "PipelineOptions",
    "build_dvc_yaml",
    "build_params",
    "default_epochs",
    "find_dvc_root",
    "source_param",
    "stage_summary",
    "summary_json",
    "write_pipeline",
]

DVC_FILE = "dvc.yaml"
PARAMS_FILE = "params.yaml"
#: Folder (inside the project) of the files the stages declare as outputs.
OUTPUT_DIR = "pipeline"
#: The stages, in the order they run.
STAGES = ("ingest", "embed", "train", "evaluate", "predict")
#: Stages whose output is written by ``lensloop pipeline summary``.
SUMMARY_STAGES = ("ingest", "embed")
Method = Literal["probe", "finetune"]
METHODS: tuple[Method, ...] = ("probe", "finetune")

# The trainer's defaults (lensloop.train.config.TrainConfig: max_iter and epochs), kept as
# literals because this layer must not import lensloop.train; a test checks they agree.
_PROBE_MAX_ITER = 1000
_FINETUNE_EPOCHS = 30
_DEFAULT_BACKBONE = "efficientnet-lite0"  # lensloop.embed.registry.DEFAULT_BACKBONE
_HEADER = (
    "# Written by `lensloop pipeline init`; run `dvc repro` in this folder.\n"
    "# Settings live in params.yaml: change one there and `dvc repro` reruns only the\n"
    "# stages that use it. Stage outputs are small records under pipeline/; the catalog,\n"
    "# embeddings/ and models/ are the project's own incremental state.\n"
)
_SUMMARY_SCHEMA = 1


@dataclass(frozen=True)
class PipelineOptions:
    """What ``lensloop pipeline init`` was asked for.

    Args:
        source: The image folder, as ``params.yaml`` holds it: relative to the project
            folder when inside it, else absolute (see :func:`source_param`).
        labels_from_folders: Ingest with ``--labels-from-folders`` (ImageFolder layout).
        metadata: Metadata CSV (same path rules as ``source``), or ``None``.
        key: The metadata CSV's file-name column.
        split: Held-out shares for ingest, e.g. ``val=0.2,test=0.1``.
        backbone: Embedding backbone (the probe trains on its vectors).
        method: ``probe`` or ``finetune``.
        epochs: Probe solver iterations or finetune epochs; ``None``: the trainer's default.
        seed: Seed of the split and of training.
        eval_split: Split that the evaluate stage scores.
    """

    source: str
    labels_from_folders: bool = True
    metadata: str | None = None
    key: str = "filename"
    split: str = "val=0.2,test=0.1"
    backbone: str = _DEFAULT_BACKBONE
    method: Method = "probe"
    epochs: int | None = None
    seed: int = 0
    eval_split: str = "test"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method {self.method!r}; valid: {', '.join(METHODS)}")
        if self.eval_split not in ("val", "test", "train"):
            raise ConfigError(f"evaluation split {self.eval_split!r}; valid: val, test, train")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1; got {self.epochs}")
        if self.seed < 0:
            raise ConfigError(f"seed must be 0 or more; got {self.seed}")


def default_epochs(method: Method) -> int:
    """The trainer's default for ``--epochs``: probe solver iterations or finetune epochs."""
    return _PROBE_MAX_ITER if method == "probe" else _FINETUNE_EPOCHS


def source_param(path: Path, root: Path) -> str:
    """How ``params.yaml`` names a file or folder: relative to ``root`` if inside it.

    DVC resolves a stage's dependencies against the ``dvc.yaml`` folder; one outside the
    DVC repository must be absolute.

    Returns:
        A POSIX path relative to ``root``, or the absolute path.
    """
    resolved = path.expanduser().resolve()
    try:
        return resolved.relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(resolved)


def build_params(options: PipelineOptions) -> dict[str, Any]:
    """The ``params.yaml`` content: one section per stage that takes settings."""
    ingest: dict[str, Any] = {"source": options.source}
    if options.metadata is not None:
        ingest |= {"metadata": options.metadata, "key": options.key}
    ingest |= {"split": options.split, "seed": options.seed}
    return {
        "ingest": ingest,
        "embed": {"backbone": options.backbone},
        "train": {
            "method": options.method,
            "epochs": options.epochs or default_epochs(options.method),
            "seed": options.seed,
        },
        "evaluate": {"split": options.eval_split},
    }


def _out(name: str) -> str:
    return f"{OUTPUT_DIR}/{name}"


def build_dvc_yaml(options: PipelineOptions) -> dict[str, Any]:
    """The ``dvc.yaml`` content as data; commands read ``params.yaml`` through ``${...}``.

    Every command runs in the project folder (the ``dvc.yaml`` folder), so the project is
    ``.``. Paths from ``params.yaml`` are quoted for the shell.

    Returns:
        ``{"stages": {name: {"cmd", "deps", "params", "outs" | "metrics"}}}`` in
        :data:`STAGES` order.
    """
    ingest_cmd = 'lensloop ingest . "${ingest.source}"'
    ingest_deps = ["${ingest.source}"]
    ingest_params = ["ingest.source", "ingest.split", "ingest.seed"]
    if options.labels_from_folders:
        ingest_cmd += " --labels-from-folders"
    if options.metadata is not None:
        ingest_cmd += ' --metadata "${ingest.metadata}" --key "${ingest.key}"'
        ingest_deps.append("${ingest.metadata}")
        ingest_params[1:1] = ["ingest.metadata", "ingest.key"]
    ingest_cmd += ' --split "${ingest.split}" --seed ${ingest.seed}'
    embed_cmd = 'lensloop embed . --backbone "${embed.backbone}"'
    train_cmd = (
        'lensloop train . --method ${train.method} --backbone "${embed.backbone}" '
        "--epochs ${train.epochs} --seed ${train.seed} --json"
    )
    stages: dict[str, Any] = {
        "ingest": {
            "cmd": [
                ingest_cmd,
                f"lensloop pipeline summary . ingest --out {_out('ingest.json')}",
            ],
            "deps": [*ingest_deps, CONFIG_FILE],
            "params": ingest_params,
            "outs": [_out("ingest.json")],
        },
        "embed": {
            "cmd": [
                embed_cmd,
                'lensloop pipeline summary . embed --backbone "${embed.backbone}" '
                f"--out {_out('embed.json')}",
            ],
            "deps": [_out("ingest.json"), CONFIG_FILE],
            "params": ["embed.backbone"],
            "outs": [_out("embed.json")],
        },
        "train": {
            "cmd": f"{train_cmd} > {_out('train.json')}",
            "deps": [_out("embed.json"), CONFIG_FILE],
            "params": ["embed.backbone", "train.method", "train.epochs", "train.seed"],
            "outs": [_out("train.json")],
        },
        "evaluate": {
            "cmd": "lensloop evaluate . --model latest --split ${evaluate.split} --json "
            f"> {_out('metrics.json')}",
            "deps": [_out("train.json")],
            "params": ["evaluate.split"],
            "metrics": [{_out("metrics.json"): {"cache": False}}],
        },
        "predict": {
            "cmd": f"lensloop predict . --model latest --out {_out('predictions.csv')}",
            "deps": [_out("train.json")],
            "outs": [_out("predictions.csv")],
        },
    }
    return {"stages": stages}


def _dump(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=100)


def write_pipeline(root: Path, options: PipelineOptions, *, force: bool = False) -> list[Path]:
    """Write ``dvc.yaml`` and ``params.yaml`` into the project folder ``root``.

    Also creates the ``pipeline/`` folder that the stages write into.

    Args:
        root: The project folder.
        options: What the pipeline runs.
        force: Overwrite an existing ``dvc.yaml`` / ``params.yaml``.

    Returns:
        The files written.

    Raises:
        ProjectError: ``dvc.yaml`` or ``params.yaml`` is already there and ``force`` is off.
    """
    files = {
        root / DVC_FILE: _HEADER + _dump(build_dvc_yaml(options)),
        root / PARAMS_FILE: _dump(build_params(options)),
    }
    existing = [path.name for path in files if path.exists()]
    if existing and not force:
        raise ProjectError(
            f"{' and '.join(existing)} already in {root}; pass --force to overwrite "
            f"{'them' if len(existing) > 1 else 'it'}"
        )
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
    (root / OUTPUT_DIR).mkdir(exist_ok=True)
    return list(files)


def find_dvc_root(start: Path) -> Path | None:
    """The nearest folder at or above ``start`` holding a ``.dvc`` folder, or ``None``."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


# -- stage summaries (read the catalog) -----------------------------------------------------


def _fingerprint(rows: list[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: tuple("" if v is None else str(v) for v in r)):
        digest.update(("\t".join("" if v is None else str(v) for v in row) + "\n").encode())
    return digest.hexdigest()


def stage_summary(project: Project, stage: str, *, backbone: str | None = None) -> dict[str, Any]:
    """What the catalog holds after a stage, with nothing that changes between reruns.

    ``ingest``: image, split and per-class counts and a fingerprint of every image's
    content hash, split and current class. ``embed``: the ``backbone``'s embedding sets
    (version, dim, vector count) and the images still without a vector. No timestamps,
    ids or paths, so an unchanged project gives identical bytes (:func:`summary_json`).

    Args:
        project: An open project.
        stage: One of :data:`SUMMARY_STAGES`.
        backbone: The backbone (needed for ``embed``).

    Returns:
        A JSON-serialisable dict.

    Raises:
        ConfigError: An unknown stage, or ``embed`` without a backbone.
    """
    if stage not in SUMMARY_STAGES:
        raise ConfigError(f"no summary for stage {stage!r}; valid: {', '.join(SUMMARY_STAGES)}")
    with project.catalog.reader() as session:
        if stage == "ingest":
            labels = current_class_paths(session)
            images = session.execute(select(Image.id, Image.sha256, Image.split)).all()
            failed = int(session.scalar(select(func.count()).select_from(IngestFailure)) or 0)
            splits: dict[str, int] = {}
            classes: dict[str, int] = {}
            for _image_id, _sha, split in images:
                splits[split or "unassigned"] = splits.get(split or "unassigned", 0) + 1
            for path in labels.values():
                classes[path] = classes.get(path, 0) + 1
            return {
                "schema": _SUMMARY_SCHEMA,
                "stage": "ingest",
                "images": len(images),
                "labelled": len(labels),
                "failed_files": failed,
                "splits": dict(sorted(splits.items())),
                "classes": dict(sorted(classes.items())),
                "fingerprint": _fingerprint(
                    [(sha, split, labels.get(image_id)) for image_id, sha, split in images]
                ),
            }
        if not backbone:
            raise ConfigError("the embed summary needs --backbone")
        total = int(session.scalar(select(func.count()).select_from(Image)) or 0)
        sets: list[dict[str, Any]] = [
            {"version": version, "dim": dim, "count": count}
            for version, dim, count in session.execute(
                select(EmbeddingSet.version, EmbeddingSet.dim, EmbeddingSet.count)
                .where(EmbeddingSet.backbone == backbone)
                .order_by(EmbeddingSet.version)
            )
        ]
    newest = max((int(s["count"]) for s in sets), default=0)
    return {
        "schema": _SUMMARY_SCHEMA,
        "stage": "embed",
        "backbone": backbone,
        "sets": sets,
        "images": total,
        "without_vectors": max(total - newest, 0),
    }


def summary_json(summary: dict[str, Any]) -> str:
    """The bytes a summary is written as: sorted keys, two-space indent, final newline."""
    return json.dumps(summary, indent=2, sort_keys=True) + "\n"

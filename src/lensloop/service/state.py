"""What one running server holds: the project, its current model, counters, the retrainer.

One :class:`ServiceState` is made per app by :func:`lensloop.service.app.create_app` and
kept on ``app.state``; nothing lives in module globals.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lensloop.errors import NotFoundError
from lensloop.service.batching import MicroBatcher
from lensloop.service.fetch import FetchPolicy
from lensloop.service.retrain import Retrainer

if TYPE_CHECKING:
    from lensloop.embed.base import Backbone
    from lensloop.project import Project
    from lensloop.train.inference import Model
    from lensloop.train.preannotate import AnyModel

__all__ = ["MODEL_CHECK_S", "UNTRAINED", "ServiceState"]

#: Seconds the serving model is trusted before the registry is asked again whether a new
#: release (or a moved alias) replaced it: two catalog queries saved per request.
MODEL_CHECK_S = 2.0
#: The ``model_version`` answered while the project has no model for its task.
UNTRAINED = "lensloop-untrained"


@dataclass
class ServiceState:
    """The server's state.

    Attributes:
        project: The open project.
        model_ref: Which model predicts: a version, an alias, or ``None`` (champion, else
            latest), re-resolved at most every :data:`MODEL_CHECK_S` seconds, so a new
            release is picked up without a restart.
        train_config: A training config file for retraining (``None``: the settings of the
            newest release of the task, else the defaults).
        retrain: Whether annotation webhooks start a retraining.
        counters: Requests served, predictions made, webhooks by action.
        fetch_policy: Limits of image URLs the API fetches (addresses, size, time).
        max_upload_bytes: Largest image a client may send (None: the project's setting).
    """

    project: Project
    model_ref: str | None = None
    train_config: Path | None = None
    retrain: bool = True
    counters: Counter[str] = field(default_factory=Counter)
    fetch_policy: FetchPolicy = field(default_factory=FetchPolicy)
    max_upload_bytes: int | None = None
    retrainer: Retrainer = field(init=False)
    _model: AnyModel | None = field(default=None, init=False, repr=False)
    _checked_at: float = field(default=-math.inf, init=False, repr=False)
    _named: dict[int, AnyModel] = field(default_factory=dict, init=False, repr=False)
    _backbones: dict[str, Backbone] = field(default_factory=dict, init=False, repr=False)
    _batchers: dict[int, MicroBatcher] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.retrainer = Retrainer(self.train)

    @property
    def upload_limit(self) -> int:
        """Largest image a client may send, in bytes."""
        if self.max_upload_bytes is not None:
            return self.max_upload_bytes
        return self.project.settings.max_upload_bytes

    def model_for(self, ref: str | None) -> AnyModel:
        """The model ``ref`` names (``None``: the serving model), loaded once per version.

        Raises:
            NotFoundError: No such version or alias, or no model released yet.
            ConfigError: The model cannot predict the project's task.
        """
        if ref is None:
            model = self.model()
            if model is None:
                raise NotFoundError(
                    f"the project has no {self.project.task} model yet; train one with "
                    "`lensloop train`"
                )
            return model
        from lensloop.train.preannotate import current_model
        from lensloop.train.registry import resolve_model

        version = resolve_model(self.project, ref).version
        with self._lock:
            found = self._named.get(version)
            if found is None:
                found = current_model(self.project, version)
                if found is None:  # pragma: no cover - a named version always loads or raises
                    raise NotFoundError(f"model {ref} cannot be loaded")
                self._named = {version: found}  # keep one: a client walking versions
            return found

    def batcher(self, model: Model) -> MicroBatcher:
        """The micro-batcher that runs ``model``'s image classifier for every request."""
        key = id(model.runner)
        with self._lock:
            found = self._batchers.get(key)
            if found is None:
                found = MicroBatcher(model.runner)
                self._batchers = {key: found}  # one model serves at a time
            return found

    def backbone(self, name: str) -> Backbone:
        """The embedding backbone ``name``, built once.

        Raises:
            UnknownNameError: No such backbone.
            ConfigError: It cannot be built here (weights or an extra missing).
        """
        from lensloop.embed.registry import BackboneOptions, get_backbone

        with self._lock:
            found = self._backbones.get(name)
            if found is None:
                options = BackboneOptions(
                    cache_dir=self.project.settings.cache_dir, project_root=self.project.root
                )
                found = get_backbone(name, options)
                self._backbones[name] = found
            return found

    def model(self) -> AnyModel | None:
        """The model that predicts now (loaded once per version), or ``None`` if none yet.

        Raises:
            ConfigError: The registry's model cannot pre-annotate the project's task.
            NotFoundError: A named version or alias does not exist.
        """
        from lensloop.train.preannotate import current_model
        from lensloop.train.registry import resolve_model

        now = time.monotonic()
        with self._lock:
            if self._model is not None and now - self._checked_at < MODEL_CHECK_S:
                return self._model
        try:
            version = resolve_model(self.project, self.model_ref).version
        except NotFoundError:
            if self.model_ref is not None:
                raise
            return None
        with self._lock:
            self._checked_at = now
            if self._model is None or self._model.version != version:
                self._model = current_model(self.project, version)
            return self._model

    @staticmethod
    def model_version(model: AnyModel | None) -> str:
        """The ``model_version`` Label Studio records for ``model`` (:data:`UNTRAINED`: none)."""
        from lensloop.train.preannotate import model_version_name

        return model_version_name(model) if model is not None else UNTRAINED

    def train(self) -> int:
        """Train and release a model with the configured settings; return its version."""
        from lensloop.train.config import load_train_config
        from lensloop.train.registry import list_models
        from lensloop.train.trainer import train_model

        settings: dict[str, Any] = {}
        if self.train_config is None:
            released = [m for m in list_models(self.project) if m.task == self.project.task]
            settings = dict(released[-1].config) if released else {}
        result = train_model(self.project, load_train_config(self.train_config, settings))
        with self._lock:
            self._checked_at = -math.inf  # ask the registry on the next request
        return result.model.version

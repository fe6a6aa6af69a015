from __future__ import annotations

import builtins
import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lensloop.embed.hf import HuggingFaceBackbone, read_image_processor_config
from lensloop.errors import ConfigError

transformers = pytest.importorskip("transformers")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_dinov2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 1-layer DINOv2 saved like a downloaded model."""
    folder = tmp_path_factory.mktemp("hf") / "tiny-dinov2"
    config = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    transformers.Dinov2Model(config).save_pretrained(folder)
    processor = {
        "image_processor_type": "BitImageProcessor",
        "do_center_crop": True,
        "crop_size": {"height": 32, "width": 32},
        "size": {"shortest_edge": 40},
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 255, (40, 30), dtype=np.uint8),
        rng.integers(0, 65535, (20, 50, 3), dtype=np.uint16),
        rng.random((33, 33, 4)).astype(np.float32),
    ]


def test_loads_offline_and_embeds(tiny_dinov2: Path) -> None:
    backbone = HuggingFaceBackbone(f"hf:{tiny_dinov2}")
    assert backbone.name == f"hf:{tiny_dinov2}"
    assert backbone.dim == 32
    assert backbone.spec.size == 32
    assert backbone.spec.mean == (0.5, 0.5, 0.5)
    assert backbone.spec.std == (0.25, 0.25, 0.25)
    batch = np.stack([backbone.prepare(image) for image in _images()])
    assert batch.shape == (3, 3, 32, 32)
    vectors = backbone.infer(batch)
    assert vectors.shape == (3, 32)
    assert vectors.dtype == np.float32
    assert np.all(np.isfinite(vectors))


def test_offline_variables_are_set_only_while_loading(
    tiny_dinov2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    seen: list[tuple[str | None, str | None]] = []
    real = transformers.AutoConfig.from_pretrained

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append((os.environ.get("HF_HUB_OFFLINE"), os.environ.get("TRANSFORMERS_OFFLINE")))
        assert kwargs["local_files_only"] is True
        return real(*args, **kwargs)

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", spy)
    HuggingFaceBackbone(tiny_dinov2)
    assert seen == [("1", "1")]
    assert "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["TRANSFORMERS_OFFLINE"] == "0"


def test_pooling_choices(tiny_dinov2: Path) -> None:
    batch = np.stack([HuggingFaceBackbone(tiny_dinov2).prepare(im) for im in _images()])
    auto = HuggingFaceBackbone(tiny_dinov2).infer(batch)
    cls = HuggingFaceBackbone(tiny_dinov2, pooling="cls").infer(batch)
    mean = HuggingFaceBackbone(tiny_dinov2, pooling="mean").infer(batch)
    assert np.allclose(auto, cls, atol=1e-5)  # DINOv2's pooler output is its CLS token
    assert not np.allclose(auto, mean)
    assert (
        HuggingFaceBackbone(tiny_dinov2).version
        != HuggingFaceBackbone(tiny_dinov2, pooling="mean").version
    )


def test_pickles_without_the_model(tiny_dinov2: Path) -> None:
    backbone = HuggingFaceBackbone(tiny_dinov2)
    batch = np.stack([backbone.prepare(im) for im in _images()])
    before = backbone.infer(batch)
    clone = pickle.loads(pickle.dumps(backbone))
    assert clone._model is None
    assert np.allclose(clone.infer(batch), before, atol=1e-6)
    assert clone.version == backbone.version


def test_defaults_without_processor_config(tiny_dinov2: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((tiny_dinov2 / name).read_bytes())
    assert read_image_processor_config(bare) == {}
    backbone = HuggingFaceBackbone(bare)
    assert backbone.spec.size == 32  # the model config's image_size
    assert backbone.spec.mean == (0.485, 0.456, 0.406)
    assert HuggingFaceBackbone(bare, input_size=48).spec.size == 48


def test_version_follows_the_weights(tiny_dinov2: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    config = transformers.Dinov2Config.from_pretrained(tiny_dinov2)
    torch.manual_seed(1)
    transformers.Dinov2Model(config).save_pretrained(other)
    assert HuggingFaceBackbone(other).version != HuggingFaceBackbone(tiny_dinov2).version


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("hf:", "empty name"),
        ("hf:/no/such/model/folder", "does not exist"),
        ("hf:lensloop-tests/not-in-any-cache", "never downloads"),
    ],
)
def test_missing_models_raise_without_network(spec: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        HuggingFaceBackbone(spec)


def test_file_instead_of_folder(tiny_dinov2: Path) -> None:
    with pytest.raises(ConfigError, match="is a file"):
        HuggingFaceBackbone(tiny_dinov2 / "config.json")


def test_bad_arguments(tiny_dinov2: Path) -> None:
    with pytest.raises(ConfigError, match="pooling must be one of auto, cls, mean"):
        HuggingFaceBackbone(tiny_dinov2, pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\(N, 3, H, W\)"):
        HuggingFaceBackbone(tiny_dinov2).infer(np.zeros((2, 32), np.float32))


def test_missing_transformers_names_the_extra(
    tiny_dinov2: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "transformers" or name.startswith("transformers."):
            raise ImportError("No module named 'transformers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ConfigError, match=r"lensloop\[hf\]"):
        HuggingFaceBackbone(tiny_dinov2)

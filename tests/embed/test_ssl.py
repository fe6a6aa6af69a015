from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lensloop.embed.onnx_backbone import OnnxBackbone
from lensloop.embed.ssl import (
    Augment,
    SmallEncoder,
    build_encoder,
    nt_xent_loss,
    train_ssl,
)
from lensloop.errors import ConfigError, ImageError, UnknownNameError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _images(n: int = 16, size: int = 32) -> list[np.ndarray]:
    """Blobs of two kinds (round, elongated) on noise, in mixed layouts and dtypes."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size, :size]
    images: list[np.ndarray] = []
    for i in range(n):
        a, b = (8, 8) if i % 2 else (12, 4)
        cy, cx = rng.uniform(12, size - 12, 2)
        blob = ((rows - cy) / a) ** 2 + ((cols - cx) / b) ** 2 <= 1
        image = np.where(blob, 50.0, 200.0) + rng.normal(0, 10, (size, size))
        array = np.clip(image, 0, 255).astype(np.uint8)
        if i % 4 == 1:
            array = np.repeat(array[..., None], 3, axis=-1)
        elif i % 4 == 2:
            array = array.astype(np.uint16) * 257
        images.append(array)
    return images


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ssl") / "encoder.onnx"
    return train_ssl(
        _images(), arch="small", input_size=32, epochs=1, batch_size=8, seed=0, out_path=out
    )


def test_train_writes_a_loadable_onnx_with_sidecar(trained: Path) -> None:
    sidecar = json.loads(trained.with_name(trained.name + ".json").read_text())
    assert sidecar["input_size"] == 32
    assert len(sidecar["mean"]) == len(sidecar["std"]) == 3
    assert sidecar["version"].startswith("simclr-1-small-32px-seed0-")
    backbone = OnnxBackbone(trained)
    assert backbone.dim == SmallEncoder().feature_dim
    assert backbone.spec.size == 32
    vectors = backbone.infer(np.stack([backbone.prepare(im) for im in _images(3, 40)]))
    assert vectors.shape == (3, backbone.dim)
    assert np.all(np.isfinite(vectors))


def test_same_seed_same_encoder_from_a_callable_source(trained: Path, tmp_path: Path) -> None:
    def source() -> Iterator[np.ndarray]:
        yield from _images()

    again = train_ssl(
        source,
        arch="small",
        input_size=32,
        epochs=1,
        batch_size=8,
        seed=0,
        out_path=tmp_path / "again.onnx",
    )
    first, second = OnnxBackbone(trained), OnnxBackbone(again)
    batch = np.stack([first.prepare(im) for im in _images(4)])
    assert np.allclose(first.infer(batch), second.infer(batch), atol=1e-5)
    assert first.version == second.version


def test_nt_xent_decreases_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    encoder, dim = build_encoder("small", input_size=32)
    head = torch.nn.Linear(dim, 16)
    augment = Augment(input_size=32, generator=torch.Generator().manual_seed(0))
    batch = torch.rand(8, 3, 36, 36)
    views = (augment(batch), augment(batch))  # fixed views: the loss must go down
    optimizer = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=1e-3)
    losses = []
    for _ in range(6):
        loss = nt_xent_loss(head(encoder(views[0])), head(encoder(views[1])))
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]


def test_nt_xent_prefers_matching_pairs() -> None:
    z = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    matched = nt_xent_loss(z, z + 0.01)
    shuffled = nt_xent_loss(z, z.roll(1, dims=0))
    assert float(matched) < float(shuffled)
    # perfectly separated pairs at a low temperature approach zero loss
    assert float(nt_xent_loss(torch.eye(4) * 10, torch.eye(4) * 10, temperature=0.05)) < 1e-3


def test_augment_is_seeded_and_in_range() -> None:
    batch = torch.rand(4, 3, 40, 40)
    a = Augment(input_size=32, generator=torch.Generator().manual_seed(1))(batch)
    b = Augment(input_size=32, generator=torch.Generator().manual_seed(1))(batch)
    c = Augment(input_size=32, generator=torch.Generator().manual_seed(2))(batch)
    assert a.shape == (4, 3, 32, 32)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert float(a.min()) >= 0.0
    assert float(a.max()) <= 1.0


def test_resnet18_encoder_has_a_small_input_stem() -> None:
    encoder, dim = build_encoder("resnet18", input_size=32)
    assert dim == 512
    with torch.no_grad():
        assert encoder.eval()(torch.zeros(2, 3, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"arch": "vgg"}, UnknownNameError, "valid names are: resnet18, resnet50, small"),
        ({"input_size": 8}, ConfigError, "input_size must be at least 16"),
        ({"epochs": 0}, ConfigError, "epochs=0"),
        ({"temperature": 0.0}, ConfigError, "temperature > 0"),
    ],
)
def test_bad_arguments(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        train_ssl(_images(4), out_path=tmp_path / "x.onnx", **kwargs)  # type: ignore[arg-type]


def test_too_few_or_bad_images(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 2 images"):
        train_ssl(_images(1), out_path=tmp_path / "x.onnx", input_size=16)
    with pytest.raises(ImageError, match=r"image 1 \(shape \(4, 4, 7\)\)"):
        train_ssl(
            [_images(1)[0], np.zeros((4, 4, 7), np.uint8)],
            out_path=tmp_path / "x.onnx",
            input_size=16,
        )

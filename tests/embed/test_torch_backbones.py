from __future__ import annotations

import hashlib
import io
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lensloop.embed.resnet import build_resnet
from lensloop.embed.torch_backbones import ResNetBackbone
from lensloop.embed.weights import KNOWN_WEIGHTS
from lensloop.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def random_resnet18(cache_dir: Path) -> ResNetBackbone:
    return ResNetBackbone(
        "resnet18", random_init=True, seed=0, input_size=64, cache_dir=cache_dir,
        intra_op_num_threads=1,
    )  # fmt: skip


def _batch(backbone: ResNetBackbone) -> np.ndarray:
    rng = np.random.default_rng(0)
    images = [
        rng.integers(0, 256, (48, 40, 3), dtype=np.uint8),
        rng.integers(0, 65535, (64, 64), dtype=np.uint16),
    ]
    return np.stack([backbone.prepare(image) for image in images])


@pytest.mark.slow
def test_random_init_matches_torch_eager(random_resnet18: ResNetBackbone, cache_dir: Path) -> None:
    backbone = random_resnet18
    assert (backbone.name, backbone.dim, backbone.version) == ("resnet18", 512, "random-seed0-64px")
    assert backbone.onnx_path == cache_dir / "onnx" / "resnet18-random-seed0.onnx"
    batch = _batch(backbone)
    assert batch.shape == (2, 3, 64, 64)
    vectors = backbone.infer(batch)
    assert vectors.shape == (2, 512)
    assert vectors.dtype == np.float32
    torch.manual_seed(0)
    model = build_resnet("resnet18").eval()
    with torch.no_grad():
        expected = model.forward_features(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(vectors, expected, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_second_construction_reuses_the_export(
    random_resnet18: ResNetBackbone, cache_dir: Path
) -> None:
    path = random_resnet18.onnx_path
    before = path.stat().st_mtime_ns
    again = ResNetBackbone("resnet18", random_init=True, input_size=64, cache_dir=cache_dir)
    assert again.onnx_path == path
    assert path.stat().st_mtime_ns == before
    batch = _batch(again)
    np.testing.assert_allclose(again.infer(batch), random_resnet18.infer(batch), atol=1e-6)
    clone = pickle.loads(pickle.dumps(again))
    np.testing.assert_allclose(clone.infer(batch), random_resnet18.infer(batch), atol=1e-6)
    # Another input size shares the (size-independent) export but not the version.
    small = ResNetBackbone("resnet18", random_init=True, input_size=32, cache_dir=cache_dir)
    assert small.version == "random-seed0-32px"
    assert small.infer(np.stack([small.prepare(np.zeros((8, 8), np.uint8))])).shape == (1, 512)
    assert path.stat().st_mtime_ns == before


def test_weights_are_required(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"--weights imagenet.*--weights PATH_OR_URL.*--random-init"
    ):
        ResNetBackbone("resnet18", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="either weights"):
        ResNetBackbone("resnet18", weights="imagenet", random_init=True, cache_dir=tmp_path)


def test_wrong_architecture_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "resnet50.pth"
    torch.save(build_resnet("resnet50").state_dict(), checkpoint)
    rng_state = torch.get_rng_state()
    with pytest.raises(ConfigError) as info:
        ResNetBackbone("resnet18", weights=str(checkpoint), cache_dir=tmp_path)
    assert torch.equal(torch.get_rng_state(), rng_state)  # seeded a forked RNG, not ours
    message = str(info.value)
    assert f"checkpoint {checkpoint} does not fit the ResNet model" in message
    assert "layer1.0.conv1.weight: checkpoint (64, 64, 1, 1) vs model (64, 64, 3, 3)" in message
    assert not (tmp_path / "onnx").exists()


@pytest.mark.slow
def test_imagenet_alias_downloads_the_known_url(
    random_resnet18: ResNetBackbone, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    torch.save(build_resnet("resnet18").state_dict(), buffer)
    content = buffer.getvalue()
    sha = hashlib.sha256(content).hexdigest()
    urls: list[str] = []

    def fake_download(url: str, destination: Path) -> None:
        urls.append(url)
        destination.write_bytes(content)

    # The stand-in file is not torchvision's, so the tag in the real URL refuses it ...
    with pytest.raises(ConfigError, match="expected f37072fd"):
        ResNetBackbone("resnet18", weights="imagenet", cache_dir=tmp_path, download=fake_download)
    # ... unless its own sha256 is given. Seed the cache with an export so this test
    # checks the download, naming and version without a second export.
    onnx_dir = tmp_path / "onnx"
    onnx_dir.mkdir()
    shutil.copy(random_resnet18.onnx_path, onnx_dir / f"resnet18-{sha[:12]}.onnx")
    backbone = ResNetBackbone(
        "resnet18", weights="imagenet", sha256=sha, cache_dir=tmp_path, download=fake_download
    )
    assert urls == [KNOWN_WEIGHTS["resnet18"][0]] * 2
    assert backbone.version == f"imagenet-{sha[:12]}"
    assert backbone.onnx_path == onnx_dir / f"resnet18-{sha[:12]}.onnx"
    assert backbone.dim == 512

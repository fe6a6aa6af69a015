from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lensloop.catalog.vectors import VectorStore, embedding_set_dir
from lensloop.errors import CatalogError


def test_append_and_load_newest_wins(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "s", dim=3)
    assert store.ids().size == 0
    store.append(np.array([5, 2]), np.array([[1, 0, 0], [0, 1, 0]], np.float32))
    store.append(np.array([9, 5]), np.array([[0, 0, 1], [0.6, 0.8, 0]], np.float32))
    ids, vecs = store.load()
    assert ids.tolist() == [2, 5, 9]
    np.testing.assert_allclose(vecs, [[0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]])
    assert store.ids().tolist() == [2, 5, 9]


def test_incomplete_part_is_ignored_and_damaged_part_reported(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "s", dim=2)
    store.append(np.array([1]), np.ones((1, 2), np.float32))
    # A crash between the two writes leaves a vectors file without its ids file: ignored.
    np.save(tmp_path / "s" / "part-000002.vec.npy", np.ones((4, 2), np.float32))
    assert store.load()[0].tolist() == [1]
    # An ids file whose vectors are damaged is reported with how to fix it.
    np.save(tmp_path / "s" / "part-000003.ids.npy", np.array([7, 8]))
    np.save(tmp_path / "s" / "part-000003.vec.npy", np.ones((3, 2), np.float32))
    with pytest.raises(CatalogError, match=r"part-000003.vec.npy has shape \(3, 2\)"):
        store.load()


def test_bad_vectors_are_refused(tmp_path: Path) -> None:
    store = VectorStore(tmp_path / "s", dim=2)
    with pytest.raises(ValueError, match=r"expected vectors of shape \(1, 2\)"):
        store.append(np.array([1]), np.ones((1, 3), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        store.append(np.array([1]), np.array([[np.nan, 1]], np.float32))
    assert not (tmp_path / "s").exists()


def test_set_dir_is_a_safe_slug(tmp_path: Path) -> None:
    path = embedding_set_dir(tmp_path, "onnx:/home/me/model v2.onnx", "abc123")
    assert path.parent.parent == tmp_path
    assert path.parent.name == "onnx_home_me_model_v2.onnx"

"""VectorIndex and find_duplicates: exactness, recall, persistence and input checks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import pytest

from lensloop.embed import index as index_module
from lensloop.embed.index import (
    EXACT_MAX_FLOATS,
    EmbeddingError,
    VectorIndex,
    default_nlist,
    default_nprobe,
    find_duplicates,
)
from lensloop.errors import ConfigError, LensloopError, NotFoundError

KINDS: tuple[Literal["exact", "hnsw", "ivf"], ...] = ("exact", "hnsw", "ivf")


def unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute_force(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = queries.astype(np.float64) @ base.astype(np.float64).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# -- exact search ------------------------------------------------------------------------


def test_exact_search_returns_the_true_neighbours(rng: np.random.Generator) -> None:
    base, queries = unit(rng, 3000, 32), unit(rng, 50, 32)
    ids = rng.permutation(10_000)[:3000].astype(np.int64)
    index = VectorIndex.build(base, ids)
    assert index.kind == "exact"
    scores, found = index.search(queries, 10)
    want_scores, want_rows = brute_force(base, queries, 10)
    assert scores.dtype == np.float32
    assert found.dtype == np.int64
    assert scores.shape == found.shape == (50, 10)
    np.testing.assert_array_equal(found, ids[want_rows])
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)


def test_k_larger_than_the_index_is_capped_and_never_padded(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 7, 8), np.arange(7))
    scores, found = index.search(unit(rng, 3, 8), 50)
    assert found.shape == (3, 7)
    assert (found >= 0).all()
    assert all(sorted(row) == list(range(7)) for row in found.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_no_queries_give_empty_results(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 10, 4), np.arange(10))
    scores, found = index.search(np.empty((0, 4), np.float32), 3)
    assert scores.shape == found.shape == (0, 3)


def test_normalize_option_accepts_raw_vectors(rng: np.random.Generator) -> None:
    base = unit(rng, 100, 16)
    index = VectorIndex.build(base * 7.5, np.arange(100), normalize=True)
    scores, found = index.search(base[:5] * 0.1, 1, normalize=True)
    np.testing.assert_array_equal(found[:, 0], np.arange(5))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


# -- approximate search ------------------------------------------------------------------


def test_hnsw_recall_at_10_is_at_least_095_on_random_data(rng: np.random.Generator) -> None:
    base, queries = unit(rng, 20_000, 64), unit(rng, 200, 64)
    ids = np.arange(20_000, dtype=np.int64) * 2
    exact = VectorIndex.build(base, ids, kind="exact")
    hnsw = VectorIndex.build(base, ids, kind="hnsw", seed=1)
    assert hnsw.kind == "hnsw"
    _, truth = exact.search(queries, 10)
    _, found = hnsw.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_ivf_is_complete_even_when_it_probes_one_cell(rng: np.random.Generator) -> None:
    base = unit(rng, 4000, 16)
    index = VectorIndex.build(base, np.arange(4000), kind="ivf", seed=3)
    assert index.kind == "ivf"
    index.search_breadth = 1
    assert index.search_breadth == 1
    scores, found = index.search(unit(rng, 20, 16), 200)  # more than a cell holds
    assert found.shape == (20, 200)
    assert (found >= 0).all()
    assert all(len(set(row)) == 200 for row in found.tolist())
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_ivf_recall_is_high_on_clustered_data(rng: np.random.Generator) -> None:
    centres = unit(rng, 20, 32)
    base = centres[rng.integers(0, 20, 8000)] + 0.15 * rng.standard_normal((8000, 32))
    base = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    queries = base[:100]
    exact = VectorIndex.build(base, np.arange(8000), kind="exact")
    ivf = VectorIndex.build(base, np.arange(8000), kind="ivf")
    _, truth = exact.search(queries, 10)
    _, found = ivf.search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, truth, strict=True)])
    assert recall >= 0.95


def test_hnsw_breadth_can_be_changed(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 500, 8), np.arange(500), kind="hnsw")
    assert index.search_breadth == index_module.HNSW_EF_SEARCH
    index.search_breadth = 300
    assert index.search_breadth == 300


def test_auto_is_exact_below_the_threshold_and_ivf_above(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = unit(rng, 2000, 16)
    assert EXACT_MAX_FLOATS >= 2000 * 16
    assert VectorIndex.build(base, np.arange(2000)).kind == "exact"
    monkeypatch.setattr(index_module, "EXACT_MAX_FLOATS", 2000 * 16 - 1)
    assert VectorIndex.build(base, np.arange(2000)).kind == "ivf"


def test_ivf_defaults_follow_the_documented_rules() -> None:
    assert default_nlist(1_000_000) == 1024
    assert default_nlist(100) == 2  # at least 39 training vectors per cell
    assert default_nlist(1) == 1
    assert default_nprobe(1_000_000, 512, 1024) == 64
    assert default_nprobe(1000, 16, 25) == 25  # never more than there are cells
    assert default_nprobe(100_000_000, 2048, 16384) == 8


def test_ivf_build_is_reproducible_with_a_seed(rng: np.random.Generator) -> None:
    base, queries = unit(rng, 3000, 16), unit(rng, 30, 16)
    first = VectorIndex.build(base, np.arange(3000), kind="ivf", seed=5)
    second = VectorIndex.build(base, np.arange(3000), kind="ivf", seed=5)
    first.search_breadth = second.search_breadth = 2
    np.testing.assert_array_equal(first.search(queries, 10)[1], second.search(queries, 10)[1])


# -- similar_to_id -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_similar_to_id_excludes_the_image_itself(
    rng: np.random.Generator, kind: Literal["exact", "hnsw", "ivf"]
) -> None:
    base = unit(rng, 1000, 16)
    ids = np.arange(1000, dtype=np.int64) + 500
    index = VectorIndex.build(base, ids, kind=kind)
    scores, found = index.similar_to_id(742, 5)
    assert found.shape == scores.shape == (5,)
    assert 742 not in found.tolist()
    _, want = brute_force(base, base[742 - 500][None], 6)
    assert found.tolist() == (ids[want[0]][1:]).tolist()


def test_similar_to_id_with_identical_copies_still_excludes_itself(
    rng: np.random.Generator,
) -> None:
    base = np.repeat(unit(rng, 1, 8), 5, axis=0)
    index = VectorIndex.build(base, [10, 11, 12, 13, 14])
    for image_id in range(10, 15):
        scores, found = index.similar_to_id(image_id, 10)
        assert sorted(found.tolist()) == sorted(set(range(10, 15)) - {image_id})
        np.testing.assert_allclose(scores, 1.0, atol=1e-6)


def test_similar_to_id_on_a_one_image_index_is_empty(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 1, 8), [3])
    scores, found = index.similar_to_id(3, 4)
    assert scores.shape == found.shape == (0,)


def test_similar_to_an_unknown_id_is_not_found(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 10, 8), np.arange(10))
    with pytest.raises(NotFoundError, match="image id 99 is not in this vector index"):
        index.similar_to_id(99, 3)
    with pytest.raises(EmbeddingError, match="must be an integer"):
        index.similar_to_id("3", 3)  # type: ignore[arg-type]
    assert 3 in index
    assert 99 not in index
    assert "3" not in index


# -- persistence -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_and_load_round_trip(
    rng: np.random.Generator, tmp_path: Path, kind: Literal["exact", "hnsw", "ivf"]
) -> None:
    base, queries = unit(rng, 2000, 16), unit(rng, 20, 16)
    ids = rng.permutation(100_000)[:2000].astype(np.int64)
    index = VectorIndex.build(base, ids, kind=kind)
    if kind != "exact":
        index.search_breadth = 7
    path = index.save(tmp_path / "vectors.faiss")
    assert path == tmp_path / "vectors.faiss"
    assert [p.name for p in tmp_path.iterdir()] == ["vectors.faiss"]  # no temporary left
    loaded = VectorIndex.load(path)
    assert (loaded.kind, len(loaded), loaded.dim) == (kind, 2000, 16)
    assert loaded.search_breadth == index.search_breadth
    np.testing.assert_array_equal(loaded.ids, ids)
    for got, want in zip(loaded.search(queries, 10), index.search(queries, 10), strict=True):
        np.testing.assert_array_equal(got, want)
    assert loaded.similar_to_id(int(ids[5]), 3)[1].tolist() == (
        index.similar_to_id(int(ids[5]), 3)[1].tolist()
    )


def test_save_replaces_an_existing_file(rng: np.random.Generator, tmp_path: Path) -> None:
    path = tmp_path / "v.faiss"
    VectorIndex.build(unit(rng, 10, 4), np.arange(10)).save(path)
    VectorIndex.build(unit(rng, 20, 4), np.arange(20)).save(str(path))
    assert len(VectorIndex.load(str(path))) == 20


def test_save_into_a_missing_folder_fails(rng: np.random.Generator, tmp_path: Path) -> None:
    index = VectorIndex.build(unit(rng, 10, 4), np.arange(10))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        index.save(tmp_path / "nowhere" / "v.faiss")


def test_load_rejects_missing_damaged_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="no vector index file"):
        VectorIndex.load(tmp_path / "missing.faiss")
    damaged = tmp_path / "damaged.faiss"
    damaged.write_bytes(b"not an index at all")
    with pytest.raises(EmbeddingError, match="not a readable FAISS index"):
        VectorIndex.load(damaged)
    bare = tmp_path / "bare.faiss"
    faiss.write_index(faiss.IndexFlatIP(4), str(bare))
    with pytest.raises(EmbeddingError, match="without image ids"):
        VectorIndex.load(bare)
    empty = tmp_path / "empty.faiss"
    faiss.write_index(faiss.IndexIDMap(faiss.IndexFlatIP(4)), str(empty))
    with pytest.raises(EmbeddingError, match="holds no vectors"):
        VectorIndex.load(empty)
    lsh = faiss.IndexIDMap(faiss.IndexLSH(4, 8))
    lsh.add_with_ids(np.eye(4, dtype=np.float32), np.arange(4, dtype=np.int64))
    faiss.write_index(lsh, str(tmp_path / "lsh.faiss"))
    with pytest.raises(EmbeddingError, match="holds a FAISS IndexLSH, which lensloop does not"):
        VectorIndex.load(tmp_path / "lsh.faiss")
    l2 = tmp_path / "l2.faiss"
    flat_l2 = faiss.IndexIDMap(faiss.IndexFlatL2(4))
    flat_l2.add_with_ids(np.eye(4, dtype=np.float32), np.arange(4, dtype=np.int64))
    faiss.write_index(flat_l2, str(l2))
    with pytest.raises(EmbeddingError, match="L2 distance"):
        VectorIndex.load(l2)


# -- input checks ------------------------------------------------------------------------


def test_errors_are_lensloop_value_errors() -> None:
    assert issubclass(EmbeddingError, LensloopError)
    assert issubclass(EmbeddingError, ValueError)


@pytest.mark.parametrize(
    ("vectors", "ids", "message"),
    [
        (np.zeros((0, 8), np.float32), np.zeros(0, np.int64), "at least 1 row"),
        (np.ones(8, np.float32), [0], r"2-D array .*v\[None, :\]"),
        (np.ones((2, 0), np.float32), [0, 1], "0 columns"),
        (np.array([["a", "b"]]), [0], "real numbers"),
        (np.full((2, 4), 0.5, np.float32), [1, 1], "ids must be unique; 1 id"),
        (np.full((2, 4), 0.5, np.float32), [1], "one image id per vector"),
        (np.full((2, 4), 0.5, np.float32), [0.0, 1.0], "ids must be integers"),
        (np.full((2, 4), 0.5, np.float32), [-1, 2], "ids must be >= 0"),
        (np.full((2, 4), 2.0, np.float32), [0, 1], r"not L2-normalised: row 0 has norm 4"),
        (np.array([[np.nan, 0, 0, 1]], np.float32), [0], "row 0 has a NaN or infinite"),
        (np.array([[1, 0], [np.inf, 0]], np.float32), [0, 1], "row 1 has a NaN or infinite"),
    ],
)
def test_build_rejects_bad_input(vectors: np.ndarray, ids: object, message: str) -> None:
    with pytest.raises(EmbeddingError, match=message):
        VectorIndex.build(vectors, ids)  # type: ignore[arg-type]


def test_normalize_rejects_a_zero_vector() -> None:
    with pytest.raises(EmbeddingError, match="row 1 is all zeros"):
        VectorIndex.build(np.array([[1, 0], [0, 0]], np.float32), [0, 1], normalize=True)


def test_unnormalised_message_says_how_to_fix_it() -> None:
    with pytest.raises(EmbeddingError, match="pass normalize=True"):
        VectorIndex.build(np.array([[3.0, 4.0]]), [0])


def test_unknown_kind_lists_the_valid_ones(rng: np.random.Generator) -> None:
    with pytest.raises(ConfigError, match="unknown index kind 'flat'; valid kinds are: auto"):
        VectorIndex.build(unit(rng, 4, 4), np.arange(4), kind="flat")  # type: ignore[arg-type]


def test_search_rejects_bad_queries_and_k(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 10, 8), np.arange(10))
    with pytest.raises(EmbeddingError, match="have 4 dimensions but the index holds 8-D"):
        index.search(unit(rng, 2, 4), 3)
    with pytest.raises(EmbeddingError, match="queries are not L2-normalised"):
        index.search(unit(rng, 2, 8) * 2, 3)
    with pytest.raises(EmbeddingError, match="queries row 0 has a NaN"):
        index.search(np.full((1, 8), np.nan, np.float32), 3)
    for k in (0, -1, True, 1.5):
        with pytest.raises(ConfigError, match="k must be a positive integer"):
            index.search(unit(rng, 1, 8), k)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        index.similar_to_id(1, 0)


def test_exact_index_has_no_breadth(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 10, 8), np.arange(10))
    assert index.search_breadth is None
    with pytest.raises(ConfigError, match="no breadth"):
        index.search_breadth = 4
    ivf = VectorIndex.build(unit(rng, 100, 8), np.arange(100), kind="ivf")
    with pytest.raises(ConfigError, match="search_breadth must be a positive integer"):
        ivf.search_breadth = 0


def test_ids_are_read_only(rng: np.random.Generator) -> None:
    index = VectorIndex.build(unit(rng, 10, 8), np.arange(10))
    with pytest.raises(ValueError, match="read-only"):
        index.ids[0] = 5
    assert repr(index) == "VectorIndex(kind='exact', n=10, dim=8)"


# -- duplicates --------------------------------------------------------------------------


def planted(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, set[tuple[int, int]]]:
    """2000 random 64-D vectors plus 32 near-copies: 30 pairs and one group of three."""
    base = unit(rng, 2000, 64)
    sources = rng.choice(2000, size=31, replace=False)
    copies = base[np.concatenate([sources, sources[-1:]])]
    copies = copies + 0.02 * rng.standard_normal(copies.shape).astype(np.float32)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    vectors = np.concatenate([base, copies]).astype(np.float32)
    ids = rng.permutation(50_000)[: len(vectors)].astype(np.int64)
    expected: set[tuple[int, int]] = set()
    for j, source in enumerate(np.concatenate([sources, sources[-1:]])):
        a, b = int(ids[source]), int(ids[2000 + j])
        expected.add((min(a, b), max(a, b)))
    c1, c2 = int(ids[2000 + 30]), int(ids[2000 + 31])
    expected.add((min(c1, c2), max(c1, c2)))  # the two copies of the last source
    return vectors, ids, expected


def test_find_duplicates_finds_planted_copies_and_nothing_else(
    rng: np.random.Generator,
) -> None:
    vectors, ids, expected = planted(rng)
    pairs = find_duplicates(vectors, ids, threshold=0.95)
    assert {(a, b) for a, b, _ in pairs} == expected
    assert len(pairs) == len(expected) == 33  # each pair once
    assert all(a < b and 0.95 <= s <= 1.0 for a, b, s in pairs)
    sims = [s for _, _, s in pairs]
    assert sims == sorted(sims, reverse=True)
    assert all(isinstance(a, int) and isinstance(s, float) for a, _, s in pairs)


def test_find_duplicates_through_ivf_finds_the_same_pairs(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    vectors, ids, expected = planted(rng)
    monkeypatch.setattr(index_module, "EXACT_MAX_FLOATS", 0)
    pairs = find_duplicates(vectors, ids, threshold=0.95, k=5)
    assert {(a, b) for a, b, _ in pairs} == expected


def test_find_duplicates_with_none_returns_empty(rng: np.random.Generator) -> None:
    assert find_duplicates(unit(rng, 500, 64), np.arange(500)) == []


def test_find_duplicates_checks_its_options(rng: np.random.Generator) -> None:
    vectors = unit(rng, 10, 8)
    for threshold in (1.5, -2, "high", True):
        with pytest.raises(ConfigError, match="threshold must be"):
            find_duplicates(vectors, np.arange(10), threshold=threshold)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="k must be a positive integer"):
        find_duplicates(vectors, np.arange(10), k=0)
    with pytest.raises(EmbeddingError, match="not L2-normalised"):
        find_duplicates(vectors * 3, np.arange(10))
    assert find_duplicates(vectors * 3, np.arange(10), normalize=True, threshold=1.0) == []

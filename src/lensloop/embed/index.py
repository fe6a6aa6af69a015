"""Nearest-neighbour search over L2-normalised embedding vectors, keyed by image id.

:class:`VectorIndex` wraps a FAISS index whose similarity is the inner product, which for
L2-normalised vectors is the cosine similarity (1 for identical directions, 0 for
orthogonal ones). It holds float32 vectors ``(N, D)`` and one int64 image id per vector,
answers k-nearest-neighbour queries with image ids, and saves itself to one file.

Which FAISS index ``kind="auto"`` builds, from measurements on 2 CPU cores
(``bench/bench_search.py`` has the figures):

- ``"exact"`` (``IndexFlatIP``) while N × D is at most :data:`EXACT_MAX_FLOATS` (2²⁶,
  e.g. 131,072 × 512-D vectors): nothing to build or train, exact answers, and one query
  reads every number once (15 ms for 100,000 × 512 and 28 ms for 200,000 × 512 on an idle
  core; 290 ms for 1,000,000 × 512).
- ``"ivf"`` (``IndexIVFFlat``) above it: about √N k-means cells (:func:`default_nlist`),
  trained on a seeded sample in seconds (4 s training and 7 s adding for 1,000,000 × 512);
  a query scans only the :func:`default_nprobe` cells nearest to it, about 7 ms at
  1,000,000 × 512. Its answers are approximate.
- ``"hnsw"`` (``IndexHNSWFlat``, M = 32) only when asked for: fast queries with high
  recall and no training, but a slow build on few cores (92 s for 100,000 × 512 on 2
  cores, so roughly 20 minutes for a million), which is why ``"auto"`` does not choose it.

Approximate indexes can miss true neighbours, far more on structure-less random vectors
(recall@10 0.19 at 1,000,000 × 512 with the default breadth) than on vectors with
structure like image embeddings (0.98 on clustered vectors of intrinsic dimension 32);
:attr:`VectorIndex.search_breadth` trades speed for recall.

:func:`find_duplicates` lists pairs of near-identical vectors (near-copies of an image)
without an N × N similarity matrix.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import time
from pathlib import Path
from typing import Any, Final, Literal, cast, get_args

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError, EmbeddingError, NotFoundError

__all__ = [
    "EXACT_MAX_FLOATS",
    "HNSW_EF_SEARCH",
    "HNSW_M",
    "NORM_TOLERANCE",
    "EmbeddingError",
    "IndexKind",
    "VectorIndex",
    "as_vectors",
    "default_nlist",
    "default_nprobe",
    "find_duplicates",
]

logger = logging.getLogger(__name__)

IndexKind = Literal["auto", "exact", "hnsw", "ivf"]
"""Which FAISS index :meth:`VectorIndex.build` makes (see the module docstring)."""

_BuiltKind = Literal["exact", "hnsw", "ivf"]

EXACT_MAX_FLOATS: Final = 2**26
"""Largest N × D (67,108,864; 131,072 × 512-D) that ``kind="auto"`` serves exactly.

An exact query reads every number once, ~19 ms at this size on an idle core (15 ms
measured at 100,000 × 512, 28 ms at 200,000 × 512). That leaves headroom under the 50 ms
an interactive similar-image search may take when the cores are shared (44-64 ms measured
at this size with a second job on the 2 cores); above it IVF answers in a few ms."""

HNSW_M: Final = 32
"""Neighbours per node in the HNSW graph (FAISS's recommended 32 for D up to ~1000)."""

HNSW_EF_CONSTRUCTION: Final = 40
"""Candidate list length while building the HNSW graph (FAISS's default)."""

HNSW_EF_SEARCH: Final = 128
"""Default candidate list length of an HNSW query: recall@10 0.975 (against exact search)
on 20,000 random 64-D vectors, where 64 gave 0.886 and 256 gave 0.997 at twice the cost."""

NORM_TOLERANCE: Final = 1e-3
"""How far from 1 a vector's L2 norm may be and still count as normalised."""

_IVF_TRAIN_PER_CELL: Final = 64
"""Training vectors per IVF cell: FAISS warns below 39; more adds training time only."""

_IVF_NITER: Final = 10
"""k-means iterations when training the IVF cells (FAISS's default for IVF)."""

_IVF_SCAN_FLOATS: Final = 32_000_000
"""Numbers an IVF query scans by default: about 10 ms of work on one core."""

_CHECK_ROWS: Final = 65_536
"""Rows checked at a time for finite values and norms, to bound temporary memory."""

_DUPLICATE_BATCH: Final = 4_096
"""Queries per batch in :func:`find_duplicates`."""

FloatArray = npt.NDArray[np.float32]
IdArray = npt.NDArray[np.int64]


def as_vectors(
    vectors: npt.ArrayLike, *, name: str = "vectors", min_rows: int = 1, dim: int | None = None
) -> FloatArray:
    """Check that ``vectors`` is a finite ``(N, D)`` array and return it as float32.

    Args:
        vectors: ``(N, D)`` array of any real dtype (converted to float32; no copy when it
            is already C-contiguous float32).
        name: What to call the array in error messages ("queries").
        min_rows: The fewest rows allowed.
        dim: The number of columns required, or None for any positive number.

    Returns:
        ``(N, D)`` float32 C-contiguous array.

    Raises:
        EmbeddingError: Not 2-D, not real numbers, too few rows, zero or the wrong number
            of columns, or a NaN or infinite value.
    """
    array = np.asarray(vectors)
    if array.ndim != 2:
        hint = " (one vector v is v[None, :])" if array.ndim == 1 else ""
        raise EmbeddingError(
            f"{name} must be a 2-D array (N, D), one vector per row; got shape {array.shape}{hint}"
        )
    if array.dtype.kind not in "fiu":
        raise EmbeddingError(f"{name} must hold real numbers (float32); got dtype {array.dtype}")
    rows, cols = array.shape
    if rows < min_rows:
        raise EmbeddingError(f"{name} needs at least {min_rows} row(s); got {rows}")
    if cols == 0:
        raise EmbeddingError(f"{name} has 0 columns; each vector needs at least one dimension")
    if dim is not None and cols != dim:
        raise EmbeddingError(
            f"{name} have {cols} dimensions but the index holds {dim}-D vectors; use vectors "
            f"from the same backbone the index was built from"
        )
    out = np.ascontiguousarray(array, dtype=np.float32)
    for start in range(0, rows, _CHECK_ROWS):
        bad = ~np.isfinite(out[start : start + _CHECK_ROWS]).all(axis=1)
        if bad.any():
            row = start + int(np.argmax(bad))
            raise EmbeddingError(
                f"{name} row {row} has a NaN or infinite value; drop or recompute that vector"
            )
    return out


def _unit_rows(
    vectors: npt.ArrayLike,
    *,
    normalize: bool,
    name: str,
    min_rows: int = 1,
    dim: int | None = None,
) -> FloatArray:
    """:func:`as_vectors`, then check (or, with ``normalize``, make) every row's norm 1."""
    out = as_vectors(vectors, name=name, min_rows=min_rows, dim=dim)
    norms = np.empty(len(out), dtype=np.float32)
    for start in range(0, len(out), _CHECK_ROWS):
        chunk = out[start : start + _CHECK_ROWS]
        norms[start : start + len(chunk)] = np.sqrt(np.einsum("ij,ij->i", chunk, chunk))
    if normalize:
        zero = norms == 0
        if zero.any():
            raise EmbeddingError(
                f"{name} row {int(np.argmax(zero))} is all zeros and has no direction to "
                f"normalise; drop that vector"
            )
        return np.ascontiguousarray(out / norms[:, None], dtype=np.float32)
    off = np.abs(norms - 1) > NORM_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise EmbeddingError(
            f"{name} are not L2-normalised: row {row} has norm {float(norms[row]):.6g} "
            f"(allowed 1 ± {NORM_TOLERANCE:g}) and {int(off.sum())} of {len(out)} rows are "
            f"off; pass normalize=True, or divide each row by its norm first"
        )
    return out


def _as_ids(ids: npt.ArrayLike, *, n: int) -> IdArray:
    """Check image ids: ``(N,)`` integers, none negative, no repeats; return int64."""
    array = np.asarray(ids)
    if array.ndim != 1 or len(array) != n:
        raise EmbeddingError(
            f"ids must be a 1-D array with one image id per vector ({n}); got shape {array.shape}"
        )
    if n and array.dtype.kind not in "iu":
        raise EmbeddingError(f"ids must be integers (int64 image ids); got dtype {array.dtype}")
    if n and array.dtype.kind == "u" and int(array.max()) > np.iinfo(np.int64).max:
        raise EmbeddingError(f"ids must fit in int64; got {int(array.max())}")
    out = np.ascontiguousarray(array, dtype=np.int64)
    if n and int(out.min()) < 0:
        raise EmbeddingError(
            f"ids must be >= 0 (FAISS uses -1 for 'no result'); got {int(out.min())}"
        )
    ordered = np.sort(out)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if len(repeated):
        shown = ", ".join(str(int(i)) for i in np.unique(repeated)[:5])
        raise EmbeddingError(
            f"ids must be unique; {len(np.unique(repeated))} id(s) repeat, e.g. {shown}. "
            f"Each image id may have one vector"
        )
    return out


def _check_k(k: object, *, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k <= 0:
        raise ConfigError(f"{name} must be a positive integer; got {k!r}")
    return int(k)


def _faiss() -> Any:
    """Import FAISS (a heavy import, done on first use)."""
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is in the embed extra
        raise ConfigError(
            "vector search needs FAISS, which is not installed; install it with "
            "pip install 'lensloop[embed]' (or pip install faiss-cpu)"
        ) from err
    return faiss


def default_nlist(n: int) -> int:
    """Number of IVF cells for ``n`` vectors: the power of two nearest √N.

    Cells of about √N vectors keep k-means training cheap on few cores (1,024 cells for a
    million vectors train in seconds) and a query's cell search negligible. Capped so each
    cell gets at least 39 training vectors (FAISS's minimum).

    Args:
        n: Number of vectors.

    Returns:
        The number of cells, at least 1.
    """
    nearest = 1 << round(math.log2(max(1.0, math.sqrt(n))))
    return max(1, min(nearest, n // 39))


def default_nprobe(n: int, dim: int, nlist: int) -> int:
    """Cells an IVF query scans by default: about 32 million numbers' worth, at least 8.

    With ``n`` vectors of ``dim`` numbers in ``nlist`` cells, each cell holds about
    ``n * dim / nlist`` numbers. A fixed scan budget keeps query time near 10 ms on one core
    whatever the index size, and scans a larger share of a smaller index.

    Args:
        n: Number of vectors.
        dim: Their dimension.
        nlist: Number of cells.

    Returns:
        The number of cells to scan, between 1 and ``nlist``.
    """
    per_cell = max(1.0, n * dim / max(1, nlist))
    return max(1, min(nlist, max(8, int(_IVF_SCAN_FLOATS // per_cell))))


def _choose_kind(kind: str, n: int, dim: int) -> _BuiltKind:
    valid = get_args(IndexKind)
    if kind not in valid:
        raise ConfigError(f"unknown index kind {kind!r}; valid kinds are: {', '.join(valid)}")
    if kind == "auto":
        return "exact" if n * dim <= EXACT_MAX_FLOATS else "ivf"
    return cast(_BuiltKind, kind)


def _kind_of(faiss: Any, inner: Any) -> _BuiltKind:
    """The kind of a FAISS index read from a file, or an error for any other index."""
    if isinstance(inner, faiss.IndexHNSWFlat):
        return "hnsw"
    if isinstance(inner, faiss.IndexIVFFlat):
        return "ivf"
    if isinstance(inner, faiss.IndexFlat):
        return "exact"
    raise EmbeddingError(
        f"the file holds a FAISS {type(inner).__name__}, which lensloop does not use; "
        f"rebuild the index with VectorIndex.build"
    )


class VectorIndex:
    """k-nearest-neighbour search over L2-normalised float32 vectors keyed by image id.

    Make one with :meth:`build` or :meth:`load`; the constructor is internal. Searches are
    safe from several threads at once; :attr:`search_breadth` is not to be changed while
    searches run.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> vectors = rng.standard_normal((100, 8)).astype(np.float32)
        >>> index = VectorIndex.build(vectors, np.arange(100) + 1000, normalize=True)
        >>> scores, ids = index.similar_to_id(1000, 3)
        >>> ids.shape, bool(1000 in ids)
        ((3,), False)
    """

    def __init__(self, idmap: Any, *, kind: _BuiltKind) -> None:
        faiss = _faiss()
        self._idmap = idmap
        self._inner = faiss.downcast_index(idmap.index)
        self._kind: _BuiltKind = kind
        ids = np.ascontiguousarray(faiss.vector_to_array(idmap.id_map), dtype=np.int64)
        self._ids = _as_ids(ids, n=int(idmap.ntotal))
        self._ids.flags.writeable = False
        self._order = np.argsort(self._ids, kind="stable")
        self._sorted_ids = self._ids[self._order]

    # -- making one ---------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        vectors: npt.ArrayLike,
        ids: npt.ArrayLike,
        *,
        kind: IndexKind = "auto",
        normalize: bool = False,
        seed: int = 0,
    ) -> VectorIndex:
        """Build an index over ``vectors``, one image id per row.

        Args:
            vectors: ``(N, D)`` float32 L2-normalised vectors, N >= 1.
            ids: ``(N,)`` distinct non-negative integer image ids, row for row.
            kind: ``"exact"``, ``"hnsw"``, ``"ivf"``, or ``"auto"``: exact up to
                :data:`EXACT_MAX_FLOATS` numbers (N × D), IVF above (module docstring).
            normalize: Divide each row by its L2 norm instead of requiring norm 1.
            seed: Seed of the IVF training sample and k-means, and of HNSW's level draws.
                Exact and IVF indexes are reproducible; an HNSW graph is built by several
                threads at once and can differ slightly from run to run.

        Returns:
            The index.

        Raises:
            EmbeddingError: ``vectors`` empty, not 2-D, not finite or not normalised (and
                ``normalize`` False), a zero row with ``normalize``; ``ids`` not one
                distinct non-negative integer per row.
            ConfigError: An unknown ``kind``.
        """
        faiss = _faiss()
        data = _unit_rows(vectors, normalize=normalize, name="vectors")
        id_array = _as_ids(ids, n=len(data))
        n, dim = data.shape
        chosen = _choose_kind(kind, n, dim)
        started = time.perf_counter()
        if chosen == "exact":
            inner = faiss.IndexFlatIP(dim)
        elif chosen == "hnsw":
            inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            inner.hnsw.efSearch = HNSW_EF_SEARCH
            inner.hnsw.rng = faiss.RandomGenerator(int(seed))
        else:
            inner = _trained_ivf(faiss, data, seed=seed)
        idmap = faiss.IndexIDMap(inner)
        idmap.add_with_ids(data, id_array)
        if chosen == "ivf":
            inner.make_direct_map()  # lets similar_to_id read a stored vector back
        logger.info(
            "built %s vector index over %d x %d vectors in %.1f s",
            chosen,
            n,
            dim,
            time.perf_counter() - started,
        )
        return cls(idmap, kind=chosen)

    @classmethod
    def load(cls, path: Path | str) -> VectorIndex:
        """Read an index written by :meth:`save`.

        Args:
            path: The index file.

        Returns:
            The index, with the search breadth it was saved with.

        Raises:
            EmbeddingError: No file at ``path``, or it is not a lensloop vector index (or
                holds no vectors).
        """
        faiss = _faiss()
        path = Path(path)
        if not path.is_file():
            raise EmbeddingError(
                f"no vector index file at {path}; build one with VectorIndex.build(...).save()"
            )
        try:
            idmap = faiss.read_index(str(path))
        except RuntimeError as err:
            raise EmbeddingError(
                f"{path} is not a readable FAISS index ({str(err).splitlines()[0]}); rebuild "
                f"it with VectorIndex.build(...).save()"
            ) from err
        if not isinstance(idmap, faiss.IndexIDMap):
            raise EmbeddingError(
                f"{path} holds a FAISS {type(idmap).__name__} without image ids; rebuild it "
                f"with VectorIndex.build(...).save()"
            )
        if idmap.ntotal == 0:
            raise EmbeddingError(f"{path} holds no vectors; rebuild it with VectorIndex.build")
        inner = faiss.downcast_index(idmap.index)
        kind = _kind_of(faiss, inner)
        if inner.metric_type != faiss.METRIC_INNER_PRODUCT:
            raise EmbeddingError(
                f"{path} holds an index that ranks by L2 distance, not cosine similarity; "
                f"rebuild it with VectorIndex.build(...).save()"
            )
        if kind == "ivf":
            inner.make_direct_map()
        return cls(idmap, kind=kind)

    def save(self, path: Path | str) -> Path:
        """Write the index (vectors, ids, search breadth) to one file, atomically.

        The file is written next to ``path`` under a temporary name, flushed to disk and
        renamed over ``path``, so readers see the old file or the new one, never a part.

        Args:
            path: Destination file; its folder must exist. An existing file is replaced.

        Returns:
            ``path``.

        Raises:
            OSError: The folder is missing or not writable.
        """
        faiss = _faiss()
        path = Path(path)
        if not path.parent.is_dir():
            raise FileNotFoundError(f"cannot save the index: folder {path.parent} does not exist")
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            try:
                faiss.write_index(self._idmap, str(tmp))
            except RuntimeError as err:
                raise OSError(f"cannot write the index to {path}: {err}") from err
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    # -- what it holds ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, image_id: object) -> bool:
        if isinstance(image_id, bool) or not isinstance(image_id, int | np.integer):
            return False
        return self._position(int(image_id)) is not None

    def __repr__(self) -> str:
        return f"VectorIndex(kind={self._kind!r}, n={len(self)}, dim={self.dim})"

    @property
    def kind(self) -> _BuiltKind:
        """The FAISS index in use: ``"exact"``, ``"hnsw"`` or ``"ivf"``."""
        return self._kind

    @property
    def dim(self) -> int:
        """D, the dimension of the vectors."""
        return int(self._idmap.d)

    @property
    def ids(self) -> IdArray:
        """``(N,)`` int64 image ids, in the order the vectors were added (read-only)."""
        return self._ids

    @property
    def search_breadth(self) -> int | None:
        """How widely an approximate query looks; larger is slower and finds more.

        HNSW's ``efSearch`` (default :data:`HNSW_EF_SEARCH`), IVF's ``nprobe`` (default
        :func:`default_nprobe`; set values above the number of cells mean all cells), None
        for exact search. Saved with the index.

        Raises:
            ConfigError: (On setting) not a positive integer, or the index is exact.
        """
        if self._kind == "hnsw":
            return int(self._inner.hnsw.efSearch)
        if self._kind == "ivf":
            return int(self._inner.nprobe)
        return None

    @search_breadth.setter
    def search_breadth(self, value: int) -> None:
        breadth = _check_k(value, name="search_breadth")
        if self._kind == "hnsw":
            self._inner.hnsw.efSearch = breadth
        elif self._kind == "ivf":
            self._inner.nprobe = min(breadth, int(self._inner.nlist))
        else:
            raise ConfigError("an exact index always searches everything; it has no breadth")

    # -- searching ----------------------------------------------------------------------

    def search(
        self, queries: npt.ArrayLike, k: int, *, normalize: bool = False
    ) -> tuple[FloatArray, IdArray]:
        """Find the ``k`` most similar vectors to each query.

        Every row of the result is complete: ``k`` is capped at ``len(self)``, and a query
        for which an approximate index finds fewer than ``k`` vectors is searched again
        exhaustively, so no ``-1`` padding is ever returned.

        Args:
            queries: ``(Q, D)`` float32 L2-normalised vectors (Q may be 0).
            k: How many neighbours per query, > 0.
            normalize: Normalise the queries instead of requiring norm 1.

        Returns:
            ``scores`` ``(Q, min(k, N))`` float32 cosine similarities, descending along each
            row, and ``ids`` ``(Q, min(k, N))`` int64 image ids.

        Raises:
            ConfigError: ``k`` is not a positive integer.
            EmbeddingError: ``queries`` not 2-D, of another dimension, not finite or not
                normalised (and ``normalize`` False).
        """
        k = _check_k(k)
        q = _unit_rows(queries, normalize=normalize, name="queries", min_rows=0, dim=self.dim)
        k_eff = min(k, len(self))
        if len(q) == 0:
            return np.empty((0, k_eff), np.float32), np.empty((0, k_eff), np.int64)
        scores, positions = self._inner.search(q, k_eff)
        short = np.flatnonzero((positions < 0).any(axis=1))
        if len(short):
            scores[short], positions[short] = self._search_everything(q[short], k_eff)
        return scores.astype(np.float32, copy=False), self._ids[positions]

    def similar_to_id(self, image_id: int, k: int) -> tuple[FloatArray, IdArray]:
        """Find the ``k`` images most similar to one already in the index, not itself.

        Args:
            image_id: An image id in the index.
            k: How many neighbours, > 0; capped at ``len(self) - 1``.

        Returns:
            ``scores`` ``(min(k, N - 1),)`` float32 cosine similarities, descending, and
            ``ids`` ``(min(k, N - 1),)`` int64 image ids (``image_id`` excluded).

        Raises:
            ConfigError: ``k`` is not a positive integer.
            EmbeddingError: ``image_id`` is not an integer.
            NotFoundError: ``image_id`` is not in the index.
        """
        k = _check_k(k)
        if isinstance(image_id, bool) or not isinstance(image_id, int | np.integer):
            raise EmbeddingError(f"image_id must be an integer image id; got {image_id!r}")
        position = self._position(int(image_id))
        if position is None:
            raise NotFoundError(
                f"image id {image_id} is not in this vector index ({len(self)} images); "
                f"embed the image and rebuild the index"
            )
        k_eff = min(k, len(self) - 1)
        if k_eff == 0:
            return np.empty(0, np.float32), np.empty(0, np.int64)
        vector = self._inner.reconstruct(position)[None, :]
        scores, ids = self.search(vector, k_eff + 1)
        keep = ids[0] != image_id
        return scores[0][keep][:k_eff], ids[0][keep][:k_eff]

    def _position(self, image_id: int) -> int | None:
        at = int(np.searchsorted(self._sorted_ids, image_id))
        if at < len(self._sorted_ids) and self._sorted_ids[at] == image_id:
            return int(self._order[at])
        return None

    def _search_everything(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        """Exhaustive search (row positions, not ids) for queries an index left short."""
        faiss = _faiss()
        if self._kind == "ivf":
            params = faiss.SearchParametersIVF(nprobe=int(self._inner.nlist))
            scores, positions = self._inner.search(queries, k, params=params)
        elif self._kind == "hnsw":
            storage = faiss.downcast_index(self._inner.storage)
            scores, positions = storage.search(queries, k)
        else:
            scores, positions = self._inner.search(queries, k)
        return scores, positions


def _trained_ivf(faiss: Any, data: FloatArray, *, seed: int) -> Any:
    """An empty ``IndexIVFFlat`` whose cells are trained on a seeded sample of ``data``."""
    n, dim = data.shape
    nlist = default_nlist(n)
    quantizer = faiss.IndexFlatIP(dim)
    inner = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    inner.cp.seed = int(seed)
    inner.cp.niter = _IVF_NITER
    inner.cp.max_points_per_centroid = _IVF_TRAIN_PER_CELL
    sample_size = min(n, _IVF_TRAIN_PER_CELL * nlist)
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, size=sample_size, replace=False))
    inner.train(data[rows])
    inner.nprobe = default_nprobe(n, dim, nlist)
    return inner


def find_duplicates(
    vectors: npt.ArrayLike,
    ids: npt.ArrayLike,
    *,
    threshold: float = 0.95,
    k: int = 10,
    normalize: bool = False,
) -> list[tuple[int, int, float]]:
    """Find pairs of near-identical vectors (near-copies of an image).

    Each vector is compared with its ``k`` nearest neighbours (through a
    :class:`VectorIndex` with ``kind="auto"``, queried in batches of 4,096), never with
    all N, so time and memory grow with N × k rather than N². In a group of more than
    ``k + 1`` near-copies some pairs inside the group can be missed (each member still
    pairs with ``k`` others); raise ``k`` if that matters. Above
    :data:`EXACT_MAX_FLOATS` the search is approximate, which rarely misses pairs this
    similar.

    Args:
        vectors: ``(N, D)`` float32 L2-normalised vectors.
        ids: ``(N,)`` distinct non-negative integer image ids, row for row.
        threshold: Smallest cosine similarity of a pair, in [-1, 1].
        k: Neighbours compared per vector, > 0.
        normalize: Normalise ``vectors`` instead of requiring norm 1.

    Returns:
        ``(id_a, id_b, similarity)`` with ``id_a < id_b``, each pair once, sorted by
        similarity descending (then by ids); similarities are capped at 1.0.

    Raises:
        ConfigError: ``threshold`` outside [-1, 1] or ``k`` not a positive integer.
        EmbeddingError: As :meth:`VectorIndex.build`.
    """
    k = _check_k(k)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise ConfigError(f"threshold must be a number in [-1, 1]; got {threshold!r}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ConfigError(
            f"threshold must be a cosine similarity in [-1, 1]; got {threshold!r} "
            f"(0.95 finds near-copies)"
        )
    data = _unit_rows(vectors, normalize=normalize, name="vectors")
    index = VectorIndex.build(data, ids, kind="auto")
    all_ids = index.ids
    firsts: list[IdArray] = []
    seconds: list[IdArray] = []
    sims: list[FloatArray] = []
    for start in range(0, len(data), _DUPLICATE_BATCH):
        batch = data[start : start + _DUPLICATE_BATCH]
        scores, found = index.search(batch, k + 1)
        query_ids = np.broadcast_to(all_ids[start : start + len(batch), None], found.shape)
        keep = (scores >= threshold) & (found != query_ids)
        a, b = query_ids[keep], found[keep]
        firsts.append(np.minimum(a, b))
        seconds.append(np.maximum(a, b))
        sims.append(np.minimum(scores[keep], 1.0).astype(np.float32))
    if not firsts:
        return []
    first, second, sim = np.concatenate(firsts), np.concatenate(seconds), np.concatenate(sims)
    # Best similarity first, so np.unique keeps each pair's highest score.
    order = np.lexsort((second, first, -sim))
    first, second, sim = first[order], second[order], sim[order]
    pairs = np.stack([first, second], axis=1)
    _, keep_at = np.unique(pairs, axis=0, return_index=True)
    keep_at.sort()
    return [(int(first[i]), int(second[i]), float(sim[i])) for i in keep_at]

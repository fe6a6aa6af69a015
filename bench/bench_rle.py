"""Speed of lensloop's Label Studio brush RLE codec, beside label-studio-sdk's, on one run.

Usage:
    .venv/bin/python bench/bench_rle.py

Prints a Markdown table: seconds (best of 3) to encode and decode a 6000 x 4000 mask with
50 random discs (a large core-box photograph's brush label), a 1000 x 1000 noise mask (the
worst case: a run every few pixels), each with lensloop's codec and with label-studio-sdk's
(``mask2rle`` / ``decode_rle``), whose bytes are the same.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import numpy as np

from lensloop.annotate.rle import decode_brush, encode_brush


def best(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def discs(height: int, width: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows, cols = np.ogrid[:height, :width]
    mask = np.zeros((height, width), dtype=bool)
    for _ in range(count):
        r, c = rng.integers(0, height), rng.integers(0, width)
        radius = rng.integers(20, max(21, min(height, width) // 10))
        mask |= (rows - r) ** 2 + (cols - c) ** 2 <= radius**2
    return mask


def main() -> None:
    cases = {
        "6000 x 4000, 50 discs": discs(4000, 6000, 50, 0),
        "1000 x 1000 noise": np.random.default_rng(1).random((1000, 1000)) < 0.5,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from label_studio_sdk.converter.brush import decode_rle, mask2rle
    print("| mask | RLE bytes | coder | encode s | decode s |")
    print("| --- | --- | --- | --- | --- |")
    for name, mask in cases.items():
        rle = encode_brush(mask)
        assert np.array_equal(decode_brush(rle, *mask.shape), mask)
        grey = mask.astype(np.uint8) * 255
        assert mask2rle(grey) == rle
        coders = {
            "lensloop": (
                lambda m=mask: encode_brush(m),
                lambda r=rle, m=mask: decode_brush(r, *m.shape),
            ),
            "label-studio-sdk": (lambda g=grey: mask2rle(g), lambda r=rle: decode_rle(r)),
        }
        for coder, (encode, decode) in coders.items():
            print(f"| {name} | {len(rle):,} | {coder} | {best(encode):.3f} | {best(decode):.3f} |")


if __name__ == "__main__":
    main()

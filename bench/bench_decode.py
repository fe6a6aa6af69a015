"""Decode speed of lensloop.imaging against bare Pillow, on in-memory files.

Usage:
    .venv/bin/python bench/bench_decode.py [--n 10000]

Prints a Markdown table: microseconds per image (best of 3 passes over N distinct images).
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable

import numpy as np
from PIL import Image

from lensloop.imaging import decode_image, probe_image


def encode(array: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def best_us(fn: Callable[[bytes], object], blobs: list[bytes]) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for blob in blobs:
            fn(blob)
        best = min(best, time.perf_counter() - started)
    return best / len(blobs) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    small = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(args.n)]
    pngs = [encode(a, "PNG") for a in small]
    jpegs = [encode(a, "JPEG") for a in small[: args.n // 5]]
    big16 = rng.integers(0, 65535, (1024, 1024, 3), dtype=np.uint16)
    import imagecodecs

    png16 = [imagecodecs.png_encode(big16)] * 5

    def pillow(blob: bytes) -> object:
        return np.asarray(Image.open(io.BytesIO(blob)))

    rows = [
        ("decode_image, 64x64 RGB PNG", best_us(decode_image, pngs)),
        ("bare Pillow open+load+asarray, same PNGs", best_us(pillow, pngs)),
        ("probe_image (header only), same PNGs", best_us(probe_image, pngs)),
        ("decode_image, 64x64 RGB JPEG", best_us(decode_image, jpegs)),
        ("decode_image, 1024x1024 16-bit RGB PNG", best_us(decode_image, png16)),
    ]
    print("| call | µs per image |")
    print("| --- | --- |")
    for name, us in rows:
        print(f"| {name} | {us:,.0f} |")


if __name__ == "__main__":
    main()

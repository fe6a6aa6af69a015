"""Label Studio's brush RLE and the catalog's mask counts: round trips, agreement with
label-studio-sdk, hand-written streams, and the errors for damaged input."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from lensloop.annotate.rle import (
    _decode_rgba,
    _encode_rgba,
    _encode_runs,
    counts_to_mask,
    decode_brush,
    encode_brush,
    mask_to_counts,
)
from lensloop.errors import LabelError

SIZES = (3, 4, 8, 16)

small_masks = hnp.arrays(
    dtype=bool, shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=64)
)
tiny_masks = hnp.arrays(
    dtype=bool, shape=hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=12)
)


@st.composite
def block_masks(draw: st.DrawFn) -> npt.NDArray[np.bool_]:
    """Masks up to 500 x 500 made of a few filled rectangles: long runs, many > 2**16 bytes."""
    height = draw(st.integers(1, 500))
    width = draw(st.integers(1, 500))
    mask = np.full((height, width), draw(st.booleans()))
    for _ in range(draw(st.integers(0, 3))):
        top, bottom = sorted(draw(st.integers(0, height)) for _ in range(2))
        left, right = sorted(draw(st.integers(0, width)) for _ in range(2))
        mask[top:bottom, left:right] = draw(st.booleans())
    return mask


def rgba_of(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.uint8]:
    """The flat RGBA bytes Label Studio paints for a mask: 255 in all channels, else 0."""
    return np.repeat(mask.ravel().astype(np.uint8) * 255, 4)


# --- a bit writer for hand-made streams, written from the format description ----------------


def header(num: int, *, word_size: int = 8, sizes: Sequence[int] = SIZES) -> str:
    return f"{num:032b}{word_size - 1:05b}" + "".join(f"{s - 1:04b}" for s in sizes)


def repeat(index: int, count: int, value: int, sizes: Sequence[int] = SIZES) -> str:
    return f"1{index:02b}{count - 1:0{sizes[index]}b}{value:08b}"


def literal(index: int, values: Sequence[int], sizes: Sequence[int] = SIZES) -> str:
    words = "".join(f"{v:08b}" for v in values)
    return f"0{index:02b}{len(values) - 1:0{sizes[index]}b}" + words


def to_ints(bits: str) -> list[int]:
    bits += "0" * (-len(bits) % 8)
    return [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]


# --- round trips -----------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(small_masks)
def test_round_trip_small_masks(mask: npt.NDArray[np.bool_]) -> None:
    height, width = mask.shape
    np.testing.assert_array_equal(decode_brush(encode_brush(mask), height, width), mask)
    np.testing.assert_array_equal(counts_to_mask(mask_to_counts(mask)), mask)


@settings(max_examples=40, deadline=None)
@given(block_masks())
def test_round_trip_masks_with_long_runs(mask: npt.NDArray[np.bool_]) -> None:
    height, width = mask.shape
    np.testing.assert_array_equal(decode_brush(encode_brush(mask), height, width), mask)
    np.testing.assert_array_equal(counts_to_mask(mask_to_counts(mask)), mask)


def block(shape: tuple[int, int], box: tuple[int, int, int, int]) -> npt.NDArray[np.bool_]:
    mask = np.zeros(shape, bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    return mask


FIXED_MASKS = {
    "1x1 painted": np.ones((1, 1), bool),
    "1x1 empty": np.zeros((1, 1), bool),
    "one row": np.arange(20_000)[np.newaxis, :] % 7_000 < 3_000,
    "one column": np.arange(20_000)[:, np.newaxis] % 9_000 > 200,
    "all painted 300x300": np.ones((300, 300), bool),
    "all empty 300x300": np.zeros((300, 300), bool),
    "300x300 block in 600x500": block((600, 500), (150, 100, 450, 400)),
    "run of exactly 2**16 bytes": np.arange(16_384 + 5) >= 5,
}


@pytest.mark.parametrize("mask", list(FIXED_MASKS.values()), ids=list(FIXED_MASKS))
def test_round_trip_fixed_masks(mask: npt.NDArray[np.bool_]) -> None:
    mask = np.atleast_2d(mask)
    height, width = mask.shape
    np.testing.assert_array_equal(decode_brush(encode_brush(mask), height, width), mask)
    np.testing.assert_array_equal(counts_to_mask(mask_to_counts(mask)), mask)


def test_integer_masks_paint_nonzero() -> None:
    values = np.array([[0, 3, -1], [0, 0, 255]], np.int16)
    expected = values != 0
    assert encode_brush(values) == encode_brush(expected)
    np.testing.assert_array_equal(decode_brush(encode_brush(values), 2, 3), expected)
    assert mask_to_counts(values) == mask_to_counts(expected)


def test_counts_format() -> None:
    assert mask_to_counts(np.array([[0, 1, 1], [1, 0, 0]], bool)) == {
        "size": [2, 3],
        "counts": [1, 3, 2],
    }
    # A painted first pixel gives a leading run of 0 unpainted pixels.
    assert mask_to_counts(np.array([[1, 1], [0, 1]], bool)) == {
        "size": [2, 2],
        "counts": [0, 2, 1, 1],
    }
    assert mask_to_counts(np.zeros((2, 3), bool))["counts"] == [6]
    assert mask_to_counts(np.ones((2, 3), bool))["counts"] == [0, 6]


def test_counts_accept_tuples_and_empty_runs() -> None:
    mask = counts_to_mask({"size": (1, 4), "counts": (1, 0, 0, 2, 1)})
    np.testing.assert_array_equal(mask, [[False, True, True, False]])


# --- agreement with label-studio-sdk -------------------------------------------------------


@pytest.fixture(scope="module")
def sdk_brush() -> ModuleType:
    module: ModuleType = pytest.importorskip("label_studio_sdk.converter.brush")
    return module


@settings(max_examples=40, deadline=None)
@given(mask=tiny_masks)
def test_encode_matches_sdk_bytes(sdk_brush: ModuleType, mask: npt.NDArray[np.bool_]) -> None:
    ours = encode_brush(mask)
    assert ours == sdk_brush.mask2rle(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(sdk_brush.decode_rle(ours), rgba_of(mask))


@settings(max_examples=15, deadline=None)
@given(mask=block_masks())
def test_long_runs_match_sdk_bytes(sdk_brush: ModuleType, mask: npt.NDArray[np.bool_]) -> None:
    ours = encode_brush(mask)
    assert ours == sdk_brush.mask2rle(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(sdk_brush.decode_rle(ours), rgba_of(mask))


@settings(max_examples=40, deadline=None)
@given(mask=tiny_masks)
def test_decodes_sdk_mask2rle(sdk_brush: ModuleType, mask: npt.NDArray[np.bool_]) -> None:
    height, width = mask.shape
    theirs = sdk_brush.mask2rle(mask.astype(np.uint8) * 255)
    np.testing.assert_array_equal(decode_brush(theirs, height, width), mask)


@settings(max_examples=40, deadline=None)
@given(
    rgba=hnp.arrays(
        dtype=np.uint8,
        shape=st.tuples(st.integers(1, 8), st.integers(1, 8), st.just(4)),
        elements=st.sampled_from([0, 1, 127, 128, 200, 255]),
    )
)
def test_decodes_any_rgba_from_sdk_encode_rle(
    sdk_brush: ModuleType, rgba: npt.NDArray[np.uint8]
) -> None:
    # Arbitrary bytes give runs of one value (literal records) and alpha other than 0/255.
    theirs = sdk_brush.encode_rle(rgba.ravel())
    assert _encode_rgba(rgba.ravel()) == theirs
    np.testing.assert_array_equal(_decode_rgba(theirs), rgba.ravel())
    height, width, _ = rgba.shape
    np.testing.assert_array_equal(decode_brush(theirs, height, width), rgba[:, :, 3] >= 128)


@st.composite
def hand_made_streams(draw: st.DrawFn) -> tuple[list[int], list[int]]:
    """Streams with any count-field sizes and literal records of several words, as Label
    Studio's JavaScript encoder writes them; returns (rle ints, the values they encode)."""
    sizes = draw(st.lists(st.integers(1, 16), min_size=4, max_size=4))
    bits, values = "", []
    for _ in range(draw(st.integers(0, 12))):
        index = draw(st.integers(0, 3))
        count = draw(st.integers(1, min(2 ** sizes[index], 40)))
        if draw(st.booleans()):
            value = draw(st.integers(0, 255))
            bits += repeat(index, count, value, sizes)
            values += [value] * count
        else:
            words = draw(st.lists(st.integers(0, 255), min_size=count, max_size=count))
            bits += literal(index, words, sizes)
            values += words
    return to_ints(header(len(values), sizes=sizes) + bits), values


@settings(max_examples=60, deadline=None)
@given(stream=hand_made_streams())
def test_decodes_general_streams_like_sdk(
    sdk_brush: ModuleType, stream: tuple[list[int], list[int]]
) -> None:
    rle, values = stream
    ours = _decode_rgba(rle)
    np.testing.assert_array_equal(ours, np.asarray(values, np.uint8))
    np.testing.assert_array_equal(ours, sdk_brush.decode_rle(rle))


def test_trailing_bytes_are_ignored() -> None:
    mask = block((5, 7), (1, 2, 4, 6))
    np.testing.assert_array_equal(decode_brush([*encode_brush(mask), 0, 0, 255], 5, 7), mask)


def test_pads_like_sdk_with_a_whole_zero_byte_when_bits_end_on_a_byte() -> None:
    # 53 header bits + one 27-bit record (a 16-bit count field) = 80 bits = 10 bytes.
    rle = encode_brush(np.ones((100, 100), bool))
    assert rle == [*to_ints(header(40_000) + repeat(3, 40_000, 255)), 0]
    assert len(rle) == 11


# --- errors --------------------------------------------------------------------------------


def test_declared_length_must_match_the_image_size() -> None:
    rle = encode_brush(np.zeros((3, 4), bool))
    with pytest.raises(LabelError, match=r"declares 48 values .* needs 64") as info:
        decode_brush(rle, 4, 4)
    assert "does not match original_width x original_height" in str(info.value)


def test_truncated_streams() -> None:
    rle = encode_brush(np.eye(6, dtype=bool))
    with pytest.raises(LabelError, match=r"truncated: 3 byte\(s\) is too short for the 53-bit"):
        decode_brush(rle[:3], 6, 6)
    with pytest.raises(LabelError, match=r"truncated: .* end inside a record, after 4 of the 144"):
        decode_brush(rle[:9], 6, 6)
    with pytest.raises(LabelError, match="truncated"):
        decode_brush([], 6, 6)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (300, r"RLE value 300 at index 2 is outside the byte range 0\.\.255"),
        (-1, r"RLE value -1 at index 2 is outside the byte range 0\.\.255"),
    ],
)
def test_values_must_be_bytes(bad: int, message: str) -> None:
    rle = encode_brush(np.ones((2, 2), bool))
    rle[2] = bad
    with pytest.raises(LabelError, match=message):
        decode_brush(rle, 2, 2)


def test_values_must_be_ints() -> None:
    with pytest.raises(LabelError, match=r"ints in 0\.\.255, got values of type float64"):
        decode_brush([0.0, 1.5, 2.0], 1, 1)  # type: ignore[list-item]
    with pytest.raises(LabelError, match="flat list of ints"):
        decode_brush([[0, 1], [2, 3]], 1, 1)  # type: ignore[list-item]


def test_word_size_must_be_8() -> None:
    rle = to_ints(header(4, word_size=16) + "1" + "00" + "011" + "0" * 16)
    with pytest.raises(LabelError, match="word size is 16 bits; Label Studio brush masks use 8"):
        decode_brush(rle, 1, 1)


def test_record_past_the_declared_length() -> None:
    rle = to_ints(header(4) + repeat(0, 8, 255))
    with pytest.raises(LabelError, match="runs to value 8, past the 4 values the header declares"):
        decode_brush(rle, 1, 1)


def test_height_and_width_must_be_non_negative_ints() -> None:
    rle = encode_brush(np.ones((1, 1), bool))
    with pytest.raises(LabelError, match="width must be a non-negative int, got -1"):
        decode_brush(rle, 1, -1)
    with pytest.raises(LabelError, match=r"height must be a non-negative int, got 1\.0"):
        decode_brush(rle, 1.0, 1)  # type: ignore[arg-type]


def test_length_must_fit_the_32_bit_header() -> None:
    with pytest.raises(LabelError, match=r"at most 2\*\*32 - 1 values .* got 4294967296"):
        _encode_runs(np.array([2**32], np.int64), np.array([0], np.uint8), 2**32)


def test_empty_masks() -> None:
    mask = np.zeros((0, 3), bool)
    assert decode_brush(encode_brush(mask), 0, 3).shape == (0, 3)
    assert mask_to_counts(mask) == {"size": [0, 3], "counts": []}
    assert counts_to_mask({"size": [0, 3], "counts": []}).shape == (0, 3)


def test_masks_must_be_2d_boolean_or_integer() -> None:
    with pytest.raises(LabelError, match=r"2-D \(H, W\) array, got shape \(2, 2, 1\)"):
        encode_brush(np.zeros((2, 2, 1), bool))
    with pytest.raises(TypeError, match="boolean or integer dtype, got float32"):
        mask_to_counts(np.zeros((2, 2), np.float32))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"size": [2, 3], "counts": [1, 2]}, "counts sum to 3 but size H x W has 6 pixels"),
        ({"size": [2, 3], "counts": [1, 2, 4]}, "counts sum to 7 but size H x W has 6 pixels"),
        ({"size": [2, 3], "counts": [7, -1]}, "count -1 at index 1 is negative"),
        ({"size": [2, 3], "counts": [2**40]}, "count 1099511627776 is more than the 6 pixels"),
        ({"size": [2, 3], "counts": [1.0, 5.0]}, "flat list of ints, got shape .* of float64"),
        ({"size": [2, 3], "counts": "6"}, "list of ints, got str"),
        ({"size": [2, 3]}, r"missing \['counts'\]"),
        ({"size": [2], "counts": [2]}, r"size must be \[H, W\], got \[2\]"),
        ({"size": [2, -3], "counts": []}, "mask width must be a non-negative int, got -3"),
        ({"size": [True, 3], "counts": [3]}, "mask height must be a non-negative int, got True"),
    ],
)
def test_counts_validation(data: dict[str, object], message: str) -> None:
    with pytest.raises(LabelError, match=message):
        counts_to_mask(data)

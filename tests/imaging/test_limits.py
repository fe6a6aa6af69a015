from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lensloop.errors import ImageError, ImageTooLargeError
from lensloop.imaging import ImageLimits, decode_image, probe_image, read_image

from ._make import patch_png_size, pil_bytes


def test_defaults_match_settings() -> None:
    limits = ImageLimits()
    assert limits.max_pixels == 256_000_000
    assert limits.max_file_bytes == 4 * 1024**3


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "10"])
def test_invalid_limits_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="max_pixels must be a positive integer"):
        ImageLimits(max_pixels=value)  # type: ignore[arg-type]


def test_check_pixels_allows_the_limit_itself() -> None:
    ImageLimits(max_pixels=100).check_pixels(10, 10, name="x")


def test_check_pixels_message_says_size_limit_and_setting() -> None:
    with pytest.raises(ImageTooLargeError) as info:
        ImageLimits(max_pixels=1000).check_pixels(50, 40, name="big.png")
    message = str(info.value)
    assert "big.png" in message
    assert "50 x 40 = 2,000 pixels" in message
    assert "1,000 pixels" in message
    assert "LENSLOOP_MAX_IMAGE_PIXELS" in message


def test_check_pixels_counts_stacked_pages() -> None:
    limits = ImageLimits(max_pixels=1000)
    limits.check_pixels(10, 10, name="x", n_pages=10)
    with pytest.raises(ImageTooLargeError, match="x 11 pages = 1,100 pixels"):
        limits.check_pixels(10, 10, name="x", n_pages=11)


def test_check_file_size_message() -> None:
    limits = ImageLimits(max_file_bytes=10)
    limits.check_file_size(10, name="f")
    with pytest.raises(ImageTooLargeError) as info:
        limits.check_file_size(11, name="f.tif")
    assert "f.tif: file is 11 bytes" in str(info.value)
    assert "LENSLOOP_MAX_FILE_BYTES" in str(info.value)


def test_too_large_is_an_image_error_and_value_error() -> None:
    assert issubclass(ImageTooLargeError, ImageError)
    assert issubclass(ImageTooLargeError, ValueError)


def test_png_bomb_is_refused_from_the_header() -> None:
    # A 16 x 16 PNG whose IHDR claims 100000 x 100000: 10 gigapixels. Decoding it would
    # fail long after allocating; the header check must refuse it first.
    bomb = patch_png_size(pil_bytes(np.zeros((16, 16), np.uint8), "PNG"), 100_000, 100_000)
    with pytest.raises(ImageTooLargeError, match="100,000 x 100,000"):
        decode_image(bomb, name="bomb.png")
    with pytest.raises(ImageTooLargeError):
        probe_image(bomb)


def test_small_limit_refuses_real_images_of_every_decoder() -> None:
    limits = ImageLimits(max_pixels=399)
    image = np.zeros((20, 20), np.uint8)
    for data in (
        pil_bytes(image, "PNG"),
        pil_bytes(image, "JPEG"),
        pil_bytes(image, "BMP"),
        pil_bytes(image, "GIF"),
        pil_bytes(image, "WEBP", lossless=True),
        pil_bytes(image, "TIFF"),
        pil_bytes(np.zeros((20, 20, 3), np.uint8), "PNG"),
    ):
        with pytest.raises(ImageTooLargeError):
            decode_image(data, limits=limits)
        decode_image(data, limits=ImageLimits(max_pixels=400))


def _gif_with_frame_size(width: int, height: int) -> bytes:
    """A 1 x 1 GIF whose first frame claims ``width`` x ``height``.

    Pillow grows the image to the frame's extent and runs its own bomb check on it.
    """
    gif = bytearray(pil_bytes(Image.new("L", (1, 1)), "GIF"))
    pos = 13
    if gif[10] & 0x80:  # global colour table
        pos += 3 * 2 ** ((gif[10] & 7) + 1)
    while gif[pos] == 0x21:  # extension blocks: skip their sub-blocks
        pos += 2
        while gif[pos]:
            pos += gif[pos] + 1
        pos += 1
    assert gif[pos] == 0x2C  # image descriptor
    gif[pos + 5 : pos + 9] = width.to_bytes(2, "little") + height.to_bytes(2, "little")
    return bytes(gif)


def test_pillow_bomb_warning_does_not_leak() -> None:
    # 10000 x 9000 = 90 Mpx is above Pillow's warning threshold (89.5 Mpx) but within
    # lensloop's default limit. pytest turns warnings into errors, so a leak would fail.
    info = probe_image(_gif_with_frame_size(10_000, 9_000))
    assert (info.width, info.height) == (10_000, 9_000)


def test_pillow_bomb_error_becomes_image_too_large() -> None:
    # 15000 x 15000 = 225 Mpx: within lensloop's default limit, over Pillow's hard limit.
    with pytest.raises(ImageTooLargeError, match="Pillow"):
        probe_image(_gif_with_frame_size(15_000, 15_000))


def test_frame_larger_than_the_gif_screen_is_checked_before_decoding() -> None:
    with pytest.raises(ImageTooLargeError, match="2,000 x 1,000"):
        decode_image(_gif_with_frame_size(2_000, 1_000), limits=ImageLimits(max_pixels=10_000))


def test_pillow_globals_are_not_changed() -> None:
    from PIL import ImageFile

    before = Image.MAX_IMAGE_PIXELS
    decode_image(pil_bytes(np.zeros((4, 4), np.uint8), "PNG"))
    assert before == Image.MAX_IMAGE_PIXELS
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_read_image_checks_file_size_before_reading(tmp_path: object) -> None:
    from pathlib import Path

    path = Path(str(tmp_path)) / "a.png"
    path.write_bytes(pil_bytes(np.zeros((4, 4), np.uint8), "PNG"))
    with pytest.raises(ImageTooLargeError, match="LENSLOOP_MAX_FILE_BYTES"):
        read_image(path, limits=ImageLimits(max_file_bytes=10))
    with pytest.raises(ImageTooLargeError, match="bytes"):
        decode_image(path.read_bytes(), limits=ImageLimits(max_file_bytes=10))

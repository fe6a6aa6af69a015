"""Small helpers every figure module shares: the PNG path check, names cut to fit, line height."""

from __future__ import annotations

from pathlib import Path

from lensloop.errors import ConfigError

__all__ = ["line_px", "png_path", "shorten"]


def png_path(path: Path | str, what: str) -> Path:
    """``path`` as a Path, refused unless it ends in ``.png`` (``what`` names the figure)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"the {what} is written as PNG; got path {path}, give it a .png suffix")
    return path


def shorten(name: str, limit: int) -> str:
    """``name`` cut to ``limit`` characters with an ellipsis."""
    return name if len(name) <= limit else name[: limit - 1] + "…"


def line_px(font_px: int) -> int:
    """Height of a text line for a font of ``font_px`` pixels."""
    return font_px + font_px // 3 + 1

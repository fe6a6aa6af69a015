"""Counting and localising objects from point annotations."""

__all__: list[str] = []

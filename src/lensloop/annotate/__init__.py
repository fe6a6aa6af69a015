"""Labelling: the label schema, Label Studio's formats and sync, annotation import."""

__all__: list[str] = []

"""Read the ``.lst`` file of a FlowCam export: the particle table VisualSpreadsheet writes.

::

    017                          <- line 1: format version
    num-fields|4                 <- line 2: number of fields
    id|1                         <- one line per field: name|type
    collage_file|3                  (1 integer, 2 float, 3 string; other codes are
    image_x|1                        kept as text)
    ...
    1|collage_001.tif|0|0|...    <- one pipe-delimited row per particle

Values are typed by their column's code; an empty number is None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lensloop.errors import SourceError

__all__ = ["LST_TYPES", "REQUIRED_COLUMNS", "LstTable", "parse_lst", "read_lst"]

#: ``.lst`` field type codes and the Python type their values get.
LST_TYPES: dict[int, type] = {1: int, 2: float, 3: str}

#: Columns lensloop needs: the particle id, its collage and its box on the collage.
REQUIRED_COLUMNS = ("id", "collage_file", "image_x", "image_y", "image_w", "image_h")


@dataclass(frozen=True)
class LstTable:
    """A parsed ``.lst`` file.

    Attributes:
        path: Where it was read from (for messages).
        version: The format version on line 1 (``"017"``).
        fields: ``(name, type code)`` of each column, in file order.
        rows: One dict per particle, values typed by their column's code (an empty
            number is None).
        lines: The 1-based line number of each row.
    """

    path: str
    version: str
    fields: tuple[tuple[str, int], ...]
    rows: list[dict[str, Any]]
    lines: list[int]


def _typed(text: str, code: int, *, where: str, column: str) -> Any:
    kind = LST_TYPES.get(code, str)
    if kind is str:
        return text
    text = text.strip()
    if not text:
        return None
    try:
        value = kind(text)
    except ValueError:
        raise SourceError(
            f"{where}: column {column!r} is declared {kind.__name__} (type {code}) but holds "
            f"{text!r}; fix the value or the column's type in the header"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN or infinity
    return value


def parse_lst(
    text: str, *, name: str = "<lst>", required: Sequence[str] = REQUIRED_COLUMNS
) -> LstTable:
    r"""Parse the text of a FlowCam ``.lst`` file.

    Args:
        text: The whole file.
        name: The file's path, for messages.
        required: Columns the file must have.

    Returns:
        The version, the fields and the typed rows.

    Raises:
        SourceError: A bad header (line 1 not a version number, line 2 not
            ``num-fields|N``, a field line not ``name|type``, a repeated field), a row
            with the wrong number of fields, a value that does not fit its column's
            type, or a required column missing. The message names the file and line.

    Example:
        >>> table = parse_lst("017\nnum-fields|2\nid|1\nlength|2\n7|12.5\n", required=())
        >>> table.version, table.rows
        ('017', [{'id': 7, 'length': 12.5}])
    """
    lines = text.splitlines()
    version = lines[0].strip().lstrip("\ufeff") if lines else ""
    if not version.isdigit():
        raise SourceError(
            f"{name}, line 1: expected the .lst format version (digits such as 017), got "
            f"{version[:40]!r}; is this a FlowCam .lst file?"
        )
    header = lines[1].strip() if len(lines) > 1 else ""
    key, _, count = header.partition("|")
    if key.strip() != "num-fields" or not count.strip().isdigit() or int(count) < 1:
        raise SourceError(
            f"{name}, line 2: expected 'num-fields|N' (N fields follow), got {header[:40]!r}"
        )
    n_fields = int(count)
    if len(lines) < 2 + n_fields:
        raise SourceError(
            f"{name}: the header declares {n_fields} fields but the file ends after "
            f"{len(lines) - 2}; the file is truncated"
        )
    fields: list[tuple[str, int]] = []
    for number in range(3, 3 + n_fields):
        line = lines[number - 1].strip()
        field_name, sep, code = line.partition("|")
        field_name = field_name.strip()
        if not sep or not field_name or not code.strip().isdigit():
            raise SourceError(
                f"{name}, line {number}: expected a field 'name|type' (type 1 integer, "
                f"2 float, 3 string), got {line[:60]!r}; num-fields on line 2 says "
                f"{n_fields} field lines follow it"
            )
        if any(field_name == f for f, _ in fields):
            raise SourceError(f"{name}, line {number}: field {field_name!r} is declared twice")
        fields.append((field_name, int(code)))
    missing = [c for c in required if c not in {f for f, _ in fields}]
    if missing:
        raise SourceError(
            f"{name}: the .lst file has no column(s) {', '.join(missing)}; lensloop needs "
            f"{', '.join(required)} to cut particles out of their collages (found: "
            f"{', '.join(f for f, _ in fields)})"
        )
    rows: list[dict[str, Any]] = []
    numbers: list[int] = []
    for number in range(3 + n_fields, len(lines) + 1):
        line = lines[number - 1].rstrip("\r\n")
        if not line.strip():
            continue
        values = line.split("|")
        if len(values) != n_fields:
            raise SourceError(
                f"{name}, line {number}: the row has {len(values)} fields but the header "
                f"declares {n_fields}; fix or remove the row (a '|' inside a value, or a "
                "truncated line)"
            )
        where = f"{name}, line {number}"
        rows.append(
            {
                f: _typed(v, code, where=where, column=f)
                for (f, code), v in zip(fields, values, strict=True)
            }
        )
        numbers.append(number)
    return LstTable(name, version, tuple(fields), rows, numbers)


def read_lst(path: str | Path) -> LstTable:
    """Read and parse a ``.lst`` file (UTF-8, or Windows-1252 when it is not UTF-8).

    Raises:
        SourceError: The file cannot be read, or see :func:`parse_lst`.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("cp1252", errors="replace")
    return parse_lst(text, name=str(path))

"""Balance: target proportions of a selection over the values of one field.

``--balance particle_type=Fe:0.5,X-ray:0.5`` asks for half the picks from images whose
``particle_type`` is ``Fe`` and half from ``X-ray``; ``--balance particle_type`` asks for
equal shares over every value present. Shares that sum to less than 1 leave the rest to
images with any other value (or none). The field is a metadata key, ``sample`` (the
sample name) or ``predicted`` (the class the probe predicts, which needs labels of at
least two classes).

Balancing works by quotas: ``n`` is split over the groups by largest remainder, each
group's picks come from the strategy run on that group alone, and a group with too few
candidates hands its shortfall to the others in proportion to their shares. Quotas are
set before a strategy's thresholds apply: a group whose candidates mostly fail the
thresholds raises an error rather than handing its share on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from lensloop.errors import ConfigError

__all__ = [
    "OTHER",
    "PREDICTED",
    "Balance",
    "group_of",
    "interleave",
    "number_text",
    "parse_balance",
    "quotas",
]

PREDICTED = "predicted"
"""The balance key that means the probe's predicted classes."""
OTHER = "\x00other"
"""Group of values not named in the targets (when the shares leave room for them)."""
_SUM_TOL = 1e-6


@dataclass(frozen=True)
class Balance:
    """Target proportions over the values of ``key``.

    Attributes:
        key: A metadata key, ``sample`` or ``predicted``.
        targets: ``(value, share)`` pairs with shares in ``(0, 1]`` summing to at most 1,
            or ``None`` for equal shares over every value present.
    """

    key: str
    targets: tuple[tuple[str, float], ...] | None = None

    def describe(self) -> str:
        """The ``--balance`` text that gives this balance."""
        if self.targets is None:
            return self.key
        return self.key + "=" + ",".join(f"{v}:{number_text(s)}" for v, s in self.targets)


def number_text(value: float) -> str:
    """Shortest text that reads back as exactly ``value`` (``0.5``, ``2``, ``0.1234567``)."""
    short = f"{value:g}"
    return short if float(short) == value else repr(float(value))


def parse_balance(text: str) -> Balance:
    """Parse ``key`` or ``key=value:share,value:share``.

    Raises:
        ConfigError: Malformed text, a share outside ``(0, 1]``, a value named twice, or
            shares summing to more than 1.
    """
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(
            f"--balance {text!r} names no field; write key or key=value:share,..., e.g. "
            "particle_type=Fe:0.5,X-ray:0.5"
        )
    if not sep:
        return Balance(key=key)
    targets: list[tuple[str, float]] = []
    for part in rest.split(","):
        value, colon, share_text = part.rpartition(":")
        value = value.strip()
        if not colon or not value:
            raise ConfigError(
                f"--balance {text!r}: {part!r} is not value:share; write e.g. "
                f"{key}=Fe:0.5,X-ray:0.5"
            )
        try:
            share = float(share_text)
        except ValueError:
            raise ConfigError(
                f"--balance {text!r}: the share {share_text!r} of {value!r} is not a number"
            ) from None
        if not 0.0 < share <= 1.0 or not math.isfinite(share):
            raise ConfigError(f"--balance {text!r}: the share of {value!r} must be in (0, 1]")
        if any(value == seen for seen, _ in targets):
            raise ConfigError(f"--balance {text!r} names {value!r} twice")
        targets.append((value, share))
    total = sum(share for _, share in targets)
    if total > 1.0 + _SUM_TOL:
        raise ConfigError(
            f"--balance {text!r}: the shares sum to {total:g}; they must sum to at most 1 (the "
            "rest goes to images with other values)"
        )
    return Balance(key=key, targets=tuple(targets))


def _shares(balance: Balance, present: Sequence[str]) -> dict[str, float]:
    """Each group's share (with :data:`OTHER` for the rest), after checking the values."""
    if balance.targets is None:
        if not present:
            raise ConfigError(f"no image has a value for the balance key {balance.key!r}")
        return {value: 1.0 / len(present) for value in present}
    missing = [value for value, _ in balance.targets if value not in present]
    if missing:
        shown = ", ".join(repr(v) for v in sorted(present)[:20]) or "none"
        raise ConfigError(
            f"no image has {balance.key}={missing[0]!r}; the values present are: {shown}"
        )
    shares = dict(balance.targets)
    rest = 1.0 - sum(shares.values())
    if rest > _SUM_TOL:
        shares[OTHER] = rest
    return shares


def quotas(
    groups: npt.NDArray[np.object_],
    candidates: npt.NDArray[np.bool_],
    balance: Balance,
    n: int,
) -> dict[str, int]:
    """Split ``n`` picks over the groups by their target shares.

    Args:
        groups: ``(N,)`` each row's value of the balance field (``str`` or ``None``).
        candidates: ``(N,)`` rows that may be picked.
        balance: The targets.
        n: Picks in all; at most the number of candidates.

    Returns:
        ``{group: picks}`` with values summing to ``n``; :data:`OTHER` stands for the
        values not named in the targets.

    Raises:
        ConfigError: A target value no image has, no image with a value at all, or too few
            candidates in the groups that have a share.
    """
    present = sorted({str(v) for v in groups if v is not None})
    shares = _shares(balance, present)
    named = set(shares) - {OTHER}
    available: dict[str, int] = dict.fromkeys(shares, 0)
    for value in groups[candidates]:
        group = str(value) if value is not None and str(value) in named else OTHER
        if group in available:
            available[group] += 1
    if sum(available.values()) < n:
        raise ConfigError(
            f"balancing on {balance.key!r} leaves {sum(available.values())} candidates, fewer "
            f"than n={n}; pass a smaller -n or give other values a share"
        )
    result = dict.fromkeys(shares, 0)
    remaining = n
    open_groups = dict(shares)
    while remaining > 0:
        total = sum(open_groups.values())
        exact = {g: remaining * s / total for g, s in open_groups.items()}
        grant = {g: math.floor(v) for g, v in exact.items()}
        # Largest remainder; ties by group name, so the split is reproducible.
        order = sorted(open_groups, key=lambda g: (-(exact[g] - grant[g]), g))
        for g in order[: remaining - sum(grant.values())]:
            grant[g] += 1
        for g, count in grant.items():
            take = min(count, available[g] - result[g])
            result[g] += take
            remaining -= take
        open_groups = {g: s for g, s in open_groups.items() if result[g] < available[g]}
    return {g: c for g, c in result.items() if c > 0}


def group_of(value: object, balance: Balance, quota: dict[str, int]) -> str | None:
    """The quota group a row with ``value`` belongs to, or ``None`` if it has none."""
    if value is not None and str(value) in quota and str(value) != OTHER:
        return str(value)
    if OTHER in quota:
        named = {v for v, _ in balance.targets or ()}
        if value is None or str(value) not in named:
            return OTHER
    return None


def interleave(per_group: Sequence[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
    """Merge per-group pick lists so every prefix keeps the groups' proportions.

    Pick ``r`` of a group with ``q`` picks is placed at ``(r + 0.5) / q``; ties keep the
    group order. Each group's own order is preserved.
    """
    keys: list[tuple[float, int, int]] = []
    for g, picks in enumerate(per_group):
        q = len(picks)
        keys.extend(((r + 0.5) / q, g, int(p)) for r, p in enumerate(picks))
    keys.sort()
    return np.array([p for _, _, p in keys], dtype=np.int64)

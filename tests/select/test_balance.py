import numpy as np
import pytest

from lensloop.errors import ConfigError
from lensloop.select.balance import (
    OTHER,
    Balance,
    group_of,
    interleave,
    parse_balance,
    quotas,
)


def _groups(*values: str | None) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _all(n: int) -> np.ndarray:
    return np.ones(n, dtype=bool)


# --------------------------------------------------------------------------- parse


def test_parse_key_alone_means_equal_shares() -> None:
    assert parse_balance("particle_type") == Balance(key="particle_type", targets=None)
    assert parse_balance("  sample ") == Balance(key="sample")


def test_parse_values_with_dash_and_colon() -> None:
    balance = parse_balance("particle_type=Fe:0.5,X-ray:0.5")
    assert balance.key == "particle_type"
    assert balance.targets == (("Fe", 0.5), ("X-ray", 0.5))
    # rpartition: only the last ':' separates the share.
    assert parse_balance("site=lab:A:0.25, lab:B :0.75").targets == (
        ("lab:A", 0.25),
        ("lab:B", 0.75),
    )


def test_parse_shares_may_sum_below_one() -> None:
    assert parse_balance("k=a:0.2,b:0.3").targets == (("a", 0.2), ("b", 0.3))
    assert parse_balance("k=a:1").targets == (("a", 1.0),)
    # Rounding slack: three thirds written out may sum a hair above 1.
    assert len(parse_balance("k=a:0.3333334,b:0.3333334,c:0.3333334").targets or ()) == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "names no field"),
        ("=a:0.5", "names no field"),
        ("  =a:0.5", "names no field"),
        ("k=a", r"'a' is not value:share"),
        ("k=", r"'' is not value:share"),
        ("k=:0.5", r"':0.5' is not value:share"),
        ("k=a:0.5,,b:0.5", r"'' is not value:share"),
        ("k=a:half", r"the share 'half' of 'a' is not a number"),
        ("k=a:", r"the share '' of 'a' is not a number"),
        ("k=a:0", r"the share of 'a' must be in \(0, 1\]"),
        ("k=a:-0.5", r"must be in \(0, 1\]"),
        ("k=a:1.5", r"must be in \(0, 1\]"),
        ("k=a:nan", r"must be in \(0, 1\]"),
        ("k=a:inf", r"must be in \(0, 1\]"),
        ("k=a:0.3,a:0.3", "names 'a' twice"),
        ("k=a:0.3, a :0.3", "names 'a' twice"),
        ("k=a:0.6,b:0.6", "the shares sum to 1.2; they must sum to at most 1"),
    ],
)
def test_parse_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_balance(text)


@pytest.mark.parametrize(
    "text",
    ["particle_type", "particle_type=Fe:0.5,X-ray:0.5", "site=lab:A:0.25,b:0.5", "k=x:1"],
)
def test_describe_round_trips(text: str) -> None:
    balance = parse_balance(text)
    assert balance.describe() == text
    assert parse_balance(balance.describe()) == balance


# --------------------------------------------------------------------------- quotas


def test_quotas_equal_shares_largest_remainder_ties_by_name() -> None:
    groups = _groups(*(["b"] * 10 + ["a"] * 10 + ["c"] * 10))
    result = quotas(groups, _all(30), Balance("k"), 10)
    assert result == {"a": 4, "b": 3, "c": 3}
    assert quotas(groups, _all(30), Balance("k"), 11) == {"a": 4, "b": 4, "c": 3}
    assert quotas(groups, _all(30), Balance("k"), 12) == {"a": 4, "b": 4, "c": 4}


def test_quotas_explicit_shares_largest_remainder() -> None:
    groups = _groups(*(["a"] * 20 + ["b"] * 20))
    balance = parse_balance("k=a:0.7,b:0.3")
    assert quotas(groups, _all(40), balance, 10) == {"a": 7, "b": 3}
    # 5 * 0.7 = 3.5, 5 * 0.3 = 1.5: equal remainders go to the name first in order.
    assert quotas(groups, _all(40), balance, 5) == {"a": 4, "b": 1}
    assert quotas(groups, _all(40), balance, 4) == {"a": 3, "b": 1}


def test_quotas_sum_to_n() -> None:
    groups = _groups(*(["a"] * 7 + ["b"] * 11 + ["c"] * 5 + [None] * 3))
    for n in range(1, 24):
        result = quotas(groups, _all(len(groups)), Balance("k"), n)
        assert sum(result.values()) == n
        assert set(result) <= {"a", "b", "c"}


def test_quotas_rest_goes_to_other() -> None:
    groups = _groups(*(["a"] * 10 + ["b"] * 10 + ["c"] * 10 + [None] * 10))
    balance = parse_balance("k=a:0.5")
    result = quotas(groups, _all(40), balance, 10)
    assert result == {"a": 5, OTHER: 5}


def test_quotas_other_counts_unnamed_and_none_values() -> None:
    # Only 2 'a', and OTHER is made of one 'b' and two None rows.
    groups = _groups("a", "a", "b", None, None)
    balance = parse_balance("k=a:0.5")
    assert quotas(groups, _all(5), balance, 5) == {"a": 2, OTHER: 3}
    with pytest.raises(ConfigError, match="leaves 5 candidates, fewer than n=6"):
        quotas(groups, _all(5), balance, 6)


def test_quotas_no_other_group_when_shares_sum_to_one() -> None:
    groups = _groups(*(["a"] * 5 + ["b"] * 5 + ["c"] * 5))
    balance = parse_balance("k=a:0.5,b:0.5")
    assert quotas(groups, _all(15), balance, 6) == {"a": 3, "b": 3}
    # 'c' rows have no share, so only 10 rows count.
    with pytest.raises(ConfigError, match="balancing on 'k' leaves 10 candidates, fewer than n=11"):
        quotas(groups, _all(15), balance, 11)


def test_quotas_shortfall_redistributed() -> None:
    groups = _groups(*(["a"] * 1 + ["b"] * 20 + ["c"] * 20))
    assert quotas(groups, _all(41), Balance("k"), 9) == {"a": 1, "b": 4, "c": 4}


def test_quotas_shortfall_redistributed_in_proportion() -> None:
    groups = _groups(*(["a"] * 2 + ["b"] * 30 + ["c"] * 30))
    balance = parse_balance("k=a:0.5,b:0.3,c:0.2")
    # a wants 10 of 20 but has 2; the other 8 split 3:2 between b and c.
    result = quotas(groups, _all(62), balance, 20)
    assert result == {"a": 2, "b": 6 + 5, "c": 4 + 3}


def test_quotas_only_count_candidates() -> None:
    groups = _groups(*(["a"] * 5 + ["b"] * 5))
    candidates = np.array([True] * 2 + [False] * 3 + [True] * 5)
    assert quotas(groups, candidates, Balance("k"), 6) == {"a": 2, "b": 4}
    # A value present only among non-candidates still gets no picks, without error.
    candidates = np.array([False] * 5 + [True] * 5)
    assert quotas(groups, candidates, Balance("k"), 4) == {"b": 4}


def test_quotas_missing_target_value_names_it_and_lists_present() -> None:
    groups = _groups("Fe", "Cu", None)
    with pytest.raises(
        ConfigError, match=r"no image has k='Zn'; the values present are: 'Cu', 'Fe'"
    ):
        quotas(groups, _all(3), parse_balance("k=Fe:0.5,Zn:0.5"), 2)


def test_quotas_missing_target_value_with_no_values_at_all() -> None:
    with pytest.raises(ConfigError, match="the values present are: none"):
        quotas(_groups(None, None), _all(2), parse_balance("k=a:0.5"), 1)


def test_quotas_no_values_with_equal_shares() -> None:
    with pytest.raises(ConfigError, match="no image has a value for the balance key 'k'"):
        quotas(_groups(None, None), _all(2), Balance("k"), 1)


def test_quotas_too_few_candidates() -> None:
    groups = _groups("a", "a", "b")
    with pytest.raises(ConfigError, match="leaves 3 candidates, fewer than n=4"):
        quotas(groups, _all(3), Balance("k"), 4)


def test_quotas_equal_shares_exclude_none_rows() -> None:
    groups = _groups("a", "a", "a", "b", "b", "b", None, None, None)
    assert quotas(groups, _all(9), Balance("k"), 6) == {"a": 3, "b": 3}
    # The three None rows are not candidates for an equal-share balance.
    with pytest.raises(ConfigError, match="leaves 6 candidates, fewer than n=7"):
        quotas(groups, _all(9), Balance("k"), 7)


def test_quotas_values_are_compared_as_text() -> None:
    groups = _groups(*([1] * 4 + [2] * 4))  # type: ignore[arg-type]
    assert quotas(groups, _all(8), parse_balance("k=1:0.75,2:0.25"), 4) == {"1": 3, "2": 1}


# --------------------------------------------------------------------------- group_of


def test_group_of() -> None:
    balance = parse_balance("k=a:0.5")
    quota = {"a": 2, OTHER: 2}
    assert group_of("a", balance, quota) == "a"
    assert group_of("b", balance, quota) == OTHER
    assert group_of(None, balance, quota) == OTHER
    # Without an OTHER share, unnamed values and None belong nowhere.
    assert group_of("b", Balance("k"), {"a": 1, "c": 1}) is None
    assert group_of(None, Balance("k"), {"a": 1}) is None
    # A named value that got no picks does not fall into OTHER.
    assert group_of("b", parse_balance("k=a:0.4,b:0.4"), {"a": 2, OTHER: 1}) is None


# --------------------------------------------------------------------------- interleave


def test_interleave_keeps_proportions_in_every_prefix() -> None:
    a = np.array([10, 11, 12, 13], dtype=np.int64)
    b = np.array([20, 21], dtype=np.int64)
    order = interleave([a, b])
    assert order.dtype == np.int64
    assert order.tolist() == [10, 20, 11, 12, 21, 13]
    for k in range(1, len(order) + 1):
        from_b = int(np.isin(order[:k], b).sum())
        assert abs(from_b - k * 2 / 6) <= 1


def test_interleave_preserves_group_order_and_ties_by_group() -> None:
    a = np.array([5, 3, 9], dtype=np.int64)
    b = np.array([8, 1, 7], dtype=np.int64)
    c = np.array([4], dtype=np.int64)
    order = interleave([a, b, c]).tolist()
    assert sorted(order) == sorted([*a, *b, *c])
    for group in (a, b):
        positions = [order.index(int(p)) for p in group]
        assert positions == sorted(positions)
    # Equal positions: group order decides.
    assert order[:2] == [5, 8]
    assert order == [5, 8, 3, 1, 4, 9, 7]


def test_interleave_empty() -> None:
    assert interleave([]).tolist() == []
    assert interleave([np.array([], dtype=np.int64), np.array([2], dtype=np.int64)]).tolist() == [2]

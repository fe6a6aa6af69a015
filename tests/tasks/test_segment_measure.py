"""Region measurements of label maps, the summary grammar, and the measurements CSV."""

from __future__ import annotations

import csv
import math
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import label as skimage_label
from skimage.measure import perimeter as skimage_perimeter

import lensloop.tasks.segment.measure as measure_module
from lensloop.errors import ConfigError, LabelError
from lensloop.tasks.segment.measure import (
    SummarySpec,
    default_summary,
    measure_regions,
    measurements_row,
    measurements_rows,
    parse_summary,
    summarise,
    write_measurements_csv,
)

V = 255


def _two_squares() -> np.ndarray:
    """A 20 x 30 map: a 6 x 6 and a 2 x 2 square of rock (label 2) in a box (label 1)."""
    labels = np.zeros((20, 30), np.uint8)
    labels[2:18, 2:28] = 1
    labels[4:10, 4:10] = 2  # 36 pixels
    labels[12:14, 20:22] = 2  # 4 pixels
    return labels


def _disc(radius: int) -> np.ndarray:
    side = 2 * radius + 10
    rows, cols = np.mgrid[:side, :side]
    centre = side / 2 - 0.5
    return (((rows - centre) ** 2 + (cols - centre) ** 2) <= radius**2).astype(np.uint8)


def _comb() -> np.ndarray:
    labels = np.zeros((100, 100), np.uint8)
    labels[10:20, 10:90] = 1
    for x in range(10, 90, 6):
        labels[20:80, x : x + 3] = 1
    return labels


# --------------------------------------------------------------------------- measuring


def test_two_squares_one_below_min_area() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"], min_area=5)
    rock = found["rock"]
    assert rock.label == 2
    assert rock.area_px == 40  # the small square is still rock ...
    assert rock.fragments == 1  # ... but not a counted fragment
    assert rock.largest_fragment_px == 36
    assert rock.mean_fragment_px == 36.0
    assert rock.perimeter_px == pytest.approx(20.0)  # through the centres of a 6 x 6 square
    assert rock.complexity == pytest.approx(400 / (4 * math.pi * 36))
    assert rock.area_fraction == pytest.approx(40 / 600)
    assert found["box"].area_px == 16 * 26 - 40
    assert found["background"].area_px == 600 - 16 * 26
    assert found.names == ("background", "box", "rock")
    assert found.class_names == ("box", "rock")
    assert found.classes["rock"] is rock
    assert found.n_pixels == 600
    assert found.void_px == 0

    everything = measure_regions(_two_squares(), ["box", "rock"])
    assert everything["rock"].fragments == 2
    assert everything["rock"].mean_fragment_px == 20.0
    assert everything["rock"].largest_fragment_px == 36


def test_eight_connectivity_joins_corner_neighbours() -> None:
    labels = np.zeros((6, 6), np.uint8)
    labels[1:3, 1:3] = 1
    labels[3:5, 3:5] = 1  # touches the first square at one corner only
    labels[0, 5] = 1
    found = measure_regions(labels, ["cell"])
    assert found["cell"].fragments == 2
    assert found["cell"].largest_fragment_px == 8


def test_void_is_no_class_and_splits_fragments() -> None:
    labels = np.ones((4, 10), np.uint8)
    labels[:, 5] = V
    found = measure_regions(labels, ["rock"])
    assert found.void_px == 4
    assert found.n_pixels == 36
    assert found["rock"].area_px == 36
    assert found["rock"].area_fraction == 1.0
    assert found["rock"].fragments == 2
    assert found["background"].area_fraction == 0.0
    assert found["background"].fragments == 0
    assert found["background"].complexity is None
    assert found["background"].largest_fragment_px == 0


def test_all_void_has_no_fractions() -> None:
    found = measure_regions(np.full((3, 3), V, np.uint8), ["rock"])
    assert found.n_pixels == 0
    assert found["rock"].area_fraction is None
    assert len(found.fragment_arrays) == 0
    assert found.fragments_table() == []


def test_disc_complexity_is_about_one_and_a_comb_much_more() -> None:
    for radius in (15, 40):
        disc = measure_regions(_disc(radius), ["disc"])["disc"]
        assert disc.fragments == 1
        assert disc.complexity == pytest.approx(1.0, abs=0.12)
    comb = measure_regions(_comb(), ["comb"])["comb"]
    assert comb.fragments == 1
    assert comb.complexity is not None
    assert comb.complexity > 20


def test_complexity_of_a_class_is_area_weighted() -> None:
    labels = np.zeros((120, 220), np.uint8)
    labels[: _disc(40).shape[0], : _disc(40).shape[1]] = _disc(40)
    labels[100:103, 100:200] = 1  # a thin bar: high complexity, small area
    found = measure_regions(labels, ["piece"])
    table = [row for row in found.fragments_table() if row["class"] == "piece"]
    assert len(table) == 2
    areas = np.array([row["area_px"] for row in table], float)
    values = np.array([row["complexity"] for row in table])
    assert found["piece"].complexity == pytest.approx(float((areas * values).sum() / areas.sum()))
    assert min(values) < found["piece"].complexity < max(values)


def test_perimeters_equal_skimage_per_fragment(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(7)
    for strip in (1, 29, 1 << 20):  # one row at a time, odd strips, the whole map at once
        monkeypatch.setattr(measure_module, "_STRIP", strip)
        labels = rng.integers(0, 3, (37, 41)).astype(np.uint8)
        labels[rng.random(labels.shape) < 0.05] = V
        found = measure_regions(labels, ["a", "b"])
        frags = found.fragment_arrays
        for label in (1, 2):
            components = skimage_label(labels == label, connectivity=2)
            expected = sorted(
                (int((components == c).sum()), skimage_perimeter(components == c, 4))
                for c in range(1, components.max() + 1)
            )
            chosen = frags.label == label
            got = sorted(
                zip(
                    frags.area_px[chosen].tolist(), frags.perimeter_px[chosen].tolist(), strict=True
                )
            )
            assert len(got) == len(expected)
            for (area, perim), (want_area, want_perim) in zip(got, expected, strict=True):
                assert area == want_area
                assert perim == pytest.approx(want_perim, abs=1e-9)


def test_fragments_table_rows() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"], pixel_size=0.5)
    rows = [row for row in found.fragments_table() if row["class"] == "rock"]
    big = next(row for row in rows if row["area_px"] == 36)
    assert big["label"] == 2
    assert big["id"] in (1, 2)
    assert big["bbox"] == (4, 4, 10, 10)  # (x0, y0, x1, y1) in pixel edges
    assert big["centroid"] == pytest.approx((7.0, 7.0))  # pixel centres at j + 0.5
    assert big["area"] == pytest.approx(9.0)
    assert big["perimeter"] == pytest.approx(10.0)
    small = next(row for row in rows if row["area_px"] == 4)
    assert small["bbox"] == (20, 12, 22, 14)
    assert small["centroid"] == pytest.approx((21.0, 13.0))
    assert sorted(row["id"] for row in rows) == [1, 2]
    assert "area" not in measure_regions(_two_squares(), ["box", "rock"]).fragments_table()[0]


def test_pixel_size_scales_areas_and_perimeters() -> None:
    plain = measure_regions(_two_squares(), ["box", "rock"])["rock"]
    assert plain.area is None
    assert plain.perimeter is None
    assert plain.largest_fragment is None
    rock = measure_regions(_two_squares(), ["box", "rock"], pixel_size=0.1)["rock"]
    assert rock.area_px == 40
    assert rock.area == pytest.approx(0.4)
    assert rock.largest_fragment == pytest.approx(0.36)
    assert rock.mean_fragment == pytest.approx(0.2)
    assert rock.perimeter == pytest.approx(rock.perimeter_px * 0.1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"min_area": -1}, "min_area"),
        ({"min_area": 2.5}, "min_area"),
        ({"pixel_size": 0}, "pixel_size"),
        ({"pixel_size": math.nan}, "pixel_size"),
    ],
)
def test_bad_options(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        measure_regions(_two_squares(), ["box", "rock"], **kwargs)


def test_labels_outside_the_classes_are_refused() -> None:
    with pytest.raises(LabelError, match=r"label\(s\) 2"):
        measure_regions(_two_squares(), ["box"])
    with pytest.raises(ConfigError, match="no class 'gravel'"):
        measure_regions(_two_squares(), ["box", "rock"])["gravel"]


@pytest.mark.slow
def test_large_map_in_bounded_memory_and_time() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((4000, 6000), np.uint8)
    labels[200:3800, 300:5700] = 1
    for row in range(5):
        top, x = 300 + row * 700, 400
        while x < 5600:
            length = int(rng.integers(20, 600))
            labels[top : top + 500, x : min(x + length, 5600)] = 2
            x += length + int(rng.integers(3, 40))
    labels[rng.random(labels.shape) < 0.001] = 2  # rubble specks
    tracemalloc.start()
    started = time.perf_counter()
    try:
        found = measure_regions(labels, ["box", "rock"], min_area=50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started
    assert found["rock"].fragments > 50
    assert peak < 300 * 2**20
    assert elapsed < 30  # a few seconds on an idle core; generous for busy CI


# --------------------------------------------------------------------------- summary


def test_parse_summary_examples() -> None:
    specs = parse_summary(
        [
            "intact_rock = fraction(rock, of=box)",
            "fragments = count(rock)",
            "rock_area = area(rock)",
            "largest = largest(rock)",
            "mean_size = mean(rock)",
            "roughness = complexity(rock)",
            "edge = perimeter(rock + box)",
        ],
        ["box", "rock"],
    )
    assert [str(spec) for spec in specs] == [
        "intact_rock = fraction(rock, of=box)",
        "fragments = count(rock)",
        "rock_area = area(rock)",
        "largest = largest(rock)",
        "mean_size = mean(rock)",
        "roughness = complexity(rock)",
        "edge = perimeter(rock+box)",
    ]
    assert specs[0] == SummarySpec("intact_rock", "fraction", ("rock",), ("box",))


def test_parse_is_lenient_about_spaces_case_and_quotes() -> None:
    spec = SummarySpec.parse(" share =  FRACTION ( intact rock ,OF = 'box, wooden' + intact rock )")
    assert spec == SummarySpec(
        "share", "fraction", ("intact rock",), ("box, wooden", "intact rock")
    )
    assert SummarySpec.parse(str(spec)) == spec
    assert SummarySpec.parse("bg = fraction(Background)", ["rock"]).classes == ("background",)
    assert parse_summary("a = count(rock); b = area(rock)\n c = mean(rock)")[2].name == "c"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("x = volume(rock)", "unknown summary function 'volume'.*area, fraction, count"),
        ("x = count(gravel)", "no class 'gravel'; valid classes are: 'background', 'box'"),
        ("x = fraction(rock, of=sand)", "no class 'sand'"),
        ("x = count(rock, of=box)", "only fraction takes of="),
        ("x = fraction(rock, over=box)", "of=CLASS"),
        ("x = fraction(rock, of box)", "of=CLASS"),
        ("x = count(rock", "must end with"),
        ("x = count()", "expected a class name"),
        ("x = count(rock+)", "expected a class name"),
        ("x = count('rock)", "unterminated quote"),
        ("count(rock)", "no '='"),
        (" = count(rock)", "no NAME"),
        ("x = rock", r"FUNCTION\(...\)"),
        ("image = count(rock)", "image column"),
        ("x = __import__('os').system('true')", "unknown summary function '__import__'"),
        ("x = count(rock) + count(box)", "must end with|unexpected"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        SummarySpec.parse(text, ["box", "rock"])


def test_duplicate_summary_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="two summary specs are named 'n'"):
        parse_summary(["n = count(rock)", "n = area(rock)"])


def test_summarise_values_and_the_of_rule() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"], min_area=5)
    specs = parse_summary(
        [
            "intact = fraction(rock, of=box)",
            "same = fraction(rock, of=box+rock)",
            "of_image = fraction(rock)",
            "pieces = count(rock)",
            "area = area(rock)",
            "largest = largest(rock)",
            "mean = mean(rock)",
            "rough = complexity(rock)",
            "edge = perimeter(rock)",
            "both = count(rock+box)",
        ]
    )
    values = summarise(found, specs)
    box_area = 16 * 26  # the box's own pixels and the rock in it
    assert values["intact"] == pytest.approx(40 / box_area)
    assert values["same"] == values["intact"]
    assert values["of_image"] == pytest.approx(40 / 600)
    assert values["pieces"] == 1
    assert values["area"] == 40
    assert values["largest"] == 36
    assert values["mean"] == 36.0
    assert values["rough"] == pytest.approx(found["rock"].complexity)
    assert values["edge"] == pytest.approx(20.0)
    assert values["both"] == 2
    assert list(values) == [spec.name for spec in specs]


def test_summary_without_fragments_and_in_units() -> None:
    labels = np.zeros((10, 10), np.uint8)
    labels[0, 0] = 1
    found = measure_regions(labels, ["rock", "box"], min_area=2, pixel_size=2.0)
    values = summarise(
        found,
        parse_summary(
            [
                "n = count(rock)",
                "largest = largest(rock)",
                "mean = mean(rock)",
                "rough = complexity(rock)",
                "area = area(rock)",
                "in_box = fraction(rock, of=box)",
                "nothing = fraction(box, of=box)",
            ]
        ),
    )
    assert values == {
        "n": 0,
        "largest": 0.0,
        "mean": None,
        "rough": None,
        "area": pytest.approx(4.0),  # 1 pixel of 2 x 2 units
        "in_box": 1.0,  # the box has no pixel of its own: all of it is rock
        "nothing": None,
    }


def test_unknown_class_is_refused_when_evaluated() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"])
    with pytest.raises(ConfigError, match="no class 'gravel'"):
        summarise(found, parse_summary(["g = count(gravel)"]))


def test_default_summary() -> None:
    specs = default_summary(["box", "rock"])
    assert [str(spec) for spec in specs] == [
        "box_fraction = fraction(box)",
        "box_fragments = count(box)",
        "rock_fraction = fraction(rock)",
        "rock_fragments = count(rock)",
    ]


# --------------------------------------------------------------------------- CSV


def test_rows_have_per_class_then_summary_columns() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"], min_area=5)
    specs = parse_summary(["intact_rock = fraction(rock, of=box)"])
    (row,) = measurements_rows({"box-01.jpg": found}, specs)
    per_class = [
        f"{name}_{suffix}"
        for name in ("background", "box", "rock")
        for suffix in (
            "area_px",
            "fraction",
            "fragments",
            "perimeter_px",
            "complexity",
            "largest_px",
        )
    ]
    assert list(row) == ["image", *per_class, "intact_rock"]
    assert row["image"] == "box-01.jpg"
    assert row["rock_area_px"] == 40
    assert row["rock_fragments"] == 1
    assert row["rock_largest_px"] == 36
    assert row["intact_rock"] == pytest.approx(40 / 416)
    # The default summary means the same as per-class columns: not written twice.
    assert list(measurements_row("a", found, default_summary(["box", "rock"]))) == [
        "image",
        *per_class,
    ]


def test_rows_refuse_a_summary_name_that_means_something_else() -> None:
    found = measure_regions(_two_squares(), ["box", "rock"])
    with pytest.raises(ConfigError, match=r"rock_fraction.*per-class column"):
        measurements_row("a", found, parse_summary(["rock_fraction = fraction(rock, of=box)"]))


def test_rows_add_units_when_any_image_has_a_pixel_size() -> None:
    with_size = measure_regions(_two_squares(), ["box", "rock"], pixel_size=0.5)
    without = measure_regions(_two_squares(), ["box", "rock"])
    rows = measurements_rows([("a", with_size), (7, without)])
    assert list(rows[0]) == list(rows[1])
    assert rows[0]["pixel_size"] == 0.5
    assert rows[0]["rock_area"] == pytest.approx(10.0)
    assert rows[1]["pixel_size"] is None
    assert rows[1]["rock_area"] is None
    assert rows[1]["image"] == 7
    assert "pixel_size" not in measurements_rows([("b", without)])[0]


def test_rows_need_one_class_list() -> None:
    a = measure_regions(_two_squares(), ["box", "rock"])
    b = measure_regions(_two_squares(), ["box", "rock", "sand"])
    with pytest.raises(ConfigError, match="one class list"):
        measurements_rows([("a", a), ("b", b)])


def test_csv_written_and_not_overwritten(tmp_path: Path) -> None:
    found = measure_regions(_two_squares(), ["box", "rock"], min_area=5)
    specs = parse_summary(["intact = fraction(rock, of=box)", "mean = mean(background)"])
    rows = measurements_rows({"one.png": found, "two.png": found}, specs)
    path = tmp_path / "out" / "measurements.csv"
    assert write_measurements_csv(path, rows) == path
    with path.open(newline="", encoding="utf-8") as handle:
        read = list(csv.DictReader(handle))
    assert [row["image"] for row in read] == ["one.png", "two.png"]
    assert read[0]["rock_area_px"] == "40"
    assert float(read[0]["intact"]) == pytest.approx(40 / 416)
    assert float(read[0]["rock_complexity"]) == pytest.approx(found["rock"].complexity)
    before = path.read_bytes()

    with pytest.raises(ConfigError, match=r"exists; .*force=True"):
        write_measurements_csv(path, rows[:1])
    assert path.read_bytes() == before
    write_measurements_csv(path, rows[:1], force=True)
    with path.open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["measurements.csv"]  # no temp file


def test_csv_empty_cells_for_none(tmp_path: Path) -> None:
    labels = np.zeros((4, 4), np.uint8)
    found = measure_regions(labels, ["rock"])
    path = write_measurements_csv(tmp_path / "m.csv", measurements_rows({"x": found}))
    with path.open(newline="", encoding="utf-8") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["rock_complexity"] == ""
    assert row["rock_fragments"] == "0"


def test_csv_refuses_no_rows(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no measurement rows"):
        write_measurements_csv(tmp_path / "m.csv", [])

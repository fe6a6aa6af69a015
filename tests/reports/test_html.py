"""The one-file HTML report."""

from __future__ import annotations

import base64
from pathlib import Path

from PIL import Image as PILImage

from lensloop.reports.html import Section, write_html_report


def test_report_embeds_figures_and_escapes_text(tmp_path: Path) -> None:
    figure = tmp_path / "curve.png"
    PILImage.new("RGB", (4, 3), (255, 0, 0)).save(figure)
    sections = [
        Section(
            "Curves <1>",
            ["accuracy & F1 < 1"],
            [[["strategy", "AUC"], ["auto", "0.811"], ["<script>", "x"]]],
            [figure, tmp_path / "gone.png"],
        )
    ]
    path = write_html_report(tmp_path / "out" / "r.html", "demo & more", sections)
    text = path.read_text(encoding="utf-8")
    assert "<title>demo &amp; more</title>" in text
    assert "<h2>Curves &lt;1&gt;</h2>" in text
    assert "<p>accuracy &amp; F1 &lt; 1</p>" in text
    assert "<td>&lt;script&gt;</td>" in text
    assert "<script>" not in text
    encoded = base64.b64encode(figure.read_bytes()).decode("ascii")
    assert f"data:image/png;base64,{encoded}" in text
    assert "figure missing" in text
    assert "gone.png" in text
    assert not list(path.parent.glob(".*.tmp"))

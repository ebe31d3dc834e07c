"""The printable HTML report (scarnet.report_html): what it shows, read back from the page, and the
command line's --html."""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
import warnings
from html import escape as _html_escape
from html.parser import HTMLParser

import pytest
from conftest import write_emidec_like_nifti
from test_aha import _point_along_i, _ring_labels, _volume, quantify_command

import scarnet
from scarnet.aha import transmurality_band
from scarnet.bullseye import percent_text
from scarnet.quantify import quantify
from scarnet.report_html import report_html


class _Page(HTMLParser):
    """The page's tables (rows of cell text), its warnings (their short lines) and the full text folded under them,
    its SVG elements, its text outside tags, and whether its elements are balanced (every element opened is closed,
    in order: the page is well-formed HTML)."""

    #: Elements without an end tag.
    VOID = {"meta", "br", "img", "hr", "input", "link", "wbr", "col", "area", "base", "source"}

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.warnings: list[str] = []
        self.full_warnings: list[str] = []
        self.svgs = 0
        self.text: list[str] = []
        self.unbalanced: list[str] = []
        self._open: list[str] = []
        self._cell: list[str] | None = None
        self._into: list[str] | None = None  # where the text goes: a warning's short line or its full text
        self._in_warning = False

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self._open.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        elif tag == "div" and ("class", "warning") in attrs:
            self.warnings.append("")
            self._into = self.warnings
        elif tag == "details" and ("class", "warning") in attrs:
            self._in_warning = True
        elif tag == "summary" and self._in_warning:
            self.warnings.append("")
            self._into = self.warnings
        elif tag == "div" and ("class", "full") in attrs:
            self.full_warnings.append("")
            self._into = self.full_warnings

    def handle_startendtag(self, tag, attrs):  # <path .../>: opened and closed
        pass

    def handle_endtag(self, tag):
        if not self._open or self._open[-1] != tag:
            self.unbalanced.append(tag)
        else:
            self._open.pop()
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag in ("div", "summary"):
            self._into = None
        elif tag == "details":
            self._in_warning = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._into is not None:
            self._into[-1] += data
        self.text.append(data)


def _read(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert not parser.unbalanced and parser._open == [], (parser.unbalanced, parser._open)  # well-formed
    return parser


def _report():
    volume = _volume(_ring_labels(16.0, 56.0))
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    report.slices[2].qc_flags = ["scar_uncertain"]
    report.extra["qc"] = {"flags": {"scar_uncertain": "scar and healthy myocardium hard to tell apart"}}
    report.extra["inference"] = {"scarnet_version": "9.9", "device": "cpu", "tta": False,
                                 "weights": {"file": "w.safetensors", "sha256": "ab" * 32, "bundled": False},
                                 "warnings": ["the model is unsure of <the heart>"]}
    for k, s in enumerate(report.slices):
        s.dicom = {"instance_number": 10 + k, "frame_number": None, "slice_location_mm": None}
    return report


@pytest.mark.parametrize(("tta", "tta_mode", "said"), [
    (False, None, None), (True, None, "flip test-time augmentation"),  # a report from before tta_mode
    (True, "flip", "flip test-time augmentation"), (True, "dihedral", "test-time augmentation over turns and mirrors")])
def test_the_page_says_which_test_time_augmentation_made_it(tta, tta_mode, said):
    report = _report()
    report.extra["inference"].update(tta=tta, tta_mode=tta_mode)
    text = " ".join(_read(report_html(report, "lge.nii.gz")).text)
    assert ("test-time augmentation" in text) == (said is not None)
    if said:
        assert f"cpu, {said}" in text


def test_the_page_shows_the_report_figures():
    report = _report()
    page = _read(report_html(report, "lge <1>.nii.gz", generated=datetime.datetime(2026, 1, 2, 3, 4,
                                                                                   tzinfo=datetime.timezone.utc)))
    text = " ".join(page.text)
    assert "Input: lge <1>.nii.gz" in text and "2026-01-02 03:04 UTC" in text  # escaped, read back as given
    assert "model: weights w.safetensors, sha256 abababababab" in text
    assert f"scarnet {scarnet.__version__}" in text  # the report's own version (the model run's is in inference)
    assert "Research use only" in text
    assert page.warnings == ["The model is unsure of <the heart>"]  # short already: shown whole, not folded
    totals, segments, slices = page.tables[0], page.tables[1], page.tables[2]
    t = report.total
    # Totals lead with the scar's mass and its share of the LV myocardial mass (as an LGE report gives them), then
    # volumes; rounded once for all (masses 0.1 g, volumes 0.1 mL, percentages whole).
    lead = f"Scar (LGE): {t.scar_g:.1f} g, {t.scar_percent:.0f} % of the LV myocardial mass"
    assert lead in text and text.index(lead) < text.index("Mass g") and "no MVO" in text
    assert totals == [
        ["", "Mass g", "% of LV myocardial mass", "Volume mL"],
        ["Scar (LGE, MVO included)", f"{t.scar_g:.1f}", f"{t.scar_percent:.0f} %", f"{t.scar_ml:.1f}"],
        ["MVO (microvascular obstruction)", "0.0", "0 %", "0.0"],
        ["LV myocardium", f"{t.myocardium_g:.1f}", "", f"{t.myocardium_ml:.1f}"],
        ["LV blood pool on these slices (not an LV volume)", "", "", f"{t.lv_blood_pool_ml:.1f}"]]
    assert f"Slices with myocardium / with scar: {t.slices_with_myocardium} / {t.slices_with_scar}" in text
    # The scar on flagged slices, beside the total it is part of (a normal heart's false scar is often all there).
    flagged = [s for s in report.slices if s.qc_flags and s.scar_ml > 0]
    assert flagged and (
        f"Scar on slices with QC flags: {sum(s.scar_ml for s in flagged):.1f} of the {t.scar_ml:.1f} mL of scar "
        f"({100 * sum(s.scar_ml for s in flagged) / t.scar_ml:.0f} %) is on slices with QC flags (slice"
        f"{'s' if len(flagged) > 1 else ''} {', '.join(str(s.index) for s in flagged)}): read them before reporting "
        "it") in text
    # One row per segment, as the report has them; the bullseye drawn once, with its summary.
    # (An apex without slices is not imaged: dashes, not 0 mL measured.)
    # Slices as ranges (the phantom's thirds are runs of consecutive slices): "0–4", not "0,1,2,3,4".
    assert all(s.slices == list(range(s.slices[0], s.slices[-1] + 1)) for s in report.segments[:16])
    assert segments[0] == ["Segment", "Slices", "Myocardium mL", "Scar mL", "Scar %", "Grade 0–4",
                           "Transmurality, mean (band)", "Circumference > 50 % transmural", "MVO mL"]
    assert [row[:6] + row[7:] for row in segments[1:]] == [
        [f"{s.segment} {s.name}", f"{s.slices[0]}–{s.slices[-1]}" if s.slices else "–",
         *([f"{s.myocardium_ml:.1f}", f"{s.scar_ml:.1f}"] if s.slices else ["–", "–"]), percent_text(s.scar_percent),
         "–" if s.scar_extent_score is None else str(s.scar_extent_score),
         "–" if s.transmural_over_50_percent is None else f"{s.transmural_over_50_percent:.0f} %",
         f"{s.mvo_ml:.1f}" if s.slices else "–"] for s in report.segments]
    # Each segment's mean transmural extent of scar, with Kim's band; "0 %" without scar; "–" for the apex.
    bands = {0: (0, 0), 1: (1, 25), 2: (26, 50), 3: (51, 75), 4: (76, 100)}
    for row, s in zip(segments[1:], report.segments):
        if not s.slices:
            assert row[6] == "–"
        elif not s.scar_ml:
            assert row[6] == "0 %"
        else:
            shown, low, high = (float(x) for x in re.fullmatch(r"([\d.]+) % \((\d+)–(\d+)\)", row[6]).groups())
            assert shown == pytest.approx(s.scar_transmurality_mean_percent, abs=0.5) and low <= shown <= high
            assert (low, high) == bands[transmurality_band(s.scar_transmurality_mean_percent)]
    assert any(re.fullmatch(r"\d+ % \(76–100\)", row[6]) for row in segments[1:])  # the ring's scar: the whole wall
    assert not report.segments[16].slices and "17 apex: not imaged (no slice beyond the LV cavity)" in text
    assert page.svgs == 1 and "Scar (≥1 %) in 3 of 16 segments" in text
    # One row per slice: DICOM image, level, volumes and the QC flags, with the flags explained.
    assert slices[0] == ["Slice", "Position mm", "DICOM image", "Level", "Myocardium mL", "Scar mL", "Scar %", "MVO mL",
                         "Circumference > 50 % transmural", "QC flags"]
    assert len(slices) == 1 + len(report.slices)
    for row, s in zip(slices[1:], report.slices):
        assert row == [str(s.index), f"{s.position_mm:.1f}", str(10 + s.index), s.level, f"{s.myocardium_ml:.1f}",
                       f"{s.scar_ml:.1f}", f"{s.scar_percent:.0f} %", f"{s.mvo_ml:.1f}",
                       f"{s.transmural_over_50_percent:.0f} %",
                       # the reader's words, then the CSV's code; not "ok" for none: the slice is unchecked
                       ", ".join(f"scar border uncertain ({flag})" for flag in s.qc_flags) or "–"]
    # From the base to the apex, as readers go through a stack: here slice 0 is basal; with the last slice basal the
    # rows run the other way, each still named by its index.
    assert report.base_apex.base_first and slices[1][3] == "basal"
    data = report.to_dict()
    data["base_apex"] = {"basal_end": "last", "from": "user"}
    reversed_rows = _read(report_html(data, "lge.nii.gz")).tables[2][1:]
    assert [row[0] for row in reversed_rows] == [str(s.index) for s in reversed(report.slices)]
    # Nothing on the page at 0.01 mL or 0.01 %: the model's repeatability does not support it.
    assert not [cell for table in page.tables for row in table for cell in row if re.search(r"\d\.\d\d", cell)]
    assert "scar and healthy myocardium hard to tell apart" in text
    assert "Contours checked (and corrected) by:" in text  # the reviewer signs the printout


def test_scar_on_flagged_slices_is_said_beside_the_totals_in_every_output():
    """A normal heart's false scar often lies all on flagged slices: the terminal, the page and the bullseye say how
    much of the total is there; the terminal's QC column shows "-", not "ok", for a slice without a flag; the apex
    without a slice is 'not imaged', not 0 mL; MVO is also a % of the myocardium; the basal end reads 'as given'."""
    import dataclasses
    import io
    import xml.etree.ElementTree as ET

    from rich.console import Console

    from scarnet.bullseye import bullseye_svg
    from scarnet.cli import print_report

    report = _report()
    for s in report.slices:
        s.qc_flags = ["low_confidence"] if s.index < 2 else []  # slices 0 and 1 flagged
    report.base_apex = dataclasses.replace(report.base_apex, source="given")
    flagged = [str(s.index) for s in report.slices if s.qc_flags and s.scar_ml > 0]
    on_flagged = sum(s.scar_ml for s in report.slices if s.qc_flags)
    total = report.total.scar_ml
    assert flagged == ["0", "1"] and 0 < on_flagged < total
    shown = io.StringIO()
    print_report(report, Console(file=shown, width=200, force_terminal=False))
    text = shown.getvalue()
    assert (f"{on_flagged:.2f} of the {total:.2f} mL of scar ({100 * on_flagged / total:.0f} %) is on slices with QC "
            f"flags (slices 0, 1): read them before reporting it") in text
    assert f"({100 * report.total.mvo_ml / report.total.myocardium_ml:.1f} % of the myocardium)" in text
    assert "basal end: the first slice, as given;" in text and "17 apex: not imaged" in text
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    assert {row[-2].strip() for row in rows if row[1].strip().isdigit()} == {"low_confidence", "-"}
    apex = next(row for row in rows if row[1].strip().startswith("17 apex"))
    assert [cell.strip() for cell in apex[2:-1]] == ["-"] * (len(apex) - 3)  # one dash throughout, no "0.00"
    captions = {t.get("data-caption"): t.text for t in ET.fromstring(bullseye_svg(report)).iter()
                if t.get("data-caption")}
    assert captions["qc"] == f"{on_flagged:.1f} of {total:.1f} mL of scar on slices with QC flags (0, 1): read them " \
        "first"
    # Neither all nor none of it is never "100 %" or "0 %"; a long list of slices and a long title stay in the picture.
    from scarnet.quantify import flagged_scar_text

    data = {"total": {"scar_ml": 10.0}, "slices": [{"index": k, "scar_ml": ml, "qc_flags": ["low_confidence"]}
                                                    for k, ml in enumerate([9.96] + [0.004] * 9)]}
    assert "(>99 %)" in flagged_scar_text({**data, "slices": data["slices"][:1]})
    assert "(<1 %)" in flagged_scar_text({**data, "slices": data["slices"][1:2]})
    many = {**report.to_dict()}
    for s in many["slices"]:
        s["qc_flags"] = ["low_confidence"]
    root = ET.fromstring(bullseye_svg(many, "x" * 200 + ": scar per AHA segment (ScarNet model)"))
    title = next(t for t in root.iter() if t.tag.endswith("text"))
    assert len(title.text) <= 85 and "…" in title.text and title.text.endswith("(ScarNet model)")
    assert 9 <= float(title.get("font-size")) < 10  # smaller type, still legible
    shown = {t.get("data-caption"): t.text for t in root.iter() if t.get("data-caption")}["qc"]
    assert len([s for s in many["slices"] if s["scar_ml"] > 0]) == 7
    assert "(0, 1, 2, 3, 4, 5, …): read them first" in shown  # six named, then "…"
    for s in report.slices:
        s.qc_flags = []
    assert "data-caption=\"qc\"" not in bullseye_svg(report)
    page = _read(report_html(report, "lge"))
    assert "Scar on slices with QC flags" not in " ".join(page.text)


def test_stored_reports_of_older_versions_and_odd_values():
    """A report kept in a Slicer scene may come from an older version (no weights recorded, no summary) or hold
    nulls; the page still renders, says what it does not know, and escapes whatever it shows."""
    data = _report().to_dict()
    del data["inference"]["weights"], data["segment_summary"]
    data["segments_left_out"] = ["RV (12 voxels)"]
    data["conventions"]["myocardium_density_g_per_ml"] = "<img src=x onerror=alert(1)>"
    page = _read(report_html(data, "lge"))
    text = " ".join(page.text)
    assert "weights not recorded" in text and "Scar in" not in text
    assert "RV (12 voxels)" in page.warnings
    assert "<img src=x onerror=alert(1)> g/mL" in text  # shown as text, not markup
    data["inference"] = None
    data["input_warnings"] = None
    data["slices"][0]["qc_flags"] = None
    page = _read(report_html(data, "lge"))
    assert page.tables[2][1][-1] == "–"


def test_a_labelmap_report_without_segments_or_model():
    """Quantified from a labelmap: no model, no QC, no segments. The page has no bullseye, no QC column."""
    volume = _volume(_ring_labels(16.0, 56.0))
    page = _read(report_html(quantify(volume), "lab.nrrd", made_from="labelmap lab.nrrd"))
    assert page.svgs == 0 and len(page.tables) == 2
    assert "QC flags" not in page.tables[1][0] and "DICOM image" not in page.tables[1][0]
    header = " ".join(page.text).split("Segmentation")[1].split("Research")[0]
    assert "model:" not in header and f"scarnet {scarnet.__version__}" in header
    data = quantify(volume, rv_insertion_lps=_point_along_i(volume)).to_dict()
    assert _read(report_html(data, "lab.nrrd")).svgs == 1  # the dict form (as Slicer keeps a report) too


def test_command_line_html(tmp_path):
    ras, run = quantify_command(tmp_path)
    result = run("--html", "r.htm")
    assert result.returncode == 2 and "must end in .html" in result.stderr and not (tmp_path / "r.htm").exists()
    result = run("--rv-insertion", *ras, "--html", "r.html", "--report", "r.json")
    assert result.returncode == 0, result.stderr
    page = _read((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert page.svgs == 1 and "labelmap lab.nrrd" in " ".join(page.text)
    (tmp_path / "mine.html").write_text("the user's own page")
    result = run("--html", "mine.html", "--report", "again.json")
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "mine.html").read_text() == "the user's own page" and not (tmp_path / "again.json").exists()


@pytest.mark.parametrize("value, text", [(None, "–"), (1.234, "1.23")])
def test_missing_figures_show_a_dash(value, text):
    from scarnet.report_html import _number

    assert _number(value) == text


@pytest.mark.parametrize("value, amount, percent", [
    (None, "–", "–"), (0.0, "0.0", "0"), (0.03, "<0.1", "<1"), (0.05, "0.1", "<1"), (0.6, "0.6", "1"),
    (13.449, "13.4", "13"), (99.6, "99.6", ">99"), (100.0, "100.0", "100"), (150.137, "150.1", "150"),
    # QA helper-123: 0.5 % (1 voxel of scar in 200) read "0" (format rounds half to even), a speck as none.
    (0.5, "0.5", "<1"), (2.5, "2.5", "2"), (99.5, "99.5", ">99")])
def test_figures_are_rounded_for_a_reader_and_a_speck_is_not_none(value, amount, percent):
    from scarnet.bullseye import amount_text, whole_percent_text

    assert amount_text(value) == amount and whole_percent_text(value) == percent


def test_the_dicom_series_is_named_as_a_viewer_lists_it():
    from scarnet.report_html import series_name, series_text

    assert series_text(None) == "" and series_name("not a record") == ""
    assert series_text({"series_number": 7, "description": "LGE PSIR SAX", "series_instance_uid": "1.2"}) == \
        " (DICOM series #7 'LGE PSIR SAX')"
    assert series_name({"series_number": None, "description": "", "series_instance_uid": "1.2.3"}) == "UID 1.2.3 ''"


#: A name as a hostile or careless file system or DICOM header may give it: a terminal's escape sequences (window
#: title, clear screen, colour), a carriage return and a line feed that start a fake line or CSV row with a formula,
#: and a right-to-left override that turns the rest of a line around ("gnp.exe" shown as "exe.png").
HOSTILE_NAME = "pt\x1b]0;TITLE\x07\x1b[2J\x1b[31mRED\r=1+2\nFAKE: scar 0.0 g \u202egnp.exe"
#: What of it may not reach an output as it is (a line feed is looked for where lines are not the output's own).
ACTING = ("\x1b", "\x07", "\r", "\u202e")


def test_visible_writes_what_would_act_as_its_escape():
    from scarnet.text import visible

    assert visible(HOSTILE_NAME) == ("pt\\x1b]0;TITLE\\x07\\x1b[2J\\x1b[31mRED\\r=1+2\\nFAKE: scar 0.0 g "
                                     "\\u202egnp.exe")
    assert visible("Müller 张伟 שלום scan [left] <1>.nii.gz\u00a0") == "Müller 张伟 שלום scan [left] <1>.nii.gz\u00a0"
    assert visible("\x00\x7f\x85\u061c\u200e\u2066\u2069") == "\\x00\\x7f\\x85\\u061c\\u200e\\u2066\\u2069"


def test_a_name_cannot_act_in_the_page_the_picture_or_a_spreadsheet(tmp_path):
    """What a name holds is shown, never obeyed: no control or bidirectional override reaches the HTML page (where
    U+202E would reverse the provenance line after it), the SVG (which XML could not even parse), or a CSV cell (a
    carriage return would end the row and start the next cell with a formula)."""
    import csv
    import xml.dom.minidom

    from scarnet.batch import BatchRow, summary_csv
    from scarnet.bullseye import bullseye_svg

    report = _report()
    page = report_html(report, HOSTILE_NAME, made_from=f"labelmap {HOSTILE_NAME}")
    assert not any(character in page for character in ACTING)
    assert "Input: pt\\x1b]0;TITLE\\x07" in " ".join(_read(page).text) and "\\u202egnp.exe" in page
    picture = bullseye_svg(report, f"Scar per AHA segment (labelmap {HOSTILE_NAME})")
    assert not any(character in picture for character in ACTING)
    assert "\\x1b[31mRED" in xml.dom.minidom.parseString(picture).getElementsByTagName("text")[0].firstChild.data

    report.extra["input"] = HOSTILE_NAME
    report.extra["input_warnings"] = [f"{HOSTILE_NAME}: irregular slice spacing"]
    rows = list(csv.reader(report.to_csv().splitlines()))
    assert [row[1] for row in rows if row[:1] == ["warning"]][0] == (
        "pt\\x1b]0;TITLE\\x07\\x1b[2J\\x1b[31mRED\\r=1+2\\nFAKE: scar 0.0 g \\u202egnp.exe: irregular slice spacing")
    lines = list(csv.reader(summary_csv([BatchRow(f"\r={HOSTILE_NAME}", "ok", {"scar_percent": 1.5})]).splitlines()))
    assert len(lines) == 2  # the header and one exam: no row broken off
    cells = dict(zip(lines[0], lines[1]))
    assert cells["input"].startswith("\\r=pt\\x1b") and cells["scar_percent"] == "1.5"
    assert not any(character in cell for cell in lines[1] for character in (*ACTING, "\n"))


@pytest.mark.skipif(sys.platform == "win32", reason="Windows file names cannot hold control characters")
def test_the_terminal_shows_a_name_and_never_obeys_it(tmp_path):
    """A labelmap whose file name holds escape sequences, a line feed and a bidirectional override: the table's
    title, the warnings and an error name it with those written as escapes, so nothing sets the window's title,
    clears the screen or prints a fake line."""
    ras, run = quantify_command(tmp_path)
    hostile = "lab\x1b]0;TITLE\x07\x1b[2J\nFAKE \u202egnp.nrrd"
    (tmp_path / "lab.nrrd").rename(tmp_path / hostile)

    def quantify(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "quantify", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300)

    done = quantify(hostile, "--rv-insertion", *ras, "--html", "r.html", "--bullseye", "b.svg")
    assert done.returncode == 0, done.stderr
    assert "lab\\x1b]0;TITLE\\x07\\x1b[2J\\nFAKE \\u202egnp.nrrd" in done.stdout
    refused = quantify(hostile + ".missing", "--report", "r.json")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "\\x1b[2J\\nFAKE" in refused.stderr
    for output in (done.stdout, done.stderr, refused.stdout, refused.stderr, (tmp_path / "r.html").read_text(),
                   (tmp_path / "b.svg").read_text()):
        assert not any(character in output for character in ACTING)
        assert not any(line.startswith("FAKE") for line in output.splitlines())


def test_the_page_says_whether_a_reader_reviewed_the_segmentation_and_where_the_scar_lies():
    """A cardiologist's review (helper-111): the page did not say that an automated segmentation was unreviewed, nor
    in which coronary territory the scar lies."""
    from scarnet.report_html import territory_text

    report = _report()
    data = report.to_dict()
    model_page = report_html({**data, "source": "ScarNet model"}, "lge.nii.gz")
    assert "Automated segmentation (ScarNet model), not reviewed by a reader" in model_page
    assert "ScarNet segmentation corrected by a reader." in report_html(
        {**data, "source": "segmentation", "edited": True}, "lge.nii.gz")
    labelmap = {key: value for key, value in data.items() if key != "inference"}  # scarnet quantify's
    assert "Segmentation drawn by a reader." in report_html({**labelmap, "segmented_by": "reader"}, "lge.nii.gz")
    assert "Segmentation from a labelmap file" in report_html(labelmap, "lge.nii.gz")
    segments = [{"segment": n, "scar_extent_score": 0} for n in range(1, 18)]
    assert territory_text(segments) == ""
    for n, grade in ((1, 2), (7, 1), (5, 3), (17, None)):
        segments[n - 1]["scar_extent_score"] = grade
    assert territory_text(segments) == (
        "Segments with scar by coronary territory (the AHA's standard assignment; the dominant artery may supply the "
        "inferior segments): LAD 2 of 6 (1, 7); RCA 0 of 5; LCx 1 of 5 (5).")
    assert "by coronary territory" in model_page or not any(
        (s.get("scar_extent_score") or 0) >= 1 for s in data.get("segments") or [])


def test_a_corrected_report_shows_the_models_figures_before_correction_and_the_change():
    """A CMR cardiologist's review (helper-129): a corrected report did not say what the model measured before the
    correction, so neither a reader nor an auditor saw how much the correction changed."""
    from scarnet.report_html import before_correction_text

    data = _report().to_dict()
    total = data["total"]
    before = {"myocardium_g": total["myocardium_g"] - 3.04, "scar_g": total["scar_g"] + 1.23,
              "scar_percent": total["scar_percent"] + 0.8, "mvo_ml": 0.0, "scar_ml": 1.0, "myocardium_ml": 2.0}
    corrected = {**data, "source": "segmentation", "edited": True, "model_run": {"total": before}}
    line = (f"Before correction (the model's segmentation): scar {before['scar_g']:.1f} g, "
            f"{before['scar_percent']:.0f} % of the LV myocardial mass; LV myocardium {before['myocardium_g']:.1f} g. "
            "Change with the correction: scar \u22121.2 g (\u22121 percentage points), LV myocardium +3.0 g.")
    assert before_correction_text(corrected) == line
    page = _read(report_html(corrected, "lge.nii.gz"))
    assert line in "".join(page.text)
    # scarnet quantify --segmented-by model-and-reader --model-report: the same line.
    labelmap = {key: value for key, value in data.items() if key != "inference"}
    from_cli = {**labelmap, "segmented_by": "model-and-reader", "model_run": {"weights": {"sha256": "ab" * 32},
                                                                              "total": before}}
    assert before_correction_text(from_cli) == line
    # A change under a whole percentage point keeps its decimal; none reads 0.
    small = {**corrected, "model_run": {"total": {**before, "scar_percent": total["scar_percent"] - 0.3,
                                                  "scar_g": total["scar_g"], "myocardium_g": total["myocardium_g"]}}}
    assert before_correction_text(small).endswith("scar 0.0 g (+0.3 percentage points), LV myocardium 0.0 g.")
    # Nothing for a report without the model's totals (older ones), the model's own, a reader's own, odd values.
    for report in ({**data, "source": "segmentation", "edited": True}, {**data, "model_run": {"total": before}},
                   {**labelmap, "segmented_by": "reader", "model_run": {"total": before}},
                   {**corrected, "model_run": {"total": {"scar_g": "19.5", "myocardium_g": 150.0}}},
                   {**corrected, "model_run": "model.json"}, {**corrected, "model_run": {"total": None}}):
        assert before_correction_text(report) is None
        assert "Before correction" not in report_html(report, "lge.nii.gz")


def _engine_warnings(tmp_path) -> list[str]:
    """Warnings as the engine words them: a NIfTI whose sform and pixdim disagree (EMIDEC's) and its re-save at
    1×1×1 mm, read by scarnet.io; the labelmap's and the AHA segments' from scarnet.quantify; the model's."""
    import nibabel
    import numpy as np

    from scarnet.io import read_volume
    from scarnet.qc import UNLIKE_TRAINING_WARNING
    from scarnet.quantify import (
        EMPTY_LABELMAP_WARNING,
        MIRROR_WARNING,
        all_scar_slices_warning,
        gap_slices_warning,
        missing_levels_warning,
    )

    data = write_emidec_like_nifti(tmp_path / "emidec_like.nii.gz")
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.0, 1.0, 1.0, 1.0])), str(tmp_path / "resaved.nii.gz"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_volume(tmp_path / "emidec_like.nii.gz")
        read_volume(tmp_path / "resaved.nii.gz")
    read = [str(w.message) for w in caught]
    assert len(read) == 2 and "its sform makes voxels" in read[0] and "its voxels are 1×1×1 mm" in read[1]
    return [*read, MIRROR_WARNING, EMPTY_LABELMAP_WARNING, missing_levels_warning(["basal", "basal", None]),
            gap_slices_warning(np.array([True, False, True])),
            all_scar_slices_warning(np.array([0, 5]), np.array([3, 0])),
            f"the model is unsure of the heart in 7 of the 8 slices where it finds the LV (flagged low_confidence): "
            f"{UNLIKE_TRAINING_WARNING} (sequence, vendor, grey levels, artifacts); read every slice"]


def test_warnings_get_one_short_line_each_with_the_full_text_folded_under_it(tmp_path):
    """A cardiologist's review (helper-112): the page's top repeated the engine's warnings whole (the sform one is 60
    words). Each now reads as one short line, without the file's path the input line already gives; its full text
    is folded under it (a <details>, closed in print), and the JSON keeps it."""
    from scarnet.report_html import HEADLINE_WORDS, warning_headline

    messages = _engine_warnings(tmp_path)
    path = str(tmp_path / "emidec_like.nii.gz")
    headlines = [warning_headline(message, (path,)) for message in messages]
    for message, headline in zip(messages, headlines):
        assert len(headline) <= 120 and len(headline) < len(message), (headline, message)
        assert str(tmp_path) not in headline and headline[0].isupper()
    assert headlines[0] == ("Voxel size uncertain: read as 1.41×1.41×13 mm (pixdim), the sform says 1×1×1 mm; every "
                            "volume and mass depends on it")
    assert headlines[1].startswith("Voxel size 1×1×1 mm, often a placeholder")  # (a path not named: still taken off)
    assert headlines[2].startswith("No short-axis orientation: septum and lateral wall may be exchanged")
    assert headlines[4] == "Too few slices for three levels: the mid and apical segments are empty, not measured"
    assert headlines[5].startswith("Slice 1: no myocardium between slices")
    assert headlines[6].startswith("Slice 0: scar but no healthy myocardium")
    assert headlines[7] == "Model unsure in 7 of 8 slices: the exam may differ from the training data; read every slice"
    # One the page does not know: its first clause, at most HEADLINE_WORDS words.
    long = " ".join(f"word{i}" for i in range(40))
    assert warning_headline(f"/data/x.nii.gz: {long}") == "Word0 " + " ".join(
        f"word{i}" for i in range(1, HEADLINE_WORDS)) + " …"
    refused = "no AHA segments: the RV insertion point lies 40 mm beyond the slices with LV myocardium: is it in RAS?"
    assert warning_headline(refused) == ("No AHA segments: the RV insertion point lies 40 mm beyond the slices with "
                                         "LV myocardium")
    # On the page: the short line, the full text under it, escaped.
    data = _report().to_dict()
    data["input"] = path
    data["input_warnings"] = messages[:2] + ["<script>alert(1)</script> at the end of a long warning, which goes on "
                                             "and on; and on"]
    page = _read(report_html(data, "emidec_like.nii.gz"))
    assert page.warnings[:2] == headlines[:2] and page.full_warnings[:2] == messages[:2]
    assert page.warnings[2] == "<script>alert(1)</script> at the end of a long warning" and \
        "<script>" not in report_html(data, "emidec_like.nii.gz")
    assert page.warnings[-1] == "The model is unsure of <the heart>"  # short already: not folded


def _flagged(report, slices: set[int]):
    for s in report.slices:
        s.qc_flags = ["low_confidence"] if s.index in slices else []
    return report


def test_segments_with_scar_only_on_flagged_slices_are_marked_in_the_table_and_the_bullseye():
    """A cardiologist's review (helper-112): which segments' scar lies only on slices with QC flags, so that those are
    read first. The ring's scar (16-56°) lies in segments 2 (basal, slices 0-1), 8 (mid, 2-4) and 14 (apical, 5-6)."""
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import QC_OUTLINE_COLOUR, bullseye_svg, qc_only_segments

    report = _report()
    assert [s.segment for s in report.segments if s.scar_slices] == [2, 8, 14]
    assert qc_only_segments(_flagged(report, set()).to_dict()) == []
    # The apical slices flagged: segment 14's scar is all there; segment 8's mid scar is not, though slice 4 is.
    data = _flagged(report, {4, 5, 6}).to_dict()
    assert qc_only_segments(data) == [14]
    page = _read(report_html(data, "lge"))
    segments = page.tables[1]
    assert segments[0][-1] == "Scar only on QC-flagged"
    assert {row[0]: row[-1] for row in segments[1:] if row[-1]} == {"14 apical septal": "slices 5–6"}
    root = ET.fromstring(bullseye_svg(data))
    outlined = [e for e in root.iter() if e.get("data-qc-segment")]
    assert [e.get("data-qc-segment") for e in outlined] == ["14"] and outlined[0].get("stroke") == QC_OUTLINE_COLOUR
    assert outlined[0].get("fill") == "none"  # the grade's colour still shows
    caption = next(t for t in root.iter() if t.get("data-caption") == "qc-segments")
    assert caption.text == "Dashed: scar only on QC-flagged slices (segment 14): read them first"
    # Half of a segment's scar slices flagged: not marked. A report stored before scar_slices were recorded: its
    # segments' slices with scar stand in for them.
    assert qc_only_segments(_flagged(report, {5}).to_dict()) == []
    older = _flagged(report, {0, 1, 5, 6}).to_dict()
    for s in older["segments"]:
        del s["scar_slices"]
    assert qc_only_segments(older) == [2, 14]
    # Without a flag, no column and no outline.
    clean = _flagged(report, set()).to_dict()
    assert "Scar only on QC-flagged" not in _read(report_html(clean, "lge")).tables[1][0]
    assert "data-qc-segment" not in bullseye_svg(clean)


def test_the_about_the_model_box_gives_the_model_cards_figures():
    """A cardiologist's review (helper-112): what the model was trained on and how accurate it was measured to be, from
    its card (never typed in apart from it): each figure of the box is read back from the card's ScarNet row and text,
    and the weights' sha256 from their sidecar. Other weights: not their figures; a reader's own labelmap: no box."""
    from importlib import resources

    from scarnet.report_html import BUNDLED_MODEL_CARD

    weights = resources.files("scarnet") / "weights"
    card = (weights / "MODEL_CARD.md").read_text(encoding="utf-8")
    sidecar = json.loads((weights / "scarnet_litemedsam.json").read_text(encoding="utf-8"))
    c = BUNDLED_MODEL_CARD
    assert c["sha256"] == sidecar["sha256"]
    low, high = c["scar_percent_loa"]
    assert (f"| **ScarNet (this model)** | **{c['myocardium_dice']} ± " in card and f"| **{c['scar_dice']} ± " in card
            and f"| {c['mvo_dice']} ± " in card
            and f"| {c['normal_with_scar']} (mean {c['normal_scar_ml']} mL) |" in card)
    # The scar % limits over the infarct exams (those over all 20 are narrowed by the normal hearts).
    assert (f"over the {c['val_infarct']} infarct cases alone ScarNet's are {c['scar_percent_bias']} [{low}, {high}]"
            in " ".join(card.split()))
    row = next(line for line in card.splitlines() if line.startswith("| **ScarNet (this model)**"))
    assert row.index(c["myocardium_dice"]) < row.index(c["scar_dice"]) < row.index(c["mvo_dice"])
    assert f"the {c['train_exams']} cases of `splits.json` \"train\"" in card
    assert f"{c['val_exams']} cases of the EMIDEC \"val\" split ({c['val_infarct']} infarct, {c['val_normal']} " \
           "normal)" in card
    assert c["centre"] in card and "**not** reached" in card
    assert f"on average {c['myocardium_larger_percent']} % larger than the experts'" in " ".join(card.split())
    # Not trained on, but the checkpoint was chosen on them: the box says so.
    flat = " ".join(card.split())
    assert "No validation slice was used for training" in flat and "Dice on the EMIDEC \"val\" split" in flat
    # MVO where the expert drew none (the HTML's MVO caution), as the card states it and the published evaluation
    # measured it (docs/evaluation_emidec_val.json, amended with ScarNet's per-case MVO volumes).
    assert (f"{c['mvo_in_infarcts_without']} of the {c['infarcts_without_mvo']} infarcts without MVO" in flat
            and f"0.5 mL or more in {c['mvo_in_infarcts_without_min']} of the {c['infarcts_without_mvo']}" in flat)
    from conftest import REPO_ROOT

    evaluation = json.loads((REPO_ROOT / "docs" / "evaluation_emidec_val.json").read_text(encoding="utf-8"))
    measured = evaluation["methods"]["scarnet"]["summary"]
    assert evaluation["weights"]["scarnet"]["sha256"] == c["sha256"] and measured["mvo_presence_min_ml"] == 0.5
    assert (str(measured["no_mvo_infarct_cases_with_mvo"]), str(measured["no_mvo_infarct_cases"]),
            str(measured["no_mvo_infarct_cases_with_mvo_min"])) == (
        c["mvo_in_infarcts_without"], c["infarcts_without_mvo"], c["mvo_in_infarcts_without_min"])

    data = _report().to_dict()
    data["inference"]["weights"] = {"file": "scarnet_litemedsam.safetensors", "sha256": c["sha256"], "bundled": True}
    text = " ".join(_read(report_html(data, "lge")).text)
    about = text[text.index("About the model"):text.index("Review")]
    for figure in (c["train_exams"], c["centre"], c["myocardium_dice"], c["scar_dice"], c["mvo_dice"], low, high,
                   c["scar_percent_bias"], c["normal_with_scar"], c["normal_scar_ml"],
                   f"{c['myocardium_larger_percent']} % larger than the experts'", "research only",
                   "non-commercial", "checkpoint was chosen on them"):
        assert figure in about, figure
    other = " ".join(_read(report_html(_report().to_dict(), "lge")).text)  # weights w.safetensors
    about = other[other.index("About the model"):other.index("Review")]
    assert "not the bundled ones" in about and c["scar_dice"] not in about and "research only" in about
    labelmap = {key: value for key, value in data.items() if key != "inference"}
    assert "About the model" not in " ".join(_read(report_html(labelmap, "lab.nrrd", made_from="labelmap")).text)


def test_the_conventions_are_said_in_a_readers_words_and_the_rounding_once():
    """A cardiologist's review (helper-112): what scar %, transmural, level and segments mean, one sentence each;
    the technical definitions folded for analysts (and out of the printout); the rounding stated once."""
    from scarnet.bullseye import ROUNDING
    from scarnet.report_html import plain_conventions

    data = _report().to_dict()
    plain = dict(plain_conventions(data))
    for term in ("Scar %", "Transmural", "Level", "Segments"):
        assert plain[term].count(". ") - plain[term].count("et al. ") == 0 and plain[term].endswith(".")
    page = report_html(data, "lge")
    assert page.count(ROUNDING) == 1 and "whole numbers" in ROUNDING
    means = page.index("<h2>What the figures mean</h2>")
    folded = page.index('<details class="analysts"><summary>Technical definitions (for analysts)</summary>')
    assert means < folded < page.index(data["conventions"]["transmurality"][:40]) and "</details></body>" in page
    assert "details.analysts:not([open]) { display: none; }" in page  # printed folded: left out


def test_a_small_automated_scar_total_and_the_models_mvo_carry_a_caution_a_reader_does_not_need(tmp_path):
    """A cardiologist's review (helper-125): a normal heart's false scar (EMIDEC N006: 1.1 mL, 5 segments graded, one
    "85 % (76–100)" transmural) led the page as "Scar (LGE): 1.2 g" with the card's caution only in the box at its
    end; the model's MVO (the least accurate label; drawn in infarcts without MVO) led it as a figure. Both now carry
    a caution under the lead, while nobody has reviewed the contours; a reader's segmentation carries none."""
    from scarnet.report_html import BUNDLED_MODEL_CARD, SMALL_SCAR_ML, caution_lines

    data = _report().to_dict()
    total = data["total"]
    assert total["scar_ml"] >= SMALL_SCAR_ML and not total["mvo_ml"] and caution_lines(data) == []
    small = {**data, "total": {**total, "scar_ml": 1.1, "mvo_ml": 0.0}}
    [line] = caution_lines(small)
    assert line.startswith("Small scar total (under 3 mL)") and BUNDLED_MODEL_CARD["normal_with_scar"] in line
    assert BUNDLED_MODEL_CARD["normal_scar_ml"] in line and "small infarct" in line
    with_mvo = {**data, "total": {**total, "mvo_ml": 0.8}}
    [line] = caution_lines(with_mvo)
    assert line.startswith("MVO as the model draws it is indicative only") and BUNDLED_MODEL_CARD["mvo_dice"] in line
    card = BUNDLED_MODEL_CARD  # how often it draws MVO where the expert drew none, measured since
    assert (f"MVO drawn in {card['mvo_in_infarcts_without']} of the {card['infarcts_without_mvo']} validation "
            f"infarcts without any, 0.5 mL or more in {card['mvo_in_infarcts_without_min']})" in line)
    assert "not been measured" not in line
    both = {**data, "total": {**total, "scar_ml": 2.0, "mvo_ml": 0.1}}
    assert len(caution_lines(both)) == 2
    text = " ".join(_read(report_html(both, "lge")).text)
    lead, table = text.index("Scar (LGE):"), text.index("Mass g")
    assert lead < text.index("Small scar total") < text.index("MVO as the model draws it") < table
    # Reviewed, corrected or drawn by a reader: no caution (Slicer's Update report after edits, scarnet quantify).
    labelmap = {key: value for key, value in both.items() if key != "inference"}
    for reviewed in ({**both, "source": "segmentation", "edited": True}, {**labelmap, "segmented_by": "reader"},
                     {**labelmap, "segmented_by": "model-and-reader"}, labelmap):
        assert caution_lines(reviewed) == [] and "Small scar total" not in report_html(reviewed, "lge")
    # Slicer's Update report without edits, scarnet quantify --segmented-by model: still the model's contours.
    for unreviewed in ({**labelmap, "source": "segmentation"}, {**labelmap, "segmented_by": "model"}):
        assert len(caution_lines(unreviewed)) == 2


def test_a_warning_read_alike_from_the_image_and_the_labelmap_is_shown_once(tmp_path):
    """A cardiologist's review (helper-125): scarnet quantify on EMIDEC's files showed "Voxel size uncertain" twice,
    once for the image and once for the labelmap; now once, with both full texts folded under it."""
    messages = _engine_warnings(tmp_path)
    data = _report().to_dict()
    data["input_warnings"] = [messages[0], messages[0].replace("emidec_like", "emidec_like_label")]
    page = _read(report_html(data, "emidec_like.nii.gz"))
    voxel = [w for w in page.warnings if w.startswith("Voxel size uncertain")]
    assert len(voxel) == 1 and page.full_warnings[:2] == data["input_warnings"]


def test_the_pages_words_are_a_readers_not_the_algorithms():
    """A cardiologist's review (helper-125): "Rays > 50 % transmural" named the algorithm, not the anatomy; the
    rounding spoke of "run-to-run differences" of a model that gives the same result every run."""
    from scarnet.report_html import plain_conventions

    data = _report().to_dict()
    page = _read(report_html(data, "lge"))
    segments, slices = page.tables[1], page.tables[2]
    assert "Circumference > 50 % transmural" in segments[0] and "Circumference > 50 % transmural" in slices[0]
    assert not any("Rays" in header for header in segments[0] + slices[0])
    rounding = dict(plain_conventions(data))["Rounding"]
    assert "run-to-run" not in rounding and "uncertainty" in rounding


def _ring_with_scar_wedges(wedges: tuple[tuple[int, float, float], ...],
                           erased: tuple[tuple[int, float, float], ...] = ()):
    """A report of rings (0.5 mm pixels, 12 slices 8 mm apart, wall 9 mm) with scar through the whole wall in narrow
    wedges, each (slice, centre angle, width, degrees from the grid's +i axis towards +j): the specks and small patches
    of a model's false scar in a normal heart, as a model run's report (its segmentation not reviewed). ``erased``:
    wedges of wall erased (background), as a ring left open."""
    import numpy as np
    from test_aha import DIRECTION, ORIGIN

    from scarnet.volume import Volume

    spacing, shape, centre_rc = (0.5, 0.5, 8.0), (12, 140, 140), (70.0, 70.0)
    rows, cols = np.mgrid[:shape[1], :shape[2]]
    d_row, d_col = (rows - centre_rc[0]) * spacing[1], (cols - centre_rc[1]) * spacing[0]
    radius, angle = np.hypot(d_row, d_col), np.degrees(np.arctan2(d_row, d_col)) % 360
    labels = np.zeros(shape, np.uint8)
    for k in range(shape[0]):
        cavity_mm = 22.0 - k
        labels[k][radius < cavity_mm] = 1
        labels[k][(radius >= cavity_mm) & (radius < cavity_mm + 9.0)] = 2
    for k, centre_deg, width_deg in erased:
        labels[k][(labels[k] == 2) & (np.abs((angle - centre_deg + 180) % 360 - 180) < width_deg / 2)] = 0
    for k, centre_deg, width_deg in wedges:
        labels[k][(labels[k] == 2) & (np.abs(angle - centre_deg) < width_deg / 2)] = 3
    volume = Volume(labels, spacing, ORIGIN, DIRECTION)
    lv_centre = volume.index_to_physical(np.array([centre_rc[1], centre_rc[0], 6]))
    report = quantify(volume, rv_insertion_lps=lv_centre + 30.0 * volume.direction[:, 0])
    report.extra["inference"] = {"scarnet_version": "9.9", "device": "cpu", "tta": False,
                                 "weights": {"file": "w.safetensors", "sha256": "ab" * 32, "bundled": False}}
    return report


def test_an_unreviewed_small_scar_is_not_placed_in_coronary_territories():
    """A cardiologist's review (helper-131): on a page nobody had reviewed, a normal heart's false scar (EMIDEC N006:
    1.1 mL over 5 segments) read "Segments with scar by coronary territory …: LAD 3 of 6 (1, 2, 13); RCA 2 of 5": an
    infarct in two named territories. Unreviewed and under the small-scar caution's threshold, the line is left out;
    unreviewed and larger, it says the scar is the model's, unreviewed; reviewed, it is as it was."""
    from scarnet.report_html import SMALL_SCAR_ML, territory_text

    small = _ring_with_scar_wedges(((1, 200.0, 8.0), (6, 100.0, 8.0), (9, 300.0, 8.0))).to_dict()
    graded = [s["segment"] for s in small["segments"] if (s["scar_extent_score"] or 0) >= 1]
    assert len(graded) == 3 and 0 < small["total"]["scar_ml"] < SMALL_SCAR_ML
    model_page = report_html(small, "lge")
    assert "Small scar total" in model_page and "coronary territory" not in model_page
    assert territory_text(small["segments"], unreviewed=True, scar_total_ml=small["total"]["scar_ml"]) == ""
    # Slicer's Update report without edits measures the model's contours too.
    labelmap = {key: value for key, value in small.items() if key != "inference"}
    assert "coronary territory" not in report_html({**labelmap, "source": "segmentation"}, "lge")
    # Reviewed: the same small scar is placed, as a reader's finding.
    plain = "Segments with scar by coronary territory (the AHA's standard assignment;"
    for reviewed in ({**small, "source": "segmentation", "edited": True}, {**labelmap, "segmented_by": "reader"}):
        assert plain in " ".join(_read(report_html(reviewed, "lge")).text)
    # Unreviewed with a larger scar (the ring's, through the wall at 16-56°): placed, said to be the model's.
    large = _report().to_dict()
    assert large["total"]["scar_ml"] >= SMALL_SCAR_ML
    page = " ".join(_read(report_html(large, "lge")).text)
    assert ("Segments with scar by coronary territory, as the model draws it, not reviewed by a reader (the AHA's "
            "standard assignment; the dominant artery may supply the inferior segments): LAD") in page
    assert plain not in page


def test_a_speck_of_scar_does_not_read_as_a_transmural_segment(tmp_path):
    """A cardiologist's review (helper-131): a speck of scar through the wall (under 1 % of its segment, graded 0)
    averaged 100 % over its rays with scar, and the table read "100 % (76–100)": a transmural, non-viable segment.
    The page now shows no mean for a segment graded 0 with scar (a dash, explained under the table); the CSV and the
    JSON keep the figure for analysts."""
    import csv
    import io

    from scarnet.report_html import SPECK_TRANSMURALITY, segment_transmurality_text

    report = _ring_with_scar_wedges(((1, 200.0, 2.0),))
    [speck] = [s for s in report.segments if s.scar_ml > 0]
    assert speck.scar_extent_score == 0 and speck.scar_percent < 1
    assert transmurality_band(speck.scar_transmurality_mean_percent) == 4  # what the page used to show
    page = _read(report_html(report, "lge"))
    row = next(r for r in page.tables[1][1:] if r[0].startswith(f"{speck.segment} "))
    assert row[4:7] == [percent_text(speck.scar_percent), "0", SPECK_TRANSMURALITY]
    text = " ".join(page.text)
    assert f"{SPECK_TRANSMURALITY}: a speck of scar, under 1 % of the segment (grade 0)" in text
    assert "not how much of the segment it takes" in text
    # The CSV keeps the mean as measured.
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    header = next(r for r in rows if r[:2] == ["segment", "name"])
    csv_row = next(r for r in rows[rows.index(header) + 1:] if r[0] == str(speck.segment))
    assert float(csv_row[header.index("scar_transmurality_mean_percent")]) == pytest.approx(
        speck.scar_transmurality_mean_percent, abs=0.01)
    # A segment graded 1 or more keeps its mean and band; one without scar "0 %"; without rays "–"; and the
    # explanation of the dash appears only where a segment has it.
    graded = {"scar_ml": 0.4, "scar_extent_score": 1, "scar_transmurality_mean_percent": 85.3,
              "transmural_over_50_percent": 34.0}
    slices = report.to_dict()["slices"]
    assert segment_transmurality_text(graded, slices) == "85 % (76–100)"
    assert segment_transmurality_text({**graded, "scar_ml": 0.0, "scar_extent_score": 0}, slices) == "0 %"
    assert segment_transmurality_text({**graded, "transmural_over_50_percent": None}, slices) == "–"
    assert "a speck of scar" not in report_html(_report(), "lge")


def test_scar_where_transmurality_is_not_measured_reads_not_measured_not_zero():
    """A segment graded 1 or more whose scar lies only on a slice where transmurality is not measured (fewer than half
    of its rays cross the wall: a ring left open) has rays on its other slices, none meeting scar: the table read "0 %",
    no depth at all, beside its scar, in its transmurality and in its circumference > 50 % transmural ("no transmural
    scar", which was not measured). Both now read "–", explained once under the table; a segment whose scar was
    measured but missed by every ray keeps "0 %" in both. The CSV and JSON keep the raw figures (0 of those rays)."""
    import csv
    import io

    from scarnet.quantify import SEGMENT_CSV_COLUMNS
    from scarnet.report_html import scar_depth_not_measured, scar_not_measured, segment_transmurality_text

    # Slice 5 (mid) keeps 140° of its wall, with scar through it; its neighbours are whole rings without scar.
    with pytest.warns(UserWarning, match="myocardial ring broken"):
        report = _ring_with_scar_wedges(((5, 0.0, 60.0),), erased=((5, 190.0, 220.0),))
    data = report.to_dict()
    assert data["slices"][5]["transmural_over_50_percent"] is None  # not measured
    assert all(s["transmural_over_50_percent"] is not None for k, s in enumerate(data["slices"]) if k != 5)
    unmeasured = [s for s in data["segments"] if s["scar_ml"] > 0]
    assert unmeasured and all(s["scar_slices"] == [5] and s["scar_extent_score"] >= 1 for s in unmeasured)
    assert all(s["scar_transmurality_mean_percent"] is None and s["transmural_over_50_percent"] == 0.0
               for s in unmeasured)  # rays measured on the segment's other slices, none meeting scar
    page = _read(report_html(report, "lge"))
    header = page.tables[1][0]
    assert header[5:8] == ["Grade 0–4", "Transmurality, mean (band)", "Circumference > 50 % transmural"]
    rows = {r[0].split()[0]: r for r in page.tables[1][1:]}
    for s in unmeasured:
        assert rows[str(s["segment"])][5:8] == [str(s["scar_extent_score"]), "–", "–"], rows[str(s["segment"])]
        assert scar_not_measured(s, data["slices"]) and scar_depth_not_measured(s, data["slices"])
    text = " ".join(page.text)
    assert text.count("beside scar") == 1  # said once, for both columns
    assert ("In both columns, \"–\" beside scar: the segment's scar lies only on slices where transmurality is not "
            "measured") in text
    # The per-slice table's column: "–" on the slice not measured, a figure on the others.
    slice_header, *slice_rows = page.tables[2]
    over_50 = slice_header.index("Circumference > 50 % transmural")
    by_slice = {int(r[0]): r[over_50] for r in slice_rows}
    assert by_slice[5] == "–" and all(by_slice[k] == "0 %" for k in by_slice if k != 5), by_slice
    # The CSV keeps the raw figure of the segment's measured rays (0, not empty), as the JSON does.
    lines = report.to_csv().splitlines()
    start = lines.index(",".join(SEGMENT_CSV_COLUMNS))
    segment_rows = {int(r[0]): dict(zip(SEGMENT_CSV_COLUMNS, r)) for r in csv.reader(io.StringIO(
        "\n".join(lines[start + 1:])))}
    for s in unmeasured:
        assert segment_rows[s["segment"]]["transmural_over_50_percent"] == "0"
        assert segment_rows[s["segment"]]["scar_transmurality_mean_percent"] == ""
    # Measured, and no ray meets the scar (a report stored before scar_slices: the segment's slices with scar).
    measured = [{**s, "transmural_over_50_percent": 0.0} if s["index"] == 5 else s for s in data["slices"]]
    older = {k: v for k, v in unmeasured[0].items() if k != "scar_slices"}
    assert segment_transmurality_text(unmeasured[0], measured) == "0 %"
    assert segment_transmurality_text(older, measured) == "0 %"
    assert segment_transmurality_text(older, data["slices"]) == "–"
    assert not scar_depth_not_measured(unmeasured[0], measured) and not scar_depth_not_measured(older, measured)
    assert scar_depth_not_measured(older, data["slices"])
    # A speck graded 0 keeps the transmurality column's "–*" and its figure in the other.
    assert not scar_depth_not_measured({**unmeasured[0], "scar_extent_score": 0}, data["slices"])
    # On the page, measured (slice 5's rays measured, none meeting scar): "0 %" in both columns, and no word of "–".
    measured_page = _read(report_html({**data, "slices": measured}, "lge"))
    measured_rows = {r[0].split()[0]: r for r in measured_page.tables[1][1:]}
    for s in unmeasured:
        assert measured_rows[str(s["segment"])][6:8] == ["0 %", "0 %"], measured_rows[str(s["segment"])]
    assert "beside scar" not in " ".join(measured_page.text)
    # Segments without scar keep "0 %", and a page without such a segment has no word of it.
    assert all(rows[str(s["segment"])][6:8] == ["0 %", "0 %"] for s in data["segments"]
               if not s["scar_ml"] and s["transmural_over_50_percent"] is not None)
    assert "beside scar" not in report_html(_report(), "lge")


def test_the_bullseye_on_the_page_does_not_repeat_what_the_text_beside_it_says():
    """A cardiologist's review (helper-131): under the page's bullseye its captions repeated the septum, the segment
    summary, how the angles were found and the apex not imaged, all printed beside it, the scar on QC-flagged slices
    printed under the totals, and the intended use printed at the top. On the page each is said once, in the text;
    the picture keeps its key and its cautions. The bullseye file on its own (--bullseye, Slicer) keeps them all."""
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import APEX_NOT_IMAGED, CAPTION_NAMES, bullseye_svg, septum_text, summary_text
    from scarnet.quantify import INTENDED_USE
    from scarnet.report_html import SAID_BESIDE_THE_BULLSEYE

    data = _flagged(_report(), {4, 5, 6}).to_dict()  # the apex not imaged; scar on flagged slices, segment 14 only
    page = report_html(data, "lge")
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    on_page = re.findall(r'data-caption="([^"]+)"', svg)
    alone = ET.fromstring(bullseye_svg(data))
    standalone = [t.get("data-caption") for t in alone.iter() if t.get("data-caption")]
    assert standalone == ["septum", "summary", "qc", "qc-segments", "apex", "intended-use"]
    assert set(SAID_BESIDE_THE_BULLSEYE) <= set(CAPTION_NAMES)
    assert on_page == ["qc-segments"]  # the key of the dashed outline
    # Each fact once on the page (it was twice: in the picture and in the text).
    for fact in (septum_text(data["septal_span_deg"]), summary_text(data["segment_summary"]), APEX_NOT_IMAGED,
                 INTENDED_USE.split(". ")[0], "mL of scar on slices with QC flags", "is on slices with QC flags"):
        assert page.count(_html_escape(fact)) == (0 if fact.startswith("mL") else 1), fact
    # The picture is only as tall as the captions it keeps.
    assert float(ET.fromstring(svg).get("height")) < float(alone.get("height"))
    with pytest.raises(ValueError, match="no bullseye caption named sideways"):
        bullseye_svg(data, leave_out=("sideways",))


@pytest.mark.parametrize("cut", [0, 3])
def test_apical_segments_of_a_stack_that_may_stop_short_of_the_apex_are_not_shown_as_scar_free(cut):
    """A stack without its apical slices: the page warns (one line, the full text folded under it), and the bullseye,
    on the page and alone, says under the picture that segments 13-17 may have scar beyond the last slice, where a
    white apical ring would read as none; the complete stack's has neither. A model report of an earlier version,
    with the warning among the run's, gets the same caption."""
    import xml.etree.ElementTree as ET

    from test_quantify import _phantom_without_apical_slices

    from scarnet.bullseye import STACK_SHORT_CAPTION, bullseye_svg
    from scarnet.phantom import anterior_rv_insertion_lps, make_phantom
    from scarnet.qc import APICAL_COVERAGE_WARNING_START

    labelmap, image, _ = _phantom_without_apical_slices(0, cut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = quantify(labelmap, image, rv_insertion_lps=anterior_rv_insertion_lps(make_phantom(0)))
    warned = bool(cut)
    data = report.to_dict()
    page = report_html(data, "lge")
    headlines = [w for w in _read(page).warnings if w.startswith("The stack may stop short of the apex")]
    assert len(headlines) == warned
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    for picture in (svg, bullseye_svg(data)):
        captions = {t.get("data-caption"): "".join(t.itertext()) for t in ET.fromstring(picture).iter()
                    if t.get("data-caption")}
        assert captions.get("stack-short") == (STACK_SHORT_CAPTION if warned else None)
    if warned:
        older = {**data, "labelmap_warnings": [m for m in data["labelmap_warnings"]
                                               if not m.startswith(APICAL_COVERAGE_WARNING_START)],
                 "inference": {"warnings": [m for m in data["labelmap_warnings"]
                                            if m.startswith(APICAL_COVERAGE_WARNING_START)]}}
        assert 'data-caption="stack-short"' in bullseye_svg(older)

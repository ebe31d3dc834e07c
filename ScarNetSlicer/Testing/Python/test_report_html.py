"""The printable HTML report (scarnet.report_html): what it shows, read back from the page, and the
command line's --html."""

from __future__ import annotations

import datetime
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from test_aha import _point_along_i, _ring_labels, _volume, quantify_command

import scarnet
from scarnet.bullseye import percent_text
from scarnet.quantify import quantify
from scarnet.report_html import report_html


class _Page(HTMLParser):
    """The page's tables (rows of cell text), its warnings, its SVG elements and its text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.warnings: list[str] = []
        self.svgs = 0
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self._in_warning = False

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "svg":
            self.svgs += 1
        elif tag == "div" and ("class", "warning") in attrs:
            self._in_warning = True
            self.warnings.append("")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append("".join(self._cell))
            self._cell = None
        elif tag == "div":
            self._in_warning = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._in_warning:
            self.warnings[-1] += data
        self.text.append(data)


def _read(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
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


def test_the_page_shows_the_report_figures():
    report = _report()
    page = _read(report_html(report, "lge <1>.nii.gz", generated=datetime.datetime(2026, 1, 2, 3, 4,
                                                                                   tzinfo=datetime.timezone.utc)))
    text = " ".join(page.text)
    assert "Input: lge <1>.nii.gz" in text and "2026-01-02 03:04 UTC" in text  # escaped, read back as given
    assert "model: weights w.safetensors, sha256 abababababab" in text
    assert f"scarnet {scarnet.__version__}" in text  # the report's own version (the model run's is in inference)
    assert "Research use only" in text
    assert page.warnings == ["the model is unsure of <the heart>"]
    totals, segments, slices = page.tables[0], page.tables[1], page.tables[2]
    t = report.total
    assert totals[1:7] == [
        ["LV myocardium", f"{t.myocardium_ml:.2f} mL", f"{t.myocardium_g:.1f} g"],
        ["Scar (MVO included)", f"{t.scar_ml:.2f} mL", f"{t.scar_g:.1f} g"],
        ["Scar % of LV myocardium", f"{t.scar_percent:.1f} %", ""],
        ["MVO", f"{t.mvo_ml:.2f} mL ({100 * t.mvo_ml / t.myocardium_ml:.1f} % of LV myocardium)", ""],
        ["LV blood pool (on these slices; not an LV volume)", f"{t.lv_blood_pool_ml:.2f} mL", ""],
        ["Slices with myocardium / with scar", f"{t.slices_with_myocardium} / {t.slices_with_scar}", ""]]
    # The scar on flagged slices, beside the total it is part of (a normal heart's false scar is often all there).
    flagged = [s for s in report.slices if s.qc_flags and s.scar_ml > 0]
    assert flagged and totals[7] == [
        "Scar on slices with QC flags",
        f"{sum(s.scar_ml for s in flagged):.2f} of the {t.scar_ml:.2f} mL of scar "
        f"({100 * sum(s.scar_ml for s in flagged) / t.scar_ml:.0f} %) is on slices with QC flags (slice"
        f"{'s' if len(flagged) > 1 else ''} {', '.join(str(s.index) for s in flagged)}): read them before reporting it",
        ""]
    # One row per segment, as the report has them; the bullseye drawn once, with its summary.
    # (An apex without slices is not imaged: dashes, not 0 mL measured.)
    # Slices as ranges (the phantom's thirds are runs of consecutive slices): "0–4", not "0,1,2,3,4".
    assert all(s.slices == list(range(s.slices[0], s.slices[-1] + 1)) for s in report.segments[:16])
    assert segments[1:] == [[f"{s.segment} {s.name}", f"{s.slices[0]}–{s.slices[-1]}" if s.slices else "–",
                             *([f"{s.myocardium_ml:.2f}", f"{s.scar_ml:.2f}"] if s.slices else ["–", "–"]),
                             percent_text(s.scar_percent),
                             "–" if s.scar_extent_score is None else str(s.scar_extent_score),
                             "–" if s.transmural_over_50_percent is None else f"{s.transmural_over_50_percent:.0f}",
                             f"{s.mvo_ml:.2f}" if s.slices else "–"] for s in report.segments]
    assert not report.segments[16].slices and "17 apex: not imaged (no slice beyond the LV cavity)" in text
    assert page.svgs == 1 and "Scar (≥1 %) in 3 of 16 segments" in text
    # One row per slice: DICOM image, level, volumes and the QC flags, with the flags explained.
    assert slices[0] == ["Slice", "Position mm", "DICOM image", "Level", "Myocardium mL", "Scar mL", "Scar %", "MVO mL",
                         "Transmural > 50 % (%)", "QC flags"]
    assert len(slices) == 1 + len(report.slices)
    for row, s in zip(slices[1:], report.slices):
        assert row == [str(s.index), f"{s.position_mm:.1f}", str(10 + s.index), s.level, f"{s.myocardium_ml:.2f}",
                       f"{s.scar_ml:.2f}", f"{s.scar_percent:.1f}", f"{s.mvo_ml:.2f}",
                       f"{s.transmural_over_50_percent:.0f}",
                       # the reader's words, then the CSV's code; not "ok" for none: the slice is unchecked
                       ", ".join(f"scar border uncertain ({flag})" for flag in s.qc_flags) or "–"]
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
    assert captions["qc"] == f"{on_flagged:.2f} of {total:.2f} mL of scar on slices with QC flags (0, 1): read them " \
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
    assert not [row for row in page.tables[0] if row[0] == "Scar on slices with QC flags"]


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

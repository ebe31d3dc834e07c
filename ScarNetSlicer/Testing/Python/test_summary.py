"""One summary.csv from reports already written (scarnet.summary, ``scarnet summarize``): the figures of corrected
reports in one table, the same table as ``scarnet batch`` writes; refusals in one line, nothing written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
from test_batch import _segmenter_factory, _summary
from test_batch import read_csv_rows as _read
from test_inference import ring_volume

import scarnet
from scarnet.batch import run_batch
from scarnet.errors import InputError
from scarnet.io import read_seg_nrrd, write_labelmap, write_volume
from scarnet.summary import SUMMARY_COLUMNS, made_from, summarize, summary_csv


def _summary_seen_from(folder: Path, out: Path) -> list[dict[str, str]]:
    """The batch's summary.csv as a summary written in ``folder`` has it: each report named from there."""
    return [{**line, "report": Path(os.path.relpath(out / line["report"], folder)).as_posix()}
            for line in _summary(out)]


def _batch(tmp_path: Path) -> Path:
    """Two exams segmented by a batch (a stand-in model): their reports, segmentations and summary.csv."""
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    write_volume(ring_volume(shape_kji=(6, 140, 150)), tmp_path / "p2.nrrd")
    rows = run_batch([tmp_path / "p1.nii.gz", tmp_path / "p2.nrrd"], tmp_path / "out", _segmenter_factory())
    assert [row.status for row in rows] == ["ok", "ok"]
    return tmp_path / "out"


def test_the_reports_of_a_batch_give_its_summary_again(tmp_path):
    """summarize is the batch's own table: from the batch's reports, every column of every line is the same."""
    out = _batch(tmp_path)
    lines = summarize([out], relative_to=out)  # a folder: its JSON reports, by name, summarised into it
    (tmp_path / "again.csv").write_text(summary_csv(lines), encoding="utf-8")
    again, batch = _read(tmp_path / "again.csv"), _summary(out)
    assert list(batch[0]) == list(SUMMARY_COLUMNS)
    assert again == batch
    assert {line["made_from"] for line in batch} == {"ScarNet model"}
    assert all(float(line["scar_ml"]) > 0 and line["model_s"] for line in batch)


def test_scarnet_summarize_marks_a_non_ascii_summary_as_utf8_for_excel(tmp_path):
    """QA helper-141: a summary naming an exam "Müller" starts with a UTF-8 byte-order mark (as Excel on Windows
    needs to read it as UTF-8) and reads back right; one of ASCII names has none."""
    from scarnet.cli import main

    write_volume(ring_volume(), tmp_path / "Müller.nii.gz")
    write_volume(ring_volume(), tmp_path / "p2.nii.gz")
    run_batch([tmp_path / "Müller.nii.gz"], tmp_path / "out", _segmenter_factory())
    run_batch([tmp_path / "p2.nii.gz"], tmp_path / "ascii", _segmenter_factory())
    assert main(["summarize", str(tmp_path / "out"), "--out", str(tmp_path / "all.csv"), "--quiet"]) == 0
    assert (tmp_path / "all.csv").read_bytes().startswith(b"\xef\xbb\xbfexam,")
    assert [line["exam"] for line in _read(tmp_path / "all.csv")] == ["Müller"]
    assert main(["summarize", str(tmp_path / "ascii"), "--out", str(tmp_path / "ascii.csv"), "--quiet"]) == 0
    assert (tmp_path / "ascii.csv").read_bytes().startswith(b"exam,")
    assert (tmp_path / "ascii.csv").read_bytes().isascii()


def test_corrected_reports_are_summarised_with_what_they_measured(tmp_path):
    """A labelmap corrected outside Slicer (scarnet quantify) and a report saved in Slicer after edits: their own
    figures, in the order given, each saying what it measured."""
    out = _batch(tmp_path)
    labels = read_seg_nrrd(out / "p1.seg.nrrd")
    corrected = labels.array.copy()
    corrected[corrected >= 3] = 2  # the reader erased the scar (and MVO)
    write_labelmap(labels.with_array(corrected), tmp_path / "p1_corrected.nii.gz")
    result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "p1_corrected.nii.gz", "--report",
                             "p1_corrected.json", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    slicer_report = json.loads((out / "p2_report.json").read_text())
    slicer_report.update(source="segmentation", edited=True)  # as the module's Update report saves it
    (tmp_path / "p2_slicer.json").write_text(json.dumps(slicer_report))

    result = subprocess.run([sys.executable, "-m", "scarnet", "summarize", "p1_corrected.json", "p2_slicer.json",
                             str(out / "p1_report.json"), "--out", "cohort.csv"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "3 reports (1 ScarNet model, 1 edited segmentation, 1 labelmap): cohort.csv" in result.stdout
    lines = _read(tmp_path / "cohort.csv")
    assert [line["made_from"] for line in lines] == ["labelmap", "edited segmentation", "ScarNet model"]
    # Where each report is, from the summary's folder: each patient's folder may name its report alike.
    assert [line["report"] for line in lines] == ["p1_corrected.json", "p2_slicer.json", f"{out.name}/p1_report.json"]
    assert lines[0]["input"] == "p1_corrected.nii.gz"  # quantify without --image: the labelmap is the exam
    assert lines[1]["input"] == slicer_report["input"]
    assert float(lines[0]["scar_ml"]) == 0 and float(lines[2]["scar_ml"]) > 0
    quantified = json.loads((tmp_path / "p1_corrected.json").read_text())
    assert float(lines[0]["myocardium_ml"]) == pytest.approx(quantified["total"]["myocardium_ml"], abs=1e-3)
    assert lines[0]["model_s"] == "" and lines[1]["model_s"] != ""


@pytest.mark.parametrize(("report", "expected"), [
    ({"inference": {"weights": {}}}, "ScarNet model"), ({"source": "ScarNet model"}, "ScarNet model"),
    ({"source": "segmentation", "edited": True, "inference": {}}, "edited segmentation"),
    ({"source": "segmentation", "edited": False}, "segmentation"), ({}, "labelmap")])
def test_made_from(report, expected):
    assert made_from(report) == expected


def test_what_is_not_a_report_is_refused_before_anything_is_read_into_a_summary(tmp_path):
    out = _batch(tmp_path)
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "empty").mkdir()
    good = json.loads((out / "p1_report.json").read_text())
    for name, change in (("inference", ["x"]), ("segment_summary", [1, 2]), ("input_warnings", [1, None]),
                         ("input_warnings", "abc"), ("total", {**good["total"], "scar_ml": "12"}),
                         ("septal_span_deg", {"a": 1}), ("segments", {"a": 1}), ("segments_left_out", "Scar"),
                         ("input", {"file": "p1.nii.gz"}), ("total", {}),
                         ("total", {k: v for k, v in good["total"].items() if k != "scar_ml"})):
        (tmp_path / f"bad_{name}.json").write_text(json.dumps({**good, name: change}))
        with pytest.raises(InputError, match=f"bad_{name}.json: not a JSON report of scarnet"):
            summarize([tmp_path / f"bad_{name}.json"])
    (tmp_path / "nan.json").write_text(json.dumps(good).replace('"scar_ml": ', '"scar_ml": NaN, "x": ', 1))
    huge = {**good, "total": {**good["total"], "scar_ml": "HUGE"}}  # 1e999: read as infinity, not refused as NaN
    (tmp_path / "huge.json").write_text(json.dumps(huge).replace('"HUGE"', "1e999"))
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    (tmp_path / "surrogate.json").write_text(json.dumps({**good, "input": "\ud800"}))
    # Re-saved by a Windows editor (a byte-order mark): still the report.
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + (out / "p1_report.json").read_bytes())
    assert (summarize([tmp_path / "bom.json"], relative_to=tmp_path)[0][1:]
            == summarize([out / "p1_report.json"])[0][1:-1] + ["bom.json"])
    for inputs, message in (([tmp_path / "list.json"], "list.json: not a JSON report of scarnet (no 'total'"),
                            ([tmp_path / "nan.json"], "nan.json: not a JSON report of scarnet (ValueError)"),
                            ([tmp_path / "deep.json"], "deep.json: not a JSON report of scarnet (RecursionError)"),
                            ([tmp_path / "huge.json"], "huge.json: not a JSON report of scarnet (scar_ml is not a"),
                            ([tmp_path / "surrogate.json"], "surrogate.json: not a JSON report of scarnet"),
                            ([tmp_path / "broken.json"], "broken.json: not a JSON report of scarnet (JSONDecodeError)"),
                            ([out / "summary.csv"], "summary.csv: not a JSON report"),
                            ([tmp_path / "gone.json"], "gone.json: no such file"),
                            ([tmp_path / "empty"], "empty: no JSON report in this folder"),
                            ([out, out / "p1_report.json"], "p1_report.json: named twice")):
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            summarize(inputs)


def test_command_line_refusals_are_one_line_and_write_nothing(tmp_path):
    out = _batch(tmp_path)
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "exists.csv").write_text("mine")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "summarize", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    for args, message, written in ((("out", "list.json", "--out", "s.csv"), "list.json: not a JSON report", "s.csv"),
                                   (("out", "--out", "s.json"), "the summary is a .csv file", "s.json"),
                                   (("out", "--out", "exists.csv"), "exists.csv: already exists", None)):
        result = run(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and lines[0].startswith("scarnet: error: "), result.stderr
        assert message in lines[0]
        if written:
            assert not (tmp_path / written).exists()
    assert (tmp_path / "exists.csv").read_text() == "mine"
    result = run("out", "--out", "exists.csv", "--overwrite", "--quiet")
    assert result.returncode == 0 and result.stdout == ""
    assert _read(tmp_path / "exists.csv") == _summary_seen_from(tmp_path, out)
    assert [line["report"] for line in _read(tmp_path / "exists.csv")] == ["out/p1_report.json", "out/p2_report.json"]
    np.testing.assert_equal(len(_read(tmp_path / "exists.csv")), 2)


def test_a_folder_leaves_out_what_is_not_a_report_and_says_so(tmp_path):
    """In a folder (a batch's output, where Slicer users also save markups and evaluations), files that are not
    reports are left out with a warning; named on the command line, they stop it (above)."""
    out = _batch(tmp_path)
    (out / "RV insertion.mrk.json").write_text('{"markups": []}')
    (out / "._p1_report.json").write_bytes(b"\x00\x05")  # macOS metadata beside a copied file
    (out / "eval.json").write_text('{"methods": {}}')
    result = subprocess.run([sys.executable, "-m", "scarnet", "summarize", "out", "--out", "s.csv"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert _read(tmp_path / "s.csv") == _summary_seen_from(tmp_path, out)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "scarnet: warning: left out, " in lines[0] and "eval.json: not a JSON report" in lines[0]
    (out / "p1_report.json").unlink()
    (out / "p2_report.json").unlink()
    with pytest.raises(InputError, match="no scarnet JSON report among the files given .*eval.json"):
        summarize([out], [])


def test_a_report_found_under_a_name_that_is_not_utf8_is_left_out_and_said(tmp_path, capsys):
    """A copy kept under a name in another encoding (Latin-1 bytes): the UTF-8 CSV cannot name it, which stopped the
    summary with an internal error; it is left out with one warning, as any other file it cannot take."""
    import os

    from scarnet.cli import main

    out = _batch(tmp_path)
    latin1 = os.fsdecode(bytes(out) + b"/p1_r\xe9sum\xe9.json")
    Path(latin1).write_bytes((out / "p1_report.json").read_bytes())
    assert main(["summarize", str(out), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "scarnet: warning: left out, " in lines[0] and "the name is not valid UTF-8" in lines[0]
    assert _read(tmp_path / "s.csv") == _summary_seen_from(tmp_path, out)


def test_what_slicer_did_not_count_and_who_segmented_reach_the_summary(tmp_path):
    out = _batch(tmp_path)
    report = json.loads((out / "p1_report.json").read_text())
    report.update(source="segmentation", edited=True, segments_left_out=["segments not counted: RV (2.1 mL)"])
    (tmp_path / "slicer.json").write_text(json.dumps(report))
    line = dict(zip(SUMMARY_COLUMNS, summarize([tmp_path / "slicer.json"])[0]))
    assert line["warnings"].endswith("segments not counted: RV (2.1 mL)")
    # scarnet quantify records the exam and, when told, who made the labelmap.
    write_labelmap(read_seg_nrrd(out / "p1.seg.nrrd"), tmp_path / "p1_fixed.nii.gz")
    for segmented_by, expected, page in (
            ("model-and-reader", "edited segmentation", ", the ScarNet model&#x27;s corrected by a reader ·"),
            ("reader", "reader's segmentation", ", drawn by a reader ·"), (None, "labelmap", " ·")):
        result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "p1_fixed.nii.gz", "--image",
                                 "p1.nii.gz", "--report", "q.json", "--html", "q.html", "--quiet", "--overwrite",
                                 *(["--segmented-by", segmented_by] if segmented_by else [])],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        line = dict(zip(SUMMARY_COLUMNS, summarize([tmp_path / "q.json"])[0]))
        assert line["made_from"] == expected and line["input"] == "p1.nii.gz"
        assert f"Segmentation: labelmap p1_fixed.nii.gz{page}" in (tmp_path / "q.html").read_text()  # who, on the page


def test_an_exam_reported_twice_is_said(tmp_path):
    """The model's report and a corrected one of the same exam in one folder (the README's workflow, saved beside
    the batch's, the image named relative where the batch had it absolute): both are summarised, and the command
    says the exam is counted twice, naming both reports."""
    out = _batch(tmp_path)
    result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", str(out / "p1.seg.nrrd"), "--image",
                             "p1.nii.gz", "--report", "out/p1_corrected.json", "--segmented-by",
                             "model-and-reader", "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-m", "scarnet", "summarize", "out", "--out", "cohort.csv"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "reports in the summary" in line]
    assert len(warned) == 1 and f"2 reports in the summary from {out.absolute()} are of p1 (" in warned[0]
    assert "count that exam 2 times (reports in other folders are not compared)" in warned[0]
    assert "p1_corrected.json (edited segmentation)" in warned[0] and "p1_report.json (ScarNet model)" in warned[0]
    lines = _read(tmp_path / "cohort.csv")
    assert len(lines) == 3
    # The table read alone says it too, on both lines of that exam (and on no other).
    twice = {line["report"]: line["warnings"] for line in lines if line["warnings"].startswith("counted 2 times")}
    assert sorted(twice) == ["out/p1_corrected.json", "out/p1_report.json"]
    assert "this summary also has " in twice["out/p1_report.json"] and "p1_corrected.json (edited segmentation) of " \
        "this exam; keep one" in twice["out/p1_report.json"]
    # Which model made each segmentation (the corrected one: the run it came from, as given) and which version.
    model_line = next(line for line in lines if line["report"] == "out/p1_report.json")
    model_report = json.loads((out / "p1_report.json").read_text())
    assert model_line["scarnet_version"] == scarnet.__version__
    (tmp_path / "weighed").mkdir()
    model_report["inference"]["weights"] = {"file": "site.safetensors", "sha256": "ab" * 32}
    (tmp_path / "weighed" / "r.json").write_text(json.dumps(model_report))
    line = dict(zip(SUMMARY_COLUMNS, summarize([tmp_path / "weighed" / "r.json"])[0]))
    assert line["weights_sha256"] == "ab" * 32
    # The scar on flagged slices, as the page states it; empty for a report without QC flags.
    flagged = sum(s["scar_ml"] for s in model_report["slices"] if s["qc_flags"])
    assert float(model_line["scar_on_flagged_slices_ml"]) == pytest.approx(flagged, abs=1e-4)
    assert next(line for line in lines if line["report"] == "out/p1_corrected.json")["scar_on_flagged_slices_ml"] == ""
    # Each patient's folder run on its own, the image named alike in each: different exams, nothing said.
    report = json.loads((out / "p2_report.json").read_text())
    for patient in ("patient1", "patient2"):
        (tmp_path / patient).mkdir()
        (tmp_path / patient / "report.json").write_text(json.dumps({**report, "input": "lge.nii.gz"}))
    repeated: list[str] = []
    assert len(summarize([tmp_path / "patient1", tmp_path / "patient2"], repeated=repeated)) == 2
    assert repeated == []
    # One folder of a batch whose inputs share a file name (Case_*/image.nii.gz, QA helper-126): different exams,
    # nothing said (each of 100 lines said "counted 100 times", 4.8 kB of it); the same input named relative and
    # absolute in a report without the exam recorded (an older batch's, a corrected one) is still one exam.
    (tmp_path / "cohort").mkdir()
    for case in ("Case_A", "Case_B"):
        (tmp_path / "cohort" / f"{case}_report.json").write_text(json.dumps(
            {**report, "input": str(tmp_path / case / "image.nii.gz"), "exam": case}))
    older = {key: value for key, value in report.items() if key != "exam"}
    (tmp_path / "cohort" / "old.json").write_text(json.dumps({**older, "input": "Case_B/image.nii.gz"}))
    repeated = []
    lines = [dict(zip(SUMMARY_COLUMNS, line)) for line in summarize([tmp_path / "cohort"], repeated=repeated)]
    assert len(repeated) == 1 and " are of Case_B (" in repeated[0] and "Case_A_report.json" not in repeated[0]
    assert [line["exam"] for line in lines] == ["Case_A", "Case_B", "Case_B"]
    assert [line["warnings"].startswith("counted 2 times") for line in lines] == [False, True, True]


def test_a_corrected_labelmap_records_its_reader_and_model_run_without_a_dicom_seg(tmp_path):
    """``quantify --reader`` and ``--model-report`` were refused without ``--dicom-seg``: a study keeping JSON/CSV
    reports could not record who corrected a labelmap nor which model run it came from. Now the report, its CSV,
    its page and the summary's weights_sha256 say so."""
    out = _batch(tmp_path)
    model_report = json.loads((out / "p1_report.json").read_text())
    model_report["inference"]["weights"] = {"file": "site.safetensors", "sha256": "ab" * 32}
    model_report["inference"]["scarnet_version"] = "0.1.0"
    (tmp_path / "model.json").write_text(json.dumps(model_report))
    labels = read_seg_nrrd(out / "p1.seg.nrrd")
    write_labelmap(labels, tmp_path / "p1_corrected.nii.gz")
    for report in ("c.json", "c.csv"):
        result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "p1_corrected.nii.gz", "--segmented-by",
                                 "model-and-reader", "--reader", "Smith^Anna", "--model-report", "model.json",
                                 "--report", report, "--html", report + ".html", "--quiet"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
    quantified = json.loads((tmp_path / "c.json").read_text())
    assert quantified["reader"] == "Smith^Anna" and quantified["segmented_by"] == "model-and-reader"
    # With the model report's totals: the page shows them as the model's figures before correction.
    model_total = {key: model_report["total"][key] for key in ("myocardium_g", "scar_g", "scar_percent", "mvo_ml",
                                                               "scar_ml", "myocardium_ml")}
    assert quantified["model_run"] == {"report": "model.json", "weights": model_report["inference"]["weights"],
                                       "scarnet_version": "0.1.0", "total": model_total}
    assert "inference" not in quantified  # this run did not run the model
    text = (tmp_path / "c.csv").read_text()
    assert "reader,Smith^Anna" in text and f"weights,site.safetensors,{'ab' * 32}" in text
    page = (tmp_path / "c.json.html").read_text()
    assert "(Smith, Anna)" in page and "from a model run: weights site.safetensors, sha256 abababababab" in page
    assert f"Before correction (the model&#x27;s segmentation): scar {model_total['scar_g']:.1f} g" in page
    line = summarize([tmp_path / "c.json"])[0]
    row = dict(zip(SUMMARY_COLUMNS, line))
    assert row["made_from"] == "edited segmentation" and row["weights_sha256"] == "ab" * 32
    # A model report that measured voxels of another size is not this labelmap's run: its totals are not kept.
    model_report["voxel_volume_ml"] *= 2
    (tmp_path / "model.json").write_text(json.dumps(model_report))
    result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "p1_corrected.nii.gz", "--segmented-by",
                             "model-and-reader", "--model-report", "model.json", "--report", "other.json",
                             "--html", "other.html", "--quiet"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "not this labelmap's model run" in result.stderr, result.stderr
    other = json.loads((tmp_path / "other.json").read_text())
    assert "total" not in other["model_run"] and other["model_run"]["weights"] == model_report["inference"]["weights"]
    assert any("not this labelmap's model run" in message for message in other["input_warnings"])
    assert "Before correction" not in (tmp_path / "other.html").read_text()


def test_the_exam_column_of_reports_that_do_not_record_it_comes_from_their_inputs(tmp_path):
    """QA helper-126: the summary's exam column (the key to join a cohort's table on). A batch's reports record the
    exam; a report without one (corrected elsewhere, an older batch's) gets the name a batch of these inputs would
    give it, or the exam recorded for the same input in another report of the summary."""
    inputs = [tmp_path / case / "image.nii.gz" for case in ("Case_A", "Case_B")]
    for path in inputs:
        path.parent.mkdir()
        write_volume(ring_volume(), path)
    out = tmp_path / "out"
    run_batch(inputs, out, _segmenter_factory())
    for name in ("Case_A", "Case_B"):
        report = json.loads((out / f"{name}_report.json").read_text())
        report.pop("exam")
        (tmp_path / f"{name}_old.json").write_text(json.dumps(report))
    lines = summarize([tmp_path / "Case_A_old.json", tmp_path / "Case_B_old.json"])
    assert [dict(zip(SUMMARY_COLUMNS, line))["exam"] for line in lines] == ["Case_A", "Case_B"]
    # With the batch's report of the same input: its recorded name.
    lines = summarize([out / "Case_A_report.json", tmp_path / "Case_A_old.json"])
    assert [dict(zip(SUMMARY_COLUMNS, line))["exam"] for line in lines] == ["Case_A", "Case_A"]



def test_an_input_named_relative_and_absolute_does_not_rename_the_other_exams(tmp_path):
    """QA helper-128: reports without a recorded exam (an older batch's, run with relative inputs) beside one
    corrected in Slicer (the same input, absolute): one exam under two names, not a reason to name every exam by
    the folders above it (``main_data_Case_P100``): the exam column stays the exams' folders."""
    def report(name: str, given: str, **more) -> Path:
        body = {"input": given, "total": {"myocardium_ml": 100.0, "scar_ml": 1.0}, "slices": [], **more}
        (tmp_path / name).write_text(json.dumps(body), encoding="utf-8")
        return tmp_path / name

    paths = [report("a.json", "data/Case_P100/image.nii.gz"), report("b.json", "data/Case_P101/image.nii.gz"),
             report("c.json", "/home/u/data/Case_P100/image.nii.gz", source="segmentation", edited=True)]
    repeated: list[str] = []
    lines = summarize(paths, repeated=repeated)
    assert [dict(zip(SUMMARY_COLUMNS, line))["exam"] for line in lines] == ["Case_P100", "Case_P101", "Case_P100"]
    assert len(repeated) == 1 and "a.json" in repeated[0] and "c.json" in repeated[0]

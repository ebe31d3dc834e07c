"""Many exams in one run (scarnet.batch, ``scarnet batch``): outputs per exam, the summary, failures that
do not stop the others, and outputs checked before anything runs."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
from test_cli import BUNDLED_WEIGHTS
from test_inference import RingModel, ring_volume

from scarnet.batch import (
    SUMMARY_COLUMNS,
    ExamAnatomy,
    exam_name,
    exam_names,
    plan_outputs,
    points_for_exams,
    read_rv_points,
    run_batch,
)
from scarnet.errors import InputError, OutputExistsError, WeightsError
from scarnet.inference import Segmenter
from scarnet.io import write_volume
from scarnet.quantify import report_warnings
from scarnet.summary import summarize


def _segmenter_factory(calls: list[int] | None = None):
    def make():
        if calls is not None:
            calls.append(1)
        segmenter = Segmenter(RingModel(), device="cpu", flip_check=False)
        return lambda volume, name, rv_insertion_lps, basal_end: segmenter(
            volume, name=name, rv_insertion_lps=rv_insertion_lps, basal_end=basal_end)
    return make


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """A CSV file's rows as dicts by header (a summary, for one); its byte-order mark, where it has one, dropped."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def _summary(folder: Path) -> list[dict[str, str]]:
    return read_csv_rows(folder / "summary.csv")


@pytest.mark.parametrize("path, name", [("a/lge.nii.gz", "lge"), ("b.NRRD", "b"), ("x.mha", "x"),
                                        ("dicom/exam_07", "exam_07"), ("dicom/exam_07/", "exam_07"),
                                        (".nii.gz", ".nii.gz"), ("c.seg.nrrd", "c")])
def test_exam_names(path, name):
    assert exam_name(path) == name


def test_inputs_of_one_file_name_are_named_by_their_folders_and_refused_when_nothing_tells_them_apart(tmp_path):
    # Case_P100/image.nii.gz, Case_P101/image.nii.gz (EMIDEC's and nnU-Net-style layouts): the exam folders name them.
    plans = plan_outputs(["data/Case_P100/image.nii.gz", "data/Case_P101/image.nii.gz", "other.nrrd"], "out",
                         html=False)
    assert [plan.name for plan in plans] == ["Case_P100", "Case_P101", "other"]
    assert [plan.report for plan in plans] == [Path("out/Case_P100_report.json"), Path("out/Case_P101_report.json"),
                                               Path("out/other_report.json")]
    # Exam folders whose names repeat (two sites): the nearest folders that tell them apart.
    assert exam_names(["site1/exam/lge.nii.gz", "site2/exam/lge.nii.gz"]) == ["site1_exam", "site2_exam"]
    # DICOM folders of one name (a patient number at two sites) keep it after their parents'.
    assert exam_names(["site1/P001", "site2/P001/", "site2/P002"]) == ["site1_P001", "site2_P001", "P002"]
    # A folder name that is another input's name is not taken.
    names = exam_names(["x/a/lge.nii.gz", "x/b/lge.nii.gz", "y/a.nii.gz"])
    assert names == ["x_a", "x_b", "a"]
    # One name in its two Unicode forms (macOS keeps file names decomposed), or two cases (as casefold compares): the
    # same name, so the folders name them; in one folder nothing does.
    assert exam_names(["a/Zo\u00eb.nii.gz", "b/Zoe\u0308.nrrd"]) == ["a", "b"]
    with pytest.raises(InputError, match="a/lge.nii.gz and a/LGE.nrrd would both write lge_report.json, and their "
                                         "folders do not tell them apart"):
        plan_outputs(["a/lge.nii.gz", "a/LGE.nrrd"], "out", html=False)
    with pytest.raises(InputError, match="would both write"):
        plan_outputs(["a/STRASSE.nii.gz", "a/stra\u00dfe.nrrd"], "out", html=False)
    with pytest.raises(InputError, match="a/lge.nii.gz is given twice"):
        plan_outputs(["a/lge.nii.gz", "a/../a/lge.nii.gz"], "out", html=False)
    # An input among this run's outputs (`batch data/* --out data` after an earlier run), or the output folder.
    with pytest.raises(InputError, match="also one of this run's outputs"):
        plan_outputs([tmp_path / "p1.nii.gz", tmp_path / "p1_report.json"], tmp_path, html=False)
    with pytest.raises(InputError, match="both an input and the output folder"):
        plan_outputs([tmp_path], tmp_path, html=False)
    with pytest.raises(InputError, match="no name"):
        exam_name("/")
    assert exam_name(tmp_path / "exam_07" / "..") == tmp_path.name


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="no symbolic links on this system")
def test_inputs_that_are_links_are_named_by_the_folders_they_are_given_in(tmp_path):
    """QA helper-123: a DataLad/git-annex data set keeps Case_P100/image.nii.gz as a link into its object store
    (.git/annex/objects/xx/yy/KEY/KEY): the exams were named by the store's folders (the annex keys), and a points
    file naming Case_P100 was refused. The folders the inputs are given in name them; the same file twice is refused
    still."""
    for case, key in (("Case_P100", "SHA256E-s1--aaa.nii.gz"), ("Case_P101", "SHA256E-s1--bbb.nii.gz")):
        (tmp_path / "store" / key).mkdir(parents=True)
        (tmp_path / "store" / key / key).write_bytes(b"")
        (tmp_path / case).mkdir()
        os.symlink(tmp_path / "store" / key / key, tmp_path / case / "image.nii.gz")
    assert exam_names([tmp_path / "Case_P100" / "image.nii.gz", tmp_path / "Case_P101" / "image.nii.gz"]) == \
        ["Case_P100", "Case_P101"]
    (tmp_path / "Case_P102").mkdir()
    os.symlink(tmp_path / "Case_P100" / "image.nii.gz", tmp_path / "Case_P102" / "image.nii.gz")
    with pytest.raises(InputError, match="is given twice"):
        exam_names([tmp_path / "Case_P100" / "image.nii.gz", tmp_path / "Case_P102" / "image.nii.gz"])


def test_a_batch_writes_each_exam_and_a_summary_and_goes_on_after_a_failure(tmp_path):
    first, second = ring_volume(), ring_volume(shape_kji=(6, 140, 150))
    write_volume(first, tmp_path / "p1.nii.gz")
    write_volume(second, tmp_path / "p2.nrrd")
    (tmp_path / "broken.nii.gz").write_text("not an image")
    inputs = [tmp_path / "p1.nii.gz", tmp_path / "broken.nii.gz", tmp_path / "p2.nrrd"]
    seen = []
    rows = run_batch(inputs, tmp_path / "out" / "new", _segmenter_factory(), html=True,
                     on_exam=lambda number, count, row: seen.append((number, count, row.status)))
    out = tmp_path / "out" / "new"
    assert [status.split(":")[0] for _, _, status in seen] == ["ok", "failed", "ok"] and seen[1][:2] == (2, 3)
    assert sorted(p.name for p in out.iterdir()) == ["p1.seg.nrrd", "p1_report.html", "p1_report.json", "p2.seg.nrrd",
                                                    "p2_report.html", "p2_report.json", "summary.csv"]
    summary = _summary(out)
    assert list(summary[0]) == list(SUMMARY_COLUMNS)
    assert [r["input"] for r in summary] == [str(p) for p in inputs]  # in the order given
    assert summary[1]["status"].startswith("failed: ") and "not a readable image" in summary[1]["status"]
    assert summary[1]["scar_ml"] == ""
    for row, name in ((summary[0], "p1"), (summary[2], "p2")):
        report = json.loads((out / f"{name}_report.json").read_text())
        assert row["status"] == "ok" and row["report"] == f"{name}_report.json"
        for key in ("myocardium_ml", "scar_g", "scar_percent", "mvo_ml"):
            assert float(row[key]) == pytest.approx(report["total"][key], rel=1e-5)
        assert int(row["slices_flagged"]) == sum(bool(s["qc_flags"]) for s in report["slices"])
        assert report["input"] == row["input"]
        # The ring stand-in is unlike any LGE, and as wide at both ends as a stack cut short of the apex: the exam's
        # warnings (the model's, the labels') are in its report and its summary line.
        assert report["inference"]["warnings"] and row["warnings"] == " | ".join(report_warnings(report))
    assert [r.status == "ok" for r in rows] == [True, False, True]


def test_outputs_are_checked_before_the_model_loads(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    out = tmp_path / "out"
    calls: list[int] = []
    # A mistyped input is told before anything runs or is written, not as a failed row at the end.
    with pytest.raises(InputError, match=r"p3.nii.gz: no such file or folder \(and 1 more of the inputs\); nothing "
                                         "was run") as error:
        run_batch([tmp_path / "p1.nii.gz", tmp_path / "p3.nii.gz", tmp_path / "p4"], out, _segmenter_factory(calls))
    assert "\n" not in str(error.value) and calls == [] and not out.exists()
    out.mkdir()
    (out / "p1_report.json").write_text("an earlier run's report")
    with pytest.raises(OutputExistsError, match="p1_report.json"):
        run_batch([tmp_path / "p1.nii.gz"], out, _segmenter_factory(calls))
    assert calls == [] and sorted(p.name for p in out.iterdir()) == ["p1_report.json"]
    (out / "p1_report.html").write_text("an earlier run's page")
    rows = run_batch([tmp_path / "p1.nii.gz"], out, _segmenter_factory(calls), overwrite=True)
    assert calls == [1] and rows[0].status == "ok"
    assert json.loads((out / "p1_report.json").read_text())["total"]["scar_ml"] > 0
    # The earlier page is not this run's (no --html): kept, and said to no longer match the new report.
    assert (out / "p1_report.html").read_text() == "an earlier run's page"
    assert [w for w in rows[0].other_warnings if "left from an earlier run" in w] == [
        f"{out / 'p1_report.html'}: left from an earlier run; it no longer matches the new report (pass --html to "
        "replace it, or remove it)"]
    # The exam fails on the next run (its file damaged since): its earlier report and segmentation are not this
    # run's result. Kept, but said in its summary line, which a summary of the folder would otherwise contradict.
    (tmp_path / "p1.nii.gz").write_bytes((tmp_path / "p1.nii.gz").read_bytes()[:300])
    before = (out / "p1_report.json").read_bytes()
    rows = run_batch([tmp_path / "p1.nii.gz"], out, _segmenter_factory(calls), overwrite=True)
    assert rows[0].status.startswith("failed: ") and (out / "p1_report.json").read_bytes() == before
    said = "p1.seg.nrrd, p1_report.json: left from an earlier run, not this run's result (the exam failed)"
    assert said in rows[0].other_warnings[-1] and said in _summary(out)[0]["warnings"]


def test_weights_that_cannot_load_stop_the_run_and_write_nothing(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")

    def broken():
        raise WeightsError("w.safetensors: corrupted")

    with pytest.raises(WeightsError):
        run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", broken)
    assert not (tmp_path / "out").exists()


def test_an_interrupted_batch_lists_what_it_did(tmp_path):
    """Ctrl-C in the second exam: the first exam's files stay, the second leaves nothing, and the summary says
    which ran."""
    for name in ("p1", "p2", "p3"):
        write_volume(ring_volume(), tmp_path / f"{name}.nii.gz")

    def make():
        segment = _segmenter_factory()()
        calls = []

        def interrupted_at_the_second(volume, name, rv_insertion_lps, basal_end):
            calls.append(name)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return segment(volume, name, rv_insertion_lps, basal_end)
        return interrupted_at_the_second

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch([tmp_path / f"{n}.nii.gz" for n in ("p1", "p2", "p3")], out, make)
    assert sorted(p.name for p in out.iterdir()) == ["p1.seg.nrrd", "p1_report.json", "summary.csv"]
    assert [r["status"] for r in _summary(out)] == ["ok", "not run", "not run"]
    # Continued with --skip-done: the first exam is not run again (its files, and so a SEG's UIDs, kept), the
    # others are, and the summary is rewritten with every line; its first line read from its report.
    inputs = [tmp_path / f"{n}.nii.gz" for n in ("p1", "p2", "p3")]
    first_line, first_files = _summary(out)[0], {p.name: p.read_bytes() for p in out.glob("p1*")}
    with pytest.raises(OutputExistsError, match="summary.csv"):
        run_batch(inputs, out, _segmenter_factory())  # without it: an existing output, as before
    calls: list[str] = []
    segment = _segmenter_factory()()

    def counted():
        return lambda volume, name, *args: calls.append(Path(name).name) or segment(volume, name, *args)

    rows = run_batch(inputs, out, counted, skip_done=True)
    assert calls == ["p2.nii.gz", "p3.nii.gz"] and [row.done_earlier for row in rows] == [True, False, False]
    assert {p.name: p.read_bytes() for p in out.glob("p1*")} == first_files
    lines = _summary(out)
    assert [r["status"] for r in lines] == ["ok", "ok", "ok"]
    assert {k: v for k, v in lines[0].items() if k != "model_s"} == {k: v for k, v in first_line.items()
                                                                      if k != "model_s"}
    # A report saved under the exam's name that is not the model's report of it (a corrected one) is no finished
    # exam: it runs, and its files need --overwrite as usual.
    report = json.loads((out / "p1_report.json").read_text())
    report.pop("inference")
    report.update(source="segmentation", edited=True)
    (out / "p1_report.json").write_text(json.dumps(report))
    with pytest.raises(OutputExistsError, match="p1"):
        run_batch(inputs, out, counted, skip_done=True)


def test_a_summary_that_appears_during_the_run_is_not_replaced(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    out = tmp_path / "out"

    def make():  # called after the outputs were checked: another run writes into the folder meanwhile
        out.mkdir(exist_ok=True)
        (out / "summary.csv").write_text("another run's summary")
        return _segmenter_factory()()

    # Said as what happened (two batches into one --out), with where this run's results are; not "already exists".
    with pytest.raises(OutputExistsError, match=r"summary.csv: written by another run while this one worked "
                                                r"\(two batches into one --out\?\).* its 1 of 1 exams done have"):
        run_batch([tmp_path / "p1.nii.gz"], out, make)
    assert (out / "summary.csv").read_text() == "another run's summary"
    assert sorted(p.name for p in out.iterdir()) == ["p1.seg.nrrd", "p1_report.json", "summary.csv"]


def test_a_summary_with_non_ascii_text_starts_with_a_byte_order_mark_and_an_ascii_one_does_not(tmp_path):
    """QA helper-141: Excel on Windows opens a UTF-8 CSV without a byte-order mark in its code page ("MÃ¼ller"). A
    summary that holds a non-ASCII character (an exam folder "Müller") starts with one; an ASCII summary has none,
    byte for byte as before."""
    for name in ("Müller", "p2"):
        (tmp_path / name).mkdir()
        write_volume(ring_volume(), tmp_path / name / "lge.nii.gz")
    run_batch([tmp_path / "Müller" / "lge.nii.gz"], tmp_path / "out", _segmenter_factory())
    raw = (tmp_path / "out" / "summary.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfexam,")
    assert [line["exam"] for line in _summary(tmp_path / "out")] == ["lge"]
    assert [line["input"] for line in _summary(tmp_path / "out")] == [str(tmp_path / "Müller" / "lge.nii.gz")]
    run_batch([tmp_path / "p2" / "lge.nii.gz"], tmp_path / "ascii", _segmenter_factory())
    raw = (tmp_path / "ascii" / "summary.csv").read_bytes()
    assert raw.startswith(b"exam,") and raw.isascii()


def test_a_terminated_batch_ends_with_143_and_says_how_to_continue(tmp_path, monkeypatch, capsys):
    """SIGTERM (a scheduler's time limit) in the second exam: status 143, one line that says what was done and that
    --skip-done continues, the summary written, the SIGTERM handler put back."""
    import os
    import signal

    import scarnet.cli
    from scarnet.cli import main

    inputs = [str(tmp_path / f"{name}.nii.gz") for name in ("p1", "p2", "p3")]
    for path in inputs:
        write_volume(ring_volume(), path)
    segmenter = Segmenter(RingModel(), device="cpu", flip_check=False)
    calls = []

    def segment(volume, progress=None, **kwargs):
        calls.append(kwargs["name"])
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return segmenter(volume, **kwargs)

    monkeypatch.setattr(scarnet.cli, "_segmenter", lambda args: segment)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out"
    assert main(["batch", *inputs, "--out", str(out), "--quiet"]) == 143
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"scarnet: interrupted (SIGTERM); 1 of 3 exams done, listed in {out / 'summary.csv'} (the others 'not run'): "
        "the same command with --skip-done continues")
    assert [row["status"] for row in _summary(out)] == ["ok", "not run", "not run"]
    assert sorted(p.name for p in out.iterdir()) == ["p1.seg.nrrd", "p1_report.json", "summary.csv"]
    assert signal.getsignal(signal.SIGTERM) is before


def test_an_interrupt_in_a_batch_whose_exams_were_all_done_says_how_far_it_got(tmp_path, monkeypatch, capsys):
    """QA helper-141: with every exam done earlier (--skip-done again), no model is loaded, and an interrupt in the
    exams' loop said the plain "scarnet: interrupted" although summary.csv was written: the loop's start was known
    only from the model's loading. Now the line says how far the run got and how to go on."""
    import scarnet.batch
    import scarnet.cli
    from scarnet.cli import main

    inputs = [str(tmp_path / f"{name}.nii.gz") for name in ("p1", "p2")]
    for path in inputs:
        write_volume(ring_volume(), path)
    segmenter = Segmenter(RingModel(), device="cpu", flip_check=False)
    monkeypatch.setattr(scarnet.cli, "_segmenter", lambda args: lambda volume, progress=None, **kw: segmenter(
        volume, **kw))
    out = tmp_path / "out"
    assert main(["batch", *inputs, "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    figures_of = scarnet.batch.summary_figures
    read = []

    def interrupted_at_the_second(report, name):  # Ctrl-C while the second exam's line is read from its report
        read.append(name)
        if len(read) == 2:
            raise KeyboardInterrupt
        return figures_of(report, name)

    monkeypatch.setattr(scarnet.batch, "summary_figures", interrupted_at_the_second)
    monkeypatch.setattr(scarnet.cli, "_segmenter", lambda args: pytest.fail("no exam to segment: no model loaded"))
    assert main(["batch", *inputs, "--out", str(out), "--quiet", "--skip-done"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"scarnet: interrupted; 1 of 2 exams done, listed in {out / 'summary.csv'} (the others 'not run'): "
        "the same command with --skip-done continues")
    assert [row["status"] for row in _summary(out)] == ["ok", "not run"]


def test_the_command_names_exams_of_one_file_name_by_their_folders_and_each_warning_names_its_exam_once(
        tmp_path, monkeypatch, capsys):
    """``Case_A/image.nii.gz``, ``Case_B/image.nii.gz``: outputs named by the folders; a warning that starts with the
    exam's path (as reading's do) is printed after the exam's number and path, not with the path a second time."""
    import warnings

    import scarnet.cli
    from scarnet.cli import main

    inputs = [tmp_path / case / "image.nii.gz" for case in ("Case_A", "Case_B")]
    for path in inputs:
        path.parent.mkdir()
        write_volume(ring_volume(), path)
    segmenter = Segmenter(RingModel(), device="cpu", flip_check=False)

    def segment(volume, progress=None, **kwargs):
        warnings.warn(f"{kwargs['name']}: slices 3 and 4 are 20 mm apart", UserWarning, stacklevel=1)
        return segmenter(volume, **kwargs)

    monkeypatch.setattr(scarnet.cli, "_segmenter", lambda args: segment)
    out = tmp_path / "out"
    assert main(["batch", *map(str, inputs), "--out", str(out), "--quiet"]) == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "20 mm apart" in line]
    assert said == [f"scarnet: [{n}/2] {path}: warning: slices 3 and 4 are 20 mm apart"
                    for n, path in enumerate(inputs, 1)]
    assert sorted(p.name for p in out.iterdir()) == ["Case_A.seg.nrrd", "Case_A_report.json", "Case_B.seg.nrrd",
                                                     "Case_B_report.json", "summary.csv"]


def test_a_cohort_of_one_file_name_is_told_apart_in_its_summary_and_on_its_pages(tmp_path):
    """QA helper-126 (the 100 EMIDEC exams as Case_*/image.nii.gz): every page said "Input: image.nii.gz" (100
    printed pages that cannot be told apart), the summary had no column naming the exam (its name had to be cut out
    of the path to join the table to anything), and each warning and failure cell repeated the input's path, which
    its own column holds. The exam is the first column (as its outputs and the points file name it), the page
    names the folder that names the exam, and the cells say what happened without the path."""
    import nibabel as nib

    inputs = [tmp_path / case / "image.nii.gz" for case in ("Case_A", "Case_B", "Case_C")] + [tmp_path / "x.nrrd"]
    for path in inputs:
        path.parent.mkdir(exist_ok=True)
        write_volume(ring_volume(), path)
    inputs[2].write_text("not an image")
    volume = ring_volume()  # Case_A warns as it is read ("INPUT: complex-valued image; ...")
    array = np.transpose(volume.array, (2, 1, 0)).astype(np.complex64)
    nib.save(nib.Nifti1Image(array, np.diag([*volume.spacing_mm, 1.0])), inputs[0])
    out = tmp_path / "out"
    rows = run_batch(inputs, out, _segmenter_factory(), html=True)
    assert [row.status.split(":")[0] for row in rows] == ["ok", "ok", "failed", "ok"]
    summary = _summary(out)
    assert list(summary[0])[:2] == ["exam", "input"] == list(SUMMARY_COLUMNS[:2])
    assert [line["exam"] for line in summary] == ["Case_A", "Case_B", "Case_C", "x"]
    assert [line["input"] for line in summary] == [str(path) for path in inputs]
    for line in summary:  # (ITK's own message may quote the file)
        assert line["input"] not in line["warnings"] and not line["status"].startswith(f"failed: {line['input']}")
    assert "complex-valued image; its magnitude is used" in summary[0]["warnings"].split(" | ")
    assert summary[2]["status"].startswith("failed: ") and "not a readable image" in summary[2]["status"]
    # The reports keep the path (read alone, they must name their input); and record the exam, for summarize.
    report = json.loads((out / "Case_A_report.json").read_text())
    assert report["input_warnings"] == [f"{inputs[0]}: complex-valued image; its magnitude is used"]
    assert report["exam"] == "Case_A" and report["input"] == str(inputs[0])
    again = _read_summarized(out)
    assert [line["exam"] for line in again] == ["Case_A", "Case_B", "x"]
    assert again[0]["warnings"] == summary[0]["warnings"]
    for name, shown in (("Case_A", "Case_A/image.nii.gz"), ("Case_B", "Case_B/image.nii.gz"), ("x", "x.nrrd")):
        page = (out / f"{name}_report.html").read_text(encoding="utf-8")
        assert f"<title>ScarNet report: {shown}</title>" in page and f"Input: {shown}" in page


def _read_summarized(folder: Path) -> list[dict[str, str]]:
    from scarnet.summary import summary_csv

    return list(csv.DictReader(summary_csv(summarize([folder], relative_to=folder)).splitlines()))


def test_a_page_names_its_input_as_given_with_the_folders_that_name_its_exam(tmp_path):
    from scarnet.batch import shown_input

    def shown(*inputs):
        return [shown_input(plan) for plan in plan_outputs(list(inputs), tmp_path / "out", html=True)]

    assert shown("data/Case_P100/image.nii.gz", "data/Case_P101/image.nii.gz", "other.nrrd") == [
        "Case_P100/image.nii.gz", "Case_P101/image.nii.gz", "other.nrrd"]
    assert shown("site1/exam/lge.nii.gz", "site2/exam/lge.nii.gz") == ["site1/exam/lge.nii.gz", "site2/exam/lge.nii.gz"]
    assert shown("site1/P001", "site2/P001/", "site2/P002") == ["site1/P001", "site2/P001", "P002"]
    assert shown("a/lge_v2.nii.gz", "b/lge_v2.nii.gz") == ["a/lge_v2.nii.gz", "b/lge_v2.nii.gz"]
    if hasattr(os, "symlink"):  # a link (git-annex) is named as given, not by its target's key
        (tmp_path / "store").mkdir()
        (tmp_path / "store" / "SHA256E-s1--aaa.nii.gz").write_bytes(b"")
        (tmp_path / "Case_P100").mkdir()
        os.symlink(tmp_path / "store" / "SHA256E-s1--aaa.nii.gz", tmp_path / "Case_P100" / "lge.nii.gz")
        assert shown(tmp_path / "Case_P100" / "lge.nii.gz") == ["lge.nii.gz"]


def test_a_dicom_folder_given_as_dot_keeps_its_name_after_its_parents(tmp_path, monkeypatch):
    """QA helper-128: ``batch . ../../site2/P001`` run inside site1/P001 named that exam ``site1`` (its folder's own
    name dropped, as for a file's), the other ``site2_P001``; ``../P001`` gave ``site1_P001``."""
    from scarnet.batch import shown_input

    for site in ("site1", "site2"):
        (tmp_path / site / "P001").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "site1" / "P001")
    other = tmp_path / "site2" / "P001"
    assert exam_names([".", other]) == exam_names(["../P001", other]) == ["site1_P001", "site2_P001"]
    plans = plan_outputs([".", other], tmp_path / "out", html=True)
    assert [shown_input(plan) for plan in plans] == ["site1/P001", "site2/P001"]


def test_a_batch_continued_when_every_exam_is_done_does_not_load_the_model(tmp_path):
    """QA helper-126: `--skip-done` again after a finished run loaded the model (seconds, and 0.7 GB) for nothing."""
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    calls: list[int] = []
    run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", _segmenter_factory(calls))
    before = _summary(tmp_path / "out")
    rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", _segmenter_factory(calls), skip_done=True)
    assert calls == [1] and [row.done_earlier for row in rows] == [True]
    assert _summary(tmp_path / "out") == before


def test_warnings_before_a_failure_are_kept(tmp_path):
    import warnings

    from scarnet.errors import NoHeartFoundError

    write_volume(ring_volume(), tmp_path / "p1.nii.gz")

    def make():
        def warn_then_fail(volume, name, rv_insertion_lps, basal_end):
            warnings.warn("slices 3 and 4 are 20 mm apart", UserWarning, stacklevel=1)
            raise NoHeartFoundError("no heart found in p1")
        return warn_then_fail

    rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", make)
    assert rows[0].status == "failed: no heart found in p1"
    assert rows[0].warnings == ["slices 3 and 4 are 20 mm apart"]
    assert _summary(tmp_path / "out")[0]["warnings"] == "slices 3 and 4 are 20 mm apart"


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_command_line_batch(tmp_path):
    from scarnet.phantom import anterior_rv_insertion_lps, inferior_rv_insertion_lps, make_phantom

    # "[/x]" is not read as terminal markup; the long name keeps its exam's line whole in a log (no wrapping).
    folder = "d[" + "_long_folder_name" * 4
    (tmp_path / folder).mkdir()
    phantom = make_phantom(3)
    write_volume(phantom.image, tmp_path / folder / "x].nii.gz")
    (tmp_path / "exam2.nii.gz").write_bytes(np.zeros(10, dtype=np.uint8).tobytes())
    ras = [f"{-l},{-p},{s}" for l, p, s in (anterior_rv_insertion_lps(phantom), inferior_rv_insertion_lps(phantom))]
    _points_file(tmp_path / "points.csv", ["exam,anterior_r,anterior_a,anterior_s,inferior_r,inferior_a,inferior_s",
                                           f"x],{ras[0]},{ras[1]}"])
    _points_file(tmp_path / "typo.csv", ["exam,anterior_r,anterior_a,anterior_s", "x,1,2,3"])

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "batch", f"{folder}/x].nii.gz", "exam2.nii.gz", "--out",
                               "res", "--device", "cpu", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    result = run("--rv-points", "typo.csv")  # refused before the model loads, in one line
    assert result.returncode == 2 and result.stderr.startswith("scarnet: error: typo.csv line 2: no input is named x ")
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "res").exists()
    result = run("--rv-points", "points.csv")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("scarnet: [2/2] exam2.nii.gz: failed: ") and "Traceback" not in result.stderr
    assert all(line.strip() for line in result.stderr.splitlines())  # no progress-bar leftovers in a log
    assert lines[-1] == "scarnet: error: 1 of 2 exams failed (see res/summary.csv)"
    first = _summary(tmp_path / "res")[0]
    exam_line = next(line for line in result.stdout.splitlines() if line.startswith("[1/2] "))
    assert exam_line.startswith(f"[1/2] {folder}/x].nii.gz: scar ")
    assert re.search(r"QC flags on \d+ slices?$", exam_line)
    assert (f"scar (≥1 %) in {first['aha_segments_with_scar']} AHA segments "
            f"(over half of the segment in {first['aha_segments_over_50_percent']})" in exam_line)
    first = _summary(tmp_path / "res")[0]
    report = json.loads((tmp_path / "res" / "x]_report.json").read_text())
    assert first["status"] == "ok" and len(report["segments"]) == 17
    assert int(first["aha_scar_score"]) == report["segment_summary"]["scar_score"]
    assert float(first["septal_span_deg"]) == pytest.approx(report["septal_span_deg"], abs=0.05)
    result = run()  # again: the outputs exist
    assert result.returncode == 2 and "--overwrite" in result.stderr and "[1/2]" not in result.stdout


def test_warnings_while_an_exam_runs_stay_with_that_exam(tmp_path, monkeypatch):
    """Reading's warnings go into the exam's report as scarnet segment keeps them; a library's warning while the
    model runs is kept with the exam's row (shown with its name) but not put in the report; none escapes."""
    import warnings

    import scarnet.io

    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    read = scarnet.io.read_volume

    def read_with_a_warning(path, series=None):
        warnings.warn("slice positions are approximate", UserWarning, stacklevel=1)
        warnings.warn("an old API", DeprecationWarning, stacklevel=1)  # not the reader's business
        return read(path, series=series)

    monkeypatch.setattr(scarnet.io, "read_volume", read_with_a_warning)

    def make():
        segment = _segmenter_factory()()

        def warn_then_segment(volume, name, rv_insertion_lps, basal_end):
            warnings.warn("a library's note", UserWarning, stacklevel=1)
            return segment(volume, name, rv_insertion_lps, basal_end)
        return warn_then_segment

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes the exam
        rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", make)
    report = json.loads((tmp_path / "out" / "p1_report.json").read_text())
    assert report["input_warnings"] == ["slice positions are approximate"]
    assert rows[0].warnings[0] == "slice positions are approximate"
    # + the labels' (the ring stand-in's stack may stop short of the apex) and the model's
    assert len(rows[0].warnings) == 1 + len(report.get("labelmap_warnings") or []) + len(
        report["inference"]["warnings"])
    assert rows[0].other_warnings == ["a library's note"]


def _wall_point_ras(volume, degrees_from_up: float) -> list[float]:
    """A point on the epicardium that the ring stand-in segments, ``degrees_from_up`` from straight up (row 0)
    in the slice plane, as RAS mm (what a user types into a points file)."""
    import warnings

    from scarnet.aha import outermost_wall_point_lps

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stand-in is unlike any LGE; said in the batch's own test
        labelmap = Segmenter(RingModel(), device="cpu", flip_check=False)(volume).labelmap
    angle = np.deg2rad(degrees_from_up)
    towards = np.cos(angle) * -volume.direction[:, 1] + np.sin(angle) * volume.direction[:, 0]
    l, p, s = outermost_wall_point_lps(labelmap, towards)
    return [-l, -p, s]


def _points_file(path: Path, lines: list[str], delimiter: str = ",", bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "\n".join(line.replace(",", delimiter) for line in lines) + "\n",
                    encoding="utf-8")
    return path


def test_points_files_are_read_as_slicer_shows_points(tmp_path):
    header = "Exam,anterior_R,anterior_A,anterior_S,inferior_r,inferior_a,inferior_s,Basal_End"
    path = _points_file(tmp_path / "p.csv", [header, "p1,-25.8,101,8,,,,", "P2,1,2,3,-4,5.5,6,Last", "p3,,,,,,,",
                                             "p4,,,,,,,first", ""], bom=True)
    points = read_rv_points(path)
    assert sorted(points) == ["P2", "p1", "p3", "p4"]  # p3: all cells empty, nothing said of it but its name
    assert points["p3"].rv_insertion_lps is None and points["p3"].basal_end is None and points["p3"].line == 4
    assert np.array_equal(points["p1"].rv_insertion_lps, [25.8, -101, 8]) and points["p1"].basal_end is None
    assert np.array_equal(points["P2"].rv_insertion_lps, [[-1, -2, 3], [4, -5.5, 6]])  # RAS → LPS
    assert points["P2"].basal_end == "last"
    assert points["p4"].rv_insertion_lps is None and points["p4"].basal_end == "first"
    # A spreadsheet's CSV in a European locale: semicolons and decimal commas; the inferior columns may be left out.
    path = _points_file(tmp_path / "eu.csv", ["exam;anterior_r;anterior_a;anterior_s", "p1;-25,8;101;8,5"])
    assert np.array_equal(read_rv_points(path)["p1"].rv_insertion_lps, [25.8, -101, 8.5])
    path = _points_file(tmp_path / "tab.csv", ["exam,anterior_r,anterior_a,anterior_s", "p1,1.5,2,3"], delimiter="\t")
    assert np.array_equal(read_rv_points(path)["p1"].rv_insertion_lps, [-1.5, -2, 3])
    # What a spreadsheet adds: blank lines first, empty cells past the last column (also in the header), CRLF,
    # quoted cells, a typographic minus.
    path = tmp_path / "excel.csv"
    path.write_bytes("\r\nexam;anterior_r;anterior_a;anterior_s;;\r\n\"p1\";\"\u22121,5\";2;3;;\r\n;;;;;\r\n".encode())
    points = read_rv_points(path)
    assert np.array_equal(points["p1"].rv_insertion_lps, [1.5, -2, 3]) and points["p1"].line == 3


@pytest.mark.parametrize("lines, message", [
    (["exam,anterior_r,anterior_a"], "no column 'anterior_s'"),
    (["exam,anterior_r,anterior_a,anterior_s,inferiour_r"], "unknown column 'inferiour_r'"),
    (["exam,anterior_r,anterior_a,anterior_s,exam"], "a column named twice"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1,2,3", "P1,4,5,6"], "line 3: P1 was given on line 2 already"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1,,3"], "line 2: anterior_a is empty"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1,nan,3"], "line 2: anterior_a 'nan' is not a number of mm"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1,2,3 mm"], "anterior_s '3 mm' is not a number"),
    (["exam,anterior_r,anterior_a,anterior_s,inferior_r,inferior_a,inferior_s", "p1,,,,1,2,3"],
     "line 2: an inferior RV insertion point without the anterior one"),
    (["exam,anterior_r,anterior_a,anterior_s", ",1,2,3"], "line 2: no exam name"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1,2,3,4"], "line 2: 5 cells under a header of 4"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1_000,2,3"], "anterior_r '1_000' is not a number"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,0x10,2,3"], "anterior_r '0x10' is not a number"),
    (["exam,anterior_r,anterior_a,anterior_s", "p1,1e999,2,3"], "anterior_r '1e999' is not a number"),
    (["exam,anterior_r,anterior_a,anterior_s", 'p1,"1', '2",2,3'], r"line 2: anterior_r '1\\n2' is not a number"),
    (["exam,anterior_r,anterior_a,anterior_s", 'p0,"1.5', '",2,3', "p1,1,2,3", "P1,4,5,6"],
     "line 5: P1 was given on line 4"),  # lines counted in the file, past a cell that spans two
    (["exam,anterior_r,anterior_a,anterior_s", "p1," + "9" * 200_000 + ",2,3"], "line 2: not readable as CSV"),
    (["exam,anterior_r,anterior_a,anterior_s,basal_end", "p1,1,2,3,base"], "line 2: basal_end 'base': first or last"),
    ([""], "empty; expected a header line"),
    (["exam,anterior_r,anterior_a,anterior_s", '"p1,1,2,3', "p2,4,5,6"],
     r"line 2: the exam name 'p1,1,2,3\\np2,4,5,6' runs over lines: a quote left open"),
])
def test_points_files_that_cannot_be_right_are_refused_with_their_line(tmp_path, lines, message):
    with pytest.raises(InputError, match=message):
        read_rv_points(_points_file(tmp_path / "p.csv", lines))


def test_unreadable_points_files_are_refused(tmp_path):
    with pytest.raises(InputError, match="could not be read"):
        read_rv_points(tmp_path / "missing.csv")
    (tmp_path / "latin1.csv").write_bytes("exam,anterior_r,anterior_a,anterior_s\nJos\xe9,1,2,3\n".encode("latin-1"))
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_rv_points(tmp_path / "latin1.csv")


def test_exams_with_rv_points_get_aha_segments_in_their_report_and_summary(tmp_path):
    """p1 gets both RV insertion points, p2 none, p3 a point far from its heart (refused with a warning, the exam
    still reported): the summary's segment columns are the report's, empty without segments."""
    volume = ring_volume()
    for name in ("p1", "p2", "p3"):
        write_volume(volume, tmp_path / f"{name}.nii.gz")
    anterior, inferior = _wall_point_ras(volume, 0.0), _wall_point_ras(volume, -120.0)
    far = [anterior[0] + 200.0, *anterior[1:]]
    # The ring stand-in is a cylinder: neither orientation nor cavity size tells its base, so the file does.
    path = _points_file(tmp_path / "points.csv",
                        ["exam,anterior_r,anterior_a,anterior_s,inferior_r,inferior_a,inferior_s,basal_end",
                         "P1," + ",".join(map(str, anterior + inferior)) + ",first",
                         "p3," + ",".join(map(str, far)) + ",,,,first"])
    rows = run_batch([tmp_path / f"{n}.nii.gz" for n in ("p1", "p2", "p3")], tmp_path / "out", _segmenter_factory(),
                     rv_points=read_rv_points(path))
    assert [r.status for r in rows] == ["ok", "ok", "ok"]
    summary = _summary(tmp_path / "out")
    reports = [json.loads((tmp_path / "out" / f"{n}_report.json").read_text()) for n in ("p1", "p2", "p3")]
    assert len(reports[0]["segments"]) == 17 and reports[1]["segments"] is None and reports[2]["segments"] is None
    segment_summary = reports[0]["segment_summary"]
    assert summary[0]["aha_segments_with_scar"] == str(segment_summary["segments_with_scar"])
    assert summary[0]["aha_segments_over_50_percent"] == str(segment_summary["segments_over_50_percent"])
    assert summary[0]["aha_scar_score"] == str(segment_summary["scar_score"])
    assert summary[0]["aha_scar_score_max"] == str(segment_summary["scar_score_max"]) == "64"
    # 64 of 17 segments (the cylinder has no apex slice); a report made before segment 17 says 16.
    assert summary[0]["aha_segments"] == "17"
    (tmp_path / "old.json").write_text(json.dumps({**reports[0], "segments": reports[0]["segments"][:16]}))
    assert summarize([tmp_path / "old.json"])[0][SUMMARY_COLUMNS.index("aha_segments")] == 16
    assert float(summary[0]["septal_span_deg"]) == pytest.approx(reports[0]["septal_span_deg"], abs=0.05)
    assert 100 < reports[0]["septal_span_deg"] < 140  # the two points are 120° apart on the ring
    for row in summary[1:]:
        assert all(row[c] == "" for c in SUMMARY_COLUMNS if c.startswith("aha_") or c == "septal_span_deg")
    assert "no AHA segments" in summary[2]["warnings"] and "no AHA segments" not in summary[1]["warnings"]


def test_points_for_an_exam_not_in_the_batch_stop_it_before_the_model_loads(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    calls: list[int] = []
    with pytest.raises(InputError, match=r"points.csv line 4: no input is named p2 .*: p1\)"):
        run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", _segmenter_factory(calls),
                  rv_points={"p2": ExamAnatomy(np.zeros(3), line=4)}, rv_points_source="points.csv")
    # Names compare in any case and Unicode form: "José" typed in a spreadsheet is the decomposed macOS file name.
    import unicodedata

    # A name alone (no points) must be an input's too: a misspelt one would leave its exam without segments.
    with pytest.raises(InputError, match="points.csv line 6: no input is named p9"):
        run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", _segmenter_factory(calls),
                  rv_points={"p9": ExamAnatomy(line=6)}, rv_points_source="points.csv")
    decomposed = unicodedata.normalize("NFD", "José")
    chosen = points_for_exams({"JOSÉ": ExamAnatomy(np.ones(3))},
                              plan_outputs([tmp_path / f"{decomposed}.nii.gz"], tmp_path / "out", html=False))
    assert np.array_equal(chosen[0].rv_insertion_lps, np.ones(3))
    assert calls == [] and not (tmp_path / "out").exists()


def test_summary_text_is_never_read_as_a_spreadsheet_formula(tmp_path):
    """A file named like a formula (or a warning quoting one) is shown as text by Excel and LibreOffice: OWASP's
    leading apostrophe; numbers, negative ones too, are left as numbers."""
    from scarnet.batch import BatchRow, summary_csv

    row = BatchRow("=HYPERLINK(\"http://x\")", "ok", {"scar_percent": -1.5, "warnings": "+1 | @me", "model_s": 2.0})
    cells = next(csv.DictReader(summary_csv([row]).splitlines()))
    assert cells["input"] == "'=HYPERLINK(\"http://x\")" and cells["warnings"] == "'+1 | @me"
    assert cells["scar_percent"] == "-1.5" and cells["status"] == "ok"
    write_volume(ring_volume(), tmp_path / "-2_patient.nii.gz")
    run_batch([tmp_path / "-2_patient.nii.gz"], tmp_path / "out", _segmenter_factory())
    assert _summary(tmp_path / "out")[0]["report"] == "'-2_patient_report.json"


def test_a_read_warning_is_in_the_report_once(tmp_path):
    """A file's read warnings reach the report through read_volume's own record and through the batch's: they were
    listed twice."""
    import nibabel as nib

    volume = ring_volume()
    array = np.transpose(volume.array, (2, 1, 0)).astype(np.complex64)
    nib.save(nib.Nifti1Image(array, np.diag([*volume.spacing_mm, 1.0])), tmp_path / "c.nii.gz")
    rows = run_batch([tmp_path / "c.nii.gz"], tmp_path / "out", _segmenter_factory())
    assert rows[0].status == "ok"
    said = json.loads((tmp_path / "out" / "c_report.json").read_text())["input_warnings"]
    assert said == [f"{tmp_path / 'c.nii.gz'}: complex-valued image; its magnitude is used"]

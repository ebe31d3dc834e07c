"""Many exams in one run (scarnet.batch, ``scarnet batch``): outputs per exam, the summary, failures that
do not stop the others, and outputs checked before anything runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_cli import BUNDLED_WEIGHTS
from test_inference import RingModel, ring_volume

from scarnet.batch import SUMMARY_COLUMNS, exam_name, plan_outputs, run_batch
from scarnet.errors import InputError, OutputExistsError, WeightsError
from scarnet.inference import Segmenter
from scarnet.io import write_volume


def _segmenter_factory(calls: list[int] | None = None):
    def make():
        if calls is not None:
            calls.append(1)
        segmenter = Segmenter(RingModel(), device="cpu", flip_check=False)
        return lambda volume, name: segmenter(volume, name=name)
    return make


def _summary(folder: Path) -> list[dict[str, str]]:
    with (folder / "summary.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("path, name", [("a/lge.nii.gz", "lge"), ("b.NRRD", "b"), ("x.mha", "x"),
                                        ("dicom/exam_07", "exam_07"), ("dicom/exam_07/", "exam_07"),
                                        (".nii.gz", ".nii.gz"), ("c.seg.nrrd", "c")])
def test_exam_names(path, name):
    assert exam_name(path) == name


def test_two_inputs_of_one_name_are_refused(tmp_path):
    with pytest.raises(InputError, match="a/lge.nii.gz and b/LGE.nrrd would both write"):
        plan_outputs(["a/lge.nii.gz", "b/LGE.nrrd"], "out", html=False)
    # An input among this run's outputs (`batch data/* --out data` after an earlier run), or the output folder.
    with pytest.raises(InputError, match="also one of this run's outputs"):
        plan_outputs([tmp_path / "p1.nii.gz", tmp_path / "p1_report.json"], tmp_path, html=False)
    with pytest.raises(InputError, match="both an input and the output folder"):
        plan_outputs([tmp_path], tmp_path, html=False)
    with pytest.raises(InputError, match="no name"):
        exam_name("/")
    assert exam_name(tmp_path / "exam_07" / "..") == tmp_path.name


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
        # The ring stand-in is unlike any LGE: the exam's warning is in its report and its summary line.
        assert row["warnings"] and row["warnings"] == " | ".join(report["inference"]["warnings"])
    assert [r.status == "ok" for r in rows] == [True, False, True]


def test_outputs_are_checked_before_the_model_loads(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    (out / "p1_report.json").write_text("an earlier run's report")
    calls: list[int] = []
    with pytest.raises(OutputExistsError, match="p1_report.json"):
        run_batch([tmp_path / "p1.nii.gz"], out, _segmenter_factory(calls))
    assert calls == [] and sorted(p.name for p in out.iterdir()) == ["p1_report.json"]
    rows = run_batch([tmp_path / "p1.nii.gz"], out, _segmenter_factory(calls), overwrite=True)
    assert calls == [1] and rows[0].status == "ok"
    assert json.loads((out / "p1_report.json").read_text())["total"]["scar_ml"] > 0


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

        def interrupted_at_the_second(volume, name):
            calls.append(name)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return segment(volume, name)
        return interrupted_at_the_second

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_batch([tmp_path / f"{n}.nii.gz" for n in ("p1", "p2", "p3")], out, make)
    assert sorted(p.name for p in out.iterdir()) == ["p1.seg.nrrd", "p1_report.json", "summary.csv"]
    assert [r["status"] for r in _summary(out)] == ["ok", "not run", "not run"]


def test_a_summary_that_appears_during_the_run_is_not_replaced(tmp_path):
    write_volume(ring_volume(), tmp_path / "p1.nii.gz")
    out = tmp_path / "out"

    def make():  # called after the outputs were checked: another run writes into the folder meanwhile
        out.mkdir(exist_ok=True)
        (out / "summary.csv").write_text("another run's summary")
        return _segmenter_factory()()

    with pytest.raises(OutputExistsError, match="summary.csv"):
        run_batch([tmp_path / "p1.nii.gz"], out, make)
    assert (out / "summary.csv").read_text() == "another run's summary"


def test_warnings_before_a_failure_are_kept(tmp_path):
    import warnings

    from scarnet.errors import NoHeartFoundError

    write_volume(ring_volume(), tmp_path / "p1.nii.gz")

    def make():
        def warn_then_fail(volume, name):
            warnings.warn("slices 3 and 4 are 20 mm apart", UserWarning, stacklevel=1)
            raise NoHeartFoundError("no heart found in p1")
        return warn_then_fail

    rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", make)
    assert rows[0].status == "failed: no heart found in p1"
    assert rows[0].warnings == ["slices 3 and 4 are 20 mm apart"]
    assert _summary(tmp_path / "out")[0]["warnings"] == "slices 3 and 4 are 20 mm apart"


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_command_line_batch(tmp_path):
    from scarnet.phantom import make_phantom

    (tmp_path / "d[").mkdir()
    write_volume(make_phantom(3).image, tmp_path / "d[" / "x].nii.gz")  # "[/x]" is not read as terminal markup
    (tmp_path / "exam2.nii.gz").write_bytes(np.zeros(10, dtype=np.uint8).tobytes())

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "batch", "d[/x].nii.gz", "exam2.nii.gz", "--out",
                               "res", "--device", "cpu", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    result = run()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("scarnet: [2/2] exam2.nii.gz: failed: ") and "Traceback" not in result.stderr
    assert lines[-1] == "scarnet: error: 1 of 2 exams failed (see res/summary.csv)"
    assert "[1/2] d[/x].nii.gz: scar" in result.stdout
    assert [r["status"] for r in _summary(tmp_path / "res")][0] == "ok"
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

        def warn_then_segment(volume, name):
            warnings.warn("a library's note", UserWarning, stacklevel=1)
            return segment(volume, name)
        return warn_then_segment

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes the exam
        rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", make)
    report = json.loads((tmp_path / "out" / "p1_report.json").read_text())
    assert report["input_warnings"] == ["slice positions are approximate"]
    assert rows[0].warnings[0] == "slice positions are approximate" and len(rows[0].warnings) == 2  # + the model's
    assert rows[0].other_warnings == ["a library's note"]

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
                                        (".nii.gz", ".nii.gz"), ("c.seg.nrrd", "c.seg")])
def test_exam_names(path, name):
    assert exam_name(path) == name


def test_two_inputs_of_one_name_are_refused():
    with pytest.raises(InputError, match="a/lge.nii.gz and b/LGE.nrrd would both write"):
        plan_outputs(["a/lge.nii.gz", "b/LGE.nrrd"], "out", html=False)


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


@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_command_line_batch(tmp_path):
    from scarnet.phantom import make_phantom

    write_volume(make_phantom(3).image, tmp_path / "exam1.nii.gz")
    (tmp_path / "exam2.nii.gz").write_bytes(np.zeros(10, dtype=np.uint8).tobytes())

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "batch", "exam1.nii.gz", "exam2.nii.gz", "--out",
                               "res", "--device", "cpu", *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)

    result = run()
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("scarnet: [2/2] exam2.nii.gz: failed: ") and "Traceback" not in result.stderr
    assert lines[-1] == "scarnet: error: 1 of 2 exams failed (see res/summary.csv)"
    assert "[1/2] exam1.nii.gz: scar" in result.stdout
    assert [r["status"] for r in _summary(tmp_path / "res")][0] == "ok"
    result = run()  # again: the outputs exist
    assert result.returncode == 2 and "--overwrite" in result.stderr and "[1/2]" not in result.stdout


def test_warnings_while_an_exam_runs_stay_with_that_exam(tmp_path):
    import warnings

    write_volume(ring_volume(), tmp_path / "p1.nii.gz")

    def make():
        segment = _segmenter_factory()()

        def warn_then_segment(volume, name):
            warnings.warn("slice positions are approximate", UserWarning, stacklevel=1)
            return segment(volume, name)
        return warn_then_segment

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing escapes the exam
        rows = run_batch([tmp_path / "p1.nii.gz"], tmp_path / "out", make)
    report = json.loads((tmp_path / "out" / "p1_report.json").read_text())
    assert report["input_warnings"] == ["slice positions are approximate"]
    assert rows[0].warnings[0] == "slice positions are approximate" and len(rows[0].warnings) == 2

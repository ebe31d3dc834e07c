"""The ``scarnet`` command as a user runs it: real processes, real files, one-line errors, nothing written."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import requires_torch

import scarnet
from scarnet.volume import Volume


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scarnet", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_phantom_then_quantify_matches_voxel_counts(tmp_path):
    result = run("phantom", "--seed", "7", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    result = run("quantify", "pl.nii.gz", "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    # What it is for, in the terminal as in the JSON (and the page and the bullseye).
    assert report["intended_use"].startswith("Research use only: not for clinical diagnosis")
    assert "Research use only: not for clinical diagnosis" in " ".join(result.stdout.split())
    # independent reading of the labelmap with SimpleITK
    image = sitk.ReadImage(str(tmp_path / "pl.nii.gz"))
    labels = sitk.GetArrayFromImage(image)
    voxel_ml = float(np.prod(image.GetSpacing())) / 1000
    assert len(report["slices"]) == labels.shape[0]
    for k, s in enumerate(report["slices"]):
        assert s["index"] == k
        myo = np.isin(labels[k], (2, 3, 4)).sum() * voxel_ml
        scar = np.isin(labels[k], (3, 4)).sum() * voxel_ml
        assert s["myocardium_ml"] == pytest.approx(myo, rel=1e-3, abs=1e-9)
        assert s["scar_ml"] == pytest.approx(scar, rel=1e-3, abs=1e-9)
        assert s["mvo_ml"] == pytest.approx((labels[k] == 4).sum() * voxel_ml, rel=1e-3, abs=1e-9)
    assert report["total"]["scar_ml"] == pytest.approx(np.isin(labels, (3, 4)).sum() * voxel_ml, rel=1e-3)
    assert report["total"]["scar_ml"] > 0  # seed 7 has an infarct
    # Into a pipe (a log file), each sentence on one line: rich broke them at 80 columns, mid-sentence; COLUMNS, when
    # set, still decides.
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    for columns, whole in ((None, True), ("60", False)):
        piped = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "pl.nii.gz"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=120,
                               env=environment if columns is None else {**environment, "COLUMNS": columns})
        sentence = "Research use only: not for clinical diagnosis. Every slice needs a reader's review"
        assert (sentence in piped.stdout.splitlines()[-1]) is whole, piped.stdout


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_standard_output_that_cannot_be_written_is_one_line(tmp_path):
    # `scarnet quantify … > table.txt` on a full disk: one line and exit 2, not an internal error.
    result = run("phantom", "--seed", "7", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "pl.nii.gz"], cwd=tmp_path,
                                stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip() == "scarnet: error: could not write to the standard output (No space left on device)"


def test_qc_flags_are_shown_whole_in_an_80_column_terminal():
    """Flags that start alike (low_confidence and low_contrast call for different actions) are never cut to one
    ellipsis: one per line, each whole."""
    import io

    from rich.console import Console

    from scarnet.cli import print_report
    from scarnet.phantom import make_phantom
    from scarnet.quantify import quantify

    phantom = make_phantom(7)
    report = quantify(phantom.labelmap, phantom.image)
    report.extra["qc"] = {}
    flags = ["low_confidence", "low_contrast", "scar_unstable", "scar_uncertain"]
    report.slices[1].qc_flags = flags
    shown = io.StringIO()
    print_report(report, Console(file=shown, width=80, force_terminal=False))
    text = shown.getvalue()
    assert all(flag in text for flag in flags) and "…" not in text.split("┡")[1]
    assert max(len(line) for line in text.splitlines()) <= 80


def test_report_tables_fit_an_80_column_terminal_without_folding():
    """The slice and AHA tables in 80 columns (a terminal's default): headers whole words, no figure or slice list
    folded onto a second line, a segment's slices as a range."""
    import io

    from rich.console import Console

    from scarnet.cli import print_report
    from scarnet.phantom import anterior_rv_insertion_lps, make_phantom
    from scarnet.quantify import quantify

    phantom = make_phantom(7)
    report = quantify(phantom.labelmap, phantom.image, rv_insertion_lps=anterior_rv_insertion_lps(phantom))
    report.extra["qc"] = {}
    report.slices[-1].qc_flags = ["low_confidence"]
    assert report.segments is not None and report.segments[0].slices == [0, 1, 2, 3, 4]
    shown = io.StringIO()
    print_report(report, Console(file=shown, width=80, force_terminal=False))
    lines = shown.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    rows = [line for line in lines if line.startswith("│")]
    # Every table row is one line: the slice rows and the total, then the 17 segments, none folded.
    assert len(rows) == len(report.slices) + 1 + 17
    assert any(row.startswith("│ 1 basal anterior") and "│ 0-4 " in row for row in rows)
    headers = " ".join(line for line in lines if line.startswith("┃"))
    for word in ("position", "myo", "level", "transmural", "low_confidence"):
        assert word in headers + " ".join(rows)


def test_slice_list_text():
    from scarnet.quantify import slice_list_text

    assert slice_list_text([0, 1, 2, 3, 5, 7, 8]) == "0-3, 5, 7-8"
    assert slice_list_text([4]) == "4" and slice_list_text([]) == ""
    assert slice_list_text([3, 2, 2, 1], dash="–") == "1–3"


def test_quantify_says_once_that_a_labelmap_may_stop_short_of_the_apex(tmp_path):
    """A labelmap of a stack without its apical slices (a reader's own, another tool's): the terminal, the JSON and
    the page say that it may stop short of the apex, once each, from the labels and the report's base-apex order, as
    a model run's report does; the complete stack, not."""
    from scarnet.qc import APICAL_COVERAGE_WARNING_START

    assert run("phantom", "--seed", "1", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz", cwd=tmp_path).returncode == 0
    result = run("quantify", "pl.nii.gz", "--report", "full.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert APICAL_COVERAGE_WARNING_START not in result.stderr
    basal_end = json.loads((tmp_path / "full.json").read_text())["base_apex"]["basal_end"]
    labelmap = sitk.ReadImage(str(tmp_path / "pl.nii.gz"))
    depth = labelmap.GetSize()[2]
    # Three apical slices left out (SimpleITK moves the origin with the first slice kept).
    sitk.WriteImage(labelmap[:, :, :depth - 3] if basal_end == "first" else labelmap[:, :, 3:],
                    str(tmp_path / "cut.nii.gz"))
    result = run("quantify", "cut.nii.gz", "--report", "cut.json", "--html", "cut.html", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines()
            if line.startswith(f"scarnet: warning: {APICAL_COVERAGE_WARNING_START}: ")]
    apical_end = depth - 4 if basal_end == "first" else 0
    assert len(said) == 1 and f"apical end slice (slice {apical_end})" in said[0]
    report = json.loads((tmp_path / "cut.json").read_text())
    assert [m for m in report["labelmap_warnings"] if m.startswith(APICAL_COVERAGE_WARNING_START)] == [
        said[0][len("scarnet: warning: "):]]
    assert (tmp_path / "cut.html").read_text().count(f"<summary>T{APICAL_COVERAGE_WARNING_START[1:]}</summary>") == 1


def test_csv_report_and_seg_nrrd_labelmap(tmp_path):
    assert run("phantom", "--seed", "3", "--out", "p.nrrd", "--labelmap", "pl.seg.nrrd", cwd=tmp_path).returncode == 0
    result = run("quantify", "pl.seg.nrrd", "--report", "r.csv", "--image", "p.nrrd", "--segmented-by", "reader",
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "r.csv").read_text()
    assert text.startswith("index,position_mm,myocardium_ml,scar_ml,mvo_ml,scar_percent")
    assert "total" in text
    # Read alone, it names the exam, the labelmap measured, who drew it and the version that measured it.
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(text)) if row}
    assert rows["input"] == ["p.nrrd"] and rows["labelmap"] == ["pl.seg.nrrd"] and rows["segmented_by"] == ["reader"]
    assert rows["scarnet_version"] == [scarnet.__version__]


def test_warnings_while_reading_reach_the_saved_report(tmp_path):
    """A hand-edited .seg.nrrd with a segment of an unknown name: the warning is printed, and kept in
    the JSON and the CSV, which may be read without the terminal's output."""
    import slicerio

    assert run("phantom", "--seed", "7", "--out", "p.nrrd", "--labelmap", "pl.seg.nrrd", cwd=tmp_path).returncode == 0
    segmentation = slicerio.read_segmentation(str(tmp_path / "pl.seg.nrrd"))
    for segment in segmentation["segments"]:
        if segment["name"] == "Scar":
            segment["name"] = "Scar 2"
            segment.pop("terminology", None)
    slicerio.write_segmentation(str(tmp_path / "edited.seg.nrrd"), segmentation)
    for report in ("r.json", "r.csv"):
        result = run("quantify", "edited.seg.nrrd", "--report", report, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert "segments not counted" in result.stderr and "Scar 2 (" in result.stderr
    saved = json.loads((tmp_path / "r.json").read_text())
    assert len(saved["input_warnings"]) == 1 and "Scar 2 (" in saved["input_warnings"][0]
    warning_rows = [line for line in (tmp_path / "r.csv").read_text().splitlines() if line.startswith("warning,")]
    assert "Scar 2 (" in warning_rows[0]
    # The scar not counted leaves gaps in the wall, which the labelmap's own warnings name (after it).
    assert len(warning_rows) == 1 + len(saved.get("labelmap_warnings", []))


def test_a_warning_before_a_read_error_is_still_shown_and_kept():
    import warnings

    from scarnet.errors import InputError
    from scarnet.errors import warnings_kept_in as _warnings_kept_in

    kept: list[str] = []
    # pytest.warns stands for the terminal: what the context shows again after recording it.
    with pytest.warns(UserWarning, match="approximate"), pytest.raises(InputError), _warnings_kept_in(kept):
        warnings.warn("slice positions are approximate", stacklevel=1)
        raise InputError("labelmap and image are on different grids")
    assert kept == ["slice positions are approximate"]


def _write(path: Path, array: np.ndarray, spacing=(1.5, 1.5, 8.0)) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: image.GetDimension()])
    sitk.WriteImage(image, str(path))


def _bad_inputs(tmp_path: Path) -> dict[str, list[str]]:
    """Each bad input case → the command line that must fail."""
    rng = np.random.default_rng(0)
    (tmp_path / "text.nii.gz").write_text("not an image")
    _write(tmp_path / "flat.nii.gz", rng.random((40, 40)).astype(np.float32))
    _write(tmp_path / "four_d.nii.gz", rng.random((3, 4, 40, 40)).astype(np.float32), (1.5, 1.5, 8.0, 1.0))
    _write(tmp_path / "constant.nii.gz", np.zeros((6, 40, 40), np.float32))
    nan = rng.random((6, 40, 40)).astype(np.float32)
    nan[2, 3, 3] = np.nan
    _write(tmp_path / "nan.nrrd", nan)
    _write(tmp_path / "labels.nii.gz", np.ones((6, 40, 40), np.uint8))
    _write(tmp_path / "labels_bad_values.nii.gz", np.full((6, 40, 40), 9, np.uint8))
    _write(tmp_path / "image_other_grid.nii.gz", rng.random((6, 40, 40)).astype(np.float32), (1.0, 1.0, 8.0))
    import nibabel

    myocardium = np.zeros((40, 40, 6), np.uint8)
    myocardium[10:20, 10:20] = 2
    # Two voxel axes along one line: where the voxels lie is unknown.
    degenerate = np.array([[1.5, 0, 1.5, 0], [0, 1.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]])
    nibabel.save(nibabel.Nifti1Image(myocardium, degenerate), str(tmp_path / "degenerate.nii.gz"))
    (tmp_path / "lab\udcff.nii.gz").write_bytes((tmp_path / "labels.nii.gz").read_bytes())  # bytes \xff on disk
    return {
        "missing file": ["quantify", "missing.nii.gz", "--report", "out.json"],
        "not an image": ["quantify", "text.nii.gz", "--report", "out.json"],
        "2D": ["quantify", "flat.nii.gz", "--report", "out.json"],
        "4D": ["quantify", "four_d.nii.gz", "--report", "out.json"],
        "values outside 0-4": ["quantify", "labels_bad_values.nii.gz", "--report", "out.json"],
        "labelmap without myocardium": ["quantify", "labels.nii.gz", "--report", "out.json"],
        "degenerate affine": ["quantify", "degenerate.nii.gz", "--report", "out.json"],
        "name not UTF-8": ["quantify", "lab\udcff.nii.gz", "--report", "out.json"],
        "segment name not UTF-8": ["segment", "lab\udcff.nii.gz", "--labelmap", "out.nii.gz"],
        "weights a folder": ["segment", "image_other_grid.nii.gz", "--weights", ".", "--labelmap", "out.nii.gz"],
        "labelmap on another grid": ["quantify", "labels.nii.gz", "--image", "image_other_grid.nii.gz",
                                     "--report", "out.json"],
        "constant image": ["quantify", "labels.nii.gz", "--image", "constant.nii.gz", "--report", "out.json"],
        "NaN image": ["quantify", "labels.nii.gz", "--image", "nan.nrrd", "--report", "out.json"],
        "segment 2D": ["segment", "flat.nii.gz", "--labelmap", "out.nii.gz", "--report", "out.json"],
        "segment 4D": ["segment", "four_d.nii.gz", "--labelmap", "out.nii.gz"],
        "segment constant": ["segment", "constant.nii.gz", "--labelmap", "out.nii.gz"],
        "segment NaN": ["segment", "nan.nrrd", "--labelmap", "out.nii.gz"],
        "segment missing": ["segment", "nothing_here", "--labelmap", "out.nii.gz"],
        "corrupted weights": ["segment", "image_other_grid.nii.gz", "--weights", "text.nii.gz",
                              "--labelmap", "out.nii.gz"],
        "negative minimum scar region": ["segment", "image_other_grid.nii.gz", "--min-scar-ml", "-1",
                                         "--labelmap", "out.nii.gz"],
    }


#: What the error says, for the cases whose one line could otherwise come from an earlier check.
_BAD_INPUT_MESSAGES = {
    "labelmap without myocardium": "labels.nii.gz: no myocardium (labels 2, 3 or 4) in it",
    "degenerate affine": "degenerate.nii.gz: its header's affine is degenerate",
    "name not UTF-8": "b'lab\\xff.nii.gz': the name is not valid UTF-8",
    "segment name not UTF-8": "b'lab\\xff.nii.gz': the name is not valid UTF-8",
    "weights a folder": ".: a folder, not a weights file",
}


#: The bad inputs found only when the model's weights are loaded, which needs PyTorch.
_BAD_INPUTS_OF_THE_MODEL = ("weights a folder", "corrupted weights")


def test_every_bad_input_gives_one_line_and_writes_nothing(tmp_path):
    _check_bad_inputs(tmp_path, model=False)


@requires_torch
def test_every_bad_weights_file_gives_one_line_and_writes_nothing(tmp_path):
    _check_bad_inputs(tmp_path, model=True)


def _check_bad_inputs(tmp_path: Path, model: bool) -> None:
    """Each of :func:`_bad_inputs` (those of :data:`_BAD_INPUTS_OF_THE_MODEL` with ``model``, the others without)
    gives one line and writes nothing."""
    every_case = _bad_inputs(tmp_path)
    assert set(_BAD_INPUTS_OF_THE_MODEL) <= set(every_case)
    cases = {name: args for name, args in every_case.items() if (name in _BAD_INPUTS_OF_THE_MODEL) == model}
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, args in cases.items():
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 2, f"{name}: exit {result.returncode}, stderr {result.stderr!r}"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("scarnet: error:"), f"{name}: {result.stderr!r}"
        assert _BAD_INPUT_MESSAGES.get(name, "") in lines[0], f"{name}: {lines[0]!r}"
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, f"{name} wrote a file"


def test_an_output_never_replaces_an_input_even_with_overwrite(tmp_path):
    """``--overwrite`` replaces earlier outputs, never the image, labelmap or DICOM file a run reads."""
    from test_dicom_seg import write_dicom_series

    from scarnet.io import read_volume

    assert run("phantom", "--seed", "1", "--slices", "4", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz",
               cwd=tmp_path).returncode == 0
    (tmp_path / "sub").mkdir()
    write_dicom_series(read_volume(tmp_path / "p.nii.gz"), tmp_path / "exam")
    dicom_file = sorted((tmp_path / "exam").iterdir())[0].name
    originals = {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()}
    for args in (["segment", "p.nii.gz", "--labelmap", "p.nii.gz"],  # not first "exists: use --overwrite"
                 ["segment", "p.nii.gz", "--labelmap", "p.nii.gz", "--overwrite"],
                 ["segment", "p.nii.gz", "--labelmap", "./sub/../p.nii.gz", "--overwrite"],
                 ["quantify", "pl.nii.gz", "--image", "exam", "--dicom-seg", f"exam/{dicom_file}",
                  "--segmented-by", "reader", "--overwrite"]):
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert "is an input of this run" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert {path: path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()} == originals


def test_existing_output_is_not_replaced(tmp_path):
    assert run("phantom", "--seed", "1", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz", cwd=tmp_path).returncode == 0
    (tmp_path / "r.json").write_text("user data")
    result = run("quantify", "pl.nii.gz", "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "r.json").read_text() == "user data"
    assert run("quantify", "pl.nii.gz", "--report", "r.json", "--overwrite", cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["total"]
    # A link to a missing file is the user's too: refused before any work, not "appeared while running" after it.
    (tmp_path / "link.json").symlink_to(tmp_path / "gone" / "r.json")
    result = run("quantify", "pl.nii.gz", "--report", "link.json", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "link.json: already exists, as a link to" in result.stderr and "--overwrite" in result.stderr
    assert (tmp_path / "link.json").is_symlink() and not (tmp_path / "link.json").exists()


def test_quantify_does_not_import_torch():
    code = ("import sys; from scarnet.cli import main; import scarnet.quantify, scarnet.io; "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False"


def test_help_for_every_command():
    for command in ("phantom", "quantify", "segment", "demo", "train", "evaluate", "bench"):
        result = subprocess.run([sys.executable, "-m", "scarnet", command, "--help"], capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and "usage: scarnet" in result.stdout


@pytest.mark.parametrize("command", [["segment", "lge.nrrd"], ["batch", "lge.nrrd", "--out", "o"]])
@pytest.mark.parametrize(("options", "tta"), [([], False), (["--tta"], True), (["--tta-rotations"], "dihedral"),
                                              (["--tta", "--tta-rotations"], "dihedral")])
def test_tta_options_choose_the_segmenters_augmentation(monkeypatch, command, options, tta):
    import scarnet.inference
    from scarnet.cli import _segmenter, build_parser

    made = {}
    monkeypatch.setattr(scarnet.inference, "Segmenter", lambda **kwargs: made.update(kwargs))
    _segmenter(build_parser().parse_args([*command, *options]))
    assert made["tta"] == tta


def test_volume_helpers_roundtrip(oblique_direction):
    volume = Volume(np.zeros((3, 4, 5)), (1.2, 1.4, 9.0), (1.0, 2.0, 3.0), oblique_direction)
    corner = volume.index_to_physical([4, 3, 2])
    expected = np.array([1.0, 2.0, 3.0]) + oblique_direction @ (np.array([4, 3, 2]) * (1.2, 1.4, 9.0))
    assert corner == pytest.approx(expected)
    assert volume.ijk_to_lps_matrix()[:3, :3] @ [4, 3, 2] + (1.0, 2.0, 3.0) == pytest.approx(expected)


# Looked up by path: importing scarnet.model.registry here would import torch into this test module.
BUNDLED_WEIGHTS = Path(__file__).resolve().parents[2] / "scarnet" / "weights" / "scarnet_litemedsam.safetensors"


@requires_torch
@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_segment_writes_labelmap_seg_and_report_on_the_input_grid(tmp_path, oblique_direction):
    from scarnet.io import read_seg_nrrd, write_volume
    from scarnet.phantom import make_phantom

    phantom = make_phantom(7)
    image = Volume(phantom.image.array, (1.3, 1.6, 9.0), (-40.0, 25.5, 112.0), oblique_direction)
    write_volume(image, tmp_path / "lge.nrrd")
    result = run("segment", "lge.nrrd", "--labelmap", "out.nii.gz", "--seg", "out.seg.nrrd", "--report", "r.csv",
                 "--device", "cpu", "--tta", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr

    labelmap = sitk.ReadImage(str(tmp_path / "out.nii.gz"))
    assert labelmap.GetSize() == image.shape_ijk
    np.testing.assert_allclose(labelmap.GetSpacing(), image.spacing_mm, atol=1e-5)
    np.testing.assert_allclose(labelmap.GetOrigin(), image.origin_mm, atol=1e-4)
    np.testing.assert_allclose(np.reshape(labelmap.GetDirection(), (3, 3)), oblique_direction, atol=1e-6)
    labels = sitk.GetArrayFromImage(labelmap)
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4} and np.isin(labels, (2, 3, 4)).any()

    segmentation = read_seg_nrrd(tmp_path / "out.seg.nrrd")  # Slicer's format, read by segment name
    np.testing.assert_array_equal(segmentation.array, labels)
    np.testing.assert_allclose(segmentation.direction, oblique_direction, atol=1e-6)

    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[0].endswith("qc_flags") and len([r for r in rows if r[:1].isdigit()]) == labels.shape[0]
    voxel_ml = float(np.prod(image.spacing_mm)) / 1000
    total = next(r for r in rows if r.startswith("total,")).split(",")
    assert float(total[3]) == pytest.approx(np.isin(labels, (3, 4)).sum() * voxel_ml, rel=1e-3)

    # The JSON report carries the run's settings; an existing output is never replaced. Not quiet:
    # the table and the last line reach the pipe before the process's quick exit (cli.run).
    result = run("segment", "lge.nrrd", "--report", "r.json", "--device", "cpu", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "scar" in result.stdout and result.stdout.rstrip().endswith(" s") and "process" in result.stdout
    inference = json.loads((tmp_path / "r.json").read_text())["inference"]
    assert inference["device"] == "cpu" and inference["tta"] is False and inference["timings_s"]["total_s"] > 0
    before = (tmp_path / "out.nii.gz").read_bytes()
    result = run("segment", "lge.nrrd", "--labelmap", "out.nii.gz", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "out.nii.gz").read_bytes() == before


@requires_torch
@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_segment_skips_the_interpreter_shutdown_once_its_outputs_are_written(tmp_path):
    """``cli.run`` ends a finished ``segment`` at once (torch's shutdown costs 0.6–0.8 s), a failed one as usual."""
    from scarnet.io import write_volume
    from scarnet.phantom import make_phantom

    write_volume(make_phantom(7, n_slices=6).image, tmp_path / "lge.nrrd")
    code = ("import atexit, sys; atexit.register(print, 'shutdown ran'); sys.argv[0] = 'scarnet'; "
            "from scarnet.cli import run; run()")

    def console(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, capture_output=True, text=True,
                              timeout=300)

    finished = console("segment", "lge.nrrd", "--report", "r.json", "--device", "cpu", "--quiet")
    assert finished.returncode == 0, finished.stderr
    assert "shutdown ran" not in finished.stdout
    assert json.loads((tmp_path / "r.json").read_text())["slices"]  # written whole before the exit
    failed = console("segment", "missing.nrrd", "--report", "r2.json", "--device", "cpu", "--quiet")
    assert failed.returncode == 2 and "shutdown ran" in failed.stdout
    assert not (tmp_path / "r2.json").exists()


# --------------------------------------------------------------------------------------------
# Bad arguments and output locations: one line, exit 2, nothing written (not even part of a set)
# --------------------------------------------------------------------------------------------
#: Small ScarNet configuration for foreign-weights files written without torch.
_TINY_CONFIG = json.dumps({"encoder": "none", "input_size": 64, "unet_channels": [8, 16], "fusion_level": 1})


def _files_for_output_cases(tmp_path: Path) -> None:
    """A real LGE phantom, a labelmap, a file where folders are expected, and foreign weights."""
    from safetensors.numpy import save_file  # numpy flavour: keeps torch out of this test module

    from scarnet.io import write_volume
    from scarnet.phantom import make_phantom

    write_volume(make_phantom(7).image, tmp_path / "lge.nrrd")  # segments fine: failures are the outputs'
    _write(tmp_path / "labels.nii.gz", np.ones((6, 40, 40), np.uint8))
    (tmp_path / "afile").write_text("a file, not a folder")
    meta = {"format": "scarnet-weights-1"}
    save_file({"x": np.zeros(2, np.float16)}, str(tmp_path / "config_not_json.safetensors"),
              metadata={**meta, "config": "{not json"})
    save_file({"x": np.zeros(2, np.float16)}, str(tmp_path / "config_list.safetensors"),
              metadata={**meta, "config": "[1, 2]"})
    # head.weight of this configuration is (5, 8, 1, 1)
    save_file({"head.weight": np.zeros((1, 1, 1, 1), np.float16)}, str(tmp_path / "wrong_shape.safetensors"),
              metadata={**meta, "config": _TINY_CONFIG})


#: case → (command line, a fragment the one error line must hold)
_OUTPUT_CASES: dict[str, tuple[list[str], str]] = {
    "segment: --seg under a file": (["segment", "lge.nrrd", "--labelmap", "l.nii.gz", "--seg", "afile/s.seg.nrrd"],
                                    "afile is a file"),
    "segment: --min-scar-ml inf": (["segment", "lge.nrrd", "--min-scar-ml", "inf", "--labelmap", "l.nii.gz",
                                    "--seg", "s.seg.nrrd", "--report", "r.json"], "--min-scar-ml"),
    "segment: --min-scar-ml nan": (["segment", "lge.nrrd", "--min-scar-ml", "nan", "--report", "r.json"],
                                   "--min-scar-ml"),
    "segment: --threads -1": (["segment", "lge.nrrd", "--threads", "-1", "--labelmap", "l.nii.gz"], "--threads"),
    "segment: report name too long": (["segment", "lge.nrrd", "--labelmap", "l.nii.gz", "--report",
                                       "r" * 300 + ".json"], "too long"),
    "segment: --labelmap not a labelmap format": (["segment", "lge.nrrd", "--labelmap", "l.png"], "--labelmap"),
    "segment: weights config not JSON": (["segment", "lge.nrrd", "--weights", "config_not_json.safetensors",
                                          "--labelmap", "l.nii.gz"], "not ScarNet weights"),
    "segment: weights config a JSON list": (["segment", "lge.nrrd", "--weights", "config_list.safetensors",
                                             "--labelmap", "l.nii.gz"], "not ScarNet weights"),
    "segment: weights tensor of the wrong shape": (["segment", "lge.nrrd", "--weights", "wrong_shape.safetensors",
                                                    "--labelmap", "l.nii.gz"], "head.weight has shape"),
    "phantom: --labelmap not a labelmap format": (["phantom", "--seed", "1", "--out", "a.nii.gz", "--labelmap",
                                                   "l.png"], "--labelmap"),
    "phantom: --out as a Slicer segmentation": (["phantom", "--seed", "1", "--out", "a.seg.nrrd"], ".seg.nrrd"),
    "phantom: --out a detached header": (["phantom", "--seed", "1", "--out", "a.nhdr"], "--out"),
    "phantom: --labelmap under a file": (["phantom", "--seed", "1", "--out", "a.nii.gz", "--labelmap",
                                          "afile/l.nii.gz"], "afile is a file"),
    "phantom: --seed -1": (["phantom", "--seed", "-1", "--out", "a.nii.gz"], "--seed"),
    "phantom: --slices 0": (["phantom", "--seed", "1", "--slices", "0", "--out", "a.nii.gz"], "--slices"),
    "phantom: --slices 1 (2D)": (["phantom", "--seed", "1", "--slices", "1", "--out", "a.nii.gz"], "--slices"),
    "phantom: --slices 100": (["phantom", "--seed", "1", "--slices", "100", "--out", "a.nii.gz"], "--slices"),
    "phantom: --slices -3": (["phantom", "--seed", "1", "--slices", "-3", "--out", "a.nii.gz"], "--slices"),
    "phantom: missing --out": (["phantom", "--seed", "1"], "--out"),
    "quantify: --report under a file": (["quantify", "labels.nii.gz", "--report", "afile/r.json"], "afile is a file"),
    "demo: --seed -5": (["demo", "--seed", "-5"], "--seed"),
    "demo: --out is a file": (["demo", "--out", "afile"], "afile: is a file, not a folder"),
    "demo: --out under a file": (["demo", "--out", "afile/sub"], "cannot create the folder"),
    # the folder must not be created by a run that fails
    "demo: failing run": (["demo", "--out", "new/sub", "--weights", "config_not_json.safetensors"],
                          "not ScarNet weights"),
}


#: The cases of :data:`_OUTPUT_CASES` whose error is found when the weights are loaded, which needs PyTorch.
_OUTPUT_CASES_OF_THE_MODEL = ("segment: weights config not JSON", "segment: weights config a JSON list",
                              "segment: weights tensor of the wrong shape", "demo: failing run")


@pytest.mark.parametrize("case", [pytest.param(case, marks=requires_torch) if case in _OUTPUT_CASES_OF_THE_MODEL
                                  else case for case in _OUTPUT_CASES])
def test_bad_arguments_and_outputs_give_one_line_and_write_nothing(tmp_path, case):
    _files_for_output_cases(tmp_path)
    args, fragment = _OUTPUT_CASES[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    result = run(*args, "--quiet", cwd=tmp_path)
    assert result.returncode == 2, f"exit {result.returncode}, stderr {result.stderr!r}"
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("scarnet: error:"), result.stderr
    assert fragment in lines[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "wrote or changed a file"


def test_failed_run_with_overwrite_keeps_the_previous_outputs(tmp_path, monkeypatch, capsys):
    # In process, so that the second output can fail while it is written (disk full), after the
    # first one was: the first must not replace its previous file.
    import scarnet.io
    from scarnet.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["phantom", "--seed", "1", "--out", "a.nii.gz", "--labelmap", "l.nrrd", "--quiet"]) == 0
    previous = {name: (tmp_path / name).read_bytes() for name in ("a.nii.gz", "l.nrrd")}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(scarnet.io, "write_labelmap", disk_full)
    capsys.readouterr()
    assert main(["phantom", "--seed", "2", "--out", "a.nii.gz", "--labelmap", "l.nrrd", "--overwrite", "--quiet"]) == 2
    assert capsys.readouterr().err.strip() == "scarnet: error: l.nrrd: could not be written (No space left on device)"
    assert {name: (tmp_path / name).read_bytes() for name in ("a.nii.gz", "l.nrrd")} == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "l.nrrd"]


def _commit_two_reports(folder: Path, existing: tuple[str, ...], overwrite: bool = True) -> None:
    """Write a.json and b.json (with --overwrite), where ``existing`` of them hold a user's earlier "old"."""
    from scarnet.outputs import REPORT, OutputSet

    for name in existing:
        (folder / name).write_text("old")
    with OutputSet(overwrite=overwrite) as outputs:
        for name in ("a.json", "b.json"):
            outputs.add(folder / name, REPORT, "--report")
        outputs.prepare()
        for name in ("a.json", "b.json"):
            outputs.write(folder / name, lambda temp: temp.write_text("new"))
        outputs.commit()


@pytest.mark.skipif(sys.platform == "win32", reason="making symbolic links needs a privilege on Windows")
def test_an_output_named_by_a_link_replaces_the_file_it_points_to(tmp_path):
    # The exam's report linked to a shared folder's copy: --overwrite updates the shared copy (with its mode) and
    # keeps the link; replacing the link by a file left the shared copy stale.
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "a.json").write_text("old")
    os.chmod(shared / "a.json", 0o640)
    exam = tmp_path / "exam"
    exam.mkdir()
    (exam / "a.json").symlink_to(shared / "a.json")
    _commit_two_reports(exam, ("b.json",))
    assert (exam / "a.json").is_symlink() and os.readlink(exam / "a.json") == str(shared / "a.json")
    assert (shared / "a.json").read_text() == "new" and (exam / "b.json").read_text() == "new"
    assert stat.S_IMODE((shared / "a.json").stat().st_mode) == 0o640
    assert sorted(p.name for p in shared.iterdir()) == ["a.json"]
    assert sorted(p.name for p in exam.iterdir()) == ["a.json", "b.json"]
    result = run("phantom", "--seed", "1", "--out", "a.json.nii.gz", "--quiet", cwd=exam)
    assert result.returncode == 0, result.stderr
    result = run("quantify", "a.json.nii.gz", "--report", "a.json", cwd=exam)  # without --overwrite: refused
    assert result.returncode != 0 and "already exists" in result.stderr
    assert (shared / "a.json").read_text() == "new"


def test_output_set_takes_back_its_new_files_when_a_move_fails(tmp_path, monkeypatch):
    from scarnet.errors import OutputError

    real_replace = os.replace
    moves = []

    def second_move_fails(source, target):
        moves.append(target)
        if len(moves) == 2:
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", second_move_fails)
    with pytest.raises(OutputError, match=r"b.json: could not be moved into place"):
        _commit_two_reports(tmp_path, ())
    assert len(moves) == 2 and list(tmp_path.iterdir()) == []  # a.json was moved, then taken back


@pytest.mark.parametrize("existing", [("a.json", "b.json"), ("a.json",), ("b.json",), ()])
@pytest.mark.parametrize("stop", ["KeyboardInterrupt before", "KeyboardInterrupt after", "OSError before"])
def test_an_interrupted_commit_leaves_every_target_as_it_was(tmp_path, monkeypatch, existing, stop):
    """Ctrl-C (or a failing move) at any step of the commit, also just after a move finished: the files this run
    created go, the ones it replaced come back, nothing else is left."""
    from scarnet.errors import OutputError

    real_replace = os.replace
    steps = len(existing) + 2  # one move aside per existing file, one move into place per output
    for failing_step in range(1, steps + 1):
        def interrupted(source, target, moves=[], failing_step=failing_step):  # noqa: B006 (one list per step)
            moves.append(target)
            if len(moves) == failing_step and stop.endswith("after"):
                real_replace(source, target)
            if len(moves) == failing_step:
                raise KeyboardInterrupt if stop.startswith("KeyboardInterrupt") else OSError(5, "Input/output error")
            real_replace(source, target)

        monkeypatch.setattr(os, "replace", interrupted)
        expected = KeyboardInterrupt if stop.startswith("KeyboardInterrupt") else OutputError
        with pytest.raises(expected):
            _commit_two_reports(tmp_path, existing)
        monkeypatch.setattr(os, "replace", real_replace)
        assert {p.name: p.read_text() for p in tmp_path.iterdir()} == dict.fromkeys(existing, "old"), failing_step
        for p in tmp_path.iterdir():
            p.unlink()
    _commit_two_reports(tmp_path, existing)  # and without an interrupt, the new files replace the old
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "new", "b.json": "new"}


@pytest.fixture
def python_ctrl_c_handler():
    """Python's own Ctrl-C handler, as an interactive run has it (a background job, such as a CI run, starts
    with SIGINT ignored, and then there is no Ctrl-C to hold)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_ctrl_c_handler")
@pytest.mark.parametrize("at_move", [1, 2, 3, 4])
def test_ctrl_c_while_the_files_are_moved_takes_them_back(tmp_path, monkeypatch, at_move):
    """A real SIGINT (Ctrl-C) during any of the renames is held until they are done, and then undoes them."""
    real_replace = os.replace
    moves = []

    def interrupted(source, target):
        moves.append(target)
        if len(moves) == at_move:
            os.kill(os.getpid(), signal.SIGINT)
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _commit_two_reports(tmp_path, ("a.json", "b.json"))
    monkeypatch.setattr(os, "replace", real_replace)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "old", "b.json": "old"}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's handler is back


def _fails_then_signalled(moves: list, number: int):
    """An ``os.replace`` for :func:`_commit_two_reports`: the third move (b.json aside) fails, and signal ``number``
    comes at the fourth (a.json being put back); each target is appended to ``moves``."""
    real_replace = os.replace

    def replace(source, target):
        moves.append(target)
        if len(moves) == 3:  # b.json cannot be moved aside
            raise OSError(5, "Input/output error")
        if len(moves) == 4:
            os.kill(os.getpid(), number)
        real_replace(source, target)

    return replace


@pytest.mark.usefixtures("python_ctrl_c_handler")
def test_ctrl_c_while_a_failed_commit_is_undone_does_not_stop_the_undoing(tmp_path, monkeypatch):
    from scarnet.errors import OutputError

    moves = []
    # Putting a.json back: the user presses Ctrl-C.
    monkeypatch.setattr(os, "replace", _fails_then_signalled(moves, signal.SIGINT))
    with pytest.raises(OutputError, match="b.json: could not be moved into place"):
        _commit_two_reports(tmp_path, ("a.json", "b.json"))
    assert len(moves) == 4
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "old", "b.json": "old"}


def test_sigterm_while_a_failed_commit_is_undone_does_not_stop_the_undoing(tmp_path, monkeypatch):
    """SIGTERM (a scheduler's end of job) is held as Ctrl-C is while the files are moved and taken back: the
    earlier files all come back, not only those put back before the signal came."""
    from scarnet.cli import _terminate_as_interrupt
    from scarnet.errors import OutputError

    moves = []
    # Putting a.json back: the scheduler's SIGTERM.
    monkeypatch.setattr(os, "replace", _fails_then_signalled(moves, signal.SIGTERM))
    with _terminate_as_interrupt(), pytest.raises(OutputError, match="b.json: could not be moved into place"):
        _commit_two_reports(tmp_path, ("a.json", "b.json"))
    assert len(moves) == 4
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"a.json": "old", "b.json": "old"}


@pytest.mark.usefixtures("python_ctrl_c_handler")
@pytest.mark.parametrize("number, status, line", [(signal.SIGINT, 130, "scarnet: interrupted"),
                                                  (signal.SIGTERM, 143, "scarnet: interrupted (SIGTERM)")])
def test_an_interrupted_command_ends_with_the_status_a_shell_gives_the_signal(tmp_path, monkeypatch, capsys, number,
                                                                             status, line):
    """Ctrl-C ends with 130 and SIGTERM (timeout, a scheduler) with 143, 128 + the signal's number as a shell reports
    a process the signal ended (a workflow manager tells "killed" from "failed" by it): one line, nothing written,
    the SIGTERM handler put back."""
    import scarnet.phantom
    from scarnet.cli import main

    make_phantom = scarnet.phantom.make_phantom

    def stopped(*args, **kwargs):
        os.kill(os.getpid(), number)
        return make_phantom(*args, **kwargs)

    monkeypatch.setattr(scarnet.phantom, "make_phantom", stopped)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["phantom", "--seed", "7", "--slices", "4", "--out", str(tmp_path / "p.nii.gz")]) == status
    assert capsys.readouterr().err.splitlines() == [line]
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_symbols_the_output_encoding_cannot_hold_are_written_in_ascii(tmp_path, monkeypatch):
    """Under a locale whose encoding lacks '→' or '×' (LC_ALL=C with PYTHONUTF8=0, PYTHONIOENCODING=ascii), the
    result line is written in ASCII: the command had written its files, and ended as an internal error (3)."""
    from scarnet.cli import main

    raw = io.BytesIO()
    stdout = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stdout)
    assert main(["phantom", "--seed", "7", "--slices", "4", "--out", str(tmp_path / "p.nii.gz")]) == 0
    stdout.flush()
    assert f"-> {tmp_path / 'p.nii.gz'}" in raw.getvalue().decode("ascii")
    assert stdout.errors == "strict"  # put back after the command


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX locale")
def test_a_utf8_name_under_an_ascii_locale_is_not_called_invalid(tmp_path):
    """LC_ALL=C with PYTHONUTF8=0 (Python then reads file names as ASCII): a UTF-8 name is refused, saying how to
    run, not that the name is not UTF-8 (it is); the command's output still ends as one line, not a crash."""
    (tmp_path / "caf\u00e9.nii.gz").write_bytes(b"")
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0"}
    env.pop("PYTHONIOENCODING", None)
    result = subprocess.run([sys.executable, "-m", "scarnet", "quantify", "caf\u00e9.nii.gz"], cwd=tmp_path,
                            capture_output=True, env=env, timeout=300)
    assert result.returncode == 2
    assert result.stderr.decode("ascii").splitlines() == [
        "scarnet: error: 'caf\\xe9.nii.gz': the name is UTF-8, but this Python reads file names as ascii (the locale); "
        "run with PYTHONUTF8=1 or a UTF-8 locale (LC_ALL=C.UTF-8)"]


def test_the_ascii_stand_ins():
    from scarnet.text import STAND_IN_ERRORS

    text = "1.4\u00d71.4 mm, 120\u00b0, \u2265 1 %, caf\u00e9 \u2192 x, \udcc3"
    assert text.encode("ascii", STAND_IN_ERRORS) == b"1.4x1.4 mm, 120 deg, >= 1 %, caf\\xe9 -> x, \xc3"
    assert text.encode("latin-1", STAND_IN_ERRORS) == b"1.4\xd71.4 mm, 120\xb0, >= 1 %, caf\xe9 -> x, \xc3"


def test_a_file_that_appears_during_the_commit_is_never_replaced_without_overwrite(tmp_path, monkeypatch):
    from scarnet.errors import OutputExistsError

    real_replace = os.replace

    def another_program_writes_b(source, target):
        real_replace(source, target)
        if Path(target).name == "a.json":
            (tmp_path / "b.json").write_text("USER")

    monkeypatch.setattr(os, "replace", another_program_writes_b)
    with pytest.raises(OutputExistsError, match="b.json: appeared while running"):
        _commit_two_reports(tmp_path, (), overwrite=False)
    assert {p.name: p.read_text() for p in tmp_path.iterdir()} == {"b.json": "USER"}  # a.json taken back


def test_a_replaced_file_that_cannot_be_removed_is_said_and_the_outputs_stay(tmp_path, monkeypatch):
    real_unlink = Path.unlink

    def read_only_old_files(path, missing_ok=False):
        if path.name.endswith(".tmp.old"):
            raise PermissionError(13, "Permission denied")
        real_unlink(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only_old_files)
    with pytest.warns(RuntimeWarning, match=r"\.a\.json\..*\.tmp\.old: the file this run replaced could not be "):
        _commit_two_reports(tmp_path, ("a.json",))
    files = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert files.pop("a.json") == "new" and files.pop("b.json") == "new"
    assert list(files.values()) == ["old"]  # the one hidden file left, named in the warning


def test_a_commit_that_cannot_put_back_a_replaced_file_says_where_it_is(tmp_path, monkeypatch):
    from scarnet.errors import OutputError

    real_replace = os.replace
    moves = []

    def every_move_after_the_second_fails(source, target):
        moves.append(target)
        if len(moves) > 2:
            raise OSError(5, "Input/output error")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", every_move_after_the_second_fails)
    with pytest.raises(OutputError, match=r"b.json: could not be moved into place \(Input/output error\); the "
                                          r"earlier files are kept as .*\.a\.json\..*\.tmp\.old$") as caught:
        _commit_two_reports(tmp_path, ("a.json",))
    kept = Path(str(caught.value).rsplit(" kept as ", 1)[1])
    # a.json was replaced and could not be put back: the user's earlier file is where the message says.
    assert kept.read_text() == "old" and (tmp_path / "a.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a.json", kept.name])


def test_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    # The folder test itself (creating a file there), for every user: root writes into chmod 555
    # folders, so the subprocess test below cannot show it as root.
    import tempfile

    from scarnet.errors import OutputError
    from scarnet.outputs import REPORT, OutputSet

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with OutputSet() as outputs:
        outputs.add(tmp_path / "r.json", REPORT, "--report")
        with pytest.raises(OutputError, match=r"r.json: cannot write in .* \(Permission denied\)"):
            outputs.prepare()
    assert list(tmp_path.iterdir()) == []


def test_outputs_appear_together_with_plain_file_permissions(tmp_path):
    # 245 + 7 characters: the name fits the file system, a temporary name built from all of it would not.
    long_name = "r" * 245 + ".nii.gz"
    result = run("phantom", "--seed", "1", "--out", long_name, "--labelmap", "pl.seg.nrrd", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([long_name, "pl.seg.nrrd"])  # no leftovers
    umask = os.umask(0o022)
    os.umask(umask)
    for name in (long_name, "pl.seg.nrrd"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask
    image = sitk.ReadImage(str(tmp_path / long_name))
    assert image.GetPixelID() == sitk.sitkFloat32  # the image, not a labelmap


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_output_in_a_read_only_folder_is_refused_before_any_work(tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        (read_only / "probe").touch()
    except PermissionError:
        pass
    else:  # root (with CAP_DAC_OVERRIDE) writes anyway; the path under a file is tested for everyone
        read_only.chmod(0o755)
        pytest.skip("this user writes into read-only folders (root): chmod cannot make one unwritable")
    try:
        result = run("phantom", "--seed", "1", "--out", "a.nii.gz", "--labelmap", "ro/l.nii.gz", cwd=tmp_path)
    finally:
        read_only.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("scarnet: error: ro/l.nii.gz: cannot write in ro")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro"] and not list(read_only.iterdir())


def test_output_set_writes_all_or_nothing(tmp_path):
    from scarnet.errors import OutputError
    from scarnet.outputs import REPORT, OutputSet

    (tmp_path / "old.json").write_text("old")

    def fail(temp: Path) -> None:
        raise OSError(28, "No space left on device")

    # A later output fails after an earlier one is written: nothing appears, the previous file stays.
    with pytest.raises(OutputError, match="new.csv: could not be written"), OutputSet(overwrite=True) as outputs:
        outputs.add(tmp_path / "old.json", REPORT, "--report")
        outputs.add(tmp_path / "new.csv", REPORT, "--report")
        outputs.prepare()
        # While the work runs nothing is in the folder (a killed run leaves no temporary file).
        assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
        outputs.write(tmp_path / "old.json", lambda temp: temp.write_text("new"))
        outputs.write(tmp_path / "new.csv", fail)
        outputs.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]
    assert (tmp_path / "old.json").read_text() == "old"

    # A folder the set may create is made by the first write and removed when the set is not committed.
    with pytest.raises(RuntimeError, match="boom"), OutputSet(folder=tmp_path / "a" / "b") as outputs:
        outputs.add(tmp_path / "a" / "b" / "r.json", REPORT, "--report")
        outputs.prepare()
        assert not (tmp_path / "a").exists()
        outputs.write(tmp_path / "a" / "b" / "r.json", lambda temp: temp.write_text("{}"))
        assert (tmp_path / "a" / "b").is_dir()
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]

    with OutputSet(folder=tmp_path / "a" / "b") as outputs:
        outputs.add(tmp_path / "a" / "b" / "r.json", REPORT, "--report")
        outputs.prepare()
        outputs.write(tmp_path / "a" / "b" / "r.json", lambda temp: temp.write_text("{}"))
        assert outputs.commit() == [tmp_path / "a" / "b" / "r.json"]
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["r.json"]


@requires_torch
@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_demo_creates_its_folder_when_writing_and_never_replaces(tmp_path):
    result = run("demo", "--out", "d/sub", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    names = ["demo.seg.nrrd", "demo_bullseye.svg", "demo_labelmap.nii.gz", "demo_lge.nii.gz", "demo_report.html",
             "demo_report.json"]
    assert sorted(p.name for p in (tmp_path / "d" / "sub").iterdir()) == names
    # The demo reports the AHA segments from the phantom's own RV insertion points (anterior and inferior).
    demo_report = json.loads((tmp_path / "d" / "sub" / "demo_report.json").read_text())
    assert len(demo_report["segments"]) == 17
    assert 100.0 < demo_report["septal_span_deg"] < 160.0  # the phantom's septum, not the assumed 120°
    # Which weights made the report: the bundled file, by the sha256 its sidecar records.
    sidecar = json.loads(BUNDLED_WEIGHTS.with_suffix(".json").read_text())
    assert demo_report["inference"]["weights"] == {"file": BUNDLED_WEIGHTS.name, "sha256": sidecar["sha256"],
                                                   "bundled": True}
    assert demo_report["inference"]["scarnet_version"] == scarnet.__version__
    # It names its input, the phantom written beside it (reports of it named none), and the phantom's seed.
    assert demo_report["input"] == str(Path("d", "sub", "demo_lge.nii.gz"))
    assert demo_report["phantom"]["seed"] == 7
    assert "demo_lge.nii.gz" in (tmp_path / "d" / "sub" / "demo_report.html").read_text()
    before = {name: (tmp_path / "d" / "sub" / name).read_bytes() for name in names}
    result = run("demo", "--out", "d/sub", "--seed", "3", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert {name: (tmp_path / "d" / "sub" / name).read_bytes() for name in names} == before


@pytest.mark.parametrize(("args", "named"), [
    (["segment", "-a.nii.gz"], "-a.nii.gz"),  # a file of that name exists
    (["quantify", "-labels.nrrd"], "-labels.nrrd"),
    (["segment", "exam.nii.gz", "--report", "-r.json"], "-r.json"),  # an output, not there yet
    (["-a.nii.gz"], "-a.nii.gz")])
def test_a_file_name_that_starts_with_a_dash_gets_a_hint(args, named, tmp_path, monkeypatch, capsys):
    """argparse takes '-a.nii.gz' for an option and says only that the input is missing."""
    from scarnet.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "-a.nii.gz").write_bytes(b"")
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"; {named} was read as an option: name a file that starts with '-' as ./{named} " \
        "(see: scarnet" in lines[0], lines


@pytest.mark.parametrize("args", [["segment", "-q"], ["segment", "--rv-insertion", "-12.5", "3"]])
def test_no_dash_hint_for_what_is_no_file_name(args, tmp_path, monkeypatch, capsys):
    from scarnet.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("scarnet: error: ") and "was read as an option" not in error, error


@pytest.mark.parametrize("args", [["segment", ""], ["segment", "exam", "--report", ""], ["quantify", ""],
                                  ["quantify", "labels.nii.gz", "--image", ""], ["batch", "", "--out", "res"],
                                  ["summarize", "", "--out", "summary.csv"], ["evaluate", "--json", ""],
                                  ["phantom", "--out", "p.nii.gz", "--labelmap", ""]])
def test_an_empty_file_name_is_refused_not_read_as_the_current_folder(args, tmp_path, monkeypatch, capsys):
    """An empty argument ("$INPUT" unset in a script) was the current folder: run from a DICOM folder,
    ``segment ""`` segmented it and ``quantify --image ""`` took its series. Any file or folder name must be given."""
    from scarnet.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scarnet: error: argument ") and \
        f": must not be empty (see: scarnet {args[0]} --help)" in lines[0], lines
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("command", [["segment", "exam.nii.gz"], ["batch", "exam.nii.gz", "--out", "res"], ["demo"],
                                     ["evaluate"]])
def test_weights_bundled_means_the_bundled_weights_as_for_init_weights(command, tmp_path, monkeypatch):
    """train --init-weights took 'bundled'; segment and evaluate said 'bundled: weights file not found'."""
    from scarnet.cli import build_parser

    monkeypatch.chdir(tmp_path)
    assert build_parser().parse_args([*command, "--weights", "bundled"]).weights is None
    (tmp_path / "bundled").write_bytes(b"")  # a file of that name is that file
    assert build_parser().parse_args([*command, "--weights", "bundled"]).weights == Path("bundled")


def test_install_hints_name_the_extras_pyproject_has():
    """The messages' install hints (scarnet.extras) list each extra's packages as pyproject.toml does."""
    import re

    from scarnet.extras import EXTRA_PACKAGES, IMPORT_EXTRAS, install_hint

    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

    extras = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    for extra, packages in EXTRA_PACKAGES.items():
        # A package may be listed once per Python version (dicom: highdicom 0.22 on Python 3.9, 0.28 or later on 3.10+).
        assert sorted(packages) == sorted({re.split(r"[<>=;\[ ]", spec)[0] for spec in extras[extra]}), extra
        assert install_hint(extra).startswith(f'pip install -e ".[{extra}]"')
    assert set(IMPORT_EXTRAS.values()) == set(EXTRA_PACKAGES)


def test_a_model_run_without_torch_says_how_to_install_it(tmp_path):
    """scarnet requires torch, but an environment can lack it (``pip install --no-deps``, a broken venv): ``scarnet
    segment`` then ended in "internal error: ModuleNotFoundError"; it is a set-up step, said in one line."""
    image = tmp_path / "lge.nii.gz"
    assert run("phantom", "--seed", "3", "--out", str(image), cwd=tmp_path).returncode == 0
    code = ("import sys; sys.modules['torch'] = None; from scarnet.cli import main; "  # "import torch" fails
            f"sys.exit(main(['segment', {str(image)!r}, '--report', {str(tmp_path / 'r.json')!r}]))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "'scarnet segment' needs torch, which is not installed: pip install torch" in result.stderr
    assert "internal error" not in result.stderr and not (tmp_path / "r.json").exists()

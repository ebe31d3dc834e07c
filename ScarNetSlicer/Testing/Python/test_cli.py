"""The ``scarnet`` command as a user runs it: real processes, real files, one-line errors, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

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


def test_csv_report_and_seg_nrrd_labelmap(tmp_path):
    assert run("phantom", "--seed", "3", "--out", "p.nrrd", "--labelmap", "pl.seg.nrrd", cwd=tmp_path).returncode == 0
    result = run("quantify", "pl.seg.nrrd", "--report", "r.csv", "--image", "p.nrrd", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "r.csv").read_text()
    assert text.startswith("index,position_mm,myocardium_ml,scar_ml,mvo_ml,scar_percent")
    assert "total" in text


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
    return {
        "missing file": ["quantify", "missing.nii.gz", "--report", "out.json"],
        "not an image": ["quantify", "text.nii.gz", "--report", "out.json"],
        "2D": ["quantify", "flat.nii.gz", "--report", "out.json"],
        "4D": ["quantify", "four_d.nii.gz", "--report", "out.json"],
        "values outside 0-4": ["quantify", "labels_bad_values.nii.gz", "--report", "out.json"],
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


def test_every_bad_input_gives_one_line_and_writes_nothing(tmp_path):
    cases = _bad_inputs(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, args in cases.items():
        result = run(*args, cwd=tmp_path)
        assert result.returncode == 2, f"{name}: exit {result.returncode}, stderr {result.stderr!r}"
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("scarnet: error:"), f"{name}: {result.stderr!r}"
        assert "Traceback" not in result.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == before, f"{name} wrote a file"


def test_existing_output_is_not_replaced(tmp_path):
    assert run("phantom", "--seed", "1", "--out", "p.nii.gz", "--labelmap", "pl.nii.gz", cwd=tmp_path).returncode == 0
    (tmp_path / "r.json").write_text("user data")
    result = run("quantify", "pl.nii.gz", "--report", "r.json", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "r.json").read_text() == "user data"
    assert run("quantify", "pl.nii.gz", "--report", "r.json", "--overwrite", cwd=tmp_path).returncode == 0
    assert json.loads((tmp_path / "r.json").read_text())["total"]


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


def test_volume_helpers_roundtrip(oblique_direction):
    volume = Volume(np.zeros((3, 4, 5)), (1.2, 1.4, 9.0), (1.0, 2.0, 3.0), oblique_direction)
    corner = volume.index_to_physical([4, 3, 2])
    expected = np.array([1.0, 2.0, 3.0]) + oblique_direction @ (np.array([4, 3, 2]) * (1.2, 1.4, 9.0))
    assert corner == pytest.approx(expected)
    assert volume.ijk_to_lps_matrix()[:3, :3] @ [4, 3, 2] + (1.0, 2.0, 3.0) == pytest.approx(expected)


# Looked up by path: importing scarnet.model.registry here would import torch into this test module.
BUNDLED_WEIGHTS = Path(__file__).resolve().parents[2] / "scarnet" / "weights" / "scarnet_litemedsam.safetensors"


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

    # The JSON report carries the run's settings; an existing output is never replaced.
    result = run("segment", "lge.nrrd", "--report", "r.json", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    inference = json.loads((tmp_path / "r.json").read_text())["inference"]
    assert inference["device"] == "cpu" and inference["tta"] is False and inference["timings_s"]["total_s"] > 0
    before = (tmp_path / "out.nii.gz").read_bytes()
    result = run("segment", "lge.nrrd", "--labelmap", "out.nii.gz", "--device", "cpu", "--quiet", cwd=tmp_path)
    assert result.returncode == 2 and "--overwrite" in result.stderr
    assert (tmp_path / "out.nii.gz").read_bytes() == before

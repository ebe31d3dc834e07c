"""The SEG of :mod:`scarnet.dicom_seg` as highdicom 0.28 writes it, made with highdicom 0.22.

Python 3.9 (3D Slicer 5.6–5.8) gets highdicom 0.22 at most (0.23 and later need Python 3.10). Its Segmentation
writes the same segments, pixels, references and plane positions, but not all of what 0.28 writes.
:func:`as_highdicom_028_writes_it` adds and changes that, so that the SEG is the same with either (but for its
UIDs, dates and times, and highdicom's version; checked by writing both from the same images and comparing
them). What differs, from reading both versions' sources:

- the frames' order: 0.28 sorts the planes along the normal of the image plane (column × row cosines), 0.22
  lexicographically by their (x, y, z) position, and each frame's Dimension Index Values count the planes in that
  order; the frames (and their bit-packed pixels) are put in 0.28's order;
- Spacing Between Slices in the shared Pixel Measures, which 0.28 works out from the plane positions when the
  planes are regularly spaced along the normal (dcmqi, 3D Slicer's SEG reader, stacks the frames by it, and takes the
  slice thickness for it without one);
- the Contributing Equipment Sequence: the source's acquisition equipment, when it names its manufacturer, and
  highdicom as processing equipment; Instance Creation Date and Time; Presentation LUT Shape IDENTITY;
  "Referenced Segment Number" as the segment dimension's label (0.22: "Segment Number");
- the patient and study attributes copied from the source: 0.28 follows a newer edition of the standard
  (it copies the clinical trial issuers and Ethnic Group Code Sequence, and no longer the retired Ethnic Group);
- a lossy source without Lossy Image Compression Ratio or Method, which 0.22 fails on and 0.28 copies as it is
  (:func:`lossy_source_for_highdicom_022`);
- ``numpy.float_``, which 0.22 looks up for every frame and NumPy 2 removed (:func:`numpy_float_alias`);
- what :mod:`scarnet.dicom_seg` does itself for both: the segments' CIELab colours (0.22 has no
  ``CIELabColor.from_rgb`` nor ``display_color``), and the source's character set, which 0.22 neither checks nor
  copies.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
from collections.abc import Iterator
from typing import Any

import numpy as np

#: The highdicom from which on none of this is needed.
HIGHDICOM_028 = (0, 28)
#: Patient and study attributes (root level of the Patient, General Study, Patient Study and Clinical Trial modules)
#: that highdicom 0.28 copies from an MR source and 0.22 does not (its edition of the standard predates them), by tag:
#: pydicom 2.4 knows few of their keywords.
_COPIED_BY_028_ONLY = (0x00102161, 0x00120022, 0x00120023, 0x00120032, 0x00120041, 0x00120043, 0x00120054,
                       0x00120055)
#: ... and copied by 0.22 only: Ethnic Group, retired.
_COPIED_BY_022_ONLY = (0x00102160,)
_SEGMENT_NUMBER_POINTER = 0x0062000B
_LOSSY_DETAILS = ("LossyImageCompressionRatio", "LossyImageCompressionMethod")


@contextlib.contextmanager
def numpy_float_alias() -> Iterator[None]:
    """``numpy.float_`` while highdicom 0.22 makes a SEG with NumPy 2 (Python 3.9 gets NumPy 2.0), which removed it;
    removed again afterwards."""
    if hasattr(np, "float_"):
        yield
        return
    np.float_ = np.float64
    try:
        yield
    finally:
        del np.float_


def lossy_source_for_highdicom_022(source: Any) -> Any:
    """``source`` (a copy, given to highdicom) as highdicom 0.22 takes it: a lossy one (Lossy Image Compression 01)
    without its ratio or method loses the attribute here (0.22 reads both, and fails without them);
    :func:`as_highdicom_028_writes_it` copies it as 0.28 does. Returns the source's own value."""
    value = getattr(source, "LossyImageCompression", "00")
    if value == "01" and not all(key in source for key in _LOSSY_DETAILS):
        del source.LossyImageCompression
    return value


def as_highdicom_028_writes_it(segmentation: Any, source: Any, plane_positions: list[list[float]], lossy: Any,
                               highdicom_version: str) -> None:
    """Make ``segmentation`` (written by highdicom 0.22 from ``source``, the first source image, on planes at
    ``plane_positions``, every plane's, empty or not, in the order given to it) what highdicom 0.28 writes; ``lossy``:
    the source's Lossy Image Compression (:func:`lossy_source_for_highdicom_022`)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.valuerep import format_number_as_ds

    charset = source.get("SpecificCharacterSet")
    if charset is not None:  # one that 0.28 takes (scarnet.dicom_seg makes it so), which it copies
        segmentation.SpecificCharacterSet = copy.deepcopy(charset)
    segmentation.InstanceCreationDate = segmentation.ContentDate  # 0.28: all three of one moment
    segmentation.InstanceCreationTime = segmentation.ContentTime
    segmentation.PresentationLUTShape = "IDENTITY"
    for tag in _COPIED_BY_022_ONLY:
        if tag in segmentation:
            del segmentation[tag]
    for tag in _COPIED_BY_028_ONLY:
        if tag in source:
            segmentation.add(copy.deepcopy(source[tag]))
    segmentation.LossyImageCompression = lossy
    for key in _LOSSY_DETAILS:
        if lossy == "01" and key in source:
            setattr(segmentation, key, source[key].value)
        elif key in segmentation:
            delattr(segmentation, key)
    for item in segmentation.DimensionIndexSequence:
        if item.DimensionIndexPointer == _SEGMENT_NUMBER_POINTER:
            item.DimensionDescriptionLabel = "Referenced Segment Number"
    shared = segmentation.SharedFunctionalGroupsSequence[0]
    orientation = shared.PlaneOrientationSequence[0].ImageOrientationPatient
    measures = shared.PixelMeasuresSequence[0]
    if "SpacingBetweenSlices" not in measures:
        spacing = _slice_spacing(np.array(plane_positions, dtype=np.float64), orientation)
        if spacing is not None:
            measures.SpacingBetweenSlices = format_number_as_ds(spacing)
    _sort_frames_along_the_normal(segmentation, orientation)
    equipment = []
    acquisition = _acquisition_equipment(source)
    if acquisition is not None:
        equipment.append(acquisition)
    item = Dataset()
    item.Manufacturer = "Highdicom open-source contributors"
    item.PurposeOfReferenceCodeSequence = Sequence([_code("109102", "Processing Equipment")])
    item.ManufacturerModelName = "highdicom"
    item.SoftwareVersions = highdicom_version
    item.ContributionDateTime = _datetime(datetime.datetime.now())
    item.ContributionDescription = "Software library used to create this instance"
    equipment.append(item)
    segmentation.ContributingEquipmentSequence = Sequence(equipment)


def _normal(orientation: Any) -> np.ndarray:
    """The normal highdicom 0.28 orders planes along: column × row cosines (its volume index convention, down then
    right, right-handed)."""
    values = np.array(orientation, dtype=np.float64)
    return np.cross(values[3:], values[:3])


def _distances(positions: np.ndarray, normal: np.ndarray) -> np.ndarray:
    return (normal[None] @ positions.T).squeeze(0)  # as highdicom 0.28 computes them, to the last bit


def _slice_spacing(positions: np.ndarray, orientation: Any) -> float | None:
    """highdicom 0.28's ``get_volume_positions(positions, orientation)[0]``: the spacing of the planes when they are
    regularly spaced (to 1 %) along the normal (to 1e-3 in direction), else None; 1.0 for one plane."""
    if len(positions) == 1:
        return 1.0
    unique = np.unique(positions, axis=0)
    if len(unique) < len(positions):
        return None
    if len(unique) == 1:
        return 1.0
    normal = _normal(orientation)
    distances = _distances(unique, normal)
    order = np.argsort(distances)
    ordered = distances[order]
    spacing = (ordered[-1] - ordered[0]) / (len(ordered) - 1)
    regular = np.isclose(np.diff(ordered), spacing, rtol=1e-2, atol=0.0).all()
    spans = unique[order[1:]] - unique[order[0]]
    spans /= np.linalg.norm(spans, axis=1)[:, None]
    dots = spans @ normal
    along_normal = np.all(np.logical_or(np.abs(dots - 1.0) < 1e-3, np.abs(dots + 1.0) < 1e-3))
    return float(abs(spacing)) if regular and along_normal else None


def _sort_frames_along_the_normal(segmentation: Any, orientation: Any) -> None:
    """The frames in highdicom 0.28's order: by segment, then by plane along the normal; each frame's Dimension Index
    Values (segment, plane) with the plane counted in that order, among the planes that have a frame."""
    from pydicom.sequence import Sequence

    groups = list(segmentation.PerFrameFunctionalGroupsSequence)
    positions = np.array([[float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient]
                          for group in groups])
    planes, plane_of_frame = np.unique(positions, axis=0, return_inverse=True)
    distances = _distances(planes, _normal(orientation))
    if len(np.unique(distances)) < len(planes):
        raise ValueError("Plane positions must not contain duplicates.")  # as 0.28 refuses them
    rank = np.empty(len(planes), dtype=int)
    rank[np.argsort(distances)] = np.arange(1, len(planes) + 1)
    segments = [int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for group in groups]
    frame_ranks = [int(rank[plane]) for plane in np.asarray(plane_of_frame).reshape(-1)]
    order = sorted(range(len(groups)), key=lambda n: (segments[n], frame_ranks[n]))
    for n in order:
        groups[n].FrameContentSequence[0].DimensionIndexValues = [segments[n], frame_ranks[n]]
    segmentation.PerFrameFunctionalGroupsSequence = Sequence([groups[n] for n in order])
    pixels = int(segmentation.Rows) * int(segmentation.Columns)
    bits = np.unpackbits(np.frombuffer(segmentation.PixelData, dtype=np.uint8), bitorder="little")
    frames = bits[: pixels * len(groups)].reshape(len(groups), pixels)[order]
    data = np.packbits(frames.reshape(-1), bitorder="little").tobytes()
    segmentation.PixelData = data + b"0" * (len(data) % 2)  # 0.28's padding (sic: "0", not a null byte)


def _code(value: str, meaning: str) -> Any:
    from pydicom.dataset import Dataset

    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = "DCM"
    item.CodeMeaning = meaning
    return item


def _datetime(value: Any) -> Any:
    from pydicom.valuerep import DT

    return DT(value)


def _acquisition_equipment(source: Any) -> Any:
    """highdicom 0.28's ``ContributingEquipment.for_image_acquisition(source)``: the source's equipment, or None
    where 0.28 leaves it out (no manufacturer, or a value too long for its VR)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    manufacturer = source.get("Manufacturer")
    if manufacturer is None or manufacturer == "":
        return None
    when = source.get("AcquisitionDateTime")
    if when is None:
        date, time = source.get("AcquisitionDate"), source.get("AcquisitionTime")
        if isinstance(date, datetime.date) and isinstance(time, datetime.time):
            when = datetime.datetime.combine(date, time)
    item = Dataset()
    try:
        for key, limit in (("Manufacturer", 64), ("ManufacturerModelName", 64), ("InstitutionName", 64),
                           ("InstitutionalDepartmentName", 64), ("InstitutionAddress", 1024), ("StationName", 16),
                           ("DeviceSerialNumber", 64), ("SoftwareVersions", 64)):
            value = source.get(key)
            if value is None:
                continue
            values = [value] if isinstance(value, str) else list(value)
            if not values or any(len(v) > limit or "\\" in v for v in values):
                return None  # 0.28 raises, and leaves the item out
            setattr(item, key, value if isinstance(value, str) else values)
        if when is not None:
            item.ContributionDateTime = _datetime(when)
    except (TypeError, ValueError):
        return None
    item.ContributionDescription = "Acquisition equipment of the source image(s)"
    item.PurposeOfReferenceCodeSequence = Sequence([_code("109101", "Acquisition Equipment")])
    return item

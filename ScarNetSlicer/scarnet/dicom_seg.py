"""The result as a DICOM Segmentation (SEG) object that refers to the LGE images it was made from.

A PACS stores it in the exam's study as a new series, and DICOM viewers (OHIF, 3D Slicer with
QuantitativeReporting, Horos, ...) show it over those images. Written with highdicom (an optional
dependency: the ``dicom`` extra, ``pip install -e ".[dicom]"`` in a checkout), as a BINARY segmentation with
one segment per label
(:data:`scarnet.labels.SEGMENTS`: LV blood pool, myocardium without scar, scar, MVO; the same names,
colours and codes as the ``.seg.nrrd``), the ScarNet algorithm named in each segment.

Each frame of the SEG lies on the source image it was made from, at that image's own position
(not a regular grid's), so the SEG matches the images as the scanner stored them. The sources are
the images :func:`scarnet.dicom.read_dicom_stack` chose for the stack: single-frame images, or the
frames of one enhanced multi-frame file. An enhanced file's frames are referred to one by one (each SEG
frame names the frame it lies on by its Referenced Frame Number), and only the stack's: frames left out
of it (long-axis views in the same file, a second inversion time) get no SEG frame and no reference.
:func:`check_dicom_seg_sources` tries a SEG before the model runs, so that images a SEG cannot refer to
are refused before any work.
"""

from __future__ import annotations

import contextlib
import copy
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from . import dicom_seg_compat as compat
from .dicom import DicomStack
from .errors import InputError
from .labels import HEALTHY_MYOCARDIUM, MVO, SCAR, SEGMENTS
from .volume import Volume

#: Added to the source series' SeriesNumber to number the SEG's series (1000 when the source has none,
#: or when the sum would not fit DICOM's IS), so that a viewer lists it after the images it belongs to.
SERIES_NUMBER_OFFSET = 1000
#: The offset for each maker (:data:`SEGMENTED_BY`): the model's SEG and a reader's corrected one of the same images
#: are two series in a PACS, and should not share a number.
SERIES_NUMBER_OFFSETS = {"model": SERIES_NUMBER_OFFSET, "model-and-reader": 2000, "reader": 3000}
#: Who made a segmentation, as ``--segmented-by`` names it: the model alone, the model's result corrected by a
#: reader, or a reader by hand. DICOM records it in each segment (SegmentAlgorithmType) and a PACS shows it in the
#: series' description (no "LGE" in any: scarnet.dicom must never take a SEG for an image series).
SEGMENTED_BY = ("model", "model-and-reader", "reader")
SERIES_DESCRIPTIONS = {"model": "ScarNet segmentation", "model-and-reader": "ScarNet segmentation, reader-corrected",
                       "reader": "Scar segmentation by a reader"}
SERIES_DESCRIPTION = SERIES_DESCRIPTIONS["model"]
_HEART = ("SCT", "80891009", "Heart")
#: Each segment's SegmentDescription: the segments do not overlap, so "Myocardium" holds only what is neither scar
#: nor MVO. A viewer measuring it alone would report the healthy myocardium as the LV myocardium.
SEGMENT_DESCRIPTIONS = {
    HEALTHY_MYOCARDIUM: "Healthy only; LV myocardium = segments 2+3+4",  # LO: 64 characters at most
    SCAR: "Scar outside MVO; infarct (the report's scar) = segments 3+4",
    MVO: "Microvascular obstruction, within the infarct",
}
#: The largest value of DICOM's IS (integer string) value representation.
_MAX_IS = 2**31 - 1
#: Patient and study attributes a SEG copies from its source that DICOM lets be empty (type 2), which
#: anonymised exports often drop entirely.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")
#: The oldest highdicom the SEG is written with (pyproject's ``dicom`` extra): 0.22, the last for Python 3.9 (3D Slicer
#: 5.6–5.8), made to write the same SEG as 0.28 and later (:mod:`scarnet.dicom_seg_compat`; the segments' CIELab
#: colours, :func:`cielab_value`, and the source's character set, :func:`_highdicom_takes_charset`, are done here for
#: both). Those between (Python 3.10+) are refused: :data:`scarnet.dicom_seg_compat.HIGHDICOM_028` and later is what
#: pip installs there, and the SEG is made with 0.22 and 0.28 only.
HIGHDICOM_MIN_VERSION = (0, 22)
#: The character sets (DICOM's defined terms of Specific Character Set) highdicom 0.28 takes from a source
#: (``highdicom.SpecificCharacterSetValues``; Korean's ISO 2022 IR 149 is not among them), as plain strings for
#: highdicom 0.22, which has no such list: the SEG of a source with another is UTF-8 with either.
_CHARSETS_SINGLE = ("ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144", "ISO_IR 127", "ISO_IR 126",
                    "ISO_IR 138", "ISO_IR 148", "ISO_IR 203", "ISO_IR 13", "ISO_IR 166", "ISO_IR 192", "GB18030",
                    "GBK")
#: Code extensions: only in a multi-valued Specific Character Set; the multi-byte ones not as its first value.
_CHARSETS_MULTI_BYTE_EXTENSIONS = ("ISO 2022 IR 87", "ISO 2022 IR 159")
_CHARSETS_EXTENSIONS = ("ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 101", "ISO 2022 IR 109", "ISO 2022 IR 110",
                        "ISO 2022 IR 144", "ISO 2022 IR 127", "ISO 2022 IR 126", "ISO 2022 IR 138", "ISO 2022 IR 148",
                        "ISO 2022 IR 203", "ISO 2022 IR 13", "ISO 2022 IR 166", *_CHARSETS_MULTI_BYTE_EXTENSIONS)
#: What highdicom raises on sources it cannot refer to (no shared orientation, an attribute missing, ...).
_HIGHDICOM_REFUSALS = (ValueError, AttributeError, KeyError, TypeError, IndexError)


def check_person_name(name: str) -> None:
    """Raise :class:`InputError` unless ``name`` is a DICOM person name a SEG can hold: "Family^Given" (a caret,
    as highdicom asks, so that a name's parts are not guessed; the family name not empty), at most 64 characters
    and 5 parts (family, given, middle, prefix, suffix) per name group and 3 groups, no backslash or control
    character."""
    groups = name.split("=")
    if "^" not in name or "\\" in name or any(ord(c) < 32 for c in name) or len(groups) > 3 \
            or any(len(group) > 64 or group.count("^") > 4 for group in groups) or not name.split("^")[0].strip():
        raise InputError(f"reader {name!r}: give it as a DICOM person name, Family^Given (e.g. 'Smith^Anna'), at "
                         "most 64 characters and 5 parts, no backslash")


def cielab_value(rgb: tuple[float, float, float]) -> tuple[int, int, int]:
    """The DICOM value (RecommendedDisplayCIELabValue: L*, a*, b* as unsigned 16-bit integers, PS3.3 C.10.7.1.1)
    of the sRGB colour ``rgb`` (components 0–1, as :data:`scarnet.labels.SEGMENTS` gives them), taken to 8 bits as
    the ``.seg.nrrd``'s are shown: sRGB to CIE XYZ (D65) to CIELab, as highdicom 0.28's ``CIELabColor.from_rgb``
    (pixelmed's formulas), which highdicom 0.22 lacks."""
    def linear(c: float) -> float:
        c = round(255 * c) / 255.0
        return ((c + 0.055) / 1.055) ** 2.4 if c > 0.04045 else c / 12.92

    r, g, b = (100 * linear(c) for c in rgb)
    xyz = (r * 0.4124 + g * 0.3576 + b * 0.1805, r * 0.2126 + g * 0.7152 + b * 0.0722,
           r * 0.0193 + g * 0.1192 + b * 0.9505)

    def f(t: float) -> float:
        return t ** (1.0 / 3) if t >= 8.85645167903563082e-3 else (841.0 / 108.0) * t + 4.0 / 29.0

    fx, fy, fz = (f(v / white) for v, white in zip(xyz, (95.047, 100.0, 108.883)))
    l_star, a_star, b_star = 116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)
    return (round(l_star * 0xFFFF / 100.0), round((a_star + 128.0) * 0xFFFF / 255.0),
            round((b_star + 128.0) * 0xFFFF / 255.0))


def require_highdicom() -> Any:
    """The highdicom module (0.22.x, or 0.28 or later), or :class:`InputError` saying how to get it."""
    try:
        import highdicom
    except ImportError:
        from .extras import install_hint

        raise InputError(f"writing DICOM SEG needs highdicom, which is not installed: {install_hint('dicom')}") \
            from None
    found = str(getattr(highdicom, "__version__", "0"))
    if _version(highdicom) != HIGHDICOM_MIN_VERSION and _version(highdicom) < compat.HIGHDICOM_028:  # (major, minor)
        wanted = ".".join(map(str, HIGHDICOM_MIN_VERSION))
        newest = ".".join(map(str, compat.HIGHDICOM_028))
        raise InputError(f"writing DICOM SEG needs highdicom {wanted} (Python 3.9) or {newest} or later (highdicom "
                         f"{found} is installed): pip install --upgrade highdicom")
    return highdicom


def _version(highdicom: Any) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(getattr(highdicom, "__version__", "0")))[:2])


def check_dicom_seg_sources(stack: DicomStack) -> None:
    """Raise :class:`InputError` now when no SEG can refer to ``stack``'s images (call it before the model
    runs): a trial SEG with one labelled pixel on every slice is built, and dropped."""
    trial = np.zeros(stack.volume.array.shape, dtype=np.uint8)
    trial[:, 0, 0] = 1
    dicom_seg_dataset(stack.volume.with_array(trial), stack, algorithm_version="check", device_serial_number="check")


def dicom_seg_dataset(labelmap: Volume, stack: DicomStack, *, algorithm_version: str, device_serial_number: str,
                      series_number: int | None = None, segmented_by: str = "model", reader: str | None = None) -> Any:
    """The SEG dataset (``highdicom.seg.Segmentation``) of ``labelmap``, which must lie on ``stack``'s grid.

    ``algorithm_version`` names the software and weights in each segment (e.g. "scarnet 0.1.0, weights
    b541c9a4d329"); ``device_serial_number`` identifies the model that made it (DICOM requires one for
    the equipment; the weights' sha256 prefix). ``segmented_by`` (one of :data:`SEGMENTED_BY`) sets each
    segment's algorithm type: AUTOMATIC for the model alone, SEMIAUTOMATIC for its result corrected by a
    reader (both name the ScarNet algorithm), MANUAL for a reader's own (no algorithm named). ``reader``: who
    drew or corrected it, as a DICOM person name ("Family^Given"), recorded as ContentCreatorName.
    Raises :class:`InputError` when the labelmap is not on the stack's grid or has no labelled voxel, or when
    the source images cannot be referred to (no FrameOfReferenceUID, slices of different studies, ...).
    """
    if segmented_by not in SEGMENTED_BY:
        raise ValueError(f"segmented_by must be one of {SEGMENTED_BY}, not {segmented_by!r}")
    if reader is not None:
        check_person_name(reader)
    highdicom = require_highdicom()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from . import __version__

    _check_same_grid(labelmap, stack.volume)
    labels = np.asarray(labelmap.array).astype(np.uint8)
    if not labels.any():
        raise InputError("nothing to write as DICOM SEG: the labelmap is empty")
    sources = _sources(stack)
    missing = [key for key in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "SOPInstanceUID")
               if not str(sources[0].get(key, "") or "")]
    if missing:
        raise InputError(f"the DICOM images lack {', '.join(missing)}: a DICOM SEG cannot refer to them")
    for key, what in (("StudyInstanceUID", "studies"), ("FrameOfReferenceUID", "frames of reference")):
        # Said as such, not as highdicom's "must all be part of the same series" for images that are one series.
        found = sorted({str(source.get(key, "") or "") for source in sources})
        if len(found) > 1:
            raise InputError(f"no DICOM SEG can refer to these DICOM images: their slices are of {len(found)} "
                             f"{what} ({key} {', '.join(found[:3])}{', …' if len(found) > 3 else ''}), and a SEG "
                             "refers to images of one; the figures and the labelmap are still made without "
                             "--dicom-seg")
    if series_number is None:
        offset = SERIES_NUMBER_OFFSETS[segmented_by]
        series_number = offset + (_integer(sources[0].get("SeriesNumber")) or 0)
        if not 0 <= series_number <= _MAX_IS:
            series_number = offset
    algorithm_type = {"model": highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                      "model-and-reader": highdicom.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
                      "reader": highdicom.seg.SegmentAlgorithmTypeValues.MANUAL}[segmented_by]
    # DICOM names the algorithm unless the segments were drawn by hand.
    algorithm = None if segmented_by == "reader" else highdicom.AlgorithmIdentificationSequence(
        name="ScarNet", version=algorithm_version, family=codes.cid7162.ArtificialIntelligence)
    old = _version(highdicom) < compat.HIGHDICOM_028  # 0.22, Python 3.9's: made to write what 0.28 writes
    lossy = compat.lossy_source_for_highdicom_022(sources[0]) if old else None
    planes = _plane_positions(highdicom, stack)
    try:
        with warnings.catch_warnings(), compat.numpy_float_alias() if old else contextlib.nullcontext():
            # highdicom's notes on the source's own values (a one-part person name) are not the user's to act on.
            warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
            descriptions = [
                highdicom.seg.SegmentDescription(
                    segment_number=info.label,
                    segment_label=info.name,
                    segmented_property_category=Code(info.category[1], info.category[0], info.category[2]),
                    segmented_property_type=Code(info.type[1], info.type[0], info.type[2]),
                    algorithm_type=algorithm_type,
                    algorithm_identification=algorithm,
                    tracking_uid=highdicom.UID(),
                    tracking_id=f"{'Reader' if segmented_by == 'reader' else 'ScarNet'} {info.name}",
                    anatomic_regions=[Code(_HEART[1], _HEART[0], _HEART[2])],
                )
                for info in SEGMENTS
            ]
            for description, info in zip(descriptions, SEGMENTS):
                # As highdicom 0.28's display_color=CIELabColor.from_rgb(...) sets it; 0.22 has neither.
                description.RecommendedDisplayCIELabValue = list(cielab_value(info.color_rgb))
            segmentation = highdicom.seg.Segmentation(
                source_images=sources,
                pixel_array=labels,
                segmentation_type=highdicom.seg.SegmentationTypeValues.BINARY,
                segment_descriptions=descriptions,
                series_instance_uid=highdicom.UID(),
                series_number=series_number,
                sop_instance_uid=highdicom.UID(),
                instance_number=1,
                manufacturer="ScarNetSlicer",
                manufacturer_model_name="scarnet",
                software_versions=__version__,
                device_serial_number=device_serial_number,
                series_description=SERIES_DESCRIPTIONS[segmented_by],
                content_label="SCARNET",
                content_creator_name=reader,
                content_description="LV, myocardium, scar, MVO in LGE MRI (research use)",
                plane_positions=planes,
            )
        if old:
            positions = [[float(v) for v in (plane[0] if planes else plane).ImagePositionPatient]
                         for plane in (planes or sources)]
            compat.as_highdicom_028_writes_it(segmentation, sources[0], positions, lossy, highdicom.__version__)
    except _HIGHDICOM_REFUSALS as error:
        reason = " ".join(str(error).split())[:200]
        raise InputError(f"no DICOM SEG can refer to these DICOM images ({type(error).__name__}: {reason}); "
                         "write --seg instead, or export the series as single-frame images") from None
    if any(index is not None for index in stack.frame_indices):
        _reference_stack_frames(highdicom, segmentation, stack)
    _declare_private_codes(segmentation)
    for item in segmentation.SegmentSequence:
        if item.SegmentNumber in SEGMENT_DESCRIPTIONS:
            item.SegmentDescription = SEGMENT_DESCRIPTIONS[item.SegmentNumber]
    if "ContentCreatorName" not in segmentation:
        # Type 2 in the Content Identification Macro: present, and empty when no reader is named. highdicom leaves
        # it out, and DCMTK's dcmseg (dcmqi, Slicer's SEG reader) warns of it.
        segmentation.ContentCreatorName = ""
    if reader is not None and not reader.isascii():
        # DICOM's default repertoire is ASCII; UTF-8 holds any reader's name (and pydicom re-encodes the rest).
        segmentation.SpecificCharacterSet = "ISO_IR 192"
    if old:
        segmentation._build_luts()  # highdicom 0.22's look-up of frames (get_pixels_...), made before they were sorted
    return segmentation


def write_dicom_seg(labelmap: Volume, stack: DicomStack, path: str | Path, **options: Any) -> None:
    """Write :func:`dicom_seg_dataset` to ``path`` (a DICOM file, Part 10 format)."""
    dataset = dicom_seg_dataset(labelmap, stack, **options)
    _save_part10(dataset, path)


def add_dicom_seg(outputs: Any, path: str | Path, labelmap: Volume, report: Any, stack: DicomStack, *,
                  inference: dict[str, Any] | None, segmented_by: str = "model", reader: str | None = None) -> None:
    """Make the SEG of ``labelmap`` on ``stack``, write it into the :class:`~scarnet.outputs.OutputSet` as
    ``path`` (committed with the run's other outputs) and name it in ``report`` (:class:`~scarnet.quantify.Report`;
    ``dicom_seg``: file, SeriesInstanceUID, SOPInstanceUID, who segmented, the algorithm version it names), so
    the report and the PACS object can be matched. ``inference`` is the ``inference`` record of the report of the
    model run that made the labelmap (weights and version, :func:`provenance`); ``reader``: as for
    :func:`dicom_seg_dataset`. Call it before the report is written."""
    identity = provenance(inference)
    dataset = dicom_seg_dataset(labelmap, stack, **identity, segmented_by=segmented_by, reader=reader)
    record = {"file": Path(path).name, "series_instance_uid": str(dataset.SeriesInstanceUID),
              "sop_instance_uid": str(dataset.SOPInstanceUID), "segmented_by": segmented_by}
    if segmented_by != "reader":
        record["algorithm_version"] = identity["algorithm_version"]
    if reader is not None:
        record["reader"] = reader
    report.extra["dicom_seg"] = record
    outputs.write(path, lambda temp: _save_part10(dataset, temp))


def _save_part10(dataset: Any, path: str | Path) -> None:
    """Save as a DICOM file (preamble and File Meta Information), with pydicom 3 or with 2.4, the pydicom of
    Python 3.9 (3D Slicer 5.6–5.8), which has no ``enforce_file_format`` (3 deprecates ``write_like_original``)."""
    import pydicom

    if int(pydicom.__version__.split(".")[0]) >= 3:
        dataset.save_as(Path(path), enforce_file_format=True)
    else:
        dataset.save_as(Path(path), write_like_original=False)


def provenance(inference: dict[str, Any] | None) -> dict[str, str]:
    """:func:`dicom_seg_dataset`'s ``algorithm_version`` and ``device_serial_number`` from a report's
    ``inference`` record (:attr:`scarnet.quantify.Report.extra`): the scarnet version and the weights'
    sha256 (its first 12 characters in the version, 16 as the serial number). Without one (a labelmap whose
    model run is not known) both say so rather than name this installation's version."""
    inference = inference or {}
    sha256 = str((inference.get("weights") or {}).get("sha256") or "")
    version = inference.get("scarnet_version")
    named = f"scarnet {version}" if version else "scarnet, version not recorded"
    return {"algorithm_version": named + (f", weights {sha256[:12]}" if sha256 else ""),
            "device_serial_number": sha256[:16] or "unknown"}


def _sources(stack: DicomStack) -> list[Any]:
    """The headers highdicom gets: one per slice (single-frame images, in slice order) or the one enhanced file;
    copies, completed where DICOM allows (the stack's own are not changed)."""
    single_frame = all(index is None for index in stack.frame_indices)
    if not single_frame and (any(index is None for index in stack.frame_indices)
                             or len({id(header) for header in stack.datasets}) != 1):
        raise InputError("no DICOM SEG for a stack made from several multi-frame files: export the series as "
                         "single-frame images, or as one enhanced file")
    headers = [copy.deepcopy(header) for header in (stack.datasets if single_frame else stack.datasets[:1])]
    if not single_frame:
        _share_stack_geometry(headers[0], stack)
    for header in headers:
        _as_utf8_if_highdicom_refuses(header)
        for key in _TYPE2_COPIED:
            if key not in header:
                setattr(header, key, "")
        if single_frame:
            # scarnet.dicom took slices whose orientations differ by less than its tolerance for one stack;
            # highdicom wants them equal to the last digit.
            header.ImageOrientationPatient = headers[0].ImageOrientationPatient
            if str(header.get("SliceThickness", "") or "") == "":  # type 2 in MR images (absent or empty), but
                header.SliceThickness = f"{stack.volume.spacing_mm[2]:.6g}"  # a SEG's pixel measures need one
    return headers


def _highdicom_takes_charset(values: list[str]) -> bool:
    """Whether highdicom 0.28 takes the Specific Character Set ``values`` of a source (its
    ``_check_specific_character_set``): one value that is not a code extension, or code extensions with no multi-byte
    one first (stricter only for a lone ISO 2022 IR 58, which it lets through, though DICOM has it only as an
    extension)."""
    if len(values) == 1:
        return values[0] in _CHARSETS_SINGLE
    return bool(values) and values[0] not in _CHARSETS_MULTI_BYTE_EXTENSIONS \
        and all(value in _CHARSETS_EXTENSIONS for value in values)


def _as_utf8_if_highdicom_refuses(header: Any) -> None:
    """Give ``header`` (a copy) UTF-8 text when highdicom does not take its character set: a valid Japanese
    ``\\ISO 2022 IR 87`` starts with an empty value (the default repertoire), which highdicom refuses, and the SEG
    copies the patient's name from it. Its texts are decoded with their own set first, so they stay the same.
    Decided here, by highdicom 0.28's rules (:func:`_highdicom_takes_charset`), for 0.22 as well, which checks none
    (and copies none: :mod:`scarnet.dicom_seg_compat` does), so that both write the same SEG."""
    values = header.get("SpecificCharacterSet")
    if values is None:
        return
    values = [values] if isinstance(values, str) else list(values)
    if _highdicom_takes_charset(values):
        return
    header.decode()
    header.SpecificCharacterSet = "ISO_IR 192"


def _plane_positions(highdicom: Any, stack: DicomStack) -> list[Any] | None:
    """For one enhanced file, each slice's frame position (the frames the stack did not choose, a second
    inversion time at the same places, get no SEG frame); None for single-frame images, where frame ``k``
    of the SEG is simply image ``k``."""
    if all(index is None for index in stack.frame_indices):
        return None
    header = stack.datasets[0]
    return [highdicom.PlanePositionSequence("PATIENT", _frame_group(header, index, "PlanePositionSequence")
                                            .ImagePositionPatient)
            for index in stack.frame_indices]


#: The functional groups (of an enhanced source) that highdicom reads from the shared groups only: where a file keeps
#: them per frame (Siemens XA, Philips), the copy highdicom gets has the stack's own in the shared groups.
_SHARED_GEOMETRY = ("PlaneOrientationSequence", "PixelMeasuresSequence")


def _frame_group(header: Any, index: int, sequence: str) -> Any:
    """The item of functional group ``sequence`` of frame ``index`` (0-based) of an enhanced file, as
    :mod:`scarnet.dicom` reads it: the frame's own, else the shared one."""
    own = header.PerFrameFunctionalGroupsSequence[index]
    if sequence in own and len(own[sequence].value):
        return own[sequence].value[0]
    shared = header.get("SharedFunctionalGroupsSequence")
    if shared and sequence in shared[0] and len(shared[0][sequence].value):
        return shared[0][sequence].value[0]
    raise InputError(f"no DICOM SEG can refer to these DICOM images: frame {index + 1} of the enhanced file has no "
                     f"{sequence}")


def _share_stack_geometry(header: Any, stack: DicomStack) -> None:
    """Give ``header`` (a copy of the stack's enhanced file, for highdicom) its stack's orientation and pixel
    measures in the shared functional groups, where the file keeps them per frame.

    highdicom takes a multi-frame source's orientation and pixel measures from the shared groups alone (a SEG's frames
    share one), and refused ("Source images must have a shared orientation") files that store them per frame, as
    Siemens XA and Philips do, even where every frame of the stack has the same. The stack's frames share them (one
    plane and pixel spacing, as :mod:`scarnet.dicom` read them; the first slice's orientation is the stack's, as for
    single-frame images): that one goes to the shared groups and the per-frame ones are removed, in this copy only.
    Frames of the file left out of the stack (long-axis views) then read as in the stack's plane, here: the SEG refers
    to the stack's frames alone, by number (:func:`_reference_stack_frames`), not to frames highdicom matches."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    from .dicom import ORIENTATION_GROUP_TOLERANCE

    per_frame = header.PerFrameFunctionalGroupsSequence
    if not header.get("SharedFunctionalGroupsSequence"):
        header.SharedFunctionalGroupsSequence = Sequence([Dataset()])
    shared = header.SharedFunctionalGroupsSequence[0]
    for sequence in _SHARED_GEOMETRY:
        if not any(sequence in group for group in per_frame):
            continue  # shared already (or missing: highdicom says so)
        items = [_frame_group(header, index, sequence) for index in stack.frame_indices]
        if sequence == "PlaneOrientationSequence":
            values = np.array([[float(v) for v in item.ImageOrientationPatient] for item in items])
            if not np.allclose(values, values[0], atol=ORIENTATION_GROUP_TOLERANCE):
                raise InputError("no DICOM SEG can refer to these DICOM images: the stack's frames of the enhanced "
                                 "file are not in one plane")
        item = copy.deepcopy(items[0])
        if sequence == "PixelMeasuresSequence" and str(item.get("SliceThickness", "") or "") == "":
            item.SliceThickness = f"{stack.volume.spacing_mm[2]:.6g}"  # a SEG's pixel measures need one
        setattr(shared, sequence, Sequence([item]))
        for group in per_frame:
            if sequence in group:
                del group[sequence]


def _reference_stack_frames(highdicom: Any, segmentation: Any, stack: DicomStack) -> None:
    """Make each SEG frame refer to the enhanced file's frame it lies on, by Referenced Frame Number, and to that
    frame alone (the SEG's own Source Image Sequence names the file, without frames: the IOD has no place for them).

    highdicom finds a frame's source by its position among all the file's frames (as the copy of
    :func:`_share_stack_geometry` describes them): several where frames of another inversion time lie at the same
    places, and a frame left out of the stack wherever one lies at a slice's position. The stack says which frame each
    slice is."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence
    from pydicom.sr.coding import Code

    header = stack.datasets[0]
    positions = np.array([[float(v) for v in _frame_group(header, index, "PlanePositionSequence")
                           .ImagePositionPatient] for index in stack.frame_indices])
    # As highdicom writes them (CID 7203, CID 7202): spelt out, as pydicom's names for them differ between versions.
    derivation = highdicom.sr.CodedConcept.from_code(Code("113076", "DCM", "Segmentation"))
    purpose = highdicom.sr.CodedConcept.from_code(Code("121322", "DCM", "Source image for image processing operation"))
    for group in segmentation.PerFrameFunctionalGroupsSequence:
        position = np.array([float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient])
        distances = np.linalg.norm(positions - position, axis=1)
        slice_index = int(np.argmin(distances))
        if distances[slice_index] > 1e-3:  # highdicom placed the frame where the stack said: never
            raise RuntimeError(f"SEG frame at {position.tolist()} lies on no slice of the stack")
        source = Dataset()
        source.ReferencedSOPClassUID = header.SOPClassUID
        source.ReferencedSOPInstanceUID = header.SOPInstanceUID
        source.ReferencedFrameNumber = stack.frame_indices[slice_index] + 1
        source.PurposeOfReferenceCodeSequence = Sequence([copy.deepcopy(purpose)])
        source.SpatialLocationsPreserved = "YES"
        item = Dataset()
        item.DerivationCodeSequence = Sequence([copy.deepcopy(derivation)])
        item.SourceImageSequence = Sequence([source])
        group.DerivationImageSequence = Sequence([item])


def _declare_private_codes(segmentation: Any) -> None:
    """Name the private coding schemes the segments use (MVO's ``99SCARNET``) in the header, as DICOM asks of
    coding schemes that are not in its own list."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    private = sorted({scheme for info in SEGMENTS for scheme in (info.category[0], info.type[0])
                      if scheme.startswith("99")})
    items = []
    for scheme in private:
        item = Dataset()
        item.CodingSchemeDesignator = scheme
        item.CodingSchemeName = "ScarNetSlicer local codes"
        item.CodingSchemeResponsibleOrganization = "ScarNetSlicer"
        items.append(item)
    if items:
        segmentation.CodingSchemeIdentificationSequence = Sequence(items)


def _check_same_grid(labelmap: Volume, volume: Volume) -> None:
    # The reader's tolerance (scarnet.volume.GRID_TOLERANCE): a labelmap quantify accepted on these images is one a
    # SEG can be made of (its frames take the source images' own positions).
    if not volume.same_grid(labelmap):
        raise InputError(f"the labelmap is not on the DICOM series' grid ({volume.grid_difference(labelmap)}): a "
                         "DICOM SEG needs the segmentation of those very images")


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["SEGMENTED_BY", "SERIES_DESCRIPTION", "SERIES_DESCRIPTIONS", "SERIES_NUMBER_OFFSET", "add_dicom_seg",
           "check_dicom_seg_sources", "check_person_name", "cielab_value",
           "dicom_seg_dataset", "provenance", "require_highdicom", "write_dicom_seg"]

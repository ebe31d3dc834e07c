"""The result as a DICOM Segmentation (SEG) object that refers to the LGE images it was made from.

A PACS stores it in the exam's study as a new series, and DICOM viewers (OHIF, 3D Slicer with
QuantitativeReporting, Horos, ...) show it over those images. Written with highdicom (an optional
dependency: ``pip install "scarnet[dicom]"``), as a BINARY segmentation with one segment per label
(:data:`scarnet.labels.SEGMENTS`: LV blood pool, myocardium without scar, scar, MVO; the same names,
colours and SNOMED CT codes as the ``.seg.nrrd``), the ScarNet algorithm named in each segment.

Each frame of the SEG is the frame of the source image it lies on, with the source's own position
(not a regular grid's), so the SEG matches the images as the scanner stored them. The source images
are those :func:`scarnet.dicom.read_dicom_stack` chose for the stack: single-frame images, or the
frames of one enhanced multi-frame file.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .dicom import DicomStack
from .errors import InputError
from .labels import SEGMENTS
from .volume import Volume

#: Added to the source series' SeriesNumber to number the SEG's series (1000 when the source has none),
#: so that a viewer lists it after the images it belongs to.
SERIES_NUMBER_OFFSET = 1000
#: What the SEG's series is called in a PACS.
SERIES_DESCRIPTION = "ScarNet LGE segmentation"
_HEART = ("SCT", "80891009", "Heart")
#: Grid agreement (mm, and for direction cosines) between the labelmap and the source stack.
_GEOMETRY_TOLERANCE = 1e-3


def require_highdicom() -> Any:
    """The highdicom module, or :class:`InputError` saying how to install it."""
    try:
        import highdicom
    except ImportError:
        raise InputError('writing DICOM SEG needs highdicom: pip install "scarnet[dicom]" (or pip install highdicom)'
                         ) from None
    return highdicom


def dicom_seg_dataset(labelmap: Volume, stack: DicomStack, *, algorithm_version: str, device_serial_number: str,
                      series_number: int | None = None) -> Any:
    """The SEG dataset (``highdicom.seg.Segmentation``) of ``labelmap``, which must lie on ``stack``'s grid.

    ``algorithm_version`` names the software and weights in each segment (e.g. "scarnet 0.1.0, weights
    b541c9a4d329"); ``device_serial_number`` identifies the model that made it (DICOM requires one for
    the equipment; the weights' sha256 prefix). Raises :class:`InputError` when the labelmap is not on
    the stack's grid, has no labelled voxel, or the source images lack what a SEG must copy from them.
    """
    highdicom = require_highdicom()
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    from . import __version__

    _check_same_grid(labelmap, stack.volume)
    labels = np.asarray(labelmap.array)
    if not labels.any():
        raise InputError("nothing to write as DICOM SEG: the labelmap is empty")
    sources, pixel_array = _frames_for_sources(labels, stack)
    sources = [_with_type2_attributes(source) for source in sources]
    missing = [key for key in ("StudyInstanceUID", "FrameOfReferenceUID", "SeriesInstanceUID", "SOPInstanceUID")
               if not str(sources[0].get(key, "") or "")]
    if missing:
        raise InputError(f"the DICOM images lack {', '.join(missing)}: a DICOM SEG cannot refer to them")
    algorithm = highdicom.AlgorithmIdentificationSequence(
        name="ScarNet", version=algorithm_version, family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        highdicom.seg.SegmentDescription(
            segment_number=info.label,
            segment_label=info.name,
            segmented_property_category=Code(info.category[1], info.category[0], info.category[2]),
            segmented_property_type=Code(info.type[1], info.type[0], info.type[2]),
            algorithm_type=highdicom.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
            tracking_uid=highdicom.UID(),
            tracking_id=f"ScarNet {info.name}",
            anatomic_regions=[Code(_HEART[1], _HEART[0], _HEART[2])],
            display_color=highdicom.color.CIELabColor.from_rgb(*(round(255 * c) for c in info.color_rgb)),
        )
        for info in SEGMENTS
    ]
    source_series_number = _integer(sources[0].get("SeriesNumber"))
    if series_number is None:
        series_number = SERIES_NUMBER_OFFSET + (source_series_number or 0)
    with warnings.catch_warnings():
        # highdicom's notes on the source's own values (a one-part person name) are not the user's to act on here.
        warnings.filterwarnings("ignore", category=UserWarning, module="highdicom")
        return highdicom.seg.Segmentation(
            source_images=sources,
            pixel_array=pixel_array,
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
            series_description=SERIES_DESCRIPTION,
            content_label="SCARNET",
            content_description="LV, myocardium, scar, MVO in LGE MRI (research use)",
        )


def write_dicom_seg(labelmap: Volume, stack: DicomStack, path: str | Path, **options: Any) -> None:
    """Write :func:`dicom_seg_dataset` to ``path`` (a DICOM file, Part 10 format)."""
    dataset = dicom_seg_dataset(labelmap, stack, **options)
    dataset.save_as(Path(path), enforce_file_format=True)


def provenance(inference: dict[str, Any] | None) -> dict[str, str]:
    """:func:`dicom_seg_dataset`'s ``algorithm_version`` and ``device_serial_number`` from a report's
    ``inference`` record (:attr:`scarnet.quantify.Report.extra`): the scarnet version and the weights'
    sha256 (its first 12 characters in the version, 16 as the serial number)."""
    from . import __version__

    inference = inference or {}
    sha256 = str((inference.get("weights") or {}).get("sha256") or "")
    version = inference.get("scarnet_version") or __version__
    return {"algorithm_version": f"scarnet {version}" + (f", weights {sha256[:12]}" if sha256 else ""),
            "device_serial_number": sha256[:16] or "unknown"}


def _frames_for_sources(labels: np.ndarray, stack: DicomStack) -> tuple[list[Any], np.ndarray]:
    """The source images and a label array whose frame ``f`` is the labels on source frame ``f``: the slices'
    files in slice order, or every frame of one enhanced file (frames not in the stack stay empty)."""
    if all(index is None for index in stack.frame_indices):
        return list(stack.datasets), labels.astype(np.uint8)
    files = {id(dataset) for dataset in stack.datasets}
    if len(files) != 1 or any(index is None for index in stack.frame_indices):
        raise InputError("DICOM SEG for a stack made from several multi-frame files is not supported: export the "
                         "series as single-frame images, or as one enhanced file")
    source = stack.datasets[0]
    frames = np.zeros((int(source.NumberOfFrames), *labels.shape[1:]), dtype=np.uint8)
    for k, index in enumerate(stack.frame_indices):
        frames[index] = labels[k]
    return [source], frames


#: Patient and study attributes a SEG copies from its source that DICOM lets be empty (type 2), which
#: anonymised exports often drop entirely.
_TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
                 "StudyDate", "StudyTime", "ReferringPhysicianName")


def _with_type2_attributes(dataset: Any) -> Any:
    """``dataset``, or a copy of it with the missing type 2 attributes present and empty (the source's
    dataset is not changed: a shallow copy of a pydicom Dataset shares its elements)."""
    import copy

    missing = [key for key in _TYPE2_COPIED if key not in dataset]
    if not missing:
        return dataset
    dataset = copy.deepcopy(dataset)
    for key in missing:
        setattr(dataset, key, "")
    return dataset


def _check_same_grid(labelmap: Volume, volume: Volume) -> None:
    same = (labelmap.array.shape == volume.array.shape
            and np.allclose(labelmap.spacing_mm, volume.spacing_mm, atol=_GEOMETRY_TOLERANCE)
            and np.allclose(labelmap.origin_mm, volume.origin_mm, atol=_GEOMETRY_TOLERANCE)
            and np.allclose(labelmap.direction, volume.direction, atol=_GEOMETRY_TOLERANCE))
    if not same:
        raise InputError("the labelmap is not on the DICOM series' grid: a DICOM SEG needs the segmentation of "
                         "those very images")


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


__all__ = ["SERIES_DESCRIPTION", "SERIES_NUMBER_OFFSET", "dicom_seg_dataset", "provenance", "require_highdicom",
           "write_dicom_seg"]

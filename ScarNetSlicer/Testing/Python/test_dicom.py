"""Tests of DICOM folder reading: series choice, slice order, geometry, rescale and bad folders.

Every series is synthesised with pydicom in ``tmp_path``: an oblique short-axis stack with
non-square pixels (so swapped row/column spacing or a transposed array shows), a slice gap
(10 mm apart, 8 mm thick), shuffled file names and InstanceNumbers, and a per-slice rescale.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import random
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from conftest import write_part10
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from scarnet.dicom import list_series, read_dicom_series, read_dicom_stack, slice_identifiers
from scarnet.errors import InputError
from scarnet.io import read_volume

ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"

# An oblique, proper rotation: the columns are the row cosine, the column cosine and the normal.
_ANGLES = (0.5, -0.3, 0.8)


def _rotation() -> np.ndarray:
    a, b, c = _ANGLES
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


ROTATION = _rotation()
ROW_COSINE, COLUMN_COSINE, NORMAL = ROTATION[:, 0], ROTATION[:, 1], ROTATION[:, 2]
ROWS, COLUMNS = 6, 5  # non-square so that a transposed array cannot pass
ROW_SPACING, COLUMN_SPACING = 1.5, 1.25  # PixelSpacing = [between rows (j), between columns (i)]
SLICE_GAP = 10.0
SLICE_THICKNESS = 8.0
ORIGIN = np.array([-37.5, 12.25, 101.0])


def _raw_pixels(k: int) -> np.ndarray:
    """Distinct stored values for every voxel of slice k: 1000 k + 10 j + i + 1."""
    j, i = np.mgrid[0:ROWS, 0:COLUMNS]
    return (1000 * k + 10 * j + i + 1).astype(np.uint16)


def _slope_intercept(k: int) -> tuple[float, float]:
    # A different rescale per slice proves it is applied slice by slice (values exact in binary).
    return (0.5, -100.0) if k % 2 == 0 else (0.25, 7.0)


def _expected_array(num_slices: int) -> np.ndarray:
    slices = []
    for k in range(num_slices):
        slope, intercept = _slope_intercept(k)
        slices.append(_raw_pixels(k).astype(np.float64) * slope + intercept)
    return np.stack(slices)


def _position(k: float) -> np.ndarray:
    return ORIGIN + k * SLICE_GAP * NORMAL


def _ds_str(values) -> list[str]:
    # DS values hold at most 16 characters; 10 significant digits keep the geometry to ~1e-8 mm.
    return [f"{float(v):.10g}" for v in values]


def _write_image(
    path: Path,
    *,
    series_uid: str,
    series_number: int,
    description: str,
    position: np.ndarray,
    orientation: tuple[np.ndarray, np.ndarray] = (ROW_COSINE, COLUMN_COSINE),
    pixels: np.ndarray,
    instance_number: int,
    slope: float = 1.0,
    intercept: float = 0.0,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "M", "NORM"),
    inversion_time: float | None = None,
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    **extra,
) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.PatientName = "Synthetic^LGE"
    ds.PatientID = "SYN001"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.InstanceNumber = instance_number
    ds.ImageType = list(image_type)
    ds.ImagePositionPatient = _ds_str(position)
    ds.ImageOrientationPatient = _ds_str(np.concatenate(orientation))
    ds.PixelSpacing = _ds_str([ROW_SPACING, COLUMN_SPACING])
    ds.SliceThickness = SLICE_THICKNESS
    ds.SliceLocation = f"{float(position @ NORMAL):.6g}"
    if inversion_time is not None:
        ds.InversionTime = inversion_time
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    for key, value in extra.items():
        setattr(ds, key, value)
    write_part10(ds, path)


def _write_stack(
    folder: Path,
    *,
    num_slices: int = 4,
    series_number: int = 7,
    description: str = "LGE PSIR SAX",
    seed: int = 0,
    inversion_time: float | None = 300.0,
    positions: list[float] | None = None,
    **kwargs,
) -> str:
    """Write one stack with shuffled file names and InstanceNumbers; return its SeriesInstanceUID."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    rng = random.Random(seed)
    ks = list(range(num_slices))
    write_order = ks[:]
    rng.shuffle(write_order)
    instance_numbers = [n + 1 for n in range(num_slices)]
    rng.shuffle(instance_numbers)
    # InstanceNumber descending with position would already be "unsorted"; make sure it is not the identity.
    if instance_numbers == sorted(instance_numbers):
        instance_numbers.reverse()
    for k in write_order:
        slope, intercept = _slope_intercept(k)
        location = positions[k] if positions is not None else k
        _write_image(
            folder / f"s{series_number}_{rng.randrange(10**6):06d}_{k}.dcm",
            series_uid=uid,
            series_number=series_number,
            description=description,
            position=_position(location),
            pixels=_raw_pixels(k),
            instance_number=instance_numbers[k],
            slope=slope,
            intercept=intercept,
            inversion_time=inversion_time,
            **kwargs,
        )
    return uid


def _write_localizer(folder: Path, series_number: int = 1) -> str:
    """Three orthogonal single slices in one series, as scanners write localizers."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    eye = np.eye(3)
    for n, (row, column) in enumerate([(eye[0], eye[1]), (eye[0], eye[2]), (eye[1], eye[2])]):
        _write_image(
            folder / f"loc_{n}.dcm",
            series_uid=uid,
            series_number=series_number,
            description="localizer",
            position=np.array([-100.0, -100.0, 0.0]),
            orientation=(row, column),
            pixels=_raw_pixels(n),
            instance_number=n + 1,
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        )
    return uid


def _check_geometry(volume, num_slices: int, first_position: np.ndarray) -> None:
    assert volume.array.shape == (num_slices, ROWS, COLUMNS)
    assert volume.spacing_mm == pytest.approx((COLUMN_SPACING, ROW_SPACING, SLICE_GAP), abs=1e-6)
    np.testing.assert_allclose(volume.direction, ROTATION, atol=1e-7)
    assert np.linalg.det(volume.direction) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(volume.origin_mm, first_position, atol=1e-6)
    # Every corner voxel lands where the DICOM headers put it.
    for k in (0, num_slices - 1):
        for j in (0, ROWS - 1):
            for i in (0, COLUMNS - 1):
                expected = _position(k) + i * COLUMN_SPACING * ROW_COSINE + j * ROW_SPACING * COLUMN_COSINE
                np.testing.assert_allclose(volume.index_to_physical([i, j, k]), expected, atol=1e-5)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message and message.strip() == message and message
    return message


# --------------------------------------------------------------------------------------------
def test_stack_sorted_by_position_with_gap_and_rescale(tmp_path: Path) -> None:
    _write_stack(tmp_path / "exam", num_slices=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a regular stack must read without any warning
        volume = read_dicom_series(tmp_path / "exam")
    _check_geometry(volume, 5, _position(0))
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, _expected_array(5))
    # Spacing comes from positions (10 mm), never from SliceThickness (8 mm).
    assert volume.spacing_mm[2] != pytest.approx(SLICE_THICKNESS)
    np.testing.assert_allclose(volume.slice_positions_mm(), [_position(k) @ NORMAL for k in range(5)], atol=1e-6)


def test_stack_written_against_the_normal_is_reordered(tmp_path: Path) -> None:
    # Slice k at -10 k mm: ascending order along the normal is k = 4, 3, ..., 0.
    _write_stack(tmp_path / "exam", num_slices=5, positions=[0, -1, -2, -3, -4])
    volume = read_dicom_series(tmp_path / "exam")
    np.testing.assert_allclose(volume.origin_mm, _position(-4), atol=1e-6)
    np.testing.assert_allclose(volume.direction[:, 2], NORMAL, atol=1e-7)
    np.testing.assert_array_equal(volume.array, _expected_array(5)[::-1])


def _headers_by_position(folder: Path) -> list[dict]:
    """What each file of a folder says of itself: its position, InstanceNumber and SliceLocation."""
    headers = []
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        headers.append({"position": [float(v) for v in ds.ImagePositionPatient],
                        "instance_number": int(ds.InstanceNumber), "slice_location_mm": float(ds.SliceLocation)})
    return headers


@pytest.mark.parametrize("positions", [None, [0, -1, -2, -3, -4]], ids=["along", "against the normal"])
def test_each_slice_keeps_the_instance_number_and_slice_location_of_its_file(tmp_path: Path, positions) -> None:
    # InstanceNumbers are shuffled against position: each slice must name its own file, found by position.
    _write_stack(tmp_path / "exam", num_slices=5, positions=positions)
    volume = read_dicom_series(tmp_path / "exam")
    by_location = {round(h["slice_location_mm"], 3): h for h in _headers_by_position(tmp_path / "exam")}
    assert volume.source_slices is not None and len(volume.source_slices) == 5
    for k, (identifiers, position_mm) in enumerate(zip(volume.source_slices, volume.slice_positions_mm())):
        header = by_location[round(float(position_mm), 3)]
        assert identifiers == {"instance_number": header["instance_number"], "frame_number": None,
                               "slice_location_mm": pytest.approx(header["slice_location_mm"])}, k
    assert [s["instance_number"] for s in volume.source_slices] != [1, 2, 3, 4, 5]  # not by InstanceNumber
    # Kept by with_array (same slices), by nothing that makes a new grid.
    assert volume.with_array(volume.array * 2).source_slices == volume.source_slices


def test_enhanced_frames_are_named_by_frame_number(tmp_path: Path) -> None:
    _write_enhanced(tmp_path / "exam", [2, 0, 3, 1])
    volume = read_dicom_series(tmp_path / "exam")
    # Slice k is stored as frame [2, 0, 3, 1].index(k) + 1; the file has no InstanceNumber.
    assert volume.source_slices == [{"instance_number": None, "frame_number": n, "slice_location_mm": None}
                                    for n in (2, 4, 1, 3)]


def test_slice_identifiers_place_headers_by_position_or_give_none(tmp_path: Path) -> None:
    # As the Slicer module reads them from Slicer's DICOM database: in any order, matched by position.
    _write_stack(tmp_path / "exam", num_slices=4)
    volume = read_dicom_series(tmp_path / "exam")
    headers = _headers_by_position(tmp_path / "exam")
    random.Random(3).shuffle(headers)
    assert slice_identifiers(volume, headers) == volume.source_slices
    assert slice_identifiers(volume, headers[:3]) is None  # a slice without its image
    assert slice_identifiers(volume, headers[:3] + headers[:1]) is None  # two images on one slice
    half_way = [dict(h, position=list(np.asarray(h["position"]) + 0.5 * SLICE_GAP * NORMAL)) for h in headers]
    assert slice_identifiers(volume, half_way) is None  # between slices: not this volume's images
    assert slice_identifiers(volume, [dict(h, position="?") for h in headers]) is None
    assert slice_identifiers(volume, [dict(h, position=[float("nan")] * 3) for h in headers]) is None
    nan_location = [dict(h, slice_location_mm=float("nan")) for h in headers]
    assert all(s["slice_location_mm"] is None for s in slice_identifiers(volume, nan_location))


def test_quantify_of_a_dicom_exam_names_each_slice_in_the_table_and_report(tmp_path: Path, capsys) -> None:
    from scarnet.cli import main
    from scarnet.io import write_labelmap

    _write_stack(tmp_path / "exam", num_slices=4)
    image = read_volume(tmp_path / "exam")
    labels = np.zeros(image.array.shape, dtype=np.uint8)
    labels[:, 1:4, 1:4] = 2
    labels[2, 2, 2] = 3
    write_labelmap(image.with_array(labels), tmp_path / "labels.nii.gz")
    assert main(["quantify", str(tmp_path / "labels.nii.gz"), "--image", str(tmp_path / "exam"),
                 "--report", str(tmp_path / "report.csv")]) == 0
    table = capsys.readouterr().out
    header = [line for line in table.splitlines() if line.startswith("┃")]  # "DICOM" over "image", one column
    assert "DICOM" in header[0] and header[0].index("DICOM") == header[1].index("image")
    # The series the image came from, after the image, not after the labelmap.
    expected = f"labels.nii.gz on {tmp_path / 'exam'} (DICOM series #7 'LGE PSIR SAX')"
    assert "".join(expected.split()) in "".join(table.split())  # the title as rich wraps it
    assert main(["quantify", str(tmp_path / "labels.nii.gz"), "--image", str(tmp_path / "exam"),
                 "--report", str(tmp_path / "report.json"), "--quiet", "--html", str(tmp_path / "r.html")]) == 0
    # The page's input is the image, as the JSON's, and the labelmap its segmentation.
    assert ("Input: exam (DICOM series #7 &#x27;LGE PSIR SAX&#x27;) · Segmentation: labelmap labels.nii.gz"
            in (tmp_path / "r.html").read_text())
    assert json.loads((tmp_path / "report.json").read_text())["input_series"]["series_number"] == 7
    rows = list(csv.reader(io.StringIO((tmp_path / "report.csv").read_text())))
    # Read alone, the CSV still says which exam: the image it was made on, and its series.
    assert ["input", str(tmp_path / "exam")] in rows and ["dicom_series", "#7 'LGE PSIR SAX'"] in rows
    column = rows[0].index("dicom_instance_number")
    expected = [str(s["instance_number"]) for s in image.source_slices]
    assert [row[column] for row in rows[1:5]] == expected
    # The table's rows carry the same numbers, in slice order.
    table_rows = [line.split("│") for line in table.splitlines() if line.count("│") > 4]
    slice_rows = [cells for cells in table_rows if cells[1].strip().isdigit()]
    assert [cells[1].strip() for cells in slice_rows] == ["0", "1", "2", "3"]
    assert [cells[3].strip() for cells in slice_rows] == expected


def test_damaged_dicom_files_are_named_not_skipped_quietly(tmp_path: Path) -> None:
    """A DICOM file cut short (its preamble or its name says DICOM) is left out with a warning naming it, whether
    or not the stack's own checks then notice a missing slice; files that are not DICOM, and DICOM objects
    without pixels, stay quiet."""
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=5)
    (exam / "notes.txt").write_text("not DICOM")
    (exam / "README").write_bytes(b"")  # an empty file that does not say it is DICOM
    report = pydicom.Dataset()  # a DICOM object without pixels: a structured report
    report.file_meta = pydicom.dataset.FileMetaDataset()
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    report.file_meta.MediaStorageSOPInstanceUID = report.SOPInstanceUID = generate_uid()
    report.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    report.Modality, report.SeriesInstanceUID = "SR", generate_uid()
    write_part10(report, exam / "sr.dcm")
    names = sorted((path for path in exam.glob("s7_*.dcm")), key=lambda path: int(path.stem.split("_")[-1]))
    message = r"DICOM file\(s\) could not be read \(empty, cut short or damaged\) and were left out \(a slice is " \
              r"missing if one belongs to the exam\): "
    # The last slice's file cut short by an interrupted copy: nothing left, the file meta alone, or the file meta and
    # the start of the dataset (patient and study, not yet the series or the image's size). The stack is evenly
    # spaced without it, so only the warning tells that the exam has lost a slice.
    last = names[-1]
    whole = last.read_bytes()
    # ... and cut inside the dataset's SOPClassUID (its stub names no class; the file meta before it still does).
    in_sop_class = whole.index(MRImageStorage.encode(), whole.index(b"\x08\x00\x16\x00")) + 10
    for size in (0, 100, 300, 600, in_sop_class):
        last.write_bytes(whole[:size])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            volume = read_volume(exam)
        # That warning alone: pydicom's own notices on the damaged file ("End of file reached before delimiter")
        # name no file and would only confuse.
        assert [str(warning.message) for warning in caught] == [
            f"{exam}: 1 DICOM file(s) could not be read (empty, cut short or damaged) and were left out (a slice is "
            f"missing if one belongs to the exam): {last.name}"], size
        assert volume.num_slices == 4, size
    broken = names[0]
    broken.write_bytes(broken.read_bytes()[:128] + b"DICM" + b"\xff" * 40)  # a header pydicom cannot parse
    with pytest.warns(UserWarning, match=f"2 {message}"):
        list_series(exam)


def _inverted(values: np.ndarray) -> np.ndarray:
    """MONOCHROME1 values made MONOCHROME2-like: one mapping for the whole stack, keeping its range."""
    return values.max() + values.min() - values


def test_monochrome1_series_is_inverted_once_for_the_whole_series(tmp_path: Path) -> None:
    # Same stored values and per-slice rescales as the MONOCHROME2 tests: inverted after the rescale, with the
    # stack's own minimum and maximum (a per-slice mapping would make the slices incomparable).
    _write_stack(tmp_path / "exam", num_slices=4, PhotometricInterpretation="MONOCHROME1")
    expected = _expected_array(4)
    with pytest.warns(UserWarning, match=r"series #7 'LGE PSIR SAX' \(4 slices\): PhotometricInterpretation is "
                      r"MONOCHROME1 \(lowest value shown white\); grey levels were inverted for the whole series "
                      rf"\(value -> {expected.max() + expected.min():g} - value\) so that brighter is higher"):
        volume = read_dicom_series(tmp_path / "exam")
    _check_geometry(volume, 4, _position(0))
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, _inverted(expected))


def test_monochrome1_stored_inverted_reads_like_its_monochrome2_twin(tmp_path: Path) -> None:
    # As QA's exam: MONOCHROME1 stored as 4095 - v (no rescale). Read, it must rank voxels as the MONOCHROME2
    # exam does, in every slice alike.
    def unscaled(ds: Dataset) -> None:
        ds.RescaleSlope, ds.RescaleIntercept = "1", "0"

    def stored_inverted(ds: Dataset) -> None:
        unscaled(ds)
        ds.PixelData = (4095 - ds.pixel_array).astype("<u2").tobytes()

    _write_stack(tmp_path / "m2", num_slices=4)
    _write_stack(tmp_path / "m1", num_slices=4, PhotometricInterpretation="MONOCHROME1")
    _rewrite(tmp_path / "m2", unscaled)
    _rewrite(tmp_path / "m1", stored_inverted)
    plain = read_dicom_series(tmp_path / "m2").array
    with pytest.warns(UserWarning, match="MONOCHROME1"):
        inverted = read_dicom_series(tmp_path / "m1").array
    assert np.corrcoef(plain.ravel(), inverted.ravel())[0, 1] == pytest.approx(1.0)
    assert np.ptp(inverted) == pytest.approx(np.ptp(plain))


def test_enhanced_monochrome1_is_inverted(tmp_path: Path) -> None:
    _write_enhanced(tmp_path / "exam", [2, 0, 3, 1], photometric="MONOCHROME1")
    with pytest.warns(UserWarning, match="MONOCHROME1 .* inverted for the whole series"):
        volume = read_dicom_series(tmp_path / "exam")
    np.testing.assert_array_equal(volume.array, _inverted(_expected_array(4)))


def test_monochrome1_warning_is_kept_in_the_report(tmp_path: Path) -> None:
    from scarnet.cli import main
    from scarnet.io import write_labelmap

    _write_stack(tmp_path / "exam", num_slices=4, PhotometricInterpretation="MONOCHROME1")
    with pytest.warns(UserWarning, match="MONOCHROME1"):
        image = read_volume(tmp_path / "exam")
    labels = np.zeros(image.array.shape, dtype=np.uint8)
    labels[:, 1:4, 1:4] = 2
    write_labelmap(image.with_array(labels), tmp_path / "labels.nii.gz")
    with pytest.warns(UserWarning, match="MONOCHROME1"):
        assert main(["quantify", str(tmp_path / "labels.nii.gz"), "--image", str(tmp_path / "exam"),
                     "--report", str(tmp_path / "report.json"), "--quiet"]) == 0
    kept = json.loads((tmp_path / "report.json").read_text())["input_warnings"]
    assert [m for m in kept if "MONOCHROME1" in m and "grey levels were inverted" in m]


def test_series_mixing_monochrome1_and_monochrome2_is_refused(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "PhotometricInterpretation", "MONOCHROME1"), only=1)
    one = sorted(exam.iterdir())[1].name
    with pytest.raises(InputError, match=rf"mixes MONOCHROME1 images \(1, e.g. {one}\) and MONOCHROME2 images "
                       r"\(3, e.g. .*\), whose grey levels run in opposite directions") as error:
        read_dicom_series(exam)
    _one_line(error)


@pytest.mark.parametrize("photometric", ["PALETTE COLOR", "RGB", "YBR_FULL"])
def test_colour_photometric_interpretations_are_refused(tmp_path: Path, photometric: str) -> None:
    # SamplesPerPixel 1 (a palette image, or a header that contradicts itself): pydicom hands back the stored
    # values (palette indices), which are no grey levels.
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "PhotometricInterpretation", photometric))
    with pytest.raises(InputError, match=f"has PhotometricInterpretation {photometric}; expected greyscale MR "
                       r"\(MONOCHROME2 or MONOCHROME1\)") as error:
        read_dicom_series(exam)
    _one_line(error)


def test_monochrome1_only_gdcm_decodes_is_refused(tmp_path: Path) -> None:
    # GDCM inverts MONOCHROME1 by a rule of its own (or not at all, in older ITK): no series-wide mapping is safe.
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4, PhotometricInterpretation="MONOCHROME1")
    _rewrite(exam, lambda ds: delattr(ds, "PixelRepresentation"))  # pydicom refuses; GDCM would read it
    with pytest.raises(InputError, match="is MONOCHROME1 and only GDCM decodes its pixels here") as error:
        read_dicom_series(exam)
    _one_line(error)


def test_read_volume_reads_dicom_folders(tmp_path: Path) -> None:
    _write_stack(tmp_path / "exam" / "nested" / "deeper", num_slices=3)
    (tmp_path / "exam" / "notes.txt").write_text("not an image")
    volume = read_volume(tmp_path / "exam")
    _check_geometry(volume, 3, _position(0))
    np.testing.assert_array_equal(volume.array, _expected_array(3))


def test_lge_chosen_over_localizer_and_magnitude(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_localizer(exam)
    _write_stack(exam, series_number=8, description="LGE MAG SAX", seed=1)
    psir_uid = _write_stack(exam, series_number=9, description="de_tfi_psir_sax_PSIR", seed=2)
    listed = list_series(exam)
    assert [s.series_number for s in listed] == [1, 8, 9]
    assert [s.num_slices for s in listed] == [3, 4, 4]
    assert [s.is_lge for s in listed] == [False, True, True]
    assert listed[2].is_psir and not listed[1].is_psir
    assert listed[2].inversion_time_ms == pytest.approx(300.0)
    assert (listed[2].rows, listed[2].columns) == (ROWS, COLUMNS)
    assert listed[2].modality == "MR"
    assert len(listed[2].files) == 4
    volume = read_dicom_series(exam)
    _check_geometry(volume, 4, _position(0))
    assert read_dicom_series(exam, series=psir_uid).array.tobytes() == volume.array.tobytes()


def test_only_lge_series_is_chosen(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_localizer(exam)
    _write_stack(exam, series_number=3, description="cine_retro SAX", seed=3, inversion_time=None, num_slices=3)
    _write_stack(exam, series_number=4, description="MOLLI T1 map", seed=4, num_slices=3)
    _write_stack(exam, series_number=12, description="Delayed enhancement SA", seed=5, num_slices=6)
    volume = read_dicom_series(exam)
    assert volume.num_slices == 6


def test_series_selected_by_number_description_and_uid(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_localizer(exam, series_number=1)
    mag_uid = _write_stack(exam, series_number=8, description="LGE MAG SAX", num_slices=3, seed=1)
    _write_stack(exam, series_number=9, description="LGE PSIR SAX", num_slices=5, seed=2)
    assert read_dicom_series(exam, series="8").num_slices == 3
    assert read_dicom_series(exam, series="#9").num_slices == 5
    assert read_dicom_series(exam, series="mag").num_slices == 3  # case-insensitive substring
    assert read_dicom_series(exam, series="lge psir sax").num_slices == 5
    assert read_dicom_series(exam, series=mag_uid).num_slices == 3
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series="cine")
    message = _one_line(error)
    assert "no series matches" in message and "#8 'LGE MAG SAX' (3 slices)" in message
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series="LGE")  # both LGE series match
    assert "matches 2 series" in _one_line(error)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series="1")  # the localizer: mixed orientations
    assert "orientations" in _one_line(error)


def test_ambiguous_folder_lists_series(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_localizer(exam, series_number=2)
    _write_stack(exam, series_number=5, description="LGE SAX", num_slices=3, seed=1)
    _write_stack(exam, series_number=6, description="LGE SAX", num_slices=4, seed=2)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam)
    message = _one_line(error)
    for part in ("#2 'localizer' (3 slices)", "#5 'LGE SAX' (3 slices)", "#6 'LGE SAX' (4 slices)", "--series"):
        assert part in message


def _two_studies_with_series_7(exam: Path) -> tuple[str, str]:
    """Two exams of two patients copied into one folder, each with a series #7 'LGE PSIR SAX' of 4 slices (as
    scanners number series per study); their SeriesInstanceUIDs."""
    first = _write_stack(exam, seed=1, study_uid="1.2.826.0.1.3680043.8.498.1", StudyDate="20240101")
    second = _write_stack(exam, seed=2, study_uid="1.2.826.0.1.3680043.8.498.2", StudyDate="20240315",
                          PatientName="Other^Patient", PatientID="SYN002")
    return first, second


@pytest.mark.parametrize("series", [None, "7", "#7", "LGE", "nothing like it"])
def test_series_alike_but_for_their_study_are_listed_with_what_tells_them_apart(tmp_path: Path,
                                                                               series: str | None) -> None:
    # Each listing asked for a SeriesInstanceUID and showed two identical "#7 'LGE PSIR SAX' (4 slices)".
    exam = tmp_path / "exam"
    uids = _two_studies_with_series_7(exam)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series=series)
    message = _one_line(error)
    if series != "nothing like it":
        assert "(from 2 studies of 2 patients)" in message
    for uid, study in zip(uids, ("study 2024-01-01 …498.1", "study 2024-03-15 …498.2")):
        assert f"#7 'LGE PSIR SAX' (4 slices, {study}, SeriesInstanceUID {uid})" in message
    assert "Synthetic" not in message and "Other^Patient" not in message and "SYN00" not in message  # privacy
    # The UIDs shown are what --series takes.
    shown = re.findall(r"SeriesInstanceUID ([0-9.]+)\)", message)
    assert sorted(shown) == sorted(uids)
    assert [read_dicom_stack(exam, series=uid).series.series_instance_uid for uid in shown] == shown


def test_series_told_apart_by_number_or_description_are_listed_without_uids(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, series_number=5, description="LGE SAX", seed=1)
    _write_stack(exam, series_number=6, description="LGE SAX", seed=2)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam)
    assert "#5 'LGE SAX' (4 slices), #6 'LGE SAX' (4 slices);" in _one_line(error)  # numbers pick them
    # One study, one number, two descriptions: the description picks each; asked for by number, UIDs are shown.
    exam = tmp_path / "exam2"
    _write_stack(exam, description="LGE PSIR SAX", seed=1)
    mag = _write_stack(exam, description="LGE MAG SAX", seed=2)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series="LGE")
    message = _one_line(error)
    assert "#7 'LGE MAG SAX' (4 slices), #7 'LGE PSIR SAX' (4 slices);" in message and "studies" not in message
    with pytest.raises(InputError) as error:
        read_dicom_series(exam, series="7")
    message = _one_line(error)
    assert f"#7 'LGE MAG SAX' (4 slices, SeriesInstanceUID {mag})" in message and "study" not in message


def test_only_the_series_tied_at_the_top_are_counted_as_equally_lge(tmp_path: Path) -> None:
    """Two PSIR series tie; a magnitude series, less LGE-like, is listed but not counted in the tie."""
    exam = tmp_path / "exam"
    _write_stack(exam, series_number=4, description="LGE MAG SAX", seed=1)
    _write_stack(exam, series_number=5, description="LGE PSIR SAX", seed=2)
    _write_stack(exam, series_number=6, description="LGE PSIR SAX", seed=3)
    with pytest.raises(InputError) as error:
        read_dicom_series(exam)
    message = _one_line(error)
    assert ": 2 of its 3 series look equally like LGE stacks: " in message and "#4 'LGE MAG SAX'" in message


def test_folder_without_lge_cue_is_ambiguous(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, series_number=5, description="sax stack a", num_slices=3, seed=1, inversion_time=None)
    _write_stack(exam, series_number=6, description="sax stack b", num_slices=3, seed=2, inversion_time=None)
    with pytest.raises(InputError, match="none of its 2 series looks like an LGE stack") as error:
        read_dicom_series(exam)
    _one_line(error)


def test_single_unlabelled_series_is_read(tmp_path: Path) -> None:
    _write_stack(tmp_path / "exam", description="", num_slices=3, inversion_time=None)
    assert read_dicom_series(tmp_path / "exam").num_slices == 3


def test_slightly_irregular_spacing_warns_and_uses_median(tmp_path: Path) -> None:
    _write_stack(tmp_path / "exam", num_slices=5, positions=[0, 1, 2, 3, 4.15])
    with pytest.warns(UserWarning, match="irregular slice spacing"):
        volume = read_dicom_series(tmp_path / "exam")
    assert volume.spacing_mm[2] == pytest.approx(SLICE_GAP, abs=1e-6)


@pytest.mark.parametrize("positions", [[0, 1, 2, 4, 5], [0, 1, 2, 3, 4.5]], ids=["missing slice", "one gap 1.5x"])
def test_uneven_spacing_is_refused(tmp_path: Path, positions: list[float]) -> None:
    # A regular grid would put the slices after the gap 5-10 mm from where they were imaged.
    _write_stack(tmp_path / "exam", num_slices=5, positions=positions)
    with pytest.raises(InputError, match="not evenly spaced") as error:
        read_dicom_series(tmp_path / "exam")
    _one_line(error)


def _write_repeats(exam: Path, images: list[dict]) -> str:
    """One series: each item gives slice ``k``, an ``InversionTime`` and any other attributes."""
    exam.mkdir()
    uid = generate_uid()
    for n, image in enumerate(images):
        image = dict(image)
        k = image.pop("k")
        _write_image(exam / f"im{n}.dcm", series_uid=uid, series_number=3, description="LGE SAX",
                     position=image.pop("position", _position(k)), pixels=image.pop("pixels", _raw_pixels(k)),
                     instance_number=n + 1, **image)
    return uid


def test_repeated_stack_with_per_image_trigger_times_keeps_one_whole_stack(tmp_path: Path) -> None:
    # Two TIs at 4 positions. TriggerTime follows the heart rate and AcquisitionNumber counts the
    # slices: both differ for every image, so neither may pick a "stack" of one image.
    images = [{"k": k, "InversionTime": ti, "TriggerTime": 400.0 + 7.3 * k + 3.1 * r,
               "AcquisitionNumber": 1 + k + 4 * r, "pixels": _raw_pixels(k) + 1000 * r}
              for r, ti in enumerate((300.0, 350.0)) for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    # The whole stack acquired again (here at a later TI: the first did not null the myocardium) is the one kept,
    # as a slice acquired again is; it was the first, spoilt one (QA helper-105).
    with pytest.warns(UserWarning, match=r"different InversionTime\); using the 4 images with InversionTime 350 "
                                         r"\(the last acquired\)"):
        volume = read_dicom_series(tmp_path / "exam")
    _check_geometry(volume, 4, _position(0))
    np.testing.assert_array_equal(volume.array, np.stack([_raw_pixels(k) + 1000 for k in range(4)]))


def test_a_whole_stack_acquired_again_is_kept_by_acquisition_time(tmp_path: Path) -> None:
    """The acquisition time decides which stack was last, not the attribute's value or the instance numbers."""
    images = [{"k": k, "AcquisitionNumber": number, "AcquisitionTime": time, "pixels": _raw_pixels(k) + offset}
              for number, time, offset in ((1, "121500", 1000), (2, "120000", 0)) for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    with pytest.warns(UserWarning, match="AcquisitionNumber 1 \\(the last acquired\\)"):
        volume = read_dicom_series(tmp_path / "exam")
    np.testing.assert_array_equal(volume.array, np.stack([_raw_pixels(k) + 1000 for k in range(4)]))


@pytest.mark.parametrize("same_ti", [False, True])
def test_a_stack_acquired_three_times_is_not_a_cine(tmp_path: Path, same_ti: bool) -> None:
    """Three whole repeats (each beat its own trigger time, a few ms apart; other TIs, or the same) were refused
    as a cine (code review, helper-109): the last acquired is kept."""
    images = [{"k": k, "InversionTime": 300.0 if same_ti else ti, "TriggerTime": 400.0 + 7.3 * k + 3.1 * r,
               "AcquisitionNumber": 1 + r, "pixels": _raw_pixels(k) + 1000 * r}
              for r, ti in enumerate((300.0, 350.0, 400.0)) for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    with pytest.warns(UserWarning, match="the last acquired"):
        volume = read_dicom_series(tmp_path / "exam")
    np.testing.assert_array_equal(volume.array, np.stack([_raw_pixels(k) + 2000 for k in range(4)]))


@pytest.mark.parametrize("num_slices", [1, 3])
def test_a_ti_scout_is_refused_not_read_as_one_of_its_inversion_times(tmp_path: Path, num_slices: int) -> None:
    """A TI scout (Look-Locker: 8 inversion times at each position) under a name that says nothing was read as its
    last TI's images, and segmented as LGE."""
    images = [{"k": k, "InversionTime": 100.0 + 40 * n, "TemporalPositionIdentifier": n + 1,
               "pixels": _raw_pixels(k) + 100 * n} for n in range(8) for k in range(num_slices)]
    _write_repeats(tmp_path / "exam", images)
    with pytest.raises(InputError) as error:
        read_dicom_series(tmp_path / "exam")
    assert _one_line(error).endswith("8 images per slice position at different InversionTimes: a TI scout "
                                     "(Look-Locker), not an LGE stack; pick the LGE series")


def test_a_cine_series_is_refused_not_read_as_one_of_its_phases(tmp_path: Path) -> None:
    """A cine (5 phases per slice) was read as "the 4 images with TriggerTime 0" and segmented as LGE."""
    images = [{"k": k, "TriggerTime": 40.0 * phase, "pixels": _raw_pixels(k) + 100 * phase}
              for phase in range(5) for k in range(4)]
    _write_repeats(tmp_path / "exam", images)
    with pytest.raises(InputError) as error:
        read_dicom_series(tmp_path / "exam")
    assert "5 images per slice position at different TriggerTimes: a cine" in _one_line(error)


@pytest.mark.parametrize("description, marked", [("MOLLI T1MAP SAX", "MOLLI/T1MAP"), ("cine_sax_retro", "CINE/RETRO"),
                                                 ("sa_stack", None), ("LGE_T2_PREP", None)])
def test_a_folder_whose_only_series_is_a_map_or_cine_is_refused_unless_picked(tmp_path: Path, description: str,
                                                                             marked: str | None) -> None:
    """A folder exported one series each: its only series was read without a look at what it is, so a T1 map got
    scar figures without a word (QA helper-105). A series that says nothing of itself is still read."""
    _write_stack(tmp_path / "exam", description=description, inversion_time=None)
    if marked is None:  # nothing said, or LGE by name as well (dark-blood LGE with a T2 preparation): read, said
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert read_dicom_series(tmp_path / "exam").num_slices == 4
        assert [str(w.message) for w in said if "is marked LGE and also T2" in str(w.message)] == (
            [] if description == "sa_stack" else [str(said[0].message)])
        return
    with pytest.raises(InputError) as error:
        read_dicom_series(tmp_path / "exam")
    assert f"its only series, #7 '{description}' (4 slices), is marked {marked} in its description" in _one_line(error)
    assert "pass --series 7 (series='7' from Python) if it is LGE" in _one_line(error)
    assert read_dicom_series(tmp_path / "exam", series="7").num_slices == 4  # the user's word for it


def test_an_only_series_is_not_refused_for_its_exams_protocol_name(tmp_path: Path) -> None:
    """GE writes the exam's protocol ("CARDIAC STRESS PERF") into every series' ProtocolName: an LGE series exported
    alone was refused as perfusion (code review, helper-109). Its own description and image type decide."""
    _write_stack(tmp_path / "exam", description="SAX 2D IR FGRE", ProtocolName="CARDIAC STRESS PERF")
    assert read_dicom_series(tmp_path / "exam").num_slices == 4


def test_long_axis_views_in_their_own_series_do_not_compete_with_the_stack(tmp_path: Path) -> None:
    """Two-, three- and four-chamber LGE views in one series (the same name as the stack's) made the folder
    ambiguous: views in several planes are never a stack."""
    exam = tmp_path / "exam"
    _write_stack(exam, series_number=7, num_slices=5)
    uid = generate_uid()
    for n, (row, column) in enumerate([(NORMAL, COLUMN_COSINE), (NORMAL, ROW_COSINE), (ROW_COSINE, NORMAL)]):
        _write_image(exam / f"lax_{n}.dcm", series_uid=uid, series_number=8, description="LGE PSIR SAX",
                     position=_position(2), orientation=(row, column), pixels=_raw_pixels(n), instance_number=n + 1,
                     inversion_time=300.0)
    volume = read_dicom_series(exam)
    assert volume.num_slices == 5


def test_a_long_axis_image_filed_with_the_stack_is_left_out_and_said(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    uid = _write_stack(exam, num_slices=5)
    _write_image(exam / "four_chamber.dcm", series_uid=uid, series_number=7, description="LGE PSIR SAX",
                 position=_position(2), orientation=(NORMAL, COLUMN_COSINE), pixels=_raw_pixels(0),
                 instance_number=99, inversion_time=300.0)
    with pytest.warns(UserWarning, match="1 image\\(s\\) in another plane than the stack's 5 .*four_chamber.dcm"):
        volume = read_dicom_series(exam)
    _check_geometry(volume, 5, _position(0))
    np.testing.assert_array_equal(volume.array, _expected_array(5))


#: Two-, three- and four-chamber planes of the synthetic short-axis stack: each holds its normal.
_LONG_AXIS_VIEWS = [(NORMAL, COLUMN_COSINE), (NORMAL, ROW_COSINE),
                    ((ROW_COSINE + COLUMN_COSINE) / math.sqrt(2), NORMAL)]


def _slanted(degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """The stack's plane turned by ``degrees`` about its column direction: a short-axis plane planned anew."""
    angle = math.radians(degrees)
    return math.cos(angle) * ROW_COSINE + math.sin(angle) * NORMAL, COLUMN_COSINE


@pytest.mark.parametrize("views, left_out", [
    ({0: _LONG_AXIS_VIEWS[0], 3: _LONG_AXIS_VIEWS[1], 6: _LONG_AXIS_VIEWS[2]}, "frames 1, 4, 7"),
    # Each view twice (two TIs, or magnitude and PSIR): still three views.
    ({i: _LONG_AXIS_VIEWS[i % 3] for i in (4, 5, 6, 7, 8, 9)}, "frames 5, 6, 7, 8, 9, 10"),
], ids=["2-3-4-chamber", "each twice"])
def test_long_axis_frames_of_an_enhanced_file_are_left_out_and_said(tmp_path: Path, views, left_out: str) -> None:
    """A multi-stack scan (Philips, Siemens XA) writes its long-axis views as frames of the short-axis stack's
    enhanced file, each frame with its own orientation; more than two such frames (images) got the file refused as
    "different orientations". The stack is read as if they were not there, and they are named."""
    _write_enhanced(tmp_path / "exam", [2, 0, 3, 1, 4, 5], views=views)
    with pytest.warns(UserWarning, match=f"{len(views)} image\\(s\\) in 3 other planes than the stack's 6 \\(long-axis "
                                         f"views filed with it\\?\\) left out: enhanced.dcm {left_out}$"):
        stack = read_dicom_stack(tmp_path / "exam")
    _check_geometry(stack.volume, 6, _position(0))
    np.testing.assert_array_equal(stack.volume.array, _expected_array(6))
    order = [k for k in range(len(views) + 6) if k not in views]  # the stack's frames, in file order
    assert stack.frame_indices == [order[[2, 0, 3, 1, 4, 5].index(k)] for k in range(6)]


@pytest.mark.parametrize("views, planes", [
    # Long-axis views beside a stack of fewer than twice as many slices: not clearly a stack with views.
    ({6: _LONG_AXIS_VIEWS[0], 7: _LONG_AXIS_VIEWS[1], 8: _LONG_AXIS_VIEWS[2]}, "4 planes, at 4, 1, 1, 1"),
    # Three slices planned anew, 10° off: the stack's own slices, not views (as before: two at most are left out).
    ({6: _slanted(10), 7: _slanted(10), 8: _slanted(10)}, "2 planes, at 4, 1"),
], ids=["few slices", "slanted"])
def test_frames_in_other_planes_are_not_left_out_beside_too_small_a_stack_or_when_slanted(tmp_path: Path, views,
                                                                                        planes: str) -> None:
    _write_enhanced(tmp_path / "exam", [0, 1, 2, 3], views={index - 2: view for index, view in views.items()})
    with pytest.raises(InputError) as error:
        read_dicom_series(tmp_path / "exam")
    assert f"images with different orientations ({planes} slice positions" in _one_line(error)


@pytest.mark.parametrize("kind", ["enhanced", "magnitude and PSIR files"])
def test_long_axis_views_do_not_compete_with_the_stack_and_alone_are_refused(tmp_path: Path, kind: str) -> None:
    """An LGE series of long-axis views only, as an enhanced file (its frames' planes were not looked at) or as one
    view's magnitude and PSIR images (two images in one plane), made the folder ambiguous beside the stack."""
    exam = tmp_path / "exam"
    _write_stack(exam, series_number=7, num_slices=4)
    if kind == "enhanced":
        _write_enhanced(exam, [], views=dict(enumerate(_LONG_AXIS_VIEWS)), series_number=8, file_name="lax.dcm")
    else:
        uid = generate_uid()
        for n, kind_of_image in enumerate(("M", "R")):
            _write_image(exam / f"lax_{kind_of_image}.dcm", series_uid=uid, series_number=8, description="LGE PSIR SAX",
                         position=_position(1.5), orientation=_LONG_AXIS_VIEWS[2], pixels=_raw_pixels(9),
                         instance_number=n + 1, inversion_time=300.0, image_type=("ORIGINAL", "PRIMARY", kind_of_image))
    listed = {s.series_number: s for s in list_series(exam)}
    assert listed[8].is_lge and listed[8].most_slices_in_one_plane == 1
    stack = read_dicom_stack(exam)
    assert stack.series.series_number == 7
    np.testing.assert_array_equal(stack.volume.array, _expected_array(4))
    if kind == "enhanced":
        with pytest.raises(InputError) as error:
            read_dicom_series(exam, series="8")
        assert _one_line(error).endswith("(3 slices): its 3 images have 3 different orientations, none with images at "
                                         "two slice positions (views such as long-axis 2-, 3- and 4-chamber, or a "
                                         "localizer): no short-axis stack to read")


def test_a_series_is_described_by_its_stacks_file_not_by_a_view_filed_with_it(tmp_path: Path) -> None:
    """One enhanced short-axis file and classic long-axis views in one series: the series took its SeriesDescription
    from whichever file was listed first, and the stack's reports (and messages) named it 'LGE LAX'."""
    exam = tmp_path / "exam"
    _write_enhanced(exam, [2, 0, 3, 1, 4, 5], series_number=8, file_name="sax.dcm")  # 'LGE PSIR 3D'
    sax = pydicom.dcmread(exam / "sax.dcm", stop_before_pixels=True)
    for n, view in enumerate(_LONG_AXIS_VIEWS[:2]):  # listed before sax.dcm
        _write_image(exam / f"lax_{n}.dcm", series_uid=sax.SeriesInstanceUID, series_number=8, description="LGE LAX",
                     position=_position(1.5), orientation=view, pixels=_raw_pixels(9), instance_number=n + 1,
                     inversion_time=300.0, study_uid=sax.StudyInstanceUID)
    (listed,) = list_series(exam)
    assert listed.files[0].name == "lax_0.dcm" and listed.description == "LGE PSIR 3D"
    # Picked by that description, and so named in what the reading says; the stack is described by its own images.
    with pytest.warns(UserWarning, match=r"#8 'LGE PSIR 3D' \(8 slices\): 2 image\(s\) .*long-axis views filed"):
        stack = read_dicom_stack(exam, series="PSIR 3D")
    assert stack.series.description == "LGE PSIR 3D" and stack.series.record()["description"] == "LGE PSIR 3D"


def test_a_slice_tilted_by_a_fraction_of_a_degree_is_read_and_said(tmp_path: Path) -> None:
    """Slices planned one by one, one tilted by 0.2°, were refused as "different orientations (a localizer...)"."""
    exam = tmp_path / "exam"
    uid = _write_stack(exam, num_slices=4)
    angle = math.radians(0.2)
    tilted_row = math.cos(angle) * ROW_COSINE + math.sin(angle) * NORMAL
    tilted_normal = np.cross(tilted_row, COLUMN_COSINE)
    for path in exam.glob("*_3.dcm"):
        path.unlink()
    _write_image(exam / "tilted_3.dcm", series_uid=uid, series_number=7, description="LGE PSIR SAX",
                 position=_position(3), orientation=(tilted_row, COLUMN_COSINE), pixels=_raw_pixels(3),
                 instance_number=50, inversion_time=300.0, slope=_slope_intercept(3)[0],
                 intercept=_slope_intercept(3)[1])
    assert abs(float(tilted_normal @ NORMAL)) > math.cos(math.radians(0.21))
    with pytest.warns(UserWarning, match="tilted or turned from one another by up to 0.2°"):
        volume = read_dicom_series(exam)
    _check_geometry(volume, 4, _position(0))
    np.testing.assert_array_equal(volume.array, _expected_array(4))


@pytest.mark.parametrize("jitter_mm, same_ti", [(0.0, False), (0.05, False), (0.0, True)])
def test_reacquired_slice_keeps_the_last_acquisition(tmp_path: Path, jitter_mm: float, same_ti: bool) -> None:
    # TI raised after slice 2; slice 1 repeated at the new TI (planned again: up to 0.05 mm off),
    # with its own AcquisitionNumber. Or one TI throughout: then the first stack (AcquisitionNumber 1)
    # covers every position, and must still not win over the repeat.
    images = [{"k": k, "InversionTime": 300.0 if same_ti or k <= 2 else 320.0, "AcquisitionNumber": 1,
               "AcquisitionTime": f"1200{10 + k:02d}"} for k in range(5)]
    images.append({"k": 1, "InversionTime": 300.0 if same_ti else 320.0, "AcquisitionNumber": 2,
                   "AcquisitionTime": "120030", "position": _position(1) + jitter_mm * NORMAL,
                   "pixels": _raw_pixels(1) + 1000})
    _write_repeats(tmp_path / "exam", images)
    with pytest.warns(UserWarning, match="acquired more than once"):
        volume = read_dicom_series(tmp_path / "exam")
    assert volume.num_slices == 5
    assert volume.spacing_mm[2] == pytest.approx(SLICE_GAP, abs=0.05)
    expected = np.stack([_raw_pixels(k) + (1000 if k == 1 else 0) for k in range(5)])
    np.testing.assert_array_equal(volume.array, expected)


def test_magnitude_and_phase_in_one_series_keeps_magnitude(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    exam.mkdir()
    uid = generate_uid()
    for k in range(3):
        for n, kind in enumerate(("M", "P")):
            pixels = _raw_pixels(k) if kind == "M" else _raw_pixels(k) + 500
            _write_image(exam / f"{kind}{k}.dcm", series_uid=uid, series_number=3, description="LGE SAX",
                         position=_position(k), pixels=pixels, instance_number=2 * k + n + 1,
                         image_type=("ORIGINAL", "PRIMARY", kind))
    with pytest.warns(UserWarning, match="different ImageType"):
        volume = read_dicom_series(exam)
    np.testing.assert_array_equal(volume.array, np.stack([_raw_pixels(k) for k in range(3)]))


def test_original_images_are_kept_over_derived_copies_of_one_kind(tmp_path: Path) -> None:
    """Filtered (DERIVED) copies of the magnitude images filed at the same positions won over the ORIGINAL ones,
    by the alphabet."""
    exam = tmp_path / "exam"
    exam.mkdir()
    uid = generate_uid()
    for k in range(3):
        for n, first in enumerate(("ORIGINAL", "DERIVED")):
            _write_image(exam / f"{first}{k}.dcm", series_uid=uid, series_number=3, description="LGE SAX",
                         position=_position(k), pixels=_raw_pixels(k) + 500 * n, instance_number=2 * k + n + 1,
                         image_type=(first, "PRIMARY", "M", "NONE" if n == 0 else "FILTERED"))
    with pytest.warns(UserWarning, match="using the 3 images with ImageType ORIGINAL"):
        volume = read_dicom_series(exam)
    np.testing.assert_array_equal(volume.array, np.stack([_raw_pixels(k) for k in range(3)]))


def test_indistinguishable_duplicates_raise(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    exam.mkdir()
    uid = generate_uid()
    for k in range(3):
        for n in range(2):
            _write_image(exam / f"{k}_{n}.dcm", series_uid=uid, series_number=3, description="LGE SAX",
                         position=_position(k), pixels=_raw_pixels(k) + n, instance_number=2 * k + n + 1)
    with pytest.raises(InputError, match="6 images at only 3 slice positions") as error:
        read_dicom_series(exam)
    _one_line(error)


def test_copied_files_are_not_duplicates(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=3)
    first = sorted(exam.iterdir())[0]
    (exam / "copy").mkdir()
    (exam / "copy" / first.name).write_bytes(first.read_bytes())
    volume = read_dicom_series(exam)
    np.testing.assert_array_equal(volume.array, _expected_array(3))


def _write_enhanced(exam: Path, frame_order: list[int], compressed: bool = False,
                    photometric: str = "MONOCHROME2", components: list[str] | None = None,
                    views: dict[int, tuple[np.ndarray, np.ndarray]] | None = None, series_number: int = 20,
                    file_name: str = "enhanced.dcm") -> None:
    """An enhanced MR file, one frame per slice in ``frame_order``, each with its own rescale. ``components``:
    each frame's ComplexImageComponent (a REAL frame's pixels are 1000 higher). ``views``: frames in other planes
    (long-axis views through slice 1.5, pixels 7 + those of slice 9), by frame index → (row, column) direction;
    with them, each frame has its orientation in its own functional groups, as vendors write such files."""
    import SimpleITK as sitk
    from pydicom.encaps import encapsulate

    try:
        from pydicom.encaps import generate_fragments
    except ImportError:  # pydicom 2.4 (Python 3.9)
        from pydicom.encaps import decode_data_sequence as generate_fragments

    exam.mkdir(exist_ok=True)
    order: list[int | None] = list(frame_order)
    for index in sorted(views or {}):
        order.insert(index, None)  # None: a view
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "LGE PSIR 3D"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    ds.NumberOfFrames = len(order)
    shared = Dataset()
    orientation = Dataset()
    orientation.ImageOrientationPatient = _ds_str(np.concatenate([ROW_COSINE, COLUMN_COSINE]))
    measures = Dataset()
    measures.PixelSpacing = _ds_str([ROW_SPACING, COLUMN_SPACING])
    measures.SliceThickness = SLICE_THICKNESS
    if not views:
        shared.PlaneOrientationSequence = Sequence([orientation])
    shared.PixelMeasuresSequence = Sequence([measures])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for index, k in enumerate(order):
        group = Dataset()
        if views:
            own = Dataset()
            own.ImageOrientationPatient = (orientation.ImageOrientationPatient if k is not None
                                           else _ds_str(np.concatenate(views[index])))
            group.PlaneOrientationSequence = Sequence([own])
        if components is not None:
            frame_type = Dataset()
            frame_type.FrameType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
            frame_type.ComplexImageComponent = components[index]
            group.MRImageFrameTypeSequence = Sequence([frame_type])
        plane = Dataset()
        plane.ImagePositionPatient = _ds_str(_position(1.5 if k is None else k))
        group.PlanePositionSequence = Sequence([plane])
        transform = Dataset()
        slope, intercept = (1.0, 0.0) if k is None else _slope_intercept(k)
        transform.RescaleSlope = f"{slope:g}"
        transform.RescaleIntercept = f"{intercept:g}"
        transform.RescaleType = "US"
        group.PixelValueTransformationSequence = Sequence([transform])
        per_frame.append(group)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if compressed:
        assert not views
        # JPEG lossless frames from GDCM: pydicom has no decoder for them here, GDCM does.
        fragments = []
        for k in frame_order:
            writer = sitk.ImageFileWriter()
            writer.SetImageIO("GDCMImageIO")
            writer.SetFileName(str(exam / "frame.dcm"))
            writer.SetUseCompression(True)
            writer.SetCompressor("JPEG")
            writer.Execute(sitk.GetImageFromArray(_raw_pixels(k).astype(np.uint16)))
            encoded = pydicom.dcmread(exam / "frame.dcm")
            meta.TransferSyntaxUID = encoded.file_meta.TransferSyntaxUID
            fragments.append(b"".join(generate_fragments(encoded.PixelData)))
            (exam / "frame.dcm").unlink()
        ds.PixelData = encapsulate(fragments)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = np.stack([(_raw_pixels(k) if k is not None else _raw_pixels(9) + 7)
                                 + (1000 if components and components[index] == "REAL" else 0)
                                 for index, k in enumerate(order)]).astype("<u2").tobytes()
    write_part10(ds, exam / file_name)


def test_enhanced_multiframe(tmp_path: Path) -> None:
    num_slices = 4
    _write_enhanced(tmp_path / "exam", [2, 0, 3, 1])  # frames stored out of spatial order
    assert list_series(tmp_path / "exam")[0].num_slices == num_slices
    volume = read_dicom_series(tmp_path / "exam")
    _check_geometry(volume, num_slices, _position(0))
    np.testing.assert_array_equal(volume.array, _expected_array(num_slices))


def test_enhanced_psir_frames_are_told_apart_by_their_complex_image_component(tmp_path: Path) -> None:
    """Magnitude and phase-sensitive (REAL) frames of one enhanced file, told apart by ComplexImageComponent alone,
    were refused as "nothing tells them apart" (QA helper-105); the phase-sensitive ones are the LGE image."""
    _write_enhanced(tmp_path / "exam", [0, 1, 2, 3] * 2, components=["MAGNITUDE"] * 4 + ["REAL"] * 4)
    with pytest.warns(UserWarning, match="using the 4 images with ImageType ORIGINAL\\\\PRIMARY\\\\M\\\\NONE"
                                         "\\\\REAL"):
        volume = read_dicom_series(tmp_path / "exam")
    np.testing.assert_array_equal(volume.array, _expected_array(4) + 1000 * _slope_intercept_array(4))


def test_enhanced_file_with_fewer_per_frame_groups_than_frames_is_refused(tmp_path: Path) -> None:
    """The functional groups place the frames in order: with the last one missing, the last frame was left out
    without a word (with one missing in between, every later frame would lie where the next one does)."""
    _write_enhanced(tmp_path / "exam", [0, 1, 2, 3])
    path = tmp_path / "exam" / "enhanced.dcm"
    ds = pydicom.dcmread(path)
    ds.PerFrameFunctionalGroupsSequence = Sequence(list(ds.PerFrameFunctionalGroupsSequence)[:3])
    ds.save_as(path)
    with pytest.raises(InputError) as error:
        read_dicom_series(tmp_path / "exam")
    assert _one_line(error).endswith("enhanced.dcm has NumberOfFrames 4 but 3 per-frame functional groups; cannot "
                                     "tell where each frame lies")


def _slope_intercept_array(num_slices: int) -> np.ndarray:
    """Each slice's rescale slope, broadcast over its pixels (a raw offset is scaled by it)."""
    return np.array([_slope_intercept(k)[0] for k in range(num_slices)])[:, None, None]


def test_compressed_enhanced_with_per_frame_rescale_is_refused(tmp_path: Path) -> None:
    # GDCM decodes the frames but scales them all like the first: refuse rather than misscale.
    assert len({_slope_intercept(k) for k in range(4)}) > 1
    _write_enhanced(tmp_path / "exam", [0, 1, 2, 3], compressed=True)
    syntax = pydicom.dcmread(tmp_path / "exam" / "enhanced.dcm", stop_before_pixels=True).file_meta.TransferSyntaxUID
    try:
        from pydicom.pixels import get_decoder

        decodes = get_decoder(syntax).is_available
    except ImportError:  # pydicom 2.4 (Python 3.9): its pixel data handlers
        decodes = any(handler.is_available() and handler.supports_transfer_syntax(syntax)
                      for handler in pydicom.config.pixel_data_handlers)
    if decodes:
        pytest.skip(f"pydicom decodes {syntax.name} here (a JPEG plugin is installed): GDCM is not used")
    with pytest.raises(InputError, match="different RescaleSlope/Intercept") as error:
        read_dicom_series(tmp_path / "exam")
    _one_line(error)


# -- bad folders ------------------------------------------------------------------------------
def test_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM images found") as error:
        read_dicom_series(tmp_path / "empty")
    _one_line(error)
    assert list_series(tmp_path / "empty") == []


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such folder") as error:
        read_dicom_series(tmp_path / "absent")
    _one_line(error)


def test_folder_with_only_non_dicom_files(tmp_path: Path) -> None:
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello\n")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "noextension").write_bytes(bytes(range(256)) * 4)
    (folder / "fake_preamble").write_bytes(bytes(128) + b"DICM" + b"garbage" * 10)
    (folder / "DICOMDIR").write_bytes(bytes(128) + b"DICM")
    with pytest.raises(InputError, match="no DICOM images found") as error:
        read_dicom_series(folder)
    _one_line(error)
    with pytest.raises(InputError, match="no DICOM images found"):
        read_volume(folder)
    # No NIfTI to point to; the picture (as EMIDEC's PNG slices) is said to keep no geometry (it was "no DICOM
    # images found" alone, QA helper-104).
    assert "it holds 1 picture file(s) (image.png, ...), which keep no pixel spacing, slice gap or orientation" \
        in _one_line(error)


def test_a_folder_of_nifti_files_names_them(tmp_path: Path) -> None:
    """A folder of NIfTI exams given as one input is read as DICOM: the error says to give the files."""
    folder = tmp_path / "exams"
    (folder / "b").mkdir(parents=True)
    (folder / "b" / "p2.nii.gz").write_bytes(b"")
    (folder / "p1.nrrd").write_bytes(b"")
    with pytest.raises(InputError, match=r"no DICOM images found \(searched all sub-folders\); it holds b/p2.nii.gz "
                       r"and 1 more: give such files themselves") as error:
        read_volume(folder)
    _one_line(error)


def test_single_slice_series_is_2d(tmp_path: Path) -> None:
    _write_stack(tmp_path / "exam", num_slices=1)
    with pytest.raises(InputError, match="single slice") as error:
        read_dicom_series(tmp_path / "exam")
    _one_line(error)


def test_mixed_sizes_raise(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    uid = _write_stack(exam, num_slices=3)
    _write_image(exam / "odd.dcm", series_uid=uid, series_number=7, description="LGE PSIR SAX",
                 position=_position(3), pixels=np.ones((ROWS + 1, COLUMNS), np.uint16), instance_number=9)
    with pytest.raises(InputError, match="different sizes") as error:
        read_dicom_series(exam)
    _one_line(error)


def test_missing_geometry_raises(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    uid = _write_stack(exam, num_slices=2)
    path = next(exam.iterdir())
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    write_part10(ds, path)
    with pytest.raises(InputError, match="cannot place it in space") as error:
        read_dicom_series(exam, series=uid)
    _one_line(error)


def _rewrite(exam: Path, change, only: int | None = None) -> None:
    """Apply ``change`` to the datasets of ``exam`` (or only to its ``only``-th file), as a broken exporter would."""
    for index, path in enumerate(sorted(exam.iterdir())):
        if only is None or index == only:
            ds = pydicom.dcmread(path)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # pydicom warns about the invalid values written on purpose
                change(ds)
            write_part10(ds, path)


@pytest.mark.parametrize("defect", ["one file cut short", "Rows larger than the data"])
def test_pixel_data_shorter_than_the_header_says_is_refused(tmp_path: Path, defect: str) -> None:
    # pydicom refuses such files; GDCM, the fallback meant for compressed syntaxes, read them with zeros.
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    if defect == "one file cut short":
        _rewrite(exam, lambda ds: setattr(ds, "PixelData", ds.PixelData[: len(ds.PixelData) // 2]), only=2)
    else:
        _rewrite(exam, lambda ds: setattr(ds, "Rows", ROWS + 2))
    with pytest.raises(InputError, match="pixel data holds .* bytes .* truncated or its header is wrong") as error:
        read_dicom_series(exam)
    _one_line(error)


@pytest.mark.parametrize("attribute", ["PixelRepresentation", "BitsStored"])
def test_native_pixels_pydicom_refuses_for_a_missing_attribute_are_read_by_gdcm(tmp_path: Path,
                                                                                attribute: str) -> None:
    # Old or anonymised files lack such attributes; the pixel data is whole, and GDCM reads it.
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: delattr(ds, attribute))
    np.testing.assert_array_equal(read_dicom_series(exam).array, _expected_array(4))


def test_zero_orientation_is_refused(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "ImageOrientationPatient", [0, 0, 0, 0, 0, 0]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "invalid value encountered in divide" came first
        with pytest.raises(InputError, match="invalid ImageOrientationPatient .* must be unit vectors") as error:
            read_dicom_series(exam)
    _one_line(error)


@pytest.mark.parametrize("spacing", [[-ROW_SPACING, COLUMN_SPACING], [0, 0]], ids=["negative", "zero"])
def test_non_positive_pixel_spacing_is_refused(tmp_path: Path, spacing: list[float]) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "PixelSpacing", spacing))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a stray "shifted within their planes by up to 0 mm" came first
        with pytest.raises(InputError, match="non-positive PixelSpacing") as error:
            read_dicom_series(exam)
    _one_line(error)


@pytest.mark.parametrize("slope", ["NaN", "1e400", "0"])
def test_invalid_rescale_slope_is_refused(tmp_path: Path, slope: str) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "RescaleSlope", slope), only=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pydicom's "Invalid value for VR DS" on reading
        with pytest.raises(InputError, match=f"invalid RescaleSlope \\('{slope}'\\)") as error:
            read_dicom_series(exam)
    _one_line(error)


def test_rescale_beyond_float32_is_refused(tmp_path: Path) -> None:
    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    _rewrite(exam, lambda ds: setattr(ds, "RescaleSlope", "1e36"), only=1)  # × ~3000 overflows float32
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow encountered in cast" came first
        with pytest.raises(InputError, match="RescaleSlope 1e\\+36 .* make values too large") as error:
            read_dicom_series(exam)
    _one_line(error)


def test_geometry_agrees_with_simpleitk_series_reader(tmp_path: Path) -> None:
    """An independent reader (GDCM through SimpleITK) places the same stack at the same place."""
    import SimpleITK as sitk

    _write_stack(tmp_path / "exam", num_slices=4)
    volume = read_dicom_series(tmp_path / "exam")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "exam")))
    reference = reader.Execute()
    np.testing.assert_allclose(volume.spacing_mm, reference.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(volume.origin_mm, reference.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(volume.direction.ravel(), reference.GetDirection(), atol=1e-5)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference).astype(np.float32))


def test_a_failed_batch_exam_still_names_the_series_it_read(tmp_path: Path) -> None:
    """A DICOM exam that failed after its series was read (no heart found) had an empty dicom_series in the
    summary: which of the folder's series failed was not said."""
    from test_batch import _summary

    from scarnet.batch import run_batch
    from scarnet.errors import NoHeartFoundError

    _write_stack(tmp_path / "exam", num_slices=6)

    def make():
        def fail(volume, name, rv_insertion_lps, basal_end):
            raise NoHeartFoundError("no heart found")
        return fail

    rows = run_batch([tmp_path / "exam"], tmp_path / "out", make)
    assert rows[0].status == "failed: no heart found"
    assert _summary(tmp_path / "out")[0]["dicom_series"] == "#7 'LGE PSIR SAX'"


# -- hostile and odd files: what reading them would cost ---------------------------------------------
def test_a_deflated_file_that_would_inflate_past_the_limit_is_left_out_unread(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """QA helper-118: pydicom inflates a deflated data set whole, even to read its header: a 0.5 MB file of the
    folder (16384×16384 zeros, deflated) took 1.1 GB of memory while the folder was listed, and a few MB more would
    take gigabytes. Such a file is measured piece by piece first, and left out as damaged, never given to pydicom."""
    import scarnet.dicom as dicom

    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    bomb = pydicom.dcmread(next(exam.glob("*.dcm")))
    bomb.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    bomb.SeriesInstanceUID = bomb.SOPInstanceUID = bomb.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    bomb.Rows = bomb.Columns = 1024
    bomb.PixelData = bytes(1024 * 1024 * 2)  # 2 MiB of zeros: a few kB deflated
    write_part10(bomb, exam / "bomb.dcm")
    assert (exam / "bomb.dcm").stat().st_size < 1 << 16
    small = pydicom.dcmread(next(exam.glob("s7_*.dcm")))  # a deflated file under the limit is read as before
    small.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
    small.SeriesInstanceUID = small.SOPInstanceUID = small.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    small.SeriesNumber, small.SeriesDescription = 9, "T2 map"
    write_part10(small, exam / "small.dcm")
    monkeypatch.setattr(dicom, "MAX_DEFLATED_DATASET_BYTES", 1 << 20, raising=False)
    given = []
    dcmread = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda path, *args, **kwargs: (given.append(Path(path).name),
                                                                            dcmread(path, *args, **kwargs))[1])
    with pytest.warns(UserWarning, match=r"1 DICOM file\(s\) could not be read \(empty, cut short or damaged\) and "
                                         r"were left out .*: bomb.dcm$"):
        series = list_series(exam)
    assert "bomb.dcm" not in given and "small.dcm" in given
    assert sorted(s.series_number for s in series) == [7, 9]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_in_the_folder_is_passed_over_not_waited_on(tmp_path: Path) -> None:
    """QA helper-118: a FIFO (named pipe) in a DICOM folder made `scarnet segment FOLDER` wait for ever on it."""
    from test_io import _unblock_readers_of

    exam = tmp_path / "exam"
    _write_stack(exam, num_slices=4)
    os.mkfifo(exam / "zz.dcm")
    (exam / "zero.dcm").symlink_to("/dev/zero")  # a device is no image either (reading it never ends)
    thread = _unblock_readers_of(exam / "zz.dcm")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the FIFO read as an empty, "damaged" .dcm would warn
        assert read_volume(exam).num_slices == 4
    thread.join()


def test_images_declaring_more_voxels_than_any_stack_are_refused_before_their_pixels_are_decoded(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA helper-118: pydicom decodes a file's frames to what Rows × Columns × NumberOfFrames declare, which a few
    bytes of compressed data can make gigabytes. The headers are checked first."""
    import scarnet.dicom as dicom

    _write_stack(tmp_path / "exam", num_slices=4, Rows=8193, Columns=8193)
    monkeypatch.setattr(dicom, "_pixels", lambda *args: pytest.fail("pixels decoded"))
    with pytest.raises(InputError, match=r"s7_\d+_\d.dcm: its header declares 8193×8193×1 voxels \(67 million\), more "
                                         r"than any short-axis LGE stack holds \(67 million at most\)") as error:
        read_volume(tmp_path / "exam")
    assert "\n" not in str(error.value)

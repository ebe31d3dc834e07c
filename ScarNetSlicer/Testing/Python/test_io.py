"""Tests of image/labelmap reading and writing: geometry round trips, Slicer segmentations,
atomic writes and the one-line errors for files a user can fix."""

from __future__ import annotations

import errno
import gzip
import importlib.util
import os
import re
import sys
import warnings
import zlib
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
import slicerio
from conftest import write_emidec_like_nifti

from scarnet.errors import InputError, OutputError, OutputExistsError
from scarnet.io import (
    atomic_path,
    read_labelmap,
    read_seg_nrrd,
    read_volume,
    write_labelmap,
    write_seg_nrrd,
    write_text,
    write_volume,
)
from scarnet.labels import SEGMENTS
from scarnet.volume import Volume

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared"
EMIDEC_CASE = SHARED / "data" / "emidec" / "nifti" / "Case_P100"

SPACING = (1.3, 1.7, 8.0)
ORIGIN = (-41.25, 17.5, 93.75)
SHAPE_KJI = (5, 7, 6)  # slices, rows, columns: all different so any axis swap shows


def _rotation() -> np.ndarray:
    """An oblique proper rotation (det +1), as a short-axis plane is."""
    a, b, c = 0.4, -0.7, 1.1
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


DIRECTION = _rotation()


def _image() -> Volume:
    rng = np.random.default_rng(0)
    array = rng.normal(100.0, 30.0, SHAPE_KJI).astype(np.float32)
    return Volume(array, SPACING, ORIGIN, DIRECTION)


def _labelmap() -> Volume:
    labels = np.zeros(SHAPE_KJI, dtype=np.uint8)
    labels[1:4, 2:5, 2:5] = 2
    labels[1:4, 3, 3] = 1
    labels[2, 2, 2:4] = 3
    labels[2, 4, 4] = 4
    return Volume(labels, SPACING, ORIGIN, DIRECTION)


def _assert_same_geometry(a: Volume, b: Volume, atol: float = 1e-5) -> None:
    assert a.array.shape == b.array.shape
    np.testing.assert_allclose(a.spacing_mm, b.spacing_mm, atol=atol)
    np.testing.assert_allclose(a.origin_mm, b.origin_mm, atol=atol)
    np.testing.assert_allclose(a.direction, b.direction, atol=atol)


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


def _leftovers(folder: Path) -> list[str]:
    """Temporary files the atomic writers might have left (they start with '.')."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- round trips --------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_round_trip(tmp_path: Path, suffix: str) -> None:
    image = _image()
    path = write_volume(image, tmp_path / f"image{suffix}")
    back = read_volume(path)
    _assert_same_geometry(back, image)
    assert back.array.dtype == np.float32
    np.testing.assert_array_equal(back.array, image.array)
    # The physical point of a far corner voxel survives, not only the matrices.
    corner = np.array([5, 6, 4])
    np.testing.assert_allclose(back.index_to_physical(corner), image.index_to_physical(corner), atol=1e-4)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_nifti2_reads_as_its_nifti1_copy(tmp_path: Path, suffix: str) -> None:
    # This ITK has no NIfTI-2 reader ("Unable to determine ImageIO reader"); nibabel reads it, with the same checks.
    volume = _image()
    write_volume(volume, tmp_path / f"one{suffix}")
    one = nibabel.load(str(tmp_path / f"one{suffix}"))
    nibabel.save(nibabel.Nifti2Image(np.asarray(one.dataobj), one.affine, nibabel.Nifti2Header()),
                 str(tmp_path / f"two{suffix}"))
    assert nibabel.load(str(tmp_path / f"two{suffix}")).header.sizeof_hdr == 540
    two = read_volume(tmp_path / f"two{suffix}")
    np.testing.assert_array_equal(two.array, volume.array)
    np.testing.assert_allclose(two.spacing_mm, volume.spacing_mm, rtol=1e-6)
    np.testing.assert_allclose(two.origin_mm, volume.origin_mm, atol=1e-4)
    np.testing.assert_allclose(two.direction, volume.direction, atol=1e-6)


@pytest.mark.parametrize("written_by, read_by", [("nibabel", "itk"), ("itk", "nibabel"), ("nibabel", "nibabel")])
def test_nifti_without_simpleitk_keeps_the_geometry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    written_by: str, read_by: str) -> None:
    """Minimal environments without SimpleITK (a lent GPU machine) read and write NIfTI through nibabel."""
    import scarnet.io as io

    image = _image()
    monkeypatch.setattr(io, "_have_simpleitk", lambda: written_by == "itk")
    path = write_volume(image, tmp_path / "image.nii.gz")
    assert not _leftovers(tmp_path)
    monkeypatch.setattr(io, "_have_simpleitk", lambda: read_by == "itk")
    back = read_volume(path)
    _assert_same_geometry(back, image)
    np.testing.assert_array_equal(back.array, image.array)
    corner = np.array([5, 6, 4])
    np.testing.assert_allclose(back.index_to_physical(corner), image.index_to_physical(corner), atol=1e-4)
    with pytest.raises(OutputExistsError):
        write_volume(image, path)


@pytest.mark.parametrize("header", ["unit-scale sform", "metres", "singleton 5D"])
def test_nibabel_reads_a_nifti_as_itk_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, header: str) -> None:
    """Without SimpleITK, and for the NIfTI-2 files this ITK cannot read, nibabel reads the header as ITK does (and
    so as Slicer shows it): the spacing from pixdim whatever the affine's scales (EMIDEC's sforms have unit scales
    beside pixdim 1.4 × 1.4 × 13 mm: read from the affine, every volume came out 26× too small), in the header's
    unit (spacing and origin), and trailing axes of one dropped."""
    import scarnet.io as io

    data = np.arange(6 * 7 * 5, dtype=np.int16).reshape(6, 7, 5)
    affine = np.diag([-1.0, -1.0, 1.0, 1.0])  # EMIDEC's sform: unit scales, no offset
    affine[:3, 3] = (12.0, -30.0, 45.0)
    if header == "singleton 5D":
        data = data[..., None, None]
    for version, image_class in (("1", nibabel.Nifti1Image), ("2", nibabel.Nifti2Image)):
        image = image_class(data, affine)
        image.header.set_zooms((1.40625, 1.40625, 13.0, *([1.0] * (data.ndim - 3))))
        image.set_sform(affine, code=2)
        image.set_qform(None, code=0)
        image.header.set_xyzt_units("meter" if header == "metres" else "mm")
        nibabel.save(image, str(tmp_path / f"image{version}.nii.gz"))
    by_itk = read_volume(tmp_path / "image1.nii.gz")
    to_mm = 1000.0 if header == "metres" else 1.0
    np.testing.assert_allclose(by_itk.spacing_mm, np.array([1.40625, 1.40625, 13.0]) * to_mm, rtol=1e-6)
    monkeypatch.setattr(io, "_have_simpleitk", lambda: False)
    for version in ("1", "2"):
        back = read_volume(tmp_path / f"image{version}.nii.gz")
        _assert_same_geometry(back, by_itk)
        np.testing.assert_array_equal(back.array, by_itk.array)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".seg.nrrd"])
def test_labelmap_round_trip(tmp_path: Path, suffix: str) -> None:
    labelmap = _labelmap()
    path = write_labelmap(labelmap, tmp_path / f"labels{suffix}")
    back = read_labelmap(path, reference=_image())
    _assert_same_geometry(back, labelmap)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, labelmap.array)


@pytest.mark.parametrize("suffix", [".nrrd", ".seg.nrrd"])
def test_a_nrrd_header_is_parsed_once_per_read(tmp_path: Path, monkeypatch, suffix: str) -> None:
    """QA helper-141: the checks before and after the reader (data files, declared size, compressed data) read a
    NRRD's header two or three times; now once, passed along, and the file still read right."""
    import scarnet.io

    labelmap = _labelmap()
    path = write_labelmap(labelmap, tmp_path / f"labels{suffix}")
    parsed: list[Path] = []
    parse = scarnet.io._nrrd_header_fields
    monkeypatch.setattr(scarnet.io, "_nrrd_header_fields", lambda header_path: parsed.append(header_path)
                        or parse(header_path))
    np.testing.assert_array_equal(read_labelmap(path).array, labelmap.array)
    assert parsed == [path]


def test_a_csv_with_non_ascii_text_is_written_with_a_byte_order_mark_and_an_ascii_one_as_before(tmp_path: Path) -> None:
    """QA helper-141: what Excel on Windows needs to open a UTF-8 CSV as UTF-8, only where it matters."""
    write_text("input,M\u00fcller \u2265 1 %\n", tmp_path / "r.csv")
    newline = os.linesep.encode()
    assert (tmp_path / "r.csv").read_bytes() == b"\xef\xbb\xbfinput,M\xc3\xbcller \xe2\x89\xa5 1 %" + newline
    assert (tmp_path / "r.csv").read_text(encoding="utf-8-sig").splitlines() == ["input,M\u00fcller \u2265 1 %"]
    write_text("index,scar_ml\n", tmp_path / "ascii.CSV")
    assert (tmp_path / "ascii.CSV").read_bytes() == b"index,scar_ml" + newline
    write_text('{"input": "M\u00fcller"}', tmp_path / "r.json")  # JSON: never a mark (RFC 8259 forbids one)
    assert (tmp_path / "r.json").read_bytes() == '{"input": "M\u00fcller"}'.encode()


def test_seg_nrrd_read_by_slicerio(tmp_path: Path) -> None:
    labelmap = _labelmap()
    path = write_seg_nrrd(labelmap, tmp_path / "result.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    np.testing.assert_allclose(segmentation["ijkToLPS"], labelmap.ijk_to_lps_matrix(), atol=1e-6)
    voxels = np.asarray(segmentation["voxels"])
    assert voxels.shape == labelmap.shape_ijk  # pynrrd's (i, j, k) order
    np.testing.assert_array_equal(np.transpose(voxels, (2, 1, 0)), labelmap.array)

    segments = segmentation["segments"]
    assert [s["name"] for s in segments] == ["LV blood pool", "Myocardium", "Scar", "MVO"]
    assert [int(s["labelValue"]) for s in segments] == [1, 2, 3, 4]
    assert len(segments) == len(SEGMENTS)
    for segment, info in zip(segments, SEGMENTS):
        assert segment["id"] == info.segment_id
        np.testing.assert_allclose(segment["color"], info.color_rgb, atol=1e-6)
        assert segment["terminology"]["category"] == list(info.category)
        assert segment["terminology"]["type"] == list(info.type)
        mask = slicerio.segment_mask(segmentation, segment)
        assert int(mask.sum()) == int((labelmap.array == info.label).sum())
    # Extent (i0, i1, j0, j1, k0, k1) of the MVO voxel at (i, j, k) = (4, 4, 2).
    assert [int(v) for v in segments[3]["extent"]] == [4, 4, 4, 4, 2, 2]

    # The raw header carries Slicer's TerminologyEntry strings.
    header = nrrd.read_header(str(path))
    assert header["Segment2_Tags"].startswith(
        "TerminologyEntry:ScarNetSlicer LGE~SCT^49755003^Morphologically Altered Structure~SCT^12402003^Scar~")
    assert "~SCT^80891009^Heart~" in header["Segment0_Tags"]
    assert header["space"] == "left-posterior-superior"

    back = read_labelmap(path)
    np.testing.assert_array_equal(back.array, labelmap.array)
    _assert_same_geometry(back, labelmap)


def test_seg_nrrd_with_absent_label(tmp_path: Path) -> None:
    labelmap = _labelmap()
    labelmap.array[labelmap.array == 4] = 2  # no MVO
    path = write_seg_nrrd(labelmap, tmp_path / "no_mvo.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    mvo = [s for s in segmentation["segments"] if s["name"] == "MVO"][0]
    assert [int(v) for v in mvo["extent"]] == [0, -1, 0, -1, 0, -1]  # Slicer's "empty" extent
    np.testing.assert_array_equal(read_seg_nrrd(path).array, labelmap.array)


def test_seg_nrrd_voxels_no_segment_claims_or_two_segments_share_are_refused(tmp_path: Path) -> None:
    """A value no segment claims (a damaged file, one changed outside Slicer), or two segments with one label
    value: what those voxels are is unknown, so the file is refused rather than some voxels dropped or counted
    twice."""
    labelmap = _labelmap()
    path = write_seg_nrrd(labelmap, tmp_path / "result.seg.nrrd")
    data, header = nrrd.read(str(path))
    changed = data.copy()
    changed[data == 3] = 7
    nrrd.write(str(tmp_path / "value7.seg.nrrd"), changed, header)
    with pytest.raises(InputError, match="voxels of value 7 in layer 0 belong to no segment"):
        read_labelmap(tmp_path / "value7.seg.nrrd")
    shared = dict(header)
    shared["Segment2_LabelValue"] = shared["Segment1_LabelValue"]
    nrrd.write(str(tmp_path / "shared.seg.nrrd"), data, shared)
    with pytest.raises(InputError, match="segments Myocardium and Scar have the same label value 2 in layer 0"):
        read_labelmap(tmp_path / "shared.seg.nrrd")
    np.testing.assert_array_equal(read_labelmap(path).array, labelmap.array)  # as written, read as before


def test_a_degenerate_nifti_affine_is_refused_unless_a_usable_qform_gives_the_grid(tmp_path: Path) -> None:
    """An sform with an axis of zero length (or axes nearly in one plane) places no grid: refused, unless the qform
    beside it is usable, which is then the grid (as ITK reads such files)."""
    data = np.zeros((40, 30, 6), np.uint8)
    data[10:20, 5:15] = 2
    broken = np.array([[1.5, 0, 1.5, 0], [0, 1.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1.0]])
    sheared = np.array([[1.5, 0, 7.8, 0], [0, 1.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])  # axes 83° off
    for sform in (np.zeros((4, 4)), broken, sheared):
        image = nibabel.Nifti1Image(data, None)
        image.set_qform(np.diag([1.5, 1.7, 8.0, 1.0]), code=1)
        image.set_sform(sform, code=1)
        nibabel.save(image, str(tmp_path / "with_qform.nii.gz"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nor a warning about a shear the grid does not have
            read = read_labelmap(tmp_path / "with_qform.nii.gz")
        np.testing.assert_allclose(read.spacing_mm, (1.5, 1.7, 8.0), atol=1e-5)
    for affine in (broken, sheared):
        nibabel.save(nibabel.Nifti1Image(data, affine), str(tmp_path / "sform_only.nii.gz"))
        with pytest.raises(InputError, match="its header's affine is degenerate"):
            read_labelmap(tmp_path / "sform_only.nii.gz")


def _read_with_warnings(path: Path) -> tuple[Volume, list[str]]:
    """The volume :func:`read_volume` reads and the warnings it gives, in order."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(path)
    return volume, [str(w.message) for w in caught]


def test_a_nifti_whose_sform_and_pixdim_give_other_voxel_sizes_warns_and_so_does_its_resave(tmp_path: Path) -> None:
    """EMIDEC's headers: pixdim 1.41×1.41×13 mm (read, as ITK and Slicer do), an sform "aligned" of 1 mm voxels (what
    nibabel and FSL read). Said; and the file nibabel re-saves from it, all 1 mm, gave volumes 26 times too small
    without a word: its 1×1×1 mm voxels are said too."""
    path = tmp_path / "emidec_like.nii.gz"
    data = write_emidec_like_nifti(path)
    volume, messages = _read_with_warnings(path)
    np.testing.assert_allclose(volume.spacing_mm, (1.40625, 1.40625, 13.0))
    assert messages == [
        f"{path}: its sform makes voxels of 1×1×1 mm, its pixdim 1.41×1.41×13 mm, which is read here, as 3D Slicer "
        "and ITK do; programs that take the sform (nibabel, FSL) read the other size, and files they save from it "
        "keep it: check which is right"]

    loaded = nibabel.load(str(path))
    resaved = tmp_path / "resaved.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.asarray(loaded.dataobj), loaded.affine), str(resaved))
    volume, messages = _read_with_warnings(resaved)
    np.testing.assert_allclose(volume.spacing_mm, (1.0, 1.0, 1.0))
    assert messages == [
        f"{resaved}: its voxels are 1×1×1 mm, the size programs write when they know none (a file re-saved without "
        "the scanner's spacing): volumes, in mL, are right only if that is the true voxel size"]
    write_volume(Volume(data.transpose(2, 1, 0).copy(), (1.0, 1.0, 1.0)), tmp_path / "ones.nrrd")
    with pytest.warns(UserWarning, match="its voxels are 1×1×1 mm"):
        read_volume(tmp_path / "ones.nrrd")


def test_a_nifti_that_other_programs_place_elsewhere_warns(tmp_path: Path) -> None:
    """ITK (so Slicer, and the labelmaps written) takes the qform beside an sform coded "aligned" or "template";
    nibabel and FSL take the sform. Where the two disagree, or a negative pixdim mirrors an axis in ITK but not in
    nibabel, the user is told; where every program reads the same place, nothing is said."""
    data = np.zeros((40, 30, 6), np.float32)
    data[10:20, 5:15] = 1.0
    scanner = np.diag([1.5, 1.5, 8.0, 1.0])
    shifted = scanner.copy()
    shifted[:3, 3] = (20.0, 0.0, 0.0)
    for sform_code, sform, warned in ((2, shifted, True), (4, shifted, True), (1, shifted, False), (2, scanner, False)):
        image = nibabel.Nifti1Image(data, None)
        image.set_qform(scanner, code=1)
        image.set_sform(sform, code=sform_code)
        path = tmp_path / f"forms_{sform_code}.nii.gz"
        nibabel.save(image, str(path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            volume = read_volume(path)
        messages = [str(warning.message) for warning in caught]
        if warned:
            assert messages == [f"{path}: its sform and qform place the image up to 20 mm apart; it is read with the "
                                "qform, as 3D Slicer and ITK do for its codes, and so are the labelmaps written for "
                                "it. Programs that take the sform (FSL, nibabel) place the image elsewhere: check "
                                "which is right"], sform_code
            np.testing.assert_allclose(volume.origin_mm, (0.0, 0.0, 0.0), atol=1e-4)  # the qform's
        else:
            assert messages == [], (sform_code, messages)
    # The same headers in metres (xyzt_units): their forms are in metres too, and compared in mm.
    to_metres = np.diag([0.001, 0.001, 0.001, 1.0])
    for sform, warned in ((scanner, False), (shifted, True)):
        image = nibabel.Nifti1Image(data, None)
        image.header.set_xyzt_units("meter")
        image.set_qform(to_metres @ scanner, code=1)
        image.set_sform(to_metres @ sform, code=2)
        path = tmp_path / f"metres_{warned}.nii.gz"
        nibabel.save(image, str(path))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            volume = read_volume(path)
        np.testing.assert_allclose(volume.spacing_mm, (1.5, 1.5, 8.0), rtol=1e-5)
        messages = [str(warning.message) for warning in caught]
        assert messages == ([f"{path}: its sform and qform place the image up to 20 mm apart; it is read with the "
                             "qform, as 3D Slicer and ITK do for its codes, and so are the labelmaps written for it. "
                             "Programs that take the sform (FSL, nibabel) place the image elsewhere: check which is "
                             "right"] if warned else []), messages
    image = nibabel.Nifti1Image(data, None)
    image.set_qform(scanner, code=1)
    nibabel.save(image, str(tmp_path / "negative.nii"))
    raw = bytearray((tmp_path / "negative.nii").read_bytes())
    raw[80:84] = np.float32(-1.5).tobytes()  # pixdim[1], as some converters write a mirrored column axis
    (tmp_path / "negative.nii").write_bytes(bytes(raw))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        read_volume(tmp_path / "negative.nii")
    assert [str(warning.message) for warning in caught if "negative spacing" in str(warning.message)] == [
        f"{tmp_path / 'negative.nii'}: its header has a negative spacing (pixdim[1] = -1.5), which the NIfTI "
        "standard does not allow; 3D Slicer and ITK read that axis mirrored, as here, nibabel and FSL do not: check "
        "the orientation (left and right)"]


def test_seg_nrrd_of_old_slicer_one_layer_per_segment_is_read_as_slicer_reads_it(tmp_path: Path) -> None:
    """Slicer before 4.11 wrote each segment in a layer of its own, value 1, without LabelValue or Layer fields."""
    voxels = np.zeros((2, 5, 6, 3), np.uint8)  # (layer, i, j, k)
    voxels[0, 1:3, 1:3, :] = 1
    voxels[1, 2:4, 2:5, :] = 1
    header = {"type": "unsigned char", "dimension": 4, "space": "left-posterior-superior",
              "sizes": list(voxels.shape), "space directions": [[np.nan] * 3, [1.5, 0, 0], [0, 1.5, 0], [0, 0, 8.0]],
              "kinds": ["list", "domain", "domain", "domain"], "space origin": [0.0, 0.0, 0.0]}
    for index, name in enumerate(("Myocardium", "Scar")):
        header.update({f"Segment{index}_ID": f"s{index}", f"Segment{index}_Name": name,
                       f"Segment{index}_Color": "1 0.9 0.1", f"Segment{index}_Extent": "0 4 0 5 0 2"})
    nrrd.write(str(tmp_path / "old.seg.nrrd"), voxels, header)
    labels = np.transpose(np.where(voxels[1] == 1, 3, np.where(voxels[0] == 1, 2, 0)), (2, 1, 0))
    np.testing.assert_array_equal(read_labelmap(tmp_path / "old.seg.nrrd").array, labels)


def test_complex_images_are_read_by_their_magnitude_and_refused_as_labelmaps(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = (rng.uniform(-100, 100, (30, 20, 4)) + 1j * rng.uniform(-100, 100, (30, 20, 4))).astype(np.complex64)
    nibabel.save(nibabel.Nifti1Image(data, np.diag([1.5, 1.5, 8.0, 1.0])), str(tmp_path / "complex.nii.gz"))
    with pytest.warns(UserWarning, match="complex-valued image; its magnitude is used"):
        image = read_volume(tmp_path / "complex.nii.gz")
    np.testing.assert_allclose(image.array, np.abs(np.transpose(data, (2, 1, 0))), rtol=1e-6)
    with pytest.raises(InputError, match="holds complex values, not labels"):
        read_labelmap(tmp_path / "complex.nii.gz")


def test_names_simpleitk_cannot_take_are_refused_not_aborted(tmp_path: Path) -> None:
    """A name that is not valid UTF-8 (its bytes held as lone surrogates) would abort the whole process inside
    SimpleITK; it is refused in one line, and a write leaves nothing behind."""
    from scarnet.io import itk_file_name

    labelmap = _labelmap()
    good = write_volume(labelmap, tmp_path / "good.nii.gz")
    odd = tmp_path / "odd\udcff.nii.gz"
    odd.write_bytes(good.read_bytes())
    assert os.fsencode(odd.name) == b"odd\xff.nii.gz"
    with pytest.raises(InputError, match="not valid UTF-8"):
        read_volume(odd)
    with pytest.raises(OutputError, match="not valid UTF-8"):
        write_volume(labelmap, tmp_path / "new\udcff.nrrd")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["good.nii.gz", odd.name])
    assert itk_file_name(good, InputError) == str(good)


def test_seg_nrrd_segments_found_by_terminology(tmp_path: Path) -> None:
    # A user renamed the segments in Slicer; the SNOMED type codes still identify them.
    labelmap = _labelmap()
    path = write_seg_nrrd(labelmap, tmp_path / "renamed.seg.nrrd")
    segmentation = slicerio.read_segmentation(str(path))
    for n, segment in enumerate(segmentation["segments"]):
        segment["name"] = f"Segment_{n + 1}"
    slicerio.write_segmentation(str(tmp_path / "renamed2.seg.nrrd"), segmentation)
    back = read_labelmap(tmp_path / "renamed2.seg.nrrd")
    np.testing.assert_array_equal(back.array, labelmap.array)


def test_seg_nrrd_with_foreign_segments_only(tmp_path: Path) -> None:
    segmentation = {
        "voxels": np.ones((3, 3, 3), dtype=np.uint8),
        "ijkToLPS": np.eye(4),
        "segments": [{"id": "Segment_1", "name": "Liver", "labelValue": 1, "layer": 0, "color": [1, 0, 0],
                      "extent": [0, 2, 0, 2, 0, 2]}],
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    slicerio.write_segmentation(str(tmp_path / "liver.seg.nrrd"), segmentation)
    with pytest.raises(InputError, match="found: Liver") as error:
        read_labelmap(tmp_path / "liver.seg.nrrd")
    _one_line(error)


def _layered_seg_nrrd(path: Path, names: list[str], masks: list[np.ndarray]) -> Path:
    """A .seg.nrrd with one layer per segment (i, j, k masks), as Slicer saves overlapping segments."""
    segmentation = {
        "voxels": np.stack([m.astype(np.uint8) for m in masks]),
        "ijkToLPS": np.diag([1.5, 1.5, 8.0, 1.0]),
        "segments": [{"id": f"Segment_{n}", "name": name, "labelValue": 1, "layer": n, "color": [1, 0, 0]}
                     for n, name in enumerate(names)],
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    slicerio.write_segmentation(str(path), segmentation)
    return path


def test_seg_nrrd_overlapping_segments_read_the_same_in_any_order(tmp_path: Path) -> None:
    # A reader draws a whole myocardium ring, then a scar segment over part of it (Slicer allows
    # overlap): the scar is scar whichever segment the file lists first, as in the Slicer module.
    ring = np.zeros((6, 6, 2), dtype=bool)
    ring[1:5, 1:5] = True
    ring[2:4, 2:4] = False
    scar = np.zeros_like(ring)
    scar[1, 1:5] = True
    for order in (["Myocardium", "Scar"], ["Scar", "Myocardium"]):
        masks = [ring if name == "Myocardium" else scar for name in order]
        back = read_labelmap(_layered_seg_nrrd(tmp_path / f"{order[0]}.seg.nrrd", order, masks))
        expected = np.transpose(np.where(scar, 3, np.where(ring, 2, 0)), (2, 1, 0))
        np.testing.assert_array_equal(back.array, expected)


def test_seg_nrrd_usual_names_count_and_unknown_segments_are_named(tmp_path: Path) -> None:
    ring = np.zeros((6, 6, 2), dtype=bool)
    ring[1:5, 1:5] = True
    infarct = np.zeros_like(ring)
    infarct[1, 1:5] = True
    rv = np.zeros_like(ring)
    rv[5, :] = True
    path = _layered_seg_nrrd(tmp_path / "hand.seg.nrrd", ["LV myocardium", "Infarct", "RV", "Segment_9"],
                             [ring, infarct, rv, np.zeros_like(ring)])
    with pytest.warns(UserWarning, match=r"not counted.*RV \(12 voxels\)") as record:
        back = read_labelmap(path)
    assert "Segment_9" not in str(record[0].message)  # an empty segment changes nothing: no warning
    assert int((back.array == 3).sum()) == int(infarct.sum())
    assert int((back.array == 2).sum()) == int(ring.sum() - infarct.sum())


def test_seg_nrrd_segment_with_label_value_0_or_outside_the_layers_is_refused(tmp_path: Path) -> None:
    # Label value 0 is the background: such a segment was read as every voxel no other segment holds (6868 mL MVO).
    labelmap = _labelmap()
    labelmap.array[labelmap.array == 4] = 3  # no MVO drawn: its segment is empty, as in the file QA found
    data, header = nrrd.read(str(write_seg_nrrd(labelmap, tmp_path / "result.seg.nrrd")))
    header["Segment3_LabelValue"] = "0"
    nrrd.write(str(tmp_path / "label0.seg.nrrd"), data, header)
    with pytest.raises(InputError, match=r"label0.seg.nrrd: segment MVO has label value 0, .*0 is the background") \
            as error:
        read_labelmap(tmp_path / "label0.seg.nrrd")
    _one_line(error)
    # A layer the file does not have: an error of numpy's (or, negative, another segment's layer) before.
    ring = np.zeros((6, 6, 2), dtype=bool)
    ring[1:5, 1:5] = True
    path = _layered_seg_nrrd(tmp_path / "layers.seg.nrrd", ["Myocardium", "Scar"], [ring, np.zeros_like(ring)])
    data, header = nrrd.read(str(path))
    for layer in ("5", "-1"):
        header["Segment1_Layer"] = layer
        nrrd.write(str(path), data, header)
        with pytest.raises(InputError, match=rf"segment Scar is in layer {layer}, but the file has 2 layer\(s\)"):
            read_labelmap(path)


def test_seg_nrrd_segment_mostly_hidden_by_a_higher_one_warns(tmp_path: Path) -> None:
    # "Myocardium" drawn as the filled epicardial disk over the blood pool: the higher label wins (the rule stays),
    # so the blood pool would be 0 mL and the myocardium hold the cavity, without a word.
    disk = np.zeros((8, 8, 2), dtype=bool)
    disk[1:7, 1:7] = True
    cavity = np.zeros_like(disk)
    cavity[2:6, 2:6] = True
    path = _layered_seg_nrrd(tmp_path / "disk.seg.nrrd", ["LV blood pool", "Myocardium"], [cavity, disk])
    with pytest.warns(UserWarning, match=r"disk.seg.nrrd: segment LV blood pool loses 32 of its 32 voxels "
                                         r"\(0.6 of 0.6 mL\) to Myocardium \(32 voxels\) where they overlap") as record:
        back = read_labelmap(path)
    assert len(record) == 1
    assert not (back.array == 1).any() and int((back.array == 2).sum()) == int(disk.sum())
    # A scar drawn over part of a myocardium ring is the usual way, also over most of it (a large transmural
    # infarct: scar is myocardium, nested as MVO is in scar): no warning.
    ring = disk & ~cavity
    for rows in (slice(1, 2), slice(1, 5)):  # a third of the ring's rows, then more than half of its voxels
        scar = np.zeros_like(ring)
        scar[rows] = ring[rows]
        mvo = scar.copy()
        path = _layered_seg_nrrd(tmp_path / "ring.seg.nrrd", ["Myocardium", "Scar", "MVO"], [ring, scar, mvo])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            read_labelmap(path)
        path.unlink()


# -- atomic writes ------------------------------------------------------------------------------
def test_existing_file_not_replaced_without_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "labels.nii.gz"
    write_labelmap(_labelmap(), path)
    before = path.read_bytes()
    other = _labelmap().with_array(np.zeros(SHAPE_KJI, np.uint8))
    for writer in (write_labelmap, write_volume):
        with pytest.raises(OutputExistsError, match="already exists") as error:
            writer(other, path)
        _one_line(error)
    assert path.read_bytes() == before
    with pytest.raises(OutputExistsError):
        write_text("x", path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == []

    write_labelmap(other, path, overwrite=True)
    assert path.read_bytes() != before
    assert not read_labelmap(path).array.any()
    assert _leftovers(tmp_path) == []


def test_seg_nrrd_not_replaced_without_overwrite(tmp_path: Path) -> None:
    path = write_seg_nrrd(_labelmap(), tmp_path / "a.seg.nrrd")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_seg_nrrd(_labelmap(), path)
    assert path.read_bytes() == before


def test_failed_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_write(image, filename, *args, **kwargs):
        Path(filename).write_bytes(b"partial")  # the writer got half way, then the disk filled up
        raise RuntimeError("disk full")

    real_write = sitk.WriteImage
    monkeypatch.setattr(sitk, "WriteImage", half_write)
    with pytest.raises(OutputError, match="could not be written \\(disk full\\)"):
        write_volume(_image(), tmp_path / "new.nii.gz")
    assert list(tmp_path.iterdir()) == []

    existing = tmp_path / "old.nrrd"
    existing.write_bytes(b"old content")
    with pytest.raises(OutputError, match="disk full"):
        write_volume(_image(), existing, overwrite=True)
    assert existing.read_bytes() == b"old content"
    assert _leftovers(tmp_path) == []

    # ITK's NIfTI writer on a full disk prints "wrote only N of M bytes" and returns normally.
    def short_write(image, filename, *args, **kwargs):
        real_write(image, filename, *args, **kwargs)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])

    monkeypatch.setattr(sitk, "WriteImage", short_write)
    for name in ("short.nii.gz", "short.nii"):
        with pytest.raises(OutputError, match="could not be written completely"):
            write_volume(_image(), tmp_path / name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.nrrd"]


def test_failed_seg_nrrd_write_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_write(filename, segmentation, *args, **kwargs):
        Path(filename).write_bytes(b"NRRD0004\n")
        raise OSError("interrupted")

    monkeypatch.setattr(slicerio, "write_segmentation", half_write)
    with pytest.raises(OSError, match="interrupted"):
        write_seg_nrrd(_labelmap(), tmp_path / "x.seg.nrrd")
    assert list(tmp_path.iterdir()) == []


def test_written_file_has_normal_permissions(tmp_path: Path) -> None:
    # The temporary file comes from mkstemp (mode 0600); the result must get the umask's mode.
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_text("{}", tmp_path / "report.json")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.skipif(sys.platform == "win32", reason="making symbolic links needs a privilege on Windows")
def test_an_output_named_by_a_link_is_written_through_it(tmp_path: Path) -> None:
    # A report kept in a shared folder and linked from the exam's: --overwrite updates the shared file; replacing
    # the link by a file left the shared one stale.
    shared = tmp_path / "shared.json"
    shared.write_text("old")
    link = tmp_path / "report.json"
    link.symlink_to(shared)
    with pytest.raises(OutputExistsError, match="already exists"):
        write_text("new", link)
    write_text("new", link, overwrite=True)
    assert link.is_symlink() and os.readlink(link) == str(shared)
    assert shared.read_text() == "new"
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(sys.platform == "win32", reason="links, pipes and /dev/null are POSIX")
def test_an_output_that_is_no_file_is_refused_in_one_line(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.json"
    os.mkfifo(pipe)
    (tmp_path / "null.json").symlink_to(os.devnull)
    for name in ("pipe.json", "null.json"):
        with pytest.raises(OutputError, match="is not a regular file") as error:
            write_text("{}", tmp_path / name, overwrite=True)
        _one_line(error)
    assert pipe.exists() and not pipe.is_file() and (tmp_path / "null.json").is_symlink()

    (tmp_path / "loop_a.json").symlink_to(tmp_path / "loop_b.json")
    (tmp_path / "loop_b.json").symlink_to(tmp_path / "loop_a.json")
    with pytest.raises(OutputError, match="leads back to itself") as error:
        write_text("{}", tmp_path / "loop_a.json", overwrite=True)
    _one_line(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop_a.json", "loop_b.json", "null.json", "pipe.json"]


def test_a_failure_while_the_output_is_written_names_the_output(tmp_path: Path) -> None:
    # A full disk while a writer that is not ITK's (json, csv, html) writes: one line, no temporary file left.
    path = tmp_path / "report.html"
    with pytest.raises(OutputError) as error, atomic_path(path) as temp:
        temp.write_text("<html>")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(error.value) == f"{path}: could not be written ({os.strerror(errno.ENOSPC)})"
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist") as error:
        write_labelmap(_labelmap(), tmp_path / "absent" / "labels.nii.gz")
    _one_line(error)


# -- bad inputs -------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    for reader in (read_volume, read_labelmap):
        with pytest.raises(InputError, match="no such file") as error:
            reader(tmp_path / "absent.nii.gz")
        _one_line(error)


@pytest.mark.skipif(sys.platform == "win32", reason="making symbolic links needs a privilege on Windows")
def test_a_link_to_nothing_is_named_as_a_link(tmp_path: Path) -> None:
    (tmp_path / "dangling.nii.gz").symlink_to(tmp_path / "moved" / "exam.nii.gz")
    (tmp_path / "loop_a.nii.gz").symlink_to(tmp_path / "loop_b.nii.gz")
    (tmp_path / "loop_b.nii.gz").symlink_to(tmp_path / "loop_a.nii.gz")
    for reader in (read_volume, read_labelmap):
        for name, target in (("dangling.nii.gz", tmp_path / "moved" / "exam.nii.gz"),
                             ("loop_a.nii.gz", tmp_path / "loop_b.nii.gz")):
            with pytest.raises(InputError) as error:
                reader(tmp_path / name)
            assert str(error.value) == (f"{tmp_path / name}: a link to {target}, which does not exist (or links in "
                                        "a loop)")


def test_gzip_data_named_without_gz_is_told_to_be_renamed(tmp_path: Path) -> None:
    write_volume(_image(), tmp_path / "image.nii.gz")
    (tmp_path / "image.nii.gz").rename(tmp_path / "image.nii")
    with pytest.raises(InputError) as error:
        read_volume(tmp_path / "image.nii")
    assert str(error.value) == (f"{tmp_path / 'image.nii'}: not a readable image (its data is gzip-compressed, but it "
                                "is named .nii: rename it to .nii.gz)")
    (tmp_path / "image.nii").rename(tmp_path / "renamed.nii.gz")  # as told: it reads
    assert read_volume(tmp_path / "renamed.nii.gz").array.shape == _image().array.shape
    # A whole .nrrd / .mha gzipped has no name any reader takes: it is to be decompressed, not renamed.
    for suffix in (".nrrd", ".mha"):
        write_volume(_image(), tmp_path / f"plain{suffix}")
        (tmp_path / f"image{suffix}").write_bytes(gzip.compress((tmp_path / f"plain{suffix}").read_bytes()))
        with pytest.raises(InputError) as error:
            read_volume(tmp_path / f"image{suffix}")
        assert str(error.value) == (f"{tmp_path / f'image{suffix}'}: not a readable image (the whole file is "
                                    f"gzip-compressed, which {suffix} readers do not take: decompress it (gunzip))")


def test_text_file_with_nifti_suffix(tmp_path: Path) -> None:
    path = tmp_path / "fake.nii.gz"
    path.write_text("this is not an image\n" * 5)
    with pytest.raises(InputError, match="not a readable image") as error:
        read_volume(path)
    _one_line(error)


def test_png_is_2d(tmp_path: Path) -> None:
    path = tmp_path / "slice.png"
    sitk.WriteImage(sitk.GetImageFromArray(np.arange(20, dtype=np.uint8).reshape(4, 5)), str(path))
    with pytest.raises(InputError, match="2D image") as error:
        read_volume(path)
    _one_line(error)


def test_rgb_image(tmp_path: Path) -> None:
    rgb = (np.arange(2 * 4 * 5 * 3) % 256).astype(np.uint8).reshape(2, 4, 5, 3)
    for name, array in (("colour.png", rgb[0]), ("colour.mha", rgb)):
        sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(tmp_path / name))
        with pytest.raises(InputError, match="3 components per voxel") as error:
            read_volume(tmp_path / name)
        _one_line(error)


def _image_4d(frames: int) -> sitk.Image:
    image = _image()
    series = [image.with_array(image.array + 10 * t).to_sitk() for t in range(frames)]
    return sitk.JoinSeries(series)  # 4D; JoinSeries extends the 3D geometry by a time axis


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_4d_time_series_refused(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"cine{suffix}"
    sitk.WriteImage(_image_4d(3), str(path))
    with pytest.raises(InputError, match="4D image .* not a time series") as error:
        read_volume(path)
    _one_line(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha"])
def test_4d_with_one_time_point_is_3d(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"one_frame{suffix}"
    sitk.WriteImage(_image_4d(1), str(path))
    volume = read_volume(path)
    _assert_same_geometry(volume, _image())
    np.testing.assert_array_equal(volume.array, _image().array)


def test_nifti_4d_one_time_point_written_by_nibabel(tmp_path: Path) -> None:
    data = np.arange(6 * 7 * 5, dtype=np.float32).reshape(6, 7, 5, 1)
    affine = np.diag([1.3, 1.7, 8.0, 1.0])
    affine[:3, 3] = (10.0, 20.0, 30.0)
    nibabel.save(nibabel.Nifti1Image(data, affine), str(tmp_path / "tool.nii.gz"))
    volume = read_volume(tmp_path / "tool.nii.gz")
    assert volume.array.shape == (5, 7, 6)
    assert volume.spacing_mm == pytest.approx(SPACING)
    # NIfTI is RAS; the volume is LPS: x and y change sign.
    assert volume.origin_mm == pytest.approx((-10.0, -20.0, 30.0))
    np.testing.assert_array_equal(volume.array, np.transpose(data[..., 0], (2, 1, 0)))


@pytest.mark.parametrize("value", [0.0, 42.0])
def test_constant_volume(tmp_path: Path, value: float) -> None:
    path = write_volume(_image().with_array(np.full(SHAPE_KJI, value, np.float32)), tmp_path / "flat.nrrd")
    with pytest.raises(InputError, match="constant") as error:
        read_volume(path)
    _one_line(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_volume_with_nan_or_inf(tmp_path: Path, suffix: str, bad: float) -> None:
    # NIfTI matters most: ITK 5.4's reader silently turns NaN/Inf into 0, so io.py looks again with nibabel.
    array = _image().array.copy()
    array[2, 3, 3] = bad
    array[0, 0, 0] = 0.0  # a zero elsewhere, so that "no zeros, no hidden NaN" cannot short-cut the check
    path = write_volume(_image().with_array(array), tmp_path / f"bad{suffix}")
    with pytest.raises(InputError, match="NaN or infinite") as error:
        read_volume(path)
    _one_line(error)
    assert "replace them with the background's value (e.g. 0)" in str(error.value)  # what to do, said


def test_nifti_with_nan_written_by_nibabel(tmp_path: Path) -> None:
    data = np.ones((6, 7, 5), np.float32)
    data[1, 1, 1] = np.nan
    nibabel.save(nibabel.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    for reader in (read_volume, read_labelmap):
        with pytest.raises(InputError, match="NaN or infinite") as error:
            reader(tmp_path / "nan.nii.gz")
        _one_line(error)


@pytest.mark.parametrize(
    ("value", "dtype", "message"),
    [(7, np.uint8, "outside 0-4"), (-1, np.int16, "outside 0-4"), (1.5, np.float32, "non-integer")],
)
def test_bad_label_values(tmp_path: Path, value: float, dtype, message: str) -> None:
    array = _labelmap().array.astype(dtype)
    array[0, 0, 0] = value
    path = write_volume(_labelmap().with_array(array), tmp_path / "bad_labels.nii.gz")
    with pytest.raises(InputError, match=message) as error:
        read_labelmap(path)
    assert _one_line(error).startswith(str(path))


def test_integer_valued_float_labels_are_accepted(tmp_path: Path) -> None:
    path = write_volume(_labelmap().with_array(_labelmap().array.astype(np.float32)), tmp_path / "float.nrrd")
    back = read_labelmap(path)
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, _labelmap().array)


def test_labelmap_on_another_grid(tmp_path: Path) -> None:
    path = write_labelmap(_labelmap(), tmp_path / "labels.nrrd")
    shifted = Volume(_image().array, SPACING, (ORIGIN[0] + 5.0, ORIGIN[1], ORIGIN[2]), DIRECTION)
    coarser = Volume(_image().array, (1.3, 1.7, 10.0), ORIGIN, DIRECTION)
    cropped = Volume(_image().array[:-1], SPACING, ORIGIN, DIRECTION)
    for reference, detail in ((shifted, "origin"), (coarser, "spacing"), (cropped, "size")):
        with pytest.raises(InputError, match=f"another grid.*{detail}") as error:
            read_labelmap(path, reference=reference)
        _one_line(error)


def test_folder_as_labelmap(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder") as error:
        read_labelmap(tmp_path)
    _one_line(error)


def test_series_option_only_for_folders(tmp_path: Path) -> None:
    path = write_volume(_image(), tmp_path / "image.nii.gz")
    with pytest.raises(InputError, match="DICOM folders only") as error:
        read_volume(path, series="5")
    _one_line(error)


# -- files ITK would read wrongly without a word ------------------------------------------------
def _cut(path: Path, keep: float) -> Path:
    """A copy of ``path`` holding only the first ``keep`` of its bytes, as an interrupted copy leaves it."""
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize("keep", [0.5, 0.95])
@pytest.mark.parametrize("read_by", ["itk", "nibabel"])
def test_truncated_nifti_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str, keep: float,
                                    read_by: str) -> None:
    # ITK reads the missing voxels as zeros: segmentation would report wrong volumes with exit 0.
    import scarnet.io as io

    cut = _cut(write_volume(_image(), tmp_path / f"image{suffix}"), keep)
    monkeypatch.setattr(io, "_have_simpleitk", lambda: read_by == "itk")
    for reader in (read_volume, read_labelmap):
        with pytest.raises(InputError, match=": is truncated: its data ends after") as error:
            reader(cut)
        _one_line(error)


def test_nifti_cut_inside_its_gzip_trailer_is_read(tmp_path: Path) -> None:
    # Only the 8-byte trailer (CRC and length) is lost; every voxel is there.
    path = write_volume(_image(), tmp_path / "image.nii.gz")
    cut = tmp_path / "no_trailer.nii.gz"
    cut.write_bytes(path.read_bytes()[:-8])
    np.testing.assert_array_equal(read_volume(cut).array, _image().array)


@pytest.fixture
def single_threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads as in the CLI, a single-threaded process, where ITK's stderr lines are captured.

    The capture stands down when other Python threads are alive; a pytest plugin or an earlier
    test that leaves one behind must not change what these tests check.
    """
    import threading

    monkeypatch.setattr(threading, "active_count", lambda: 1)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.usefixtures("single_threaded")
def test_truncated_nrrd_and_metaimage_say_so_in_one_line(tmp_path: Path, capfd: pytest.CaptureFixture,
                                                          suffix: str, compress: bool) -> None:
    path = tmp_path / f"image{suffix}"
    sitk.WriteImage(_image().to_sitk(), str(path), useCompression=compress)
    with pytest.raises(InputError, match=r"not a readable image \(the file is truncated") as error:
        read_volume(_cut(path, 0.5))
    _one_line(error)
    assert capfd.readouterr().err == ""  # MetaIO's own lines on stderr went into the message


@pytest.mark.usefixtures("single_threaded")
def test_metaimage_header_without_its_data_file(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    sitk.WriteImage(_image().to_sitk(), str(tmp_path / "image.mhd"))
    (tmp_path / "image.raw").unlink()
    with pytest.raises(InputError, match="data file 'image.raw', named in its header, is missing") as error:
        read_volume(tmp_path / "image.mhd")
    _one_line(error)
    assert capfd.readouterr().err == ""


# -- damaged compressed data -----------------------------------------------------------------------
def _stored_deflate(data: bytes, wrapper: str) -> bytes:
    """``data`` compressed as deflate's stored (verbatim) blocks in a gzip or zlib wrapper: a byte changed inside then
    changes a voxel and nothing else, so only the checksum at the stream's end tells, as with much real damage."""
    return gzip.compress(data, compresslevel=0, mtime=0) if wrapper == "gzip" else zlib.compress(data, 0)


def _change_a_voxel(data_file: Path, wrapper: str) -> None:
    """Change one bit of the last voxel in ``data_file``'s stored-block stream (just before its checksum trailer)."""
    data = bytearray(data_file.read_bytes())
    data[-(8 if wrapper == "gzip" else 4) - 4] ^= 0x01
    data_file.write_bytes(bytes(data))


def _compressed_file(volume: Volume, folder: Path, suffix: str) -> tuple[Path, Path, str]:
    """``volume`` written as ``image{suffix}`` with stored-block compressed data: the file to read, the file holding
    the compressed stream (another one for a detached header: .nhdr, .mhd) and its wrapper."""
    path = folder / f"image{suffix}"
    if suffix == ".nii.gz":
        plain = write_volume(volume, folder / "plain.nii")
        path.write_bytes(_stored_deflate(plain.read_bytes(), "gzip"))
        plain.unlink()
        return path, path, "gzip"
    sitk.WriteImage(volume.to_sitk(), str(path), useCompression=False)
    written = path.read_bytes()
    if suffix == ".nrrd":
        header, data = written.split(b"\n\n", 1)
        path.write_bytes(header.replace(b"encoding: raw", b"encoding: gzip") + b"\n\n" + _stored_deflate(data, "gzip"))
        return path, path, "gzip"
    if suffix == ".mha":
        header, data = written.split(b"ElementDataFile = LOCAL\n", 1)
        compressed = _stored_deflate(data, "zlib")  # MetaIO needs its size to find it after the header
        path.write_bytes(header.replace(b"CompressedData = False", b"CompressedData = True\nCompressedDataSize = "
                                        + str(len(compressed)).encode()) + b"ElementDataFile = LOCAL\n" + compressed)
        return path, path, "zlib"
    wrapper, data_name = ("gzip", "image.raw.gz") if suffix == ".nhdr" else ("zlib", "image.zraw")
    raw = folder / "image.raw"
    (folder / data_name).write_bytes(_stored_deflate(raw.read_bytes(), wrapper))
    raw.unlink()
    path.write_bytes(written.replace(b"encoding: raw", b"encoding: gzip")
                     .replace(b"CompressedData = False", b"CompressedData = True")
                     .replace(b"data file: image.raw", b"data file: " + data_name.encode())
                     .replace(b"ElementDataFile = image.raw", b"ElementDataFile = " + data_name.encode()))
    return path, folder / data_name, wrapper


def _large(kind: str) -> Volume:
    """An image or a labelmap of a few hundred KiB: ITK's NIfTI reader does not meet damage near its end while it
    probes the header (it refuses smaller damaged files, for a reason that does not say so)."""
    rng = np.random.default_rng(7)
    if kind == "image":
        return Volume(rng.normal(100.0, 30.0, (4, 192, 192)).astype(np.float32), SPACING, ORIGIN, DIRECTION)
    # Labels 0-3 only: with its lowest bit changed, a voxel is still a label (and the file still "reads").
    return Volume(rng.integers(0, 4, (6, 256, 256)).astype(np.uint8), SPACING, ORIGIN, DIRECTION)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("kind", ["image", "labelmap"])
def test_damaged_compressed_data_is_refused_not_read_as_other_voxels(tmp_path: Path, suffix: str, kind: str) -> None:
    # ITK inflates only the bytes it needs and MetaIO checks no checksum, so a changed byte that still inflates
    # was read as another voxel value (last slices of zeros, 517 mL instead of 104 mL) with exit 0, or refused for
    # a reason that did not say so ("Unable to determine ImageIO reader", "_nrrdGzRead: data read error").
    volume, reader = _large(kind), (read_volume if kind == "image" else read_labelmap)
    path, data_file, wrapper = _compressed_file(volume, tmp_path, suffix)
    np.testing.assert_array_equal(reader(path).array, volume.array)  # as made, it reads right
    _change_a_voxel(data_file, wrapper)
    reason = "gzip CRC error" if wrapper == "gzip" else "zlib checksum error"
    with pytest.raises(InputError, match=rf"damaged compressed data.* \({reason}\): .*corrupt; copy it again") as error:
        reader(path)
    message = _one_line(error)
    assert message.startswith(f"{path}: ")
    assert (f"in its data file {data_file.name!r}" in message) == (data_file != path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".seg.nrrd"])
def test_any_byte_damaged_near_the_end_of_gzip_data_is_refused(tmp_path: Path, suffix: str) -> None:
    # A changed byte among the last ones may leave the deflate data without its end, so no CRC is ever reached:
    # ITK read such files with a few wrong voxels (up to 6.7e37) in the last slice. Every one of the last 64 bytes.
    volume = _large("image" if suffix != ".seg.nrrd" else "labelmap")  # compressed data far longer than 64 bytes
    path = write_volume(volume, tmp_path / f"whole{suffix}") if suffix != ".seg.nrrd" else \
        write_seg_nrrd(volume, tmp_path / f"whole{suffix}")
    whole = path.read_bytes()
    reader = read_volume if suffix != ".seg.nrrd" else read_seg_nrrd
    for back in range(1, 65):
        damaged = bytearray(whole)
        damaged[-back] ^= 0x55
        changed = tmp_path / f"changed{suffix}"
        changed.write_bytes(bytes(damaged))
        with pytest.raises(InputError) as error:
            reader(changed)
        _one_line(error)


def test_damaged_nifti_gz_is_refused_without_simpleitk_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scarnet.io as io

    path, _, wrapper = _compressed_file(_image(), tmp_path, ".nii.gz")
    _change_a_voxel(path, wrapper)
    monkeypatch.setattr(io, "_have_simpleitk", lambda: False)
    with pytest.raises(InputError, match=r"damaged compressed data \(gzip CRC error\)") as error:
        read_volume(path)
    _one_line(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_damaged_data_itk_cannot_read_is_called_damaged(tmp_path: Path, suffix: str) -> None:
    # Not ITK's "Unable to determine ImageIO reader" or "_nrrdGzRead: data read error", which do not say why.
    path = write_labelmap(_labelmap(), tmp_path / f"labels{suffix}")
    data = bytearray(path.read_bytes())
    start = data.index(b"\x1f\x8b")  # the gzip stream, after a NRRD's text header
    data[(start + len(data) - 8) // 2] ^= 0x55  # the middle of its deflate data
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"damaged compressed data \(.*\): the file is corrupt") as error:
        read_labelmap(path)
    _one_line(error)


def test_each_gzip_member_is_checked(tmp_path: Path) -> None:
    # gzip and ITK read several members as one stream; damage in a later one is damage, not trailing bytes.
    image = _image()
    plain = write_volume(image, tmp_path / "plain.nii").read_bytes()
    first, second = _stored_deflate(plain[:500], "gzip"), tmp_path / "second.gz"
    second.write_bytes(_stored_deflate(plain[500:], "gzip"))
    path = tmp_path / "two_members.nii.gz"
    path.write_bytes(first + second.read_bytes())
    np.testing.assert_array_equal(read_volume(path).array, image.array)
    _change_a_voxel(second, "gzip")
    path.write_bytes(first + second.read_bytes())
    with pytest.raises(InputError, match=r"damaged compressed data \(gzip CRC error\)"):
        read_volume(path)


def test_nifti_pair_is_measured_and_checked_in_its_image_file(tmp_path: Path) -> None:
    # A NIfTI pair keeps its voxels in the .img (or .img.gz) beside its .hdr, where ITK reads them.
    data = _image().array.transpose(2, 1, 0).copy()  # (i, j, k), as nibabel stores it
    nibabel.save(nibabel.Nifti1Pair(data, np.diag([*SPACING, 1.0])), str(tmp_path / "pair.img"))
    np.testing.assert_array_equal(read_volume(tmp_path / "pair.hdr").array, _image().array)  # not "truncated"
    image_file = tmp_path / "pair.img.gz"
    image_file.write_bytes(_stored_deflate((tmp_path / "pair.img").read_bytes(), "gzip"))
    (tmp_path / "pair.img").unlink()
    np.testing.assert_array_equal(read_volume(tmp_path / "pair.hdr").array, _image().array)
    _change_a_voxel(image_file, "gzip")
    with pytest.raises(InputError, match=r"pair.hdr: damaged compressed data in its data file 'pair.img.gz' "
                                         r"\(gzip CRC error\): that file is corrupt; copy it again"):
        read_volume(tmp_path / "pair.hdr")


@pytest.mark.parametrize("header_suffix", [".nhdr", ".mhd"])
def test_damage_in_one_of_several_data_files_is_refused_naming_it(tmp_path: Path, header_suffix: str) -> None:
    # NRRD (data file: LIST) and MetaImage (a numbered pattern) can keep each slice in a data file of its own.
    labelmap = _labelmap()
    wrapper, ending = ("gzip", ".raw.gz") if header_suffix == ".nhdr" else ("zlib", ".zraw")
    for index, plane in enumerate(labelmap.array):  # (k, j, i): one slice a file
        (tmp_path / f"slice{index}{ending}").write_bytes(_stored_deflate(plane.tobytes(), wrapper))
    columns, rows, slices = labelmap.shape_ijk
    if header_suffix == ".nhdr":
        header = (f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: {columns} {rows} {slices}\n"
                  f"spacings: {' '.join(map(str, SPACING))}\nencoding: gzip\ndata file: LIST 2\n"
                  + "".join(f"slice{k}{ending}\n" for k in range(slices)))
    else:
        header = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nCompressedData = True\n"
                  f"ElementSpacing = {' '.join(map(str, SPACING))}\nDimSize = {columns} {rows} {slices}\n"
                  f"ElementType = MET_UCHAR\nElementDataFile = slice%d{ending} 0 {slices - 1} 1\n")
    path = tmp_path / f"labels{header_suffix}"
    path.write_text(header)
    np.testing.assert_array_equal(read_labelmap(path).array, labelmap.array)
    _change_a_voxel(tmp_path / f"slice3{ending}", wrapper)
    with pytest.raises(InputError, match=rf"damaged compressed data in its data file 'slice3{ending}'") as error:
        read_labelmap(path)
    _one_line(error)


@pytest.mark.usefixtures("single_threaded")
def test_metaimage_data_metaio_fails_to_inflate_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    # Whole zlib data that MetaIO looks for in the wrong place (a HeaderSize beside ElementDataFile = LOCAL): it
    # prints "Uncompress failed" and goes on with wrong voxels; that line refuses the file.
    path, _, _ = _compressed_file(_image(), tmp_path, ".mha")
    path.write_bytes(path.read_bytes().replace(b"ElementDataFile = LOCAL", b"HeaderSize = 5\nElementDataFile = LOCAL"))
    with pytest.raises(InputError, match="its compressed data could not be decompressed: Uncompress failed") as error:
        read_volume(path)
    _one_line(error)
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize("stated", ["none", "too small"])
def test_metaimage_compressed_data_size_that_misleads_metaio_is_refused(tmp_path: Path, stated: str) -> None:
    # MetaIO inflates CompressedDataSize bytes after the header and goes on with wrong voxels when that ends before
    # the stream does (or is missing), without a word.
    path, _, _ = _compressed_file(_image(), tmp_path, ".mha")
    field = re.search(rb"CompressedDataSize = \d+\n", path.read_bytes())[0]
    path.write_bytes(path.read_bytes().replace(field, b"" if stated == "none" else b"CompressedDataSize = 100\n"))
    with pytest.raises(InputError, match="CompressedDataSize") as error:
        read_volume(path)
    _one_line(error)


def test_damaged_seg_nrrd_says_so_as_other_files_do(tmp_path: Path) -> None:
    path = write_seg_nrrd(_labelmap(), tmp_path / "result.seg.nrrd")
    data = bytearray(path.read_bytes())
    data[-12] ^= 0x01  # in the deflate data, just before the gzip trailer
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"result.seg.nrrd: damaged compressed data \(.*\): the file is corrupt") \
            as error:
        read_labelmap(path)
    _one_line(error)


def _without_spacing(volume: Volume, path: Path) -> Path:
    """``volume`` written to ``path`` with the first axis's spacing unknown, as broken converters write it."""
    name = path.name
    if name.endswith(".nii.gz"):
        image = nibabel.Nifti1Image(np.transpose(volume.array, (2, 1, 0)), None)
        image.header["pixdim"][1:4] = (0.0, SPACING[1], SPACING[2])
        nibabel.save(image, str(path))
    elif name.endswith(".nrrd"):  # also a plain labelmap named .seg.nrrd
        nrrd.write(str(path), np.transpose(volume.array, (2, 1, 0)),
                   {"spacings": np.array([np.nan, SPACING[1], SPACING[2]])})
    else:  # MetaImage without ElementSpacing
        sitk.WriteImage(volume.to_sitk(), str(path))
        data = path.read_bytes()
        header, binary = data.split(b"ElementDataFile = LOCAL\n", 1)
        header = b"".join(line for line in header.splitlines(keepends=True) if not line.startswith(b"ElementSpacing"))
        path.write_bytes(header + b"ElementDataFile = LOCAL\n" + binary)
    return path


_UNKNOWN_SPACING_CASES = [(kind, suffix) for kind in ("image", "labelmap") for suffix in (".nii.gz", ".nrrd", ".mha")]


@pytest.mark.parametrize(("kind", "suffix"), [*_UNKNOWN_SPACING_CASES, ("labelmap", ".seg.nrrd")])
def test_unknown_spacing_is_refused(tmp_path: Path, kind: str, suffix: str) -> None:
    # ITK reads pixdim 0 / "spacings: nan" / no ElementSpacing as 1 mm: every volume would be wrong.
    volume = _image() if kind == "image" else _labelmap()
    path = _without_spacing(volume, tmp_path / f"{kind}{suffix}")
    with pytest.raises(InputError, match="has no pixel spacing in its header") as error:
        (read_volume if kind == "image" else read_labelmap)(path)
    _one_line(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_stated_1mm_spacing_is_kept(tmp_path: Path, suffix: str) -> None:
    # 1 mm is also ITK's default: only a header that states no spacing is refused.
    volume = Volume(_image().array, (1.0, 1.0, 1.0), ORIGIN, DIRECTION)
    assert read_volume(write_volume(volume, tmp_path / f"iso{suffix}")).spacing_mm == (1.0, 1.0, 1.0)


@pytest.mark.parametrize("kind", ["image", "labelmap"])
@pytest.mark.parametrize("shape_kji", [(1, 7, 6), (5, 1, 6), (5, 7, 1)], ids=["one slice", "one row", "one column"])
def test_2d_image_stored_as_3d_is_refused(tmp_path: Path, kind: str, shape_kji: tuple[int, int, int]) -> None:
    # As the DICOM reader and the Slicer module refuse it; a labelmap's single slice has no thickness.
    source = _image() if kind == "image" else _labelmap()
    k, j, i = shape_kji
    path = write_volume(Volume(source.array[:k, :j, :i], SPACING, ORIGIN, DIRECTION), tmp_path / f"{kind}.nii.gz")
    with pytest.raises(InputError, match="a single slice|2D image") as error:
        (read_volume if kind == "image" else read_labelmap)(path)
    _one_line(error)


@pytest.mark.parametrize("slices", [0, -4])
def test_nifti_header_without_voxels_along_an_axis_is_called_damaged(tmp_path: Path, slices: int) -> None:
    # ITK reads dim[3] = 0 (or negative) as one slice: "a single slice" would name the wrong fault.
    path = write_volume(_image(), tmp_path / "image.nii")
    raw = bytearray(path.read_bytes())
    raw[46:48] = int(slices).to_bytes(2, "little", signed=True)  # dim[3]: the header's dim array starts at byte 40
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=rf"its header gives dim\[3\] = {slices}, no voxels along that axis \(a "
                                         "damaged header") as error:
        read_volume(path)
    _one_line(error)


@pytest.mark.parametrize("where", ["spacing", "origin", "direction"])
def test_non_finite_geometry_is_refused(where: str) -> None:
    from scarnet.io import validate_image

    spacing, origin, direction = list(SPACING), list(ORIGIN), DIRECTION.copy()
    {"spacing": spacing, "origin": origin, "direction": direction[0]}[where][0] = np.nan
    with pytest.raises(InputError, match=where) as error:
        validate_image(Volume(_image().array, spacing, origin, direction), "image")
    _one_line(error)


def test_seg_nrrd_without_segments_is_a_plain_labelmap(tmp_path: Path) -> None:
    # A labelmap saved under the .seg.nrrd name: Slicer reads its values as labels, and so do we.
    path = tmp_path / "plain.seg.nrrd"
    sitk.WriteImage(_labelmap().to_sitk(), str(path))
    back = read_labelmap(path, reference=_image())
    _assert_same_geometry(back, _labelmap())
    np.testing.assert_array_equal(back.array, _labelmap().array)


def test_image_saved_as_seg_nrrd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "image.seg.nrrd"
    sitk.WriteImage(_image().to_sitk(), str(path))
    with pytest.raises(InputError, match="no segment information.*non-integer") as error:
        read_labelmap(path)
    _one_line(error)


def test_nibabel_header_fixes_print_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A negative pixdim (its absolute value is the spacing) made nibabel log a line to stderr.
    data = np.transpose(_image().array, (2, 1, 0)).copy()
    data[0, 0, 0] = 0.0  # a zero makes io.py look with nibabel for NaN that ITK hides
    image = nibabel.Nifti1Image(data, None)
    image.header["pixdim"][1:4] = (SPACING[0], SPACING[1], -SPACING[2])
    nibabel.save(image, str(tmp_path / "negative.nii.gz"))
    caplog.clear()
    assert read_volume(tmp_path / "negative.nii.gz").spacing_mm == pytest.approx(SPACING)
    assert not [record for record in caplog.records if record.name.startswith("nibabel")]


def test_native_stderr_capture_restores_fd2(capfd: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """What C++ code prints on fd 2 during a read is collected; fd 2 is restored, also after an error."""
    import threading

    from scarnet.io import _native_stderr_captured

    monkeypatch.setattr(threading, "active_count", lambda: 1)  # as in the CLI (see single_threaded)

    printed: list[str] = []
    with _native_stderr_captured(printed):
        os.write(2, b"MetaImage: data not read completely\n")
    os.write(2, b"after\n")
    assert printed == ["MetaImage: data not read completely"]
    assert capfd.readouterr().err == "after\n"

    printed = []
    with pytest.raises(RuntimeError), _native_stderr_captured(printed):
        os.write(2, b"failing\n")
        raise RuntimeError("ITK error")
    os.write(2, b"again\n")
    assert printed == ["failing"]
    assert capfd.readouterr().err == "again\n"

    # A capture already running (another thread's) keeps fd 2: the inner block runs uncaptured.
    outer: list[str] = []
    inner: list[str] = []
    with _native_stderr_captured(outer), _native_stderr_captured(inner):
        os.write(2, b"inner\n")
    assert (outer, inner) == (["inner"], [])

    # With another thread alive (Slicer, a threaded script) nothing is captured: its text is not ours.
    monkeypatch.undo()
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        printed = []
        with _native_stderr_captured(printed):
            os.write(2, b"from any thread\n")
    finally:
        release.set()
        other.join()
    assert printed == []
    assert capfd.readouterr().err == "from any thread\n"


# -- real data --------------------------------------------------------------------------------
@pytest.mark.skipif(not EMIDEC_CASE.is_dir(), reason=f"EMIDEC data not available at {EMIDEC_CASE} (../shared absent)")
def test_read_emidec_case() -> None:
    image = read_volume(EMIDEC_CASE / "image.nii.gz")
    assert image.array.shape == (7, 258, 248)  # (k, j, i)
    assert image.spacing_mm == pytest.approx((1.40625, 1.40625, 13.0))
    assert image.array.dtype == np.float32
    assert float(image.array.max()) > float(image.array.min())
    labels = read_labelmap(EMIDEC_CASE / "label.nii.gz", reference=image)
    assert set(np.unique(labels.array).tolist()) == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("read_by", ["itk", "nibabel"])
def test_sheared_nifti_warns_how_far_volumes_are_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     read_by: str) -> None:
    """Slices 10 mm apart along the normal, each shifted 3 mm in-plane: a sheared affine."""
    import scarnet.io as io

    affine = np.array([[1.5, 0, 3.0, 0], [0, 1.5, 0, 0], [0, 0, 10.0, 0], [0, 0, 0, 1]])
    image = nibabel.Nifti1Image(np.zeros((8, 8, 4), np.uint8), affine)
    image.set_sform(affine, 1)
    image.set_qform(affine, 1)
    nibabel.save(image, str(tmp_path / "sheared.nii.gz"))
    monkeypatch.setattr(io, "_have_simpleitk", lambda: read_by == "itk")
    excess = 100 * (np.hypot(3.0, 10.0) / 10.0 - 1)  # the slice axis read as 10.44 mm, not 10
    with pytest.warns(UserWarning, match=f"not perpendicular.* {excess:.1f} % too large"):
        read_labelmap(tmp_path / "sheared.nii.gz")


def test_sform_scales_unlike_pixdim_do_not_warn(tmp_path: Path) -> None:
    # EMIDEC's headers: an orthogonal sform with unit scales, pixdim with the real spacing.
    image = nibabel.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.diag([-1.0, -1.0, 1.0, 1.0]))
    image.header.set_zooms((1.4, 1.4, 13.0))
    image.set_sform(np.diag([-1.0, -1.0, 1.0, 1.0]), 2)
    image.set_qform(None, 0)
    nibabel.save(image, str(tmp_path / "emidec_like.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labelmap = read_labelmap(tmp_path / "emidec_like.nii.gz")
    assert labelmap.spacing_mm == pytest.approx((1.4, 1.4, 13.0))


def test_nifti_gz_with_trailing_bytes_that_look_like_gzip_is_read(tmp_path: Path) -> None:
    # Bytes after the last gzip member are ignored by gzip tools and ITK, even when they start
    # with the gzip magic; they must not make a whole file "damaged".
    image = _image()
    path = write_volume(image, tmp_path / "image.nii.gz")
    with open(path, "ab") as stream:
        stream.write(b"\x1f\x8b" + b"not a gzip member" * 10)
    np.testing.assert_array_equal(read_volume(path).array, image.array)


def test_the_python_api_refuses_bad_volumes_and_labels_with_input_errors(tmp_path):
    """QA helper-92: a 2D array, a 2-number spacing (accepted, then a numpy broadcast error in quantify), a
    direction of the wrong shape, a path given to segment, and labels written that read_labelmap then refused."""
    import inspect

    import scarnet
    from scarnet.errors import InputError
    from scarnet.io import write_labelmap

    for bad, message in (({"array": np.zeros((64, 64))}, "must be 3D"),
                         ({"array": np.zeros((4, 8, 8)), "spacing_mm": (1, 1)}, "spacing_mm must be 3 numbers"),
                         ({"array": np.zeros((4, 8, 8)), "origin_mm": 0.0}, "origin_mm must be 3 numbers"),
                         ({"array": np.zeros((4, 8, 8)), "direction": np.eye(2)}, "direction must be a 3×3 matrix")):
        with pytest.raises(InputError, match=message):
            scarnet.Volume(**bad)
    with pytest.raises(InputError, match="segment takes a scarnet.Volume .*, not str"):
        scarnet.segment("exam.nii.gz")
    labels = Volume(np.zeros((4, 8, 8), np.uint8), (1.5, 1.5, 8.0))
    for array, message in ((np.full((4, 8, 8), 9), "outside 0-4"), (np.full((4, 8, 8), 2.3), "non-integer")):
        with pytest.raises(InputError, match=f"nine.nii.gz: not written: .*{message}"):
            write_labelmap(labels.with_array(array), tmp_path / "nine.nii.gz")
    assert not (tmp_path / "nine.nii.gz").exists()
    write_labelmap(labels.with_array(np.full((4, 8, 8), 2.0)), tmp_path / "two.nii.gz")  # whole numbers are labels
    # The API is listed for dir() and tab completion, and quantify's signature is the function's.
    assert set(scarnet.__all__) <= set(dir(scarnet))
    assert "rv_insertion_lps" in inspect.signature(scarnet.quantify).parameters


def test_a_direction_that_holds_the_voxel_size_is_refused():
    """direction=affine[:3, :3] (nibabel's, voxel size included) was accepted and multiplied every volume by the
    voxel size again: quantify reported 4500 mL of myocardium for 119 (QA helper-107)."""
    spacing = (1.25, 1.25, 8.0)
    affine_part = np.diag(spacing) @ np.eye(3)
    with pytest.raises(InputError, match=r"direction's columns must be unit vectors .* got lengths 1\.25, 1\.25, 8: "
                                         "an affine's 3×3 part holds the voxel size too"):
        Volume(np.zeros((4, 8, 8)), spacing, (0.0, 0.0, 0.0), affine_part)
    turned = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert Volume(np.zeros((4, 8, 8)), spacing, (0.0, 0.0, 0.0), turned + 1e-5).same_grid(
        Volume(np.zeros((4, 8, 8)), spacing, (0.0, 0.0, 0.0), turned))  # cosines rounded by a writer: accepted


# -- hostile and odd files: what reading them would cost ---------------------------------------------
class _ReaderThatMustNotRead(sitk.ImageFileReader):
    """ITK's reader, failing the test if it reads voxels: ITK allocates (and zero-fills) all that a header declares
    before it reads a byte of data, so a refusal must come from the header alone."""

    def Execute(self):  # noqa: N802 - SimpleITK's name
        raise AssertionError("the voxels were read")


def _header_claiming(path: Path, size: tuple[int, int, int]) -> Path:
    """``path`` whose header declares ``size`` float voxels, followed by 1000 bytes of data (or a gzip of them)."""
    data = bytes(1000)
    suffix = "".join(path.suffixes)
    if suffix in (".nii", ".nii.gz"):
        header = nibabel.Nifti1Header()
        header.set_data_shape(size)
        header.set_data_dtype(np.float32)
        header.set_zooms((1.4, 1.4, 10.0))
        header.set_sform(np.diag([1.4, 1.4, 10.0, 1.0]), 1)
        block = header.binaryblock + bytes(4) + data
        path.write_bytes(gzip.compress(block) if suffix == ".nii.gz" else block)
    elif suffix == ".nrrd":
        path.write_bytes(("NRRD0004\ntype: float\ndimension: 3\nspace: left-posterior-superior\n"
                          f"sizes: {' '.join(map(str, size))}\nspace directions: (1.4,0,0) (0,1.4,0) (0,0,10)\n"
                          "kinds: domain domain domain\nendian: little\nencoding: gzip\n\n").encode()
                         + gzip.compress(data))
    else:
        path.write_bytes(("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                          f"ElementSpacing = 1.4 1.4 10\nDimSize = {' '.join(map(str, size))}\n"
                          "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n").encode() + data)
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha"])
def test_a_header_declaring_more_voxels_than_any_stack_is_refused_before_they_are_allocated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    """QA helper-118: a 1 kB file whose header declared 2000×2000×100 voxels took 1.7 GB of memory (ITK zero-fills
    what the data does not hold) before "truncated" was said; one declaring as much as the machine's memory would
    have exhausted it, and a gzip bomb (9 MB inflating to 9 GB) took 31 s to be refused as "Failed to allocate
    memory". Now the header alone refuses it, in one line."""
    path = _header_claiming(tmp_path / f"claim{suffix}", (4096, 4096, 5))  # 84 million voxels, 335 MB as floats
    monkeypatch.setattr(sitk, "ImageFileReader", _ReaderThatMustNotRead)
    for reader in (read_volume, read_labelmap):
        with pytest.raises(InputError, match=r"its header declares 4096×4096×5 voxels \(84 million\), more than "
                                             r"any short-axis LGE stack holds \(67 million at most\)") as error:
            reader(path)
        _one_line(error)


def test_a_header_declaring_channels_beyond_any_stack_is_refused_before_they_are_allocated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA helper-123: the voxel limit counted the grid only: a 200-byte .mha declaring 512×512×30 voxels of 1000
    channels (ElementNumberOfChannels) passed it, and ITK allocated 31 GB for it ("Failed to allocate memory" where
    the memory ran short)."""
    path = tmp_path / "channels.mha"
    path.write_text("ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                    "ElementSpacing = 1.4 1.4 10\nDimSize = 512 512 30\nElementNumberOfChannels = 1000\n"
                    "ElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    monkeypatch.setattr(sitk, "ImageFileReader", _ReaderThatMustNotRead)
    with pytest.raises(InputError, match=r"its header declares 512×512×30×1000 voxels \(7,864 million\)") as error:
        read_volume(path)
    _one_line(error)


def test_a_nifti2_header_declaring_more_voxels_than_any_stack_is_refused(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # NIfTI-2 is read by nibabel (this ITK has no reader for it), which would allocate what the header declares too.
    import scarnet.io as io

    header = nibabel.Nifti2Header()
    header.set_data_shape((100000, 100000, 50))
    header.set_data_dtype(np.float32)
    header.set_zooms((1.4, 1.4, 10.0))
    path = tmp_path / "claim.nii"
    path.write_bytes(header.binaryblock + bytes(4) + bytes(1000))
    monkeypatch.setattr(io, "_check_nifti_length", lambda *args: pytest.fail("measured the data"))
    with pytest.raises(InputError, match=r"its header declares 100000×100000×50 voxels \(500,000 million\)") as error:
        read_volume(path)
    _one_line(error)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_gzip_data_inflating_far_past_what_its_header_describes_is_refused_without_inflating_it_all(
        tmp_path: Path, suffix: str) -> None:
    """QA helper-118: a 21 MB .nii.gz holding a 7-slice image followed by gzip members of 20 GB of zeros was
    inflated to its end to check its CRCs: 98 s, then segmented as if nothing were wrong. Inflating now stops, the
    file refused, at twice what the header describes and 64 MiB more."""
    path = write_volume(_image(), tmp_path / f"image{suffix}")
    zeros = gzip.compress(bytes(1 << 23), compresslevel=1)  # 8 MiB of zeros, a member that follows the data
    with path.open("ab") as stream:
        for _ in range(12):  # 96 MiB in all: past the limit for this small image
            stream.write(zeros)
    with pytest.raises(InputError, match=r"its compressed data inflates to more than 64 MiB, far more than its "
                                         r"header describes \(a damaged file, or a decompression bomb\)") as error:
        read_volume(path)
    _one_line(error)


class _unblock_readers_of:  # noqa: N801 - used as a function
    """A thread that, until :meth:`join` (at most ``seconds``), opens ``fifo`` for writing whenever a reader waits on
    it, and closes it at once: a reader that opened it (the fault tested) gets an empty file instead of waiting for
    ever."""

    def __init__(self, fifo: Path, seconds: float = 10.0) -> None:
        import threading
        import time

        self._done = threading.Event()

        def run() -> None:
            deadline = time.monotonic() + seconds
            while not self._done.is_set() and time.monotonic() < deadline:
                try:
                    os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO while no reader has it open
                except OSError:
                    self._done.wait(0.05)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self) -> None:
        self._done.set()
        self._thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_or_device_given_as_a_file_is_refused_not_waited_on(tmp_path: Path) -> None:
    """QA helper-118: `scarnet segment pipe.nii.gz` (a FIFO) and `scarnet quantify` of one waited for ever for a
    writer; a link to /dev/zero was "not a readable image (sitk::ERROR: Unable to determine ImageIO reader)"."""
    fifo = tmp_path / "pipe.nii.gz"
    os.mkfifo(fifo)
    seg_fifo = tmp_path / "pipe.seg.nrrd"
    os.mkfifo(seg_fifo)
    threads = [_unblock_readers_of(fifo), _unblock_readers_of(seg_fifo)]
    for reader, path in ((read_volume, fifo), (read_labelmap, fifo), (read_labelmap, seg_fifo)):
        with pytest.raises(InputError, match=r": is a FIFO \(named pipe\), not an? [a-z]+ file; give the file "
                                             "itself") as error:
            reader(path)
        _one_line(error)
    if Path("/dev/zero").exists():
        (tmp_path / "zero.nii.gz").symlink_to("/dev/zero")
        with pytest.raises(InputError, match="zero.nii.gz: is a character device, not an image file"):
            read_volume(tmp_path / "zero.nii.gz")
    for thread in threads:
        thread.join()


def test_float64_values_beyond_float32_are_refused_as_such_not_as_infinite(tmp_path: Path) -> None:
    """QA helper-118: a float64 NIfTI with values of 1e300 printed numpy's "overflow encountered in cast" and was
    refused for "NaN or infinite values" it does not hold."""
    array = np.random.default_rng(0).uniform(1.0, 2.0, (6, 7, 5)) * 1e300
    array[0, 0, 0] = 2e300
    nibabel.save(nibabel.Nifti1Image(array, np.diag([1.4, 1.4, 10.0, 1.0])), tmp_path / "huge.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning would be a second line
        with pytest.raises(InputError, match=r"huge.nii.gz: its values reach 2e\+300, beyond what the 32-bit floats "
                                             r"it is read as hold \(3.4e\+38\); rescale the image") as error:
            read_volume(tmp_path / "huge.nii.gz")
    _one_line(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_text_files_a_user_gives_are_refused_when_reading_them_whole_would_never_end(tmp_path: Path) -> None:
    """QA helper-118: `scarnet batch --rv-points /dev/zero`, `scarnet summarize` of a link to /dev/zero named
    x_report.json and `scarnet calibrate-qc` of one read until memory ran out ("internal error: MemoryError", exit
    3); a FIFO made each wait for ever. A file of gigabytes would be read whole too."""
    from scarnet.batch import read_rv_points
    from scarnet.cli import _model_inference
    from scarnet.evaluate_cli import calibrate_qc
    from scarnet.summary import read_report

    fifo = tmp_path / "fifo_report.json"
    os.mkfifo(fifo)
    thread = _unblock_readers_of(fifo)
    huge = tmp_path / "huge_report.json"
    with huge.open("wb") as stream:
        stream.truncate((64 << 20) + 1)  # sparse: no disk taken
    readers = [("a CSV of RV insertion points", read_rv_points), ("a JSON report", read_report),
               ("a JSON report", _model_inference)]
    if importlib.util.find_spec("torch") is not None:  # calibrate-qc imports the model's code (torch) first
        readers.append(("the JSON of scarnet evaluate", calibrate_qc))
    for expected, reader in readers:
        with pytest.raises(InputError, match=f"fifo_report.json: is a FIFO \\(named pipe\\), not {expected}; give "
                                             "the file itself") as error:
            reader(fifo)
        _one_line(error)
        with pytest.raises(InputError, match=f"huge_report.json: 64 MiB, far larger than {expected} \\(at most 64 "
                                             "MiB\\); give the file itself"):
            reader(huge)
        if Path("/dev/zero").exists():
            with pytest.raises(InputError, match=f"/dev/zero: is a character device, not {expected}"):
                reader(Path("/dev/zero"))
    thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
@pytest.mark.parametrize("header", [".mhd", ".nhdr", ".hdr"])
def test_a_header_whose_data_file_is_a_fifo_is_refused_not_waited_on(tmp_path: Path, header: str) -> None:
    """QA helper-118: a .mhd, .nhdr (raw or gzip) or NIfTI pair whose data file is a FIFO waited for ever in ITK."""
    path = tmp_path / f"image{header}"
    sitk.WriteImage(_image().to_sitk(), str(path))
    data_files = [p for p in tmp_path.iterdir() if p != path]
    assert len(data_files) == 1
    data_files[0].unlink()
    os.mkfifo(data_files[0])
    thread = _unblock_readers_of(data_files[0])
    with pytest.raises(InputError, match=f"image{re.escape(header)}: its data file '{data_files[0].name}', named in "
                                         r"its header, is a FIFO \(named pipe\), not a file") as error:
        read_volume(path)
    _one_line(error)
    thread.join()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_seg_nrrd_whose_data_file_is_a_fifo_or_that_claims_too_many_voxels_is_refused(tmp_path: Path) -> None:
    """QA helper-123: a .seg.nrrd is read by slicerio (pynrrd), not ITK, and skipped the checks of other images: one
    whose header named a FIFO as its data file waited for ever (in the compressed-data check before slicerio), and
    one declaring more voxels than any stack was read as far as pynrrd would."""
    head = ("NRRD0004\ntype: uint8\ndimension: 3\nsizes: {sizes}\nspace: left-posterior-superior\n"
            "space directions: (1.4,0,0) (0,1.4,0) (0,0,10)\nencoding: {encoding}\n{data}\n")
    fifo = tmp_path / "labels.raw.gz"
    os.mkfifo(fifo)
    path = tmp_path / "detached.seg.nrrd"
    path.write_text(head.format(sizes="16 16 4", encoding="gzip", data=f"data file: {fifo.name}\n"))
    thread = _unblock_readers_of(fifo)
    try:
        for reader in (read_seg_nrrd, read_labelmap):
            with pytest.raises(InputError, match=r"detached.seg.nrrd: its data file 'labels.raw.gz', named in its "
                                                 r"header, is a FIFO \(named pipe\), not a file") as error:
                reader(path)
            _one_line(error)
    finally:
        thread.join()
    claim = tmp_path / "claim.seg.nrrd"
    claim.write_text(head.format(sizes="4096 4096 5", encoding="raw", data=""))
    with pytest.raises(InputError, match=r"claim.seg.nrrd: its header declares 4096×4096×5 voxels \(84 million\)"):
        read_labelmap(claim)


def test_a_nifti_whose_voxels_start_past_any_header_and_extensions_is_refused_before_they_are_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QA helper-118: a 1 MB .nii.gz whose one extension inflated to 1 GB (vox_offset 2^30) took 1.25 GB of memory
    in ITK's ReadImageInformation, which reads the extensions with the header. The header's vox_offset is read
    first (the limit is made 1 MiB here, for a small file)."""
    import scarnet.io as io

    image = nibabel.Nifti1Image(_image().array.transpose(2, 1, 0), np.diag([1.3, 1.7, 8.0, 1.0]))
    image.header.extensions.append(nibabel.nifti1.Nifti1Extension(0, bytes(2 << 20)))
    nibabel.save(image, tmp_path / "extended.nii.gz")
    monkeypatch.setattr(io, "MAX_NIFTI_HEADER_BYTES", 1 << 20, raising=False)

    class HeaderMustNotBeRead(sitk.ImageFileReader):
        def ReadImageInformation(self):  # noqa: N802 - SimpleITK's name
            raise AssertionError("the header and its extensions were read")

    monkeypatch.setattr(sitk, "ImageFileReader", HeaderMustNotBeRead)
    for read_by in ("itk", "nibabel"):
        monkeypatch.setattr(io, "_have_simpleitk", lambda read_by=read_by: read_by == "itk")
        with pytest.raises(InputError, match=r"extended.nii.gz: its header puts the voxels 2 MiB into the file "
                                             r"\(vox_offset\), after extensions far larger than any image's \(at most "
                                             r"1 MiB\): a damaged header, or a decompression bomb") as error:
            read_volume(tmp_path / "extended.nii.gz")
        _one_line(error)

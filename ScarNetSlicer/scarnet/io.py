"""Reading LGE stacks and writing labelmaps, Slicer segmentations and reports.

Every reader returns a :class:`~scarnet.volume.Volume` with full geometry. Every writer is
atomic (temporary file in the target folder, then rename) and refuses to replace an
existing file unless ``overwrite=True``. Every problem a user can fix raises
:class:`~scarnet.errors.InputError` or :class:`~scarnet.errors.OutputExistsError` with one
clear line.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import re
import stat
import sys
import tempfile
import threading
import time
import unicodedata
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np

from .errors import InputError, OutputError, OutputExistsError, ScarNetError
from .labels import SEGMENTS, DrawnSegment, blood_pool_hidden_by_overlap, label_for_segment_name
from .volume import Volume, check_geometry

if TYPE_CHECKING:
    from .dicom import DicomStack

#: File endings read as single image files (everything else: a DICOM folder or an error).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
#: A NIfTI whose orthogonal reading makes voxels larger than |det(affine)| by more than this warns.
SHEAR_TOLERANCE = 0.005
#: ... and is refused beyond this (voxel axes more than ~60° off perpendicular, or in one plane): no acquisition
#: makes such a grid (a 30° gantry tilt is 1.15), so its header is wrong and no volume read from it would be right.
MAX_SHEAR_FACTOR = 2.0
#: More voxels than any short-axis LGE stack holds (a few hundred pixels square, 4–30 slices; 2^26 is 1024 × 1024 × 64):
#: an image file whose header declares more is refused from its header, before ITK allocates what it declares
#: (a damaged or hostile header beside a small file, a gzip bomb), and a DICOM series before its pixels are decoded.
MAX_IMAGE_VOXELS = 1 << 26
SEGMENTATION_SUFFIX = ".seg.nrrd"
#: ITK's reader for each format whose header is checked after reading (names from GetImageIOFromFileName).
_NIFTI_IO, _NRRD_IO, _META_IO = "NiftiImageIO", "NrrdImageIO", "MetaImageIO"
#: A MetaImage header never runs longer than this before its data (bytes); larger reads are binary data.
_META_HEADER_LIMIT = 1 << 16


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in (SEGMENTATION_SUFFIX, ".nii.gz"):
        if name.endswith(suffix):
            return suffix
    return path.suffix.lower()


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
def read_volume(path: str | Path, series: str | None = None) -> Volume:
    """Read a short-axis LGE stack from a NIfTI/NRRD/MHA file or a DICOM folder.

    ``series`` picks a DICOM series (SeriesInstanceUID, SeriesNumber or part of the
    description) when a folder holds several. The result is validated with
    :func:`validate_image` (3D, finite, not empty, not constant) and is float32. Its
    :attr:`~scarnet.volume.Volume.provenance` records the path, the DICOM series and the warnings
    reading it gave, so that :func:`scarnet.segment`'s report names its input as the CLI's does.
    """
    from .errors import warnings_kept_in

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {_missing(path)}")
    read_warnings: list[str] = []
    with warnings_kept_in(read_warnings):  # shown as usual, and kept for the report
        if path.is_dir():
            stack = read_dicom_source(path, series)
            volume = stack.volume
            provenance: dict[str, Any] = {"input": str(path), "input_series": stack.series.record()}
        else:
            if series is not None:
                raise InputError(f"{path}: --series applies to DICOM folders only")
            volume = _read_image_file(path)
            if np.iscomplexobj(volume.array):
                # Complex MR data (real and imaginary channels): the image a scanner shows is its magnitude.
                warnings.warn(f"{path}: complex-valued image; its magnitude is used", stacklevel=2)
                volume.array = np.abs(volume.array)
            volume.array = _as_float32(volume.array, path)
            validate_image(volume, name=str(path))
            provenance = {"input": str(path)}
    if read_warnings:
        provenance["input_warnings"] = read_warnings
    volume.provenance = provenance
    return volume


def _as_float32(array: np.ndarray, path: Path) -> np.ndarray:
    """``array`` as float32, refusing finite values beyond float32's range (a float64 file's): the cast would make
    them infinite, and the image would be refused for infinite values it does not hold, with numpy's warning."""
    with np.errstate(over="ignore"):
        cast = array.astype(np.float32, copy=False)
    if cast is not array and not np.all(np.isfinite(cast)) and np.all(np.isfinite(array)):
        raise InputError(f"{path}: its values reach {float(np.abs(array).max()):.3g}, beyond what the 32-bit "
                         f"floats it is read as hold ({float(np.finfo(np.float32).max):.3g}); rescale the image")
    return cast


def _missing(path: Path, nothing: str = "no such file or folder") -> str:
    """Why a path that does not exist is not there: a link to nothing, or ``nothing`` at all."""
    if path.is_symlink():
        try:
            return f"a link to {os.readlink(path)}, which does not exist (or links in a loop)"
        except OSError:
            return "a link that cannot be followed"
    return nothing


def special_file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a FIFO (named pipe)", "a character
    device", ...): reading one blocks until another program writes to it, or never ends (/dev/zero). None otherwise."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    kinds = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def _check_regular_file(path: Path, expected: str) -> None:
    """:class:`InputError` for a FIFO, device or socket given as a file (see :func:`special_file_kind`)."""
    kind = special_file_kind(path)
    if kind is not None:
        raise InputError(f"{path}: is {kind}, not {expected}; give the file itself")


def _data_files(path: Path, nrrd_header: _NrrdHeader | None = None) -> list[Path]:
    """The files other than ``path`` that its header names as holding its voxels: a NIfTI pair's image file, a NRRD's
    ``data file`` (one, a LIST or a numbered pattern), a MetaImage's ``ElementDataFile`` (likewise). ``nrrd_header``:
    a NRRD's :func:`_nrrd_header_fields`, when read already (None: read here)."""
    lower = path.name.lower()
    try:
        if lower.endswith((".hdr", ".hdr.gz")):
            return [data for data in [_nifti_data_file(path)] if data != path]
        if _suffix(path) in (".nrrd", ".nhdr", SEGMENTATION_SUFFIX):
            fields, _, listed = nrrd_header or _nrrd_header_fields(path)
            named = fields.get("data file", fields.get("datafile"))
            if named is None:
                return []
            names = listed if named.split()[:1] == ["LIST"] else _numbered_file_names(named) or [named]
        elif _suffix(path) in (".mha", ".mhd"):
            layout = _metaimage_layout(path)
            named = layout[0].get("elementdatafile", "") if layout else ""
            kind = named.split()[0].upper() if named.split() else ""
            if kind in ("", "LOCAL"):
                return []
            names = layout[2] if kind == "LIST" else _numbered_file_names(named) or [named]
        else:
            return []
    except OSError:
        return []  # the reader says what is wrong
    return [path.parent / name for name in names]


def _check_data_files(path: Path, nrrd_header: _NrrdHeader | None = None) -> None:
    """:class:`InputError` for a header whose data file is a FIFO, device or socket (ITK would wait on a FIFO for
    ever), before any reader opens it. ``nrrd_header``: as for :func:`_data_files`."""
    for data_file in _data_files(path, nrrd_header):
        kind = special_file_kind(data_file)
        if kind is not None:
            raise InputError(f"{path}: its data file {data_file.name!r}, named in its header, is {kind}, not a "
                             "file; give the image's own data file")


#: The text files a user gives (reports, RV points, evaluations) are kilobytes to a few MB; one larger than this is
#: not one, and reading it whole, as they are read, would take its size in memory.
MAX_TEXT_FILE_BYTES = 64 << 20


def read_small_text(path: str | Path, limit_bytes: int = MAX_TEXT_FILE_BYTES) -> str:
    """The UTF-8 text of a small file scarnet keeps beside others (a weights sidecar, a training config): OSError,
    as for a file that cannot be read, for a FIFO (reading would wait for ever for a writer), a device (/dev/zero
    never ends) or a file over ``limit_bytes``; UnicodeDecodeError (a ValueError) for bytes that are not UTF-8."""
    kind = special_file_kind(path)
    if kind is not None:
        raise OSError(f"is {kind}, not a file")
    with open(path, "rb") as file:
        data = file.read(limit_bytes + 1)
    if len(data) > limit_bytes:
        raise OSError(f"larger than {limit_bytes >> 20} MiB")
    return data.decode("utf-8")


def check_text_file(path: str | Path, expected: str) -> None:
    """:class:`InputError` before ``path`` is read whole as text: a FIFO would wait for ever for a writer, a device
    (/dev/zero) never ends, and a file beyond :data:`MAX_TEXT_FILE_BYTES` is not ``expected`` (e.g. "a JSON
    report"). A path that is missing or a folder passes: the caller's reading says so, as it always did."""
    path = Path(path)
    _check_regular_file(path, expected)
    try:
        size = path.stat().st_size if path.is_file() else 0
    except OSError:
        return
    if size > MAX_TEXT_FILE_BYTES:
        raise InputError(f"{path}: {size / 2**20:,.0f} MiB, far larger than {expected} (at most "
                         f"{MAX_TEXT_FILE_BYTES >> 20} MiB); give the file itself")


def read_input(path: str | Path, series: str | None = None) -> tuple[Volume, DicomStack | None]:
    """:func:`read_volume`, and for a DICOM folder also its :class:`scarnet.dicom.DicomStack` (the series,
    named in a report, and each slice's image, for a DICOM SEG); None for a file."""
    if Path(path).is_dir():
        stack = read_dicom_source(path, series)
        return stack.volume, stack
    return read_volume(path, series), None


def read_dicom_source(path: str | Path, series: str | None = None) -> DicomStack:
    """Read a DICOM folder as :func:`read_volume` does, keeping the image each slice comes from
    (:class:`scarnet.dicom.DicomStack`), so that a result can refer to them (DICOM SEG)."""
    from .dicom import read_dicom_stack

    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: {'not a DICOM folder' if path.exists() else 'no such folder'} (a DICOM SEG "
                         "refers to the DICOM images it was made from)")
    stack = read_dicom_stack(path, series=series)
    stack.volume.array = stack.volume.array.astype(np.float32, copy=False)
    validate_image(stack.volume, name=str(path))
    return stack


def read_labelmap(path: str | Path, reference: Volume | None = None,
                  label_values: dict[int, int] | None = None) -> Volume:
    """Read a labelmap file (NIfTI, NRRD, MHA or Slicer ``.seg.nrrd``) as uint8 labels 0–4.

    A ``.seg.nrrd`` without segment information is read as a plain labelmap, as Slicer reads it.
    With ``reference``, the labelmap must lie on the reference's grid. ``label_values`` maps another
    dataset's values to these labels (e.g. ``{500: 1, 200: 2, 2221: 3}``); every value in the file but 0
    must then be in it (a value left out is an error, not background). It maps voxel values only: a
    ``.seg.nrrd`` whose segments are named (LV blood pool, Myocardium, Scar, MVO, or a usual synonym) is
    read by those names.
    """
    from .quantify import validate_labelmap

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {_missing(path, 'no such file')}")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a labelmap file")
    if _suffix(path) == SEGMENTATION_SUFFIX:
        labelmap = read_seg_nrrd(path, label_values)
    else:
        labelmap = _read_image_file(path)
        if np.iscomplexobj(labelmap.array):
            raise InputError(f"{path}: holds complex values, not labels (an image given as the labelmap?)")
        if label_values is not None:
            labelmap = labelmap.with_array(_relabelled(labelmap.array, label_values, path))
    # As for images: a 2D labelmap has no slice thickness to make volumes of (files store 1 mm),
    # and a grid with a NaN origin cannot be compared with an image's.
    _check_stack_shape(labelmap, str(path))
    check_geometry(labelmap, str(path))
    try:
        validate_labelmap(labelmap)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    labelmap.array = np.rint(labelmap.array).astype(np.uint8)
    if reference is not None and not reference.same_grid(labelmap):
        raise InputError(f"{path}: labelmap is on another grid than the image "
                         f"({reference.grid_difference(labelmap)})")
    labelmap.provenance = {"input": str(path), "labelmap": str(path)}  # what a report of it names
    return labelmap


def _relabelled(array: np.ndarray, label_values: dict[int, int], path: Path) -> np.ndarray:
    """``array`` with its values mapped by ``label_values`` (0 stays 0 unless mapped)."""
    values = np.unique(array)
    if np.issubdtype(values.dtype, np.floating) and not (np.isfinite(values).all()
                                                         and (values == np.round(values)).all()):
        raise InputError(f"{path}: labelmap has non-integer values")
    unmapped = [int(v) for v in values.tolist() if int(v) != 0 and int(v) not in label_values]
    if unmapped:
        shown = ", ".join(str(v) for v in unmapped[:8])
        raise InputError(f"{path}: value(s) {shown} not in the label mapping (--label-values): give each its label, "
                         f"e.g. {unmapped[0]}=L with L 0 background, 1 LV blood pool, 2 myocardium, 3 scar, 4 MVO "
                         "(one mapping serves every folder of the run)")
    lookup = {0: 0, **label_values}
    out = np.zeros(array.shape, dtype=np.uint8)
    for value in values.tolist():
        out[array == value] = lookup[int(value)]
    return out


@functools.cache
def _have_simpleitk() -> bool:
    """SimpleITK is a dependency; only minimal environments (a lent GPU machine) lack it.

    Cached: where it is missing, a failed import would otherwise be retried on every read and write.
    """
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        return False
    return True


def _warn_if_sheared(path: Path, linear: np.ndarray | None) -> None:
    """Warn when a NIfTI affine (``linear``, its 3×3 part) is sheared: voxels read orthogonally are too big.

    Converters write a sheared affine for a stack whose slices shift in-plane from one to the next.
    The voxel volume is |det(affine)|; the orthogonal grid ITK (and Slicer) make of it has the
    product of the axis lengths, which is larger by the factor reported. Only the angles are
    used: real headers (EMIDEC's) carry sforms whose scales disagree with pixdim, which ITK reads.
    """
    if linear is None:
        return
    factor = _shear_factor(linear)
    if factor > MAX_SHEAR_FACTOR:
        return  # not the matrix ITK read the geometry from (it takes the qform then); nibabel's is checked apart
    if factor > 1 + SHEAR_TOLERANCE:
        excess = 100.0 * (factor - 1.0)
        warnings.warn(f"{path}: its voxel axes are not perpendicular (slices shifted in-plane from one to the next); "
                      f"it is read as the nearest orthogonal grid, on which volumes come out {excess:.1f} % too "
                      "large. Resample it onto an orthogonal grid for exact volumes", stacklevel=4)


#: Where a NIfTI's two orientations (sform, qform) place the image's corners apart by more than this, other
#: programs may put it elsewhere than ITK does: said in a warning.
MAX_FORMS_DISAGREEMENT_MM = 1.0


def _warn_if_placed_otherwise_elsewhere(path: Path, header: Any, volume: Volume) -> None:
    """Warn when other programs read the NIfTI ``header`` (as stored) into another place than ITK read ``volume``.

    A header may hold two orientations, the sform and the qform. ITK (and so 3D Slicer and the labelmaps scarnet
    writes) takes the qform for some codes (an sform "aligned" to another image or a template beside a scanner
    qform), nibabel and FSL the sform whenever its code is set. When the two disagree, an overlay of the labelmap
    on the image in such a program is misplaced. A negative pixdim,
    which the NIfTI standard does not allow, is read as a mirror by ITK but not by nibabel.
    """
    if header is None:
        return
    with contextlib.suppress(Exception):  # a header nibabel cannot turn into affines: ITK read it, nothing to add
        pixdim = np.asarray(header["pixdim"][1:4], dtype=float)
        as_loaded = header.copy()
        as_loaded["pixdim"][1:4] = np.abs(pixdim)  # what nibabel's loading makes of a negative pixdim
        # In mm, as ``volume`` is: a header in metres or microns (xyzt_units) stores its forms in that unit.
        scale = np.diag([*[_nifti_mm_per_unit(header)] * 3, 1.0])
        forms = {name: scale @ matrix for name, (matrix, code) in (("sform", as_loaded.get_sform(coded=True)),
                                                                    ("qform", as_loaded.get_qform(coded=True)))
                 if code and matrix is not None and np.all(np.isfinite(matrix)) and not _is_degenerate(matrix[:3, :3])}
        shape = volume.array.shape[::-1]  # (i, j, k)
        corners = np.array([[i, j, k, 1.0] for i in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                            for k in (0, shape[2] - 1)]).T
        ras_to_lps = np.diag([-1.0, -1.0, 1.0, 1.0])
        read = (volume.ijk_to_lps_matrix() @ corners)[:3]
        placed = {name: (ras_to_lps @ matrix @ corners)[:3] for name, matrix in forms.items()}
        apart = {name: float(np.linalg.norm(where - read, axis=0).max()) for name, where in placed.items()}
        if len(placed) == 2:
            disagreement = float(np.linalg.norm(placed["sform"] - placed["qform"], axis=0).max())
            if disagreement > MAX_FORMS_DISAGREEMENT_MM and apart["qform"] < apart["sform"]:
                warnings.warn(f"{path}: its sform and qform place the image up to {disagreement:.0f} mm apart; it is "
                              "read with the qform, as 3D Slicer and ITK do for its codes, and so are the labelmaps "
                              "written for it. Programs that take the sform (FSL, nibabel) place the image elsewhere: "
                              "check which is right", stacklevel=4)
                return
        if "sform" in forms and apart["sform"] > MAX_FORMS_DISAGREEMENT_MM:
            sform_spacing = np.linalg.norm(forms["sform"][:3, :3], axis=0)
            if not np.allclose(sform_spacing, volume.spacing_mm, rtol=0.01, atol=0.0):
                # EMIDEC's headers: pixdim 1.41×1.41×13 mm, an sform of 1 mm. A file nibabel re-saves from it keeps
                # the sform's 1 mm voxels, and every volume of it comes out 26 times too small.
                warnings.warn(f"{path}: its sform makes voxels of {_mm_text(sform_spacing)} mm, its pixdim "
                              f"{_mm_text(volume.spacing_mm)} mm, which is read here, as 3D Slicer and ITK do; "
                              "programs that take the sform (nibabel, FSL) read the other size, and files they "
                              "save from it keep it: check which is right", stacklevel=4)
                return
        if np.any(pixdim < 0) and any(distance > MAX_FORMS_DISAGREEMENT_MM for distance in apart.values()):
            axes = ", ".join(f"pixdim[{axis + 1}] = {pixdim[axis]:g}" for axis in np.flatnonzero(pixdim < 0))
            warnings.warn(f"{path}: its header has a negative spacing ({axes}), which the NIfTI standard does not "
                          "allow; 3D Slicer and ITK read that axis mirrored, as here, nibabel and FSL do not: check "
                          "the orientation (left and right)", stacklevel=4)


def _mm_text(spacing_mm) -> str:
    """``1.41×1.41×13``: a voxel size for a message."""
    return "×".join(f"{value:.3g}" for value in spacing_mm)


#: A voxel size that writers put in a header when they know none, and that a re-save from a header without
#: scales keeps: said, since every volume depends on it.
DEFAULT_SPACING_MM = (1.0, 1.0, 1.0)


def _warn_if_default_spacing(path: Path, volume: Volume) -> None:
    """Warn when the header states voxels of exactly 1×1×1 mm (:data:`DEFAULT_SPACING_MM`).

    A short-axis LGE stack has slices 5–15 mm apart; 1 mm everywhere is what a program writes without the
    scanner's spacing (a NIfTI re-saved by nibabel from an sform without scales: EMIDEC's, whose volumes then
    came out 26 times too small without a word). Real 1 mm isotropic images exist, so it is a warning.
    """
    if np.allclose(volume.spacing_mm, DEFAULT_SPACING_MM, rtol=0.0, atol=1e-6):
        warnings.warn(f"{path}: its voxels are 1×1×1 mm, the size programs write when they know none (a file re-saved "
                      "without the scanner's spacing): volumes, in mL, are right only if that is the true voxel size",
                      stacklevel=4)


def _shear_factor(linear: np.ndarray) -> float:
    """How much larger the orthogonal grid's voxel is than the true one for a NIfTI affine's 3×3 part (1 when its
    axes are perpendicular): the product of the axis lengths over |det|. Infinite for a matrix that places no
    voxel grid (not finite, an axis of zero length, a zero determinant)."""
    if not np.all(np.isfinite(linear)):
        return math.inf
    lengths = np.linalg.norm(linear, axis=0)
    determinant = abs(float(np.linalg.det(linear)))
    if not np.all(lengths > 0) or determinant <= 0:
        return math.inf
    return float(np.prod(lengths)) / determinant


def _is_degenerate(linear: np.ndarray) -> bool:
    """A NIfTI affine's 3×3 part places no voxel grid: an axis of zero length, or axes so far off perpendicular
    (beyond :data:`MAX_SHEAR_FACTOR`) that they are nearly in one plane."""
    return _shear_factor(linear) > MAX_SHEAR_FACTOR


def _sform_from_itk(image) -> np.ndarray | None:
    """The NIfTI sform's 3×3 part from ITK's metadata (None without one; a qform cannot shear)."""
    try:
        if int(image.GetMetaData("sform_code")) <= 0:
            return None
        rows = [[float(v) for v in image.GetMetaData(f"srow_{axis}").split()[:3]] for axis in "xyz"]
    except (RuntimeError, ValueError):
        return None
    return np.array(rows)


def _read_image_file(path: Path) -> Volume:
    """Read one image file with SimpleITK, refusing what ITK would read wrongly without a word.

    ITK reads the missing voxels of a truncated NIfTI as zeros and an axis whose header states no
    spacing as 1 mm; either would misstate every volume, so both are checked after reading. What
    ITK's C++ code prints straight to stderr meanwhile becomes the error's reason or, when the
    file is read, warnings (one line each).
    """
    _check_regular_file(path, "an image file")  # opening a FIFO would wait for ever for a writer
    nrrd_header = _nrrd_header_of(path)  # read once, for both checks of a NRRD's data below
    _check_data_files(path, nrrd_header)  # ... and so would a header's data file that is one
    if _suffix(path) in (".nii", ".nii.gz") and (not _have_simpleitk() or itk_cannot_open(path)):
        return _read_nifti_with_nibabel(path)  # keeps NaN/Inf, which the callers' validation rejects
    if itk_cannot_open(path):
        raise InputError(f"{path}: cannot be read here: {ITK_WINDOWS_NAMES}")
    import SimpleITK as sitk

    itk_file_name(path, InputError)
    # ITK warns on real-world headers (EMIDEC: "unexpected scales in sform"); the geometry it
    # derives is still right, so keep the console clean.
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    printed: list[str] = []
    io_name = ""  # stays empty when ITK cannot even tell the format
    header = None  # a NIfTI's header as stored
    data_bytes: int | None = None  # what the header says its voxels take
    try:
        with _native_stderr_captured(printed):
            # Asking which reader ITK picks (it only probes the header) tells which header to check.
            io_name = sitk.ImageFileReader.GetImageIOFromFileName(str(path))
            if io_name == _NIFTI_IO:
                header = _nifti_header(_nifti_head(path))  # as stored: ITK "fixes" what the checks look for
                _check_nifti_offset(path, header)  # niftilib reads all before the voxels with the header
            reader = sitk.ImageFileReader()
            reader.SetFileName(str(path))
            reader.SetImageIO(io_name)
            # The header alone first: ITK allocates, and fills with zeros, all that a header declares before it
            # reads a byte of data, so a header claiming gigabytes beside a small file (or a gzip bomb) is refused
            # before, not after, taking that memory.
            reader.ReadImageInformation()
            data_bytes = _check_declared_size(path, reader)
            if io_name == _NIFTI_IO:
                _check_nifti_dims(path, header)
                _check_nifti_length(path, _nifti_data_end(reader))  # checks compressed data in full as it measures it
            image = reader.Execute()
    except RuntimeError as error:
        detail = str(error).strip().splitlines()
        reason = next((line for line in reversed(detail) if line.strip()), "unknown reason")
        if "orthonormal" in reason.lower() or _is_nifti2(path):
            # ITK refuses a non-orthonormal sform, and this ITK has no NIfTI-2 reader ("Unable to determine
            # ImageIO reader"): nibabel reads both, with the same checks.
            return _read_nifti_with_nibabel(path)
        # Damaged compressed data makes ITK fail with a reason that does not say so ("Unable to determine ImageIO
        # reader", "_nrrdGzRead: data read error"): the damage, when it is that, is the reason given.
        with contextlib.suppress(OSError, _CutShort):  # a missing data file, a cut one: ITK's reason names them
            _check_compressed_data(path, io_name, data_bytes, nrrd_header)
        raise InputError(f"{path}: not a readable image ({_short(_failure_reason(path, reason, printed))})") from None
    if io_name == _NIFTI_IO:
        _check_nifti_spacing(path, image, header)
        if _nifti_zeros_may_hide_non_finite(image) and _nifti_has_non_finite(path):
            raise InputError(f"{path}: contains NaN or infinite values: {_NON_FINITE_HELP}")
    else:
        # ITK's NRRD reader inflates only the bytes it needs, never reaching the gzip CRC, and MetaIO reads damaged
        # zlib data as wrong voxels after printing "Uncompress failed": neither notices damage, so it is checked here.
        try:
            _check_compressed_data(path, io_name, data_bytes, nrrd_header)
        except OSError as error:
            raise InputError(f"{path}: could not be read to check its compressed data "
                             f"({os_error_reason(error)})") from None
        if io_name == _NRRD_IO:
            _check_nrrd_spacing(path, image)
        elif io_name == _META_IO:
            if any(_METAIO_INFLATE_FAILED in line for line in printed):
                raise InputError(f"{path}: not a readable image (its compressed data could not be decompressed: "
                                 f"{_METAIO_INFLATE_FAILED}), so its voxels would be wrong")
            _check_metaimage_spacing(path, image)
    volume = _volume_from_sitk(image, str(path))
    if io_name == _NIFTI_IO:
        _warn_if_sheared(path, _sform_from_itk(image))
        _warn_if_placed_otherwise_elsewhere(path, header, volume)
    _warn_if_default_spacing(path, volume)
    # Only now, so that a refused file says one line: e.g. niftilib's "pixdim[1,2,3] should be positive".
    for line in dict.fromkeys(printed):
        warnings.warn(f"{path}: {line}", stacklevel=4)
    return volume


#: Held while fd 2 points elsewhere: one capture at a time (a read in another thread meanwhile goes uncaptured).
_NATIVE_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_captured(printed: list[str]) -> Iterator[None]:
    """Collect into ``printed`` the lines C/C++ code writes to file descriptor 2 inside the block.

    ITK's MetaImage and NIfTI libraries print some errors and warnings with ``std::cerr``/``fprintf``,
    past Python and past ITK's (disabled) warning display: a truncated ``.mha`` prints "data not
    read completely" and then throws with errno's stale "No such file or directory". The caller
    turns the lines into its one-line reason, or into warnings when the read succeeds, so nothing
    is lost. fd 2 is always restored. Only a single-threaded process (the CLI) is captured: fd 2
    is one per process, and another thread's text would end up in this read's reason. Elsewhere
    (Slicer, a script with threads), or without fd 2 or a temporary file, the block runs
    uncaptured and ITK's lines reach stderr as they always did.
    """
    with contextlib.ExitStack() as stack:
        saved, sink = _redirect_stderr_fd(stack)
        try:
            yield
        finally:
            if saved is not None and sink is not None:
                _flush_python_stderr()  # Python text written inside the block belongs to it too
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                text = sink.read().decode("utf-8", errors="replace")
                printed.extend(line.strip() for line in text.splitlines() if line.strip())


def _redirect_stderr_fd(stack: contextlib.ExitStack) -> tuple[int | None, IO[bytes] | None]:
    """Point fd 2 at a temporary file closed by ``stack``; return a copy of the old fd 2 and the file.

    (None, None) where that is impossible. fd 2 is one per process, so ``stack`` also holds a lock
    that keeps a second thread from moving it meanwhile.
    """
    if threading.active_count() > 1:
        return None, None  # other threads may print meanwhile: their text is not this read's
    if not _NATIVE_STDERR_LOCK.acquire(blocking=False):
        return None, None
    stack.callback(_NATIVE_STDERR_LOCK.release)
    _flush_python_stderr()  # text Python buffered before the block must reach the real stderr
    try:
        sink = stack.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 - closed by the stack
        saved = os.dup(2)
    except OSError:  # no temporary folder, or no fd 2 (a GUI process without a console)
        return None, None
    try:
        os.dup2(sink.fileno(), 2)
    except OSError:
        os.close(saved)
        return None, None
    return saved, sink


def _flush_python_stderr() -> None:
    for stream in (sys.stderr, sys.__stderr__):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()


def _failure_reason(path: Path, reason: str, printed: list[str]) -> str:
    """The most telling reason for a failed read, from ITK's exception text and what its C++ code printed.

    MetaImage prints the cause ("data not read completely", "Cannot open data file") and then
    throws with a stale "No such file or directory"; NRRD's reader says "fread got only …".
    """
    text = " ".join(printed)
    if _suffix(path) == ".nii" and _starts_with_gzip(path):
        return "its data is gzip-compressed, but it is named .nii: rename it to .nii.gz"
    if _suffix(path) in (".nrrd", ".mha") and _starts_with_gzip(path):
        # No reader takes a whole-file-gzipped .nrrd.gz / .mha.gz: their formats compress the data inside.
        return f"the whole file is gzip-compressed, which {_suffix(path)} readers do not take: decompress it (gunzip)"
    if "data not read completely" in text:
        sizes = re.search(r"ideal\s*=\s*(\d+)\s*:\s*actual\s*=\s*(\d+)", text)
        held = f": its data holds {sizes[2]} of the {sizes[1]} bytes its header describes" if sizes else ""
        return f"the file is truncated{held}"
    if "cannot open data file" in text.lower():
        data_file = (_metaimage_header(path) or {}).get("elementdatafile", "")
        return f"its data file {data_file!r}, named in its header, is missing or unreadable"
    if re.search(r"fread got only|expected \d+ bytes but received", reason):
        return "the file is truncated: " + re.sub(r"^\[nrrd\]\s*\w+:\s*", "", reason)
    return "; ".join([*printed, reason])


def check_voxel_count(name: str, size: Sequence[int], declared: str = "its header declares") -> None:
    """Refuse an image of ``size`` voxels (any order) beyond :data:`MAX_IMAGE_VOXELS`, from its header: reading it
    would take that much memory (and zeros where the file holds no data) before any other check could speak."""
    voxels = math.prod(int(n) for n in size)
    if voxels > MAX_IMAGE_VOXELS:
        raise InputError(f"{name}: {declared} {'×'.join(str(int(n)) for n in size)} voxels "
                         f"({voxels / 1e6:,.0f} million), more than any short-axis LGE stack holds "
                         f"({MAX_IMAGE_VOXELS / 1e6:.0f} million at most): a damaged header, or not a short-axis "
                         "LGE stack (a 3D whole-heart volume?); crop or resample it (3D Slicer: Crop Volume)")


def _check_declared_size(path: Path, reader) -> int:
    """:func:`check_voxel_count` of the header ITK's ``reader`` has read (ReadImageInformation); the bytes its voxels
    take as it declares them."""
    import SimpleITK as sitk

    size = reader.GetSize()
    components = max(1, reader.GetNumberOfComponents())
    # Each voxel's channels (a MetaImage's ElementNumberOfChannels, a NIfTI's vector dim[5]) are allocated as voxels
    # are: 512×512×30 with 1000 channels would take 31 GB.
    check_voxel_count(str(path), (*size, components) if components > 1 else size)
    kind = sitk.GetPixelIDValueAsString(reader.GetPixelID())  # "16-bit signed integer", "complex of 32-bit float"
    bits = re.search(r"(\d+)-bit", kind)
    component_bytes = (int(bits[1]) // 8 if bits else 8) * (2 if "complex" in kind else 1)
    return math.prod(int(n) for n in size) * components * component_bytes


def _inflate_limit(data_bytes: int | None) -> int:
    """Inflated bytes past which an image's compressed data is refused as a decompression bomb: twice what its header
    says its voxels take, and 64 MiB more (NRRD's byte skip, a NIfTI's extensions); when that is unknown, as much
    for the largest image read (:data:`MAX_IMAGE_VOXELS` complex doubles)."""
    return 2 * (data_bytes if data_bytes is not None else MAX_IMAGE_VOXELS * 16) + (1 << 26)


def _starts_with_gzip(path: Path) -> bool:
    """Whether the file begins with gzip's magic bytes."""
    try:
        with path.open("rb") as stream:
            return stream.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def _axes_read_as_1mm(image) -> list[int]:
    """Spatial axes ITK gives exactly 1 mm: the spacing it invents when a header states none."""
    return [axis for axis, spacing in enumerate(image.GetSpacing()[:3]) if spacing == 1.0]


def _no_spacing(path: Path, detail: str) -> InputError:
    return InputError(f"{path}: has no pixel spacing in its header ({detail}: unknown); it would be read as 1 mm "
                      "and every volume would be wrong. Write the file again with its true voxel spacing")


#: Bytes read as a NIfTI header: NIfTI-2's size (NIfTI-1's is 348).
_NIFTI_HEADER_BYTES = 540
_GZIP_MAGIC = b"\x1f\x8b"
#: zlib's ``wbits`` for the two wrappers image files use: gzip (NIfTI ``.gz``, NRRD ``encoding: gzip``), which ends
#: each member with its CRC-32 and length, and zlib (MetaImage ``CompressedData``), which ends with an Adler-32.
_GZIP_WBITS, _ZLIB_WBITS = 31, 15
#: A gzip member's fixed header: magic, method, flags, time, extra flags, system.
_GZIP_HEADER_BYTES = 10
#: Compressed bytes given to zlib at a time. Deflate expands at most ~1032-fold, so a piece inflates to at most
#: ~17 MB, dropped at once: no image is held inflated beside the one ITK reads.
_INFLATE_PIECE_BYTES = 1 << 14
#: Lines of a NRRD header are read at most this long (bytes); longer ones are read in parts.
_NRRD_LINE_LIMIT = 1 << 16
#: More data files than a numbered pattern names in any stack (one a slice): more means the header is damaged.
_MAX_NUMBERED_FILES = 1 << 16
#: What MetaIO prints when its zlib data does not inflate, before it goes on with wrong voxels.
_METAIO_INFLATE_FAILED = "Uncompress failed"


class _CompressedStream(NamedTuple):
    """Where one compressed stream of an image's voxels lies: in ``file`` from byte ``offset``, after
    ``lines_skipped`` text lines (NRRD's ``line skip``), wrapped as ``wbits`` says (gzip or zlib), and, where its
    reader takes only so many bytes of it (MetaImage's ``CompressedDataSize``), ``size``."""

    file: Path
    offset: int = 0
    lines_skipped: int = 0
    wbits: int = _GZIP_WBITS
    size: int | None = None


def _nifti_head(path: Path) -> bytes:
    """The first bytes of a NIfTI file's contents (its header), decompressed if it is gzipped."""
    try:
        with open(path, "rb") as raw:
            start = raw.read(1 << 16)
        if not start.startswith(_GZIP_MAGIC):  # whatever the name says: ITK goes by the content too
            return start[:_NIFTI_HEADER_BYTES]
        return zlib.decompressobj(wbits=_GZIP_WBITS).decompress(start, _NIFTI_HEADER_BYTES)
    except OSError as error:
        raise InputError(f"{path}: could not be read ({os_error_reason(error)})") from None
    except zlib.error as error:
        raise _damaged(path, error) from None


def _damaged(path: Path, error: zlib.error, stream: _CompressedStream | None = None) -> InputError:
    """The one line that refuses compressed data zlib cannot inflate or whose checksum fails: the file (or the data
    file holding ``stream``, when it is another) is corrupt."""
    # zlib says e.g. "Error -3 while decompressing data: incorrect data check"; its own words follow the colon.
    detail = str(error).rpartition(": ")[2].strip() or str(error)
    wrapper = stream.wbits if stream is not None else _GZIP_WBITS
    reason = {"incorrect data check": "gzip CRC error" if wrapper == _GZIP_WBITS else "zlib checksum error",
              "incorrect length check": "gzip length error"}.get(detail, detail)
    if stream is None or stream.file == path:
        return InputError(f"{path}: damaged compressed data ({_short(reason)}): the file is corrupt; copy it again")
    return InputError(f"{path}: damaged compressed data in its data file {stream.file.name!r} ({_short(reason)}): "
                      "that file is corrupt; copy it again")


def _nifti_data_end(image) -> int | None:
    """Where a NIfTI file's voxel data ends (bytes): vox_offset + voxels × bitpix / 8, from ITK's header copy."""
    try:
        dimension = int(image.GetMetaData("dim[0]"))
        voxels = math.prod(int(image.GetMetaData(f"dim[{axis}]")) for axis in range(1, dimension + 1))
        return int(float(image.GetMetaData("vox_offset"))) + voxels * int(image.GetMetaData("bitpix")) // 8
    except (RuntimeError, ValueError):
        return None


def _nifti_data_file(path: Path) -> Path:
    """The file holding a NIfTI's voxels: ``path``, or for the header of a pair (``.hdr``) its image file, looked
    for as niftilib (ITK's NIfTI library) looks: ``.img``, then ``.img.gz``, in the header suffix's case."""
    lower = path.name.lower()
    for header_suffix in (".hdr", ".hdr.gz"):
        if lower.endswith(header_suffix):
            stem = path.name[: -len(header_suffix)]
            image_suffix = ".IMG" if path.name[len(stem):].startswith(".HDR") else ".img"
            for candidate in (image_suffix, image_suffix + ".gz"):
                if (path.parent / (stem + candidate)).exists():
                    return path.parent / (stem + candidate)
    return path


def _check_nifti_length(path: Path, data_end: int | None) -> None:
    """Refuse a NIfTI file whose compressed data is damaged or whose data is cut short of ``data_end`` bytes: ITK
    (and so Slicer) reads missing voxels as zeros, and damaged gzip data as whatever it inflates to.

    A gzip file is inflated to its end, every member's CRC checked (:func:`_check_compressed_data`), and measured:
    the length its trailer records says nothing about the bytes before it. For a NIfTI pair the image file is measured.
    Data that inflates to far more than ``data_end`` is refused as a decompression bomb (:func:`_inflate_limit`).
    """
    try:
        length = _check_compressed_data(path, _NIFTI_IO, data_end)
        if length is None:
            length = _nifti_data_file(path).stat().st_size
    except OSError as error:
        raise InputError(f"{path}: could not be read ({os_error_reason(error)})") from None
    except _CutShort as cut:
        if data_end is None or cut.inflated_length >= data_end:
            raise  # every voxel inflated, yet no end: damaged near its end
        length = cut.inflated_length
    if data_end is not None and length < data_end:
        raise InputError(f"{path}: is truncated: its data ends after {length} of the {data_end} bytes its header "
                         "describes (copied or downloaded incompletely?), so voxels are missing")


def _check_compressed_data(path: Path, io_name: str, data_bytes: int | None = None,
                           nrrd_header: _NrrdHeader | None = None) -> int | None:
    """Inflate every compressed stream that holds ``path``'s voxels, as ITK's ``io_name`` reader finds them, to its
    end, checking its checksums; refuse damaged data in one line naming the file. Returns the inflated length of
    all streams together (None when the voxels are stored uncompressed).

    The one check of compressed input, for every reader: ITK's readers inflate only the bytes they need, so damage
    near a stream's end, which only its checksum shows, passes them (the last slices read as zeros, or as other
    labels). ``io_name`` "" (ITK could not tell the format) checks ``path`` itself when it is gzip. An OSError
    (a data file that cannot be opened) is left to the caller. Inflating stops, refused, past
    :func:`_inflate_limit` of ``data_bytes`` (what the header says the voxels take; None: unknown): data that
    inflates to gigabytes more than any image read takes is a decompression bomb, minutes of work to measure.
    ``nrrd_header``: a NRRD's :func:`_nrrd_header_fields`, when read already (None: read here).
    """
    streams = _compressed_streams(path, io_name, nrrd_header)
    if not streams:
        return None
    limit = _inflate_limit(data_bytes)
    length = 0
    for stream in streams:
        length += _inflated_length(path, stream, limit - length)
    return length


def _compressed_streams(path: Path, io_name: str, nrrd_header: _NrrdHeader | None = None) -> list[_CompressedStream]:
    """The compressed streams that hold ``path``'s voxels for ITK's ``io_name`` reader ([] when stored uncompressed).
    ``nrrd_header``: as for :func:`_check_compressed_data`."""
    if io_name == _NRRD_IO:
        return _nrrd_compressed_streams(path, nrrd_header)
    if io_name == _META_IO:
        return _metaimage_compressed_streams(path)
    # NIfTI (and a file of a format ITK could not tell): gzip whatever the name says, as niftilib goes by the content.
    data_file = _nifti_data_file(path) if io_name == _NIFTI_IO else path
    with open(data_file, "rb") as raw:
        gzipped = raw.read(len(_GZIP_MAGIC)) == _GZIP_MAGIC
    return [_CompressedStream(data_file)] if gzipped else []


class _CutShort(InputError):
    """Gzip data that stops before its member's end, further from it than a cut inside its 8-byte trailer: a file
    cut short, or one damaged near its end so that its deflate data never ends (what it inflated to is not checked
    by any CRC). ``inflated_length``: the bytes it inflated to."""

    def __init__(self, path: Path, inflated_length: int) -> None:
        super().__init__(f"{path}: its compressed data stops before its end (the file was cut short, or damaged near "
                         "its end): the file is corrupt or incomplete; copy it again")
        self.inflated_length = inflated_length


def _inflated_length(path: Path, stream: _CompressedStream, limit: int | None = None) -> int:
    """The inflated length of one compressed stream of ``path``'s voxels, its checksums checked (InputError when
    damaged or when it inflates to more than ``limit`` bytes, :class:`_CutShort` when it stops short)."""
    with open(stream.file, "rb") as raw:
        raw.seek(stream.offset)
        for _ in range(stream.lines_skipped):
            raw.readline()
        try:
            length, ended = _inflated_stream_length(path, raw, stream.wbits, stream.size, limit)
        except zlib.error as error:  # a CRC (Adler-32) or length that does not match, or undecodable deflate data
            raise _damaged(path, error, stream) from None
        if stream.size is not None and not ended and raw.tell() - stream.offset >= stream.size:
            # Not a file cut short (its reader says so): MetaIO inflates that many bytes and reads the rest as zeros.
            raise InputError(f"{path}: its header's CompressedDataSize ({stream.size}) ends before its compressed "
                             "data does, so part of its voxels would be read wrong (a damaged header); write the "
                             "file again")
    return length


def _inflated_stream_length(path: Path, raw: IO[bytes], wbits: int, size: int | None = None,
                            limit: int | None = None) -> tuple[int, bool]:
    """The inflated length of the compressed data in ``raw`` from where it stands (at most ``size`` bytes of it), and
    whether its last stream reached its end; ``zlib.error`` when it is damaged, :class:`_CutShort` when a gzip
    member stops short of its end by more than (part of) its trailer.

    zlib checks each gzip member's CRC-32 and length (a zlib stream's Adler-32) when it reaches them. zlib rather than
    :mod:`gzip`, whose ``read`` drops the last piece of a stream that ends early: a stream cut short counts what it
    holds, so one cut inside its 8-byte trailer still holds every voxel: accepted when the trailer's bytes that
    are there match the CRC-32 and length of what it inflated to (kept as it goes). Data that stops anywhere else
    (cut short, or a byte damaged near the end: the deflate data never ends) is :class:`_CutShort` of ``path``.
    Several gzip members follow one another, as ``gzip`` and ITK read them; bytes after the last member are
    ignored, as those tools ignore them, when they are not a member or fail already in a member's fixed header
    (they merely start like one). A zlib stream is one; what follows it is not read. Past ``limit`` inflated bytes
    (None: no limit), :class:`InputError`: a decompression bomb.
    """
    length = 0
    left = size if size is not None else math.inf
    decompressor: Any = zlib.decompressobj(wbits=wbits)
    header_left = 0  # bytes of a later gzip member's fixed header not yet given to zlib
    crc = member_length = 0  # of the gzip member being inflated, for a trailer cut short
    while left > 0 and (piece := raw.read(int(min(_INFLATE_PIECE_BYTES, left)))):
        left -= len(piece)
        while piece:
            if decompressor is None:  # a stream ended: another gzip member follows, or bytes to ignore
                if wbits != _GZIP_WBITS or not piece.startswith(_GZIP_MAGIC[: len(piece)]):
                    return length, True
                decompressor = zlib.decompressobj(wbits=wbits)
                header_left = _GZIP_HEADER_BYTES
                crc = member_length = 0
            if header_left:
                # Given on its own, so that a failure there tells bytes that only start like a member (ignored)
                # from a member damaged further on (refused).
                header, piece = piece[:header_left], piece[header_left:]
                try:
                    decompressor.decompress(header)  # a header inflates to nothing
                except zlib.error:
                    return length, True
                header_left -= len(header)
                continue
            inflated = decompressor.decompress(piece)  # not kept: a piece inflates to at most ~17 MB
            length += len(inflated)
            if limit is not None and length > limit:
                raise InputError(f"{path}: its compressed data inflates to more than {limit / 2**20:.0f} MiB, far "
                                 "more than its header describes (a damaged file, or a decompression bomb); not read")
            member_length += len(inflated)
            crc = zlib.crc32(inflated, crc)
            if not decompressor.eof:
                break  # all of the piece taken; the stream goes on in the next one
            piece = decompressor.unused_data
            decompressor = None
    # Bytes of a member's header alone (header_left) after a whole member are ignored, as above.
    if decompressor is None or header_left > 0:
        return length, True
    if wbits == _GZIP_WBITS and size is None and not _ends_with_its_trailer(decompressor, crc, member_length):
        raise _CutShort(path, length)
    return length, False


def _ends_with_its_trailer(decompressor: Any, crc: int, length: int) -> bool:
    """Whether a gzip member that stopped short ends once given the rest of its trailer (CRC-32 and length of what it
    inflated to, 8 bytes): its deflate data complete and the trailer's bytes that are there matching."""
    trailer = crc.to_bytes(4, "little") + (length % (1 << 32)).to_bytes(4, "little")
    for present in range(len(trailer)):
        probe = decompressor.copy()
        try:
            probe.decompress(trailer[present:])
        except zlib.error:
            continue
        if probe.eof:
            return True
    return False


def _nrrd_compressed_streams(path: Path, header: _NrrdHeader | None = None) -> list[_CompressedStream]:
    """The gzip streams of a NRRD's voxels (``encoding: gzip``): after its header, or in the data file(s) it names
    (one file, a ``LIST`` or a numbered pattern, relative to the header's folder), each after ``line skip`` lines
    (``byte skip`` counts inflated bytes). [] for other encodings (raw, ascii, hex; ITK has no bzip2 for NRRD).
    ``header``: its :func:`_nrrd_header_fields`, when read already (None: read here)."""
    fields, data_start, listed = header or _nrrd_header_fields(path)
    if fields.get("encoding", "").lower() not in ("gzip", "gz"):
        return []
    line_skip = fields.get("line skip", fields.get("lineskip", "0"))
    lines_skipped = int(line_skip) if line_skip.isdigit() else 0
    data_file = fields.get("data file", fields.get("datafile"))
    if data_file is None:
        return [_CompressedStream(path, data_start, lines_skipped)]
    names = listed if data_file.split()[:1] == ["LIST"] else _numbered_file_names(data_file) or [data_file]
    return [_CompressedStream(path.parent / name, 0, lines_skipped) for name in names]


#: What :func:`_nrrd_header_fields` reads of a NRRD header: its fields, where attached data starts, the LIST's files.
_NrrdHeader = tuple[dict[str, str], int, list[str]]


def _nrrd_header_of(path: Path) -> _NrrdHeader | None:
    """:func:`_nrrd_header_fields` of a file named as a NRRD (``.nrrd``, ``.nhdr``, ``.seg.nrrd``), read once for the
    checks that need it; None for other files, and when it cannot be read (each check then reads it, and says so or
    not, as it would)."""
    if _suffix(path) not in (".nrrd", ".nhdr", SEGMENTATION_SUFFIX):
        return None
    try:
        return _nrrd_header_fields(path)
    except OSError:
        return None


def _nrrd_header_fields(path: Path) -> _NrrdHeader:
    """A NRRD header's fields (names lower-cased), the offset where data attached to it starts, and the file names
    after ``data file: LIST``. Read as the format defines it: ``field: value`` lines, ``#`` comments and
    ``key:=value`` pairs (skipped), up to a blank line or the end of a detached header. Empty for a file that does
    not start as a NRRD."""
    fields: dict[str, str] = {}
    listed: list[str] = []
    listing = False  # after "data file: LIST": each line names a data file
    with open(path, "rb") as stream:
        if not stream.readline(_NRRD_LINE_LIMIT).startswith(b"NRRD"):
            return fields, 0, listed
        while line := stream.readline(_NRRD_LINE_LIMIT):
            text = line.decode("latin-1").strip()
            if not text:
                break  # the blank line that ends the header; attached data follows it
            if listing:
                listed.append(text)
                continue
            name, colon, value = text.partition(":")
            if text.startswith("#") or not colon or value.startswith("="):
                continue
            fields[name.strip().lower()] = value.strip()
            listing = name.strip().lower() in ("data file", "datafile") and value.split()[:1] == ["LIST"]
        return fields, stream.tell(), listed


def _numbered_file_names(pattern: str) -> list[str]:
    """The data files of a numbered pattern, ``format first last step [...]`` (e.g. ``slice%03d.raw.gz 1 40 1``, one
    file per slice, in NRRD and MetaImage alike); [] when ``pattern`` is not one."""
    words = pattern.split()
    if len(words) < 4 or "%" not in words[0]:
        return []
    try:
        first, last, step = (int(word) for word in words[1:4])
        numbers = range(first, last + (1 if step > 0 else -1), step)
        if len(numbers) > _MAX_NUMBERED_FILES:  # a damaged header must not make a list of millions of names
            return []
        return [words[0] % number for number in numbers]
    except (TypeError, ValueError, OverflowError):  # not numbers (or a step of 0), a format taking no one number
        return []


#: A NIfTI's header and extensions (what lies before its voxels, vox_offset) are a few kB, DICOM headers kept in an
#: extension a few MB. niftilib and nibabel read them whole with the header: more than this is a damaged header or a
#: decompression bomb (a 1 MB .nii.gz whose "extension" inflates to gigabytes).
MAX_NIFTI_HEADER_BYTES = 64 << 20


def _check_nifti_offset(path: Path, header: Any) -> None:
    """Refuse a NIfTI whose voxels start (vox_offset) past :data:`MAX_NIFTI_HEADER_BYTES`, before anything reads the
    header's extensions. ``header``: :func:`_nifti_header`'s (None: not checked)."""
    if header is None:
        return
    offset = float(header["vox_offset"])
    if not offset <= MAX_NIFTI_HEADER_BYTES:  # NaN too
        raise InputError(f"{path}: its header puts the voxels {offset / 2**20:,.0f} MiB into the file (vox_offset), "
                         f"after extensions far larger than any image's (at most {MAX_NIFTI_HEADER_BYTES >> 20} MiB): "
                         "a damaged header, or a decompression bomb; not read")


def _check_nifti_dims(path: Path, header: Any) -> None:
    """Refuse a NIfTI header whose size along a spatial axis it has is under 1 (``dim[3] = 0``): ITK reads it as one
    slice, and "a single slice" would name the wrong fault. ``header``: :func:`_nifti_header`'s (None: not checked)."""
    if header is None:
        return
    dim = [int(value) for value in header["dim"]]
    for axis in range(1, min(max(dim[0], 1), 3) + 1):
        if dim[axis] < 1:
            raise InputError(f"{path}: its header gives dim[{axis}] = {dim[axis]}, no voxels along that axis (a "
                             "damaged header; convert the image again)")


def _is_nifti2(path: Path) -> bool:
    """Whether ``path`` (plain or gzip) starts with a NIfTI-2 header."""
    try:
        header = _nifti_header(_nifti_head(path))
    except InputError:  # unreadable or damaged: not for this question
        return False
    return header is not None and header.sizeof_hdr == _NIFTI_HEADER_BYTES


def _nifti_header(head: bytes):
    """The NIfTI-1 or NIfTI-2 header in ``head`` as stored, not "fixed" (None when it is neither).

    nibabel's own loading replaces pixdim 0 by 1 (and logs it): the very value looked for here.
    """
    try:
        import nibabel
    except ImportError:
        return None
    for header_class in (nibabel.Nifti1Header, nibabel.Nifti2Header):
        block = head[: header_class.sizeof_hdr]
        if len(block) == header_class.sizeof_hdr and header_class.may_contain_header(block):
            return header_class(block, check=False)
    return None


def _unstated_pixdim(header, axes: Sequence[int]) -> str:
    """``pixdim[n] = 0`` for each of ``axes`` whose pixdim is 0 or NaN (no spacing); "" when all are stated."""
    pixdim = np.asarray(header["pixdim"], dtype=float)
    return ", ".join(f"pixdim[{axis + 1}] = {pixdim[axis + 1]:g}" for axis in axes if not abs(pixdim[axis + 1]) > 0)


def _check_nifti_spacing(path: Path, image, header: Any) -> None:
    """Refuse a NIfTI whose pixdim gives an axis no spacing: ITK reads it as 1 mm (its metadata then shows 1 too).
    ``header``: the file's as stored (:func:`_nifti_header`; None: not checked)."""
    axes = _axes_read_as_1mm(image)
    if not axes:
        return
    unstated = _unstated_pixdim(header, axes) if header is not None else ""
    if unstated:
        raise _no_spacing(path, unstated)


def _check_nrrd_spacing(path: Path, image) -> None:
    """Refuse a NRRD whose header gives an axis no spacing (``spacings: nan``, neither field): ITK reads 1 mm."""
    axes = _axes_read_as_1mm(image)
    if not axes:
        return
    try:
        import nrrd

        header = nrrd.read_header(str(path))
    except Exception:  # noqa: BLE001 - ITK read it; a pynrrd quirk must not block the file
        return
    if int(header.get("dimension", 0)) != image.GetDimension():
        return  # a non-spatial axis (components) shifts the numbering; ITK refuses those files anyway
    unstated = [axis for axis in axes if not _nrrd_axis_spacing_stated(header, axis)]
    if unstated:
        raise _no_spacing(path, ", ".join(f"axis {axis}" for axis in unstated))


def _nrrd_axis_spacing_stated(header: dict, axis: int) -> bool:
    """A finite, non-zero ``space directions`` vector or ``spacings`` value for ``axis``."""
    directions = header.get("space directions")
    if directions is not None:
        vector = np.asarray(directions[axis] if directions[axis] is not None else np.nan, dtype=float)
        return bool(np.all(np.isfinite(vector)) and np.any(vector != 0))
    spacings = header.get("spacings")
    if spacings is not None:
        return bool(np.isfinite(float(spacings[axis])) and float(spacings[axis]) != 0)
    return False


def _check_metaimage_spacing(path: Path, image) -> None:
    """Refuse a MetaImage without ElementSpacing (or ElementSize): ITK reads it as 1 mm."""
    if not _axes_read_as_1mm(image):
        return
    header = _metaimage_header(path)
    if header is not None and not {"elementspacing", "elementsize"} & header.keys():
        raise _no_spacing(path, "no ElementSpacing")


def _metaimage_header(path: Path) -> dict[str, str] | None:
    """A MetaImage header's ``Key = Value`` fields (keys lower-cased, as MetaIO ignores their case)."""
    layout = _metaimage_layout(path)
    return None if layout is None else layout[0]


def _metaimage_layout(path: Path) -> tuple[dict[str, str], int, list[str]] | None:
    """A MetaImage header's fields (as :func:`_metaimage_header`), the offset where the data after it (``LOCAL``)
    starts, and the lines after it (the data files of ``ElementDataFile = LIST``). None when it cannot be read."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(_META_HEADER_LIMIT).decode("latin-1")  # one character a byte: offsets stay right
    except OSError:
        return None
    fields: dict[str, str] = {}
    data_start = 0
    for line in text.splitlines(keepends=True):
        data_start += len(line)
        key, equals, value = line.partition("=")
        if not equals:
            continue
        fields[key.strip().lower()] = value.strip()
        if key.strip().lower() == "elementdatafile":
            break  # the header's last field; binary data may follow
    return fields, data_start, [name.strip() for name in text[data_start:].splitlines() if name.strip()]


def _metaimage_compressed_streams(path: Path) -> list[_CompressedStream]:
    """The zlib streams of a MetaImage's voxels (``CompressedData = True``): after its header (``LOCAL``), or in the
    data file(s) it names (one file, a ``LIST`` or a numbered pattern, relative to the header's folder). MetaIO
    skips no ``HeaderSize`` bytes before compressed data in a data file, so neither does this."""
    layout = _metaimage_layout(path)
    if layout is None:
        return []
    fields, data_start, following_lines = layout
    if fields.get("compresseddata", "")[:1] not in ("T", "t", "1"):  # MetaIO's reading of a boolean
        return []
    data_file = fields.get("elementdatafile", "")
    kind = data_file.split()[0].upper() if data_file.split() else ""
    # MetaIO inflates this many bytes of a single stream and reads voxels past them as zeros; without it, it takes
    # a data file to its end, but LOCAL data from elsewhere (wrong voxels).
    stated_size = fields.get("compresseddatasize", "")
    size = int(stated_size) if stated_size.isdigit() else None
    if not kind:
        return []  # no data named: MetaIO refuses the file
    if kind == "LOCAL":
        if size is None:
            raise InputError(f"{path}: its header gives no CompressedDataSize, without which its compressed data "
                             "is not read right (wrong voxels); write the file again")
        return [_CompressedStream(path, data_start, wbits=_ZLIB_WBITS, size=size)]
    slice_files = following_lines if kind == "LIST" else _numbered_file_names(data_file)
    if kind == "LIST" or slice_files:  # a stream a file, each inflated to its end
        return [_CompressedStream(path.parent / name, wbits=_ZLIB_WBITS) for name in slice_files]
    return [_CompressedStream(path.parent / data_file, wbits=_ZLIB_WBITS, size=size)]


def _nifti_zeros_may_hide_non_finite(image) -> bool:
    """True for a floating-point image holding zeros: ITK ≤ 5.4 reads NaN/±Inf in NIfTI files as 0."""
    import SimpleITK as sitk

    floating = {sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkVectorFloat32, sitk.sitkVectorFloat64}
    return image.GetPixelID() in floating and bool(np.any(sitk.GetArrayViewFromImage(image) == 0))


def _nifti_has_non_finite(path: Path) -> bool:
    """Look at the stored values with nibabel, which keeps NaN/Inf (ITK's NIfTI reader silently zeroes them)."""
    try:
        import nibabel
    except ImportError:
        return False
    try:
        with _nibabel_log_muted():
            image = nibabel.load(str(path))
            if not np.issubdtype(image.get_data_dtype(), np.floating):
                return False
            return not bool(np.all(np.isfinite(np.asarray(image.dataobj))))
    except Exception:  # noqa: BLE001 - ITK read it; a nibabel quirk must not block the file
        return False


@contextlib.contextmanager
def _nibabel_log_muted() -> Iterator[None]:
    """Keep nibabel from printing the header fixes it makes on loading ("pixdim[1,2,3] should be positive").

    They go to stderr as extra lines; the fixes are harmless (ITK makes them too, silently) or, for
    pixdim 0, refused beforehand from the header as stored.
    """
    import logging

    logger = logging.getLogger("nibabel.global")
    disabled, logger.disabled = logger.disabled, True
    try:
        yield
    finally:
        logger.disabled = disabled


def _volume_from_sitk(image, name: str) -> Volume:
    import SimpleITK as sitk

    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{name}: has {image.GetNumberOfComponentsPerPixel()} components per voxel "
                         "(colour or vector image); expected a greyscale LGE stack")
    dimension = image.GetDimension()
    if dimension == 4 and image.GetSize()[3] == 1:
        # A 4D file with a single time point is a 3D stack written by a tool that always writes 4D.
        image = sitk.Extract(image, list(image.GetSize()[:3]) + [0], [0, 0, 0, 0])
        dimension = 3
    if dimension == 2:
        raise InputError(f"{name}: is a 2D image; expected a 3D short-axis stack")
    if dimension != 3:
        raise InputError(f"{name}: is a {dimension}D image (size {image.GetSize()}); expected a 3D short-axis "
                         "stack, not a time series")
    return Volume.from_sitk(image)


def _read_nifti_with_nibabel(path: Path) -> Volume:
    """Fallback for NIfTI headers ITK refuses (a non-orthonormal sform: orthonormalise the affine; NIfTI-2)."""
    try:
        import nibabel
    except ImportError:
        raise InputError(f"{path}: ITK refuses its non-orthonormal orientation and nibabel is not installed") from None
    # The same checks as after ITK's reading, on the header as stored: nibabel's loading "fixes" pixdim 0.
    header = _nifti_header(_nifti_head(path))
    _check_nifti_offset(path, header)
    _check_nifti_dims(path, header)
    if header is not None:
        unstated = _unstated_pixdim(header, range(min(3, int(header["dim"][0]))))
        if unstated:
            raise _no_spacing(path, unstated)
        check_voxel_count(str(path), header.get_data_shape())  # before nibabel allocates them
        data_bytes = math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
        _check_nifti_length(path, int(header.get_data_offset()) + data_bytes)
    try:
        with _nibabel_log_muted():
            image = nibabel.load(str(path))
            data = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises many types on broken files
        raise InputError(f"{path}: not a readable image ({_short(str(error))})") from None
    while data.ndim > 3 and data.shape[-1] == 1:  # trailing axes of one (time, components), as ITK drops them
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: is a {data.ndim}D image; expected a 3D short-axis stack")
    affine = image.affine  # the sform when its code is set, else the qform
    if _is_degenerate(affine[:3, :3]) and int(image.header["qform_code"]) > 0:
        affine = image.get_qform()  # a broken sform beside a usable qform: the qform, as ITK would take it
    linear = affine[:3, :3]
    if _is_degenerate(linear):
        raise InputError(f"{path}: its header's affine is degenerate (voxel axes of zero length, or nearly "
                         "parallel), so where its voxels lie is unknown; fix the header (or convert the image again)")
    # The spacing is pixdim's, as ITK (and so Slicer) reads it whatever the affine's scales: EMIDEC's sforms have
    # unit scales beside pixdim 1.4 × 1.4 × 13 mm, which the affine's would make 1 mm voxels, every volume 26×
    # too small. Both in the header's unit, which ITK turns into mm (metres, microns) for spacing and origin.
    to_mm = _nifti_mm_per_unit(header if header is not None else image.header)
    pixdim = np.abs(np.asarray(image.header["pixdim"][1:4], dtype=float))
    spacing = pixdim * to_mm
    # Polar decomposition: the nearest rotation to the (scaled) direction cosines.
    u, _, vt = np.linalg.svd(linear / np.linalg.norm(linear, axis=0))
    direction_ras = u @ vt
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    volume = Volume(
        np.transpose(data, (2, 1, 0)),
        tuple(spacing),
        tuple(ras_to_lps @ affine[:3, 3] * to_mm),
        ras_to_lps @ direction_ras,
    )
    _warn_if_sheared(path, linear)
    return volume


#: NIfTI's spatial units (``xyzt_units & 7``) in mm; unknown (0) is taken as mm, as ITK does.
_NIFTI_MM_PER_UNIT = {1: 1000.0, 2: 1.0, 3: 0.001}


def _nifti_mm_per_unit(header: Any) -> float:
    """How many mm a NIfTI header's spatial unit is (metres, mm, microns; mm when unknown)."""
    return _NIFTI_MM_PER_UNIT.get(int(header["xyzt_units"]) & 7, 1.0)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: What to do about NaN or infinite voxels (a masked export, a failed reconstruction), said with the refusal.
_NON_FINITE_HELP = ("replace them with the background's value (e.g. 0) in the program that wrote the file (in Python: "
                    "numpy.nan_to_num), or export the image unmasked")


def validate_image(volume: Volume, name: str = "image") -> None:
    """Raise :class:`InputError` for an image no model should see: empty, 2D, NaN/inf, constant, no geometry."""
    array = volume.array
    if array.size == 0 or 0 in array.shape:
        raise InputError(f"{name}: the image is empty (size {volume.shape_ijk})")
    _check_stack_shape(volume, name)
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        # Refused rather than guessed: NaN outside a mask is common, but NaN inside the heart would be read as a
        # value the model never saw. What to do is said.
        raise InputError(f"{name}: the image contains NaN or infinite values ({bad} voxels, "
                         f"{100 * bad / array.size:.2g} %): {_NON_FINITE_HELP}")
    if float(array.max()) == float(array.min()):
        raise InputError(f"{name}: the image is constant ({float(array.min()):g} everywhere); nothing to segment")
    check_geometry(volume, name)


def _check_stack_shape(volume: Volume, name: str) -> None:
    """Refuse a 2D image stored as 3D (one slice, row or column), as the DICOM reader and the Slicer module do.

    A single slice also has no slice spacing to make volumes of: files store 1 mm or the thickness.
    """
    columns, rows, slices = volume.shape_ijk
    if slices == 1:
        raise InputError(f"{name}: has a single slice (a 2D image, {columns}×{rows}); expected a 3D short-axis stack")
    if rows == 1 or columns == 1:
        raise InputError(f"{name}: is a 2D image (size {columns}×{rows}×{slices}, a single row or column); "
                         "expected a 3D short-axis stack")


def read_seg_nrrd(path: str | Path, label_values: dict[int, int] | None = None) -> Volume:
    """Read a Slicer ``.seg.nrrd`` into a labelmap using segment names (or our terminology).

    A file without segment information (a plain labelmap saved under this name) is read as a
    plain labelmap, as Slicer reads it: its voxel values are the labels and must be integers 0–4,
    or values that ``label_values`` maps to them (as :func:`read_labelmap`).
    """
    import slicerio

    path = Path(path)
    _check_regular_file(path, "a segmentation file")
    header = _check_seg_nrrd_header(path)
    try:
        # Before slicerio: pynrrd notices a bad CRC too, but says so only in zlib's words ("incorrect data check").
        _check_compressed_data(path, _NRRD_IO, nrrd_header=header)
    except OSError as error:
        raise InputError(f"{path}: could not be read ({os_error_reason(error)})") from None
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd raises several types on broken headers
        raise InputError(f"{path}: not a readable Slicer segmentation ({_short(str(error))})") from None
    if not segmentation.get("segments"):
        return _plain_labelmap_seg_nrrd(path, label_values)
    if label_values is not None:
        warnings.warn(f"{path}: its segments are read by their names; the label mapping is not used for it",
                      stacklevel=2)
    _check_seg_nrrd_spacing(path)
    voxels = np.asarray(segmentation["voxels"])
    shape_ijk = voxels.shape[-3:]
    _number_segments_of_old_files(segmentation["segments"], voxels)
    _check_seg_nrrd_values(path, segmentation["segments"], voxels)
    labels = np.zeros(shape_ijk[::-1], dtype=np.uint8)
    by_type_code = {s.type[1]: s.label for s in SEGMENTS}
    matched: list[DrawnSegment] = []
    ignored: list[str] = []
    for segment in segmentation["segments"]:
        label = label_for_segment_name(segment.get("name", ""))
        if label is None:
            code = (segment.get("terminology") or {}).get("type", ["", "", ""])
            label = by_type_code.get(code[1] if len(code) > 1 else "")
        mask = slicerio.segment_mask(segmentation, segment)  # (i, j, k)
        if label is not None:
            matched.append(DrawnSegment(str(segment.get("name")), label, np.transpose(mask, (2, 1, 0))))
        elif mask.any():
            ignored.append(f"{segment.get('name')} ({int(mask.sum())} voxels)")
    if not matched:
        names = ", ".join(str(s.get("name")) for s in segmentation["segments"])
        raise InputError(f"{path}: no segment named LV blood pool / Myocardium / Scar / MVO (found: {names})")
    # Where segments overlap (a scar drawn over a whole myocardium ring), the higher label wins, as in
    # the Slicer module: MVO over scar over myocardium over blood pool, whatever the file's order.
    for segment in sorted(matched, key=lambda item: item.label):
        labels[segment.mask_kji] = segment.label
    if ignored:
        warnings.warn(f"{path}: segments not counted, their names are not LV blood pool, Myocardium, Scar or "
                      f"MVO (or a usual synonym such as Infarct): {', '.join(ignored)}", stacklevel=2)
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    for message in blood_pool_hidden_by_overlap(matched, labels, float(np.prod(spacing)) / 1000.0):
        warnings.warn(f"{path}: {message}", stacklevel=2)
    return Volume(labels, tuple(spacing), tuple(ijk_to_lps[:3, 3]), ijk_to_lps[:3, :3] / spacing)


def _number_segments_of_old_files(segments: list[dict[str, Any]], voxels: np.ndarray) -> None:
    """Give segments of files without ``LabelValue``/``Layer`` fields the values Slicer reads them with (in place):
    value 1, and, where the file has one layer per segment (Slicer before 4.11), each its own layer in order."""
    one_layer_each = voxels.ndim == 4 and voxels.shape[0] == len(segments) \
        and all(segment.get("layer") is None for segment in segments)
    for index, segment in enumerate(segments):
        if segment.get("labelValue") is None:
            segment["labelValue"] = 1
        if segment.get("layer") is None:
            segment["layer"] = index if one_layer_each else 0


def _check_seg_nrrd_values(path: Path, segments: list[dict[str, Any]], voxels: np.ndarray) -> None:
    """Refuse voxel values no segment claims, two segments claiming one value of one layer, a segment of value 0
    (the background's) and one in a layer the file lacks: either way what those voxels are is unknown (a damaged
    file, or one edited outside Slicer), and they would be dropped, counted twice or taken from the background
    without a word."""
    claimed: dict[tuple[int, int], str] = {}
    layers = voxels.reshape((-1, *voxels.shape[-3:])) if voxels.ndim > 3 else voxels[np.newaxis]
    for segment in segments:
        key = (int(segment.get("layer", 0) or 0), int(segment.get("labelValue", 1) or 0))
        if key[1] < 1:
            # 0 is the background: such a segment would be every voxel no other segment holds (6 L of "MVO").
            raise InputError(f"{path}: segment {segment.get('name')} has label value {key[1]}, but a segment's "
                             "values start at 1 (0 is the background), so its voxels cannot be told from the "
                             "background (a damaged file, or one changed outside Slicer)")
        if voxels.ndim > 3 and not 0 <= key[0] < len(layers):
            raise InputError(f"{path}: segment {segment.get('name')} is in layer {key[0]}, but the file has "
                             f"{len(layers)} layer(s) (a damaged file, or one changed outside Slicer)")
        if key in claimed:
            raise InputError(f"{path}: segments {claimed[key]} and {segment.get('name')} have the same label value "
                             f"{key[1]} in layer {key[0]}, so their voxels cannot be told apart")
        claimed[key] = str(segment.get("name"))
    for layer, values in enumerate(layers):
        unclaimed = sorted(int(v) for v in np.unique(values) if v != 0 and (layer, int(v)) not in claimed)
        if unclaimed:
            shown = ", ".join(str(v) for v in unclaimed[:5])
            raise InputError(f"{path}: voxels of value {shown} in layer {layer} belong to no segment (a damaged file, "
                             "or one changed outside Slicer), so what they are is unknown")


def _check_seg_nrrd_header(path: Path) -> _NrrdHeader | None:
    """Before slicerio (pynrrd) reads a ``.seg.nrrd``, as :func:`_read_image_file` before ITK: refuse a data file its
    header names that is a FIFO or device (reading would wait for ever), and more voxels than
    :data:`MAX_IMAGE_VOXELS` along its spatial axes (the last three: a layered file's first axis is its layers).
    Returns the header as read (:func:`_nrrd_header_of`; None when it could not be), for the checks after."""
    header = _nrrd_header_of(path)
    _check_data_files(path, header)
    if header is None:
        return None  # slicerio says what is wrong
    try:
        sizes = [int(size) for size in header[0].get("sizes", "").split()]
    except ValueError:
        return header  # slicerio says what is wrong
    if len(sizes) >= 3:
        check_voxel_count(str(path), sizes[-3:])
    return header


def _plain_labelmap_seg_nrrd(path: Path, label_values: dict[int, int] | None = None) -> Volume:
    """A ``.seg.nrrd`` without segment metadata, read like any NRRD labelmap (Slicer does the same).

    Read by ITK, so a truncated file or one without spacing is refused as for ``.nrrd``; the values
    must be labels 0–4, so an image saved under this name is refused rather than read as all empty.
    """
    from .quantify import validate_labelmap

    volume = _read_image_file(path)
    if label_values is not None:
        volume = volume.with_array(_relabelled(volume.array, label_values, path))
    try:
        validate_labelmap(volume)
    except InputError as error:
        raise InputError(f"{path}: has no segment information, so it is read as a plain labelmap, "
                         f"but {error}") from None
    volume.array = np.rint(volume.array).astype(np.uint8)
    return volume


def _check_seg_nrrd_spacing(path: Path) -> None:
    """Refuse a segmentation without ``space directions``: slicerio then makes 1 mm voxels (it ignores ``spacings``)."""
    import nrrd

    try:
        header = nrrd.read_header(str(path))
    except Exception:  # noqa: BLE001 - slicerio read it; a second look must not block the file
        return
    directions = header.get("space directions")
    if directions is None:
        raise _no_spacing(path, "no space directions")
    unstated = [axis for axis in range(len(directions) - 3, len(directions))
                if not _nrrd_axis_spacing_stated(header, axis)]
    if unstated:
        raise _no_spacing(path, ", ".join(f"axis {axis}" for axis in unstated))


# --------------------------------------------------------------------------------------------
# Writing (atomic, never replacing unless asked)
# --------------------------------------------------------------------------------------------
def check_outputs(paths: Sequence[str | Path | None], overwrite: bool = False) -> None:
    """Fail before any work when an output exists (and ``overwrite`` is off) or cannot be written.

    Its folder must exist, be a folder and take a new file: a file is created and removed there
    (the surest test; ``os.access`` says yes to root in a read-only folder), so that a command
    such as ``evaluate --json`` or ``bench --json`` refuses a wrong output at once, not after
    minutes of work.
    """
    seen: set[Path] = set()
    keys: set[str] = set()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        resolved = _resolved_output(path)
        if resolved in seen:
            raise InputError(f"{path}: given twice as an output")
        if output_key(resolved) in keys:
            raise InputError(f"{path}: given twice as an output ({ONE_FILE_ON_WINDOWS_AND_MACOS})")
        seen.add(resolved)
        keys.add(output_key(resolved))
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: already exists "
                                    "(pass --overwrite to replace it; overwrite=True in Python)")
        if path.exists() and not path.is_dir() and not path.is_file():
            # A device or a pipe (a link to /dev/full): replacing it would put a file where a device node was.
            raise OutputError(f"{path}: is not a regular file (a device, pipe or socket); give a file name")
        if path.is_symlink() and not path.exists() and not overwrite:
            # A link to a missing file: the write would replace the user's link, found only after the work.
            raise OutputExistsError(f"{path}: already exists, as a link to {os.readlink(path)}, which is missing "
                                    "(pass --overwrite to replace the link)")
        if path.is_dir():
            raise InputError(f"{path}: is a folder; expected a file name")
        if not path.parent.exists():
            raise InputError(f"{path}: folder {path.parent} does not exist")
        if not path.parent.is_dir():
            raise OutputError(f"{path}: {path.parent} is a file, not a folder")
        try:
            fd, probe = tempfile.mkstemp(prefix=".scarnet-check.", dir=path.parent)
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise OutputError(f"{path}: cannot write in {path.parent} ({os_error_reason(error)})") from None


def _resolved_output(path: Path) -> Path:
    """``path`` with its links followed, to tell two names of one file; a loop of links is refused in one line."""
    try:
        return path.resolve()
    except (RuntimeError, OSError) as error:  # Python 3.11 raises RuntimeError("Symlink loop ..."), 3.13 OSError
        raise OutputError(f"{path}: is a link that leads back to itself (a loop of links)") from error


#: Why two output names that differ only in case (or in how an accent is encoded) are refused on every system.
ONE_FILE_ON_WINDOWS_AND_MACOS = ("names that differ only in upper/lower case or in how accents are encoded are one "
                                 "file on Windows and macOS")


def name_key(name: str) -> str:
    """``name`` as Windows' and macOS's file systems compare names: in one Unicode form (macOS keeps names
    decomposed, NFD; what a spreadsheet saves is usually composed) and one case (both ignore it). Exam names
    (:func:`scarnet.batch.exam_key`) and output paths (:func:`output_key`) are compared so."""
    return unicodedata.normalize("NFC", name).casefold()


def output_key(path: str | Path) -> str:
    """What two output paths share when Windows' and macOS's file systems take them for one file: the absolute
    path's :func:`name_key`."""
    return name_key(os.path.abspath(path))


def _on_windows() -> bool:
    """Whether this is Windows (a function, so that tests can take Windows' rules on another system)."""
    return os.name == "nt"


@functools.lru_cache(maxsize=1)
def _ansi_code_page_is_utf8() -> bool:
    """Whether this Windows process's ANSI code page is UTF-8: Slicer's own manifest sets it, as does Windows'
    "Use Unicode UTF-8 for worldwide language support"; python.exe keeps the system's (cp1252, cp932, ...)."""
    try:
        import ctypes

        return ctypes.windll.kernel32.GetACP() == 65001  # type: ignore[attr-defined]
    except (AttributeError, ImportError, OSError):
        return False


#: What to do when :func:`itk_cannot_open` a file.
ITK_WINDOWS_NAMES = ("SimpleITK on Windows cannot open a file whose name or folder holds characters outside ASCII "
                     "(it takes names in the system's code page): rename it, or use a folder with a plain name, or "
                     "NIfTI (.nii.gz, read and written without SimpleITK then), or run from 3D Slicer; or turn on "
                     "Windows' 'Beta: Use Unicode UTF-8 for worldwide language support' (Region settings)")


def itk_cannot_open(path: str | Path) -> bool:
    """Whether SimpleITK cannot open ``path`` in this process: on Windows its readers and writers (NIfTI, NRRD,
    MetaImage, GDCM) open files by a narrow name in the ANSI code page, and SimpleITK passes UTF-8, so a name or
    folder with a character outside ASCII ("Müller", "患者") is "not found" (SimpleITK issues 651 and 795), unless
    the process's code page is UTF-8 (in 3D Slicer it is). The folder counts too: ITK is given an absolute name."""
    return _on_windows() and not os.path.abspath(path).isascii() and not _ansi_code_page_is_utf8()


def replaced_file(path: Path) -> Path:
    """The file a write to ``path`` replaces: ``path``, or the existing file a link at ``path`` points to (allowed
    with --overwrite). That file is replaced and the link kept, as a plain write through the link would; replacing
    the link left the file it shared stale."""
    return path.resolve() if path.is_symlink() and path.exists() else path


def os_error_reason(error: OSError) -> str:
    """The short reason an operating-system call failed ("Permission denied"), for one-line messages."""
    return error.strerror or " ".join(str(error).split()) or type(error).__name__


#: Windows' errors for a rename onto a file another program holds open: access denied, sharing and lock violation.
_IN_USE_WINERRORS = (5, 32, 33)
#: Windows: the pauses (s) before a rename refused that way is tried again. A virus scanner or the search indexer
#: opens a file just written for a moment; a file open in Excel stays refused, and is said so.
_REPLACE_PAUSES_S = (0.05, 0.1, 0.2, 0.4)


def replace_file(source: str | Path, target: str | Path) -> None:
    """``os.replace(source, target)``; on Windows tried again for a moment when refused as in use (see
    :data:`_REPLACE_PAUSES_S`)."""
    pauses = _REPLACE_PAUSES_S if _on_windows() else ()
    for pause in (*pauses, None):
        try:
            os.replace(source, target)
            return
        except PermissionError as error:
            if pause is None or getattr(error, "winerror", None) not in _IN_USE_WINERRORS:
                raise
            time.sleep(pause)


def replace_failure_reason(error: OSError, target: str | Path) -> str:
    """:func:`os_error_reason` for a failed :func:`replace_file` onto ``target``, with what it means on Windows,
    which refuses to replace a read-only file or one open in another program (Excel holds a CSV it shows)."""
    reason = os_error_reason(error)
    if getattr(error, "winerror", None) in _IN_USE_WINERRORS:
        try:
            read_only = not os.stat(target).st_mode & stat.S_IWRITE
        except (OSError, ValueError):
            read_only = False
        reason += ("; the file is read-only" if read_only else
                   "; is the file open in another program, such as Excel or a viewer? Close it and try again")
    return reason


def remove_temporary(path: Path) -> None:
    """Remove a temporary file if it is there, never raising (the error being handled is the one to say). One made
    read-only (it took the mode of the read-only file it was to replace) is made writable first: Windows refuses to
    delete a read-only file."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        with contextlib.suppress(OSError):
            os.chmod(path, stat.S_IREAD | stat.S_IWRITE)
            path.unlink(missing_ok=True)


def write_failure_reason(error: BaseException, folder: str | Path) -> str:
    """Why writing into ``folder`` failed, for one-line messages: the OS's reason, or, for a writer that wraps it
    in its own error (torch.save's RuntimeError, safetensors' SafetensorError), "no space left on device" when
    the folder's disk is (nearly) full, else the writer's own words, short."""
    if isinstance(error, OSError):
        return os_error_reason(error)
    import shutil

    try:
        full = shutil.disk_usage(folder).free < 64 * 2**20
    except OSError:
        full = False
    if full or "No space left" in str(error):
        return "no space left on device"
    return f"{type(error).__name__}: {_short(str(error), 120)}"


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON data: NaN/inf → None (JSON has no NaN), numpy scalars → Python, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps the file's suffix so that writers choosing a format by
    extension (SimpleITK, pynrrd) behave as for the final name. On any error the
    temporary file is removed and ``path`` is untouched.
    """
    given = Path(path)
    check_outputs([given], overwrite=overwrite)
    path = replaced_file(given)
    suffix = _suffix(path) or path.suffix
    try:
        fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as error:
        raise OutputError(f"{given}: could not be written ({os_error_reason(error)})") from None
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        if not overwrite and path.exists():
            raise OutputExistsError(f"{given}: appeared while writing "
                                    "(pass --overwrite to replace it; overwrite=True in Python)")
        # mkstemp makes owner-only (0600) files; give the output the mode a plain open() would
        # (or keep the mode of the file it replaces).
        os.chmod(temp, (path.stat().st_mode & 0o7777) if path.exists() else _new_file_mode())
        try:
            replace_file(temp, path)
        except OSError as error:
            raise OutputError(f"{given}: could not be written ({replace_failure_reason(error, path)})") from None
    except OSError as error:
        if isinstance(error, ScarNetError):
            raise
        # A full disk, a folder gone meanwhile: one line naming the output, not an internal error.
        raise OutputError(f"{given}: could not be written ({os_error_reason(error)})") from None
    finally:
        remove_temporary(temp)


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """Permissions of a newly created file under the process umask (read once: os.umask is process-wide)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


#: What names the weights that come with scarnet where a weights file is asked for (``--weights bundled``,
#: ``--init-weights bundled``, ``weights="bundled"``); a file of that name, if there is one, wins.
BUNDLED_WEIGHTS_NAME = "bundled"


def names_bundled_weights(value: str | Path | None) -> bool:
    """Whether ``value`` is :data:`BUNDLED_WEIGHTS_NAME` and no file of that name is there."""
    return isinstance(value, str) and value == BUNDLED_WEIGHTS_NAME and not Path(value).exists()


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_encoding(text: str) -> str:
    """The encoding every CSV file the engine writes (reports, summaries) is written in: UTF-8, with a byte-order
    mark ("utf-8-sig") when ``text`` holds a non-ASCII character (a patient folder "Müller", a warning's "≥").

    Excel on Windows opens a CSV without the mark in the system's code page (cp1252: "MÃ¼ller"); with it, as
    UTF-8. An ASCII-only file gets none and stays byte for byte as before, for R, awk and grep, which read it
    alike in any encoding. Read the files back with "utf-8-sig", which takes either."""
    return "utf-8" if text.isascii() else "utf-8-sig"


def write_text(text: str, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``text`` atomically to ``path``, in UTF-8 (a ``.csv`` file as :func:`csv_encoding` says)."""
    encoding = csv_encoding(text) if Path(path).suffix.lower() == ".csv" else "utf-8"
    with atomic_path(path, overwrite) as temp:
        temp.write_text(text, encoding=encoding)
    return Path(path)


def write_report(report, path: str | Path, overwrite: bool = False) -> Path:
    """Write a :class:`~scarnet.quantify.Report` as JSON or CSV (chosen by the suffix)."""
    return write_text(report.format_for(path), path, overwrite)


def write_volume(volume: Volume, path: str | Path, overwrite: bool = False) -> Path:
    """Write any volume (image or labelmap) with its geometry; the format follows the suffix."""
    path = Path(path)
    if _suffix(path) == SEGMENTATION_SUFFIX:
        return write_seg_nrrd(volume, path, overwrite)
    if _suffix(path) not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unknown image format (use .nii.gz, .nii, .nrrd or .mha)")
    if _suffix(path) in (".nii", ".nii.gz") and (not _have_simpleitk() or itk_cannot_open(path)):
        with atomic_path(path, overwrite) as temp:
            _write_nifti_with_nibabel(volume, temp)
        return path
    if itk_cannot_open(path):
        raise OutputError(f"{path}: cannot be written here: {ITK_WINDOWS_NAMES}")
    import SimpleITK as sitk

    itk_file_name(path, OutputError)  # before the temporary file, which is named after it
    with atomic_path(path, overwrite) as temp:
        printed: list[str] = []  # NIfTI's library prints "** ERROR: NWAD: wrote only ..." on a full disk
        try:
            with _native_stderr_captured(printed):
                sitk.WriteImage(volume.to_sitk(), str(temp), useCompression=True)
        except RuntimeError as error:  # e.g. disk full while writing NRRD or MetaImage
            reason = next((line for line in reversed(str(error).splitlines()) if line.strip()), "unknown reason")
            raise OutputError(f"{path}: could not be written ({_short(reason)})") from None
        if _suffix(path) in (".nii", ".nii.gz"):
            _check_nifti_written(temp, path)
        for line in dict.fromkeys(printed):  # written after all: what the library said is kept, as for reads
            warnings.warn(f"{path}: {line}", stacklevel=3)
    return path


def itk_file_name(path: str | Path, error: type[ScarNetError]) -> str:
    """``path`` as SimpleITK takes it; raises ``error`` for a name that is not valid UTF-8 (bytes of another
    encoding, held by Python as lone surrogates), which ITK's C++ code would abort the whole process on."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        name = os.fsencode(str(path))
        try:
            name.decode("utf-8")
        except UnicodeDecodeError:
            raise error(f"{name!r}: the name is not valid UTF-8; rename it (or copy it under a UTF-8 name)") from None
        # UTF-8 after all, read by a Python that takes file names as ASCII (LC_ALL=C with PYTHONUTF8=0): the
        # reports, summaries and ITK could not hold it as Python holds it.
        raise error(f"{name.decode('utf-8')!r}: the name is UTF-8, but this Python reads file "
                    f"names as {sys.getfilesystemencoding()} (the locale); run with PYTHONUTF8=1 or a UTF-8 locale "
                    "(LC_ALL=C.UTF-8)") from None
    return str(path)


def _check_nifti_written(temp: Path, path: Path) -> None:
    """ITK's NIfTI writer only prints "wrote only N of M bytes" on a full disk and returns: check the length."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(temp))
    try:
        reader.ReadImageInformation()  # the header only
        _check_nifti_length(temp, _nifti_data_end(reader))
    except (RuntimeError, InputError):
        raise OutputError(f"{path}: could not be written completely (disk full?)") from None


def _write_nifti_with_nibabel(volume: Volume, path: Path) -> None:
    """NIfTI without SimpleITK: the same geometry (LPS direction, origin, spacing) as an RAS affine."""
    import nibabel

    ras_from_lps = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = ras_from_lps @ volume.direction @ np.diag(volume.spacing_mm)
    affine[:3, 3] = ras_from_lps @ np.asarray(volume.origin_mm)
    image = nibabel.Nifti1Image(np.ascontiguousarray(np.transpose(volume.array, (2, 1, 0))), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nibabel.save(image, str(path))  # atomic_path's temporary name keeps the suffix


def write_labelmap(labelmap: Volume, path: str | Path, overwrite: bool = False) -> Path:
    """Write a labelmap (uint8, values 0–4) on exactly its grid as NIfTI, NRRD, MHA or ``.seg.nrrd``;
    :class:`InputError` for values that are not labels 0-4 (what :func:`read_labelmap` would refuse to read back,
    or a fraction the cast to uint8 would drop)."""
    from .quantify import validate_labelmap

    path = Path(path)
    try:
        validate_labelmap(labelmap)
    except InputError as error:
        raise InputError(f"{path}: not written: {error}") from None
    labelmap = labelmap.with_array(labelmap.array.astype(np.uint8))
    if _suffix(path) not in LABELMAP_SUFFIXES + (SEGMENTATION_SUFFIX,):
        raise InputError(f"{path}: unknown labelmap format (use .nii.gz, .nrrd, .mha or .seg.nrrd)")
    return write_volume(labelmap, path, overwrite)


def write_seg_nrrd(labelmap: Volume, path: str | Path, overwrite: bool = False) -> Path:
    """Write a Slicer segmentation with named, coloured segments and DICOM terminology.

    One layer; each segment's label value is the engine label (1 LV blood pool, 2 myocardium,
    3 scar, 4 MVO), so the file doubles as a plain labelmap for other tools.
    """
    import slicerio

    labels = labelmap.array.astype(np.uint8)
    segments = []
    for info in SEGMENTS:
        present = np.nonzero(labels == info.label)
        extent = ([int(v) for axis in present[::-1] for v in (axis.min(), axis.max())]
                  if present[0].size else [0, -1, 0, -1, 0, -1])
        segments.append({
            "id": info.segment_id,
            "name": info.name,
            "color": list(info.color_rgb),
            "labelValue": info.label,
            "layer": 0,
            "extent": extent,
            "terminology": {
                "contextName": "ScarNetSlicer LGE",
                "category": list(info.category),
                "type": list(info.type),
                **({"typeModifier": list(info.type_modifier)} if info.type_modifier else {}),
                "anatomicContextName": "Anatomic codes - DICOM master list",
                "anatomicRegion": ["SCT", "80891009", "Heart"],
            },
        })
    segmentation = {
        "voxels": np.transpose(labels, (2, 1, 0)),  # (i, j, k) for pynrrd's Fortran order
        "ijkToLPS": labelmap.ijk_to_lps_matrix(),
        "segments": segments,
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
    }
    with atomic_path(path, overwrite) as temp:
        slicerio.write_segmentation(str(temp), segmentation)
    return Path(path)

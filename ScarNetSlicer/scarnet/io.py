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
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .errors import InputError, OutputExistsError
from .labels import SEGMENTS
from .volume import Volume

#: File endings read as single image files (everything else: a DICOM folder or an error).
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
LABELMAP_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha")
#: A NIfTI whose orthogonal reading makes voxels larger than |det(affine)| by more than this warns.
SHEAR_TOLERANCE = 0.005
SEGMENTATION_SUFFIX = ".seg.nrrd"


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
    :func:`validate_image` (3D, finite, not empty, not constant) and is float32.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        from .dicom import read_dicom_series

        volume = read_dicom_series(path, series=series)
    else:
        if series is not None:
            raise InputError(f"{path}: --series applies to DICOM folders only")
        volume = _read_image_file(path)
    volume.array = volume.array.astype(np.float32, copy=False)
    validate_image(volume, name=str(path))
    return volume


def read_labelmap(path: str | Path, reference: Volume | None = None) -> Volume:
    """Read a labelmap file (NIfTI, NRRD, MHA or Slicer ``.seg.nrrd``) as uint8 labels 0–4.

    With ``reference``, the labelmap must lie on the reference's grid.
    """
    from .quantify import validate_labelmap

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; expected a labelmap file")
    labelmap = read_seg_nrrd(path) if _suffix(path) == SEGMENTATION_SUFFIX else _read_image_file(path)
    try:
        validate_labelmap(labelmap)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    labelmap.array = np.rint(labelmap.array).astype(np.uint8)
    if reference is not None and not reference.same_grid(labelmap):
        raise InputError(f"{path}: labelmap is on another grid than the image "
                         f"({reference.grid_difference(labelmap)})")
    return labelmap


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
    lengths = np.linalg.norm(linear, axis=0)
    determinant = abs(float(np.linalg.det(linear)))
    if determinant <= 0 or not np.all(lengths > 0):
        return
    factor = float(np.prod(lengths)) / determinant
    if factor > 1 + SHEAR_TOLERANCE:
        excess = 100.0 * (factor - 1.0)
        warnings.warn(f"{path}: its voxel axes are not perpendicular (slices shifted in-plane from one to the next); "
                      f"it is read as the nearest orthogonal grid, on which volumes come out {excess:.1f} % too "
                      "large. Resample it onto an orthogonal grid for exact volumes", stacklevel=4)


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
    if not _have_simpleitk() and _suffix(path) in (".nii", ".nii.gz"):
        return _read_nifti_with_nibabel(path)  # keeps NaN/Inf, which the callers' validation rejects
    import SimpleITK as sitk

    # ITK warns on real-world headers (EMIDEC: "unexpected scales in sform"); the geometry it
    # derives is still right, so keep the console clean.
    sitk.ProcessObject_SetGlobalWarningDisplay(False)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        detail = str(error).strip().splitlines()
        reason = next((line for line in reversed(detail) if line.strip()), "unknown reason")
        if "orthonormal" in reason.lower():
            return _read_nifti_with_nibabel(path)
        raise InputError(f"{path}: not a readable image ({_short(reason)})") from None
    if _suffix(path) in (".nii", ".nii.gz") and _nifti_zeros_may_hide_non_finite(image) and _nifti_has_non_finite(path):
        raise InputError(f"{path}: contains NaN or infinite values")
    volume = _volume_from_sitk(image, str(path))
    if _suffix(path) in (".nii", ".nii.gz"):
        _warn_if_sheared(path, _sform_from_itk(image))
    return volume


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
        image = nibabel.load(str(path))
        if not np.issubdtype(image.get_data_dtype(), np.floating):
            return False
        return not bool(np.all(np.isfinite(np.asarray(image.dataobj))))
    except Exception:  # noqa: BLE001 - ITK read it; a nibabel quirk must not block the file
        return False


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
    """Fallback for NIfTI headers ITK refuses (non-orthonormal sform): orthonormalise the affine."""
    try:
        import nibabel
    except ImportError:
        raise InputError(f"{path}: ITK refuses its non-orthonormal orientation and nibabel is not installed") from None
    try:
        image = nibabel.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as error:  # nibabel raises many types on broken files
        raise InputError(f"{path}: not a readable image ({_short(str(error))})") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(f"{path}: is a {data.ndim}D image; expected a 3D short-axis stack")
    affine = image.affine
    linear = affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    # Polar decomposition: the nearest rotation to the (scaled) direction cosines.
    u, _, vt = np.linalg.svd(linear / spacing)
    direction_ras = u @ vt
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    volume = Volume(
        np.transpose(data, (2, 1, 0)),
        tuple(spacing),
        tuple(ras_to_lps @ affine[:3, 3]),
        ras_to_lps @ direction_ras,
    )
    _warn_if_sheared(path, linear)
    return volume


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def validate_image(volume: Volume, name: str = "image") -> None:
    """Raise :class:`InputError` for an image no model should see: empty, NaN/inf, constant, tiny."""
    array = volume.array
    if array.size == 0 or 0 in array.shape:
        raise InputError(f"{name}: the image is empty (size {volume.shape_ijk})")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: the image contains NaN or infinite values")
    if float(array.max()) == float(array.min()):
        raise InputError(f"{name}: the image is constant ({float(array.min()):g} everywhere); nothing to segment")
    if min(volume.spacing_mm) <= 0:
        raise InputError(f"{name}: non-positive voxel spacing {volume.spacing_mm}")


def read_seg_nrrd(path: str | Path) -> Volume:
    """Read a Slicer ``.seg.nrrd`` into a labelmap using segment names (or our terminology)."""
    import slicerio

    path = Path(path)
    try:
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as error:  # pynrrd raises several types on broken headers
        raise InputError(f"{path}: not a readable Slicer segmentation ({_short(str(error))})") from None
    voxels = np.asarray(segmentation["voxels"])
    shape_ijk = voxels.shape[-3:]
    labels = np.zeros(shape_ijk[::-1], dtype=np.uint8)
    by_name = {s.name.lower(): s.label for s in SEGMENTS}
    by_type_code = {s.type[1]: s.label for s in SEGMENTS}
    matched = 0
    for segment in segmentation["segments"]:
        label = by_name.get(str(segment.get("name", "")).lower())
        if label is None:
            code = (segment.get("terminology") or {}).get("type", ["", "", ""])
            label = by_type_code.get(code[1] if len(code) > 1 else "")
        if label is None:
            continue
        mask = slicerio.segment_mask(segmentation, segment)  # (i, j, k)
        labels[np.transpose(mask, (2, 1, 0))] = label
        matched += 1
    if matched == 0 and segmentation["segments"]:
        names = ", ".join(str(s.get("name")) for s in segmentation["segments"])
        raise InputError(f"{path}: no segment named LV blood pool / Myocardium / Scar / MVO (found: {names})")
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    return Volume(labels, tuple(spacing), tuple(ijk_to_lps[:3, 3]), ijk_to_lps[:3, :3] / spacing)


# --------------------------------------------------------------------------------------------
# Writing (atomic, never replacing unless asked)
# --------------------------------------------------------------------------------------------
def check_outputs(paths: Sequence[str | Path | None], overwrite: bool = False) -> None:
    """Fail before any work when an output exists (and ``overwrite`` is off) or its folder is missing."""
    seen: set[Path] = set()
    for path in paths:
        if path is None:
            continue
        path = Path(path)
        if path.resolve() in seen:
            raise InputError(f"{path}: given twice as an output")
        seen.add(path.resolve())
        if path.exists() and not overwrite:
            raise OutputExistsError(f"{path}: already exists (pass --overwrite to replace it)")
        if path.is_dir():
            raise InputError(f"{path}: is a folder; expected a file name")
        if not path.parent.exists():
            raise InputError(f"{path}: folder {path.parent} does not exist")


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps the file's suffix so that writers choosing a format by
    extension (SimpleITK, pynrrd) behave as for the final name. On any error the
    temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    check_outputs([path], overwrite=overwrite)
    suffix = _suffix(path) or path.suffix
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        if not overwrite and path.exists():
            raise OutputExistsError(f"{path}: appeared while writing (pass --overwrite to replace it)")
        # mkstemp makes owner-only (0600) files; give the output the mode a plain open() would
        # (or keep the mode of the file it replaces).
        os.chmod(temp, (path.stat().st_mode & 0o7777) if path.exists() else _new_file_mode())
        os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


@functools.lru_cache(maxsize=1)
def _new_file_mode() -> int:
    """Permissions of a newly created file under the process umask (read once: os.umask is process-wide)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def sha256_of(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text(text: str, path: str | Path, overwrite: bool = False) -> Path:
    """Write ``text`` atomically to ``path``."""
    with atomic_path(path, overwrite) as temp:
        temp.write_text(text, encoding="utf-8")
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
    if not _have_simpleitk() and _suffix(path) in (".nii", ".nii.gz"):
        with atomic_path(path, overwrite) as temp:
            _write_nifti_with_nibabel(volume, temp)
        return path
    import SimpleITK as sitk

    with atomic_path(path, overwrite) as temp:
        sitk.WriteImage(volume.to_sitk(), str(temp), useCompression=True)
    return path


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
    """Write a labelmap (uint8, values 0–4) on exactly its grid as NIfTI, NRRD, MHA or ``.seg.nrrd``."""
    path = Path(path)
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

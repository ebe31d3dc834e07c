"""The engine's one image type: a voxel array with its full physical geometry.

Conventions (those of ITK/SimpleITK, so files round-trip without surprises):

* ``array`` is indexed ``[k, j, i]``: k is the slice index (the third image axis), j the
  row, i the column. This is the order ``SimpleITK.GetArrayFromImage`` returns.
* ``spacing_mm``, ``origin_mm`` and the columns of ``direction`` are given in (i, j, k)
  order, in LPS patient coordinates (millimetres).
* The physical point of voxel (i, j, k) is ``origin + direction @ (spacing * (i, j, k))``.

The Slicer side converts to RAS; nothing here knows about Slicer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

#: Grids whose geometry differs by less than this are the same grid (mm, and unitless for direction).
GRID_TOLERANCE = 1e-3


#: How far a direction column's length may stray from 1 (DICOM writes cosines to 4+ digits; a voxel size is far out).
DIRECTION_LENGTH_TOLERANCE = 0.01


@dataclass
class Volume:
    """A 3D voxel array plus geometry. Used for LGE images and for labelmaps alike.

    ``array`` is indexed (k, j, i): slice, row, column, as SimpleITK's ``GetArrayFromImage`` gives it (a nibabel
    array is (i, j, k): transpose it). ``spacing_mm`` and ``origin_mm`` are (i, j, k) and (x, y, z) in LPS, as ITK
    and DICOM give them; ``direction``'s columns are the i, j, k axes in LPS. :class:`~scarnet.errors.InputError`
    (a ``ValueError``) for an array that is not 3D or a geometry of the wrong shape.
    """

    array: np.ndarray
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    #: What names each slice (k order) in the source it was read from: for a DICOM series, a dict per
    #: slice with ``instance_number``, ``frame_number`` (enhanced multi-frame files) and
    #: ``slice_location_mm``, so a report row can be found in a PACS viewer. None when unknown. Only
    #: :meth:`with_array` (the same slices) keeps it; any other new Volume (resampled, re-stored)
    #: starts without, so an identifier never names the wrong slice.
    source_slices: list[dict[str, Any]] | None = field(default=None, compare=False, repr=False)
    #: Where :func:`scarnet.read_volume` read it from, for a report to say: ``input`` (the path given),
    #: ``input_series`` (a DICOM series' number, description and UID) and ``input_warnings`` (what reading it
    #: warned of). None when unknown; kept by :meth:`with_array` only, as ``source_slices``.
    provenance: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise InputError(f"Volume array must be 3D (k, j, i), got shape {self.array.shape}")
        for name in ("spacing_mm", "origin_mm"):
            given = getattr(self, name)
            if np.ndim(given) != 1 or len(given) != 3:
                raise InputError(f"Volume {name} must be 3 numbers (i, j, k), got {given!r}")
            setattr(self, name, tuple(float(v) for v in given))
        direction = np.asarray(self.direction, dtype=float)
        if direction.size != 9:
            raise InputError(f"Volume direction must be a 3×3 matrix (or its 9 numbers), got shape {direction.shape}")
        self.direction = direction.reshape(3, 3)
        lengths = np.linalg.norm(self.direction, axis=0)
        if np.all(np.isfinite(lengths)) and np.any(np.abs(lengths - 1.0) > DIRECTION_LENGTH_TOLERANCE):
            # An affine's 3×3 part (nibabel's img.affine[:3, :3]) holds the voxel size too: taken as the direction,
            # it would multiply every volume by it again (4500 mL of myocardium), without a word.
            raise InputError(f"Volume direction's columns must be unit vectors (the i, j, k axes in LPS), got lengths "
                             f"{', '.join(f'{v:.4g}' for v in lengths)}: an affine's 3×3 part holds the voxel size "
                             "too; divide each column by its spacing")

    # -- geometry -------------------------------------------------------------------------
    @property
    def shape_ijk(self) -> tuple[int, int, int]:
        """Size along (i, j, k): columns, rows, slices."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def num_slices(self) -> int:
        return int(self.array.shape[0])

    @property
    def voxel_volume_ml(self) -> float:
        """Volume of one voxel in millilitres (1 mL = 1000 mm³).

        The product of the spacings for the usual perpendicular axes. A header whose axes are not
        perpendicular (MetaImage allows it) makes voxels smaller by |det(direction)|.
        """
        volume_mm3 = float(np.prod(self.spacing_mm))
        determinant = abs(float(np.linalg.det(self.direction)))
        if abs(determinant - 1.0) > 1e-6:  # not a rotation: sheared axes
            volume_mm3 *= determinant
        return volume_mm3 / 1000.0

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit normal of the slice planes in LPS, on the side the slice (k) axis points to.

        The k axis itself for perpendicular axes; for sheared ones (slices shifted in-plane from one
        to the next) its in-plane part is removed, so positions along it are distances between planes.
        """
        rows_axis, columns_axis, n = self.direction[:, 0], self.direction[:, 1], self.direction[:, 2]
        in_plane = np.linalg.qr(np.column_stack([rows_axis, columns_axis]))[0]  # orthonormal basis of the plane
        n = n - in_plane @ (in_plane.T @ n)
        return n / np.linalg.norm(n)

    def index_to_physical(self, ijk: np.ndarray) -> np.ndarray:
        """Physical LPS point(s) (mm) of continuous index/indices ``ijk`` (..., 3) in (i, j, k) order."""
        ijk = np.asarray(ijk, dtype=float)
        return np.asarray(self.origin_mm) + (ijk * np.asarray(self.spacing_mm)) @ self.direction.T

    def physical_to_index(self, lps: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) index of a physical LPS point (mm): the inverse of :meth:`index_to_physical`."""
        return np.linalg.solve(self.direction @ np.diag(self.spacing_mm), np.asarray(lps, dtype=float)
                               - np.asarray(self.origin_mm))

    def ijk_to_lps_matrix(self) -> np.ndarray:
        """4×4 homogeneous matrix from (i, j, k, 1) to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing_mm)
        m[:3, 3] = self.origin_mm
        return m

    @property
    def slice_distance_mm(self) -> float:
        """Distance between neighbouring slice planes along :attr:`slice_normal` (the k spacing, less when sheared)."""
        return abs(float(self.direction[:, 2] @ self.slice_normal)) * self.spacing_mm[2]

    def slice_positions_mm(self) -> np.ndarray:
        """Signed position of each slice along the slice normal (mm), one value per k.

        The normal is taken pointing to the patient's head (+S in LPS; for slices without a head-foot tilt, to
        posterior, then to the left), whichever way the k axis runs: a slice keeps its position however the stack
        is stored, so reports of one exam stored in either order can be compared slice by slice.
        """
        normal = self.slice_normal
        deciding = next((value for value in (normal[2], normal[1], normal[0]) if abs(value) > 1e-6), 1.0)
        centres = np.zeros((self.num_slices, 3))
        centres[:, 2] = np.arange(self.num_slices)
        return self.index_to_physical(centres) @ (normal if deciding > 0 else -normal)

    def content_sha256(self) -> str:
        """A sha256 of the voxel values (as float32) and the grid (shape, spacing, origin, direction, to 1e-4 mm):
        the same exam read twice gives the same; another exam of the same name does not."""
        import hashlib

        digest = hashlib.sha256()
        digest.update(repr(self.array.shape).encode())
        digest.update(np.ascontiguousarray(self.array, dtype=np.float32).tobytes())
        geometry = np.round(np.concatenate([self.spacing_mm, self.origin_mm, self.direction.ravel()]), 4) + 0.0
        digest.update(geometry.tobytes())
        return digest.hexdigest()

    def same_grid(self, other: Volume, tolerance: float = GRID_TOLERANCE) -> bool:
        """True when ``other`` has the same size, spacing, origin and direction (within tolerance)."""
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing_mm, other.spacing_mm, atol=tolerance, rtol=tolerance)
            and np.allclose(self.origin_mm, other.origin_mm, atol=tolerance * 10, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tolerance)
        )

    def grid_difference(self, other: Volume) -> str:
        """A short human-readable description of how two grids differ ("" when they match)."""
        if self.array.shape != other.array.shape:
            return f"size {other.shape_ijk} vs {self.shape_ijk}"
        if not np.allclose(self.spacing_mm, other.spacing_mm, atol=GRID_TOLERANCE, rtol=GRID_TOLERANCE):
            return f"spacing {_fmt(other.spacing_mm)} mm vs {_fmt(self.spacing_mm)} mm"
        if not np.allclose(self.origin_mm, other.origin_mm, atol=GRID_TOLERANCE * 10, rtol=0):
            return f"origin {_fmt(other.origin_mm)} vs {_fmt(self.origin_mm)}"
        if not np.allclose(self.direction, other.direction, atol=GRID_TOLERANCE):
            return "direction differs"
        return ""

    def with_array(self, array: np.ndarray) -> Volume:
        """A new Volume on this grid holding ``array`` (same shape required)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise ValueError(f"array shape {array.shape} does not match grid {self.array.shape}")
        return Volume(array, self.spacing_mm, self.origin_mm, self.direction.copy(), self.source_slices,
                      self.provenance)

    # -- SimpleITK bridge (imported lazily: quantification needs none of it) -----------------
    @classmethod
    def from_sitk(cls, image) -> Volume:
        """Build from a 3D ``SimpleITK.Image``."""
        import SimpleITK as sitk

        return cls(
            sitk.GetArrayFromImage(image),
            image.GetSpacing(),
            image.GetOrigin(),
            np.asarray(image.GetDirection()).reshape(3, 3),
        )

    def to_sitk(self):
        """This volume as a ``SimpleITK.Image`` with the same geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array))
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(tuple(self.direction.ravel()))
        return image


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.3g}" for v in values) + ")"


def check_geometry(volume: Volume, name: str) -> None:
    """Refuse geometry no volume or position can come from: spacing ≤ 0 or not finite, NaN/inf origin or axes."""
    spacing = np.asarray(volume.spacing_mm, dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{name}: non-positive voxel spacing {volume.spacing_mm}" if np.all(np.isfinite(spacing))
                         else f"{name}: voxel spacing {volume.spacing_mm} is not a finite number")
    if not np.all(np.isfinite(volume.origin_mm)):
        raise InputError(f"{name}: its origin {volume.origin_mm} is not a finite position; the header is damaged")
    if not np.all(np.isfinite(volume.direction)):
        raise InputError(f"{name}: its axis directions are not finite numbers; the header is damaged")

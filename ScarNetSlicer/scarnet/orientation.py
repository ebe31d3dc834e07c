"""One storage per physical stack, so that how a file stores the slices does not change results.

**Slice axis.** The engine indexes arrays ``[k, j, i]`` with the slices along k, the third image
axis, as DICOM converters and SimpleITK write them. A stack saved from a ``(slice, row, column)``
array by a tool that takes the first array axis as the first image axis (nibabel, for one) has
its slices along i instead: a 10×256×256 image. :func:`find_stack_axis` finds that axis from the
grid alone, and :class:`StackAxis` swaps it into third place, keeping every voxel's physical
point. Only a grid that cannot be a stack along k is re-stored, so nothing accepted as stored
is read differently. Because the decision depends on the grid only, a labelmap on the image's
grid gets the same one: :func:`scarnet.quantify.quantify` reports its slices along the same axis.

**In-plane order.** The same short-axis slices can be stored with rows and columns swapped or
reversed (vendors and converters differ; the direction matrix says which): the physical image is
the same, but a network sees a transposed or mirrored picture and, not being exactly invariant to
that, draws a slightly different scar (up to ~12 % of the scar volume on EMIDEC Case_P100). The
pipeline therefore works on one canonical storage of the plane: of the eight ways to store it
(transpose, reverse rows, reverse columns), the one whose column axis points most along a fixed
reference close to +x and whose row axis points most along one close to +y (LPS). A volume stored
with the identity direction is already canonical. The result is mapped back to the stored grid.
An image that is itself turned or mirrored (the heart shown another way round) is a different picture that
no storage undoes; the 8-view test-time augmentation (``scarnet segment --tta-rotations``,
:data:`scarnet.inference.TTA_MODES`) makes the labels independent of that too.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from .volume import Volume

#: Fewer voxels than this along an axis: too few for an in-plane axis of a short-axis slice.
MIN_IN_PLANE_SIZE = 32
#: More slices than this, closer than :data:`THIN_SLICE_RATIO` × the pixel spacing: a 3D volume,
#: not a short-axis stack (those have 4–30 slices 5–15 mm apart).
MAX_THIN_SLICES = 40
#: No MR scanner images a field wider than about 500 mm; a header claiming more than this has a
#: wrong pixel spacing (or spacing given in (k, j, i) order: the slice gap taken for a pixel's width; it also
#: makes the localisation's window search run for minutes).
MAX_FIELD_OF_VIEW_MM = 1000.0
#: Slices closer than this many pixel widths (with more than :data:`MAX_THIN_SLICES` of them): a 3D volume.
THIN_SLICE_RATIO = 2.5
#: An axis whose spacing is at least this many times the other two is a slice axis.
THICK_SLICE_RATIO = 1.5
#: Without spacing in the header, the two in-plane axes must have at least this many voxels (a
#: cardiac MR matrix) before the one short axis is taken for the slice axis.
MIN_UNKNOWN_SPACING_IN_PLANE_SIZE = 64

#: Reference directions for the canonical column and row axes: +x and +y, tilted slightly off the
#: axes so that planes containing an axis (coronal, sagittal) still have a single best storage.
_COLUMN_REFERENCE = np.array([1.0, 0.013, 0.007])
_ROW_REFERENCE = np.array([-0.011, 1.0, 0.017])


def field_too_wide(size_ijk: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> str | None:
    """Why a slice's field of view cannot be an MR image's (wider than :data:`MAX_FIELD_OF_VIEW_MM`), else None."""
    width_mm, height_mm = size_ijk[0] * spacing_mm[0], size_ijk[1] * spacing_mm[1]
    if max(width_mm, height_mm) <= MAX_FIELD_OF_VIEW_MM:
        return None
    return (f"field of view {width_mm:.0f}×{height_mm:.0f} mm is wider than any MR scanner images: is the pixel "
            "spacing in the header right (and, given from Python, in (i, j, k) order: columns, rows, slices)?")


@dataclass(frozen=True)
class StackAxis:
    """The image axis the slices lie along (0 i, 1 j, 2 k), and the re-storage that puts it third.

    The re-storage swaps that axis with k: array axes, spacing and direction columns together, so
    the origin and every voxel's physical point stay as they were. Swapping is its own inverse.
    """

    axis: int = 2

    @property
    def is_identity(self) -> bool:
        return self.axis == 2

    @property
    def name(self) -> str:
        return "ijk"[self.axis]

    def swap(self, values_ijk: tuple) -> tuple:
        """Per-axis values (size, spacing) in (i, j, k) order, for the re-stored grid."""
        values = list(values_ijk)
        values[self.axis], values[2] = values[2], values[self.axis]
        return tuple(values)

    def _swap_array(self, array: np.ndarray) -> np.ndarray:
        # Image axis a is array axis 2 - a: swap it with array axis 0 (k).
        return np.ascontiguousarray(np.swapaxes(array, 0, 2 - self.axis)) if not self.is_identity else array

    def apply(self, volume: Volume) -> Volume:
        """``volume`` re-stored with the slices along k (itself when they already are)."""
        if self.is_identity:
            return volume
        direction = volume.direction.copy()
        direction[:, [self.axis, 2]] = direction[:, [2, self.axis]]
        return Volume(self._swap_array(volume.array), self.swap(volume.spacing_mm), tuple(volume.origin_mm), direction)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """A (k, rows, cols) array on the re-stored grid, back in the stored order."""
        return self._swap_array(array)


def stack_along_k_problem(size_ijk: tuple[int, int, int], spacing_mm: tuple[float, float, float]) -> str | None:
    """Why a grid cannot be a short-axis stack with its slices along k (None when it can).

    ``"in-plane"``: a slice would have fewer than :data:`MIN_IN_PLANE_SIZE` rows or columns;
    ``"3D"``: more than :data:`MAX_THIN_SLICES` slices, closer than the pixels allow.
    """
    columns, rows, slices = size_ijk
    if min(columns, rows) < MIN_IN_PLANE_SIZE:
        return "in-plane"
    if slices > MAX_THIN_SLICES and spacing_mm[2] < THIN_SLICE_RATIO * max(spacing_mm[0], spacing_mm[1]):
        return "3D"
    return None


def find_stack_axis(volume: Volume) -> StackAxis:
    """The axis the slices of ``volume`` lie along, from its grid alone (module docstring).

    k whenever the grid can be a stack along k. Otherwise i or j, when exactly one of them can be
    the slice axis of a stack: swapped into k the grid passes :func:`stack_along_k_problem`, and
    either its spacing is at least :data:`THICK_SLICE_RATIO` × the other two (thick slices), or the
    header has no spacing (1 mm everywhere, as writers store none) and it is the one axis with few
    enough voxels for slices while k has too many and the other two have a slice's
    (:data:`MIN_UNKNOWN_SPACING_IN_PLANE_SIZE`). Anything else stays as stored, for
    :func:`scarnet.inference.check_short_axis` to refuse with its reason (an isotropic 3D volume
    cropped to a narrow band is one: its slices are not to be guessed).
    """
    size, spacing = volume.shape_ijk, volume.spacing_mm
    if stack_along_k_problem(size, spacing) is None:
        return StackAxis()
    no_spacing = all(abs(value - 1.0) <= 1e-6 for value in spacing)
    candidates = []
    for axis in (0, 1):
        swapped = StackAxis(axis)
        others = [a for a in range(3) if a != axis]
        thick = spacing[axis] >= THICK_SLICE_RATIO * max(spacing[a] for a in others)
        few = (no_spacing and size[axis] <= MAX_THIN_SLICES < size[2]
               and min(size[a] for a in others) >= MIN_UNKNOWN_SPACING_IN_PLANE_SIZE)
        if (thick or few) and stack_along_k_problem(swapped.swap(size), swapped.swap(spacing)) is None:
            candidates.append(swapped)
    return candidates[0] if len(candidates) == 1 else StackAxis()


@dataclass(frozen=True)
class InPlaneOrder:
    """A re-storage of every slice: transpose (rows ↔ columns), then reverse rows and/or columns."""

    transpose: bool = False
    reverse_rows: bool = False
    reverse_columns: bool = False

    @property
    def is_identity(self) -> bool:
        return not (self.transpose or self.reverse_rows or self.reverse_columns)

    def axes(self, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (column, row) direction vectors of the re-stored slices, from the stored ``direction``."""
        columns, rows = direction[:, 0], direction[:, 1]
        if self.transpose:
            columns, rows = rows, columns
        return (-columns if self.reverse_columns else columns), (-rows if self.reverse_rows else rows)

    def apply(self, volume: Volume) -> Volume:
        """``volume`` re-stored: the same voxels at the same physical points, in this order."""
        array = volume.array
        spacing = list(volume.spacing_mm)
        direction = volume.direction.copy()
        origin = np.asarray(volume.origin_mm, dtype=float)
        if self.transpose:
            array = array.transpose(0, 2, 1)
            spacing[0], spacing[1] = spacing[1], spacing[0]
            direction[:, [0, 1]] = direction[:, [1, 0]]
        for reverse, axis, column in ((self.reverse_columns, 2, 0), (self.reverse_rows, 1, 1)):
            if reverse:
                # The first voxel of the reversed axis is the stored last one.
                origin = origin + direction[:, column] * spacing[column] * (array.shape[axis] - 1)
                direction[:, column] = -direction[:, column]
                array = np.flip(array, axis=axis)
        return Volume(np.ascontiguousarray(array), tuple(spacing), tuple(origin), direction)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """A (k, rows, cols) array on the re-stored grid, back in the stored order."""
        if self.reverse_rows:
            array = np.flip(array, axis=1)
        if self.reverse_columns:
            array = np.flip(array, axis=2)
        if self.transpose:
            array = array.transpose(0, 2, 1)
        return np.ascontiguousarray(array)

    def undo_point_rc(self, point_rc: tuple[float, float], shape_rc: tuple[int, int]) -> tuple[float, float]:
        """A continuous (row, column) pixel position on the re-stored grid (of ``shape_rc``), in the stored grid."""
        row, column = point_rc
        if self.reverse_rows:
            row = shape_rc[0] - 1 - row
        if self.reverse_columns:
            column = shape_rc[1] - 1 - column
        return (column, row) if self.transpose else (row, column)


def canonical_in_plane_order(direction: np.ndarray) -> InPlaneOrder:
    """The re-storage that makes a slice plane with this ``direction`` canonical (module docstring)."""
    def score(order: InPlaneOrder) -> float:
        columns, rows = order.axes(np.asarray(direction, dtype=float))
        return float(columns @ _COLUMN_REFERENCE + rows @ _ROW_REFERENCE)

    candidates = [InPlaneOrder(*flags) for flags in product((False, True), repeat=3)]
    return max(candidates, key=score)  # the identity comes first: kept on an exact tie

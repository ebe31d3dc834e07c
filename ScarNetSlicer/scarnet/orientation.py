"""One storage per physical stack, so that how a file stores the slices does not change results.

**Slice axis.** The engine indexes arrays ``[k, j, i]`` with the slices along k, the third image
axis, as DICOM converters and SimpleITK write them. A stack saved from a ``(slice, row, column)``
array by a tool that takes the first array axis as the first image axis (nibabel, for one) has
its slices along i instead: a 10×256×256 image. :func:`find_stack_axis` finds that axis from the
grid alone (the one short axis, when the other two are long enough to be a slice, and its spacing
is not finer than theirs), and :class:`StackAxis` swaps it into third place, keeping every
voxel's physical point. Because the decision depends on the grid only, a labelmap on the image's
grid gets the same one: :func:`scarnet.quantify.quantify` reports its slices along the same axis.

**In-plane order.** The same short-axis slices can be stored with rows and columns swapped or reversed (vendors and
converters differ; the direction matrix says which): the physical image is the same, but a network
sees a transposed or mirrored picture and, not being exactly invariant to that, draws a slightly
different scar (up to ~12 % of the scar volume on EMIDEC Case_P100). The pipeline therefore works on
one canonical storage of the plane: of the eight ways to store it (transpose, reverse rows,
reverse columns), the one whose column axis points most along a fixed reference close to +x and
whose row axis points most along one close to +y (LPS). A volume stored with the identity
direction is already canonical. The result is mapped back to the stored grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

import numpy as np

from .volume import Volume

#: Fewer voxels than this along an axis: too few for an in-plane axis of a short-axis slice.
MIN_IN_PLANE_SIZE = 32

#: Reference directions for the canonical column and row axes: +x and +y, tilted slightly off the
#: axes so that planes containing an axis (coronal, sagittal) still have a single best storage.
_COLUMN_REFERENCE = np.array([1.0, 0.013, 0.007])
_ROW_REFERENCE = np.array([-0.011, 1.0, 0.017])


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

    def _swap_array(self, array: np.ndarray) -> np.ndarray:
        # Image axis a is array axis 2 - a: swap it with array axis 0 (k).
        return np.ascontiguousarray(np.swapaxes(array, 0, 2 - self.axis)) if not self.is_identity else array

    def apply(self, volume: Volume) -> Volume:
        """``volume`` re-stored with the slices along k (itself when they already are)."""
        if self.is_identity:
            return volume
        spacing = list(volume.spacing_mm)
        spacing[self.axis], spacing[2] = spacing[2], spacing[self.axis]
        direction = volume.direction.copy()
        direction[:, [self.axis, 2]] = direction[:, [2, self.axis]]
        return Volume(self._swap_array(volume.array), tuple(spacing), tuple(volume.origin_mm), direction)

    def undo(self, array: np.ndarray) -> np.ndarray:
        """A (k, rows, cols) array on the re-stored grid, back in the stored order."""
        return self._swap_array(array)


def find_stack_axis(volume: Volume) -> StackAxis:
    """The axis the slices of ``volume`` lie along, from its grid (module docstring).

    k unless exactly one axis is shorter than :data:`MIN_IN_PLANE_SIZE` voxels while k is not, and
    that axis's spacing is at least the others' (slices are never finer than their pixels; a header
    without spacing has 1 mm everywhere). Anything else is left to
    :func:`scarnet.inference.check_short_axis` to accept or refuse.
    """
    size = volume.shape_ijk
    spacing = volume.spacing_mm
    short = [axis for axis in range(3) if size[axis] < MIN_IN_PLANE_SIZE]
    if len(short) != 1 or short[0] == 2:
        return StackAxis()
    axis = short[0]
    others = [spacing[a] for a in range(3) if a != axis]
    if spacing[axis] < max(others) * (1 - 1e-6):
        return StackAxis()
    return StackAxis(axis)


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

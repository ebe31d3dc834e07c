"""The canonical in-plane storage (scarnet.orientation): same physical image, same voxels, any storage."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest

from scarnet.orientation import InPlaneOrder, StackAxis, canonical_in_plane_order, find_stack_axis
from scarnet.volume import Volume

ORDERS = [InPlaneOrder(*flags) for flags in product((False, True), repeat=3)]


def _oblique_volume() -> Volume:
    rng = np.random.default_rng(3)
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    if np.linalg.det(rotation) < 0:
        rotation[:, 2] *= -1
    array = rng.normal(size=(4, 9, 13)).astype(np.float32)  # (k, rows, cols): rows ≠ cols
    return Volume(array, (1.3, 1.9, 8.0), (-40.0, 12.5, 73.0), rotation)


def _physical_points(volume: Volume) -> np.ndarray:
    k, j, i = np.meshgrid(*(np.arange(n) for n in volume.array.shape), indexing="ij")
    return volume.index_to_physical(np.stack([i, j, k], axis=-1).astype(float))


@pytest.mark.parametrize("order", ORDERS, ids=str)
def test_restored_volume_has_each_voxel_at_its_physical_point(order):
    stored = _oblique_volume()
    restored = order.apply(stored)
    assert restored.num_slices == stored.num_slices
    assert restored.voxel_volume_ml == pytest.approx(stored.voxel_volume_ml)
    # Every voxel of the re-stored volume sits where the same value sat in the stored one.
    points = _physical_points(restored)
    expected = _physical_points(stored)
    assert len(expected.reshape(-1, 3)) == stored.array.size and len(points.reshape(-1, 3)) == restored.array.size
    values_at = {tuple(np.round(p, 6)): v for p, v in zip(expected.reshape(-1, 3), stored.array.ravel())}
    for point, value in zip(points.reshape(-1, 3), restored.array.ravel()):
        assert values_at[tuple(np.round(point, 6))] == value
    assert np.array_equal(order.undo(restored.array), stored.array)


def test_every_storage_of_the_same_slices_has_the_same_canonical_form():
    base = _oblique_volume()
    canonical = canonical_in_plane_order(base.direction).apply(base)
    for order in ORDERS:
        stored = order.apply(base)  # the same physical image, stored another way
        again = canonical_in_plane_order(stored.direction).apply(stored)
        assert np.array_equal(again.array, canonical.array), order
        assert again.same_grid(canonical), (order, again.grid_difference(canonical))


def test_identity_direction_is_canonical_and_planes_containing_an_axis_have_one_canonical_form():
    assert canonical_in_plane_order(np.eye(3)).is_identity
    coronal = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # columns along x, rows along z
    base = Volume(np.arange(2 * 5 * 7, dtype=np.float32).reshape(2, 5, 7), (1.0, 2.0, 6.0), (0, 0, 0), coronal)
    forms = set()
    for order in ORDERS:
        stored = order.apply(base)
        forms.add(canonical_in_plane_order(stored.direction).apply(stored).array.tobytes())
    assert len(forms) == 1


def test_a_point_maps_back_to_the_stored_grid():
    stored = _oblique_volume()
    for order in ORDERS:
        restored = order.apply(stored)
        row, column = 2.25, 7.5  # a continuous position on the re-stored grid
        back_row, back_column = order.undo_point_rc((row, column), restored.array.shape[1:])
        here = restored.index_to_physical(np.array([column, row, 1.0]))
        there = stored.index_to_physical(np.array([back_column, back_row, 1.0]))
        assert np.allclose(here, there), order


# -- slice axis ----------------------------------------------------------------------------------
def _slice_first(axis: int) -> Volume:
    """An oblique 5-slice stack stored with its slices along image axis ``axis``."""
    stack = _oblique_volume()  # slices along k
    big = Volume(np.random.default_rng(4).normal(size=(5, 40, 36)).astype(np.float32), (1.3, 1.9, 8.0),
                 stack.origin_mm, stack.direction)
    return StackAxis(axis).apply(big)  # swapping is its own inverse: this stores the slices along axis


@pytest.mark.parametrize("axis", [0, 1])
def test_a_stack_stored_slice_first_is_found_and_restored_voxel_for_voxel(axis):
    stored = _slice_first(axis)
    assert stored.shape_ijk[axis] == 5
    stack = find_stack_axis(stored)
    assert stack == StackAxis(axis) and stack.name == "ij"[axis]
    restored = stack.apply(stored)
    assert restored.shape_ijk == (36, 40, 5) and restored.spacing_mm == (1.3, 1.9, 8.0)
    assert restored.voxel_volume_ml == pytest.approx(stored.voxel_volume_ml)
    points = _physical_points(stored).reshape(-1, 3)
    values_at = {tuple(np.round(p, 6)): v for p, v in zip(points, stored.array.ravel())}
    for point, value in zip(_physical_points(restored).reshape(-1, 3), restored.array.ravel()):
        assert values_at[tuple(np.round(point, 6))] == value
    assert np.array_equal(stack.undo(restored.array), stored.array)
    # The restored slices are the stored ones, one for one, in the same order.
    k_positions = restored.slice_positions_mm()
    assert np.all(np.diff(k_positions) > 0) or np.all(np.diff(k_positions) < 0)


@pytest.mark.parametrize("shape_ijk, spacing, axis", [
    ((256, 256, 10), (1.5, 1.5, 8.0), 2),   # the usual storage
    ((10, 256, 256), (8.0, 1.5, 1.5), 0),   # nibabel from a (slice, row, column) array
    ((256, 10, 256), (1.5, 8.0, 1.5), 1),
    ((10, 256, 256), (1.0, 1.0, 1.0), 0),   # no spacing in the header: the one short axis
    ((10, 256, 256), (1.5, 1.5, 1.5), 2),   # isotropic with a real spacing: not guessed; left to the checks
    ((10, 48, 256), (1.0, 1.0, 1.0), 2),    # no spacing and a narrow band: not guessed
    ((256, 36, 256), (1.4, 3.0, 1.4), 1),   # 36 thick slices along j (more than 32)
    ((10, 256, 256), (0.5, 1.5, 1.5), 2),   # "slices" finer than the pixels: not a stack; left to the checks
    ((10, 12, 200), (1.5, 1.5, 8.0), 2),    # two short axes: ambiguous; left to the checks
    ((10, 256, 8), (8.0, 1.5, 1.5), 2),     # a short k as well: left as stored
])
def test_the_slice_axis_is_decided_from_the_grid(shape_ijk, spacing, axis):
    volume = Volume(np.zeros(shape_ijk[::-1], np.float32), spacing)
    assert find_stack_axis(volume).axis == axis

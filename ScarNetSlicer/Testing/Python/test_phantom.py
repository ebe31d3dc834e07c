"""Tests of the synthetic LGE phantom: determinism, label invariants, geometry and contrast.

The phantom is the ground truth for other tests and the source of synthetic training data, so
these checks are about the promises it makes: same seed -> same bits, labels that obey the
anatomy (one LV, blood pool enclosed by myocardium, scar from the endocardium, MVO inside scar),
a consistent oblique 3D geometry, and LGE contrast (scar > blood > healthy myocardium).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR
from scarnet.phantom import TERRITORIES, Phantom, make_phantom

SEEDS = range(20)
CROSS = ndimage.generate_binary_structure(2, 1)
SQUARE = ndimage.generate_binary_structure(2, 2)


@pytest.fixture(scope="module")
def phantoms() -> dict[int, Phantom]:
    """Twenty default phantoms (about 0.2 s each), shared by the label and geometry tests."""
    return {seed: make_phantom(seed) for seed in SEEDS}


@pytest.fixture(scope="module")
def infarcted() -> dict[int, Phantom]:
    return {seed: make_phantom(seed, infarct=True) for seed in range(12)}


# -- determinism -------------------------------------------------------------------------------
def test_same_seed_gives_identical_output() -> None:
    a, b = make_phantom(7), make_phantom(7)
    assert a.image.array.dtype == np.float32 and a.labelmap.array.dtype == np.uint8
    assert np.array_equal(a.image.array, b.image.array)
    assert np.array_equal(a.labelmap.array, b.labelmap.array)
    assert a.image.same_grid(b.image) and a.labelmap.same_grid(b.labelmap)
    assert np.array_equal(a.image.direction, b.image.direction)
    assert a.image.origin_mm == b.image.origin_mm
    assert a.info == b.info


def test_other_seed_gives_other_output() -> None:
    a, b = make_phantom(7), make_phantom(8)
    assert a.image.array.shape != b.image.array.shape or not np.array_equal(a.image.array, b.image.array)
    assert a.image.origin_mm != b.image.origin_mm


def test_global_numpy_state_is_neither_used_nor_changed() -> None:
    np.random.seed(0)
    before = np.random.get_state()[1].copy()
    a = make_phantom(3)
    assert np.array_equal(np.random.get_state()[1], before)
    np.random.seed(12345)  # a different global state must not change the phantom
    assert np.array_equal(make_phantom(3).image.array, a.image.array)


def test_appearance_randomisation_keeps_the_anatomy() -> None:
    plain = make_phantom(5, infarct=True)
    wild = make_phantom(5, infarct=True, randomize_appearance=True)
    assert np.array_equal(plain.labelmap.array, wild.labelmap.array)
    assert plain.image.same_grid(wild.image)
    assert not np.array_equal(plain.image.array, wild.image.array)
    assert wild.info["randomize_appearance"] is True


# -- labels ------------------------------------------------------------------------------------
def _check_labels(ph: Phantom) -> None:
    lab = ph.labelmap.array
    assert lab.shape == ph.image.array.shape
    assert set(np.unique(lab).tolist()) <= {0, 1, 2, 3, 4}
    assert (lab > 0).any(), "no LV at all"
    for k, sl in enumerate(lab):
        lv = sl > 0
        if not lv.any():
            continue
        # One LV per slice.
        _, n_lv = ndimage.label(lv, structure=SQUARE)
        assert n_lv == 1, f"slice {k}: LV labels in {n_lv} pieces"
        myo = np.isin(sl, (HEALTHY_MYOCARDIUM, SCAR, MVO))
        assert myo.any(), f"slice {k}: blood pool without myocardium"
        blood = sl == LV_BLOOD_POOL
        # The myocardium is a ring around the blood pool: the pool never touches background and
        # lies inside the filled epicardial contour.
        touches_bg = blood & ndimage.binary_dilation(sl == 0, structure=CROSS)
        assert not touches_bg.any(), f"slice {k}: blood pool touches background"
        filled = ndimage.binary_fill_holes(myo)
        assert np.all(filled[blood]), f"slice {k}: blood pool outside the epicardial contour"
        # Scar and MVO are myocardium: inside the filled epicardial contour and never in the cavity
        # hole (they are labelled in place of myocardium, so they belong to the ring itself).
        scar_any = np.isin(sl, (SCAR, MVO))
        assert np.all(filled[scar_any])
        pool_mm2 = blood.sum() * ph.labelmap.spacing_mm[0] * ph.labelmap.spacing_mm[1]
        if scar_any.any() and pool_mm2 > np.pi * 10.0**2:
            # Infarcts grow from the endocardium: (almost) every scar piece reaches the blood pool.
            # Not checked near the apex (cavity radius < 10 mm), where a thick slice cuts the wall
            # very obliquely and the cavity shrinks fast within it, and two pixels of slack
            # elsewhere: the majority label of endocardial pixels can be myocardium there.
            comp, n = ndimage.label(scar_any, structure=SQUARE)
            near_blood = ndimage.binary_dilation(blood, structure=SQUARE, iterations=2)
            touching = set(np.unique(comp[near_blood & scar_any]).tolist()) - {0}
            sizes = ndimage.sum_labels(scar_any, comp, index=np.arange(1, n + 1))
            touching_voxels = sum(sizes[i - 1] for i in touching)
            assert touching_voxels >= 0.8 * scar_any.sum(), f"slice {k}: scar not subendocardial"
        mvo = sl == MVO
        if mvo.any():
            # Each MVO voxel has scar or MVO in its 8-neighbourhood, and each MVO piece touches scar.
            neighbours = ndimage.convolve(np.isin(sl, (SCAR, MVO)).astype(int), SQUARE.astype(int)) - 1
            assert np.all(neighbours[mvo] >= 1), f"slice {k}: isolated MVO voxel"
            comp, n = ndimage.label(mvo, structure=SQUARE)
            near_scar = ndimage.binary_dilation(sl == SCAR, structure=SQUARE)
            assert set(np.unique(comp[near_scar & mvo]).tolist()) >= set(range(1, n + 1))


@pytest.mark.parametrize("seed", list(SEEDS))
def test_label_invariants(phantoms: dict[int, Phantom], seed: int) -> None:
    _check_labels(phantoms[seed])


def test_label_invariants_randomized_and_forced_infarcts(infarcted: dict[int, Phantom]) -> None:
    for ph in infarcted.values():
        _check_labels(ph)
    for seed in range(20, 26):
        _check_labels(make_phantom(seed, randomize_appearance=True))


def test_check_labels_catches_broken_labels(phantoms: dict[int, Phantom]) -> None:
    """The invariant checker above must be able to fail (else the tests prove nothing)."""
    ph = next(p for p in phantoms.values() if (p.labelmap.array == LV_BLOOD_POOL).sum() > 100)
    k = int(np.argmax((ph.labelmap.array == LV_BLOOD_POOL).sum(axis=(1, 2))))
    broken = ph.labelmap.array.copy()
    broken[k][broken[k] == HEALTHY_MYOCARDIUM] = 0  # remove the ring: blood touches background
    with pytest.raises(AssertionError):
        _check_labels(Phantom(ph.image, ph.labelmap.with_array(broken), ph.info))
    broken = ph.labelmap.array.copy()
    depth = ndimage.distance_transform_edt(broken[k] == LV_BLOOD_POOL)
    j, i = np.unravel_index(int(np.argmax(depth)), depth.shape)
    broken[k, j, i] = MVO  # MVO floating in the middle of the blood pool
    with pytest.raises(AssertionError):
        _check_labels(Phantom(ph.image, ph.labelmap.with_array(broken), ph.info))


def test_infarct_false_has_no_scar() -> None:
    for seed in range(8):
        ph = make_phantom(seed, infarct=False)
        assert not np.isin(ph.labelmap.array, (SCAR, MVO)).any()
        assert ph.info["infarct"] is False and ph.info["territory"] is None and ph.info["has_mvo"] is False


def test_infarct_true_has_scar(infarcted: dict[int, Phantom]) -> None:
    n_mvo = 0
    for ph in infarcted.values():
        lab = ph.labelmap.array
        assert (lab == SCAR).any()
        assert ph.info["infarct"] is True and ph.info["territory"] in TERRITORIES
        assert ph.info["has_mvo"] == bool((lab == MVO).any())
        assert 0.2 <= ph.info["transmurality"] <= 1.0
        n_mvo += ph.info["has_mvo"]
        # Scar over a contiguous range of slices.
        per_slice = np.isin(lab, (SCAR, MVO)).any(axis=(1, 2))
        idx = np.nonzero(per_slice)[0]
        assert np.all(np.diff(idx) == 1), f"scar slices not contiguous: {idx}"
    assert 0 < n_mvo < len(infarcted), "MVO should be present in some infarcts, not all"


def test_default_infarct_rate_is_about_three_quarters(phantoms: dict[int, Phantom]) -> None:
    rate = np.mean([p.info["infarct"] for p in phantoms.values()])
    assert 0.45 <= rate <= 0.95


def test_same_seed_same_anatomy_with_and_without_infarct() -> None:
    with_mi, without = make_phantom(4, infarct=True), make_phantom(4, infarct=False)
    lv_a = with_mi.labelmap.array > 0
    lv_b = without.labelmap.array > 0
    assert np.array_equal(lv_a, lv_b)
    assert np.array_equal(with_mi.labelmap.array == LV_BLOOD_POOL, without.labelmap.array == LV_BLOOD_POOL)


def test_territories_sit_where_the_coronaries_supply(infarcted: dict[int, Phantom]) -> None:
    """LAD scar is anterior/septal, RCA scar inferior, LCX scar lateral (in the LV frame in info)."""
    seen = set()
    for seed in range(40):
        ph = infarcted.get(seed) or make_phantom(seed, infarct=True)
        terr = ph.info["territory"]
        if terr in seen:
            continue
        seen.add(terr)
        direction = _mean_scar_direction(ph)
        frame = ph.info["lv_frame_lps"]
        lateral, anterior = np.asarray(frame["lateral"]), np.asarray(frame["anterior"])
        if terr == "LAD":
            assert direction @ anterior > 0.2 or direction @ lateral < -0.5, terr  # anterior or septal
        elif terr == "RCA":
            assert direction @ anterior < -0.2, terr
        else:
            assert direction @ lateral > 0.3, terr
        if seen == set(TERRITORIES):
            break
    assert seen == set(TERRITORIES)


def _mean_scar_direction(ph: Phantom) -> np.ndarray:
    """Unit LPS direction from the LV centre to the scar, averaged over slices."""
    lab = ph.labelmap.array
    total = np.zeros(3)
    for k in range(lab.shape[0]):
        scar = np.isin(lab[k], (SCAR, MVO))
        lv = lab[k] > 0
        if not scar.any():
            continue
        cj, ci = ndimage.center_of_mass(lv)
        sj, si = ndimage.center_of_mass(scar)
        p_lv = ph.image.index_to_physical(np.array([ci, cj, k]))
        p_scar = ph.image.index_to_physical(np.array([si, sj, k]))
        total += (p_scar - p_lv) * scar.sum()
    return total / np.linalg.norm(total)


# -- geometry ----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", list(SEEDS))
def test_geometry(phantoms: dict[int, Phantom], seed: int) -> None:
    ph = phantoms[seed]
    img, info = ph.image, ph.info
    assert img.same_grid(ph.labelmap)
    si, sj, sk = img.spacing_mm
    assert 1.2 <= si <= 2.0 and 1.2 <= sj <= 2.0
    assert 6 <= img.num_slices <= 14 and info["n_slices"] == img.num_slices
    thickness = info["slice_thickness_mm"]
    assert 6.0 <= thickness <= 10.0
    assert thickness <= sk + 1e-6 and sk <= 14.0
    fov = np.asarray(img.shape_ijk[:2]) * np.asarray(img.spacing_mm[:2])
    assert 280.0 <= fov.max() <= 420.0 and fov.min() >= 0.7 * fov.max()
    # A proper, oblique rotation and an origin away from zero.
    d = img.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-9)
    assert np.linalg.det(d) == pytest.approx(1.0)
    assert np.max(np.abs(d)) < 0.99, "short-axis planes should be oblique to the scanner axes"
    assert np.linalg.norm(img.origin_mm) > 10.0
    # Slices are sk apart along the normal, and the LV long axis is (anti)parallel to the normal.
    assert np.allclose(np.abs(np.diff(img.slice_positions_mm())), sk)
    long_axis = np.asarray(info["lv_frame_lps"]["long_axis"])
    assert abs(long_axis @ img.slice_normal) == pytest.approx(1.0, abs=1e-3)
    z = np.asarray(info["slice_z_below_mitral_plane_mm"])
    assert np.allclose(np.abs(np.diff(z)), sk, atol=1e-2)
    # The LV is one tube through the stack: blood-pool centres of neighbouring slices, in physical
    # space, differ mostly along the slice normal (a wrong origin/direction would scatter them).
    centres = []
    lab = ph.labelmap.array
    for k in range(lab.shape[0]):
        if (lab[k] > 0).sum() > 30:
            cj, ci = ndimage.center_of_mass(lab[k] > 0)
            centres.append(img.index_to_physical(np.array([ci, cj, k])))
    steps = np.diff(np.asarray(centres), axis=0)
    in_plane = steps - np.outer(steps @ img.slice_normal, img.slice_normal)
    assert np.all(np.linalg.norm(in_plane, axis=1) < 8.0)


def test_explicit_geometry_arguments() -> None:
    ph = make_phantom(2, n_slices=9, spacing_mm=(1.5, 1.5, 8.0))
    assert ph.image.num_slices == 9
    assert ph.image.spacing_mm == pytest.approx((1.5, 1.5, 8.0))
    assert ph.info["slice_thickness_mm"] <= 8.0
    with pytest.raises(ValueError):
        make_phantom(2, n_slices=0)
    with pytest.raises(ValueError):
        make_phantom(2, spacing_mm=(1.5, -1.5, 8.0))


def test_sizes_are_those_of_a_real_lv(phantoms: dict[int, Phantom]) -> None:
    for ph in phantoms.values():
        lab = ph.labelmap.array
        area_mm2 = ph.image.spacing_mm[0] * ph.image.spacing_mm[1]
        k = int(np.argmax((lab > 0).sum(axis=(1, 2))))
        cavity_r = np.sqrt((lab[k] == LV_BLOOD_POOL).sum() * area_mm2 / np.pi)
        epi_r = np.sqrt((lab[k] > 0).sum() * area_mm2 / np.pi)
        assert 15.0 <= cavity_r <= 30.0
        assert 5.0 <= epi_r - cavity_r <= 14.0  # mean wall thickness
        myo_ml = ph.info["volumes_ml"]["myocardium"]
        assert 50.0 <= myo_ml <= 250.0


# -- image -------------------------------------------------------------------------------------
def test_image_finite_non_negative_and_json_info(phantoms: dict[int, Phantom]) -> None:
    for ph in phantoms.values():
        a = ph.image.array
        assert a.dtype == np.float32 and np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() > 0
        json.dumps(ph.info)
    for seed in range(30, 36):
        a = make_phantom(seed, randomize_appearance=True).image.array
        assert np.all(np.isfinite(a)) and a.min() >= 0.0 and a.max() > 0


def test_lge_contrast_ordering(infarcted: dict[int, Phantom]) -> None:
    """Default appearance: median scar > median blood pool > median healthy myocardium."""
    for seed, ph in infarcted.items():
        img, lab = ph.image.array, ph.labelmap.array
        scar, blood, healthy = (np.median(img[lab == v]) for v in (SCAR, LV_BLOOD_POOL, HEALTHY_MYOCARDIUM))
        assert scar > 1.15 * blood, f"seed {seed}: scar {scar:.0f} vs blood {blood:.0f}"
        assert blood > 2.0 * healthy, f"seed {seed}: blood {blood:.0f} vs myocardium {healthy:.0f}"
        if (lab == MVO).sum() >= 5:
            assert np.median(img[lab == MVO]) < 0.6 * scar, f"seed {seed}: MVO not dark"


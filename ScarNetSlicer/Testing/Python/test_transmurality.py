"""Scar transmurality along rays from the LV centre, on rings whose transmurality is known by construction."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR
from scarnet.quantify import quantify
from scarnet.transmurality import is_measured, ray_transmurality, stack_transmurality, summarise
from scarnet.volume import Volume

SPACING_RC_MM = (1.8, 1.2)  # anisotropic pixels: rows 1.8 mm apart, columns 1.2 mm
ENDO_MM, EPI_MM = 15.0, 25.0


def _polar(shape=(120, 150), centre=(60, 75)) -> tuple[np.ndarray, np.ndarray]:
    """Distance from the centre (mm) and angle (degrees, 0–360, rows down) of every pixel."""
    r, c = np.mgrid[0:shape[0], 0:shape[1]]
    y, x = (r - centre[0]) * SPACING_RC_MM[0], (c - centre[1]) * SPACING_RC_MM[1]
    return np.hypot(y, x), np.degrees(np.arctan2(y, x)) % 360


def _ring() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Blood pool inside 15 mm, wall 15–25 mm; scar over 0–90° through the inner 40 % of the wall and
    over 90–180° through all of it (MVO inside it over 120–150°); 180–360° healthy."""
    radius, angle = _polar()
    plane = np.zeros(radius.shape, dtype=np.uint8)
    plane[radius < ENDO_MM] = LV_BLOOD_POOL
    wall = (radius >= ENDO_MM) & (radius < EPI_MM)
    plane[wall] = HEALTHY_MYOCARDIUM
    plane[wall & (angle < 90) & (radius < ENDO_MM + 0.4 * (EPI_MM - ENDO_MM))] = SCAR
    plane[wall & (angle >= 90) & (angle < 180)] = SCAR
    plane[wall & (angle >= 120) & (angle < 150) & (radius < 20)] = MVO
    return plane, radius, angle


def test_a_ring_of_known_transmurality():
    plane, _, _ = _ring()
    rays = ray_transmurality(plane, SPACING_RC_MM)
    angles = np.arange(rays.size) * 360 / rays.size
    inner = rays[(angles > 5) & (angles < 85)]
    assert inner == pytest.approx(0.4, abs=0.18)  # 4 mm of 10, within a pixel (1.8 mm)
    assert inner.mean() == pytest.approx(0.4, abs=0.03)
    assert rays[(angles > 95) & (angles < 175)] == pytest.approx(1.0)  # MVO counts as scar
    assert rays[(angles > 185) & (angles < 355)] == pytest.approx(0.0)
    summary = summarise(rays)
    assert summary.scar_circumference_percent == pytest.approx(50, abs=2)
    assert summary.transmural_over_50_percent == pytest.approx(25, abs=2)
    assert summary.scar_transmurality_mean_percent == pytest.approx(70, abs=3)


def _plain_ring() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    radius, angle = _polar()
    plane = np.zeros(radius.shape, dtype=np.uint8)
    plane[radius < ENDO_MM] = LV_BLOOD_POOL
    plane[(radius >= ENDO_MM) & (radius < EPI_MM)] = HEALTHY_MYOCARDIUM
    return plane, radius, angle


def test_the_pixel_spacing_is_read_rows_then_columns():
    # Transmural scar over 0-45° of a ring that is round in mm: 12.5 % of the circumference. With the
    # spacings swapped the ring is an ellipse to the rays and the sector's share of angles halves.
    plane, _, angle = _plain_ring()
    plane[(plane == HEALTHY_MYOCARDIUM) & (angle < 45)] = SCAR
    assert summarise(ray_transmurality(plane, SPACING_RC_MM)).transmural_over_50_percent == pytest.approx(12.5, abs=2)
    swapped = summarise(ray_transmurality(plane, SPACING_RC_MM[::-1])).transmural_over_50_percent
    assert abs(swapped - 12.5) > 4


def test_quantify_passes_the_pixel_spacing_rows_then_columns():
    plane, _, angle = _plain_ring()
    plane[(plane == HEALTHY_MYOCARDIUM) & (angle < 45)] = SCAR
    # Volume spacing is (i, j, k): columns, rows, slices.
    report = quantify(Volume(np.stack([plane, plane]), (SPACING_RC_MM[1], SPACING_RC_MM[0], 8.0)))
    assert report.total.transmural_over_50_percent == pytest.approx(12.5, abs=2)


def test_a_stray_blood_pool_blob_does_not_move_the_centre():
    # The atrium or aorta labelled blood pool beside the LV: the centre stays in the largest region.
    plane, radius, _ = _ring()
    expected = summarise(ray_transmurality(plane, SPACING_RC_MM))
    rows, cols = np.mgrid[0:plane.shape[0], 0:plane.shape[1]]
    plane[(np.abs(rows - 60) < 8) & (cols >= 135) & (radius > EPI_MM + 3)] = LV_BLOOD_POOL
    assert summarise(ray_transmurality(plane, SPACING_RC_MM)) == expected


@pytest.mark.parametrize("gap_label", [0, LV_BLOOD_POOL], ids=["gaps of background", "gaps of blood pool"])
def test_a_wall_fragment_cut_off_by_gaps_is_still_wall(gap_label):
    # A thinned transmural infarct the segmentation broke off the ring: it touches the cavity and the
    # outside, so it is wall and its scar counts, whatever the gaps were labelled.
    plane, _, angle = _plain_ring()
    wall = plane == HEALTHY_MYOCARDIUM
    plane[wall & (angle >= 100) & (angle < 150)] = SCAR
    plane[wall & (((angle >= 90) & (angle < 100)) | ((angle >= 150) & (angle < 160)))] = gap_label
    summary = summarise(ray_transmurality(plane, SPACING_RC_MM))
    assert summary.transmural_over_50_percent == pytest.approx(100 * 50 / 340, abs=2)


def test_scar_drawn_outside_the_lv_is_not_wall():
    # A basal slice open at 300-360° and a sliver of "scar" beyond the opening (another structure):
    # the rays through the opening cross no wall instead of measuring the sliver as transmural scar.
    plane, radius, angle = _plain_ring()
    plane[(plane == HEALTHY_MYOCARDIUM) & (angle > 300)] = 0
    expected = summarise(ray_transmurality(plane, SPACING_RC_MM))
    plane[(radius > 40) & (radius < 43) & (angle > 310) & (angle < 350)] = SCAR
    assert summarise(ray_transmurality(plane, SPACING_RC_MM)) == expected
    assert expected.transmural_over_50_percent == 0


def test_a_sliver_of_wall_is_not_measured():
    # The most basal slice: a 40° arc of scarred wall. Its few rays would read 100 %; it gets no figures.
    plane, _, angle = _plain_ring()
    plane[(plane == HEALTHY_MYOCARDIUM) & ~((angle >= 200) & (angle < 240))] = 0
    plane[plane == HEALTHY_MYOCARDIUM] = SCAR
    rays = ray_transmurality(plane, SPACING_RC_MM)
    assert not is_measured(rays)
    ring, _, _ = _ring()
    per_slice, total = stack_transmurality(np.stack([ring, plane]), SPACING_RC_MM)
    assert per_slice[1].transmural_over_50_percent is None
    assert total == per_slice[0]  # the sliver's rays are not in the total


def test_a_slice_without_blood_pool_takes_the_centre_of_the_others():
    # An apical or hand-drawn slice with the wall but no blood pool: its rays start on the stack's LV
    # axis, not at the wall's centroid (for a ring with scar on one side, the two differ).
    ring, _, angle = _ring()
    open_ring = ring.copy()
    open_ring[(open_ring != LV_BLOOD_POOL) & (angle > 240)] = 0  # the wall's centroid moves off the centre
    no_pool = np.where(open_ring == LV_BLOOD_POOL, 0, open_ring).astype(np.uint8)
    per_slice, _ = stack_transmurality(np.stack([ring, no_pool, ring]), SPACING_RC_MM)
    assert per_slice[1] == summarise(ray_transmurality(open_ring, SPACING_RC_MM))  # rays from the cavity's centre
    assert per_slice[1] != summarise(ray_transmurality(no_pool, SPACING_RC_MM))  # not from the wall's centroid


def test_rays_through_an_open_ring_are_left_out():
    # A basal slice: the wall is missing over 270–360° (the outflow tract); those rays cross no wall.
    plane, _, angle = _ring()
    plane[(plane == HEALTHY_MYOCARDIUM) & (angle > 270)] = 0
    rays = ray_transmurality(plane, SPACING_RC_MM)
    assert np.isnan(rays).mean() == pytest.approx(0.25, abs=0.02)
    summary = summarise(rays)
    assert summary.scar_circumference_percent == pytest.approx(100 * 2 / 3, abs=2)  # of the rays crossing the wall
    assert summary.transmural_over_50_percent == pytest.approx(100 / 3, abs=2)


def test_a_myocardium_island_in_the_cavity_is_not_the_wall():
    # A papillary muscle drawn as myocardium, in front of the transmural scar: the rays must still
    # reach the wall behind it.
    plane, radius, angle = _ring()
    plane[(radius > 8) & (radius < 11) & (angle > 125) & (angle < 145)] = HEALTHY_MYOCARDIUM
    rays = ray_transmurality(plane, SPACING_RC_MM)
    angles = np.arange(rays.size) * 360 / rays.size
    assert rays[(angles > 95) & (angles < 175)] == pytest.approx(1.0)


def test_a_one_pixel_gap_between_scar_and_myocardium_is_bridged():
    # A hand-drawn Scar segment that stops one pixel short of the Myocardium segment: the wall is
    # still the whole thickness (scar 40 %), not the scar alone (100 %).
    from scipy import ndimage

    plane, _, angle = _ring()
    inner_scar = (plane == SCAR) & (angle < 90)
    plane[ndimage.binary_dilation(inner_scar, np.ones((3, 3))) & (plane == HEALTHY_MYOCARDIUM) & (angle < 90)] = 0
    rays = ray_transmurality(plane, SPACING_RC_MM)
    angles = np.arange(rays.size) * 360 / rays.size
    assert rays[(angles > 5) & (angles < 85)] == pytest.approx(0.4, abs=0.2)  # not 1.0


def test_slices_without_myocardium_or_scar():
    assert ray_transmurality(np.zeros((20, 20), np.uint8), SPACING_RC_MM).size == 0
    assert summarise(np.zeros(0)).scar_circumference_percent is None
    plane, _, _ = _ring()
    plane[np.isin(plane, (SCAR, MVO))] = HEALTHY_MYOCARDIUM
    summary = summarise(ray_transmurality(plane, SPACING_RC_MM))
    assert summary.scar_circumference_percent == summary.transmural_over_50_percent == 0
    assert summary.scar_transmurality_mean_percent is None
    # No blood pool (an apical slice drawn as a solid disc): the centre is the wall's own.
    disc = np.where(plane > 0, HEALTHY_MYOCARDIUM, 0).astype(np.uint8)
    assert summarise(ray_transmurality(disc, SPACING_RC_MM)).scar_circumference_percent == 0


def test_the_report_gives_transmurality_per_slice_and_in_total():
    plane, _, _ = _ring()
    healthy = np.where(np.isin(plane, (SCAR, MVO)), HEALTHY_MYOCARDIUM, plane).astype(np.uint8)
    labels = np.stack([plane, healthy, np.zeros_like(plane)])
    report = quantify(Volume(labels, (SPACING_RC_MM[1], SPACING_RC_MM[0], 8.0)))
    s0, s1, s2 = report.slices
    assert s0.transmural_over_50_percent == pytest.approx(25, abs=2)
    assert s1.scar_circumference_percent == 0 and s1.scar_transmurality_mean_percent is None
    assert s2.scar_circumference_percent is None  # no myocardium
    # The total weighs every ray of every slice alike: half of slice 0's share.
    assert report.total.transmural_over_50_percent == pytest.approx(s0.transmural_over_50_percent / 2)
    assert report.total.scar_transmurality_mean_percent == pytest.approx(s0.scar_transmurality_mean_percent)
    data = json.loads(report.to_json())
    assert data["slices"][0]["transmural_over_50_percent"] == s0.transmural_over_50_percent
    assert "transmurality" in data["conventions"]
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    column = rows[0].index("transmural_over_50_percent")
    assert float(rows[1][column]) == pytest.approx(s0.transmural_over_50_percent, rel=1e-5)
    assert rows[3][column] == ""  # no myocardium
    assert rows[4][0] == "total"
    assert float(rows[4][column]) == pytest.approx(report.total.transmural_over_50_percent, rel=1e-5)


@pytest.mark.parametrize(("seed", "peak"), [(7, 0.36), (1, 0.96)])
def test_phantom_infarcts_of_known_depth(seed, peak):
    # The phantom paints scar from the endocardium through a known peak fraction of the wall: a
    # subendocardial infarct (36 %) is nowhere more than half transmural; a transmural one (96 %) is
    # through more than half of the wall in most of the circumference its scar covers.
    from scarnet.phantom import make_phantom

    phantom = make_phantom(seed=seed)
    assert phantom.info["transmurality"] == pytest.approx(peak, abs=0.01)
    total = quantify(phantom.labelmap).total
    assert total.scar_circumference_percent > 20
    if peak < 0.5:
        assert total.transmural_over_50_percent < 2
        assert total.scar_transmurality_mean_percent < 40
    else:
        assert total.transmural_over_50_percent > 0.7 * total.scar_circumference_percent
        assert total.scar_transmurality_mean_percent > 70


def test_the_cli_summary_gives_the_stack_figures():
    from rich.console import Console

    from scarnet.cli import print_report

    plane, _, _ = _ring()
    report = quantify(Volume(np.stack([plane, plane]), (SPACING_RC_MM[1], SPACING_RC_MM[0], 8.0)))
    console = Console(file=io.StringIO(), width=200)
    print_report(report, console)
    text = console.file.getvalue()
    assert (f"Scar in {report.total.scar_circumference_percent:.0f} % of the LV circumference (all measured slices), "
            f"through more than half of the wall in {report.total.transmural_over_50_percent:.0f} %") in text

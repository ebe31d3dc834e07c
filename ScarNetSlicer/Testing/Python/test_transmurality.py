"""Scar transmurality along rays from the LV centre, on rings whose transmurality is known by construction."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR
from scarnet.quantify import quantify
from scarnet.transmurality import ray_transmurality, summarise
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

"""Stack coverage: the warning that a short-axis stack may stop short of the apex (scarnet.qc)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import requires_torch

from scarnet.aha import base_apex_order
from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL
from scarnet.phantom import make_phantom
from scarnet.qc import (
    APICAL_CAVITY_WARNING_FRACTION,
    APICAL_COVERAGE_WARNING_START,
    apical_coverage_warning,
    apical_end_coverage,
)


def rings(cavity_radii_px: list[float], wall_px: float = 4.0, size: int = 64) -> np.ndarray:
    """A (k, size, size) labelmap: per slice a blood pool of the given radius in a wall ``wall_px`` thick; a radius
    of 0 is a cap (a disc of myocardium), None a slice without LV."""
    r, c = np.mgrid[0:size, 0:size]
    radius = np.hypot(r - size / 2, c - size / 2)
    labels = np.zeros((len(cavity_radii_px), size, size), dtype=np.uint8)
    for k, cavity_px in enumerate(cavity_radii_px):
        if cavity_px is None:
            continue
        labels[k][radius < cavity_px + wall_px] = HEALTHY_MYOCARDIUM
        labels[k][radius < cavity_px] = LV_BLOOD_POOL
    return labels


#: Base (slice 0) to apex: the cavity narrows to a cap.
CONE = [14, 14, 13, 12, 11, 7, 0]


def test_a_stack_that_reaches_the_apex_is_not_warned():
    labels = rings(CONE)
    assert apical_coverage_warning(labels, True, 1.0) is None
    end = apical_end_coverage(labels, True, 1.0)
    assert end.slice_index == 6 and end.has_myocardium and end.cavity_fraction == 0.0


@pytest.mark.parametrize("cut", [2, 3])
def test_a_stack_cut_short_at_its_apical_end_is_warned(cut):
    labels = rings(CONE)[:-cut]
    end = apical_end_coverage(labels, True, 1.0)
    assert end.cavity_fraction >= APICAL_CAVITY_WARNING_FRACTION
    message = apical_coverage_warning(labels, True, 1.0)
    last = len(CONE) - cut - 1
    blood_pool = (labels == LV_BLOOD_POOL).sum(axis=(1, 2))
    expected = round(100 * blood_pool[last] / blood_pool.max())
    assert message is not None and message.startswith(f"{APICAL_COVERAGE_WARNING_START}: ")
    assert f"apical end slice (slice {last}) is {expected} %" in message and "not counted" in message


def test_the_apical_end_follows_the_base_apex_order():
    labels = rings(CONE)[::-1]  # apex first
    assert apical_coverage_warning(labels, False, 1.0) is None
    # Told that slice 0 is basal, the cap is the base and the apical end slice (the real base) has a large cavity.
    assert "(slice 6) is 100 %" in apical_coverage_warning(labels, True, 1.0)


def test_without_an_order_the_end_with_the_smaller_cavity_is_checked():
    assert apical_coverage_warning(rings(CONE), None, 1.0) is None
    assert apical_coverage_warning(rings(CONE)[::-1], None, 1.0) is None
    cylinder = rings([12, 13, 14, 14, 13, 12])  # cut at both ends: both end slices large
    message = apical_coverage_warning(cylinder, None, 1.0)
    assert message is not None and "smaller cavity (slice 0; which end is apical is unknown)" in message


def test_a_stack_that_runs_past_the_lv_is_not_warned():
    # The planner went beyond the apex: the end slice has no LV, whatever the slice before it shows.
    labels = rings([14, 13, 12, 11, None])
    assert apical_end_coverage(labels, True, 1.0).has_myocardium is False
    assert apical_coverage_warning(labels, True, 1.0) is None


def test_the_threshold_is_where_the_warning_starts():
    # The apical end slice's cavity, 16 px of radius 20's: (r / 20)² on either side of the threshold.
    radius_at = 20 * np.sqrt(APICAL_CAVITY_WARNING_FRACTION)
    below = rings([20, 18, radius_at - 0.6], size=96)
    above = rings([20, 18, radius_at + 0.6], size=96)
    assert apical_end_coverage(below, True, 1.0).cavity_fraction < APICAL_CAVITY_WARNING_FRACTION
    assert apical_coverage_warning(below, True, 1.0) is None
    assert apical_coverage_warning(above, True, 1.0) is not None


def test_nothing_to_compare_gives_no_warning():
    assert apical_end_coverage(np.zeros((5, 32, 32), dtype=np.uint8), True, 1.0) is None
    assert apical_coverage_warning(rings([0, 0, 0]), None, 1.0) is None  # caps only: no cavity anywhere
    # One slice is its own largest (100 %): nothing to compare with, whichever end is called apical.
    for base_first in (None, True, False):
        assert apical_coverage_warning(rings([12]), base_first, 1.0) is None


def _cut_phantom(seed: int, cut: int) -> tuple[np.ndarray, bool, float]:
    """A phantom's own labels without its ``cut`` most apical slices, the order found on them, its pixel area."""
    phantom = make_phantom(seed)
    labels = phantom.labelmap.array
    base_first = base_apex_order(phantom.labelmap, labels).base_first
    labels = labels[:labels.shape[0] - cut] if base_first else labels[cut:]
    return labels, base_first, phantom.labelmap.spacing_mm[0] * phantom.labelmap.spacing_mm[1]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_a_phantom_is_warned_only_once_its_apical_slices_are_removed(seed):
    # Phantoms cover the LV to the apex (their end slice's cavity is at most 17 % of the largest in seeds 0-19).
    labels, base_first, pixel_area_mm2 = _cut_phantom(seed, 0)
    assert apical_coverage_warning(labels, base_first, pixel_area_mm2) is None
    # Stopped at the mid-ventricle: three apical slices of the 6-14 missing.
    labels, base_first, pixel_area_mm2 = _cut_phantom(seed, 3)
    assert apical_coverage_warning(labels, base_first, pixel_area_mm2) is not None


@requires_torch
def test_segmenting_a_stack_cut_short_says_so_in_the_report():
    from test_inference import RingModel, ring_volume

    from scarnet.inference import Segmenter

    # RingModel draws the same ring on every slice: a stack that ends where its cavity is largest.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        report = Segmenter(RingModel(), device="cpu", flip_check=False)(ring_volume()).report
    # Once: quantify gives it to every report from the labels (labelmap_warnings), the model's run included; the
    # pipeline does not add its own (inference.warnings).
    said = [m for m in report.warnings() if m.startswith(APICAL_COVERAGE_WARNING_START)]
    assert len(said) == 1 and said[0] in report.extra["labelmap_warnings"]
    assert not any(m.startswith(APICAL_COVERAGE_WARNING_START) for m in report.extra["inference"]["warnings"])
    assert "is 100 % of its largest" in said[0]

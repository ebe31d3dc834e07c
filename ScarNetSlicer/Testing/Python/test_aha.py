"""Levels and AHA segments (scarnet.aha): angle → segment, thirds, base-apex order, and segments of
known scar on rings and phantoms, through quantify, storage changes and the command line."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import requires_torch

from scarnet.aha import (
    ANGLES_FROM_DISPLAY,
    ANGLES_FROM_PATIENT_AXES,
    APEX,
    SEGMENT_NAMES,
    base_apex_order,
    segment_of_angle,
    slice_levels,
)
from scarnet.errors import InputError
from scarnet.orientation import StackAxis
from scarnet.phantom import anterior_rv_insertion_lps, inferior_rv_insertion_lps, make_phantom
from scarnet.qc import APICAL_COVERAGE_WARNING_START
from scarnet.quantify import quantify
from scarnet.volume import Volume

SPACING = (1.2, 1.5, 8.0)
# An oblique, right-handed frame: (i, j, k) axes of the grid in LPS.
_ANGLE = np.radians(35.0)
DIRECTION = np.array([[np.cos(_ANGLE), -np.sin(_ANGLE), 0.0],
                      [np.sin(_ANGLE) * 0.8, np.cos(_ANGLE) * 0.8, -0.6],
                      [np.sin(_ANGLE) * 0.6, np.cos(_ANGLE) * 0.6, 0.8]])
DIRECTION[:, 2] = np.cross(DIRECTION[:, 0], DIRECTION[:, 1])
# Turned 180 degrees in its plane, so that the grid's +i axis, where the tests put the RV insertion point, points
# anterior and to the patient's right, where the RV is (scarnet.aha.rv_side_warning).
DIRECTION[:, :2] *= -1.0
ORIGIN = (60.0, 35.0, 110.0)  # the LV left of the isocentre, as imaged; its RV point has a negative R (RAS)
SHAPE = (7, 64, 72)  # (k, rows, cols)
CENTRE_RC = (32.0, 36.0)  # pixel (row, col) of the LV centre


def _ring_labels(scar_from_deg: float, scar_to_deg: float) -> np.ndarray:
    """Rings on every slice (cavity shrinking along k), scar through the whole wall between two angles,
    measured in mm from the +i (column) axis towards +j (rows)."""
    k, rows, cols = SHAPE
    rr, cc = np.mgrid[:rows, :cols]
    dr, dc = (rr - CENTRE_RC[0]) * SPACING[1], (cc - CENTRE_RC[1]) * SPACING[0]
    radius = np.hypot(dr, dc)
    angle = np.degrees(np.arctan2(dr, dc)) % 360
    labels = np.zeros(SHAPE, dtype=np.uint8)
    for z in range(k):
        cavity = 22.0 - 2.0 * z
        labels[z][radius < cavity] = 1
        wall = (radius >= cavity) & (radius < cavity + 9.0)
        labels[z][wall] = 2
        labels[z][wall & (angle > scar_from_deg) & (angle < scar_to_deg)] = 3
    return labels


def _volume(labels: np.ndarray) -> Volume:
    return Volume(labels, SPACING, ORIGIN, DIRECTION)


def _point_along_i(volume: Volume, k: int = 3, distance_mm: float = 30.0) -> np.ndarray:
    """An RV insertion point 30 mm from the LV centre of slice k along the grid's +i axis."""
    centre = volume.index_to_physical(np.array([CENTRE_RC[1], CENTRE_RC[0], k]))
    return centre + distance_mm * volume.direction[:, 0]


def _point_at_angle(volume: Volume, angle_deg: float, k: int = 3, distance_mm: float = 30.0) -> np.ndarray:
    """A point 30 mm from the LV centre of slice k, ``angle_deg`` from the grid's +i axis towards +j (as the rings'
    angles); at 0° it is :func:`_point_along_i`."""
    centre = volume.index_to_physical(np.array([CENTRE_RC[1], CENTRE_RC[0], k]))
    angle = np.radians(angle_deg)
    return centre + distance_mm * (np.cos(angle) * volume.direction[:, 0] + np.sin(angle) * volume.direction[:, 1])


def _levels(labels: np.ndarray, order, pixel_area_mm2: float = 1.0) -> list[str | None]:
    return slice_levels(labels, order, pixel_area_mm2=pixel_area_mm2)


def _by_number(report) -> dict:
    return {s.segment: s for s in report.segments}


def test_angles_map_to_the_aha_segments():
    basal = segment_of_angle("basal", np.array([30, 90, 150, 210, 270, 330, 360 + 30, -30]))
    assert basal.tolist() == [2, 3, 4, 5, 6, 1, 2, 1]
    assert (segment_of_angle("mid", np.array([30, 90, 150, 210, 270, 330])) - 6).tolist() == [2, 3, 4, 5, 6, 1]
    # Apical: septal centred on the septum (60°), 90° each.
    apical = segment_of_angle("apical", np.array([16, 60, 104, 106, 194, 196, 284, 286, 10]))
    assert apical.tolist() == [14, 14, 14, 15, 15, 16, 16, 13, 13]
    # The apex beyond the cavity is one segment, whatever the angle.
    assert segment_of_angle(APEX, np.array([0, 16, 106, 196, 286, 359])).tolist() == [17] * 6
    assert set(SEGMENT_NAMES) == set(range(1, 18)) and SEGMENT_NAMES[17] == "apex"
    # A voxel on a boundary falls on one side, whatever the last bit of the arithmetic that gave its angle (the
    # same exam stored flipped gave 59.99999999999999° or 60.00000000000001°), also with a stretched septum.
    for level, boundary in (("basal", 60.0), ("mid", 300.0), ("apical", 106.0), ("basal", 0.0)):
        for span in (120.0, 100.0):
            boundary_angle = boundary if span == 120.0 else boundary * 100.0 / 120.0 if boundary <= 120.0 else None
            if boundary_angle is None:
                continue
            noisy = np.array([boundary_angle, np.nextafter(boundary_angle, -1.0), np.nextafter(boundary_angle, 400.0)])
            segments = segment_of_angle(level, noisy, span)
            assert len(set(segments.tolist())) == 1, (level, boundary, span, segments)


def test_levels_are_thirds_of_the_slices_with_myocardium():
    labels = np.zeros((10, 8, 8), dtype=np.uint8)
    labels[1:8, 2:6, 2:6] = 2  # 7 slices with myocardium: 1..7
    order = base_apex_order(Volume(labels), labels, basal_end="first")
    assert _levels(labels, order) == [None, "basal", "basal", "mid", "mid", "mid", "apical", "apical",
                                           None, None]
    last = base_apex_order(Volume(labels), labels, basal_end="last")
    assert _levels(labels, last) == [None, "apical", "apical", "mid", "mid", "mid", "basal", "basal",
                                          None, None]
    labels[8, 2:6, 2:6] = 2  # 8 slices: 3 / 3 / 2
    assert _levels(labels, order)[1:9] == ["basal"] * 3 + ["mid"] * 3 + ["apical"] * 2
    assert _levels(labels, None) == [None] * 10
    with pytest.raises(InputError, match="first"):
        base_apex_order(Volume(labels), labels, basal_end="top")


def test_a_stack_too_short_for_three_levels_says_which_segments_are_empty():
    """Two or one slices with myocardium (a partial stack): the thirds leave a level without slices, and its
    segments at 0 mL must not read as "no scar there"; the report says so (JSON, CSV, and as a warning)."""
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import bullseye_svg
    from scarnet.quantify import missing_levels_warning

    labels = _ring_labels(16.0, 56.0)
    for slices, missing, levels in ((7, None, None), (3, None, None), (2, "the apical segments (13-16)", "basal mid"),
                                    (1, "the basal and apical segments (1-6, 13-16)", "mid")):
        volume = _volume(labels[:slices].copy())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = quantify(volume, rv_insertion_lps=_point_along_i(volume, k=0), basal_end="first")
        said = [str(w.message) for w in caught]
        # Cut to 2 or 3 slices, the stack ends on a large cavity, and may stop short of the apex: as it does (a single
        # slice has nothing to compare with).
        short = [message for message in said if message.startswith(APICAL_COVERAGE_WARNING_START)]
        said = [message for message in said if message not in short]
        assert len(short) == (1 if slices in (2, 3) else 0)
        if missing is None:
            assert not said and "segment_warnings" not in report.extra
            assert ET.fromstring(bullseye_svg(report)).find(".//{*}text[@data-caption='levels']") is None
            continue
        assert [s.level for s in report.slices] == levels.split()
        assert len(said) == 1 and missing in said[0] and said[0].startswith(f"AHA segments: {slices} slice")
        assert report.warnings() == [*short, *said] and f'warning,"{said[0]}"' in report.to_csv()
        empty = [s.segment for s in report.segments if s.myocardium_ml == 0 and s.segment != 17]
        assert len(empty) == (4 if slices == 2 else 10)
        caption = ET.fromstring(bullseye_svg(report)).find(".//{*}text[@data-caption='levels']")
        assert caption.text == ("No apical slices: that ring is empty, not measured" if slices == 2 else
                                "No basal or apical slices: those rings are empty, not measured")
    assert missing_levels_warning([None, "basal", "mid", "apical", "apex"]) is None


def test_the_slices_beyond_the_cavity_are_the_apex():
    """Myocardium without a cavity at the apical end is the apex (segment 17); the thirds are of the slices with
    a cavity. A slice without a cavity between slices with one (a missed cavity) stays in its third, and so does
    one at the basal end; a stack without a cavity anywhere has no apex."""
    labels = np.zeros((11, 12, 12), dtype=np.uint8)
    labels[1:10, 2:10, 2:10] = 2  # myocardium on slices 1..9
    labels[1:8, 4:8, 4:8] = 1  # a cavity of 16 mm² on 1..7: 8 and 9 lie beyond it
    labels[4, 4:8, 4:8] = 2  # ... but not on 4, in the middle
    first = base_apex_order(Volume(labels), labels, basal_end="first")
    assert _levels(labels, first) == [None, "basal", "basal", "mid", "mid", "mid", "apical", "apical",
                                           APEX, APEX, None]
    last = base_apex_order(Volume(labels), labels, basal_end="last")  # 8 and 9 are basal then: no apex
    assert _levels(labels, last) == [None, "apical", "apical", "apical", "mid", "mid", "mid", "basal",
                                          "basal", "basal", None]
    # A cavity is what the myocardium encloses: a ring drawn without blood pool (background inside) is apical.
    ring = labels.copy()
    ring[7][ring[7] == 1] = 0
    assert _levels(ring, first)[7:10] == ["apical", APEX, APEX]
    # ... from 10 mm²: a stray voxel or two of blood pool on a cap slice is not a cavity, and the area is in mm².
    stray = labels.copy()
    stray[8, 9, 9] = stray[8, 9, 8] = 1
    assert _levels(stray, first)[7:10] == ["apical", APEX, APEX]
    assert _levels(stray, first, 5.0)[7:10] == ["apical", "apical", APEX]
    small = labels.copy()
    small[7, 4:8, 4:8] = 2
    small[7, 5:7, 5:7] = 1  # 4 pixels of blood pool on 7: 4 mm², or 10 mm² with 2.5 mm² pixels
    assert _levels(small, first)[5:10] == ["apical", "apical", APEX, APEX, APEX]
    assert _levels(small, first, 2.5)[5:10] == ["mid", "apical", "apical", APEX, APEX]
    labels[labels == 1] = 2
    assert APEX not in _levels(labels, first)


def _ring_labels_with_apex(scar_on_apex: bool) -> np.ndarray:
    """The rings (scar 16-56°) on slices 0-4, then two slices of solid myocardium beyond the cavity (the apex), the
    first of them scar on its septal half (towards +j) when ``scar_on_apex``."""
    labels = _ring_labels(16.0, 56.0)
    _, rows, cols = SHAPE
    rr, cc = np.mgrid[:rows, :cols]
    radius = np.hypot((rr - CENTRE_RC[0]) * SPACING[1], (cc - CENTRE_RC[1]) * SPACING[0])
    for z, disc_mm in ((5, 14.0), (6, 9.0)):
        labels[z] = 0
        labels[z][radius < disc_mm] = 2
    if scar_on_apex:
        labels[5][(radius < 14.0) & (rr > CENTRE_RC[0])] = 3
    return labels


def test_the_apex_is_segment_17():
    labels = _ring_labels_with_apex(scar_on_apex=True)
    volume = _volume(labels)
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    assert [s.level for s in report.slices] == ["basal", "basal", "mid", "mid", "apical", APEX, APEX]
    segments = _by_number(report)
    apex = segments[17]
    assert (apex.name, apex.level, apex.slices) == ("apex", APEX, [5, 6])
    beyond = np.isin(labels[5:], (2, 3, 4))
    assert apex.myocardium_ml == pytest.approx(beyond.sum() * volume.voxel_volume_ml)
    assert apex.scar_ml == pytest.approx((labels[5:] == 3).sum() * volume.voxel_volume_ml)
    assert 25 < apex.scar_percent < 50 and apex.scar_extent_score == 2  # half of the larger disc, none of the smaller
    # The apex's wall is cut across: no transmurality for it, nor for its slices (left out of the stack's too).
    assert apex.transmural_over_50_percent is None
    assert [s.transmural_over_50_percent is None for s in report.slices] == [False] * 5 + [True] * 2
    rings_only = quantify(_volume(labels[:5].copy()))
    assert report.total.transmural_over_50_percent == rings_only.total.transmural_over_50_percent
    assert report.total.scar_circumference_percent == rings_only.total.scar_circumference_percent
    # Nothing of the apex slices is in the apical segments, and every voxel is in one segment.
    assert all(5 not in segments[n].slices and 6 not in segments[n].slices for n in range(1, 17))
    assert sum(s.myocardium_ml for s in report.segments) == pytest.approx(report.total.myocardium_ml, rel=1e-6)
    assert sum(s.scar_ml for s in report.segments) == pytest.approx(report.total.scar_ml, rel=1e-6)
    assert {n for n, s in segments.items() if s.scar_ml > 0} == {2, 8, 14, 17}
    assert report.segment_summary() == {"segments_with_scar": 4, "segments_over_50_percent": 2, "scar_score": 10,
                                        "scar_score_max": 68}
    # An inferior point marked on an apex slice: its septal arc is checked on the nearest slice with angles (4).
    inferior_on_apex = _point_at_angle(volume, 100.0) + 2 * SPACING[2] * volume.slice_normal
    both = quantify(volume, rv_insertion_lps=np.stack([_point_along_i(volume), inferior_on_apex]))
    assert _by_number(both)[17].scar_ml == apex.scar_ml and both.septal_span_deg == pytest.approx(100.0, abs=0.5)
    swapped = _point_at_angle(volume, 240.0) + 2 * SPACING[2] * volume.slice_normal
    with pytest.raises(InputError, match="on slice 4 the inferior RV insertion point lies 240°"):
        quantify(volume, rv_insertion_lps=np.stack([_point_along_i(volume), swapped]))


def test_the_bullseye_fills_the_apex():
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import GRADE_COLOURS, bullseye_svg

    volume = _volume(_ring_labels_with_apex(scar_on_apex=True))
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    svg = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(bullseye_svg(report))
    apex = next(c for c in root.iter(f"{svg}circle") if c.get("data-segment") == "17")
    assert apex.get("fill") == GRADE_COLOURS[2] and apex.get("data-grade") == "2"
    assert apex.find(f"{svg}title").text.startswith("17 apex: 3")
    assert not any(c.get("stroke-dasharray") for c in root.iter(f"{svg}circle"))
    # A report stored before the apex was reported (16 segments) draws it empty and dashed, as then.
    data = json.loads(report.to_json())
    data["segments"] = data["segments"][:16]
    old = ET.fromstring(bullseye_svg(data))
    assert [c.get("stroke-dasharray") for c in old.iter(f"{svg}circle")] == ["3,3"]
    assert sum(1 for e in old.iter() if e.get("data-segment")) == 16
    # Just under 1 % reads "<1 %", and under 0.01 % "<0.01 %": escaped, the picture stays XML (Slicer's panel and
    # any viewer refuse one that is not).
    data["segments"][0].update(scar_percent=0.997, scar_extent_score=0)
    data["segments"][1].update(scar_percent=0.004, scar_extent_score=0)
    titles = {e.get("data-segment"): e.find(f"{svg}title").text for e in ET.fromstring(bullseye_svg(data)).iter()
              if e.get("data-segment") in ("1", "2")}
    assert titles["1"].endswith(": <1 %") and titles["2"].endswith(": <0.01 %")


@pytest.mark.parametrize("seed", range(8))
def test_phantom_apex_is_its_slices_beyond_the_cavity(seed):
    """On phantoms (half of them have slices beyond the cavity), segment 17 holds exactly the myocardium of the
    slices after the last one with blood pool, from base to apex."""
    phantom = make_phantom(seed, infarct=True)
    labels = phantom.labelmap.array
    report = quantify(phantom.labelmap, rv_insertion_lps=anterior_rv_insertion_lps(phantom))
    ordered = [k for k in range(labels.shape[0]) if np.isin(labels[k], (2, 3, 4)).any()]
    if not report.base_apex.base_first:
        ordered = ordered[::-1]
    with_pool = [k for k in ordered if (labels[k] == 1).any()]
    beyond = ordered[ordered.index(with_pool[-1]) + 1:]
    apex = _by_number(report)[17]
    assert sorted(apex.slices) == sorted(beyond)
    expected_ml = np.isin(labels[beyond], (2, 3, 4)).sum() * phantom.labelmap.voxel_volume_ml
    assert apex.myocardium_ml == pytest.approx(expected_ml)
    assert sum(s.myocardium_ml for s in report.segments) == pytest.approx(report.total.myocardium_ml, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 3, 4, 10, 11])
def test_base_and_apex_from_the_patient_axes_and_from_the_cavity(seed):
    phantom = make_phantom(seed, infarct=True)
    base_first = phantom.info["slice_order"] == "base_to_apex"
    labels = phantom.labelmap.array
    order = base_apex_order(phantom.labelmap, labels)
    assert (order.base_first, order.source) == (base_first, "patient axes")
    # The same stack without real orientation (a PNG stack, EMIDEC's NIfTI): the cavity decides.
    plain = Volume(labels, phantom.labelmap.spacing_mm)
    order = base_apex_order(plain, labels)
    assert (order.base_first, order.source) == (base_first, "cavity size")


def test_no_base_apex_order_without_a_cavity_trend():
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[:, 5:15, 5:15] = 2
    labels[:, 8:12, 8:12] = 1  # the same cavity on every slice
    assert base_apex_order(Volume(labels), labels) is None
    report = quantify(Volume(labels))
    assert report.base_apex is None and all(s.level is None for s in report.slices)
    with pytest.raises(InputError, match="basal"):
        quantify(Volume(labels), rv_insertion_lps=np.array([0.0, 0.0, 0.0]))


def test_scar_in_one_sector_lands_in_its_segments():
    """Scar through the wall 16-56° from the insertion, turning towards the septum: anteroseptal
    (2, 8) and apical septal (14, from 15°); no other segment has scar."""
    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    # The normal points to the apex when k runs base → apex: here the cavity shrinks along k.
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    assert report.base_apex.to_dict()["basal_end"] == "first"
    assert report.segment_angles_from == ANGLES_FROM_PATIENT_AXES
    segments = _by_number(report)
    scarred = {n for n, s in segments.items() if s.scar_ml > 0}
    assert scarred == {2, 8, 14}
    for number in (2, 8):
        assert 58 < segments[number].scar_percent < 74  # 40° of a 60° segment
        assert segments[number].scar_extent_score == 3
        assert 58 < segments[number].transmural_over_50_percent < 74
    assert 38 < segments[14].scar_percent < 50  # 40° of a 90° segment
    assert segments[14].scar_extent_score == 2
    assert segments[1].scar_percent == 0 and segments[1].scar_extent_score == 0
    # Every myocardium voxel is in one segment.
    assert sum(s.myocardium_ml for s in report.segments) == pytest.approx(report.total.myocardium_ml, rel=1e-6)
    assert sum(s.scar_ml for s in report.segments) == pytest.approx(report.total.scar_ml, rel=1e-6)
    assert [s.level for s in report.slices] == ["basal"] * 2 + ["mid"] * 3 + ["apical"] * 2
    assert segments[2].slices == [0, 1] and segments[8].slices == [2, 3, 4] and segments[14].slices == [5, 6]


def test_the_inferior_insertion_point_sizes_the_septum():
    """Both RV insertion points, the septum 90° wide: its halves are anteroseptal (0-45°) and inferoseptal
    (45-90°), the apical septal segment 11-79°. Scar at 50-85° is then inferoseptal only at base and mid;
    with the anterior point alone (septum 120°) it is partly anteroseptal."""
    labels = _ring_labels(50.0, 85.0)
    volume = _volume(labels)
    anterior, inferior = _point_along_i(volume), _point_at_angle(volume, 90.0)
    report = quantify(volume, rv_insertion_lps=np.stack([anterior, inferior]))
    assert report.septal_span_deg == pytest.approx(90.0, abs=0.5)
    segments = _by_number(report)
    assert {n for n, s in segments.items() if s.scar_ml > 0} == {3, 9, 14, 15}
    for number in (3, 9):
        assert 70 < segments[number].scar_percent < 86  # 35° of a 45° segment
        assert segments[number].scar_extent_score == 4
    assert segments[14].scar_ml > 4 * segments[15].scar_ml  # 50-79° septal, 79-85° inferior
    assert sum(s.myocardium_ml for s in report.segments) == pytest.approx(report.total.myocardium_ml, rel=1e-6)
    # The free wall is quartered: the inferior segment spans 90-157.5°, the anterior one 292.5-360°.
    assert segments[4].myocardium_ml == pytest.approx(segments[1].myocardium_ml, rel=0.1)
    assert segments[4].myocardium_ml == pytest.approx(1.5 * segments[2].myocardium_ml, rel=0.1)  # 67.5° vs 45°

    single = quantify(volume, rv_insertion_lps=anterior)
    assert single.septal_span_deg is None
    assert {s.segment for s in single.segments if s.scar_ml > 0} == {2, 3, 8, 9, 14}
    # An inferior point at 120° is the AHA's equal segments: the same figures as the anterior point alone.
    equal = quantify(volume, rv_insertion_lps=np.stack([anterior, _point_at_angle(volume, 120.0)]))
    assert [v for s in equal.segments for v in (s.myocardium_ml, s.scar_ml)] == pytest.approx(
        [v for s in single.segments for v in (s.myocardium_ml, s.scar_ml)])
    data = json.loads(report.to_json())
    assert data["septal_span_deg"] == pytest.approx(90.0, abs=0.5)
    assert ["septal_span_deg", "90"] in list(csv.reader(io.StringIO(report.to_csv())))
    assert json.loads(single.to_json())["septal_span_deg"] is None


def test_the_septal_arc_follows_the_lv_centre_from_slice_to_slice():
    """The LV centre drifts 3 mm a slice along the rows (the long axis is not the slice normal). Points
    marked on slice 3 at 0° and 150° make a different arc about each slice's centre: 121° on slice 0 and
    184° on slice 6, which is kept at 180° there (a projection, not where the point was marked). The
    report's arc is the mean over the slices. An inferior point marked on slice 6 with that arc is refused."""
    k, rows, cols = SHAPE
    rr, cc = np.mgrid[:rows, :cols]
    labels = np.zeros(SHAPE, dtype=np.uint8)
    centres_rc = [(CENTRE_RC[0] + 2 * (z - 3), CENTRE_RC[1]) for z in range(k)]
    for z, (row, col) in enumerate(centres_rc):
        radius = np.hypot((rr - row) * SPACING[1], (cc - col) * SPACING[0])
        cavity = 22.0 - 2.0 * z
        labels[z][radius < cavity] = 1
        labels[z][(radius >= cavity) & (radius < cavity + 9.0)] = 2
    volume = _volume(labels)
    anterior, inferior = _point_along_i(volume), _point_at_angle(volume, 150.0)
    report = quantify(volume, rv_insertion_lps=np.stack([anterior, inferior]))

    def arc(z: int) -> float:  # in (column, row) mm about slice z's centre; the points lie in slice 3's plane
        shift = np.array([0.0, (centres_rc[z][0] - CENTRE_RC[0]) * SPACING[1]])
        to_anterior = np.array([30.0, 0.0]) - shift
        to_inferior = 30.0 * np.array([np.cos(np.radians(150.0)), np.sin(np.radians(150.0))]) - shift
        angles = np.degrees(np.arctan2([to_anterior[1], to_inferior[1]], [to_anterior[0], to_inferior[0]]))
        return float((angles[1] - angles[0]) % 360.0)

    assert arc(0) == pytest.approx(120.6, abs=0.1) and arc(6) == pytest.approx(183.7, abs=0.1)
    expected = np.mean([min(arc(z), 180.0) for z in range(k)])
    assert report.septal_span_deg == pytest.approx(expected, abs=0.05)
    marked_on_6 = _point_at_angle(volume, 170.0) + 3 * SPACING[2] * volume.slice_normal
    with pytest.raises(InputError, match="on slice 6 the inferior RV insertion point lies 20[0-9]°"):
        quantify(volume, rv_insertion_lps=np.stack([anterior, marked_on_6]))


def test_inferior_insertion_points_that_cannot_be_are_refused():
    labels = _ring_labels(50.0, 85.0)
    volume = _volume(labels)
    anterior = _point_along_i(volume)
    with pytest.raises(InputError, match="240° from the anterior one.*swapped"):
        quantify(volume, rv_insertion_lps=np.stack([anterior, _point_at_angle(volume, 240.0)]))
    with pytest.raises(InputError, match="swapped"):  # the septum turned the wrong way: the two marked swapped
        quantify(volume, rv_insertion_lps=np.stack([_point_at_angle(volume, 100.0), anterior]))
    with pytest.raises(InputError, match="only 30° from the anterior one.*at the back"):
        quantify(volume, rv_insertion_lps=np.stack([anterior, _point_at_angle(volume, 30.0)]))
    with pytest.raises(InputError, match=r"the inferior RV insertion point is \d+ mm from the LV myocardium"):
        quantify(volume, rv_insertion_lps=np.stack([anterior, _point_at_angle(volume, 100.0, distance_mm=60.0)]))
    with pytest.raises(InputError, match="basal end wrong"):  # right points, the wrong end given as basal
        quantify(volume, basal_end="last", rv_insertion_lps=np.stack([anterior, _point_at_angle(volume, 100.0)]))
    with pytest.raises(InputError, match=r"one LPS point, shape \(3,\) .* or two, shape \(2, 3\)"):
        quantify(volume, rv_insertion_lps=np.zeros((3, 3)))  # a caller's mistake: still one catchable InputError
    with pytest.raises(InputError, match=r"got an array of shape \(0,\)"):
        quantify(volume, rv_insertion_lps=[[1.0, 2.0, 3.0], [1.0]])  # ragged
    with pytest.raises(ValueError, match="septal span"):
        segment_of_angle("mid", np.array([10.0]), 360.0)
    plain = Volume(labels, SPACING)  # no orientation: the image may be seen from the base
    with pytest.raises(InputError, match="mirrored"):
        quantify(plain, rv_insertion_lps=np.stack([_point_along_i(plain), _point_at_angle(plain, 100.0)]))


def test_the_other_base_apex_order_mirrors_the_segments():
    """Seen from the other end, the turn towards the septum is the other way: the same sector is anterior."""
    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    with pytest.warns(UserWarning, match="given as the last slice, but the LV cavity narrows"):
        report = quantify(volume, basal_end="last", rv_insertion_lps=_point_along_i(volume))
    assert report.base_apex.to_dict() == {"basal_end": "last", "from": "given"}
    scarred = {s.segment for s in report.segments if s.scar_ml > 0}
    assert scarred == {1, 7, 13}
    # The bullseye, often printed alone, says it too: its rings follow an end the images contradict.
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import bullseye_svg

    # (A caption too long for one row of the picture runs on to a second: its rows are tspans.)
    captions = {t.get("data-caption"): " ".join(t.itertext()) for t in ET.fromstring(bullseye_svg(report)).iter()
                if t.get("data-caption")}
    assert captions["basal-end"] == ("Basal end as given, against the images': basal and apical rings may be "
                                     "exchanged and septum mirrored")  # an oriented stack: the septum's side too
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        agreeing = quantify(volume, basal_end="first", rv_insertion_lps=_point_along_i(volume))
    assert 'data-caption="basal-end"' not in bullseye_svg(agreeing)


@pytest.mark.parametrize("oriented", [True, False])
def test_a_given_basal_end_that_the_image_contradicts_is_kept_and_said(oriented):
    """The user's basal end wins (a header can be wrong), but where the patient axes (an oriented stack) or the
    cavity (one without orientation) say the other end, a wrong one would exchange basal and apical and mirror the
    septum without a sign in the figures: the report says so, in its warnings. An agreeing end, or a stack that
    says nothing (no orientation, no cavity trend), is quiet."""
    if oriented:  # a short-axis phantom, its slices along the LV long axis
        phantom = make_phantom(0, infarct=True)
        volume, base_first = phantom.labelmap, phantom.info["slice_order"] == "base_to_apex"
    else:  # rings whose cavity narrows along k, without orientation
        volume, base_first = Volume(_ring_labels(16.0, 56.0), SPACING), True
    right, wrong = ("first", "last") if base_first else ("last", "first")
    why = f"the image's orientation puts the base at the {right} slice" if oriented else \
        f"the LV cavity narrows towards the {wrong} slice"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = quantify(volume, basal_end=wrong)
    said = [str(w.message) for w in caught]
    # Its apical end as given is the base, a large cavity: the stack may stop short of the apex, said too.
    short = [message for message in said if message.startswith(APICAL_COVERAGE_WARNING_START)]
    said = [message for message in said if message not in short]
    assert len(short) == 1 and report.to_dict()["labelmap_warnings"] == short
    assert len(said) == 1 and said[0].startswith(f"AHA levels: the basal end was given as the {wrong} slice") \
        and why in said[0] and "check it" in said[0]
    # The septum's side follows the basal end only where the patient axes give it (an image without orientation is
    # read as displayed, whichever end is basal).
    assert ("basal and apical are exchanged and the septum is mirrored: check it" in said[0]) == oriented
    assert "basal and apical are exchanged" in said[0]
    assert report.warnings() == [*short, *said] and report.to_dict()["segment_warnings"] == said
    assert report.base_apex.to_dict() == {"basal_end": wrong, "from": "given"}
    levels = [s.level for s in report.slices if s.level is not None]
    assert levels[0 if wrong == "first" else -1] == "basal"  # kept as given
    # An agreeing end; a stack without orientation or cavity trend.
    flat = Volume(np.repeat(volume.array[volume.array.shape[0] // 2][None], 7, axis=0), SPACING)
    for quiet, end, cut_short in ((volume, right, False), (flat, wrong, True)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            said = quantify(quiet, basal_end=end).warnings()
        # Nothing of the basal end; the flat stack, as wide at both ends as in its middle, may stop short of the apex.
        assert [str(w.message) for w in caught] == said
        assert [message.startswith(APICAL_COVERAGE_WARNING_START) for message in said] == ([True] if cut_short else [])


def test_an_image_without_orientation_is_read_as_displayed_seen_from_the_apex():
    """No real orientation (identity direction, as a PNG stack has): which way is the septum cannot come
    from the patient axes. The image is taken as shown (row 0 at the top) and seen from the apex, so
    counter-clockwise on the screen is towards the septum, whichever end of the stack is basal. Scar at
    16-56° from the columns' direction towards the rows (clockwise on the screen) is anterior."""
    labels = _ring_labels(16.0, 56.0)
    from scarnet.quantify import MIRROR_WARNING

    for stack in (labels, labels[::-1].copy()):  # base first, then base last
        volume = Volume(stack, SPACING)
        with pytest.warns(UserWarning, match="the image has no usable short-axis orientation"):
            report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
        assert report.base_apex.source == "cavity size"
        assert report.segment_angles_from == ANGLES_FROM_DISPLAY
        assert {s.segment for s in report.segments if s.scar_ml > 0} == {1, 7, 13}
        # Said in every output that carries the report's warnings (CSV rows, page, bullseye, summary.csv).
        assert report.warnings() == [MIRROR_WARNING] and f"warning,\"{MIRROR_WARNING}\"" in report.to_csv()
    mirrored = Volume(labels[:, ::-1, :].copy(), SPACING)  # the same rings seen from the other side
    with pytest.warns(UserWarning, match="septum and lateral wall are exchanged"):
        report = quantify(mirrored, rv_insertion_lps=_point_along_i(mirrored))
    assert {s.segment for s in report.segments if s.scar_ml > 0} == {2, 8, 14}  # what the warning is about
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import bullseye_svg

    root = ET.fromstring(bullseye_svg(report))
    captions = {t.get("data-caption"): t for t in root.iter() if t.get("data-caption")}
    assert captions["angles"].text.startswith("No short-axis orientation: septum side taken as displayed")
    # ... and the picture, which cannot show a mirror, says what the warning asks (a fifth caption, inside it).
    assert captions["mirror"].text == ("Mirrored? Septum and lateral wall would be swapped: mark the inferior RV "
                                       "point too")
    # The apex beyond the cavity has no slice here: not imaged, said rather than shown as an empty grey disc.
    assert captions["apex"].text == "17 apex: not imaged (no slice beyond the LV cavity), so not assessed"
    assert list(captions) == ["septum", "summary", "angles", "mirror", "apex", "intended-use"]
    assert float(captions["intended-use"].get("y")) < float(root.get("height"))
    assert root.get("viewBox").split()[3] == root.get("height")
    oriented = _volume(labels)  # an oblique short-axis stack: the patient axes say which way; no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        oriented_report = quantify(oriented, rv_insertion_lps=_point_along_i(oriented))
    assert oriented_report.warnings() == []
    assert 'data-caption="mirror"' not in bullseye_svg(oriented_report)


def test_segments_do_not_depend_on_how_the_stack_is_stored():
    """Rows stored reversed (a left-handed grid) or slices stored along i: the same physical scar, the
    same segments."""
    labels = _ring_labels(100.0, 170.0)
    volume = _volume(labels)
    point = _point_along_i(volume)
    def figures(report) -> list[float]:
        return [value for s in report.segments for value in (s.segment, s.myocardium_ml, s.scar_ml)]

    expected = figures(quantify(volume, rv_insertion_lps=point))
    assert any(scar > 0 for scar in expected[2::3])

    direction = volume.direction.copy()
    direction[:, 1] *= -1
    origin = volume.index_to_physical(np.array([0.0, SHAPE[1] - 1, 0.0]))
    reversed_rows = Volume(labels[:, ::-1, :].copy(), SPACING, tuple(origin), direction)
    assert figures(quantify(reversed_rows, rv_insertion_lps=point)) == pytest.approx(expected)

    stack = StackAxis(0)
    stored = Volume(stack.undo(labels), stack.swap(SPACING), ORIGIN, volume.direction[:, [2, 1, 0]])
    report = quantify(stored, rv_insertion_lps=point)
    assert report.slice_axis == "i"
    assert figures(report) == pytest.approx(expected)


def test_an_image_without_orientation_gives_the_same_segments_however_it_is_stored():
    """No short-axis orientation: taken as a viewer shows it, its direction applied. Columns or rows stored reversed,
    or the two swapped (a re-storage 3D Slicer displays the same) gave septum and lateral wall exchanged."""
    labels = _ring_labels(16.0, 56.0)
    shown = Volume(labels, SPACING)  # identity direction: shown as stored
    point = _point_along_i(shown)

    def segments(volume: Volume) -> list[float]:
        with pytest.warns(UserWarning, match="no usable short-axis orientation"):
            report = quantify(volume, rv_insertion_lps=point)
        assert report.segment_angles_from == ANGLES_FROM_DISPLAY
        return [s.scar_ml for s in report.segments]  # segments 1 to 17 in order

    expected = segments(shown)
    assert {number for number, scar in enumerate(expected, start=1) if scar > 0} == {1, 7, 13}
    last_row, last_column = labels.shape[1] - 1, labels.shape[2] - 1
    for flip_rows, flip_columns, swap in [(False, True, False), (True, False, False), (True, True, False),
                                          (False, False, True), (True, False, True)]:
        array, direction, spacing = labels, np.eye(3), SPACING
        if flip_rows:
            array = array[:, ::-1, :]
            direction[:, 1] *= -1
        if flip_columns:
            array = array[:, :, ::-1]
            direction[:, 0] *= -1
        # Voxel (0, 0) of the stored grid is the original's corner the flips brought there; a swap keeps it.
        origin = shown.index_to_physical(np.array([last_column if flip_columns else 0.0,
                                                   last_row if flip_rows else 0.0, 0.0]))
        if swap:
            array, direction, spacing = array.transpose(0, 2, 1), direction[:, [1, 0, 2]], (SPACING[1], SPACING[0],
                                                                                            SPACING[2])
        stored = Volume(np.ascontiguousarray(array), spacing, tuple(origin), direction)
        centre = np.array([array.shape[2] / 2, array.shape[1] / 2, 3.0])  # the same physical voxels
        assert labels[3][tuple(np.round(shown.physical_to_index(stored.index_to_physical(centre))[[1, 0]]).astype(
            int))] == array[3][int(centre[1]), int(centre[0])]
        assert segments(stored) == pytest.approx(expected), (flip_rows, flip_columns, swap)


@pytest.mark.parametrize("seed, territory_segments", [
    (0, {1, 2, 7, 8, 13, 14, 17}),  # LAD: anterior and anteroseptal, and the apex
    (1, {1, 2, 7, 8, 13, 14, 17}),
    (3, {5, 6, 11, 12, 16}),  # LCX: lateral
    (6, {5, 6, 11, 12, 16}),
    (10, {3, 4, 9, 10, 15}),  # RCA: inferior and inferoseptal
    (11, {3, 4, 9, 10, 14, 15}),
])
def test_phantom_infarcts_fall_in_their_coronary_territory(seed, territory_segments):
    """Phantoms with an infarct in a known territory, the RV insertion marked where the phantom's RV meets
    its septum (on the epicardium of the middle slice): the anterior point alone, then both."""
    phantom = make_phantom(seed, infarct=True)
    anterior, inferior = anterior_rv_insertion_lps(phantom), inferior_rv_insertion_lps(phantom)
    # With both points the septum is the phantom's own (112-140° for these seeds), so the free-wall segments
    # are narrower than 60° and a large infarct reaches further into its neighbours (seed 6: LCX into the
    # inferior segments, 78 % inside).
    for points, share in ((anterior, 0.8), (np.stack([anterior, inferior]), 0.75)):
        report = quantify(phantom.labelmap, rv_insertion_lps=points)
        scar_by_segment = {s.segment: s.scar_ml for s in report.segments}
        total = sum(scar_by_segment.values())
        inside = sum(scar_by_segment[n] for n in territory_segments)
        assert inside > share * total, (phantom.info["territory"], points.shape, scar_by_segment)


def test_bad_rv_insertion_points_are_refused():
    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    centre = volume.index_to_physical(np.array([CENTRE_RC[1], CENTRE_RC[0], 3]))
    with pytest.raises(InputError, match="LV axis"):
        quantify(volume, rv_insertion_lps=centre + 8.0 * volume.direction[:, 2])  # on the axis, another slice
    with pytest.raises(InputError, match="from the LV myocardium of slice 3.*RAS"):
        quantify(volume, rv_insertion_lps=_point_along_i(volume, distance_mm=60.0))
    assert quantify(volume, rv_insertion_lps=_point_along_i(volume, distance_mm=40.0)).segments  # 15 mm outside
    with pytest.raises(InputError, match="beyond the slices"):
        quantify(volume, rv_insertion_lps=_point_along_i(volume, k=6) + 20.0 * volume.slice_normal)
    with pytest.raises(InputError, match="NaN"):
        quantify(volume, rv_insertion_lps=np.array([np.nan, 0.0, 0.0]))


def test_report_carries_levels_and_segments():
    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    data = json.loads(report.to_json())
    assert data["base_apex"] == {"basal_end": "first", "from": "cavity size"}
    assert [s["level"] for s in data["slices"]][:2] == ["basal", "basal"]
    assert [s["segment"] for s in data["segments"]] == list(range(1, 18))
    # Every slice has a cavity: no apex, and segment 17 says so with no figures.
    assert data["segments"][16] == {"segment": 17, "name": "apex", "level": "apex", "slices": [],
                                    "myocardium_ml": 0.0, "scar_ml": 0.0, "mvo_ml": 0.0, "scar_percent": None,
                                    "scar_extent_score": None, "transmural_over_50_percent": None,
                                    "scar_transmurality_mean_percent": None, "scar_slices": []}
    assert data["segments"][1]["name"] == "basal anteroseptal" and data["segments"][1]["scar_extent_score"] == 3
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows[0][-2:] == ["level", "qc_flags"] and rows[1][-2] == "basal"
    start = rows.index(["segment", "name", "level", "slices", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent",
                        "scar_extent_score", "transmural_over_50_percent", "scar_transmurality_mean_percent",
                        "scar_slices"])
    assert [row[0] for row in rows[start + 1:]] == [str(n) for n in range(1, 18)]
    assert rows[start + 2][3] == "0;1"
    # Segment 2's scar, its mean transmurality and slices, as in the JSON; none in segment 1.
    assert float(rows[start + 2][10]) == pytest.approx(data["segments"][1]["scar_transmurality_mean_percent"],
                                                       abs=0.01)
    assert rows[start + 2][11] == ";".join(map(str, data["segments"][1]["scar_slices"])) != ""
    assert rows[start + 1][10:] == ["", ""]
    # The apex not imaged: empty cells in the CSV as on the page, not 0 mL measured (the JSON says it by its slices).
    assert rows[start + 17][:7] == ["17", "apex", "apex", "", "", "", ""]
    # Scar through 40° of each 60° segment 2 and 8 (grade 3) and of the 90° segment 14 (grade 2).
    assert data["segment_summary"] == {"segments_with_scar": 3, "segments_over_50_percent": 2, "scar_score": 8,
                                       "scar_score_max": 64}
    assert ["segments_over_50_percent", "2"] in rows and ["scar_score", "8"] in rows
    # The point the segments rest on, in RAS mm as Slicer shows it: in the JSON, the CSV and on the page.
    given = _point_along_i(volume)
    ras = [round(-given[0], 2), round(-given[1], 2), round(given[2], 2)]
    assert data["rv_insertion_ras_mm"] == {"anterior": pytest.approx(ras), "inferior": None}
    assert [float(v) for v in next(r for r in rows if r[:1] == ["rv_insertion_anterior_ras_mm"])[1:]] == \
        pytest.approx(ras)
    assert not any(r[:1] == ["rv_insertion_inferior_ras_mm"] for r in rows)
    from scarnet.report_html import report_html

    page = " ".join(report_html(report, "lge").split())
    assert f"RV insertion points (RAS mm, as Slicer shows them): anterior ({ras[0]:.1f}, {ras[1]:.1f}, " in page
    plain = json.loads(quantify(volume).to_json())
    assert plain["segments"] is None and plain["base_apex"]["from"] == "cavity size"
    assert plain["rv_insertion_ras_mm"] is None
    assert plain["segment_summary"] is None
    assert "segment,name" not in quantify(volume).to_csv()


def test_command_line_rv_insertion(tmp_path):
    """RAS on the command line (as Slicer shows points): the segments match the LPS point given in Python."""
    from scarnet.io import write_labelmap

    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    write_labelmap(volume, tmp_path / "lab.nrrd")
    point = _point_along_i(volume)
    ras = [f"{-point[0]:.4f}", f"{-point[1]:.4f}", f"{point[2]:.4f}"]
    assert ras[0].startswith("-")  # a negative first coordinate is a value, not an option

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "quantify", "lab.nrrd", *args], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)

    result = run("--rv-insertion", *ras, "--report", "r.json")
    assert result.returncode == 0, result.stderr
    assert "AHA segments" in result.stdout and "basal anteroseptal" in result.stdout
    segments = json.loads((tmp_path / "r.json").read_text())["segments"]
    assert [s["scar_ml"] > 0 for s in segments] == [n in (2, 8, 14) for n in range(1, 18)]

    inferior = _point_at_angle(volume, 90.0)
    inferior_ras = [f"{-inferior[0]:.4f}", f"{-inferior[1]:.4f}", f"{inferior[2]:.4f}"]
    result = run("--rv-insertion", *ras, "--rv-inferior-insertion", *inferior_ras, "--report", "both.json")
    assert result.returncode == 0, result.stderr
    assert "septum 90° between the RV insertion points" in " ".join(result.stdout.split())
    both = json.loads((tmp_path / "both.json").read_text())
    assert both["septal_span_deg"] == pytest.approx(90.0, abs=0.5)
    # The septum 90° wide: scar at 16-56° now reaches the inferoseptal half (45-90°).
    assert [s["scar_ml"] > 0 for s in both["segments"]] == [n in (2, 3, 8, 9, 14) for n in range(1, 18)]

    lps_by_mistake = [f"{value:.4f}" for value in point]
    for args, message in [(["--rv-insertion", "1", "2"], "3 arguments"),
                          (["--rv-insertion", "1", "2", "nan"], "a number of mm"),
                          (["--rv-insertion", *lps_by_mistake], "RAS"),
                          (["--rv-inferior-insertion", *inferior_ras], "needs --rv-insertion"),
                          (["--rv-insertion", *inferior_ras, "--rv-inferior-insertion", *ras], "swapped")]:
        result = run(*args, "--report", "bad.json")
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        assert not (tmp_path / "bad.json").exists()


@requires_torch
def test_a_point_that_cannot_be_the_insertion_does_not_cost_the_model_run(tmp_path):
    """``scarnet segment`` with a point far from the heart: the segmentation and report are written, with a
    warning and no segments, rather than the finished run thrown away."""
    phantom = make_phantom(3, infarct=True)
    from scarnet.io import write_volume

    write_volume(phantom.image, tmp_path / "lge.nrrd")
    far = phantom.image.index_to_physical(np.zeros(3)) - 200.0 * phantom.image.direction[:, 0]
    ras = [f"{-far[0]:.3f}", f"{-far[1]:.3f}", f"{far[2]:.3f}"]
    result = subprocess.run([sys.executable, "-m", "scarnet", "segment", "lge.nrrd", "--device", "cpu", "--quiet",
                             "--rv-insertion", *ras, "--report", "r.json", "--labelmap", "lab.nrrd"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["segments"] is None and (tmp_path / "lab.nrrd").exists()
    assert any(w.startswith("no AHA segments: the RV insertion point") for w in report["inference"]["warnings"])


@pytest.mark.parametrize("seed", [0, 7, 21])
@pytest.mark.parametrize("which", ["anterior", "inferior"])
def test_the_phantom_knows_its_rv_insertion_points(seed, which):
    """The outermost myocardium voxel of the middle slice in the direction of the phantom's RV insertion angle."""
    phantom = make_phantom(seed)
    point = (anterior_rv_insertion_lps if which == "anterior" else inferior_rv_insertion_lps)(phantom)
    frame = phantom.info["lv_frame_lps"]
    lateral, anterior = np.asarray(frame["lateral"]), np.asarray(frame["anterior"])
    labels, volume = phantom.labelmap.array, phantom.labelmap
    k = int(np.rint(np.linalg.solve(volume.direction @ np.diag(volume.spacing_mm),
                                    point - np.asarray(volume.origin_mm))[2]))
    rows, cols = np.nonzero(labels[k] == 1)
    centre = volume.index_to_physical(np.array([cols.mean(), rows.mean(), k]))
    wall = np.argwhere(np.isin(labels[k], (2, 3, 4)))  # (row, col)
    wall_lps = volume.index_to_physical(np.column_stack([wall[:, 1], wall[:, 0], np.full(len(wall), k)]))
    assert np.linalg.norm(wall_lps - point, axis=1).min() < 1e-6  # a myocardium voxel's centre
    towards = point - centre
    angle = np.degrees(np.arctan2(towards @ anterior, towards @ lateral))
    expected = phantom.info["lv"][f"rv_insertion_{which}_deg"]
    assert abs((angle - expected + 180.0) % 360.0 - 180.0) < 5.0
    # No myocardium further out along that direction: the epicardium, not the endocardium.
    direction = towards / np.linalg.norm(towards)
    offsets = wall_lps - centre
    along = offsets @ direction
    on_the_ray = np.linalg.norm(offsets - np.outer(along, direction), axis=1) <= max(volume.spacing_mm[:2]) / 2
    assert along[on_the_ray].max() <= float(towards @ direction) + 1e-6


def test_bullseye_draws_each_segment_in_its_place_and_grade():
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import GRADE_COLOURS, NO_MYOCARDIUM_COLOUR, bullseye_svg, segment_geometry

    labels = _ring_labels(16.0, 56.0)
    volume = _volume(labels)
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    root = ET.fromstring(bullseye_svg(report))
    paths = {int(p.get("data-segment")): p for p in root.iter("{http://www.w3.org/2000/svg}path")}
    assert sorted(paths) == list(range(1, 17))
    # The apex (17): the disc in the middle, grey here (no slice beyond the cavity).
    apex = next(c for c in root.iter("{http://www.w3.org/2000/svg}circle") if c.get("data-segment") == "17")
    assert apex.get("fill") == NO_MYOCARDIUM_COLOUR and apex.get("data-grade") == ""
    assert "no slice beyond the cavity" in apex.find("{http://www.w3.org/2000/svg}title").text
    assert segment_geometry(17) == (0.0, 360.0, 0.0, 0.25)
    grades = {s.segment: s.scar_extent_score for s in report.segments}
    for number, path in paths.items():
        assert path.get("fill") == GRADE_COLOURS[grades[number]], number
    assert paths[2].get("fill") == GRADE_COLOURS[3] and paths[14].get("fill") == GRADE_COLOURS[2]
    # The usual map: anterior at the top, septum on the left, inferior at the bottom, lateral on the right.
    middle = {n: ((segment_geometry(n)[0] + segment_geometry(n)[1]) / 2) % 360 for n in range(1, 17)}
    assert [middle[n] for n in (1, 2, 3, 4, 5, 6)] == [90, 150, 210, 270, 330, 30]
    assert [middle[n] for n in (7, 13, 14, 15, 16)] == [90, 90, 180, 270, 0]
    assert segment_geometry(1)[2:] == (0.75, 1.0) and segment_geometry(13)[2:] == (0.25, 0.5)
    # ... and where the picture draws them: each number label relative to the map's centre (SVG y grows down).
    svg = "{http://www.w3.org/2000/svg}"
    cx, cy = float(apex.get("cx")), float(apex.get("cy"))
    children = list(root)
    label = {}
    for i, child in enumerate(children):
        if child.get("data-segment"):
            text = children[i + 1]
            assert text.text == child.get("data-segment")
            label[int(text.text)] = (float(text.get("x")) - cx, cy - float(text.get("y")))  # (right, up)
    assert label[17] == (0, 2)  # the apex in the middle (its number just above the centre, its % below)
    for number in (1, 7, 13):
        assert label[number][1] > 0 and abs(label[number][0]) < 1  # top
    for number in (2, 3, 8, 9, 14):
        assert label[number][0] < 0  # septum on the left
    for number in (5, 6, 11, 12, 16):
        assert label[number][0] > 0  # lateral on the right
    for number in (4, 10, 15):
        assert label[number][1] < 0 and abs(label[number][0]) < 1  # inferior at the bottom
    assert label[2][1] > 0 > label[3][1] and label[6][1] > 0 > label[5][1]
    use = next(t for t in root.iter(f"{svg}text") if t.get("data-caption") == "intended-use")
    assert use.text == "Research use only: not for clinical diagnosis"
    assert not any(t.get("data-caption") == "angles" for t in root.iter(f"{svg}text"))  # an oriented stack
    summary = next(t for t in root.iter(f"{svg}text") if t.get("data-caption") == "summary")
    # Too long for one row at the picture's width: it runs on to a second (each row a tspan).
    rows = [row.text for row in summary.iter(f"{svg}tspan")]
    assert " ".join(rows) == ("Scar (≥1 %) in 3 of 16 segments (in more than half of the segment in 2); scar score 8 "
                              "of 64 (sum of the 0-4 grades)")
    assert len(rows) == 2 and max(len(row) for row in rows) <= 84
    caption = next(t for t in root.iter(f"{svg}text") if t.get("data-caption") == "septum")
    assert caption.text == "Septum: 120° from the anterior RV insertion point (AHA equal segments)"
    assert float(caption.get("y")) < float(root.get("height"))
    both = quantify(volume, rv_insertion_lps=np.stack([_point_along_i(volume), _point_at_angle(volume, 90.0)]))
    caption = next(t for t in ET.fromstring(bullseye_svg(both)).iter(f"{svg}text") if t.get("data-caption"))
    assert caption.text == "Septum: 90° between the anterior and inferior RV insertion points"
    # A segment without myocardium is grey; a report without segments says why, as a picture.
    report.segments[0].scar_extent_score = None
    root = ET.fromstring(bullseye_svg(report))
    first = next(p for p in root.iter("{http://www.w3.org/2000/svg}path") if p.get("data-segment") == "1")
    assert first.get("fill") == NO_MYOCARDIUM_COLOUR
    without = quantify(volume)
    reason = "no AHA segments: the RV insertion point is 95 mm from the LV myocardium of slice 3: mark it where " \
             "the RV wall meets the septum (in the image's coordinates, RAS)"
    without.extra["inference"] = {"warnings": [reason]}
    lines = [t.text for t in ET.fromstring(bullseye_svg(without)).iter(f"{svg}tspan")]
    assert " ".join(lines) == reason and max(len(line) for line in lines) <= 60


@pytest.mark.parametrize("scar_percent, text", [
    (None, "–"), (0.0, "0 %"), (13.4, "13 %"), (0.3, "0.3 %"), (0.02, "0.02 %"), (0.001, "<0.01 %"),
    (0.996, "<1 %"), (1.0, "1 %"), (1.004, "1 %"),
    (24.96, "25 %"), (25.3, "25.3 %"), (25.04, "25.04 %"), (25.001, ">25 %"), (49.97, "50 %"), (50.03, "50.03 %"),
    (100.0, "100 %"),
])
def test_segment_percent_text_keeps_its_grade(scar_percent, text):
    from scarnet.aha import extent_score
    from scarnet.bullseye import percent_text

    assert percent_text(scar_percent) == text
    if scar_percent is not None and text[0].isdigit():
        assert extent_score(float(text.removesuffix(" %"))) == extent_score(scar_percent)


def quantify_command(tmp_path):
    """The ring labelmap written as ``tmp_path/lab.nrrd``; the RAS text of its RV insertion point; and a runner of
    ``scarnet quantify lab.nrrd --quiet ARGS`` there."""
    from scarnet.io import write_labelmap

    volume = _volume(_ring_labels(16.0, 56.0))
    write_labelmap(volume, tmp_path / "lab.nrrd")
    point = _point_along_i(volume)
    ras = [f"{-point[0]:.4f}", f"{-point[1]:.4f}", f"{point[2]:.4f}"]

    def run(*args):
        return subprocess.run([sys.executable, "-m", "scarnet", "quantify", "lab.nrrd", "--quiet", *args],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)

    return ras, run


def test_command_line_bullseye(tmp_path):
    ras, run = quantify_command(tmp_path)
    result = run("--bullseye", "b.svg")
    assert result.returncode == 2 and "--bullseye needs --rv-insertion" in result.stderr
    assert not (tmp_path / "b.svg").exists()
    result = run("--rv-insertion", *ras, "--bullseye", "b.png")
    assert result.returncode == 2 and "must end in .svg" in result.stderr
    (tmp_path / "r.csv").write_text("the user's own file")
    result = run("--rv-insertion", *ras, "--bullseye", "b.svg", "--report", "r.csv")  # r.csv exists: nothing
    assert result.returncode == 2 and "--overwrite" in result.stderr and not (tmp_path / "b.svg").exists()
    assert (tmp_path / "r.csv").read_text() == "the user's own file"
    result = run("--rv-insertion", *ras, "--bullseye", "b.svg", "--report", "r.csv", "--overwrite")
    assert result.returncode == 0, result.stderr
    picture = (tmp_path / "b.svg").read_text()
    assert picture.count("data-segment=") == 17 and "lab.nrrd: scar per AHA segment (labelmap lab.nrrd)" in picture


def test_an_rv_point_away_from_the_rv_side_is_warned_of():
    """A point given as rv_insertion_lps in RAS lands across the LV axis near the isocentre, still on the wall: it
    passed every check and turned every segment by about 180 degrees, without a word (QA helper-107)."""
    volume = _volume(_ring_labels(16.0, 56.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantify(volume, rv_insertion_lps=_point_along_i(volume), basal_end="first")
    assert not [w for w in caught if "from the RV's side" in str(w.message)]
    with pytest.warns(UserWarning, match=r"AHA segments: the RV insertion point lies 1[5-8]\d degrees round the LV "
                                         r"from the RV's side .*RAS, as Slicer shows them"):
        report = quantify(volume, rv_insertion_lps=_point_at_angle(volume, 180.0), basal_end="first")
    assert any("from the RV's side" in message for message in report.warnings())
    # The bullseye, often printed or filed alone, says it too: its segments are drawn turned (QA helper-124).
    import xml.etree.ElementTree as ET

    from scarnet.bullseye import bullseye_svg

    captions = {t.get("data-caption"): " ".join(t.itertext()) for t in ET.fromstring(bullseye_svg(report)).iter()
                if t.get("data-caption")}
    assert re.fullmatch(r"RV insertion point 1[5-8]\d° round from the RV's side: RAS and LPS mixed up\? The segments "
                        r"would be turned", captions["rv-side"])
    assert 'data-caption="rv-side"' not in bullseye_svg(quantify(volume, rv_insertion_lps=_point_along_i(volume),
                                                                 basal_end="first"))
    # Without an orientation nothing says where the RV lies: no such warning (the mirror warning covers it).
    plain = Volume(volume.array, SPACING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quantify(plain, rv_insertion_lps=_point_at_angle(plain, 180.0), basal_end="first")
    assert not [w for w in caught if "from the RV's side" in str(w.message)]


def _two_sector_labels() -> np.ndarray:
    """The rings of :func:`_ring_labels` with scar through the whole wall 22-52° from the insertion (segments 2, 8
    and 14) and in the inner 3.5 mm of the 9 mm wall 207-228°, across the LV (segments 5, 11 and 16): each sector 7°
    or more inside its segments, so that no ray of another segment meets it."""
    labels = _ring_labels(22.0, 52.0)
    rows, cols = SHAPE[1:]
    rr, cc = np.mgrid[:rows, :cols]
    dr, dc = (rr - CENTRE_RC[0]) * SPACING[1], (cc - CENTRE_RC[1]) * SPACING[0]
    radius = np.hypot(dr, dc)
    angle = np.degrees(np.arctan2(dr, dc)) % 360
    for z in range(SHAPE[0]):
        cavity = 22.0 - 2.0 * z
        labels[z][(radius >= cavity) & (radius < cavity + 3.5) & (angle > 207.0) & (angle < 228.0)] = 3
    return labels


def test_each_segment_has_the_mean_transmurality_of_its_rays_with_scar():
    """Per segment, the mean transmural extent of scar over its rays with scar (scar_transmurality_mean_percent) and
    the slices where it has scar (scar_slices): scar through the whole wall reads in Kim's band 4 (76-100 %; the rays
    at the sector's edges graze it, so not 100 %), scar in
    the inner 3.5 mm of a 9 mm wall about 39 % (band 2); a segment no ray of which meets scar has none; and each is
    the mean of scarnet.transmurality's own rays of that sector on the segment's slices (the same rays)."""
    from scarnet.aha import transmurality_band
    from scarnet.transmurality import ray_angles, stack_rays

    labels = _two_sector_labels()
    volume = _volume(labels)
    report = quantify(volume, rv_insertion_lps=_point_along_i(volume))
    segments = _by_number(report)
    assert [s.level for s in report.slices] == ["basal"] * 2 + ["mid"] * 3 + ["apical"] * 2
    for number in (2, 8, 14):
        assert segments[number].scar_transmurality_mean_percent > 80
        assert transmurality_band(segments[number].scar_transmurality_mean_percent) == 4
    for number in (5, 11, 16):
        assert segments[number].scar_transmurality_mean_percent == pytest.approx(100 * 3.5 / 9, abs=9)
        assert transmurality_band(segments[number].scar_transmurality_mean_percent) == 2
        assert segments[number].transmural_over_50_percent == 0
    for number, s in segments.items():
        if number not in (2, 8, 14, 5, 11, 16):
            assert s.scar_transmurality_mean_percent is None and s.scar_slices == [], number
    assert segments[17].scar_transmurality_mean_percent is None and segments[17].transmural_over_50_percent is None
    assert segments[2].scar_slices == segments[5].scar_slices == [0, 1]
    assert segments[8].scar_slices == segments[11].scar_slices == [2, 3, 4]
    assert segments[14].scar_slices == segments[16].scar_slices == [5, 6]
    # The same rays as the slices' transmurality: the sector's rays with scar on the segment's slices.
    rays = stack_rays(labels, (SPACING[1], SPACING[0]))[1]
    across = (np.degrees(ray_angles()) > 180) & (np.degrees(ray_angles()) < 260)
    for number, (sector, slices) in {5: (across, [0, 1]), 11: (across, [2, 3, 4]), 16: (across, [5, 6]),
                                     2: (~across, [0, 1]), 8: (~across, [2, 3, 4])}.items():
        values = np.concatenate([rays[k][sector] for k in slices])
        expected = 100 * values[np.nan_to_num(values) > 0].mean()
        assert segments[number].scar_transmurality_mean_percent == pytest.approx(expected, rel=1e-9), number
    # In the JSON report, beside the segment's other figures (and in the CSV's segment rows).
    data = json.loads(report.to_json())
    assert data["segments"][4]["scar_transmurality_mean_percent"] == pytest.approx(
        segments[5].scar_transmurality_mean_percent, rel=1e-8)
    assert data["segments"][4]["scar_slices"] == [0, 1]
    assert data["segments"][0]["scar_transmurality_mean_percent"] is None


@pytest.mark.parametrize("mean, band", [(None, None), (0.0, 0), (0.4, 1), (25.0, 1), (25.0000001, 1), (25.3, 2),
                                        (50.0, 2), (50.01, 3), (75.0, 3), (75.2, 4), (100.0, 4)])
def test_transmurality_bands_are_kims(mean, band):
    from scarnet.aha import transmurality_band
    from scarnet.bullseye import percent_text

    assert transmurality_band(mean) == band
    if mean is not None and mean > 0:  # shown with as many decimals as keep its band
        shown = percent_text(mean, transmurality_band)
        assert transmurality_band(float(shown.removesuffix(" %"))) == band

"""Where the scar is: basal / mid / apical levels, the apex, and the AHA 17-segment model.

The segments are those of the AHA statement (Cerqueira et al., Circulation 2002;105:539-42), which
the SCMR reporting guidelines use for LGE: six basal (1-6) and six mid (7-12) segments of 60°, four
apical (13-16) of 90°, and the apex (17), "the area of myocardium beyond the end of the LV cavity".

**Base and apex.** The slices with LV myocardium are ordered from base to apex. Those at the apical
end beyond the cavity (after the most apical slice with a cavity) are the apex, level "apex" and
segment 17; a stack without a cavity on any slice has none. A slice's cavity is its LV blood pool
and any background enclosed by its myocardium (a ring drawn without blood pool), and counts from
:data:`MIN_CAVITY_AREA_MM2` (a stray voxel of blood pool on a cap slice is not a cavity). The other
slices with myocardium are divided into thirds (basal, mid, apical; with a remainder, the mid third
and then the basal third get the extra slice: 7 slices are 2 / 3 / 2, 8 are 3 / 3 / 2). A slice
without a cavity between slices with one (a missed cavity) stays in its third. Which end is basal
comes, in this order, from:

1. the caller (``basal_end="first"`` or ``"last"``: the user knows); where the two below say the
   other end, it is kept but the report warns (:func:`given_basal_end_warning`);
2. the patient axes, when the slices are oblique as a short-axis stack is: the LV long axis points
   from base to apex to the patient's left, anterior and inferior, so the slice normal that agrees
   with that direction (|cos| of at least :data:`MIN_LONG_AXIS_COS`) points to the apex. An
   image whose slices are within :data:`MAX_PATIENT_AXIS_DEG` of a patient axis (axial, coronal,
   sagittal, or a file without real orientation such as a stack of PNGs) does not say;
3. the cavity: it narrows towards the apex, so the end where the blood-pool area of a linear fit
   over the slices is larger is basal.

**Segments** need the anterior RV insertion point (where the RV free wall meets the septum at the
front), which the model does not segment: the user marks it (in Slicer, a point; on the command
line, RAS millimetres). It must lie within :data:`MAX_RV_INSERTION_DISTANCE_MM` of the LV
myocardium of the nearest slice with myocardium, within a slice spacing of the stack: a point
given in other coordinates (LPS for RAS) is refused rather than turned into wrong segments. On
each slice, angles are measured about the LV centre (as in :mod:`scarnet.transmurality`) from the
direction of that point projected onto the slice, turning towards the septum (counter-clockwise
seen from the apex, as short-axis images are shown). For an oriented (oblique) stack that turn
comes from the patient axes and the base-apex order. An image without real orientation (its
slices within :data:`MAX_PATIENT_AXIS_DEG` of a patient axis: a PNG stack, a header with an
identity direction) cannot say which side it is seen from: it is taken as displayed (as 3D Slicer shows it,
its direction applied: row 0 at the top and column 0 on the left for a PNG stack or an identity direction;
:func:`display_sense`) and seen from the apex, as short-axis images are shown, and the report says so
(``segment_angles_from``):

* basal and mid: 0-60° anteroseptal, 60-120° inferoseptal, 120-180° inferior, 180-240°
  inferolateral, 240-300° anterolateral, 300-360° anterior;
* apical: septal 15-105° (centred on the septum), inferior 105-195°, lateral 195-285°, anterior
  285-15°;
* apex: the whole slice is segment 17.

**The inferior RV insertion point**, when given too, sizes the septum as the AHA statement does
("the attachment of the right ventricular wall to the septum"): on each slice the septum is the arc
from the anterior to the inferior insertion, and the angles are stretched piecewise linearly so that
the inferior insertion lies at 120°: the septal arc is halved (anteroseptal, inferoseptal) and the
rest of the wall quartered (inferior, inferolateral, anterolateral, anterior); at the apical level the
septal segment stays centred on the septum and three quarters of the septal arc wide. The arc must be
:data:`MIN_SEPTAL_SPAN_DEG` to :data:`MAX_SEPTAL_SPAN_DEG` turning from the anterior point towards
the septum on the slice where the inferior point was marked; otherwise the points are refused
(swapped, an image seen from the base, or for an oriented stack a wrong basal end). On the other
slices, where both points are projections, the arc is kept within that range. A mirror is caught
only when the points are marked by anatomy: on an image seen from the base, points swapped because
"anterior" was taken to be at the top of the screen cancel out and give anterior and inferior
segments exchanged. Without it the septum is taken to span 120°, as the AHA's equal segments do.

Per segment: myocardium, scar (3|4) and MVO volumes; scar as % of the segment's myocardium
(``scar_percent``, the hyperenhanced share of the segment's area that Kim et al., N Engl J Med
2000;343:1445-53 graded); that share as the usual 0-4 grade (``scar_extent_score``: 0 none or under
1 % (:data:`MIN_GRADED_SCAR_PERCENT`), 1 1-25 %, 2 26-50 %, 3 51-75 %, 4 76-100 %); and
``transmural_over_50_percent``, the share of the segment's rays (:mod:`scarnet.transmurality`,
measured slices only) along which scar fills more than half of the wall; None for the apex, whose wall a
short-axis slice cuts across rather than through (rays in the slice would measure the disc, not the wall).
``scar_transmurality_mean_percent``: the mean transmurality (the share of the wall's thickness that is scar) over
the segment's rays with scar, from the same rays (None for the apex, and where no ray meets scar), and its band
(:func:`transmurality_band`: Kim et al.'s 0, 1-25, 26-50, 51-75, 76-100 % of the wall); ``scar_slices``: the
slices on which the segment has scar.

Limits: one point (or pair) serves every level, projected onto each slice; the thirds are of
slices, not of the LV's length, and a basal slice through the outflow tract counts as basal
myocardium where it has any. The apex is what the slices show of it: short-axis slices 8-10 mm
apart may cut the cap once or miss it (segment 17 then has no myocardium and no grade), and a
slice through the tip of the cavity is apical even where most of it is cap. Normal anatomy is
assumed: in situs inversus or mirror-image dextrocardia the septum lies the other way (the
base-apex order then falls back on the cavity, but the turn does not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from .errors import InputError
from .labels import BACKGROUND, LV_BLOOD_POOL, MVO, MYOCARDIUM_LABELS, SCAR_LABELS
from .transmurality import TRANSMURAL_FRACTION, is_measured, ray_angles
from .volume import Volume

#: The thirds of the slices with a cavity, base to apex.
LEVELS = ("basal", "mid", "apical")
#: The level of the slices beyond the cavity: the apical cap, segment 17.
APEX = "apex"
#: A slice has a cavity from this area (mm²) of blood pool and enclosed background on: the tip of the cavity
#: 8-10 mm from the apex is a few mm across, a stray voxel (or two) of blood pool on a cap slice is 2-5 mm².
MIN_CAVITY_AREA_MM2 = 10.0
#: AHA segment number → name (Cerqueira et al. 2002).
SEGMENT_NAMES = {
    1: "basal anterior", 2: "basal anteroseptal", 3: "basal inferoseptal", 4: "basal inferior",
    5: "basal inferolateral", 6: "basal anterolateral", 7: "mid anterior", 8: "mid anteroseptal",
    9: "mid inferoseptal", 10: "mid inferior", 11: "mid inferolateral", 12: "mid anterolateral",
    13: "apical anterior", 14: "apical septal", 15: "apical inferior", 16: "apical lateral", 17: "apex",
}
#: The segment of the whole of an apex slice.
APEX_SEGMENT = 17
#: A typical LV long axis, base to apex, in LPS: to the patient's left, anterior and inferior.
TYPICAL_LONG_AXIS_LPS = np.array([0.62, -0.55, -0.56]) / np.linalg.norm([0.62, -0.55, -0.56])
#: The slice normal decides the base-apex order when |cos| to the typical long axis is at least this.
MIN_LONG_AXIS_COS = 0.5
#: Slices whose normal is within this angle of a patient axis do not decide it (see the module docstring).
MAX_PATIENT_AXIS_DEG = 10.0
#: The fitted cavity area must change by at least this fraction of its mean over the stack to decide.
MIN_CAVITY_CHANGE = 0.1
#: The RV insertion point must lie within this distance (mm, in the slice plane) of the LV myocardium
#: of the nearest slice with myocardium: it is on the wall's outer surface.
MAX_RV_INSERTION_DISTANCE_MM = 20.0
#: ... and at least this far (mm) from that slice's LV centre, or its direction is not defined.
MIN_RV_INSERTION_RADIUS_MM = 5.0
#: The septal arc between the two RV insertion points (degrees, turning from the anterior towards the
#: septum) must lie in this range on the slice where the inferior point was marked, and is kept within it
#: on the others; 120° is the AHA's equal segments.
MIN_SEPTAL_SPAN_DEG = 60.0
MAX_SEPTAL_SPAN_DEG = 180.0
_EQUAL_SEPTAL_SPAN_DEG = 120.0
#: ``Report.segment_angles_from`` for an oriented stack, and for one taken as displayed.
ANGLES_FROM_PATIENT_AXES = "patient axes"
ANGLES_FROM_DISPLAY = "image as displayed, assumed seen from the apex (no orientation in the file)"

#: First segment number of each level (the others follow in the orders below).
_FIRST_SEGMENT = {"basal": 1, "mid": 7, "apical": 13}
#: In angle order from the insertion: anteroseptal, inferoseptal, inferior, inferolateral, anterolateral, anterior.
_SIX_SEGMENT_ORDER = (1, 2, 3, 4, 5, 0)
_APICAL_OFFSET_DEG = 15.0  # the apical septal segment is centred on the septum (60° from the insertion)
#: In angle order from 15°: septal, inferior, lateral, anterior.
_FOUR_SEGMENT_ORDER = (1, 2, 3, 0)


@dataclass(frozen=True)
class BaseApexOrder:
    """Which end of the slice index is basal, and what said so."""

    base_first: bool  # slice 0 is the most basal
    source: str  # "given", "patient axes" or "cavity size"

    def to_dict(self) -> dict[str, str]:
        return {"basal_end": "first" if self.base_first else "last", "from": self.source}


@dataclass
class SegmentReport:
    """Figures of one AHA segment (see the module docstring)."""

    segment: int
    name: str
    level: str
    slices: list[int]
    myocardium_ml: float
    scar_ml: float
    mvo_ml: float
    scar_percent: float | None  # None where the segment has no myocardium
    scar_extent_score: int | None
    transmural_over_50_percent: float | None  # None where no ray of a measured slice lies in it
    #: Mean transmurality (% of the wall's thickness that is scar) over the segment's rays with scar, as
    #: :mod:`scarnet.transmurality`'s ``scar_transmurality_mean_percent`` of a slice; None where no ray of a measured
    #: slice lies in the segment (the apex) or none of them meets scar.
    scar_transmurality_mean_percent: float | None = None
    #: The slices on which the segment has scar (3|4): which to read for it, and whether they all have QC flags.
    scar_slices: list[int] = field(default_factory=list)


def base_apex_order(volume: Volume, labels: np.ndarray, basal_end: str | None = None) -> BaseApexOrder | None:
    """The base-apex order of a stack with its slices along k (``labels``: (k, rows, cols)); None when unknown.

    ``basal_end``: "first" or "last" when the caller knows; otherwise the patient axes, then the
    cavity size decide (module docstring).
    """
    if basal_end is not None:
        if basal_end not in ("first", "last"):
            raise InputError(f"basal end must be 'first' or 'last', got '{basal_end}'")
        return BaseApexOrder(basal_end == "first", "given")
    cos_long_axis = float(volume.slice_normal @ TYPICAL_LONG_AXIS_LPS)
    if is_oriented(volume) and abs(cos_long_axis) >= MIN_LONG_AXIS_COS:
        return BaseApexOrder(cos_long_axis > 0, "patient axes")
    change = cavity_change(labels)
    if change is None or abs(change) < MIN_CAVITY_CHANGE:
        return None
    return BaseApexOrder(change < 0, "cavity size")


#: How :func:`given_basal_end_warning`'s message starts (the bullseye tells it by this).
GIVEN_BASAL_END_WARNING_START = "AHA levels: the basal end was given as the"


def given_basal_end_warning(volume: Volume, labels: np.ndarray, order: BaseApexOrder | None) -> str | None:
    """What the report must say when the basal end the caller gave (``order``, from :func:`base_apex_order`)
    is the other end from the one the image says (its patient axes, else its cavity, as they would decide
    without it): the given end is kept (the user may know better, e.g. of a header with a wrong orientation),
    but a wrong one exchanges the basal and apical levels, counts the apex as basal myocardium and mirrors the
    septum in the AHA segments, without a sign in the figures. None when it agrees or the image does not say."""
    if order is None or order.source != "given":
        return None
    found = base_apex_order(volume, labels)
    if found is None or found.base_first == order.base_first:
        return None
    given, other = ("first", "last") if order.base_first else ("last", "first")
    if found.source == "patient axes":
        why = (f"the image's orientation puts the base at the {other} slice (the LV long axis runs from base to "
               "apex to the patient's left, front and feet)")
    else:
        why = f"the LV cavity narrows towards the {given} slice, as it does towards the apex"
    # The septum's side follows the basal end only where it comes from the patient axes; an image without
    # orientation is read as displayed whichever end is basal (aha_segments).
    mirrored = " and the septum is mirrored" if is_oriented(volume) else ""
    return (f"{GIVEN_BASAL_END_WARNING_START} {given} slice, but {why}. The levels and segments follow "
            f"the given end; if it is wrong, basal and apical are exchanged{mirrored}: check it")


def cavity_change(labels: np.ndarray) -> float | None:
    """How the blood-pool area changes from the first to the last slice with myocardium, by a linear fit, as a
    fraction of its mean (negative: it narrows along k). None with fewer than 3 such slices or no blood pool."""
    with_myocardium = _slices_with_myocardium(labels)
    if with_myocardium.size < 3:
        return None
    cavity = (labels[with_myocardium] == LV_BLOOD_POOL).sum(axis=(1, 2)).astype(float)
    if cavity.mean() <= 0:
        return None
    slope = np.polyfit(with_myocardium.astype(float), cavity, 1)[0]
    return float(slope * (with_myocardium[-1] - with_myocardium[0]) / cavity.mean())


def _slices_with_myocardium(labels: np.ndarray) -> np.ndarray:
    """Indices of the (k, rows, cols) labelmap's slices with any myocardium (2|3|4)."""
    return np.flatnonzero(np.isin(labels, MYOCARDIUM_LABELS).any(axis=(1, 2)))


def is_oriented(volume: Volume) -> bool:
    """True when the slices are oblique, as a short-axis stack's are: more than
    :data:`MAX_PATIENT_AXIS_DEG` from every patient axis. Else the orientation is either missing
    (a PNG stack, an identity direction) or not a short-axis one, and says nothing about the heart."""
    normal = volume.slice_normal
    return math.degrees(math.acos(min(1.0, float(np.abs(normal).max())))) > MAX_PATIENT_AXIS_DEG


#: The screen's right and down directions (LPS) of the view a viewer shows slices in, by the patient axis their
#: normal is nearest to: sagittal (L: anterior on the left, head up), coronal (P: patient's right on the left,
#: head up), axial (S: patient's right on the left, anterior up); 3D Slicer's default views.
_VIEW_RIGHT_DOWN_LPS = {0: ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
                        1: ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
                        2: ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))}


def display_sense(volume: Volume) -> float:
    """+1 when a viewer (3D Slicer) shows the slices of ``volume`` as stored, column 0 on the left and row 0 at the
    top, or turned; -1 when it shows them mirrored, because their direction flips or swaps the in-plane axes.

    An image without orientation is taken as displayed; one stack stored with its columns reversed (a plain
    re-storage, which Slicer shows the same) must give the same segments, not septum and lateral wall exchanged.
    A PNG stack or an identity direction is shown as stored (+1).
    """
    right, down = (np.asarray(axis) for axis in _VIEW_RIGHT_DOWN_LPS[int(np.argmax(np.abs(volume.slice_normal)))])
    column_axis, row_axis = volume.direction[:, 0], volume.direction[:, 1]
    determinant = (right @ column_axis) * (down @ row_axis) - (right @ row_axis) * (down @ column_axis)
    return 1.0 if determinant >= 0 else -1.0


def cavity_area_mm2(plane: np.ndarray, pixel_area_mm2: float) -> float:
    """The LV cavity of a slice's labels (mm²): its blood pool and the background its labels enclose (a ring
    drawn without blood pool)."""
    enclosed = ndimage.binary_fill_holes(plane != BACKGROUND) & (plane == BACKGROUND)
    return float(np.count_nonzero(plane == LV_BLOOD_POOL) + np.count_nonzero(enclosed)) * pixel_area_mm2


def slice_levels(labels: np.ndarray, order: BaseApexOrder | None, *, pixel_area_mm2: float
                 ) -> list[str | None]:
    """"basal", "mid", "apical" or "apex" (:data:`APEX`, beyond the cavity) for each slice with myocardium
    (None for the others, or without an order); see the module docstring. ``pixel_area_mm2``: the in-plane
    area of a voxel, for :data:`MIN_CAVITY_AREA_MM2`."""
    levels: list[str | None] = [None] * labels.shape[0]
    with_myocardium = _slices_with_myocardium(labels).tolist()
    if order is None or not with_myocardium:
        return levels
    ordered = with_myocardium if order.base_first else with_myocardium[::-1]
    with_cavity = [cavity_area_mm2(labels[k], pixel_area_mm2) >= MIN_CAVITY_AREA_MM2 for k in ordered]
    if any(with_cavity):
        # The apex: the slices after the most apical one with a cavity.
        last_with_cavity = len(ordered) - 1 - with_cavity[::-1].index(True)
        for k in ordered[last_with_cavity + 1:]:
            levels[k] = APEX
        ordered = ordered[:last_with_cavity + 1]
    n = len(ordered)
    sizes = [n // 3] * 3
    sizes[1] += 1 if n % 3 else 0
    sizes[0] += 1 if n % 3 == 2 else 0
    start = 0
    for level, size in zip(LEVELS, sizes):
        for k in ordered[start:start + size]:
            levels[k] = level
        start += size
    return levels


def missing_levels(levels: list[str | None]) -> list[str]:
    """The thirds (:data:`LEVELS`) that none of ``levels`` (:func:`slice_levels`) is: a stack with fewer than three
    slices before the apex leaves one or two without slices, and their segments empty."""
    return [level for level in LEVELS if level not in levels]


#: Decimals an angle is rounded to before its segment is found (:func:`segment_of_angle`).
_ANGLE_DECIMALS = 9


def segment_of_angle(level: str, angle_deg: np.ndarray, septal_span_deg: float = _EQUAL_SEPTAL_SPAN_DEG
                     ) -> np.ndarray:
    """AHA segment numbers for angles (degrees from the anterior RV insertion, towards the septum) on a slice of
    ``level`` (:func:`slice_levels`): on an apex slice, 17 whatever the angle.

    ``septal_span_deg``: the angle of the inferior RV insertion, where it was marked; the angles are
    stretched so that it lies at 120° (module docstring).
    """
    if not 0.0 < septal_span_deg < 360.0:
        raise ValueError(f"septal span must be between 0 and 360 degrees, got {septal_span_deg}")
    if level == APEX:
        return np.full(np.shape(angle_deg), APEX_SEGMENT, dtype=int)
    # Rounded to 1e-9°: a voxel on a boundary (60° on a row through the centre) would otherwise fall on either
    # side by the last bit of the arithmetic, so one exam stored two ways (flipped, with another direction
    # matrix) gave segments that differ by a voxel.
    angle = np.mod(np.round(np.asarray(angle_deg, dtype=float), _ANGLE_DECIMALS), 360.0)
    # Not stretched within rounding of 120°: a stretch by 1 + 1e-16 would move voxels that lie exactly on a
    # boundary (180° on the row through the centre) into the next segment.
    if abs(septal_span_deg - _EQUAL_SEPTAL_SPAN_DEG) > 1e-6:
        septal = angle < septal_span_deg
        angle = np.where(septal, angle * (_EQUAL_SEPTAL_SPAN_DEG / septal_span_deg),
                         _EQUAL_SEPTAL_SPAN_DEG + (angle - septal_span_deg)
                         * ((360.0 - _EQUAL_SEPTAL_SPAN_DEG) / (360.0 - septal_span_deg)))
        angle = np.mod(np.round(angle, _ANGLE_DECIMALS), 360.0)
    if level == "apical":
        index = np.floor(np.mod(angle - _APICAL_OFFSET_DEG, 360.0) / 90.0).astype(int) % 4
        return _FIRST_SEGMENT[level] + np.asarray(_FOUR_SEGMENT_ORDER)[index]
    index = np.floor(angle / 60.0).astype(int) % 6
    return _FIRST_SEGMENT[level] + np.asarray(_SIX_SEGMENT_ORDER)[index]


def _angle_deg(reference: np.ndarray, turn: float, d_column: np.ndarray, d_row: np.ndarray) -> np.ndarray:
    """Angles (degrees) of in-plane directions (column, row mm) from ``reference``, positive in the ``turn`` sense."""
    cross = reference[0] * d_row - reference[1] * d_column
    dot = reference[0] * d_column + reference[1] * d_row
    return np.degrees(np.arctan2(turn * cross, dot))


#: Scar under this share of a segment (%) is graded 0: below the first step of Kim's scale (1-25 %), a few
#: voxels (on EMIDEC's normal hearts, the model's stray specks) that no reader would call the segment enhanced.
MIN_GRADED_SCAR_PERCENT = 1.0


def extent_score(scar_percent: float | None) -> int | None:
    """The 0-4 grade of a segment's scar % (0 none or under :data:`MIN_GRADED_SCAR_PERCENT`, 1 1-25 %,
    2 26-50 %, 3 51-75 %, 4 76-100 %); None for None."""
    if scar_percent is None:
        return None
    if round(scar_percent, 6) < MIN_GRADED_SCAR_PERCENT:
        return 0
    # Rounded first, so that 25.0000001 % (floating point) is graded as 25 %.
    return min(4, max(1, int(math.ceil(round(scar_percent, 6) / 25.0))))


def transmurality_band(mean_percent: float | None) -> int | None:
    """The band of a transmural extent (% of the wall's thickness, e.g. a segment's
    ``scar_transmurality_mean_percent``) as Kim et al. (N Engl J Med 2000) banded it: 0 none, 1 1-25 %, 2 26-50 %,
    3 51-75 %, 4 76-100 %; None for None (not measured)."""
    if mean_percent is None:
        return None
    value = round(mean_percent, 6)  # 25.0000001 % (floating point) is 25 %
    if value <= 0:
        return 0
    return min(4, max(1, int(math.ceil(value / 25.0))))


#: Where the RV lies from the LV (LPS): anterior (-y) and to the patient's right (-x).
_RV_SIDE_LPS = np.array([-1.0, -1.0, 0.0]) / math.sqrt(2.0)
#: An anterior RV insertion point more than 90 degrees (in the slice plane) from that side is warned of
#: (:func:`rv_side_warning`): synthetic phantoms (40 seeds) lie within 52 degrees of it; one given in the other
#: coordinate convention lands about 180 degrees away near the isocentre, 90-180 degrees within 10 mm of it.
MIN_RV_SIDE_COSINE = 0.0


def _nearest_slice(volume: Volume, with_myocardium: np.ndarray, point: np.ndarray) -> tuple[np.ndarray, int]:
    """``point``'s (i, j, k) index on ``volume``'s grid, and the nearest of the slices ``with_myocardium``."""
    index = volume.physical_to_index(point)
    return index, int(with_myocardium[np.argmin(np.abs(with_myocardium - index[2]))])


def _centre_lps(volume: Volume, centre_rc_mm: np.ndarray, k: int) -> np.ndarray:
    """Slice ``k``'s LV centre, given in (row, column) mm (:func:`scarnet.transmurality.stack_rays`), in LPS."""
    return volume.index_to_physical(np.array([centre_rc_mm[1] / volume.spacing_mm[0],
                                              centre_rc_mm[0] / volume.spacing_mm[1], k]))


def rv_side_warning(volume: Volume, labels: np.ndarray, centres_rc_mm: list[np.ndarray | None],
                    point: np.ndarray) -> str | None:
    """A warning when the anterior RV insertion ``point`` (LPS) lies across the LV axis from the RV's side, on a
    stack whose orientation is known (:func:`is_oriented`); None otherwise.

    The anterior insertion lies anterior and to the patient's right of the LV centre. A point given in the other
    coordinate convention (RAS as ``rv_insertion_lps``) lands across the LV axis: near the magnet's isocentre,
    where hearts are imaged, still on the wall, so :func:`check_rv_insertion` passes it, and every segment is
    turned by about 180 degrees. Warned, not refused: the patient axes are a rough guide to where the RV lies.
    """
    with_myocardium = _slices_with_myocardium(labels)
    if with_myocardium.size == 0 or not is_oriented(volume) or not np.all(np.isfinite(point)):
        return None
    _, k = _nearest_slice(volume, with_myocardium, point)
    centre = centres_rc_mm[k]
    if centre is None:
        return None
    centre_lps = _centre_lps(volume, centre, k)
    normal = volume.slice_normal
    towards = point - centre_lps
    towards = towards - normal * float(towards @ normal)
    expected = _RV_SIDE_LPS - normal * float(_RV_SIDE_LPS @ normal)
    lengths = float(np.linalg.norm(towards)) * float(np.linalg.norm(expected))
    if lengths == 0 or float(towards @ expected) / lengths >= MIN_RV_SIDE_COSINE:
        return None
    angle_deg = math.degrees(math.acos(max(-1.0, min(1.0, float(towards @ expected) / lengths))))
    return (f"AHA segments: the RV insertion point lies {angle_deg:.0f} degrees round the LV from the RV's side "
            "(the anterior RV insertion is anterior and to the patient's right): are its coordinates in the other "
            "convention (RAS, as Slicer shows them, on the command line; LPS, as rv_insertion_lps, from Python)? "
            "If so, every segment is turned by as much")


def check_rv_insertion(volume: Volume, labels: np.ndarray, centres_rc_mm: list[np.ndarray | None],
                       point: np.ndarray, name: str = "the RV insertion point") -> None:
    """Raise :class:`InputError` unless ``point`` (LPS) can be an RV insertion point of this stack
    (``name`` says which in the messages).

    It must be finite, within a slice spacing of the slices with myocardium, within
    :data:`MAX_RV_INSERTION_DISTANCE_MM` of the myocardium of the nearest of them and at least
    :data:`MIN_RV_INSERTION_RADIUS_MM` from its LV centre (in the slice plane).
    """
    if not np.all(np.isfinite(point)):
        raise InputError(f"{name} has NaN or infinite coordinates")
    with_myocardium = _slices_with_myocardium(labels)
    if with_myocardium.size == 0:
        raise InputError("no LV myocardium to cut into AHA segments")
    index, k = _nearest_slice(volume, with_myocardium, point)
    beyond_slices = abs(float(index[2]) - float(np.clip(index[2], with_myocardium[0], with_myocardium[-1])))
    beyond_mm = beyond_slices * volume.slice_distance_mm
    if beyond_mm > volume.spacing_mm[2] + 1e-6:
        raise InputError(f"{name} lies {beyond_mm:.0f} mm beyond the slices with LV myocardium: "
                         "is it in the image's coordinates (RAS, as Slicer shows them, on the command line; LPS, "
                         "as rv_insertion_lps, from Python)?")
    point_rc = np.array([index[1] * volume.spacing_mm[1], index[0] * volume.spacing_mm[0]])
    wall_rc = np.argwhere(np.isin(labels[k], MYOCARDIUM_LABELS)) * np.array([volume.spacing_mm[1],
                                                                             volume.spacing_mm[0]])
    to_wall_mm = float(np.hypot(*(wall_rc - point_rc).T).min())
    if to_wall_mm > MAX_RV_INSERTION_DISTANCE_MM:
        raise InputError(f"{name} is {to_wall_mm:.0f} mm from the LV myocardium of slice {k}: mark it "
                         "where the RV wall meets the septum (in the image's coordinates, RAS)")
    centre = centres_rc_mm[k]
    if centre is not None and float(np.hypot(*(point_rc - centre))) < MIN_RV_INSERTION_RADIUS_MM:
        raise InputError(f"{name} lies on the LV axis: mark it where the RV wall meets the septum")


def outermost_wall_point_lps(labelmap: Volume, towards_lps: np.ndarray) -> np.ndarray:
    """Where the epicardium lies in direction ``towards_lps`` (LPS) from the LV centre of the middle slice with
    blood pool (slices along k): the centre of the outermost myocardium voxel within one pixel spacing of
    that ray, as LPS mm. With the direction of the RV insertion, the point a reader would mark."""
    labels = labelmap.array
    towards = np.asarray(towards_lps, dtype=float)
    towards = towards / np.linalg.norm(towards)
    with_pool = np.flatnonzero((labels == LV_BLOOD_POOL).any(axis=(1, 2)))
    k = int(with_pool[with_pool.size // 2])
    rows, cols = np.nonzero(labels[k] == LV_BLOOD_POOL)
    centre = labelmap.index_to_physical(np.array([cols.mean(), rows.mean(), k]))
    wall = np.argwhere(np.isin(labels[k], MYOCARDIUM_LABELS))  # (row, col)
    points = labelmap.index_to_physical(np.column_stack([wall[:, 1], wall[:, 0], np.full(len(wall), k)]))
    offsets = points - centre
    along = offsets @ towards
    across = np.linalg.norm(offsets - np.outer(along, towards), axis=1)
    near_the_ray = across <= max(labelmap.spacing_mm[:2])
    return points[near_the_ray][np.argmax(along[near_the_ray])]


def rv_insertion_points(rv_insertion_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The anterior and (None when not given) the inferior RV insertion point from ``rv_insertion_lps``:
    one LPS point (3,), or two (2, 3), the anterior first."""
    try:
        points = np.asarray(rv_insertion_lps, dtype=float)
    except (TypeError, ValueError):
        points = np.asarray(())  # text, ragged lists: refused below, as any other shape
    if points.shape == (3,):
        return points, None
    if points.shape == (2, 3):
        return points[0], points[1]
    # A caller's mistake (the command line and Slicer build these arrays), not a bad point of the user's: still
    # an InputError (a ValueError), which a script catches as any other refusal of its input.
    raise InputError(f"RV insertion: expected one LPS point, shape (3,) (the anterior insertion), or two, shape "
                     f"(2, 3) (anterior, then inferior), got an array of shape {points.shape}")


def _check_septal_span(septal_span: float, k: int, angles_from: str, order: BaseApexOrder) -> None:
    """Refuse a septal arc outside :data:`MIN_SEPTAL_SPAN_DEG`-:data:`MAX_SEPTAL_SPAN_DEG` on slice ``k``, with
    the likely causes: the points, the image seen from the other side, or (for an oriented stack, whose turn
    towards the septum follows the base-apex order) a wrong basal end."""
    if septal_span < MIN_SEPTAL_SPAN_DEG:
        raise InputError(
            f"on slice {k} the inferior RV insertion point lies only {septal_span:.0f}° from the anterior one "
            f"turning towards the septum (at least {MIN_SEPTAL_SPAN_DEG:.0f}°): mark it where the RV wall "
            "meets the septum at the back, or give the anterior point alone")
    if septal_span > MAX_SEPTAL_SPAN_DEG:
        if angles_from == ANGLES_FROM_DISPLAY:
            causes = "are the two points swapped, or is the image seen from the base (mirrored)?"
        elif order.source == "patient axes":
            causes = "are the two points swapped?"
        else:
            causes = "are the two points swapped, or is the basal end wrong (give the other end)?"
        raise InputError(
            f"on slice {k} the inferior RV insertion point lies {septal_span:.0f}° from the anterior one "
            f"turning towards the septum (at most {MAX_SEPTAL_SPAN_DEG:.0f}°): {causes}")


def aha_segments(volume: Volume, labels: np.ndarray, levels: list[str | None], order: BaseApexOrder,
                 centres_rc_mm: list[np.ndarray | None], rays: list[np.ndarray],
                 rv_insertion_lps: np.ndarray) -> tuple[list[SegmentReport], str, float | None]:
    """The 17 AHA segments of a stack with its slices along k (module docstring), where the direction of
    their angles came from (:data:`ANGLES_FROM_PATIENT_AXES` or :data:`ANGLES_FROM_DISPLAY`), and the
    septal arc between the two RV insertion points (degrees, mean over the slices; None with one point).

    ``volume``: the stack's grid (slices along k); ``labels``: its (k, rows, cols) labels;
    ``levels``: :func:`slice_levels`; ``centres_rc_mm`` and ``rays``:
    :func:`scarnet.transmurality.stack_rays`; ``rv_insertion_lps``: the anterior RV insertion point
    (LPS mm), or the anterior and the inferior one (:func:`rv_insertion_points`), each checked by
    :func:`check_rv_insertion`.
    """
    point, inferior = rv_insertion_points(rv_insertion_lps)
    both = inferior is not None
    check_rv_insertion(volume, labels, centres_rc_mm, point,
                       "the anterior RV insertion point" if both else "the RV insertion point")
    if both:
        check_rv_insertion(volume, labels, centres_rc_mm, inferior, "the inferior RV insertion point")
    spacing_i, spacing_j = volume.spacing_mm[0], volume.spacing_mm[1]
    column_axis, row_axis = volume.direction[:, 0], volume.direction[:, 1]
    normal = volume.slice_normal
    if is_oriented(volume):
        # Angles grow towards the septum: counter-clockwise seen from the apex, i.e. a positive turn
        # about the base-to-apex direction. In (column, row) mm coordinates of the slice that turn is
        # column → row when the axes and the apex-ward normal form a right-handed frame.
        apex_ward = normal if order.base_first else -normal
        turn = 1.0 if float(np.cross(column_axis, row_axis) @ apex_ward) > 0 else -1.0
        angles_from = ANGLES_FROM_PATIENT_AXES
    else:
        # As displayed (columns to the right, rows down) and seen from the apex: counter-clockwise on
        # the screen turns from the columns' direction towards row 0, i.e. column → -row; the other way where
        # a viewer shows the stored slices mirrored (their direction flips or swaps the in-plane axes).
        turn = -1.0 * display_sense(volume)
        angles_from = ANGLES_FROM_DISPLAY

    # The septal arc is checked on the slice where the inferior point lies (the nearest one with angled segments:
    # the apex has none).
    with_segments = [k for k, (level, centre) in enumerate(zip(levels, centres_rc_mm))
                     if level in LEVELS and centre is not None]
    marked_slice = None
    if both and with_segments:
        inferior_k = float(volume.physical_to_index(inferior)[2])
        marked_slice = min(with_segments, key=lambda k: abs(k - inferior_k))

    def in_plane(target: np.ndarray, centre_lps: np.ndarray) -> np.ndarray:
        """The direction from the slice's LV centre to ``target`` projected onto the slice, as (column, row) mm."""
        towards = target - centre_lps
        towards = towards - normal * float(towards @ normal)
        return np.array([towards @ column_axis, towards @ row_axis])

    voxel_ml = volume.voxel_volume_ml
    bins = APEX_SEGMENT + 1  # indexed by segment number
    myocardium_count = np.zeros(bins)
    scar_count = np.zeros(bins)
    mvo_count = np.zeros(bins)
    rays_crossing = np.zeros(bins)
    rays_over_half = np.zeros(bins)
    rays_with_scar = np.zeros(bins)
    transmurality_with_scar = np.zeros(bins)  # the sum of those rays' transmurality (0-1)
    spans: list[float] = []
    slices: dict[int, list[int]] = {n: [] for n in SEGMENT_NAMES}
    scar_slices: dict[int, list[int]] = {n: [] for n in SEGMENT_NAMES}
    for k, (level, centre) in enumerate(zip(levels, centres_rc_mm)):
        if level is None or centre is None:
            continue
        plane = labels[k]
        rows, cols = np.nonzero(np.isin(plane, MYOCARDIUM_LABELS))
        if level == APEX:
            # One segment whatever the angle, and no rays: a short-axis slice cuts the apex's wall across.
            segment = np.full(rows.size, APEX_SEGMENT)
        else:
            centre_lps = _centre_lps(volume, centre, k)
            reference = in_plane(point, centre_lps)
            if float(np.hypot(*reference)) < 1e-6:
                raise InputError("the RV insertion point lies on the LV axis: mark it where the RV wall meets the "
                                 "septum")
            septal_span = _EQUAL_SEPTAL_SPAN_DEG
            if both:
                to_inferior = in_plane(inferior, centre_lps)
                if float(np.hypot(*to_inferior)) < 1e-6:
                    raise InputError("the inferior RV insertion point lies on the LV axis: mark it where the RV "
                                     "wall meets the septum")
                septal_span = float(np.mod(_angle_deg(reference, turn, *to_inferior), 360.0))
                if k == marked_slice:
                    _check_septal_span(septal_span, k, angles_from, order)
                # On the other slices the points are projections, off by as much as the LV axis drifts from the
                # slice normal: kept within the range rather than refused.
                septal_span = float(np.clip(septal_span, MIN_SEPTAL_SPAN_DEG, MAX_SEPTAL_SPAN_DEG))
                spans.append(septal_span)
            segment = segment_of_angle(level, _angle_deg(reference, turn, cols * spacing_i - centre[1],
                                                          rows * spacing_j - centre[0]), septal_span)
            if is_measured(rays[k]):
                theta = ray_angles(rays[k].size)
                ray_segment = segment_of_angle(level, _angle_deg(reference, turn, np.cos(theta), np.sin(theta)),
                                               septal_span)
                crossing = ~np.isnan(rays[k])
                rays_crossing += np.bincount(ray_segment[crossing], minlength=bins)
                rays_over_half += np.bincount(
                    ray_segment[crossing & (np.nan_to_num(rays[k]) > TRANSMURAL_FRACTION)], minlength=bins)
                scarred = crossing & (np.nan_to_num(rays[k]) > 0)  # as transmurality.summarise's rays with scar
                rays_with_scar += np.bincount(ray_segment[scarred], minlength=bins)
                transmurality_with_scar += np.bincount(ray_segment[scarred], weights=rays[k][scarred],
                                                       minlength=bins)
        values = plane[rows, cols]
        myocardium_count += np.bincount(segment, minlength=bins)
        scar_count += np.bincount(segment[np.isin(values, SCAR_LABELS)], minlength=bins)
        mvo_count += np.bincount(segment[values == MVO], minlength=bins)
        for number in np.unique(segment):
            slices[int(number)].append(k)
        for number in np.unique(segment[np.isin(values, SCAR_LABELS)]):
            scar_slices[int(number)].append(k)
    out = []
    for number, name in SEGMENT_NAMES.items():
        myocardium_ml = float(myocardium_count[number]) * voxel_ml
        scar_ml = float(scar_count[number]) * voxel_ml
        scar_percent = 100.0 * scar_ml / myocardium_ml if myocardium_ml > 0 else None
        out.append(SegmentReport(
            segment=number, name=name, level=name.split()[0], slices=slices[number],
            myocardium_ml=myocardium_ml, scar_ml=scar_ml, mvo_ml=float(mvo_count[number]) * voxel_ml,
            scar_percent=scar_percent, scar_extent_score=extent_score(scar_percent),
            transmural_over_50_percent=(100.0 * float(rays_over_half[number] / rays_crossing[number])
                                        if rays_crossing[number] else None),
            scar_transmurality_mean_percent=(100.0 * float(transmurality_with_scar[number] / rays_with_scar[number])
                                             if rays_with_scar[number] else None),
            scar_slices=scar_slices[number],
        ))
    return out, angles_from, (float(np.mean(spans)) if spans else None)


__all__ = [
    "APEX",
    "APEX_SEGMENT",
    "GIVEN_BASAL_END_WARNING_START",
    "LEVELS",
    "SEGMENT_NAMES",
    "BaseApexOrder",
    "SegmentReport",
    "ANGLES_FROM_DISPLAY",
    "ANGLES_FROM_PATIENT_AXES",
    "MAX_SEPTAL_SPAN_DEG",
    "MIN_CAVITY_AREA_MM2",
    "MIN_SEPTAL_SPAN_DEG",
    "aha_segments",
    "base_apex_order",
    "cavity_area_mm2",
    "cavity_change",
    "check_rv_insertion",
    "display_sense",
    "extent_score",
    "is_oriented",
    "missing_levels",
    "outermost_wall_point_lps",
    "rv_insertion_points",
    "segment_of_angle",
    "slice_levels",
    "transmurality_band",
]

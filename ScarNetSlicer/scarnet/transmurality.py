"""Scar transmurality: how much of the wall's thickness the scar spans, along rays from the LV centre.

In ischaemic scar, dysfunctional myocardium with enhancement through more than half of the wall is
unlikely to recover after revascularisation (Kim et al., N Engl J Med 2000;343:1445-53).
Per slice, rays are cast from the LV centre every ``360 / RAYS_PER_SLICE`` degrees. The centre is
the centroid of the slice's largest blood-pool region; a slice without blood pool (the apex, or a
hand-drawn slice) takes the stack's LV axis from the other slices (:func:`stack_transmurality`).
Along each ray, the first stretch of wall met from the centre is measured: its transmurality is the
length of scar (3|4, MVO included) in it over its length. Rays that meet no wall (the outflow tract of a
basal slice) are left out. Besides the largest myocardium region, a region is wall only when it
touches both the cavity (blood pool) and the outside (background), as a piece of wall broken off
the ring does: a region inside the cavity (a papillary muscle drawn as myocardium, detached from
the wall) or outside it (another structure drawn as myocardium or scar) is not. In a slice without
blood pool every region is wall.

Per slice and over the stack (all rays of the measured slices alike):

* ``scar_circumference_percent``: rays with any scar, % of the rays that cross the wall;
* ``transmural_over_50_percent``: rays along which scar fills more than half of the wall, % of the
  rays that cross the wall;
* ``scar_transmurality_mean_percent``: mean transmurality of the rays with scar (None without scar).

All three are None for a slice without myocardium, or whose wall is crossed by fewer than half of
the rays (a basal sliver: a few rays would make its shares 0 or 100 %); such slices are left out
of the stack's figures too. :func:`scarnet.quantify.quantify` leaves out the slices beyond the cavity
as well (level "apex", :mod:`scarnet.aha`), where the base-apex order is known: a short-axis slice
cuts the apex's wall across, so rays in it measure the disc, not the wall.

Limits, for the reader:

* The share counts scar anywhere along the ray: mid-wall or epicardial scar (myocarditis and other
  non-ischaemic patterns) counts as much as subendocardial scar. The viability reading above is
  for ischaemic scar.
* Shares are of angles about the centre, not of arc length; where the cavity is not star-shaped
  about the centre (a crescent LV), a ray measures the first wall it meets only. A papillary
  muscle drawn as myocardium and attached to the wall thickens the wall where it is.
* In a thin wall, a pixel is a large part of it: a 6 mm wall with 2 mm pixels has three, so
  "more than half" moves by a pixel's worth of segmentation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .labels import LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR_LABELS

RAYS_PER_SLICE = 180
#: Sampling step along a ray, as a fraction of the smaller pixel spacing.
STEP_FRACTION = 0.25
#: At most this many samples per ray (pixels of extreme shape would otherwise make huge arrays).
MAX_SAMPLES_PER_RAY = 2000
#: A myocardium region whose border is less than this fraction background lies in the cavity: not wall.
MIN_OUTSIDE_BORDER_FRACTION = 0.05
#: Gaps in the wall up to this many (larger) pixel spacings long along a ray are bridged: a hand-drawn
#: Scar segment one pixel short of the Myocardium segment, crossed at any angle.
MAX_GAP_PIXELS = 1.5
#: Scar spanning more than this fraction of the wall counts as transmural over 50 %.
TRANSMURAL_FRACTION = 0.5
#: A slice is measured only when at least this fraction of its rays cross the wall.
MIN_WALL_RAY_FRACTION = 0.5


@dataclass
class TransmuralitySummary:
    """The three per-slice (or per-stack) figures; see the module docstring."""

    scar_circumference_percent: float | None = None
    transmural_over_50_percent: float | None = None
    scar_transmurality_mean_percent: float | None = None


def lv_centre_mm(plane: np.ndarray, spacing_rc_mm: tuple[float, float]) -> np.ndarray | None:
    """Centroid (row, col in mm from pixel 0, 0) of the largest 8-connected blood-pool region; None without one.

    The largest region, so that a stray blob (the atrium or aorta labelled blood pool) does not pull
    the centre out of the cavity.
    """
    labelled, count = ndimage.label(plane == LV_BLOOD_POOL, structure=np.ones((3, 3)))
    if count == 0:
        return None
    sizes = ndimage.sum_labels(np.ones_like(labelled), labelled, np.arange(1, count + 1))
    return np.argwhere(labelled == int(np.argmax(sizes)) + 1).mean(axis=0) * np.asarray(spacing_rc_mm, dtype=float)


def ray_transmurality(plane: np.ndarray, spacing_rc_mm: tuple[float, float],
                      centre_rc_mm: np.ndarray | None = None, rays: int = RAYS_PER_SLICE) -> np.ndarray:
    """Transmurality (0–1) along each of ``rays`` rays of one (rows, cols) labelmap slice.

    ``centre_rc_mm``: where the rays start (mm from pixel 0, 0); by default :func:`lv_centre_mm`,
    else the wall's centroid. NaN for a ray that crosses no wall; an empty array for a slice
    without myocardium.
    """
    myocardium = np.isin(plane, MYOCARDIUM_LABELS)
    if not myocardium.any():
        return np.zeros(0)
    blood_pool = plane == LV_BLOOD_POOL
    wall = _wall(myocardium, blood_pool)
    spacing = np.asarray(spacing_rc_mm, dtype=float)
    wall_rc = np.argwhere(wall) * spacing
    centre = centre_rc_mm if centre_rc_mm is not None else lv_centre_mm(plane, spacing_rc_mm)
    if centre is None:
        centre = wall_rc.mean(axis=0)
    reach_mm = float(np.hypot(*(wall_rc - centre).T).max() + spacing.max())
    step_mm = max(STEP_FRACTION * float(spacing.min()), reach_mm / MAX_SAMPLES_PER_RAY)
    distances = np.arange(0.0, reach_mm + step_mm, step_mm)
    angles = ray_angles(rays)
    rows = np.rint((centre[0] + np.sin(angles)[:, None] * distances) / spacing[0]).astype(int)
    cols = np.rint((centre[1] + np.cos(angles)[:, None] * distances) / spacing[1]).astype(int)
    inside = (rows >= 0) & (rows < plane.shape[0]) & (cols >= 0) & (cols < plane.shape[1])
    on_wall = np.zeros(rows.shape, dtype=bool)
    on_scar = np.zeros(rows.shape, dtype=bool)
    on_wall[inside] = wall[rows[inside], cols[inside]]
    on_scar[inside] = np.isin(plane[rows[inside], cols[inside]], SCAR_LABELS) & on_wall[inside]
    on_wall = _bridge_gaps(on_wall, int(np.ceil(MAX_GAP_PIXELS * spacing.max() / step_mm)))
    # The first stretch of wall from the centre: from its first sample to the first sample off it.
    crosses = on_wall.any(axis=1)
    index = np.arange(distances.size)[None, :]
    start = np.argmax(on_wall, axis=1)[:, None]
    off = ~on_wall & (index >= start)
    end = np.where(off.any(axis=1), np.argmax(off, axis=1), distances.size)[:, None]
    first = (index >= start) & (index < end)
    wall_samples = first.sum(axis=1)
    scar_samples = (first & on_scar).sum(axis=1)
    return np.where(crosses, scar_samples / np.maximum(wall_samples, 1), np.nan)


def is_measured(transmurality: np.ndarray) -> bool:
    """True when enough of the slice's rays cross its wall (:data:`MIN_WALL_RAY_FRACTION`) to report it."""
    return transmurality.size > 0 and float((~np.isnan(transmurality)).mean()) >= MIN_WALL_RAY_FRACTION


def summarise(transmurality: np.ndarray) -> TransmuralitySummary:
    """The figures of a set of rays (one slice's, or the measured slices' together); NaN rays are left out."""
    crossing = transmurality[~np.isnan(transmurality)]
    if crossing.size == 0:
        return TransmuralitySummary()
    scarred = crossing > 0
    return TransmuralitySummary(
        scar_circumference_percent=float(100.0 * scarred.mean()),
        transmural_over_50_percent=float(100.0 * (crossing > TRANSMURAL_FRACTION).mean()),
        scar_transmurality_mean_percent=float(100.0 * crossing[scarred].mean()) if scarred.any() else None,
    )


def stack_rays(labels: np.ndarray, spacing_rc_mm: tuple[float, float]
               ) -> tuple[list[np.ndarray | None], list[np.ndarray]]:
    """Per slice of a (k, rows, cols) labelmap: where its rays start (row, col mm) and their transmurality.

    A slice without blood pool starts from the median of the other slices' centres (the stack's LV
    axis), or from its own wall's centroid when no slice has blood pool; a slice without
    myocardium has no centre (None) and no rays.
    """
    centres = [lv_centre_mm(plane, spacing_rc_mm) for plane in labels]
    known = [c for c in centres if c is not None]
    axis = np.median(np.stack(known), axis=0) if known else None
    spacing = np.asarray(spacing_rc_mm, dtype=float)
    starts: list[np.ndarray | None] = []
    for plane, centre in zip(labels, centres):
        myocardium = np.isin(plane, MYOCARDIUM_LABELS)
        if not myocardium.any():
            starts.append(None)
        elif centre is not None:
            starts.append(centre)
        elif axis is not None:
            starts.append(axis)
        else:  # no blood pool anywhere: every myocardium region is wall (_wall), so its centroid
            starts.append(np.argwhere(myocardium).mean(axis=0) * spacing)
    rays = [ray_transmurality(plane, spacing_rc_mm, start) if start is not None else np.zeros(0)
            for plane, start in zip(labels, starts)]
    return starts, rays


def stack_transmurality(labels: np.ndarray, spacing_rc_mm: tuple[float, float]
                        ) -> tuple[list[TransmuralitySummary], TransmuralitySummary]:
    """Per-slice and whole-stack figures of a (k, rows, cols) labelmap (slices along k).

    A slice without blood pool takes the median of the other slices' centres (the stack's LV axis).
    """
    return summarise_stack(stack_rays(labels, spacing_rc_mm)[1])


def summarise_stack(rays: list[np.ndarray]) -> tuple[list[TransmuralitySummary], TransmuralitySummary]:
    """Per-slice and whole-stack figures from each slice's rays (:func:`stack_rays`)."""
    measured = [r for r in rays if is_measured(r)]
    per_slice = [summarise(r) if is_measured(r) else TransmuralitySummary() for r in rays]
    return per_slice, summarise(np.concatenate(measured)) if measured else TransmuralitySummary()


def ray_angles(rays: int = RAYS_PER_SLICE) -> np.ndarray:
    """The angle (radians) of each ray of :func:`ray_transmurality`: from the column axis towards the row axis."""
    return np.arange(rays) * (2 * np.pi / rays)


def _wall(myocardium: np.ndarray, blood_pool: np.ndarray) -> np.ndarray:
    """The largest myocardium region and the others that touch both the cavity and the outside."""
    structure = np.ones((3, 3))
    labelled, count = ndimage.label(myocardium, structure=structure)
    if count <= 1 or not blood_pool.any():
        return myocardium
    sizes = ndimage.sum_labels(myocardium, labelled, np.arange(1, count + 1))
    largest = int(np.argmax(sizes)) + 1
    wall = myocardium.copy()
    for region, box in enumerate(ndimage.find_objects(labelled), start=1):
        if region == largest:
            continue
        # The region's bounding box, one pixel wider on each side, holds all of its border.
        box = tuple(slice(max(b.start - 1, 0), b.stop + 1) for b in box)
        component = labelled[box] == region
        border = ndimage.binary_dilation(component, structure=structure) & ~component
        # The border holds only blood pool and background: other myocardium would be this region.
        touches_cavity = blood_pool[box][border].any()
        outside_share = 1.0 - blood_pool[box][border].mean() if border.any() else 1.0
        if not touches_cavity or outside_share < MIN_OUTSIDE_BORDER_FRACTION:
            wall[box][component] = False
    return wall


def _bridge_gaps(on_wall: np.ndarray, gap_samples: int) -> np.ndarray:
    """Close gaps of up to ``gap_samples`` samples along each ray (rows of ``on_wall``)."""
    if gap_samples < 1:
        return on_wall
    padded = np.pad(on_wall, ((0, 0), (gap_samples + 1, gap_samples + 1)))
    closed = ndimage.binary_closing(padded, structure=np.ones((1, gap_samples + 1), dtype=bool))
    return closed[:, gap_samples + 1:-(gap_samples + 1)] | on_wall

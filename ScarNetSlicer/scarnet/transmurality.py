"""Scar transmurality: how much of the wall's thickness the scar spans, along rays from the LV centre.

Enhancement through more than half of the wall predicts that dysfunctional myocardium will not
recover after revascularisation (Kim et al., N Engl J Med 2000;343:1445-53); readers grade it per
segment in quarters of the wall. Per slice, rays are cast from the LV centre (the centroid of the
blood pool, or of the myocardium in a slice without blood pool) every ``360 / RAYS_PER_SLICE``
degrees. Along each ray the first stretch of myocardium (labels 2|3|4) met from the centre is the
wall; its transmurality is the length of scar (3|4, MVO included) in it over its length, measured
in mm on the pixel grid, so anisotropic pixels count right. Rays that meet no wall (the outflow
tract of a basal slice) are left out. Myocardium islands much smaller than the wall (a papillary
muscle drawn as myocardium) are not wall.

Per slice and over the stack (all rays of all slices alike):

* ``scar_circumference_percent``: rays with any scar, % of the rays that cross the wall;
* ``transmural_over_50_percent``: rays whose scar spans more than half of the wall, % of the rays
  that cross the wall;
* ``scar_transmurality_mean_percent``: mean transmurality of the rays with scar (None without scar).

All three are None where there is no myocardium. The angular resolution (2°) is far finer than
the pixels at the wall (a 1.5 mm pixel spans about 3° at 30 mm), so neighbouring rays share pixels;
the figures are shares of the circumference, not counts of independent measurements.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .labels import LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR_LABELS

RAYS_PER_SLICE = 180
#: Sampling step along a ray, as a fraction of the smaller pixel spacing.
STEP_FRACTION = 0.25
#: Myocardium regions (8-connected) smaller than this fraction of the largest are not wall.
MIN_WALL_REGION_FRACTION = 0.25
#: Gaps in the wall up to this many (larger) pixel spacings long along a ray are bridged: a hand-drawn
#: Scar segment one pixel short of the Myocardium segment, crossed at any angle.
MAX_GAP_PIXELS = 1.5
#: Scar spanning more than this fraction of the wall counts as transmural over 50 %.
TRANSMURAL_FRACTION = 0.5


@dataclass
class TransmuralitySummary:
    """The three per-slice (or per-stack) figures; see the module docstring."""

    scar_circumference_percent: float | None = None
    transmural_over_50_percent: float | None = None
    scar_transmurality_mean_percent: float | None = None


def ray_transmurality(plane: np.ndarray, spacing_rc_mm: tuple[float, float],
                      rays: int = RAYS_PER_SLICE) -> np.ndarray:
    """Transmurality (0–1) along each of ``rays`` rays of one (rows, cols) labelmap slice.

    NaN for a ray that crosses no wall; an empty array for a slice without myocardium.
    """
    myocardium = np.isin(plane, MYOCARDIUM_LABELS)
    if not myocardium.any():
        return np.zeros(0)
    wall = _wall(myocardium)
    spacing = np.asarray(spacing_rc_mm, dtype=float)
    blood_pool = plane == LV_BLOOD_POOL
    centre_rc = np.argwhere(blood_pool if blood_pool.any() else wall).mean(axis=0) * spacing  # mm
    wall_rc = np.argwhere(wall) * spacing
    reach_mm = float(np.hypot(*(wall_rc - centre_rc).T).max() + spacing.max())
    step_mm = STEP_FRACTION * float(spacing.min())
    distances = np.arange(0.0, reach_mm + step_mm, step_mm)
    angles = np.arange(rays) * (2 * np.pi / rays)
    rows = np.rint((centre_rc[0] + np.sin(angles)[:, None] * distances) / spacing[0]).astype(int)
    cols = np.rint((centre_rc[1] + np.cos(angles)[:, None] * distances) / spacing[1]).astype(int)
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
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(crosses, scar_samples / np.maximum(wall_samples, 1), np.nan)


def summarise(transmurality: np.ndarray) -> TransmuralitySummary:
    """The figures of a set of rays (one slice's, or every slice's together)."""
    crossing = transmurality[~np.isnan(transmurality)]
    if crossing.size == 0:
        return TransmuralitySummary()
    scarred = crossing > 0
    return TransmuralitySummary(
        scar_circumference_percent=float(100.0 * scarred.mean()),
        transmural_over_50_percent=float(100.0 * (crossing > TRANSMURAL_FRACTION).mean()),
        scar_transmurality_mean_percent=float(100.0 * crossing[scarred].mean()) if scarred.any() else None,
    )


def _wall(myocardium: np.ndarray) -> np.ndarray:
    labelled, count = ndimage.label(myocardium, structure=np.ones((3, 3)))
    if count <= 1:
        return myocardium
    sizes = ndimage.sum_labels(myocardium, labelled, np.arange(1, count + 1))
    kept = np.flatnonzero(sizes >= MIN_WALL_REGION_FRACTION * sizes.max()) + 1
    return np.isin(labelled, kept)


def _bridge_gaps(on_wall: np.ndarray, gap_samples: int) -> np.ndarray:
    """Close gaps of up to ``gap_samples`` samples along each ray (rows of ``on_wall``)."""
    if gap_samples < 1:
        return on_wall
    padded = np.pad(on_wall, ((0, 0), (gap_samples + 1, gap_samples + 1)))
    closed = ndimage.binary_closing(padded, structure=np.ones((1, gap_samples + 1), dtype=bool))
    return closed[:, gap_samples + 1:-(gap_samples + 1)] | on_wall

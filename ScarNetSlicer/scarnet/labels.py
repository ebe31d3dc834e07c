"""Label values, names and colours shared by every part of ScarNetSlicer.

0 background, 1 LV blood pool, 2 healthy myocardium, 3 scar (without MVO), 4 MVO.
For reporting, scar is 3|4 (the SCMR convention: MVO is part of the infarct) and the
LV myocardium is 2|3|4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

BACKGROUND = 0
LV_BLOOD_POOL = 1
HEALTHY_MYOCARDIUM = 2
SCAR = 3
MVO = 4

NUM_CLASSES = 5
LABEL_VALUES = (BACKGROUND, LV_BLOOD_POOL, HEALTHY_MYOCARDIUM, SCAR, MVO)
MYOCARDIUM_LABELS = (HEALTHY_MYOCARDIUM, SCAR, MVO)
SCAR_LABELS = (SCAR, MVO)

#: Density of myocardium used to convert volume to mass (g/mL), as in SCMR reporting.
MYOCARDIUM_DENSITY_G_PER_ML = 1.05


@dataclass(frozen=True)
class SegmentInfo:
    """How one label is shown as a segment: name, colour and DICOM/SNOMED CT terminology."""

    label: int
    segment_id: str
    name: str
    color_rgb: tuple[float, float, float]
    # (coding scheme designator, code value, code meaning) triplets
    category: tuple[str, str, str]
    type: tuple[str, str, str]
    type_modifier: tuple[str, str, str] | None = None


_ANATOMICAL = ("SCT", "123037004", "Anatomical Structure")
_MORPH = ("SCT", "49755003", "Morphologically Altered Structure")

SEGMENTS: tuple[SegmentInfo, ...] = (
    SegmentInfo(
        LV_BLOOD_POOL, "lv_blood_pool", "LV blood pool", (0.85, 0.25, 0.25),
        _ANATOMICAL, ("SCT", "87878005", "Left ventricle"),
    ),
    SegmentInfo(
        HEALTHY_MYOCARDIUM, "myocardium", "Myocardium", (0.80, 0.62, 0.47),
        _ANATOMICAL, ("SCT", "74281007", "Myocardium"),
    ),
    SegmentInfo(
        SCAR, "scar", "Scar", (1.00, 0.90, 0.10),
        _MORPH, ("SCT", "12402003", "Scar"),
    ),
    SegmentInfo(
        MVO, "mvo", "MVO", (0.20, 0.45, 0.95),
        _MORPH, ("99SCARNET", "mvo", "Microvascular obstruction"),
    ),
)

SEGMENT_BY_LABEL = {s.label: s for s in SEGMENTS}

#: Segment names read as each label, besides the names above (compared lower-case, runs of spaces,
#: "_" and "-" as one space): what readers commonly call the regions when they draw them by hand.
#: Plain "LV" is left out on purpose: it may mean the cavity or the whole ventricle with its wall.
SEGMENT_NAME_ALIASES: dict[int, tuple[str, ...]] = {
    LV_BLOOD_POOL: ("lv blood pool", "blood pool", "lv cavity", "lv bp", "left ventricle cavity",
                    "left ventricular cavity"),
    HEALTHY_MYOCARDIUM: ("myocardium", "healthy myocardium", "lv myocardium", "myo", "normal myocardium",
                         "remote myocardium", "left ventricle myocardium"),
    SCAR: ("scar", "infarct", "infarction", "myocardial infarction", "lge", "late enhancement",
           "late gadolinium enhancement", "enhancement"),
    MVO: ("mvo", "microvascular obstruction", "no reflow", "no reflow zone"),
}
_LABEL_BY_NAME = {alias: label for label, aliases in SEGMENT_NAME_ALIASES.items() for alias in aliases}


def label_for_segment_name(name: str) -> int | None:
    """The label a segment of this name stands for (:data:`SEGMENT_NAME_ALIASES`), or None.

    Exact names only (no guessing from parts of a name): "Scar" and "infarct" are scar, "Segment_1"
    and "RV" are nothing, and the caller says so rather than counting them.
    """
    return _LABEL_BY_NAME.get(re.sub(r"[\s_\-]+", " ", str(name)).strip().lower())


def myocardium_mask(labelmap: np.ndarray) -> np.ndarray:
    """Whole LV myocardium (healthy + scar + MVO) as a boolean mask."""
    return np.isin(labelmap, MYOCARDIUM_LABELS)


def scar_mask(labelmap: np.ndarray) -> np.ndarray:
    """Scar for reporting (scar + MVO) as a boolean mask."""
    return np.isin(labelmap, SCAR_LABELS)


class DrawnSegment(NamedTuple):
    """A segment read as one of the engine's labels: its name, the label, and its voxels as drawn (before
    overlapping segments are resolved) on the labelmap's (k, j, i) grid; a reader may leave out (None) the
    voxels of segments other than the LV blood pool, which :func:`blood_pool_hidden_by_overlap` does not read."""

    name: str
    label: int
    mask_kji: np.ndarray | None


def blood_pool_hidden_by_overlap(segments: list[DrawnSegment], labels: np.ndarray, voxel_ml: float) -> list[str]:
    """A message for each LV blood pool segment that loses more than half its voxels to higher labels where
    segments overlap, naming it, what it lost and to which segments.

    The higher label wins by design (a scar drawn over part of a myocardium ring is scar), but a segment mostly
    drawn under another, such as a myocardium drawn as the filled epicardial disk over the blood pool, is then
    counted wrongly without a word (the blood pool 0 mL, the myocardium with the cavity in it). Myocardium, scar
    and MVO are nested tissues (scar is myocardium, MVO is scar): a myocardium segment mostly under its scar (a
    large transmural infarct) is drawn right, so only the blood pool is checked. ``labels`` is the result
    (k, j, i), ``voxel_ml`` a voxel's volume.
    """
    messages = []
    for segment in segments:
        if segment.label != LV_BLOOD_POOL:
            continue
        drawn = int(segment.mask_kji.sum())
        kept_labels = labels[segment.mask_kji]
        lost = int((kept_labels > segment.label).sum())  # within its mask a label is never lower than its own
        if not drawn or 2 * lost <= drawn:
            continue
        winners = []
        for label in np.unique(kept_labels[kept_labels > segment.label]).tolist():
            names = " / ".join(dict.fromkeys(other.name for other in segments if other.label == label))
            winners.append(f"{names} ({int((kept_labels == label).sum())} voxels)")
        messages.append(f"segment {segment.name} loses {lost} of its {drawn} voxels ({lost * voxel_ml:.1f} of "
                        f"{drawn * voxel_ml:.1f} mL) to {', '.join(winners)} where they overlap (the higher label "
                        "wins: MVO over Scar over Myocardium over LV blood pool); check that the segments were drawn "
                        "as meant (a myocardium drawn as a filled disk hides the blood pool)")
    return messages

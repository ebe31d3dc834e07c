"""Label values, names and colours shared by every part of ScarNetSlicer.

0 background, 1 LV blood pool, 2 healthy myocardium, 3 scar (without MVO), 4 MVO.
For reporting, scar is 3|4 (the SCMR convention: MVO is part of the infarct) and the
LV myocardium is 2|3|4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

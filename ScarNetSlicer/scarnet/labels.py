"""Label values, names and colours shared by every part of ScarNetSlicer.

0 background, 1 LV blood pool, 2 healthy myocardium, 3 scar (without MVO), 4 MVO.
For reporting, scar is 3|4 (the SCMR convention: MVO is part of the infarct) and the
LV myocardium is 2|3|4.
"""

from __future__ import annotations

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


def myocardium_mask(labelmap: np.ndarray) -> np.ndarray:
    """Whole LV myocardium (healthy + scar + MVO) as a boolean mask."""
    return np.isin(labelmap, MYOCARDIUM_LABELS)


def scar_mask(labelmap: np.ndarray) -> np.ndarray:
    """Scar for reporting (scar + MVO) as a boolean mask."""
    return np.isin(labelmap, SCAR_LABELS)

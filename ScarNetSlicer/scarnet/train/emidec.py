"""EMIDEC LGE data (``../shared/data/emidec``): PNG slices with labels, the train/val split, geometry.

The PNGs lost their pixel spacing: every slice was resized to 256×256, stretching non-square
originals. The LV is close to round in short axis, so the ratio of the myocardium's second
moments along rows and columns, pooled over a case's slices, recovers the stretch (checked on
the two cases with real NIfTI geometry: 0.958 estimated vs 0.961 true for Case_P100, 0.588
vs 0.602 for Case_N006). The less-stretched axis keeps ≈1.4 mm per pixel (EMIDEC's native
1.25–1.46 mm over ≤256 px); scale augmentation covers the remaining uncertainty.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..labels import LV_BLOOD_POOL, MYOCARDIUM_LABELS
from ..volume import Volume

#: mm per PNG pixel along the less-stretched axis (see module docstring).
PNG_BASE_SPACING_MM = 1.4
#: EMIDEC's typical slice spacing; only used to give PNG stacks a plausible 3D geometry.
PNG_SLICE_SPACING_MM = 10.0
_SLICE_NAME = re.compile(r"(Case_[NP]\d+)_slice(\d+)\.png$")


def default_emidec_root() -> Path | None:
    """``../shared/data/emidec`` beside the repository checkout, when present."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent.parent / "shared" / "data" / "emidec"
        if (candidate / "splits.json").is_file():
            return candidate
    return None


@dataclass
class EmidecCase:
    """One exam as a stack of PNG slices with estimated in-plane spacing."""

    name: str
    images: np.ndarray  # (slices, 256, 256) float32, 0–255
    labels: np.ndarray  # (slices, 256, 256) uint8, 0–4
    spacing_rc_mm: tuple[float, float]  # estimated (row, column) spacing

    def as_volume(self) -> tuple[Volume, Volume]:
        """Image and labelmap volumes with the estimated geometry (identity direction)."""
        spacing = (self.spacing_rc_mm[1], self.spacing_rc_mm[0], PNG_SLICE_SPACING_MM)
        return Volume(self.images, spacing), Volume(self.labels, spacing)


def load_split(root: Path) -> dict[str, list[str]]:
    data = json.loads((root / "splits.json").read_text())
    return {"train": list(data["train"]), "val": list(data["val"])}


def estimate_spacing_rc(labels: np.ndarray) -> tuple[float, float]:
    """(row, column) mm per pixel of a case's PNGs, from the roundness of its LV (see module docstring)."""
    var_rows = var_cols = 0.0
    for plane in labels:
        lv = (plane == LV_BLOOD_POOL) | np.isin(plane, MYOCARDIUM_LABELS)
        if lv.sum() < 30:
            continue
        rows, cols = np.nonzero(lv)
        var_rows += rows.var()
        var_cols += cols.var()
    if var_rows <= 0 or var_cols <= 0:
        return (PNG_BASE_SPACING_MM, PNG_BASE_SPACING_MM)
    ratio = float(np.clip(np.sqrt(var_cols / var_rows), 1 / 2.2, 2.2))  # >1: columns stretched
    if ratio >= 1:
        return (PNG_BASE_SPACING_MM, PNG_BASE_SPACING_MM / ratio)
    return (PNG_BASE_SPACING_MM * ratio, PNG_BASE_SPACING_MM)


def load_cases(root: Path, names: list[str] | None = None) -> list[EmidecCase]:
    """Read the PNG stacks of ``names`` (all cases when None), sorted by slice number."""
    from PIL import Image

    image_dir, label_dir = root / "png" / "images", root / "png" / "labels"
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: EMIDEC PNG folder not found")
    files: dict[str, list[tuple[int, Path]]] = defaultdict(list)
    for path in image_dir.glob("*.png"):
        match = _SLICE_NAME.match(path.name)
        if match:
            files[match.group(1)].append((int(match.group(2)), path))
    wanted = sorted(files) if names is None else names
    cases = []
    for name in wanted:
        if name not in files:
            raise InputError(f"EMIDEC case {name} has no PNG slices in {image_dir}")
        slices = sorted(files[name])
        images = np.stack([np.asarray(Image.open(p), dtype=np.float32) for _, p in slices])
        labels = np.stack([np.asarray(Image.open(label_dir / p.name), dtype=np.uint8) for _, p in slices])
        cases.append(EmidecCase(name, images, labels, estimate_spacing_rc(labels)))
    return cases

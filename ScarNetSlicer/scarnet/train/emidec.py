"""EMIDEC LGE data (``../shared/data/emidec``): PNG slices with labels, the train/val split, geometry.

The PNGs lost their pixel spacing: every slice was resized to 256×256, stretching non-square
originals. The LV is close to round in short axis, so the ratio of the myocardium's second
moments along rows and columns, pooled over a case's slices, recovers the stretch (checked on
the two cases with real NIfTI geometry: 0.958 estimated vs 0.961 true for Case_P100, 0.588
vs 0.602 for Case_N006). The less-stretched axis keeps ≈1.4 mm per pixel (EMIDEC's native
1.25–1.46 mm over ≤256 px); scale augmentation covers the remaining uncertainty.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import os_error_reason
from ..labels import LV_BLOOD_POOL, MVO, MYOCARDIUM_LABELS
from ..volume import Volume

#: mm per PNG pixel along the less-stretched axis (see module docstring).
PNG_BASE_SPACING_MM = 1.4
#: EMIDEC's typical slice spacing; only used to give PNG stacks a plausible 3D geometry.
PNG_SLICE_SPACING_MM = 10.0
#: The largest label value (0 background, 1 LV blood pool, 2 healthy myocardium, 3 scar, 4 MVO).
MAX_LABEL = MVO
_SLICE_NAME = re.compile(r"(Case_[NP]\d+)_slice(\d+)\.png$")


#: Where the EMIDEC data is looked for without --emidec, as the messages say it.
DEFAULT_EMIDEC_TEXT = "shared/data/emidec beside the checkout or in a folder above the current one"


def default_emidec_root() -> Path | None:
    """``shared/data/emidec`` (with its ``splits.json``) beside the repository checkout, else in the current folder
    or one above it: a package installed with ``pip install .`` (not editable) lives in site-packages, far from
    the checkout, and is run from the checkout (``../shared/data/emidec``)."""
    starts = [Path(__file__).resolve().parent]
    with contextlib.suppress(OSError):  # the current folder was removed
        starts.append(Path.cwd())
    for start in starts:
        for parent in (start, *start.parents):
            candidate = parent / "shared" / "data" / "emidec"
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
    """The ``train`` and ``val`` case names in ``root/splits.json``; :class:`InputError` naming it when damaged."""
    path = root / "splits.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"{path}: cannot be read ({os_error_reason(error)})") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; expected the EMIDEC split as JSON") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object with 'train' and 'val' lists of case names")
    split = {}
    for key in ("train", "val"):
        names = data.get(key)
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise InputError(f"{path}: no '{key}' list of case names")
        split[key] = list(names)
    both = sorted(set(split["train"]) & set(split["val"]))
    if both:  # the checkpoint would be selected, and figures reported, on cases it trained on
        raise InputError(f"{path}: {', '.join(both[:5])} in both the 'train' and the 'val' lists")
    return split


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
    """Read the PNG stacks of ``names`` (all cases when None), sorted by slice number.

    Raises :class:`InputError` naming the file for a missing, unreadable or colour PNG, a label
    PNG of another size than its image (or slices of different sizes), and label values outside 0-4.
    """
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
        images, labels = [], []
        for _, path in slices:
            image = _read_png(path)
            label = _read_png(label_dir / path.name, what=f"label PNG of {path.name}")
            if images and image.shape != images[0].shape:
                raise InputError(f"{path}: {_size(image)} pixels, but {slices[0][1].name} of the same case has "
                                 f"{_size(images[0])}")
            if label.shape != image.shape:
                raise InputError(f"{label_dir / path.name}: {_size(label)} pixels, but its image {path.name} has "
                                 f"{_size(image)}")
            if not np.issubdtype(label.dtype, np.integer):  # a 1-bit or floating-point PNG
                raise InputError(f"{label_dir / path.name}: holds {label.dtype} values; EMIDEC labels are whole "
                                 f"numbers 0-{MAX_LABEL}")
            if label.min() < 0 or label.max() > MAX_LABEL:
                outside = [v for v in np.unique(label).tolist() if v not in range(MAX_LABEL + 1)]
                raise InputError(f"{label_dir / path.name}: label values outside 0-{MAX_LABEL} (e.g. {outside[0]}); "
                                 "EMIDEC labels are 0 background, 1 LV blood pool, 2 myocardium, 3 scar, 4 MVO")
            images.append(image.astype(np.float32))
            labels.append(label.astype(np.uint8))
        stacked = np.stack(labels)
        cases.append(EmidecCase(name, np.stack(images), stacked, estimate_spacing_rc(stacked)))
    return cases


def _size(array: np.ndarray) -> str:
    return f"{array.shape[1]}×{array.shape[0]}"


def _read_png(path: Path, what: str = "PNG") -> np.ndarray:
    """One greyscale PNG as an array; :class:`InputError` naming the file when it is missing, unreadable or colour.

    A damaged slice would otherwise stop a training run or an evaluation with PIL's or numpy's
    own error, far from the file that caused it.
    """
    from PIL import Image

    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    try:
        with Image.open(path) as image:
            mode = image.mode
            array = np.asarray(image)
    except Image.UnidentifiedImageError:
        raise InputError(f"{path}: not a readable PNG (not an image file PIL recognises)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as error:  # truncated, damaged, huge
        raise InputError(f"{path}: not a readable PNG ({' '.join(str(error).split())[:80]})") from None
    if array.ndim != 2:
        raise InputError(f"{path}: a colour or multi-channel image ({mode}); EMIDEC PNGs are greyscale")
    return array

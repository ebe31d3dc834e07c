"""Study: would a second pass with the grey levels moved to the training data's tissue levels undo a protocol's
or display curve's contrast? EMIDEC val, bundled weights, CPU.

Pass 1 segments the exam as it is. Its healthy myocardium and LV blood pool give the exam's tissue levels, as
shares of the 0.5–99.5 percentile range around the heart (the range the model's normalisation maps to 0–1);
a piecewise-linear map (straight beyond the range's ends) moves them to the median levels of the EMIDEC
*train* exams (their expert labels), and pass 2 segments the remapped exam. Conditions: as stored, the display curve of
``grey_levels.py`` (levels below the blood pool compressed), and ``scarnet evaluate``'s protocol shifts
(healthy myocardium not nulled; blood pool contrast × 1.4). Scar and myocardium Dice against the experts for
both passes.

    python tools/studies/tissue_levels.py [--cases 20]
"""

from __future__ import annotations

import argparse

import numpy as np
from _val import dice, val_exams_and_model
from grey_levels import below_blood_compressed

from scarnet.evaluate_cli import add_contrast_shift
from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MYOCARDIUM_LABELS, SCAR_LABELS
from scarnet.preprocess import NORMALISATION_PERCENTILES
from scarnet.train.emidec import default_emidec_root, load_cases, load_split
from scarnet.volume import Volume

MIN_TISSUE_VOXELS = 200
#: How far around the labels' box the range is taken (the heart crop is 160 mm wide).
MARGIN_MM = 40.0


def heart_range(image: np.ndarray, labels: np.ndarray, spacing_rc_mm: tuple[float, float]) -> tuple[float, float]:
    """The 0.5–99.5 percentile range of the image around the heart (its labels' box widened by
    :data:`MARGIN_MM` in-plane), as the model normalises its heart crop."""
    k, rows, columns = np.nonzero(labels)
    margin = [int(round(MARGIN_MM / spacing)) for spacing in spacing_rc_mm]
    box = image[k.min():k.max() + 1, max(rows.min() - margin[0], 0):rows.max() + margin[0] + 1,
                max(columns.min() - margin[1], 0):columns.max() + margin[1] + 1]
    low, high = np.percentile(box, NORMALISATION_PERCENTILES)
    return float(low), float(high)


def tissue_levels(image: np.ndarray, labels: np.ndarray, spacing_rc_mm: tuple[float, float]
                  ) -> tuple[float, float] | None:
    """Healthy myocardium's and the LV blood pool's median levels as shares of :func:`heart_range`."""
    healthy, blood = labels == HEALTHY_MYOCARDIUM, labels == LV_BLOOD_POOL
    if healthy.sum() < MIN_TISSUE_VOXELS or blood.sum() < MIN_TISSUE_VOXELS:
        return None
    low, high = heart_range(image, labels, spacing_rc_mm)
    if high <= low:
        return None
    return tuple((float(np.median(image[tissue])) - low) / (high - low) for tissue in (healthy, blood))


def remapped(image: Volume, labels: np.ndarray, found: tuple[float, float], target: tuple[float, float]) -> Volume:
    """``image`` with its tissue levels ``found`` moved to ``target`` (shares of :func:`heart_range`)."""
    values = image.array.astype(np.float64)
    low, high = heart_range(values, labels, _spacing_rc(image))
    x = (values - low) / (high - low)
    source = np.array([0.0, *found, 1.0])
    destination = np.array([0.0, *target, 1.0])
    if not np.all(np.diff(source) > 0):  # levels out of order: nothing sensible to map
        return image
    y = np.interp(x, source, destination)
    below, above = x < 0, x > 1  # straight on beyond the range, with the end segments' slopes
    y[below] = x[below] * (destination[1] / source[1])
    y[above] = 1.0 + (x[above] - 1.0) * ((1.0 - destination[2]) / (1.0 - source[2]))
    return image.with_array((y * (high - low) + low).astype(np.float32))


def _spacing_rc(volume: Volume) -> tuple[float, float]:
    return volume.spacing_mm[1], volume.spacing_mm[0]


def train_levels() -> tuple[float, float]:
    """The median tissue levels of the EMIDEC train exams, from their expert labels."""
    root = default_emidec_root()
    levels = [tissue_levels(case.images, case.labels, case.spacing_rc_mm)
              for case in load_cases(root, load_split(root)["train"])]
    found = np.array([level for level in levels if level is not None])
    return float(np.median(found[:, 0])), float(np.median(found[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    args = parser.parse_args()
    cases, segmenter = val_exams_and_model(args.cases)
    target = train_levels()
    print(f"train tissue levels (share of the 0.5-99.5 percentile range): myocardium {target[0]:.3f}, "
          f"blood pool {target[1]:.3f}", flush=True)
    conditions = {
        "as stored": lambda image, reference: image,
        "below blood compressed": lambda image, reference: image.with_array(
            below_blood_compressed(image.array, reference.array).astype(np.float32)),
        "myocardium not nulled": lambda image, reference: add_contrast_shift(image, reference, "myocardium not nulled"),
        "blood ×1.4": lambda image, reference: add_contrast_shift(image, reference, "blood ×1.4"),
    }
    scores = {(name, run): {"scar": [], "myocardium": []} for name in conditions for run in ("pass 1", "pass 2")}
    for case in cases:
        image, reference = case.as_volume()
        has_scar = bool(np.isin(reference.array, SCAR_LABELS).any())
        line = [case.name]
        for name, condition in conditions.items():
            shown = condition(image, reference)
            first = segmenter(shown, name=case.name)
            found = tissue_levels(shown.array, first.labelmap.array, _spacing_rc(shown))
            second = first if found is None else segmenter(remapped(shown, first.labelmap.array, found, target),
                                                           name=case.name)
            for run, result in (("pass 1", first), ("pass 2", second)):
                labels = result.labelmap.array
                scores[name, run]["myocardium"].append(dice(labels, reference.array, MYOCARDIUM_LABELS) or 0.0)
                if has_scar:
                    scores[name, run]["scar"].append(dice(labels, reference.array, SCAR_LABELS) or 0.0)
            level_text = "-" if found is None else f"{found[0]:.2f}/{found[1]:.2f}"
            line.append(f"{name}: levels {level_text}, scar {first.report.total.scar_ml:.1f} -> "
                        f"{second.report.total.scar_ml:.1f} mL")
        print("; ".join(line), flush=True)
    print("| Condition | Myocardium Dice pass 1 → 2 | Scar Dice pass 1 → 2 (infarct exams) |")
    print("| --- | --- | --- |")
    for name in conditions:
        first, second = scores[name, "pass 1"], scores[name, "pass 2"]
        print(f"| {name} | {np.mean(first['myocardium']):.3f} → {np.mean(second['myocardium']):.3f} | "
              f"{np.mean(first['scar']):.3f} → {np.mean(second['scar']):.3f} (n={len(first['scar'])}) |")


if __name__ == "__main__":
    main()

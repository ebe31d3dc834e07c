"""Study: does the way an exam's intensities are stored change ScarNet's result? EMIDEC val, bundled weights,
CPU.

Each val exam is segmented as stored and under mappings of its grey levels that scanners and programs apply:
linear ones (rounded to integers, ×1e-3, an offset of +4096, quantised to 8 bits), one hot voxel of 1e6 × the
maximum outside the heart (an artefact, a value left at the scanner's maximum), and a monotone but non-linear
one (the levels below the blood pool's compressed by a square root, as a PSIR reconstruction's sign-preserving
display can). For each: exams refused, scar Dice against the run as stored and against the experts, and the
scar volume's change (exams with at least 1 mL of scar).

    python tools/studies/grey_levels.py [--cases 20] [--weights W.safetensors]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import numpy as np
from _val import dice, val_exams_and_model

from scarnet.errors import InputError
from scarnet.labels import LV_BLOOD_POOL, SCAR_LABELS


def hot_voxel(array: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One voxel of 1e6 × the maximum on the middle slice, at the image corner farthest from the heart."""
    out = array.astype(np.float64).copy()
    k = array.shape[0] // 2
    heart_j, heart_i = np.argwhere(reference[k] > 0).mean(axis=0) if (reference[k] > 0).any() else (0, 0)
    rows, columns = array.shape[1:]
    corners = [(j, i) for j in (rows // 10, rows - 1 - rows // 10)
               for i in (columns // 10, columns - 1 - columns // 10)]
    j, i = max(corners, key=lambda corner: (corner[0] - heart_j) ** 2 + (corner[1] - heart_i) ** 2)
    out[k, j, i] = 1e6 * max(float(array.max()), 1.0)
    return out


def below_blood_compressed(array: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Levels above the blood pool's mean kept (scaled), those below it square-root compressed, sign kept."""
    values = array.astype(np.float64)
    blood = float(values[reference == LV_BLOOD_POOL].mean())
    scaled = (values - blood) / max(float(values.max()) - blood, 1e-6)
    return np.where(scaled > 0, scaled, -0.3 * np.sqrt(np.abs(scaled))) * 1000.0


VARIANTS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "rounded to int16": lambda a, r: np.rint(a).astype(np.int16),
    "x 1e-3": lambda a, r: a.astype(np.float64) * 1e-3,
    "+4096 (uint16)": lambda a, r: (np.rint(a) + 4096).astype(np.uint16),
    "8 bits": lambda a, r: np.rint((a - a.min()) / max(float(np.ptp(a)), 1e-6) * 255).astype(np.uint8),
    "one hot voxel": hot_voxel,
    "below blood compressed": below_blood_compressed,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--weights", help="weights to study (default: the bundled ones)")
    args = parser.parse_args()
    cases, segmenter = val_exams_and_model(args.cases, args.weights)
    refused = {name: [] for name in VARIANTS}
    same, expert, change = ({name: [] for name in ["as stored", *VARIANTS]} for _ in range(3))
    for case in cases:
        image, reference = case.as_volume()
        stored = segmenter(image, name=case.name)
        has_scar = bool(np.isin(reference.array, SCAR_LABELS).any())
        runs = {"as stored": stored}
        for name, mapping in VARIANTS.items():
            try:
                runs[name] = segmenter(image.with_array(mapping(image.array, reference.array)),
                                       name=f"{case.name} {name}")
            except InputError as error:
                refused[name].append(case.name)
                print(f"{case.name} {name}: refused ({error})", flush=True)
        line = [f"{case.name}: scar {stored.report.total.scar_ml:.2f} mL"]
        for name, result in runs.items():
            labels = result.labelmap.array
            if has_scar:
                expert[name].append(dice(labels, reference.array, SCAR_LABELS) or 0.0)
            if name == "as stored":
                continue
            between = dice(labels, stored.labelmap.array, SCAR_LABELS)
            if stored.report.total.scar_ml >= 1.0:
                change[name].append(result.report.total.scar_ml / stored.report.total.scar_ml - 1.0)
                if between is not None:
                    same[name].append(between)
            line.append(f"{name}: {result.report.total.scar_ml - stored.report.total.scar_ml:+.2f} mL")
        print("; ".join(line), flush=True)
    print("| Storage | Refused | Scar Dice vs as stored (median, min) | Scar volume change (median, largest) "
          "| Scar Dice vs experts (infarct exams) |")
    print("| --- | --- | --- | --- | --- |")
    print(f"| as stored | 0 | - | - | {np.mean(expert['as stored']):.3f} |")
    for name in VARIANTS:
        between, moved = same[name], change[name]
        largest = max(moved, key=abs) if moved else None
        print(f"| {name} | {len(refused[name])} | "
              + (f"{statistics.median(between):.3f}, {min(between):.3f}" if between else "-") + " | "
              + (f"{statistics.median(moved):+.1%}, {largest:+.1%}" if moved else "-") + " | "
              + (f"{np.mean(expert[name]):.3f} (n={len(expert[name])})" if expert[name] else "-") + " |")


if __name__ == "__main__":
    main()

"""Study: how far do an exam's figures move when the heart crop is placed a fraction of a pixel elsewhere?
EMIDEC val, bundled weights, CPU.

The crop is centred on the median of the predicted LV centroids, a continuous value, and resampled there;
padding an image with zeros, cutting its field of view or a bright artefact outside the heart move that
centre by a fraction of a pixel to a pixel or two. Here each exam is segmented with the located centre and
with it moved by ``--shifts`` (row, column pixel pairs); for each shift: the scar volume against the
unshifted run, the scar Dice between the two runs, and the scar and myocardium Dice against the experts.

    python tools/studies/subpixel_crop.py [--cases 20] [--shifts 0.5,0 0,0.5 0.5,0.5]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
from _val import dice, val_exams_and_model

from scarnet.labels import MYOCARDIUM_LABELS, SCAR_LABELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shifts", nargs="+", default=["0.5,0", "0,0.5", "0.5,0.5"],
                        help="row,column shifts of the crop centre in pixels")
    args = parser.parse_args()
    shifts = [tuple(float(value) for value in text.split(",")) for text in args.shifts]
    cases, segmenter = val_exams_and_model(args.cases)
    located = segmenter.localise
    scar_changes: list[float] = []  # |Δscar| / scar, exams with ≥ 1 mL of scar
    between_runs: list[float] = []
    expert_scar: dict[tuple[float, ...], list[float]] = {shift: [] for shift in [(0.0, 0.0), *shifts]}
    expert_myocardium: dict[tuple[float, ...], list[float]] = {shift: [] for shift in expert_scar}
    for case in cases:
        image, reference = case.as_volume()
        runs = {}
        for shift in expert_scar:
            segmenter.localise = (lambda volume, slices=None, shift=shift: tuple(
                np.add(located(volume, slices), shift)))
            try:
                runs[shift] = segmenter(image, name=case.name)
            finally:
                del segmenter.localise  # back to the method
        base = runs[(0.0, 0.0)]
        line = [f"{case.name}: scar {base.report.total.scar_ml:.2f} mL"]
        for shift, result in runs.items():
            labels = result.labelmap.array
            scar = dice(labels, reference.array, SCAR_LABELS)
            if scar is not None and np.isin(reference.array, SCAR_LABELS).any():
                expert_scar[shift].append(scar)
            expert_myocardium[shift].append(dice(labels, reference.array, MYOCARDIUM_LABELS) or 0.0)
            if shift == (0.0, 0.0):
                continue
            change = result.report.total.scar_ml - base.report.total.scar_ml
            same = dice(labels, base.labelmap.array, SCAR_LABELS)
            if base.report.total.scar_ml >= 1.0:
                scar_changes.append(abs(change) / base.report.total.scar_ml)
                if same is not None:
                    between_runs.append(same)
            line.append(f"({shift[0]:+g},{shift[1]:+g}) px: {change:+.2f} mL, scar Dice vs located "
                        f"{'-' if same is None else f'{same:.3f}'}")
        print("; ".join(line), flush=True)
    print(f"Exams with >= 1 mL of scar: |scar change| median {statistics.median(scar_changes):.1%}, "
          f"max {max(scar_changes):.1%} over {len(scar_changes)} shifted runs; scar Dice between a shifted and the "
          f"located run median {statistics.median(between_runs):.3f}, min {min(between_runs):.3f}")
    for shift in expert_scar:
        print(f"shift ({shift[0]:+g},{shift[1]:+g}) px: scar Dice vs experts {np.mean(expert_scar[shift]):.3f} "
              f"(infarct exams, n={len(expert_scar[shift])}), myocardium Dice {np.mean(expert_myocardium[shift]):.3f}")


if __name__ == "__main__":
    main()

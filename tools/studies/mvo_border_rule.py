"""Study: should an MVO region need most of its myocardial border to be scar? EMIDEC val, bundled weights, CPU.

Post-processing keeps a predicted MVO region (8-connected, per slice) when any pixel of its border
touches scar; otherwise it becomes scar. The stricter rule tried here keeps it only when at least
``--min-scar-share`` of its border within the myocardium (healthy myocardium or scar; blood pool and
background left out, since MVO is subendocardial and often meets the cavity) is scar: a dark core
mostly surrounded by healthy myocardium is not the no-reflow core of an infarct.

The rule for adopting it was set before the run: over the 20 val exams, the mean MVO Dice over the
exams with MVO in the reference must not fall, and the mean absolute MVO volume error over all exams
must fall. Scar and myocardium Dice cannot change (MVO only becomes scar).

    python tools/studies/mvo_border_rule.py [--min-scar-share 0.5]
"""

from __future__ import annotations

import argparse

import numpy as np
from _val import val_exams_and_model
from scipy import ndimage

import scarnet.inference as inference
from scarnet.evaluate import dice
from scarnet.labels import HEALTHY_MYOCARDIUM, MVO, SCAR


def strict_mvo(plane: np.ndarray, min_scar_share: float) -> None:
    """MVO regions whose myocardial border is less than ``min_scar_share`` scar become scar (in place)."""
    structure = np.ones((3, 3))
    labelled, count = ndimage.label(plane == MVO, structure=structure)
    for index in range(1, count + 1):
        component = labelled == index
        ring = plane[ndimage.binary_dilation(component, structure=structure) & ~component]
        myocardial = np.isin(ring, (HEALTHY_MYOCARDIUM, SCAR))
        if not myocardial.any() or (ring[myocardial] == SCAR).mean() < min_scar_share:
            plane[component] = SCAR


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min-scar-share", type=float, default=0.5)
    args = parser.parse_args()
    cases, segmenter = val_exams_and_model()
    original = inference._nest_scar

    def nest_then_strict(plane: np.ndarray) -> None:
        original(plane)
        strict_mvo(plane, args.min_scar_share)

    rows = []
    for case in cases:
        image, reference = case.as_volume()
        voxel_ml = reference.voxel_volume_ml
        truth = reference.array == MVO
        figures = {}
        for rule in ("current", "strict"):
            inference._nest_scar = nest_then_strict if rule == "strict" else original
            try:
                predicted = segmenter(image, name=case.name).labelmap.array == MVO
            finally:
                inference._nest_scar = original
            figures[rule] = (dice(predicted, truth) if truth.any() else None, predicted.sum() * voxel_ml)
        reference_ml = truth.sum() * voxel_ml
        rows.append((case.name, reference_ml, figures))
        print(f"{case.name}: MVO reference {reference_ml:.2f} mL; " + "; ".join(
            f"{rule} Dice {'-' if d is None else f'{d:.3f}'}, {ml:.2f} mL" for rule, (d, ml) in figures.items()),
            flush=True)
    for rule in ("current", "strict"):
        dices = [f[rule][0] for _, _, f in rows if f[rule][0] is not None]
        errors = [abs(f[rule][1] - ref) for _, ref, f in rows]
        false_ml = sum(f[rule][1] for _, ref, f in rows if ref == 0)
        print(f"{rule}: MVO Dice {np.mean(dices):.3f} over {len(dices)} exams with MVO; mean |MVO volume error| "
              f"{np.mean(errors):.3f} mL over {len(rows)}; MVO in exams without: {false_ml:.2f} mL")


if __name__ == "__main__":
    main()

"""Study: scar transmurality from the bundled model against the expert's, EMIDEC val, CPU.

For each of the 20 val exams, the report of the model's labelmap (``scarnet segment``'s pipeline) and
that of the expert labelmap (``scarnet quantify``) give per slice and in total the share of the LV
circumference with scar and with scar through more than half of the wall (``scarnet.transmurality``).
Printed: per exam, then agreement over exams (bias and 95 % limits of agreement, model − expert, in
percentage points of the circumference) and over the slices where both have myocardium.

    python tools/studies/transmurality_val.py
"""

from __future__ import annotations

import numpy as np
from _val import val_exams_and_model

from scarnet.quantify import quantify

FIGURES = ("scar_circumference_percent", "transmural_over_50_percent")


def agreement(differences: list[float]) -> str:
    d = np.asarray(differences)
    low, high = d.mean() - 1.96 * d.std(ddof=1), d.mean() + 1.96 * d.std(ddof=1)
    return (f"bias {d.mean():+.1f}, 95 % LoA [{low:+.1f}, {high:+.1f}], "
            f"mean |difference| {np.abs(d).mean():.1f} (n = {d.size})")


def main() -> None:
    cases, segmenter = val_exams_and_model()
    per_case = {figure: [] for figure in FIGURES}
    per_slice = {figure: [] for figure in FIGURES}
    unmeasured = {"model": 0, "expert": 0}  # slices with myocardium but too little wall crossed to measure
    with_myocardium = {"model": 0, "expert": 0}
    for case in cases:
        image, reference = case.as_volume()
        predicted = segmenter(image, name=case.name).report
        expert = quantify(reference)
        for side, report in (("model", predicted), ("expert", expert)):
            lv = [s for s in report.slices if s.myocardium_ml > 0]
            with_myocardium[side] += len(lv)
            unmeasured[side] += sum(s.transmural_over_50_percent is None for s in lv)
        line = []
        for figure in FIGURES:
            p, e = getattr(predicted.total, figure), getattr(expert.total, figure)
            per_case[figure].append(p - e)
            line.append(f"{figure} model {p:.1f} / expert {e:.1f}")
            for ps, es in zip(predicted.slices, expert.slices):
                if getattr(ps, figure) is not None and getattr(es, figure) is not None:
                    per_slice[figure].append(getattr(ps, figure) - getattr(es, figure))
        print(f"{case.name}: " + "; ".join(line), flush=True)
    print("slices with myocardium not measured: " + ", ".join(
        f"{side} {unmeasured[side]} of {with_myocardium[side]}" for side in unmeasured))
    for figure in FIGURES:
        print(f"{figure}, per exam: {agreement(per_case[figure])}")
        print(f"{figure}, per slice: {agreement(per_slice[figure])}")


if __name__ == "__main__":
    main()

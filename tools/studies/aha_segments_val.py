"""Study: AHA segment scar from the bundled model against the expert's, EMIDEC val, CPU.

EMIDEC's PNGs lost their orientation and have no RV label, so no true RV insertion point is known:
each exam's reference point is put on the outer edge of the expert's myocardium of its middle
slice, straight up from the LV centre (towards row 0; ``scarnet.aha.outermost_wall_point_lps``).
The segments' anatomical names do not hold here; what is measured is whether the model's labelmap
and the expert's, cut into the same AHA sectors (``scarnet.aha``, basal / mid / apical from the
cavity; sectors compared where both have myocardium: 16 per exam, as neither has an apex slice), give the
same scar per sector: the 0-4 grade (exact, within one, quadratic-weighted
kappa), the scar % of the sector (bias and 95 % limits of agreement, model − expert, in points),
and the sectors graded 3-4 (scar through more than half of the segment).

    python tools/studies/aha_segments_val.py
"""

from __future__ import annotations

import numpy as np
from _val import val_exams_and_model

from scarnet.aha import outermost_wall_point_lps
from scarnet.quantify import quantify


def reference_point_lps(labelmap) -> np.ndarray:
    """The epicardium straight up (towards row 0) from the LV centre of the middle slice with blood pool."""
    return outermost_wall_point_lps(labelmap, -labelmap.direction[:, 1])


def weighted_kappa(a: np.ndarray, b: np.ndarray, classes: int = 5) -> float:
    """Cohen's kappa with quadratic weights for grades 0..classes-1."""
    observed = np.zeros((classes, classes))
    np.add.at(observed, (a, b), 1)
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    i, j = np.indices((classes, classes))
    weights = (i - j) ** 2 / (classes - 1) ** 2
    return float(1.0 - (weights * observed).sum() / (weights * expected).sum())


def main() -> None:
    cases, segmenter = val_exams_and_model()
    model_grades, expert_grades, differences = [], [], []
    for case in cases:
        image, reference = case.as_volume()
        point = reference_point_lps(reference)
        predicted = segmenter(image, name=case.name, rv_insertion_lps=point).report
        expert = quantify(reference, rv_insertion_lps=point)
        pairs = [(p, e) for p, e in zip(predicted.segments, expert.segments)
                 if p.scar_extent_score is not None and e.scar_extent_score is not None]
        model_grades += [p.scar_extent_score for p, _ in pairs]
        expert_grades += [e.scar_extent_score for _, e in pairs]
        differences += [p.scar_percent - e.scar_percent for p, e in pairs]
        print(f"{case.name}: grades model {''.join(str(p.scar_extent_score) for p, _ in pairs)} / "
              f"expert {''.join(str(e.scar_extent_score) for _, e in pairs)}", flush=True)
    m, e, d = np.array(model_grades), np.array(expert_grades), np.array(differences)
    print(f"sectors: {m.size}; grade equal in {100 * (m == e).mean():.0f} %, within one in "
          f"{100 * (np.abs(m - e) <= 1).mean():.0f} %; quadratic-weighted kappa {weighted_kappa(m, e):.2f}")
    print(f"scar % of the sector, model - expert: bias {d.mean():+.1f}, 95 % LoA "
          f"[{d.mean() - 1.96 * d.std(ddof=1):+.1f}, {d.mean() + 1.96 * d.std(ddof=1):+.1f}] points")
    transmural_m, transmural_e = m >= 3, e >= 3
    both = (transmural_m & transmural_e).sum()
    print(f"sectors graded 3-4 (> 50 %): expert {transmural_e.sum()}, model {transmural_m.sum()}, both {both} "
          f"(sensitivity {both / max(transmural_e.sum(), 1):.2f}, precision {both / max(transmural_m.sum(), 1):.2f})")
    scarred_m, scarred_e = m >= 1, e >= 1
    print(f"sectors with any scar: expert {scarred_e.sum()}, model {scarred_m.sum()}, "
          f"both {(scarred_m & scarred_e).sum()}")


if __name__ == "__main__":
    main()

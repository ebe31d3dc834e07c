"""Study: which end of an EMIDEC stack is basal, from the cavity size (scarnet.aha), expert and model.

EMIDEC's PNG stacks carry no orientation, so ``scarnet.aha.base_apex_order`` falls back on the cavity
(larger at the base). Printed: the order it finds on the expert labels of all 100 exams, with the
smallest margin over its decision threshold; then, on the 20 val exams, whether the order found on
the bundled model's labelmap (``scarnet segment``'s pipeline, CPU) is the expert's, and whether the
per-slice levels (basal / mid / apical) agree.

    python tools/studies/base_apex_emidec.py
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from _val import val_exams_and_model

from scarnet.aha import MIN_CAVITY_CHANGE, base_apex_order, cavity_change
from scarnet.quantify import quantify
from scarnet.train.emidec import default_emidec_root, load_cases
from scarnet.volume import Volume


def main() -> None:
    found, changes = Counter(), []
    for case in load_cases(default_emidec_root()):
        order = base_apex_order(Volume(case.labels), case.labels)
        found["unknown" if order is None else order.to_dict()["basal_end"]] += 1
        changes.append(cavity_change(case.labels))
    changes = np.abs(changes)
    print(f"expert labels, 100 exams: basal end {dict(found)}; |cavity change| min {changes.min():.2f}, "
          f"median {np.median(changes):.2f} of the mean cavity (decides from {MIN_CAVITY_CHANGE:.2f})")

    cases, segmenter = val_exams_and_model()
    same_order, same_levels, slices = 0, 0, 0
    for case in cases:
        image, reference = case.as_volume()
        predicted = segmenter(image, name=case.name).report
        expert = quantify(reference)
        agree = (predicted.base_apex is not None and expert.base_apex is not None
                 and predicted.base_apex.base_first == expert.base_apex.base_first)
        same_order += agree
        both = [(p.level, e.level) for p, e in zip(predicted.slices, expert.slices) if p.level and e.level]
        same_levels += sum(p == e for p, e in both)
        slices += len(both)
        print(f"{case.name}: model {predicted.base_apex and predicted.base_apex.to_dict()}, "
              f"expert {expert.base_apex and expert.base_apex.to_dict()}, levels "
              f"{''.join((p or '-')[0] for p in (s.level for s in predicted.slices))} / "
              f"{''.join((e or '-')[0] for e in (s.level for s in expert.slices))}", flush=True)
    print(f"val: the model's order is the expert's in {same_order} of {len(cases)} exams; levels agree on "
          f"{same_levels} of {slices} slices levelled on both sides")


if __name__ == "__main__":
    main()

"""Study: slices beyond the cavity (level "apex", AHA segment 17) in phantoms and EMIDEC, CPU.

Counts the stacks with apex slices (``scarnet.aha.slice_levels``) in the phantoms' own labelmaps and in
the bundled model's (seeds 0-39, infarcts on even seeds; the model's levels use the phantom's basal
end), and in EMIDEC's 100 expert labelmaps.

    python tools/studies/apex_slices.py
"""

from __future__ import annotations

import sys

import torch

from scarnet.aha import APEX
from scarnet.inference import Segmenter
from scarnet.phantom import make_phantom
from scarnet.quantify import quantify
from scarnet.train.emidec import default_emidec_root, load_cases


def apex_slices(report) -> int:
    return sum(s.level == APEX for s in report.slices)


def main() -> None:
    torch.set_num_threads(2)
    segmenter = Segmenter(device="cpu", threads=2)
    truth_with = model_with = same_count = 0
    for seed in range(40):
        phantom = make_phantom(seed, infarct=seed % 2 == 0)
        truth = quantify(phantom.labelmap)
        model = segmenter(phantom.image, name=f"phantom {seed}",
                          basal_end=truth.base_apex.to_dict()["basal_end"]).report
        truth_slices, model_slices = apex_slices(truth), apex_slices(model)
        truth_with += truth_slices > 0
        model_with += model_slices > 0
        same_count += truth_slices == model_slices
        print(f"phantom {seed}: apex slices, phantom {truth_slices}, model {model_slices}", flush=True)
    print(f"phantoms with apex slices: own labels {truth_with} of 40, model {model_with} of 40; "
          f"the same number of apex slices in {same_count} of 40")
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    cases = load_cases(root)
    with_apex = sum(apex_slices(quantify(case.as_volume()[1])) > 0 for case in cases)
    print(f"EMIDEC expert labelmaps with apex slices: {with_apex} of {len(cases)}")


if __name__ == "__main__":
    main()

"""Study: call scar where the model's scar share of the myocardium passes a threshold set on the train split.

The pipeline labels each pixel by the argmax of the 5 class probabilities. Within the myocardium (argmax
healthy myocardium, scar or MVO) a rule could call scar wherever the scar share
(P(scar) + P(MVO)) / (P(healthy myocardium) + P(scar) + P(MVO)) reaches a threshold t, then MVO where
P(MVO) > P(scar). The myocardium (2|3|4) is the argmax's, so its Dice cannot change; only the split of it
into healthy and scarred does. The training loss (Focal Tversky with β 0.7) leans towards recall, so the
argmax need not be the best split.

Rule fixed before the run (2026-12-01): t is chosen on the 80 **train** exams (the best mean scar Dice over
their infarct exams, among argmax and t = 0.30 ... 0.70 in steps of 0.05); the val split only reports it. It
would be adopted only if on val it raises the mean scar Dice over the 13 infarct exams by at least 0.01 and
does not raise the mean false scar in the 7 normal hearts by more than 0.25 mL; the noise CoV would then be
measured before it shipped.

Each exam's forward passes are run once (localisation and the heart crops cached); each rule then reruns
post-processing and the report. QC flags' flip check is off (it does not change the labels).

    python tools/studies/scar_share_rule.py [--max-cases N]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

import scarnet.inference as inference
from scarnet.evaluate import dice
from scarnet.inference import Segmenter
from scarnet.labels import HEALTHY_MYOCARDIUM, MVO, SCAR
from scarnet.train.emidec import default_emidec_root, load_cases, load_split

THRESHOLDS = [None, *np.round(np.arange(0.30, 0.701, 0.05), 2).tolist()]  # None: the argmax (as shipped)
MYOCARDIUM = (HEALTHY_MYOCARDIUM, SCAR, MVO)


def split_by_share(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """``labels`` (k, rows, cols; the argmax) with its myocardium split into healthy, scar and MVO by the scar
    share of ``probabilities`` (k, 5, rows, cols) reaching ``threshold``."""
    p_healthy, p_scar, p_mvo = (probabilities[:, c] for c in MYOCARDIUM)
    share = (p_scar + p_mvo) / np.maximum(p_healthy + p_scar + p_mvo, 1e-6)
    split = np.where(share >= threshold, np.where(p_mvo > p_scar, MVO, SCAR), HEALTHY_MYOCARDIUM)
    return np.where(np.isin(labels, MYOCARDIUM), split, labels).astype(labels.dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-cases", type=int)
    args = parser.parse_args()
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    torch.set_num_threads(2)
    segmenter = Segmenter(device="cpu", threads=2, flip_check=False)
    cache: dict = {}
    grids: list[np.ndarray] = []
    rule: dict = {"threshold": None}
    localise, predict = segmenter.localise, segmenter.predict_probabilities
    to_grid, postprocess = inference._probabilities_to_grid, inference.postprocess

    def cached_localise(volume, slices=None):
        key = ("centre", rule["case"])
        if key not in cache:
            cache[key] = localise(volume, slices)
        return cache[key]

    def cached_predict(volume, center_rc, *args, **kwargs):
        key = ("crops", rule["case"])
        if key not in cache:
            cache[key] = predict(volume, center_rc, *args, **kwargs)
        return cache[key]

    def recording_to_grid(*args, **kwargs):
        grids.append(to_grid(*args, **kwargs))
        return grids[-1]

    def postprocess_by_rule(labels, *args, **kwargs):
        if rule["threshold"] is not None:
            labels = split_by_share(labels, np.stack(grids[-labels.shape[0]:]), rule["threshold"])
        return postprocess(labels, *args, **kwargs)

    segmenter.localise, segmenter.predict_probabilities = cached_localise, cached_predict
    inference._probabilities_to_grid, inference.postprocess = recording_to_grid, postprocess_by_rule
    splits = load_split(root)
    summary = {}
    for split in ("train", "val"):
        cases = load_cases(root, splits[split])[: args.max_cases]
        per_rule = {t: {"scar": [], "myo": [], "false_ml": []} for t in THRESHOLDS}
        started = time.perf_counter()
        for case in cases:
            image, reference = case.as_volume()
            truth = reference.array
            rule["case"] = f"{split}/{case.name}"
            line = []
            for threshold in THRESHOLDS:
                rule["threshold"] = threshold
                grids.clear()
                predicted = segmenter(image, name=case.name).labelmap.array
                scar_true, scar = np.isin(truth, (SCAR, MVO)), np.isin(predicted, (SCAR, MVO))
                per_rule[threshold]["myo"].append(dice(np.isin(predicted, MYOCARDIUM), np.isin(truth, MYOCARDIUM)))
                if scar_true.any():
                    per_rule[threshold]["scar"].append(dice(scar, scar_true))
                    line.append(f"{per_rule[threshold]['scar'][-1]:.3f}")
                else:
                    per_rule[threshold]["false_ml"].append(float(scar.sum()) * reference.voxel_volume_ml)
                    line.append(f"{per_rule[threshold]['false_ml'][-1]:.2f}mL")
            print(f"{split} {case.name}: " + " ".join(line), flush=True)
        summary[split] = {t: {k: float(np.mean(v)) if v else float("nan") for k, v in r.items()}
                          for t, r in per_rule.items()}
        print(f"{split}: {len(cases)} exams in {time.perf_counter() - started:.0f} s", flush=True)
        for t, r in summary[split].items():
            print(f"  {'argmax' if t is None else f't {t:.2f}'}: myocardium Dice {r['myo']:.3f}, scar Dice "
                  f"{r['scar']:.3f}, false scar in normal hearts {r['false_ml']:.2f} mL", flush=True)
    best = max(THRESHOLDS, key=lambda t: summary["train"][t]["scar"])
    chosen, plain = summary["val"][best], summary["val"][None]
    adopt = best is not None and chosen["scar"] >= plain["scar"] + 0.01 and \
        chosen["false_ml"] <= plain["false_ml"] + 0.25
    print(f"chosen on train: {'argmax' if best is None else f't {best:.2f}'}; val scar Dice {chosen['scar']:.3f} "
          f"(argmax {plain['scar']:.3f}), false scar {chosen['false_ml']:.2f} mL (argmax {plain['false_ml']:.2f}): "
          f"{'meets' if adopt else 'does not meet'} the rule")


if __name__ == "__main__":
    main()

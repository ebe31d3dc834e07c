"""Study: does the bundled model refuse real exams ("no heart found") when they look unlike EMIDEC? EMIDEC val, CPU.

The pipeline refuses an exam rather than guess (``scarnet.inference``: no spatial structure, under 5 mL of
myocardium, no LGE contrast, or the model unsure of its LV in half of the slices where it draws one). On an
exam from another centre a refusal is a lost exam, so this counts, for each val exam as stored and under
each of the evaluation's simulated changes (``scarnet.evaluate_cli``: 5 % and 15 % noise, motion,
ghosting, bias field, 2.5 mm acquisition, the protocol shifts, the wide field) and the simulated site
of ``simulated_site.py`` (blood × 1.4, myocardium not nulled and 2.5 mm together):

* the exams refused, with the reason;
* how near the others came to the unsure-LV refusal: the largest share of LV slices under the weights'
  unsure threshold (the refusal needs at least half, and two slices);
* the exams warned as unlike the training data (``low_confidence`` on most LV slices);
* the myocardium and scar Dice against the expert, so that a degraded but accepted exam shows.

    python tools/studies/refusals.py [--cases 20] [--json refusals.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _val import val_exams_and_model
from simulated_site import site_image

from scarnet.errors import NoHeartFoundError
from scarnet.evaluate import dice
from scarnet.evaluate_cli import add_artifact, add_contrast_shift, add_gaussian_noise, widen_field
from scarnet.labels import SCAR_LABELS, myocardium_mask
from scarnet.qc import MAX_UNSURE_LV_FRACTION, UNLIKE_TRAINING_WARNING, unsure_lv_slices

CONDITIONS = ("as stored", "noise 5 %", "noise 15 %", "motion", "ghosting", "bias field", "low resolution",
              "blood ×1.4", "blood ×0.7", "myocardium not nulled", "simulated site", "wide field")


def changed(condition: str, image, reference, name: str):
    """The exam (image, reference) under ``condition``."""
    if condition == "as stored":
        return image, reference
    if condition.startswith("noise"):
        return add_gaussian_noise(image, 0, float(condition.split()[1]) / 100, key=name), reference
    if condition in ("motion", "ghosting", "bias field", "low resolution"):
        return add_artifact(image, condition), reference
    if condition == "simulated site":
        return site_image(image, reference), reference
    if condition == "wide field":
        return widen_field(image, reference, key=name)
    return add_contrast_shift(image, reference, condition), reference


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--json", default=None, help="write every exam's figures here")
    args = parser.parse_args()
    started = time.perf_counter()
    cases, segmenter = val_exams_and_model(args.cases)
    records = []
    for condition in CONDITIONS:
        for case in cases:
            image, reference = changed(condition, *case.as_volume(), case.name)
            record = {"condition": condition, "exam": case.name, "refused": None}
            try:
                result = segmenter(image, name=case.name)
            except NoHeartFoundError as error:
                record["refused"] = str(error)
                records.append(record)
                continue
            qc = result.report.extra["qc"]
            confidence = np.array([np.nan if c is None else c for c in qc["heart_confidence"]], dtype=float)
            unsure, with_lv = unsure_lv_slices(confidence, qc["unsure_lv_threshold"])
            predicted, expert = result.labelmap.array, reference.array
            record.update(unsure_share=unsure / with_lv if with_lv else None, unsure_slices=unsure, lv_slices=with_lv,
                          unlike_training=any(UNLIKE_TRAINING_WARNING in w for w in result.report.warnings()),
                          myocardium_dice=dice(myocardium_mask(predicted), myocardium_mask(expert)),
                          # Over the infarct exams only: a normal exam's scar Dice is 0 or undefined.
                          scar_dice=dice(np.isin(predicted, SCAR_LABELS), np.isin(expert, SCAR_LABELS))
                          if np.isin(expert, SCAR_LABELS).any() else None)
            records.append(record)
        rows = [r for r in records if r["condition"] == condition]
        accepted = [r for r in rows if r["refused"] is None]
        shares = [r["unsure_share"] for r in accepted if r["unsure_share"] is not None]
        scar = [r["scar_dice"] for r in accepted if r["scar_dice"] is not None]
        print(f"{condition}: refused {len(rows) - len(accepted)} of {len(rows)}"
              + "".join(f"\n  {r['exam']}: {r['refused']}" for r in rows if r["refused"])
              + f"; largest unsure share {max(shares, default=0):.2f} (refused at {MAX_UNSURE_LV_FRACTION:g})"
              + f"; warned unlike training {sum(r['unlike_training'] for r in accepted)}"
              + f"; myocardium Dice {np.mean([r['myocardium_dice'] for r in accepted]):.3f}"
              + (f", scar Dice {np.mean(scar):.3f} ({len(scar)} infarct exams)" if scar else ""), flush=True)
    print(f"{len(records)} runs in {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(records, file, indent=1)


if __name__ == "__main__":
    main()

"""Study: the bundled model run at other crop geometries than it was trained at, EMIDEC train[:40].

Not a model selection (the train split, and no retraining): it says how far a warm start at
a finer crop (a `gpu_continue`-style run with other `input_size` / `pixel_spacing_mm` /
`encoder_input_size`) starts from. ~5 min per geometry on 2 CPU threads.

    python tools/studies/crop_geometry_train.py [OUT.json]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time

from scarnet.evaluate_cli import SKIPPABLE, EvalSettings, ModelEntry, evaluate_cases, load_emidec_cases
from scarnet.model.registry import load_model, qc_calibration_for

#: (input_size px, pixel_spacing_mm, encoder_input_size px); the first is the bundled model's own.
GEOMETRIES = ((128, 1.25, 64), (160, 1.0, 80), (128, 1.25, 96), (160, 1.0, 64))


def main(out_path: str = "crop_geometry_train.json") -> None:
    cases = load_emidec_cases(None, "train", 40)
    bundled = load_model(device="cpu")
    results = {}
    for size, spacing, encoder_size in GEOMETRIES:
        started = time.perf_counter()
        model = copy.deepcopy(bundled)
        model.config = dataclasses.replace(bundled.config, input_size=size, pixel_spacing_mm=spacing,
                                           encoder_input_size=encoder_size)
        entry = ModelEntry(model, {"file": "bundled"}, qc_calibration_for(None))
        summary = evaluate_cases(cases, entry, None, EvalSettings(split="train", skip=tuple(SKIPPABLE)),
                                 lambda message: None)["methods"]["scarnet"]["summary"]
        label = f"{size} px at {spacing} mm, encoder {encoder_size} px"
        results[label] = {"seconds": round(time.perf_counter() - started, 1), **summary}
        print(label, f"myocardium {summary['myocardium_dice_mean']:.3f}, scar {summary['scar_dice_mean']:.3f}",
              flush=True)
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])

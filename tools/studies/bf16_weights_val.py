"""Study: the bundled model with bf16 weights (as loaded for a GPU) against float32, EMIDEC val.

Both through the full pipeline (`scarnet.evaluate_cli.evaluate_cases`, clean pass only) on the
CPU, whose bf16 kernels stand in for the GPU's (7× slower than float32 there: ~8 min in all on
2 threads). Prints and writes the summaries; the model card's "Speed and memory" quotes them.

    python tools/studies/bf16_weights_val.py [OUT.json]
"""

from __future__ import annotations

import json
import sys
import time

import torch

from scarnet.evaluate_cli import SKIPPABLE, EvalSettings, ModelEntry, evaluate_cases, load_emidec_cases
from scarnet.model.registry import load_model, qc_calibration_for

KEYS = ("myocardium_dice_mean", "scar_dice_mean", "blood_pool_dice_mean", "mvo_dice_mean", "scar_percent_bias",
        "normal_scar_ml_mean")


def main(out_path: str = "bf16_weights_val.json") -> None:
    cases = load_emidec_cases(None, "val")
    settings = EvalSettings(split="val", skip=tuple(SKIPPABLE), device="cpu")
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        started = time.perf_counter()
        entry = ModelEntry(load_model(device="cpu", dtype=dtype), {"file": "bundled"}, qc_calibration_for(None))
        scarnet = evaluate_cases(cases, entry, None, settings, lambda message: None)["methods"]["scarnet"]
        results[str(dtype)] = {"seconds": round(time.perf_counter() - started, 1), **scarnet}
        print(str(dtype), {k: round(scarnet["summary"][k], 4) for k in KEYS}, flush=True)
    per_case = [results[str(t)]["per_case"] for t in (torch.float32, torch.bfloat16)]
    for key in ("myocardium_dice", "scar_dice"):
        gaps = [abs(per_case[0][c][key] - per_case[1][c][key]) for c in per_case[0] if per_case[0][c][key] is not None]
        print(f"largest per-case difference in {key}: {max(gaps):.4f}")
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1, default=str)


if __name__ == "__main__":
    main(*sys.argv[1:])

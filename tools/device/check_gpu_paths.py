"""Run on the GPU machine (tools/device/run.sh, before the benchmarks): do the inference shortcuts hold on CUDA?

The bundled model as loaded for the device (bf16 weights on a GPU) is compared with itself in
the training-time attention (the padded windows, no fixed biases), and replayed as CUDA graphs
with eager: logits on the same crops (largest difference, argmax agreement) and the full
pipeline's labelmap on a 12-slice phantom (voxels that differ). On the CPU this checks the
script itself (float32; CUDA graphs are then plain eager calls). Writes one JSON; about 20 s.

    python tools/device/check_gpu_paths.py OUT.json [cuda|cpu]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from scarnet.inference import Segmenter
from scarnet.model.registry import load_model
from scarnet.model.tinyvit import Attention
from scarnet.phantom import make_phantom


def with_padded_windows(model: torch.nn.Module) -> torch.nn.Module:
    """The model with the training-time window attention (the padding computed) instead of the shortcut."""
    for module in model.modules():
        if isinstance(module, Attention):
            module.fixed_biases = None
    return model


def main(out_path: str, device: str = "cuda") -> None:
    started = time.perf_counter()
    volume = make_phantom(7, n_slices=12).image
    shortcut = Segmenter(load_model(device=device), device=device)
    padded = Segmenter(with_padded_windows(load_model(device=device)), device=device)
    graphed = Segmenter(load_model(device=device), device=device, cuda_graphs=True)
    crops = np.random.default_rng(0).random((12, shortcut.input_size, shortcut.input_size), dtype=np.float32)
    results: dict = {"device": device, "weights_dtype": str(shortcut.weights_dtype)}
    with shortcut.model_context():
        x = shortcut.model_input(crops)
        logits = {name: segmenter.model(x).float() for name, segmenter in
                  (("shortcut", shortcut), ("padded", padded), ("graphed", graphed))}
    for name in ("padded", "graphed"):
        results[f"logits_{name}_vs_shortcut"] = {
            "largest_difference": float((logits[name] - logits["shortcut"]).abs().max()),
            "argmax_agreement": float((logits[name].argmax(1) == logits["shortcut"].argmax(1)).float().mean()),
        }
    labels = {name: segmenter(volume, name="phantom").labelmap.array
              for name, segmenter in (("shortcut", shortcut), ("padded", padded), ("graphed", graphed))}
    for name in ("padded", "graphed"):
        results[f"voxels_differing_{name}_vs_shortcut"] = int((labels[name] != labels["shortcut"]).sum())
    results["voxels"] = int(labels["shortcut"].size)
    results["cuda_graphs_error"] = getattr(graphed.model, "error", None)
    results["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(results, indent=1))
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump(results, file, indent=1)


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    main(*sys.argv[1:])

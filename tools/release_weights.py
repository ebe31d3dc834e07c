"""Turn a training run's best checkpoint into the weights bundled with the package.

    python tools/release_weights.py runs/RUN [--name scarnet_litemedsam.safetensors]

Writes ``ScarNetSlicer/scarnet/weights/<name>`` (fp16 safetensors) and its sidecar JSON
(sha256, model config, the run's training config, best step and validation score). The run's
``best.pt`` is read with ``weights_only=True``. A run that started from other weights
(``init_weights``) carries that run's training config and step too, back to the first run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from scarnet.model.registry import build_model, save_weights
from scarnet.model.scarnet import ScarNetConfig

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "ScarNetSlicer" / "scarnet" / "weights"


def lineage(train_config: dict) -> list[dict]:
    """Training configs and steps of the runs this one started from (``init_weights``), nearest first."""
    chain: list[dict] = []
    while train_config.get("init_weights"):
        path = Path(train_config["init_weights"])
        if any(link["weights"] == str(path) for link in chain):  # a run folder reused: stop, don't loop
            break
        if path.suffix != ".pt":  # a .safetensors start carries no training config: record the file only
            chain.append({"weights": str(path)})
            break
        parent = torch.load(path, map_location="cpu", weights_only=True)
        chain.append({"weights": str(path), "step": parent["step"], "train_config": parent["train_config"]})
        train_config = parent["train_config"]
    return chain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder holding best.pt and log.jsonl")
    parser.add_argument("--name", default="scarnet_litemedsam.safetensors")
    args = parser.parse_args()
    checkpoint = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    config = ScarNetConfig.from_dict(checkpoint["model_config"])
    model = build_model(config)
    model.load_state_dict(checkpoint["model"])
    validations = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()
                   if '"validation"' in line]
    best = next(v for v in validations if v["step"] == checkpoint["step"])
    summary = {k: v for k, v in best["validation"].items() if k != "per_case"}
    info = {"best_step": checkpoint["step"], "selection_score": checkpoint["best_score"],
            "validation_at_best_step": summary, "train_config": checkpoint["train_config"],
            "started_from": lineage(checkpoint["train_config"])}
    sha = save_weights(model, WEIGHTS_DIR / args.name, info=info)
    print(f"{WEIGHTS_DIR / args.name}: step {checkpoint['step']}, sha256 {sha}")


if __name__ == "__main__":
    main()

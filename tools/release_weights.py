"""Turn a training run's best checkpoint into the weights bundled with the package.

    python tools/release_weights.py runs/RUN [--name scarnet_litemedsam.safetensors] [--out-dir DIR] [--overwrite]

Writes ``ScarNetSlicer/scarnet/weights/<name>`` (fp16 safetensors) and its sidecar JSON
(sha256, model config, the run's training config, best step and validation score). The run's
``best.pt`` is read with ``weights_only=True``. A run that started from other weights
(``init_weights``) carries that run's training config and step too, back to the first run.
A run brought back from the GPU machine (``tools/device/run.sh``) has no ``best.pt`` (too big
to bring back): then ``best.safetensors`` is used, after its sha256 is checked against
``best.json``, which carries the same step, score and training config. Weights already at the
target (the bundled ones, for a release) are replaced only with ``--overwrite``. What stops a
release (a missing or damaged run, a log without the best step's validation) is said in one line.

The new sidecar has no QC calibration yet: run ``scarnet evaluate --split train --max-cases 40
--skip noise artifacts contrast field thresholds medsam unet --json T.json`` and
``scarnet calibrate-qc T.json``, then set ``scarnet.qc.LOW_CONFIDENCE_THRESHOLD``,
``SCAR_UNCERTAIN_THRESHOLD``, ``UNSURE_LV_THRESHOLD`` and ``UNSURE_STACK_WARNING_FRACTION`` (the
stand-ins for uncalibrated weights and models passed in without a calibration) to the values written
(``low_confidence_threshold``, ``scar_uncertain_threshold``, ``unsure_lv_threshold``,
``stack_warning_fraction``; a test keeps them equal).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from scarnet.errors import ScarNetError
from scarnet.model.registry import build_model, load_state, read_weights, save_weights, sidecar_path
from scarnet.model.scarnet import ScarNet, ScarNetConfig

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "ScarNetSlicer" / "scarnet" / "weights"


def lineage(train_config: dict) -> list[dict]:
    """Training configs and steps of the runs this one started from (``init_weights``), nearest first."""
    chain: list[dict] = []
    while train_config.get("init_weights"):
        path = Path(train_config["init_weights"])
        if any(link["weights"] == str(path) for link in chain):  # a run folder reused: stop, don't loop
            break
        if path.suffix != ".pt" or not path.is_file():
            # A .safetensors start carries no training config, and a run trained on another machine
            # names checkpoints that are not here: record the file only.
            chain.append({"weights": str(path)})
            break
        try:
            parent = torch.load(path, map_location="cpu", weights_only=True)
            step, train_config = parent["step"], parent["train_config"]
        except Exception:  # torch.load raises many types for a damaged file (EOFError, UnpicklingError, ...)
            chain.append({"weights": str(path), "unreadable": True})  # damaged since: what it was is not known
            break
        chain.append({"weights": str(path), "step": step, "train_config": train_config})
    return chain


def best_of_run(run: Path) -> tuple[ScarNet, int, float, dict]:
    """The run's selected model, its step, selection score and training config (from best.pt, else best.safetensors)."""
    if not run.is_dir():
        raise SystemExit(f"release_weights: error: {run}: no such run folder")
    if (run / "best.pt").is_file():
        try:
            checkpoint = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
            model = build_model(ScarNetConfig.from_dict(checkpoint["model_config"]))
            model.load_state_dict(checkpoint["model"])
            return model, checkpoint["step"], checkpoint["best_score"], checkpoint["train_config"]
        except Exception as error:  # torch.load raises many types for a damaged file (EOFError, UnpicklingError)
            raise SystemExit(f"release_weights: error: {run / 'best.pt'}: damaged or not a checkpoint of scarnet "
                             f"train ({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None
    weights = run / "best.safetensors"
    try:
        sidecar = json.loads(sidecar_path(weights).read_text(encoding="utf-8"))
        sha, info = sidecar["sha256"], sidecar["info"]
        step, score, train_config = info["best_step"], info["best_score"], info["train_config"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SystemExit(f"release_weights: error: {run}: neither a readable best.pt nor best.safetensors with its "
                         f"best.json ({type(error).__name__}: {' '.join(str(error).split())[:120]})") from None
    state, config = read_weights(weights, expected_sha256=sha)
    model = build_model(config)
    load_state(model, state, weights)
    return model, step, score, train_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="training run folder: best.pt (or best.safetensors with best.json) "
                        "and log.jsonl")
    parser.add_argument("--name", default="scarnet_litemedsam.safetensors")
    parser.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR, help="where to write (default: the package's "
                        "weights folder)")
    parser.add_argument("--overwrite", action="store_true", help="replace weights (and their sidecar) already there, "
                        "e.g. the bundled ones")
    args = parser.parse_args(argv)
    target = args.out_dir / args.name
    if not args.overwrite and (target.exists() or sidecar_path(target).exists()):
        raise SystemExit(f"release_weights: error: {target} or its sidecar exists; --overwrite replaces them")
    model, step, score, train_config = best_of_run(args.run)
    try:
        validations = [json.loads(line) for line in (args.run / "log.jsonl").read_text().splitlines()
                       if '"validation"' in line]
        best = next(v for v in validations if v.get("step") == step)
    except (OSError, ValueError, AttributeError, StopIteration) as error:
        raise SystemExit(f"release_weights: error: {args.run / 'log.jsonl'}: missing, damaged or without the "
                         f"validation of the best step {step} ({type(error).__name__})") from None
    summary = {k: v for k, v in best["validation"].items() if k != "per_case"}
    info = {"best_step": step, "selection_score": score, "validation_at_best_step": summary,
            "train_config": train_config, "started_from": lineage(train_config)}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    sha = save_weights(model, args.out_dir / args.name, info=info)
    print(f"{args.out_dir / args.name}: step {step}, sha256 {sha}")


if __name__ == "__main__":
    try:
        main()
    except ScarNetError as error:  # weights that are not what their sidecar says, and the like: one line
        sys.exit(f"release_weights: error: {error}")

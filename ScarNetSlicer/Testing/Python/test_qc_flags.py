"""QC flags: the evaluation's per-slice records and table, and the flags' meaning under test-time augmentation."""

from __future__ import annotations

import json

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
from conftest import EMIDEC, requires_emidec

from scarnet.evaluate_cli import _jsonable, _qc_lines, qc_slice_records, qc_summary
from scarnet.model.registry import bundled_weights_path
from scarnet.orientation import StackAxis, find_stack_axis
from scarnet.quantify import quantify
from scarnet.volume import Volume

requires_weights = pytest.mark.skipif(bundled_weights_path() is None, reason="bundled weights not present")


def _ring_stack(num_slices: int = 10) -> np.ndarray:
    rows, cols = np.mgrid[0:96, 0:96]
    radius = np.hypot(rows - 48, cols - 48)
    labels = np.zeros((num_slices, 96, 96), np.uint8)
    labels[:, radius < 10] = 1
    labels[:, (radius >= 10) & (radius < 16)] = 2
    labels[3][(radius >= 10) & (radius < 16) & (rows < 48)] = 3  # half the ring scar on slice 3
    return labels


def test_qc_slice_records_follow_the_slice_axis_of_a_slice_first_stack():
    # A stack saved slice-first (10 slices along i, 8 mm apart) is segmented and reported along i
    # (report.slices, qc_flags and qc.heart_confidence all have 10 entries); the records must walk
    # the same slices, not the stored k axis (96 "slices", each a column of the stack).
    usual = Volume(_ring_stack(), (1.5, 1.5, 8.0))
    slice_first = StackAxis(0).apply(usual)
    assert find_stack_axis(slice_first).axis == 0 and slice_first.array.shape == (96, 96, 10)
    report = quantify(slice_first)
    assert len(report.slices) == 10
    for k, slice_report in enumerate(report.slices):
        slice_report.qc_flags = ["low_confidence"] if k == 3 else []
    report.extra["qc"] = {"heart_confidence": [0.85 if k == 3 else 0.95 for k in range(10)]}

    records = qc_slice_records("slice-first", slice_first, slice_first, report)

    assert [r["index"] for r in records] == list(range(10))
    assert records[3]["flags"] == ["low_confidence"] and records[3]["heart_confidence"] == 0.85
    assert all(r["myocardium_dice"] == 1.0 and not r["needs_correction"] for r in records)


def test_qc_section_renders_from_the_json_the_evaluation_writes():
    # The JSON writes NaN as null: a split where no slice is flagged (precision undefined) or none
    # needs correction (sensitivity undefined) must still render, with n/a.
    record = {"case": "a", "index": 0, "flags": [], "heart_confidence": 0.95, "myocardium_dice": 0.9,
              "scar_percent_error": 1.0, "needs_correction": False}
    qc = json.loads(json.dumps(_jsonable({**qc_summary([record]), "per_slice": [record]})))
    assert qc["precision"] is None and qc["sensitivity"] is None
    lines = _qc_lines(qc)
    assert any("n/a" in line for line in lines)


@requires_weights
@requires_emidec
def test_test_time_augmentation_keeps_the_qc_figures_and_warnings_of_the_plain_pass_on_emidec():
    # The low_confidence threshold is set without TTA; TTA (Slicer's checkbox, --tta) averages the
    # flipped passes' logits, which lowers the max-probability: measured on those, val Case_P047
    # went from 6 to 8 of 10 LV slices flagged with the interim model, and was warned that it may
    # differ from the training data, which no clean EMIDEC exam is without TTA. The QC confidence
    # is therefore taken from the un-augmented pass. (Whether the plain pass warns depends on the
    # weights: the model card gives it for the bundled ones.)
    import warnings

    from scarnet.inference import Segmenter
    from scarnet.train.emidec import load_cases

    (case,) = load_cases(EMIDEC, ["Case_P047"])
    image, _ = case.as_volume()
    with warnings.catch_warnings():  # the report carries the engine's warnings; keep the log quiet
        warnings.simplefilter("ignore", RuntimeWarning)
        result = Segmenter(device="cpu", tta=True, flip_check=False)(image, name=case.name)
        plain = Segmenter(device="cpu", flip_check=False)(image, name=case.name)
    warned_with_tta, warned = ([m for m in r.report.extra["inference"]["warnings"] if "low_confidence" in m]
                               for r in (result, plain))
    assert warned_with_tta == warned
    # The same confidence as without augmentation, up to the few pixels where the labels differ.
    with_tta, without = (r.report.extra["qc"]["heart_confidence"] for r in (result, plain))
    assert [c is None for c in with_tta] == [c is None for c in without]
    assert max(abs(a - b) for a, b in zip(with_tta, without) if a is not None) < 0.01



def test_heart_confidence_does_not_depend_on_the_pixel_size():
    # The same LV (a 20 mm disc) and the same confidence map in mm (unsure within 4 mm of its edge)
    # on 0.5, 1 and 2 mm pixels: the margin around the LV is in mm, so the figure is the same up to
    # the pixels' discretisation (0.79–0.80). The earlier 2-pixel margin took in 1–4 mm of the unsure
    # band outside the disc: 0.83, 0.81, 0.78.
    from scarnet.qc import heart_confidence

    values = []
    for spacing in (0.5, 1.0, 2.0):
        n = int(round(100 / spacing))
        rows, cols = np.mgrid[0:n, 0:n]
        radius_mm = np.hypot(rows - (n - 1) / 2, cols - (n - 1) / 2) * spacing
        labels = np.where(radius_mm < 20, 2, 0).astype(np.uint8)[None]
        max_probability = np.where(np.abs(radius_mm - 20) < 4, 0.6, 0.99)[None]
        values.append(float(heart_confidence(labels, max_probability, (spacing, spacing))[0]))
    assert max(values) - min(values) < 0.015, values

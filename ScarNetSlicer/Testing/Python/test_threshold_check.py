"""Scar by signal threshold in a labelmap's own myocardium (scarnet.threshold_check): thresholds and volumes by hand
on synthetic labelmaps, where the report carries the block (quantify with the image, a model run) and where it does
not, and how the page and the terminal show it."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

from scarnet.quantify import SMALL_SCAR_ML, quantify
from scarnet.threshold_check import MIN_REMOTE_VOXELS, MIN_SCAR_VOXELS, N_SD, threshold_check, threshold_check_line
from scarnet.volume import Volume

SPACING = (2.5, 5.0, 8.0)  # one voxel: 100 mm³ = 0.1 mL
VOXEL_ML = 0.1


def _case(healthy: list[float], scar: list[float], mvo: list[float], blood: float = 300.0
          ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and an image of the given voxel values per tissue on 2 slices of 40 × 40, 30 voxels of blood pool at
    ``blood`` (brighter than the thresholds: it must not count) and the background at 500 (neither must it)."""
    values = [(2, v) for v in healthy] + [(3, v) for v in scar] + [(4, v) for v in mvo]
    labels = np.zeros((2, 40, 40), dtype=np.uint8)
    image = np.full(labels.shape, 500.0)
    flat_labels, flat_image = labels.reshape(-1), image.reshape(-1)
    for n, (label, value) in enumerate(values):
        flat_labels[n], flat_image[n] = label, value
    flat_labels[len(values):len(values) + 30] = 1
    flat_image[len(values):len(values) + 30] = blood
    return labels, image


def test_thresholds_and_volumes_by_hand():
    # Remote: 100 voxels at 90 and 100 at 110, mean 100, SD 10: 5-SD at 150. Scar: 20 voxels at 160 and 20 at 260, its
    # 99th percentile 260: FWHM half-way from 100, at 180. MVO: 5 dark voxels at 20, scar by either method.
    labels, image = _case([90.0] * 100 + [110.0] * 100, [160.0] * 20 + [260.0] * 20, [20.0] * 5)
    block = threshold_check(labels, image, VOXEL_ML)
    myocardium = 245  # voxels
    assert block["remote"] == {"source": "healthy myocardium (label 2) of this labelmap, all slices", "voxels": 200,
                               "mean": 100.0, "sd": 10.0}
    assert block["myocardium_ml"] == pytest.approx(myocardium * VOXEL_ML)
    five = block[f"{N_SD}sd"]
    assert five["threshold"] == pytest.approx(150.0)
    assert five["scar_ml"] == pytest.approx(45 * VOXEL_ML)  # every scar voxel and the MVO; not the blood pool
    assert five["scar_percent"] == pytest.approx(100.0 * 45 / myocardium)
    assert five["labelled_scar_above_threshold_percent"] == pytest.approx(100.0)
    assert five["threshold_scar_labelled_percent"] == pytest.approx(100.0)
    fwhm = block["fwhm"]
    assert fwhm["maximum"] == pytest.approx(260.0) and fwhm["threshold"] == pytest.approx(180.0)
    assert fwhm["scar_ml"] == pytest.approx(25 * VOXEL_ML)  # the 20 at 260 and the 5 of MVO
    assert fwhm["scar_percent"] == pytest.approx(100.0 * 25 / myocardium)
    assert fwhm["labelled_scar_above_threshold_percent"] == pytest.approx(100.0 * 25 / 45)
    assert fwhm["threshold_scar_labelled_percent"] == pytest.approx(100.0)
    # With an offset (PSIR, stored levels) "50 % of the maximum" (630) would lie below the remote (1100) and call the
    # whole wall scar; half-way above the remote moves with the offset and finds the same voxels.
    shifted = threshold_check(labels, image + 1000.0, VOXEL_ML)
    assert shifted["fwhm"]["threshold"] == pytest.approx(1180.0) and shifted["fwhm"]["scar_ml"] == fwhm["scar_ml"]
    assert shifted[f"{N_SD}sd"]["scar_ml"] == five["scar_ml"]


def test_mvo_counts_as_scar_whatever_its_signal():
    labels, image = _case([90.0] * 100 + [110.0] * 100, [260.0] * 40, [20.0] * 5)
    with_mvo = threshold_check(labels, image, VOXEL_ML)
    labels[labels == 4] = 2  # the same dark voxels as healthy myocardium: below either threshold
    without = threshold_check(labels, image, VOXEL_ML)
    for method in (f"{N_SD}sd", "fwhm"):
        assert with_mvo[method]["scar_ml"] == pytest.approx(45 * VOXEL_ML)
        assert without[method]["scar_ml"] == pytest.approx(40 * VOXEL_ML)


def test_fwhm_is_not_measured_without_labelled_scar_and_5sd_still_is():
    # A missed scar: 30 bright voxels labelled healthy. 5-SD finds them (a reader wants to see it); FWHM has no
    # enhanced region to take its maximum from. MVO alone (label 4) is no maximum either: its core is dark.
    remote = [90.0] * 500 + [110.0] * 500 + [300.0] * 30
    labels, image = _case(remote, [], [20.0] * 3)
    block = threshold_check(labels, image, VOXEL_ML)
    assert block["fwhm"]["not_measured"].startswith("under 3 mL of segmented scar (0.3 mL)")  # the MVO alone
    no_scar = threshold_check(*_case(remote, [], []), VOXEL_ML)["fwhm"]
    assert no_scar == {"not_measured": "no segmented scar to take the maximum from"}
    values = np.array(remote)
    five = block[f"{N_SD}sd"]
    assert five["threshold"] == pytest.approx(values.mean() + N_SD * values.std())
    assert five["scar_ml"] == pytest.approx(33 * VOXEL_ML)  # the 30 missed and the MVO
    assert five["labelled_scar_above_threshold_percent"] == pytest.approx(100.0)  # the MVO: labelled scar, counted
    assert five["threshold_scar_labelled_percent"] == pytest.approx(100.0 * 3 / 33)
    # Under 3 mL of labelled scar (3|4; a normal heart's false scar) is no maximum either: 29 voxels are 2.9 mL, 30
    # are 3 mL; MVO counts in the volume. 3 mL that are nearly all MVO leave too little of label 3 for a maximum.
    assert SMALL_SCAR_ML == 3.0
    small = threshold_check(*_case(remote, [400.0] * 29, []), VOXEL_ML)["fwhm"]
    assert small == {"not_measured": "under 3 mL of segmented scar (2.9 mL), too little to take its maximum from (it "
                                     "may be noise, as a normal heart's false scar)"}
    assert "threshold" in threshold_check(*_case(remote, [400.0] * 30, []), VOXEL_ML)["fwhm"]
    assert "threshold" in threshold_check(*_case(remote, [400.0] * 25, [20.0] * 5), VOXEL_ML)["fwhm"]
    mostly_mvo = threshold_check(*_case(remote, [400.0] * (MIN_SCAR_VOXELS - 1), [20.0] * 20), VOXEL_ML)["fwhm"]
    assert mostly_mvo == {"not_measured": "too little enhanced scar (MVO aside) to take the maximum from (label 3: "
                                          f"{MIN_SCAR_VOXELS - 1} voxels, {MIN_SCAR_VOXELS} needed)"}
    # No labelled scar and nothing above 5-SD: the shares are not defined, not 0 %.
    quiet = threshold_check(*_case([90.0] * 100 + [110.0] * 100, [], []), VOXEL_ML)[f"{N_SD}sd"]
    assert quiet["scar_ml"] == 0 and quiet["labelled_scar_above_threshold_percent"] is None
    assert quiet["threshold_scar_labelled_percent"] is None


def test_scar_no_brighter_than_the_remote_gives_no_fwhm():
    labels, image = _case([90.0] * 100 + [110.0] * 100, [95.0] * 40, [])
    assert "no brighter than the remote" in threshold_check(labels, image, VOXEL_ML)["fwhm"]["not_measured"]


def test_too_little_remote_measures_neither():
    few = [100.0] * (MIN_REMOTE_VOXELS - 1)
    block = threshold_check(*_case(few, [260.0] * 40, []), VOXEL_ML)
    reason = f"too little healthy myocardium for a remote reference ({len(few)} voxels, {MIN_REMOTE_VOXELS} needed)"
    assert block["fwhm"] == block[f"{N_SD}sd"] == {"not_measured": reason}
    assert block["remote"]["voxels"] == len(few) and block["remote"]["mean"] is None and block["remote"]["sd"] is None
    enough = threshold_check(*_case(few + [100.0], [260.0] * 40, []), VOXEL_ML)
    assert "threshold" in enough["fwhm"] and "threshold" in enough[f"{N_SD}sd"]


def test_scar_the_labels_missed_widens_the_remote_and_5sd_finds_less():
    """The documented limit: the remote is the labelmap's healthy myocardium, so a missed scar raises its SD."""
    labelled_scar = [200.0] * 40
    clean = threshold_check(*_case([90.0] * 100 + [110.0] * 100, labelled_scar, []), VOXEL_ML)[f"{N_SD}sd"]
    missed = threshold_check(*_case([90.0] * 100 + [110.0] * 100 + [400.0] * 4, labelled_scar, []),
                             VOXEL_ML)[f"{N_SD}sd"]
    assert clean["labelled_scar_above_threshold_percent"] == pytest.approx(100.0)
    assert missed["threshold"] > 200.0 and missed["labelled_scar_above_threshold_percent"] == 0.0
    assert missed["scar_ml"] == pytest.approx(4 * VOXEL_ML)


def test_labels_and_image_must_have_the_same_shape():
    with pytest.raises(ValueError, match="differ in shape"):
        threshold_check(np.zeros((2, 4, 4), np.uint8), np.zeros((2, 4, 5)), VOXEL_ML)


def _volumes() -> tuple[Volume, Volume]:
    labels, image = _case([90.0] * 100 + [110.0] * 100, [160.0] * 20 + [260.0] * 20, [20.0] * 5)
    labelmap = Volume(labels, SPACING)
    return labelmap, labelmap.with_array(image)


def test_quantify_adds_the_block_with_the_image_only_and_leaves_the_csv_as_it_was():
    labelmap, image = _volumes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_image, without = quantify(labelmap, image), quantify(labelmap)
    assert with_image.extra["threshold_check"] == threshold_check(labelmap.array, image.array, VOXEL_ML)
    assert with_image.to_dict()["threshold_check"]["fwhm"]["threshold"] == pytest.approx(180.0)
    assert "threshold_check" not in without.extra and "threshold_check" not in without.to_dict()
    assert with_image.to_csv() == without.to_csv()  # other tools read its columns: unchanged
    # The labels are not changed by it: the totals are the labelmap's.
    assert with_image.to_dict()["total"] == without.to_dict()["total"]


def test_the_terminal_adds_one_line_with_the_image_only():
    from rich.console import Console

    from scarnet.cli import print_report

    labelmap, image = _volumes()
    shown = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, report in (("with", quantify(labelmap, image)), ("without", quantify(labelmap))):
            out = io.StringIO()
            print_report(report, Console(file=out, width=200, force_terminal=False))
            shown[name] = out.getvalue().splitlines()
    line = (f"Scar by signal threshold in the same myocardium, for comparison (labels unchanged): {N_SD}-SD "
            f"{100 * 45 / 245:.1f} %, FWHM {100 * 25 / 245:.1f} %")
    assert line in shown["with"] and [text for text in shown["with"] if text != line] == shown["without"]
    assert threshold_check_line({"5sd": {"not_measured": "x"}, "fwhm": {"not_measured": "x"}}).endswith(
        f"{N_SD}-SD not measured, FWHM not measured")
    assert threshold_check_line(None) is None


def _page_text(data: dict) -> tuple[str, list[list[list[str]]]]:
    from test_report_html import _read

    from scarnet.report_html import report_html

    page = _read(report_html(data, "lge.nii.gz", made_from="labelmap lab.nii.gz"))
    return " ".join(page.text), page.tables


def test_the_page_shows_the_block_beside_the_segmentations_scar():
    labelmap, image = _volumes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = quantify(labelmap, image).to_dict()
    text, tables = _page_text(data)
    assert "Scar by signal threshold in the same myocardium (for comparison)" in text
    table = tables[1]  # after the totals
    assert table[0][1:] == ["Threshold (grey level)", "Scar mL", "Scar % of LV myocardium",
                            "Of the segmented scar, above the threshold", "Of the threshold's scar, segmented as scar"]
    total = data["total"]
    assert table[1] == ["This segmentation (the totals above)", "", f"{total['scar_ml']:.1f}",
                        f"{total['scar_percent']:.0f} %", "", ""]
    assert table[2] == [f"{N_SD}-SD (remote mean + {N_SD} SD)", "150", f"{45 * VOXEL_ML:.1f}",
                        f"{100 * 45 / 245:.0f} %", "100 %", "100 %"]
    assert table[3] == ["FWHM (half-way from the remote mean to the scar's maximum)", "180", f"{25 * VOXEL_ML:.1f}",
                        f"{100 * 25 / 245:.0f} %", f"{100 * 25 / 45:.0f} %", "100 %"]
    assert "the healthy myocardium of this segmentation, all slices (200 voxels, mean 100, SD 10)" in text
    assert "The labels are not changed" in text


def test_the_page_says_why_a_method_was_not_measured_and_shows_nothing_without_the_block():
    labelmap, image = _volumes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = quantify(labelmap, image).to_dict()
    data["threshold_check"]["fwhm"] = {"not_measured": "no enhanced myocardium to take the maximum from"}
    text, tables = _page_text(data)
    assert "FWHM not measured: no enhanced myocardium to take the maximum from." in text
    assert [row[0] for row in tables[1][1:]] == ["This segmentation (the totals above)",
                                                 f"{N_SD}-SD (remote mean + {N_SD} SD)"]
    # Neither measured, for one reason: said once, and no table of dashes.
    reason = "too little healthy myocardium for a remote reference (3 voxels, 50 needed)"
    data["threshold_check"] = {"remote": {"source": "x", "voxels": 3, "mean": None, "sd": None},
                               "fwhm": {"not_measured": reason}, "5sd": {"not_measured": reason}}
    text, tables = _page_text(data)
    assert f"{N_SD}-SD and FWHM not measured: {reason}." in text and text.count(reason) == 1
    assert "(3 voxels)" in text and "Threshold (grey level)" not in text
    # A report of an older version (or quantified without the image) has no block: the page has no such section.
    del data["threshold_check"]
    text, tables = _page_text(data)
    assert "signal threshold" not in text and "Threshold (grey level)" not in text
    # An odd block (hand-edited, damaged) renders what it can, never fails.
    data["threshold_check"] = {"fwhm": "?", "5sd": {"threshold": "x", "scar_ml": None}}
    text, tables = _page_text(data)
    assert tables[1][2] == [f"{N_SD}-SD (remote mean + {N_SD} SD)", "–", "–", "–", "–", "–"]

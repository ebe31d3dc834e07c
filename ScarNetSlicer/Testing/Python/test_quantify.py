"""Quantification against figures computed by hand on small labelmaps with anisotropic spacing."""

from __future__ import annotations

import csv
import io
import json
import warnings

import numpy as np
import pytest

import scarnet
from scarnet.errors import InputError
from scarnet.quantify import quantify
from scarnet.volume import Volume

SPACING = (1.5, 2.0, 8.0)  # (i, j, k) mm → one voxel is 24 mm³ = 0.024 mL
VOXEL_ML = 0.024


def _labelmap(direction=None) -> Volume:
    labels = np.zeros((3, 6, 5), dtype=np.uint8)  # (k, j, i)
    # slice 0: 4 blood, 6 healthy myocardium
    labels[0, 0, :4] = 1
    labels[0, 1, :5] = 2
    labels[0, 2, :1] = 2
    # slice 1: 3 healthy, 2 scar, 1 MVO
    labels[1, 0, :3] = 2
    labels[1, 1, :2] = 3
    labels[1, 2, :1] = 4
    # slice 2: empty
    return Volume(labels, SPACING, (10.0, -20.0, 30.0), direction if direction is not None else np.eye(3))


def test_per_slice_and_total_volumes_by_hand():
    report = quantify(_labelmap())
    s0, s1, s2 = report.slices
    assert s0.myocardium_ml == pytest.approx(6 * VOXEL_ML)
    assert s0.scar_ml == 0 and s0.scar_percent == 0
    assert s0.lv_blood_pool_ml == pytest.approx(4 * VOXEL_ML)
    assert s1.myocardium_ml == pytest.approx(6 * VOXEL_ML)  # 3 healthy + 2 scar + 1 MVO
    assert s1.scar_ml == pytest.approx(3 * VOXEL_ML)  # scar includes MVO
    assert s1.mvo_ml == pytest.approx(1 * VOXEL_ML)
    assert s1.scar_percent == pytest.approx(50.0)
    assert s2.myocardium_ml == 0 and s2.scar_percent is None
    total = report.total
    assert total.myocardium_ml == pytest.approx(12 * VOXEL_ML)
    assert total.myocardium_g == pytest.approx(12 * VOXEL_ML * 1.05)
    assert total.scar_ml == pytest.approx(3 * VOXEL_ML)
    assert total.scar_g == pytest.approx(3 * VOXEL_ML * 1.05)
    assert total.mvo_ml == pytest.approx(VOXEL_ML)
    assert total.scar_percent == pytest.approx(25.0)
    assert total.slices_with_myocardium == 2 and total.slices_with_scar == 1


def test_a_slice_left_out_between_drawn_slices_is_said():
    """A reader's labelmap with a slice not drawn (or the model's with an LV missed): its myocardium and scar are
    missing from every total, so the report says which slice; an empty slice at either end of the stack (above
    the base, beyond the apex) is not a gap."""
    import warnings

    from scarnet.quantify import gap_slices_warning

    labels = np.concatenate([_labelmap().array, _labelmap().array[:2]])  # slices 0-1 drawn, 2 empty, 3-4 drawn
    volume = Volume(labels, SPACING, (10.0, -20.0, 30.0), np.eye(3))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = quantify(volume)
    said = [str(w.message) for w in caught]
    assert said == report.extra["labelmap_warnings"] == report.warnings()
    assert said[0].startswith("slice 2 has no myocardium between slices that have it")
    assert f"warning,{said[0]}\n" in report.to_csv()
    assert report.to_dict()["labelmap_warnings"] == said
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the stack's own empty end slice (2 of _labelmap) says nothing
        assert "labelmap_warnings" not in quantify(_labelmap()).extra
    assert gap_slices_warning(np.array([False, True, False, False, True, False])).startswith("slices 2, 3 have")
    assert gap_slices_warning(np.zeros(4, dtype=bool)) is None


def test_a_labelmap_without_myocardium_is_said():
    """From Python an empty labelmap (a blank export) gives a report of zeros, as the command line and Slicer
    refuse it: the report says so rather than passing 0 mL of scar for a measurement."""
    from scarnet.quantify import EMPTY_LABELMAP_WARNING

    blood_pool_only = np.where(_labelmap().array == 1, 1, 0).astype(np.uint8)
    for labels in (np.zeros_like(blood_pool_only), blood_pool_only):
        with pytest.warns(UserWarning, match="the labelmap has no myocardium"):
            report = quantify(Volume(labels, SPACING))
        assert report.total.myocardium_ml == 0.0 and report.total.scar_percent is None
        assert report.warnings() == [EMPTY_LABELMAP_WARNING]
        assert ["warning", EMPTY_LABELMAP_WARNING] in list(csv.reader(io.StringIO(report.to_csv())))


def test_a_slice_of_scar_without_healthy_myocardium_is_said():
    """Scar with no healthy myocardium on a slice makes its scar 100 %: rarely a real wholly transmural scar, more
    often a myocardium not drawn there; the report names the slice. A slice with both says nothing."""
    import warnings

    from scarnet.quantify import all_scar_slices_warning

    labels = _labelmap().array.copy()
    labels[1][labels[1] == 2] = 3  # slice 1: its whole wall drawn as scar
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = quantify(Volume(labels, SPACING, (10.0, -20.0, 30.0), np.eye(3)))
    said = [str(w.message) for w in caught]
    assert said == report.extra["labelmap_warnings"]
    assert said[0].startswith("slice 1 has scar but no healthy myocardium, so scar is 100 % of the myocardium there")
    assert report.slices[1].scar_percent == 100
    assert all_scar_slices_warning(np.array([0, 5, 0, 0]), np.array([3, 2, 0, 4])).startswith("slices 0, 3 have")
    assert all_scar_slices_warning(np.array([4, 5]), np.array([3, 0])) is None


def _rings(slices: int = 5, blood_pool: bool = True) -> np.ndarray:
    """A stack of LV rings as a reader draws them: blood pool (radius under 10 px), wall 10-16 px, scar from
    mid-wall out (12-16 px) in the upper right quarter; with the radius and angle (degrees) of each pixel."""
    rows, cols = np.mgrid[:48, :48] - 24
    radius, angle = np.hypot(rows, cols), np.degrees(np.arctan2(-rows, cols)) % 360
    plane = np.zeros((48, 48), np.uint8)
    plane[(radius < 10) & blood_pool] = 1
    plane[(radius >= 10) & (radius < 16)] = 2
    plane[(radius >= 12) & (radius < 16) & (angle < 90)] = 3
    return np.repeat(plane[None], slices, axis=0), radius, angle


def _said(labels: np.ndarray, **kwargs) -> list[str]:
    """The labelmap's warnings of how its rings are drawn: :func:`_rings` is a cylinder, as wide at its apical end as
    anywhere, which may stop short of the apex (said, and tested below: not these tests' business)."""
    import warnings

    from scarnet.qc import APICAL_COVERAGE_WARNING_START

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = quantify(Volume(labels, SPACING, (0.0, 0.0, 0.0), np.eye(3)), **kwargs)
    return [message for message in report.extra.get("labelmap_warnings", [])
            if not message.startswith(APICAL_COVERAGE_WARNING_START)]


def test_wall_erased_rather_than_painted_over_is_said():
    """Erasing false scar in Segment Editor leaves background, not muscle: the myocardium shrinks and scar % rises
    with no error. Erased across the wall, the ring opens (the blood pool meets the background); erased inside the
    wall, a hole is left. Both are said, with the slice; scar painted over as Myocardium, a ring drawn without blood
    pool, and the most basal slice's ring open through the outflow tract are not."""
    labels, radius, angle = _rings()
    assert _said(labels, basal_end="first") == []
    painted = labels.copy()
    painted[2][painted[2] == 3] = 2  # the right way: relabelled as healthy myocardium
    assert _said(painted, basal_end="first") == []
    across = labels.copy()
    across[2][(radius >= 10) & (radius < 16) & (angle < 90)] = 0  # endocardium to epicardium
    said = _said(across, basal_end="first")
    assert len(said) == 1 and said[0].startswith("slice 2 has the blood pool open to the background outside the "
                                                 "heart (the myocardial ring broken;")
    assert "or not drawn there (by hand or by the model)?" in said[0]  # said of the model's labelmaps too
    # A gap of one pixel across the wall is a brush's slip, not an erased stretch of wall.
    slip = labels.copy()
    slip[2][24, 34:40] = 0  # one pixel (1.7 mm) of contact with the blood pool: under MIN_OPEN_RING_MM
    assert _said(slip, basal_end="first") == []
    inside = labels.copy()
    inside[3][(radius >= 12) & (radius < 14) & (angle < 90)] = 0  # scar erased, mid-wall
    holes = int(((radius >= 12) & (radius < 14) & (angle < 90)).sum())
    said = _said(inside, basal_end="first")
    assert len(said) == 1 and said[0].startswith(
        f"slice 3 has background enclosed beside the myocardium ({holes * VOXEL_ML:.3g} mL): erased rather than "
        "painted over, or left out by the model?")
    # Erased at the endocardium (the scar's inner part): a hole beside the blood pool, said once, as enclosed, not
    # also as a ring open to the outside (the wall is whole outside it).
    subendocardial = labels.copy()
    subendocardial[3][(radius >= 10) & (radius < 13) & (angle < 90)] = 0
    said = _said(subendocardial, basal_end="first")
    assert len(said) == 1 and said[0].startswith("slice 3 has background enclosed beside the myocardium")
    # The most basal slice may be open (the outflow tract); the apical end may not.
    open_at = labels.copy()
    open_at[0][(radius >= 10) & (radius < 16) & (angle < 90)] = 0
    assert _said(open_at, basal_end="first") == []
    assert _said(open_at, basal_end="last")[0].startswith("slice 0 has the blood pool open")
    # A ring drawn without blood pool: its cavity is the labels' largest hole, not erased wall.
    without_blood_pool = _rings(blood_pool=False)[0]
    assert _said(without_blood_pool, basal_end="first") == []
    both = without_blood_pool.copy()
    both[1][(radius >= 12) & (radius < 14) & (angle < 90)] = 0
    assert _said(both, basal_end="first")[0].startswith("slice 1 has background enclosed beside the myocardium")


def _phantom_without_apical_slices(seed: int, cut: int) -> tuple[Volume, Volume, bool]:
    """A phantom's labelmap and image without their ``cut`` most apical slices (the grid's origin moved when those are
    the first), and whether its base is slice 0 (as its patient axes say)."""
    from scarnet.aha import base_apex_order
    from scarnet.phantom import make_phantom

    phantom = make_phantom(seed)
    labelmap = phantom.labelmap
    base_first = base_apex_order(labelmap, labelmap.array).base_first
    kept = slice(0, labelmap.num_slices - cut) if base_first else slice(cut, labelmap.num_slices)
    origin = tuple(float(v) for v in labelmap.index_to_physical(np.array([0.0, 0.0, kept.start])))

    def cut_short(volume: Volume) -> Volume:
        return Volume(np.ascontiguousarray(volume.array[kept]), volume.spacing_mm, origin, volume.direction)

    return cut_short(labelmap), cut_short(phantom.image), base_first


@pytest.mark.parametrize("seed", [0, 1])  # base first, base last (their patient axes)
def test_a_labelmap_cut_short_of_the_apex_is_said_once(seed):
    """A reader's own labelmap (corrected outside Slicer, another tool's) of a stack that stops short of the apex is
    warned of as the model's run is: from the labels, with the report's base-apex order, once, in every output of the
    report (Python's warning, the JSON's labelmap_warnings, the CSV's warning rows); the complete stack is not."""
    from scarnet.qc import APICAL_COVERAGE_WARNING_START, apical_coverage_warning

    labelmap, image, _ = _phantom_without_apical_slices(seed, 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        complete = quantify(labelmap, image)
    assert not [w for w in caught if str(w.message).startswith(APICAL_COVERAGE_WARNING_START)]
    assert not [m for m in complete.warnings() if m.startswith(APICAL_COVERAGE_WARNING_START)]

    labelmap, image, base_first = _phantom_without_apical_slices(seed, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = quantify(labelmap, image)
    assert report.base_apex.base_first is base_first
    said = [str(w.message) for w in caught if str(w.message).startswith(APICAL_COVERAGE_WARNING_START)]
    assert len(said) == 1
    assert said == [m for m in report.warnings() if m.startswith(APICAL_COVERAGE_WARNING_START)]
    assert said[0] in report.to_dict()["labelmap_warnings"]
    apical_end = labelmap.num_slices - 1 if base_first else 0
    assert f"on the apical end slice (slice {apical_end}) is " in said[0]
    assert said[0] == apical_coverage_warning(labelmap.array, base_first,
                                              labelmap.spacing_mm[0] * labelmap.spacing_mm[1])
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert [row for row in rows if row and row[0] == "warning" and row[1].startswith(APICAL_COVERAGE_WARNING_START)
            ] == [["warning", said[0]]]


def test_the_stack_coverage_warning_follows_the_reports_base_apex_order():
    """Which end is apical is the report's: given the wrong basal end, the complete phantom's apical end is its base,
    a large cavity, and it is warned of (with the given end's own warning); the right end, not."""
    from scarnet.qc import APICAL_COVERAGE_WARNING_START

    labelmap, _, base_first = _phantom_without_apical_slices(0, 0)
    right, wrong = ("first", "last") if base_first else ("last", "first")
    for end, warned in ((right, False), (wrong, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            report = quantify(labelmap, basal_end=end)
        said = [m for m in report.extra.get("labelmap_warnings", []) if m.startswith(APICAL_COVERAGE_WARNING_START)]
        assert len(said) == warned
        if warned:  # the apical end as given: the first slice when the last is basal, and so on
            assert f"(slice {0 if end == 'last' else labelmap.num_slices - 1})" in said[0]


def test_slice_positions_follow_the_slice_normal(oblique_direction):
    report = quantify(_labelmap(oblique_direction))
    positions = [s.position_mm for s in report.slices]
    assert np.diff(positions) == pytest.approx([8.0, 8.0])
    normal = oblique_direction[:, 2]
    assert positions[0] == pytest.approx(float(np.dot((10.0, -20.0, 30.0), normal)), abs=1e-6)


@pytest.mark.parametrize("tilted", [True, False])
def test_a_slice_keeps_its_position_however_the_stack_is_stored(oblique_direction, tilted):
    """Stored with its slices in the other order (k running the other way), a stack's slices keep their positions:
    the normal points to the head (or, without a head-foot tilt, to posterior), not along k, so two exports of one
    exam can be compared slice by slice."""
    direction = oblique_direction if tilted else np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # coronal
    stored = _labelmap(direction)
    reversed_k = direction.copy()
    reversed_k[:, 2] *= -1
    origin = stored.index_to_physical(np.array([0.0, 0.0, stored.num_slices - 1]))
    reversed_stack = Volume(stored.array[::-1].copy(), SPACING, tuple(origin), reversed_k)
    plain, other = quantify(stored), quantify(reversed_stack)
    by_position = {s.position_mm: s.myocardium_ml for s in plain.slices}
    assert {s.position_mm: s.myocardium_ml for s in other.slices} == by_position
    head_first = plain.slices if stored.slice_normal[2 if tilted else 1] > 0 else plain.slices[::-1]
    assert np.all(np.diff([s.position_mm for s in head_first]) > 0)  # increasing toward the head (posterior)


def test_sheared_axes_give_smaller_voxels_and_plane_distances():
    # The slice axis tilted 30° towards i (slices shifted in-plane from one to the next, as a
    # MetaImage header may say): planes 8 cos 30° mm apart, voxels smaller by the same factor.
    tilt = np.radians(30.0)
    direction = np.array([[1.0, 0.0, np.sin(tilt)], [0.0, 1.0, 0.0], [0.0, 0.0, np.cos(tilt)]])
    report = quantify(_labelmap(direction))
    assert report.total.myocardium_ml == pytest.approx(12 * VOXEL_ML * np.cos(tilt))
    assert np.diff([s.position_mm for s in report.slices]) == pytest.approx([8.0 * np.cos(tilt)] * 2)


def test_json_contract_and_csv():
    report = quantify(_labelmap())
    data = json.loads(report.to_json())
    assert set(data["slices"][0]) >= {"index", "position_mm", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent"}
    assert set(data["total"]) >= {"myocardium_ml", "myocardium_g", "scar_ml", "scar_g", "mvo_ml", "scar_percent"}
    assert [s["index"] for s in data["slices"]] == [0, 1, 2]
    assert data["slices"][2]["scar_percent"] is None
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows[0][:6] == ["index", "position_mm", "myocardium_ml", "scar_ml", "mvo_ml", "scar_percent"]
    assert float(rows[2][3]) == pytest.approx(3 * VOXEL_ML)
    assert rows[4][0] == "total" and float(rows[4][2]) == pytest.approx(12 * VOXEL_ML)
    assert not [row for row in rows if row and row[0] == "warning"]
    report.extra["input_warnings"] = ["slice positions are approximate"]
    report.extra["inference"] = {"warnings": ["the model is unsure of the heart, read every slice"]}
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert [row for row in rows if row and row[0] == "warning"] == [
        ["warning", "slice positions are approximate"],
        ["warning", "the model is unsure of the heart, read every slice"]]
    # A model run's CSV says which model segmented it, as its JSON does; a labelmap's names no weights. Both
    # name the version that measured them, and quantify's the labelmap and who drew it.
    assert [row for row in rows if row and row[0] in ("weights", "scarnet_version")] == [
        ["scarnet_version", scarnet.__version__]]
    assert not [row for row in rows if row and row[0] in ("labelmap", "segmented_by")]
    report.extra.update(labelmap="/exams/p1_scar.nii.gz", segmented_by="model-and-reader")
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert [row for row in rows if row and row[0] in ("labelmap", "segmented_by")] == [
        ["labelmap", "/exams/p1_scar.nii.gz"], ["segmented_by", "model-and-reader"]]
    report.extra["inference"].update(weights={"file": "mine.safetensors", "sha256": "ab" * 32, "bundled": False},
                                     scarnet_version="0.0.9")
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    # The version that measured it, as the JSON's top-level scarnet_version (the run's own stays in the JSON).
    assert [row for row in rows if row and row[0] in ("weights", "scarnet_version")] == [
        ["weights", "mine.safetensors", "ab" * 32], ["scarnet_version", scarnet.__version__]]
    assert json.loads(report.to_json())["scarnet_version"] == scarnet.__version__
    # Text a spreadsheet would run as a formula (a warning quoting a file name) is written as text.
    report.extra["input_warnings"] = ["=2+5 is not a DICOM file", "-x.dcm skipped", "@SUM(A1)"]
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert [row[1] for row in rows if row and row[0] == "warning"][:3] == [
        "'=2+5 is not a DICOM file", "'-x.dcm skipped", "'@SUM(A1)"]


DICOM_SLICES = [{"instance_number": 9, "frame_number": None, "slice_location_mm": -12.5},
                {"instance_number": 7, "frame_number": None, "slice_location_mm": -4.5},
                {"instance_number": 8, "frame_number": None, "slice_location_mm": None}]


def test_dicom_slices_are_named_in_the_report_and_csv():
    labelmap = _labelmap()
    plain_csv = quantify(labelmap).to_csv()
    image = labelmap.with_array(np.ones(labelmap.array.shape, dtype=np.float32))
    image.source_slices = DICOM_SLICES
    report = quantify(labelmap, image=image)
    assert [s.dicom for s in report.slices] == DICOM_SLICES
    assert json.loads(report.to_json())["slices"][1]["dicom"] == DICOM_SLICES[1]
    rows = list(csv.reader(io.StringIO(report.to_csv())))
    assert rows[0][:6] == ["index", "position_mm", "dicom_instance_number", "dicom_frame_number",
                           "dicom_slice_location_mm", "myocardium_ml"]
    assert rows[1][2:5] == ["9", "", "-12.5"] and rows[3][2:5] == ["8", "", ""]
    assert rows[4][:6] == ["total", "", "", "", "", f"{report.total.myocardium_ml:.6g}"]
    assert rows[4][-1] == "" and len(rows[4]) == len(rows[0])
    # A labelmap on the same grid carries them too (the model's, made from the image with with_array).
    labelmap.source_slices = DICOM_SLICES
    assert [s.dicom for s in quantify(labelmap).slices] == DICOM_SLICES
    # Without DICOM, no dicom columns and null in the JSON.
    assert "dicom" not in plain_csv.splitlines()[0]
    assert json.loads(quantify(_labelmap()).to_json())["slices"][0]["dicom"] is None


def test_dicom_image_names():
    from scarnet.quantify import dicom_image_name

    assert dicom_image_name(DICOM_SLICES[0]) == "9"
    assert dicom_image_name({"instance_number": 3, "frame_number": 5, "slice_location_mm": None}) == "3, frame 5"
    assert dicom_image_name({"instance_number": None, "frame_number": None, "slice_location_mm": -12.5}) == "SL -12.5"
    assert dicom_image_name(None) == "-"


def test_scar_no_brighter_than_healthy_myocardium_is_said():
    """With the image, a labelmap whose scar is darker than its healthy myocardium (scar and myocardium swapped,
    or another exam's image) is warned of; LGE's own contrast, a speck of scar or MVO's dark core are not."""
    from scarnet.quantify import dark_scar_warning

    rng = np.random.default_rng(0)
    labels = np.zeros((2, 20, 20), dtype=np.uint8)
    labels[:, 2:18, 2:18] = 2
    labels[:, 2:8, 2:18] = 3  # 192 voxels of scar
    labels[:, 5:7, 5:15] = 4
    noise = rng.normal(100.0, 10.0, labels.shape)
    lge = noise + np.select([labels == 3, labels == 4], [80.0, -60.0], 0.0)
    labelmap, image = Volume(labels, SPACING), Volume(lge.astype(np.float32), SPACING)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert "labelmap_warnings" not in quantify(labelmap, image).extra
    swapped = np.where(labels == 3, 2, np.where(labels == 2, 3, labels)).astype(np.uint8)
    with pytest.warns(UserWarning, match="the scar is no brighter than the healthy myocardium on the image") as said:
        report = quantify(labelmap.with_array(swapped), image)
    assert report.extra["labelmap_warnings"] == [str(said[0].message)] == report.warnings()
    assert "are scar and myocardium swapped" in report.warnings()[0]
    assert dark_scar_warning(swapped, noise) is not None  # no contrast at all: not LGE's
    speck = np.where(labels == 3, 2, labels)
    speck[0, 10, 10] = 3
    assert dark_scar_warning(speck, noise) is None  # one voxel of scar says nothing
    assert dark_scar_warning(swapped, np.full(labels.shape, np.nan)) is None  # no levels to compare


def test_dicom_slices_of_the_wrong_count_or_storage_are_not_used():
    from scarnet.orientation import StackAxis

    labelmap = _labelmap()
    labelmap.source_slices = DICOM_SLICES[:2]
    assert all(s.dicom is None for s in quantify(labelmap).slices)
    stored = StackAxis(0).apply(Volume(np.zeros((3, 40, 48), dtype=np.uint8), (1.4, 1.6, 8.0)))
    stored.source_slices = [dict(DICOM_SLICES[0]) for _ in range(3)]  # as many as the slices along i
    report = quantify(stored)
    assert report.slice_axis == "i" and len(report.slices) == 3
    assert all(s.dicom is None for s in report.slices)  # DICOM images are k planes: nothing to name here


def test_intensity_figures_need_the_same_grid():
    labelmap = _labelmap()
    image = labelmap.with_array(np.where(labelmap.array >= 3, 100.0, 10.0).astype(np.float32))
    report = quantify(labelmap, image)
    assert report.extra["intensity"]["scar"]["mean"] == pytest.approx(100.0)
    assert report.extra["intensity"]["scar_to_remote_ratio"] == pytest.approx(10.0)
    shifted = Volume(image.array, SPACING, (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="different grids"):
        quantify(labelmap, shifted)
    # NaN intensities would make NaN tissue means and a report that cannot be written as JSON.
    image.array = image.array.astype(np.float32)
    image.array[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="^image contains NaN or infinite values$"):
        quantify(labelmap, image)


@pytest.mark.parametrize("bad, message", [
    (np.full((2, 4, 4), 7, dtype=np.uint8), "outside 0-4"),
    (np.full((2, 4, 4), 1.5, dtype=np.float32), "non-integer"),
    (np.full((2, 4, 4), np.nan, dtype=np.float32), "NaN"),
])
def test_bad_labelmaps(bad, message):
    with pytest.raises(InputError, match=message):
        quantify(Volume(bad, SPACING))


@pytest.mark.parametrize("spacing_mm, message", [
    ((1.5, 1.5, 0.0), "non-positive voxel spacing"),
    ((1.5, 1.5, -8.0), "non-positive voxel spacing"),
    ((1.5, float("nan"), 8.0), "not a finite number"),
])
def test_a_labelmap_on_a_grid_without_volume_is_refused(spacing_mm, message):
    # Every figure is a voxel count times the voxel volume: 0 mL, negative mL or NaN otherwise.
    with pytest.raises(InputError, match=message):
        quantify(Volume(_labelmap().array, spacing_mm))


@pytest.mark.parametrize("axis", [0, 1])
def test_a_labelmap_stored_slice_first_is_reported_along_its_slices(axis):
    # nibabel writes a (slice, row, column) array with the slices along i: the report must still
    # have one row per slice, the same figures as the usual storage, and the image's intensities.
    from scarnet.orientation import StackAxis

    rng = np.random.default_rng(5)
    labels = rng.integers(0, 5, size=(6, 40, 48)).astype(np.uint8)
    image_array = rng.random((6, 40, 48)).astype(np.float32)
    usual = Volume(labels, (1.4, 1.6, 8.0), (3.0, -2.0, 40.0))
    stored = StackAxis(axis).apply(usual)
    assert stored.shape_ijk[axis] == 6
    expected = quantify(usual, image=usual.with_array(image_array)).to_dict()
    got = quantify(stored, image=stored.with_array(StackAxis(axis).undo(image_array))).to_dict()
    assert len(got["slices"]) == 6
    assert got["slices"] == expected["slices"] and got["total"] == expected["total"]
    assert got["intensity"] == expected["intensity"]
    assert got["threshold_check"] == expected["threshold_check"]  # one threshold for the stack, however stored


def test_scarnet_quantify_is_callable_after_its_submodule_is_imported():
    """scarnet.quantify (the API's function) became the module once segmenting had imported scarnet.quantify:
    "'module' object is not callable", also for ``from scarnet import quantify``."""
    import importlib

    import scarnet
    from scarnet.phantom import make_phantom

    importlib.import_module("scarnet.quantify")  # as segmenting does
    from scarnet import quantify as from_import

    labelmap = make_phantom(3, n_slices=4).labelmap
    expected = importlib.import_module("scarnet.quantify").quantify(labelmap).total
    assert scarnet.quantify(labelmap).total == from_import(labelmap).total == expected


def test_spacing_given_in_the_arrays_order_is_refused():
    """Volume(array, spacing[::-1]) (the array is (k, j, i)) kept the totals (the product is the same) while
    positions, transmurality and AHA angles were measured on a grid 7x stretched, without a word (QA helper-107);
    segmentation refused it already."""
    from scarnet.phantom import make_phantom

    labels = make_phantom(3).labelmap
    with pytest.raises(InputError, match=r"field of view 2527×300 mm is wider than any MR scanner images: .* in "
                                         r"\(i, j, k\) order"):
        quantify(Volume(labels.array, labels.spacing_mm[::-1], labels.origin_mm, labels.direction))

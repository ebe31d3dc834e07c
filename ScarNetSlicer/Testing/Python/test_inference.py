"""Volume inference: exact output grid, anatomical nesting, OOM/CPU fallbacks, bad input, QC flags."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
import torch
from conftest import EMIDEC, requires_emidec, rotation
from torch import nn

from scarnet.errors import InputError, NoHeartFoundError
from scarnet.inference import Segmenter, check_short_axis, postprocess, remove_small_scar, window_centres
from scarnet.labels import HEALTHY_MYOCARDIUM, LV_BLOOD_POOL, MVO, SCAR
from scarnet.model.registry import bundled_weights_path
from scarnet.phantom import make_phantom
from scarnet.qc import slice_flags
from scarnet.volume import Volume


class RingModel(nn.Module):
    """A stand-in network: predicts a fixed LV ring (blood, myocardium, a scar sector) in the centre of any input.

    It makes the pipeline's geometry testable without trained weights: whatever the crop, the
    ring lands at the crop centre, i.e. at the localised LV centre on the input grid.
    """

    def __init__(self, input_size: int = 64, pixel_spacing_mm: float = 2.0) -> None:
        super().__init__()
        self.config = type("Config", (), {"input_size": input_size, "pixel_spacing_mm": pixel_spacing_mm,
                                          "encoder": "test-ring"})()
        self.calls: list[int] = []
        rows, cols = np.mgrid[0:input_size, 0:input_size] - (input_size - 1) / 2
        radius = np.hypot(rows, cols)
        angle = np.arctan2(rows, cols)
        labels = np.zeros((input_size, input_size), dtype=np.int64)
        labels[radius < input_size * 0.12] = LV_BLOOD_POOL
        ring = (radius >= input_size * 0.12) & (radius < input_size * 0.2)
        labels[ring] = HEALTHY_MYOCARDIUM
        labels[ring & (angle > 0) & (angle < 1.2)] = SCAR
        labels[ring & (angle > 0.4) & (angle < 0.8) & (radius < input_size * 0.16)] = MVO
        self.register_buffer("logits", nn.functional.one_hot(torch.from_numpy(labels), 5).permute(2, 0, 1).float() * 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.logits.expand(x.shape[0], -1, -1, -1)


def ring_volume(shape_kji=(8, 150, 170), spacing=(1.1, 1.9, 9.5), origin=(-31.5, 12.25, 80.0),
                direction=None) -> Volume:
    """An LGE-like stack for RingModel: bright blood disc, dark (nulled) wall, grey tissue, at the image centre.

    RingModel draws its LV at the centre of whatever it sees, so localisation lands at the image
    centre, where this image shows the LGE contrast the pipeline's plausibility check expects.
    """
    k, rows, cols = shape_kji
    r, c = np.mgrid[0:rows, 0:cols]
    radius_mm = np.hypot((r - (rows - 1) / 2) * spacing[1], (c - (cols - 1) / 2) * spacing[0])
    plane = np.full((rows, cols), 300.0)
    plane[radius_mm < 26] = 60.0  # nulled myocardium
    plane[radius_mm < 15] = 500.0  # bright blood
    noise = np.random.default_rng(0).normal(0, 20, size=(k, rows, cols))
    array = np.clip(plane[None] + noise, 0, None).astype(np.float32)
    return Volume(array, spacing, origin, np.eye(3) if direction is None else direction)


def _oblique_anisotropic_volume() -> Volume:
    return ring_volume(direction=rotation((0.2, 0.9, -0.4), 63.0))


def test_output_is_on_exactly_the_input_grid():
    volume = _oblique_anisotropic_volume()
    result = Segmenter(RingModel(), device="cpu", flip_check=False)(volume)
    labelmap = result.labelmap
    assert labelmap.array.shape == volume.array.shape
    assert labelmap.spacing_mm == volume.spacing_mm
    assert labelmap.origin_mm == volume.origin_mm
    assert np.array_equal(labelmap.direction, volume.direction)
    assert labelmap.array.dtype == np.uint8
    # the ring is 2 × 0.2 × 64 px × 2 mm ≈ 51 mm across: check its physical size on the anisotropic grid
    myocardium = np.isin(labelmap.array[3], (2, 3, 4))
    rows, cols = np.nonzero(myocardium)
    assert (rows.max() - rows.min()) * 1.9 == pytest.approx(51, abs=6)
    assert (cols.max() - cols.min()) * 1.1 == pytest.approx(51, abs=6)


def test_the_report_names_each_slice_as_the_dicom_series_does():
    volume = ring_volume()
    volume.source_slices = [{"instance_number": 20 - k, "frame_number": None, "slice_location_mm": -9.5 * k}
                            for k in range(volume.num_slices)]
    result = Segmenter(RingModel(), device="cpu", flip_check=False)(volume)
    assert [s.dicom for s in result.report.slices] == volume.source_slices
    assert result.labelmap.source_slices == volume.source_slices


def test_labels_respect_the_nesting_rules_after_postprocessing():
    labels = np.zeros((3, 40, 40), dtype=np.uint8)
    rows, cols = np.mgrid[0:40, 0:40]
    radius = np.hypot(rows - 20, cols - 20)
    for k in range(3):
        labels[k][radius < 8] = LV_BLOOD_POOL
        labels[k][(radius >= 8) & (radius < 12)] = HEALTHY_MYOCARDIUM
    labels[0, 19:21, 19:21] = SCAR  # scar floating in the blood pool
    labels[1, 10, 20] = MVO  # MVO not inside scar (in the wall)
    labels[1, 20, 20] = 0  # a hole in the blood pool
    labels[2, 2:5, 2:5] = HEALTHY_MYOCARDIUM  # a second, smaller "LV" far away
    out = postprocess(labels, (1.5, 1.5))
    assert out[0, 19:21, 19:21].tolist() == [[LV_BLOOD_POOL] * 2] * 2
    assert out[1, 10, 20] == SCAR
    assert out[1, 20, 20] == LV_BLOOD_POOL
    assert (out[2, 2:5, 2:5] == 0).all()


def test_the_kept_lv_stays_on_the_stack_axis_when_another_ring_is_larger_on_some_slices():
    # Eight slices with the LV at column 20; on slices 2 and 4 a larger ring (the outflow tract, say)
    # 60 mm away. Keeping each slice's largest region would drop the LV from those two slices.
    labels = np.zeros((8, 40, 80), dtype=np.uint8)
    rows, cols = np.mgrid[0:40, 0:80]
    lv = np.hypot(rows - 20, cols - 20)
    other = np.hypot(rows - 20, cols - 60)
    for k in range(8):
        labels[k][lv < 7] = LV_BLOOD_POOL
        labels[k][(lv >= 7) & (lv < 10)] = HEALTHY_MYOCARDIUM
        if k in (2, 4):
            labels[k][other < 9] = LV_BLOOD_POOL
            labels[k][(other >= 9) & (other < 13)] = HEALTHY_MYOCARDIUM
    out = postprocess(labels, (1.5, 1.5))
    for k in range(8):
        assert (out[k][lv < 10] == labels[k][lv < 10]).all(), k
        assert (out[k][other < 13] == 0).all(), k
    # A slice whose only region is off the axis still has no LV.
    labels[6] = 0
    labels[6][other < 9] = LV_BLOOD_POOL
    assert (postprocess(labels, (1.5, 1.5))[6] == 0).all()


def test_postprocess_names_the_slices_whose_lv_it_removed():
    # The LV on the axis in seven slices; in the last (an end slice, where lv_missing cannot fire)
    # only a ring 60 mm off the axis: removed, and said so.
    labels = np.zeros((9, 40, 80), dtype=np.uint8)
    rows, cols = np.mgrid[0:40, 0:80]
    lv, other = np.hypot(rows - 20, cols - 20), np.hypot(rows - 20, cols - 60)
    for k in range(7):
        labels[k][lv < 7] = LV_BLOOD_POOL
        labels[k][(lv >= 7) & (lv < 10)] = HEALTHY_MYOCARDIUM
    labels[7][other < 7] = LV_BLOOD_POOL
    labels[7][(other >= 7) & (other < 10)] = HEALTHY_MYOCARDIUM
    labels[8][2:4, 70:72] = HEALTHY_MYOCARDIUM  # only a speck of 9 mm² off the axis: removed, but not an LV
    labels[1][(other >= 7) & (other < 10)] = HEALTHY_MYOCARDIUM  # a second ring: the LV on the axis is kept
    removed: list[int] = []
    out = postprocess(labels, (1.5, 1.5), removed=removed)
    assert removed == [7] and (out[7] == 0).all() and (out[8] == 0).all()
    assert (out[1][other < 10] == 0).all() and (out[1][lv < 10] > 0).all()
    from scarnet.qc import slice_flags

    flags = slice_flags(out, np.ones(out.shape, np.float32), 2.25, lv_removed=removed)
    assert flags[7] == ["lv_removed"] and not any(flags[:7]) and flags[8] == []


def test_crop_edge_band_and_the_at_crop_edge_flag():
    from scarnet.preprocess import plane_transform, resample_back
    from scarnet.qc import crop_edge_band, slice_flags

    # A 40 px crop of 1.25 mm pixels (50 mm) in a 100 × 60 slice of 1.0 × 2.0 mm pixels, near its top edge.
    transform = plane_transform((10.0, 30.0), (1.0, 2.0), 40, 1.25)
    footprint = resample_back(np.ones((40, 40), np.float32), transform, (100, 60), order=0) > 0.5
    band = crop_edge_band(footprint, (1.0, 2.0))
    assert band.any() and not (band & ~footprint).any()
    assert not band[0, 25:36].any()  # the crop runs past the image's top edge: that edge is near_image_edge's
    bottom = np.nonzero(footprint.any(axis=1))[0].max()
    # Pixel centres within 2.5 mm of the nearest pixel outside the crop: 2 rows of 1 mm, 1 column of 2 mm.
    assert band[bottom, 30] and band[bottom - 1, 30] and not band[bottom - 2, 30]
    right = np.nonzero(footprint.any(axis=0))[0].max()
    assert band[30, right] and not band[30, right - 1]
    assert not crop_edge_band(np.ones((5, 5), bool), (1.0, 1.0)).any()  # the crop covers the slice

    labels = np.zeros((2, 100, 60), dtype=np.uint8)
    labels[:, 10:20, 25:35] = HEALTHY_MYOCARDIUM  # well inside the crop
    labels[1, bottom - 1, 28:32] = HEALTHY_MYOCARDIUM  # wall reaching the crop's bottom edge
    flags = slice_flags(labels, np.ones(labels.shape, np.float32), 2.0, crop_edge=band)
    assert flags == [[], ["at_crop_edge"]]


def test_cavity_of_a_ring_without_blood_pool_becomes_blood_pool():
    # An apical slice: the small cavity called background, subendocardial scar on one wall.
    rows, cols = np.mgrid[0:40, 0:40]
    radius = np.hypot(rows - 20, cols - 20)
    plane = np.zeros((40, 40), dtype=np.uint8)
    plane[(radius >= 5) & (radius < 9)] = HEALTHY_MYOCARDIUM
    plane[(radius >= 5) & (radius < 7) & (cols < 17)] = SCAR
    plane[20, 13] = 0  # and a one-pixel hole inside the wall, off centre
    out = postprocess(plane[None], (1.5, 1.5))[0]
    assert (out[radius < 5] == LV_BLOOD_POOL).all()  # not wall: mass and scar stay as drawn
    assert (out == SCAR).sum() == (plane == SCAR).sum()
    assert out[20, 13] in (HEALTHY_MYOCARDIUM, SCAR)  # a hole in the wall is still wall
    # With blood pool in the slice, holes keep the nearest label as before.
    with_blood = plane.copy()
    with_blood[radius < 5] = LV_BLOOD_POOL
    with_blood[20, 20] = 0
    assert postprocess(with_blood[None], (1.5, 1.5))[0][20, 20] == LV_BLOOD_POOL


def test_ring_cut_by_the_image_edge_is_broken():
    from scarnet.qc import ring_is_broken

    def ring(centre_row: int) -> np.ndarray:
        rows, cols = np.mgrid[0:40, 0:40]
        radius = np.hypot(rows - centre_row, cols - 20)
        plane = np.zeros((40, 40), dtype=np.uint8)
        plane[radius < 12] = HEALTHY_MYOCARDIUM
        plane[radius < 8] = LV_BLOOD_POOL
        return plane

    assert ring_is_broken(ring(3))  # the LV's centre 3 px from the top edge
    assert not ring_is_broken(ring(20))  # the same ring whole inside the image


def test_small_scar_regions_become_healthy_myocardium():
    labels = np.full((3, 30, 30), HEALTHY_MYOCARDIUM, dtype=np.uint8)
    labels[0:2, 2:6, 2:6] = SCAR  # 32 voxels in two slices: one 3D region of 0.64 mL at 0.02 mL/voxel
    labels[1, 3, 3] = MVO
    labels[0:3, 15:25, 15:25] = SCAR  # 300 voxels: 6 mL
    labels[2, 0, 0] = SCAR  # 1 voxel touching nothing
    before = labels.copy()
    assert remove_small_scar(labels, 0.02, 0.0) == 0 and np.array_equal(labels, before)
    assert remove_small_scar(labels, 0.02, 1.0) == 2
    assert (labels[0:2, 2:6, 2:6] == HEALTHY_MYOCARDIUM).all() and labels[2, 0, 0] == HEALTHY_MYOCARDIUM
    assert (labels[0:3, 15:25, 15:25] == SCAR).all()
    # regions are 3D: the same 32 voxels count as one region, kept at a threshold they exceed
    labels = before.copy()
    remove_small_scar(labels, 0.02, 0.6)
    assert (labels[0:2, 2:6, 2:6] != HEALTHY_MYOCARDIUM).all()


def test_minimum_scar_region_is_applied_and_reported():
    volume = ring_volume(spacing=(1.4, 1.4, 8.0))
    kept = Segmenter(RingModel(), device="cpu", flip_check=False)(volume)  # default: every region kept
    assert kept.report.total.scar_ml > 1.0
    assert kept.report.extra["inference"]["min_scar_component_ml"] == 0.0
    removed = Segmenter(RingModel(), device="cpu", flip_check=False, min_scar_component_ml=1e6)(volume)
    assert removed.report.extra["inference"]["min_scar_component_ml"] == 1e6
    assert removed.report.total.scar_ml == 0.0 and removed.report.total.mvo_ml == 0.0
    assert removed.report.total.myocardium_ml == pytest.approx(kept.report.total.myocardium_ml)
    for bad in (-1.0, float("nan")):
        with pytest.raises(InputError, match="minimum scar region"):
            Segmenter(RingModel(), device="cpu", min_scar_component_ml=bad)


def test_pipeline_output_nesting():
    result = Segmenter(RingModel(), device="cpu", flip_check=False)(ring_volume(spacing=(1.4, 1.4, 8.0)))
    labels = result.labelmap.array
    from scipy import ndimage

    for k in range(labels.shape[0]):
        mvo, count = ndimage.label(labels[k] == MVO, structure=np.ones((3, 3)))
        for index in range(1, count + 1):
            ring = ndimage.binary_dilation(mvo == index, structure=np.ones((3, 3))) & (mvo != index)
            assert (labels[k][ring] == SCAR).any(), "MVO must lie inside scar"
    assert (labels == MVO).any() and (labels == SCAR).any()


def test_simulated_cuda_oom_halves_the_batch_then_falls_back_to_cpu(monkeypatch):
    segmenter = Segmenter(RingModel(), device="cpu", batch_size=8, flip_check=False)
    segmenter.device = torch.device("cuda")  # pretend; the fake forward below never touches CUDA
    calls = []

    def fake_forward(batch, plain_out=None):
        calls.append((segmenter.device.type, segmenter.batch_size))
        if segmenter.device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("simulated")
        return np.zeros((batch.shape[0], 5, 4, 4), dtype=np.float32)

    monkeypatch.setattr(segmenter, "_forward_batched", fake_forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(RuntimeWarning):
        out = segmenter._forward(np.zeros((6, 4, 4), dtype=np.float32))
    assert out.shape == (6, 5, 4, 4)
    assert calls == [("cuda", 8), ("cuda", 4), ("cuda", 2), ("cuda", 1), ("cpu", 1)]
    assert any("continuing on the CPU" in w for w in segmenter.warnings)


class _DtypeChanges:
    """Counts the tensor conversions that change a dtype while active (each one a kernel on a GPU)."""

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode

        outer = self

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                if (str(func.overloadpacket).split(".")[-1] in ("to", "_to_copy")
                        and isinstance(out, torch.Tensor) and out.dtype != args[0].dtype):
                    outer.count += 1
                return out

        self.count = 0
        self.mode = Mode()

    def __enter__(self):
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        return self.mode.__exit__(*exc)


def test_bf16_weights_get_bf16_inputs_and_launch_no_casts_inside_the_model():
    """GPU weights are bf16 (registry.inference_dtype): no autocast, so no per-forward weight casts."""
    import copy

    from scarnet.model.registry import build_model, fuse_conv_bn
    from scarnet.model.scarnet import ScarNetConfig

    torch.manual_seed(0)
    config = ScarNetConfig(encoder="litemedsam", input_size=64, encoder_input_size=32, unet_channels=(8, 16, 32, 32),
                           fusion_level=2)
    model = fuse_conv_bn(build_model(config).eval()).to(memory_format=torch.channels_last)
    reference = Segmenter(copy.deepcopy(model), device="cpu", flip_check=False)
    segmenter = Segmenter(model.to(torch.bfloat16), device="cpu", flip_check=False)
    assert segmenter.weights_dtype == torch.bfloat16 and reference.weights_dtype == torch.float32
    batch = np.random.default_rng(0).random((3, 64, 64), dtype=np.float32)
    segmenter._forward_batched(batch)  # builds what is made once per size (TinyViT's attention masks)
    with _DtypeChanges() as changes:
        probabilities = segmenter._forward_batched(batch)
    # The input to bf16, the encoder's antialiased resize in float32 and back, the logits to float32.
    assert changes.count == 4
    assert probabilities.dtype == np.float32
    assert np.abs(probabilities - reference._forward_batched(batch)).max() < 0.05


def test_cpu_fallback_turns_bf16_weights_back_to_float32(monkeypatch):
    from scarnet import inference

    model = RingModel()
    model.scale = nn.Parameter(torch.ones((), dtype=torch.bfloat16))  # weights loaded for a GPU
    segmenter = Segmenter(model, device="cpu", batch_size=1, flip_check=False)
    segmenter.device = torch.device("cuda")  # pretend, as above
    # as get_model would have cached it for the GPU (with another model beside it)
    monkeypatch.setattr(inference, "_MODEL_CACHE", {("w", None, "cuda"): (model, None),
                                                    ("v", None, "cuda"): (RingModel(), None)})
    real_forward = segmenter._forward_batched

    def fake_forward(batch, plain_out=None):
        if segmenter.device.type == "cuda":
            raise torch.cuda.OutOfMemoryError("simulated")
        return real_forward(batch, plain_out)

    monkeypatch.setattr(segmenter, "_forward_batched", fake_forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(RuntimeWarning):
        segmenter._forward(np.zeros((2, 64, 64), dtype=np.float32))
    assert segmenter.device.type == "cpu" and segmenter.weights_dtype == torch.float32
    assert list(inference._MODEL_CACHE) == [("v", None, "cuda")]  # not handed out as a GPU model again


def test_batches_are_split_by_batch_size():
    model = RingModel()
    Segmenter(model, device="cpu", batch_size=3, flip_check=False)(ring_volume((7, 160, 160), (1.5, 1.5, 8.0)))
    assert max(model.calls) <= 3


class ThresholdModel(nn.Module):
    """A flip-equivariant stand-in: bright pixels are blood pool, the rest background."""

    def __init__(self) -> None:
        super().__init__()
        self.config = type("Config", (), {"input_size": 32, "pixel_spacing_mm": 2.0, "encoder": "test-threshold"})()
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        logits = torch.zeros(x.shape[0], 5, x.shape[2], x.shape[3])
        logits[:, LV_BLOOD_POOL] = 8 * (x[:, 0] - 0.5)
        return logits


def test_flip_tta_averages_the_flipped_logits_flipped_back():
    # RingModel ignores its input, so each flipped pass returns the same (asymmetric) logits and
    # flipping them back mirrors them: TTA must give softmax(mean(L, flip_w(L), flip_h(L))).
    model = RingModel(input_size=32)
    batch = np.zeros((2, 32, 32), dtype=np.float32)
    with_tta = Segmenter(model, device="cpu", tta=True)._forward(batch)
    logits = model.logits
    expected = torch.softmax((logits + logits.flip(-1) + logits.flip(-2)) / 3, dim=0).numpy()
    np.testing.assert_allclose(with_tta, np.broadcast_to(expected, with_tta.shape), atol=1e-6)
    assert model.calls == [2, 2, 2]  # one pass per view

    # A flip-equivariant network gives exactly its plain output under TTA, on an asymmetric image:
    # a flip not undone would move the predicted region.
    image = np.zeros((1, 32, 32), dtype=np.float32)
    image[0, 3:12, 5:20] = 1.0
    plain = Segmenter(ThresholdModel(), device="cpu")._forward(image)
    flipped = Segmenter(ThresholdModel(), device="cpu", tta=True)._forward(image)
    np.testing.assert_allclose(flipped, plain, atol=1e-6)
    assert (np.argmax(plain[0], axis=0) == LV_BLOOD_POOL).sum() == 9 * 15


def test_tta_runs_through_the_pipeline_and_is_reported():
    model = RingModel()
    result = Segmenter(model, device="cpu", tta=True, flip_check=False)(ring_volume((4, 150, 170)))
    assert result.report.to_dict()["inference"]["tta"] is True
    # RingModel's scar sector is not mirror-symmetric: averaged with its two mirror images it is
    # outvoted by myocardium (2 views of 3) everywhere, so TTA leaves a ring without scar.
    assert (result.labelmap.array == HEALTHY_MYOCARDIUM).any()
    assert not np.isin(result.labelmap.array, (SCAR, MVO)).any()
    assert len(model.calls) % 3 == 0


class TiltedRingModel(nn.Module):
    """Thresholds on the input (bright blood pool, dark wall) plus a seeded random 7×7 convolution: a model that
    draws an LV on :func:`ring_volume` but, like a trained network, not quite the same one on a turned image."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.config = type("Config", (), {"input_size": 64, "pixel_spacing_mm": 2.0, "encoder": "test-tilted"})()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(1, 5, 7, padding=3)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        logits = torch.zeros(x.shape[0], 5, x.shape[2], x.shape[3])
        logits[:, LV_BLOOD_POOL] = 10 * (x[:, 0] - 0.6)
        logits[:, HEALTHY_MYOCARDIUM] = 10 * (0.25 - x[:, 0])
        return logits + 3 * self.conv(x)


def _turned(volume: Volume, turns: int) -> Volume:
    """``volume`` physically turned by ``turns`` quarter turns: the array turned on the same (identity) direction,
    so that the pipeline's canonical storage keeps it turned; the in-plane spacings swap with a quarter turn."""
    spacing = volume.spacing_mm
    if turns % 2:
        spacing = (spacing[1], spacing[0], spacing[2])
    return Volume(np.ascontiguousarray(np.rot90(volume.array, turns, axes=(1, 2))), spacing, volume.origin_mm,
                  volume.direction)


@pytest.mark.parametrize("tta", [False, "flip", "dihedral"])
def test_only_dihedral_tta_gives_the_same_probabilities_for_a_turned_or_mirrored_crop(tta):
    model = TiltedRingModel()
    crops = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    segmenter = Segmenter(model, device="cpu", tta=tta)
    plain = segmenter._forward(crops)
    turned = np.rot90(segmenter._forward(np.ascontiguousarray(np.rot90(crops, 1, axes=(1, 2)))), -1, axes=(2, 3))
    mirrored = segmenter._forward(np.ascontiguousarray(crops[:, :, ::-1]))[:, :, :, ::-1]
    if tta == "dihedral":
        np.testing.assert_allclose(turned, plain, atol=1e-5)
        np.testing.assert_allclose(mirrored, plain, atol=1e-5)
        assert model.calls[:8] == [3] * 8  # one pass per view: 4 turns, each with and without a mirror
    else:  # the random convolution is not equivariant: a turn changes probabilities by tenths
        assert np.abs(turned - plain).max() > 0.1
        if tta is False:
            assert np.abs(mirrored - plain).max() > 0.1


@pytest.mark.parametrize("tta", [False, "flip", "dihedral"])
def test_dihedral_tta_labels_an_image_turned_by_90_degrees_exactly_alike(tta):
    # The whole pipeline (localisation, crop, resampling back, post-processing) on a stack with anisotropic pixels
    # turned by a quarter turn: with the dihedral views every step is equivariant, so the labels turned back are
    # the same voxel for voxel; without them the model's passes differ and so do hundreds of voxels.
    volume = ring_volume((4, 150, 170))
    # TiltedRingModel is no trained model: its unsure LV is warned of, not refused.
    segmenter = Segmenter(TiltedRingModel(), device="cpu", tta=tta, flip_check=False, reject_implausible=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        original = segmenter(volume).labelmap.array
        turned_back = np.rot90(segmenter(_turned(volume, 1)).labelmap.array, -1, axes=(1, 2))
    assert (original == HEALTHY_MYOCARDIUM).sum() > 1000 and (original == LV_BLOOD_POOL).sum() > 1000
    differing = int((original != turned_back).sum())
    if tta == "dihedral":
        assert differing == 0
    else:
        assert differing > 100


def test_tta_settings_name_their_mode_and_a_wrong_one_is_refused():
    model = RingModel()
    assert [Segmenter(model, device="cpu", tta=t).tta_mode for t in (False, None, "none", True, "flip", "dihedral")] \
        == [None, None, None, "flip", "flip", "dihedral"]
    segmenter = Segmenter(model, device="cpu", tta="dihedral")
    assert segmenter.tta is True
    segmenter.tta = False
    assert segmenter.tta_mode is None
    with pytest.raises(InputError, match="test-time augmentation 'rotate': expected one of none, flip, dihedral"):
        Segmenter(model, device="cpu", tta="rotate")


def test_dihedral_tta_is_reported_and_the_flip_check_still_runs_without_it():
    model = RingModel()
    segmenter = Segmenter(model, device="cpu", tta="dihedral")
    result = segmenter(ring_volume((4, 150, 170)))
    inference = result.report.to_dict()["inference"]
    assert inference["tta"] is True and inference["tta_mode"] == "dihedral"
    assert segmenter.tta_mode == "dihedral"  # the flip check's plain passes leave the mode as it was
    plain = Segmenter(model, device="cpu")(ring_volume((4, 150, 170))).report.to_dict()["inference"]
    assert plain["tta"] is False and plain["tta_mode"] is None


def test_localisation_windows_cover_a_wide_field_with_half_overlap():
    spacing_rc = (1.6, 1.25)
    centres = window_centres((400, 300), spacing_rc, 360.0)  # 640 × 375 mm
    rows = sorted({r for r, _ in centres})
    cols = sorted({c for _, c in centres})
    assert len(centres) == len(rows) * len(cols) == 3 * 2
    rows_mm = [(r + 0.5) * spacing_rc[0] for r in rows]
    cols_mm = [(c + 0.5) * spacing_rc[1] for c in cols]
    # edge to edge, neighbours at most half a window apart
    assert rows_mm[0] == pytest.approx(180) and rows_mm[-1] == pytest.approx(640 - 180)
    assert cols_mm[0] == pytest.approx(180) and cols_mm[-1] == pytest.approx(375 - 180)
    assert max(np.diff(rows_mm)) <= 180 + 1e-9 and max(np.diff(cols_mm)) <= 180 + 1e-9
    # a field no wider than a window: one window at its middle (the whole-field view's centre)
    assert window_centres((200, 240), (1.5, 1.5), 360.0) == [(99.5, 119.5)]


def _disc_in_wide_field(spacing_mm: float = 2.0) -> tuple[Volume, tuple[float, float]]:
    """A 640 mm field, dark, with a bright 44 mm disc (a blood pool) near one corner on every slice."""
    size = int(640 / spacing_mm)
    rows, cols = np.mgrid[0:size, 0:size]
    centre_rc = (0.2 * size, 0.8 * size)
    plane = np.where(np.hypot(rows - centre_rc[0], cols - centre_rc[1]) * spacing_mm < 22, 1.0, 0.05)
    return Volume(np.repeat(plane[None], 6, axis=0).astype(np.float32), (spacing_mm, spacing_mm, 8.0)), centre_rc


def test_a_wide_field_is_searched_in_windows_and_the_lv_found():
    volume, true_centre = _disc_in_wide_field()
    model = ThresholdModel()
    centre = Segmenter(model, device="cpu").localise(volume)
    assert np.hypot(centre[0] - true_centre[0], centre[1] - true_centre[1]) * 2.0 < 3.0
    assert len(model.calls) == 9  # 640 mm: 3 × 3 windows of 360 mm, one batch of 4 slices each
    assert set(model.calls) == {4}

    # A field the model was trained to see whole: one view.
    narrow = Volume(volume.array[:, :150, -150:].copy(), volume.spacing_mm)  # 300 mm, disc inside
    model = ThresholdModel()
    Segmenter(model, device="cpu").localise(narrow)
    assert len(model.calls) == 1


def test_cuda_requested_without_gpu_is_a_clear_error():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(InputError, match="no CUDA"):
        Segmenter(RingModel(), device="cuda")


class EmptyModel(RingModel):
    def forward(self, x):
        out = torch.zeros(x.shape[0], 5, x.shape[2], x.shape[3])
        out[:, 0] = 10
        return out


def test_no_heart_found_is_an_error_not_an_empty_labelmap():
    with pytest.raises(NoHeartFoundError, match="no heart found"):
        Segmenter(EmptyModel(), device="cpu")(make_phantom(2).image)


def test_a_confident_ring_on_pure_noise_is_no_heart():
    noise = ring_volume()
    noise = noise.with_array(np.random.default_rng(3).normal(300, 20, size=noise.array.shape).astype(np.float32))
    with pytest.raises(NoHeartFoundError, match="no spatial structure"):
        Segmenter(RingModel(), device="cpu", flip_check=False)(noise)


def test_neighbour_correlation_separates_images_from_noise():
    from scarnet.qc import MIN_NEIGHBOUR_CORRELATION, neighbour_correlation

    rng = np.random.default_rng(4)
    assert abs(neighbour_correlation(rng.normal(size=(3, 80, 90)))) < 0.05
    assert neighbour_correlation(make_phantom(3).image.array) > 0.8
    assert neighbour_correlation(np.ones((2, 10, 10))) == 0.0  # constant: no structure either
    # One hot voxel outside the heart (an artefact, a value left at the scanner's maximum) is not "noise" (it held
    # most of the variance: the phantom's exam was refused), nor does it make noise look like an image.
    hot = make_phantom(3).image.array.astype(np.float64)
    hot[0, 2, 2] = 1e6 * hot.max()
    assert neighbour_correlation(hot) > 0.8
    noise = rng.normal(size=(3, 80, 90))
    noise[0, 2, 2] = 1e6
    assert abs(neighbour_correlation(noise)) < 0.05
    assert MIN_NEIGHBOUR_CORRELATION < 0.47  # EMIDEC with 15 % noise still passes (see scarnet.qc)


def test_an_lv_the_model_is_unsure_of_in_most_slices_is_no_heart():
    # The same ring on the same LGE-like image, drawn with a max-probability of e/(e + 4) ≈ 0.40
    # everywhere: every other check passes, and the model's doubt alone refuses it.
    from scarnet.qc import QcCalibration

    unsure = RingModel()
    unsure.logits = unsure.logits / 8
    # A model passed in without a calibration (training's validation, the benchmark) gets the bundled
    # model's thresholds, refusal included.
    with pytest.raises(NoHeartFoundError, match="unsure of the LV it draws in 8 of the 8 slices"):
        Segmenter(unsure, device="cpu", flip_check=False)(ring_volume())
    timing = Segmenter(unsure, device="cpu", flip_check=False, reject_implausible=False)
    timing(ring_volume())
    assert any("unsure" in warning for warning in timing.warnings)
    # Weights without an unsure threshold of their own (qc_calibration_for's uncalibrated weights):
    # warned, not refused (another model's scale could refuse every real exam, and keep the weights
    # from being calibrated).
    uncalibrated = QcCalibration(calibrated_for_weights=False, refuses_unsure_lv=False)
    with pytest.warns(RuntimeWarning, match="8 of the 8 slices where it draws one; not refused"):
        result = Segmenter(unsure, device="cpu", flip_check=False, qc_calibration=uncalibrated)(ring_volume())
    assert result.report.extra["qc"]["refuses_unsure_lv"] is False
    # Weights whose own calibration puts "unsure" lower (a less confident model) keep the exam.
    lenient = QcCalibration(0.919, unsure_lv_threshold=0.3)
    result = Segmenter(unsure, device="cpu", flip_check=False, qc_calibration=lenient)(ring_volume())
    assert result.report.extra["qc"]["unsure_lv_threshold"] == 0.3


def test_training_validation_scores_a_case_the_pipeline_refuses_zero():
    # Model selection (scarnet.evaluate.evaluate_model) passes the model in without a calibration:
    # the bundled model's refusal applies, as for a user.
    from scarnet.evaluate import evaluate_model

    volume = ring_volume()
    reference = Segmenter(RingModel(), device="cpu", flip_check=False)(volume).labelmap
    unsure = RingModel()
    unsure.logits = unsure.logits / 8
    assert evaluate_model(RingModel(), [("ring", volume, reference)])["per_case"]["ring"]["myocardium_dice"] == 1.0
    assert evaluate_model(unsure, [("ring", volume, reference)])["per_case"]["ring"]["myocardium_dice"] == 0.0


def test_training_validation_names_the_case_of_a_pipeline_warning_as_about_the_models_labelmap(monkeypatch):
    """It read "scarnet: warning: slice 7 has the blood pool open ...": no exam, and as if the reference were wrong."""
    from types import SimpleNamespace

    import scarnet.inference
    from scarnet.evaluate import evaluate_model

    volume = ring_volume()
    reference = Segmenter(RingModel(), device="cpu", flip_check=False)(volume).labelmap

    class Warns:
        def __init__(self, *args, **kwargs):
            pass

        def __call__(self, image, name):
            warnings.warn("slice 7 has the blood pool open to the background", RuntimeWarning, stacklevel=1)
            return SimpleNamespace(labelmap=reference)

    monkeypatch.setattr(scarnet.inference, "Segmenter", Warns)
    with pytest.warns(RuntimeWarning, match=r"^p8 \(the model's labelmap\): slice 7 has the blood pool open"):
        evaluate_model(RingModel(), [("p8", volume, reference)])


class UnsureInSomeSlices(RingModel):
    """RingModel, unsure (logits damped) in the given slices of a whole-stack batch."""

    def __init__(self, unsure: list[int], num_slices: int, damping: float = 8.0) -> None:
        super().__init__()
        self.unsure, self.num_slices, self.damping = unsure, num_slices, damping

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x).clone()
        if x.shape[0] == self.num_slices:  # the whole stack, not the localisation views
            logits[self.unsure] = logits[self.unsure] / self.damping
        return logits


@pytest.mark.parametrize("num_slices, unsure, refused", [
    (8, [3], False),
    (8, [1, 3, 5], False),  # 3 of 8: under half
    (8, [1, 3, 5, 6], True),  # 4 of 8: half
    (2, [1], False),  # half, but one slice alone is a flag, not a refusal
    (2, [0, 1], True),
])
def test_refusal_needs_half_of_the_lv_slices_unsure_and_two_or_more(num_slices, unsure, refused):
    # RingModel's confident slices score 0.9265 and its damped ones 0.39: thresholds of 0.90 and 0.80
    # (given here, not the bundled weights' stand-ins, which follow whichever weights are bundled).
    from scarnet.qc import QcCalibration
    calibration = QcCalibration(0.90, unsure_lv_threshold=0.80)
    segmenter = Segmenter(UnsureInSomeSlices(unsure, num_slices), device="cpu", flip_check=False, batch_size=16,
                          qc_calibration=calibration)
    volume = ring_volume(shape_kji=(num_slices, 150, 170))
    if refused:
        with pytest.raises(NoHeartFoundError, match=f"in {len(unsure)} of the {num_slices} slices"):
            segmenter(volume)
    else:
        result = segmenter(volume)
        assert [k for k, s in enumerate(result.report.slices) if "low_confidence" in s.qc_flags] == unsure


@pytest.mark.parametrize("unsure, warned", [([1, 2, 3, 4, 5, 6], True), ([1, 2, 3, 4, 5], False)])
def test_a_stack_flagged_low_confidence_in_most_slices_gets_a_warning(unsure, warned):
    # Logits 8/2.4 ≈ 3.3 on one class of five: max-probability ≈ 0.87, under the flag's threshold
    # but over the refusal's 0.80: flagged, not refused; a warning from 6 of 8 slices (75 %), not 5.
    # (The interim model's calibration, given here: the stand-ins follow whichever weights are bundled.)
    from scarnet.qc import QcCalibration
    calibration = QcCalibration(0.919, unsure_lv_threshold=0.80, stack_warning_fraction=0.75)
    segmenter = Segmenter(UnsureInSomeSlices(unsure, 8, damping=2.4), device="cpu", flip_check=False,
                          qc_calibration=calibration)
    result = segmenter(ring_volume(shape_kji=(8, 150, 170)))
    assert [k for k, s in enumerate(result.report.slices) if "low_confidence" in s.qc_flags] == unsure
    confidence = result.report.extra["qc"]["heart_confidence"]
    assert all(0.80 < confidence[k] < 0.919 for k in unsure)
    assert confidence[0] > 0.919
    messages = [m for m in result.report.extra["inference"]["warnings"] if "flagged low_confidence" in m]
    assert messages == ([f"the model is unsure of the heart in {len(unsure)} of the 8 slices where it finds the "
                         "LV (flagged low_confidence): this exam may differ from the training data (sequence, "
                         "vendor, grey levels, artifacts); read every slice"] if warned else [])


def test_a_confident_ring_without_lge_contrast_is_no_heart():
    # structured (a ramp across the field of view) but blood pool and wall alike on average
    flat = ring_volume()
    columns = flat.array.shape[2]
    ramp = np.linspace(0.0, 1000.0, columns)[None, None, :]
    noise = np.random.default_rng(3).normal(0, 20, size=flat.array.shape)
    flat = flat.with_array((ramp + noise).astype(np.float32))
    with pytest.raises(NoHeartFoundError, match="no LGE contrast"):
        Segmenter(RingModel(), device="cpu", flip_check=False)(flat)
    # benchmark timing with random weights: the same checks, reported as a warning instead
    timing = Segmenter(RingModel(), device="cpu", flip_check=False, reject_implausible=False)
    result = timing(flat)
    assert any("no LGE contrast" in warning for warning in timing.warnings)
    assert np.isin(result.labelmap.array, (2, 3, 4)).any()


def test_inverted_grey_levels_are_no_heart():
    # Strong contrast, but the wrong way round: blood darker than the wall is not LGE.
    volume = ring_volume()
    inverted = volume.with_array(volume.array.max() - volume.array)
    with pytest.raises(NoHeartFoundError, match="blood pool is not brighter than the myocardium"):
        Segmenter(RingModel(), device="cpu", flip_check=False)(inverted)
    assert Segmenter(RingModel(), device="cpu", flip_check=False)(volume).report.total.myocardium_ml > 5


@pytest.mark.parametrize("shape, spacing, message", [
    ((120, 64, 64), (1.0, 1.0, 1.0), "3D volume"),
    ((10, 12, 200), (1.5, 1.5, 8.0), "another axis"),
    ((8, 40, 40), (0.5, 0.5, 8.0), "too small"),
    ((8, 256, 256), (14.0, 14.0, 8.0), "wider than any MR scanner"),  # 3.6 m: a spacing in cm, not mm
])
def test_volumes_that_are_not_short_axis_are_refused(shape, spacing, message):
    volume = Volume(np.random.default_rng(0).random(shape, dtype=np.float32), spacing)
    with pytest.raises(InputError, match=message):
        check_short_axis(volume)


def test_qc_flags_on_constructed_labelmaps():
    labels = np.zeros((4, 30, 30), dtype=np.uint8)
    rows, cols = np.mgrid[0:30, 0:30]
    radius = np.hypot(rows - 15, cols - 15)
    for k in (0, 2, 3):
        labels[k][radius < 6] = LV_BLOOD_POOL
        labels[k][(radius >= 6) & (radius < 9)] = HEALTHY_MYOCARDIUM
    labels[3][(radius >= 6) & (radius < 9) & (cols > 20)] = 0  # open the ring
    confidence = np.ones(labels.shape, dtype=np.float32)
    confidence[2] = 0.5
    flipped = {0: np.zeros((30, 30), bool)}
    labels[0][(radius >= 6) & (radius < 9) & (rows < 12)] = SCAR
    flags = slice_flags(labels, confidence, pixel_area_mm2=2.0, flipped_scar=flipped, contrast=[2.0, None, 1.5, 0.2])
    assert flags[0] == ["scar_unstable"]
    assert flags[1] == ["lv_missing"]
    assert flags[2] == ["low_confidence"]
    assert flags[3] == ["broken_ring", "low_contrast"]
    # The same stack, its LV 6 px from the image edge: 12 mm at 2 mm pixels, 30 mm at 5 mm.
    assert slice_flags(labels, confidence, 2.0, spacing_rc_mm=(2.0, 2.0))[0] == ["near_image_edge"]
    assert slice_flags(labels, confidence, 2.0, spacing_rc_mm=(5.0, 5.0))[0] == []
    assert slice_flags(labels, confidence, 2.0, spacing_rc_mm=(2.0, 2.0))[1] == ["lv_missing"]  # no LV: no distance


def test_tissue_contrast_is_cohens_d_of_blood_against_healthy_myocardium():
    from scarnet.qc import tissue_contrast

    labels = np.zeros((10, 10), dtype=np.uint8)
    labels[:5] = LV_BLOOD_POOL
    labels[5:] = HEALTHY_MYOCARDIUM
    image = np.where(labels == LV_BLOOD_POOL, 10.0, 4.0)
    image[:, 0::2] += 1.0  # SD 0.5 in both tissues
    assert tissue_contrast(image, labels) == pytest.approx(6.0 / 0.5)
    assert tissue_contrast(image, np.zeros_like(labels)) is None


def test_report_carries_qc_device_and_timings():
    from scarnet.threshold_check import threshold_check

    volume = ring_volume()
    result = Segmenter(RingModel(), device="cpu")(volume)
    extra = result.report.to_dict()
    assert extra["inference"]["device"] == "cpu"
    assert extra["inference"]["timings_s"]["total_s"] > 0
    assert "flags" in extra["qc"] and isinstance(extra["slices"][0]["qc_flags"], list)
    # The scar FWHM and 5-SD find in the model's myocardium, on the image as given (scarnet segment, batch, demo and
    # Slicer's model run all report it), as quantify gives it with the image.
    assert extra["threshold_check"] == threshold_check(result.labelmap.array, volume.array, volume.voxel_volume_ml)
    assert extra["threshold_check"]["remote"]["voxels"] == int((result.labelmap.array == 2).sum()) > 0


requires_weights = pytest.mark.skipif(bundled_weights_path() is None, reason="bundled weights not present yet")


@requires_weights
def test_bundled_model_segments_a_phantom_well_above_chance():
    from scarnet.evaluate import dice

    phantom = make_phantom(7)
    result = Segmenter(device="cpu")(phantom.image)
    predicted, reference = result.labelmap.array, phantom.labelmap.array
    myocardium = dice(np.isin(predicted, (2, 3, 4)), np.isin(reference, (2, 3, 4)))
    blood = dice(predicted == 1, reference == 1)
    assert myocardium > 0.5 and blood > 0.6, (myocardium, blood)


@requires_weights
@pytest.mark.parametrize("seed", [2, 7])
def test_bundled_model_finds_the_heart_in_a_corner_of_a_very_wide_field(seed):
    # Phantoms 2 and 7 in a 1.6× wider field (640 mm): seen whole, squeezed into the model's input,
    # the LV was placed 112 and 189 mm from where it is; searched in windows, 1.6 and 5.4 mm.
    from scarnet.evaluate_cli import widen_field

    phantom = make_phantom(seed)
    wide, wide_reference = widen_field(phantom.image, phantom.labelmap, factor=1.6, key=f"corner {seed}")
    rows, cols = np.nonzero(np.isin(wide_reference.array, (1, 2, 3, 4)).any(axis=0))
    centre = Segmenter(device="cpu").localise(wide)
    spacing_rc = np.array([wide.spacing_mm[1], wide.spacing_mm[0]])
    error_mm = np.linalg.norm((np.array(centre) - (rows.mean(), cols.mean())) * spacing_rc)
    assert error_mm < 10, error_mm


@requires_weights
def test_noise_volume_is_no_heart_for_the_bundled_model():
    noise = np.random.default_rng(1).rayleigh(100.0, size=(9, 192, 192)).astype(np.float32)
    with pytest.raises(NoHeartFoundError):
        Segmenter(device="cpu")(Volume(noise, (1.5, 1.5, 8.0)))


@requires_weights
def test_qc_flags_fire_on_a_corrupted_slice():
    phantom = make_phantom(7)
    image = phantom.image.array.copy()
    k = image.shape[0] // 2
    image[k] = np.random.default_rng(0).permutation(image[k].ravel()).reshape(image[k].shape)  # scrambled slice
    result = Segmenter(device="cpu")(phantom.image.with_array(image))
    assert result.report.slices[k].qc_flags, "the scrambled slice must be flagged"
    clean = sum(1 for s in result.report.slices if not s.qc_flags)
    assert clean >= len(result.report.slices) // 2


@requires_weights
@requires_emidec
def test_psir_or_magnitude_storage_of_a_real_exam_gives_the_same_segmentation():
    """EMIDEC stores PSIR with an offset of about 2048 (air); other centres send magnitude images
    (air at 0). The crop's robust normalisation must make the two the same problem."""
    from scarnet.evaluate import dice
    from scarnet.io import read_labelmap, read_volume

    folder = EMIDEC / "nifti" / "Case_P100"
    image = read_volume(folder / "image.nii.gz")
    reference = read_labelmap(folder / "label.nii.gz", image)
    stored = image.array.astype(np.float32)
    air_level = 2048.0  # the histogram's mode outside the zero padding
    magnitude = np.where(stored > 0, np.abs(stored - air_level), 0.0).astype(np.float32)
    segmenter = Segmenter(device="cpu")
    figures = []
    for array in (stored, magnitude):
        labels = segmenter(image.with_array(array)).labelmap.array
        figures.append((dice(np.isin(labels, (2, 3, 4)), np.isin(reference.array, (2, 3, 4))),
                        dice(np.isin(labels, (3, 4)), np.isin(reference.array, (3, 4)))))
    (myo_stored, scar_stored), (myo_magnitude, scar_magnitude) = figures
    assert myo_stored > 0.75 and scar_stored > 0.5, figures
    assert abs(myo_magnitude - myo_stored) < 0.03 and abs(scar_magnitude - scar_stored) < 0.05, figures


@requires_weights
def test_the_same_slices_stored_transposed_or_mirrored_give_the_same_labels():
    # The physical image is the same; only the file's row/column order (and its direction) differ.
    # The network alone is not exactly invariant to a mirrored picture; the pipeline must be.
    from scarnet.orientation import InPlaneOrder

    phantom = make_phantom(7)
    segmenter = Segmenter(device="cpu", flip_check=False)
    base = segmenter(phantom.image)
    for order in (InPlaneOrder(transpose=True), InPlaneOrder(reverse_rows=True, reverse_columns=True),
                  InPlaneOrder(True, False, True)):
        stored = order.apply(phantom.image)
        result = segmenter(stored)
        assert result.labelmap.same_grid(stored)
        assert np.array_equal(order.undo(result.labelmap.array), base.labelmap.array), order
        assert result.report.total.scar_ml == base.report.total.scar_ml
        here = stored.index_to_physical(np.array([result.lv_center_rc[1], result.lv_center_rc[0], 0.0]))
        there = phantom.image.index_to_physical(np.array([base.lv_center_rc[1], base.lv_center_rc[0], 0.0]))
        assert np.allclose(here, there, atol=1e-6), order


@requires_weights
def test_a_stack_stored_slice_first_is_segmented_as_the_usual_storage():
    # A (slice, row, column) array saved by nibabel has its slices along i (or, transposed, j).
    # Before, such a file was refused ("are the slices along another axis?"); now the pipeline
    # finds the slice axis from the grid and gives the same labels, voxel for voxel, and report.
    from scarnet.orientation import StackAxis

    phantom = make_phantom(7)
    segmenter = Segmenter(device="cpu", flip_check=False)
    base = segmenter(phantom.image)
    for axis in (0, 1):
        stored = StackAxis(axis).apply(phantom.image)
        assert stored.shape_ijk[axis] == phantom.image.num_slices
        result = segmenter(stored)
        assert result.labelmap.same_grid(stored)
        assert np.array_equal(StackAxis(axis).undo(result.labelmap.array), base.labelmap.array), axis
        assert result.report.to_dict()["slices"] == base.report.to_dict()["slices"]
        assert result.report.slice_axis == "ij"[axis]
    assert base.report.slice_axis == "k"


@requires_weights
def test_an_intensity_offset_does_not_change_the_labels_where_the_crop_passes_the_image_edge():
    # PSIR is stored with an offset (+4096, or signed); a small field of view puts the edge of the
    # image inside the heart crop. The same exam, offset or not, must give the same labels.
    phantom = make_phantom(7)
    rows, cols = np.nonzero(np.isin(phantom.labelmap.array, (1, 2, 3, 4)).any(axis=0))
    r0, c0 = max(rows.min() - 6, 0), max(cols.min() - 6, 0)
    small = Volume(phantom.image.array[:, r0:rows.max() + 7, c0:cols.max() + 7], phantom.image.spacing_mm)
    segmenter = Segmenter(device="cpu", flip_check=False)
    base = segmenter(small).labelmap.array
    assert np.isin(base, (2, 3, 4)).any()
    for offset in (4096.0, -2048.0):
        shifted = small.with_array(small.array.astype(np.float32) + offset)
        assert np.array_equal(segmenter(shifted).labelmap.array, base), offset


def test_the_crop_outside_the_slice_is_its_minimum_or_its_edge_continued():
    from scarnet.preprocess import OUTSIDE_EDGE, plane_transform, resample_image

    plane = np.arange(20.0, dtype=np.float32).reshape(4, 5) + 100.0
    transform = plane_transform((1.5, 2.5), (1.0, 1.0), 8, 1.0)  # 8 × 8 px around a 4 × 5 slice
    minimum, edge = resample_image(plane, transform), resample_image(plane, transform, OUTSIDE_EDGE)
    assert minimum[0, 0] == 100.0 and minimum[-1, -1] == 100.0  # the slice's minimum, corner to corner
    assert edge[0, 0] == 100.0 and edge[-1, -1] == 119.0  # the nearest edge pixel: top-left, bottom-right
    np.testing.assert_array_equal(edge[2:6, 1:6], plane)  # inside, the same image either way
    np.testing.assert_array_equal(minimum[2:6, 1:6], plane)
    np.testing.assert_allclose(resample_image(plane + 4096.0, transform, OUTSIDE_EDGE), edge + 4096.0)
    with pytest.raises(ValueError, match="outside must be"):
        resample_image(plane, transform, "zero")


@requires_weights
def test_a_field_of_view_cropped_close_around_the_heart_keeps_the_figures():
    """An exam cropped to the heart + 20 mm (about 100 mm across, under the model's view): the crop's outside is
    the image's edge continued, not a frame of constant fill the model never saw, which took a tenth off this
    phantom's myocardium (a fifth to a quarter off two EMIDEC exams')."""
    from scarnet.evaluate_cli import narrow_field

    phantom = make_phantom(7)
    small, _ = narrow_field(phantom.image, phantom.labelmap, margin_mm=20.0)  # the heart + 20 mm, in place
    spacing = phantom.image.spacing_mm
    assert max(small.shape_ijk[0] * spacing[0], small.shape_ijk[1] * spacing[1]) < 110.0
    segmenter = Segmenter(device="cpu", flip_check=False)
    full, cropped = segmenter(phantom.image).report.total, segmenter(small).report.total
    assert cropped.myocardium_ml == pytest.approx(full.myocardium_ml, rel=0.05)
    assert cropped.scar_ml == pytest.approx(full.scar_ml, rel=0.15)


def test_weights_identity_names_the_file_and_its_sha256(tmp_path):
    """What a report records of the weights: a user's file by its own hash (any file: it is not read as weights)."""
    import hashlib

    from scarnet.inference import weights_identity

    user = tmp_path / "mine.safetensors"
    user.write_bytes(b"not really weights")
    assert weights_identity(user) == {"file": "mine.safetensors", "sha256": hashlib.sha256(b"not really weights")
                                      .hexdigest(), "bundled": False}
    bundled = weights_identity(None)
    assert bundled["bundled"] is True and bundled["file"] in (None, "scarnet_litemedsam.safetensors")


README = Path(__file__).resolve().parents[3] / "README.md"


@requires_weights
@pytest.mark.skipif(not README.is_file(), reason="README.md is not beside the package (an installed copy)")
def test_the_readmes_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    """The README's "Python" block, run as it stands on a phantom saved as exam.nii.gz: it segments, prints, writes
    the labelmap and the report, and quantifies the labelmap read back."""
    import re

    from scarnet.io import write_volume
    from scarnet.phantom import make_phantom

    blocks = re.findall(r"^## Python\n.*?```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 1, "the README's Python section has one python block"
    monkeypatch.chdir(tmp_path)
    write_volume(make_phantom(3, n_slices=6).image, tmp_path / "exam.nii.gz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        exec(compile(blocks[0], str(README), "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"myocardium \d+\.\d mL, scar \d+\.\d mL \(\d+\.\d %\)", printed[0]), printed
    report = json.loads((tmp_path / "exam_report.json").read_text())
    assert len(report["slices"]) == 6 and (tmp_path / "exam_labels.nii.gz").is_file()
    assert float(printed[-1]) == pytest.approx(report["total"]["scar_percent"], abs=1e-9)


@requires_weights
def test_weights_bundled_names_the_bundled_weights_from_python_too(tmp_path, monkeypatch):
    """scarnet.segment(image, weights="bundled") said 'bundled: weights file not found' (QA helper-92)."""
    monkeypatch.chdir(tmp_path)
    assert Segmenter(weights="bundled", device="cpu").weights_identity == Segmenter(device="cpu").weights_identity


@requires_weights
def test_python_api_reports_name_their_input_its_series_and_read_warnings(tmp_path):
    """scarnet.segment(scarnet.read_volume(path)) gave a report that named no input (its JSON and CSV said
    which exam only through the CLI), and dropped what reading the file warned of; quantify() the same."""
    import nibabel as nib
    from test_dicom_seg import write_dicom_series

    import scarnet
    from scarnet.io import write_report

    phantom = make_phantom(3)
    folder = tmp_path / "dicom"
    write_dicom_series(phantom.image, folder)
    image = scarnet.read_volume(folder)
    result = scarnet.segment(image, device="cpu")
    assert result.report.extra["input"] == str(folder)
    assert result.report.extra["input_series"]["series_number"] == 7
    write_report(result.report, tmp_path / "report.json")
    assert json.loads((tmp_path / "report.json").read_text())["input"] == str(folder)
    assert f"input,{folder}" in result.report.to_csv()

    # A read warning (complex MR data: its magnitude is used) reaches the report's warnings.
    complex_path = tmp_path / "complex.nii.gz"
    array = np.transpose(phantom.image.array, (2, 1, 0)).astype(np.complex64)
    affine = np.diag([*phantom.image.spacing_mm, 1.0]) * np.array([-1, -1, 1, 1])  # LPS → RAS
    nib.save(nib.Nifti1Image(array, affine), complex_path)
    with pytest.warns(UserWarning, match="complex-valued"):
        complex_image = scarnet.read_volume(complex_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = scarnet.segment(complex_image, device="cpu").report
    assert report.extra["input"] == str(complex_path)
    assert any("complex-valued" in message for message in report.warnings())
    # A notebook that silenced warnings gets the same report (it lost them: QA helper-107).
    with warnings.catch_warnings(record=True) as shown:
        warnings.filterwarnings("ignore")
        silenced = scarnet.read_volume(complex_path)
    assert not shown and silenced.provenance["input_warnings"] == complex_image.provenance["input_warnings"]

    # quantify(): the exam is the image; the labelmap is named beside it.
    labels_path = tmp_path / "labels.nii.gz"
    scarnet.io.write_volume(result.labelmap, labels_path)
    quantified = scarnet.quantify(scarnet.read_labelmap(labels_path, reference=image), image)
    assert quantified.extra["input"] == str(folder) and quantified.extra["labelmap"] == str(labels_path)
    assert quantified.extra["input_series"] == result.report.extra["input_series"]
    alone = scarnet.quantify(scarnet.read_labelmap(labels_path))
    assert alone.extra["input"] == alone.extra["labelmap"] == str(labels_path)
    # segment() takes what the command line does: RV insertion (AHA segments), basal end, minimum scar region.
    from scarnet.phantom import anterior_rv_insertion_lps

    with_segments = scarnet.segment(image, device="cpu", rv_insertion_lps=anterior_rv_insertion_lps(phantom),
                                    min_scar_component_ml=0.5).report
    assert len(with_segments.segments) == 17
    with pytest.raises(InputError, match="minimum scar region"):
        scarnet.segment(image, device="cpu", min_scar_component_ml=-1)
    # The model's labelmap is of that exam; a Volume made in Python names nothing (it has no file to name).
    assert scarnet.quantify(result.labelmap).extra["input"] == str(folder)
    made = scarnet.Volume(result.labelmap.array, result.labelmap.spacing_mm, result.labelmap.origin_mm,
                          result.labelmap.direction)
    assert "input" not in scarnet.quantify(made).extra


def test_a_labelmap_given_as_the_image_is_named_as_one(tmp_path):
    """segment label.nii.gz said "no heart found ... is this an LGE stack?" (QA helper-104): it is a labelmap."""
    from scarnet.inference import model_storage

    labels = make_phantom(3).labelmap
    with pytest.raises(InputError, match=r"label.nii.gz: holds only the values 0, 1, 2, 3(, 4)?: a labelmap"):
        model_storage(labels, "label.nii.gz")
    # An image is not refused, however few its grey levels (a binary test pattern is not labels 0-4).
    model_storage(labels.with_array(labels.array.astype(np.float32) * 100.0 + 7.0), "image")

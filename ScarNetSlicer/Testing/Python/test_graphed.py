"""CUDA-graph replay of the model's forward (scarnet.model.graphed): eager off CUDA, same output on it."""

from __future__ import annotations

import needs_torch  # noqa: F401  (before torch: without it, this file is skipped)
import numpy as np
import pytest
import torch
from test_inference import RingModel

from scarnet.inference import Segmenter
from scarnet.model.graphed import CudaGraphed, eager_calls
from scarnet.model.registry import build_model
from scarnet.model.scarnet import ScarNetConfig

SMALL = ScarNetConfig(encoder="none", input_size=32, unet_channels=(4, 8, 8, 8, 8), fusion_level=3)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


def test_off_cuda_the_wrapped_model_runs_eagerly():
    torch.manual_seed(0)
    model = build_model(SMALL).eval()
    graphed = CudaGraphed(model, batch_size=4)
    x = torch.rand(3, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(graphed(x), model(x))
    assert graphed.captures == 0 and graphed.error is None
    assert graphed.config is model.config


def test_segmenter_wraps_only_on_cuda_and_a_halved_batch_resets_the_graphs(monkeypatch):
    assert not isinstance(Segmenter(RingModel(), device="cpu", cuda_graphs=True).model, CudaGraphed)
    # The OOM path tells a graphed model the new batch size (its graphs were padded to the old one).
    segmenter = Segmenter(RingModel(), device="cpu", batch_size=8, flip_check=False)
    graphed = CudaGraphed(segmenter.model, batch_size=8)
    graphed._graphs["stale"] = None
    segmenter.model = graphed
    segmenter.device = torch.device("cuda")  # pretend; the fake forward below never touches CUDA

    def fake_forward(batch, plain_out=None):
        if segmenter.batch_size > 2:
            raise torch.cuda.OutOfMemoryError("simulated")
        return np.zeros((batch.shape[0], 5, 4, 4), dtype=np.float32)

    monkeypatch.setattr(segmenter, "_forward_batched", fake_forward)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    with pytest.warns(RuntimeWarning):
        segmenter._forward(np.zeros((6, 4, 4), dtype=np.float32))
    assert graphed.batch_size == 2 and not graphed._graphs


def test_reset_takes_the_new_batch_size_and_tries_graphs_again():
    graphed = CudaGraphed(build_model(SMALL), batch_size=8)
    graphed._graphs["captured"] = None
    graphed.error = "an earlier capture ran out of memory"
    graphed.reset(4)
    assert graphed.batch_size == 4 and not graphed._graphs and graphed.error is None


def test_the_benchmark_refuses_compile_with_cuda_graphs(tmp_path):
    import argparse

    from scarnet.bench import run_benchmark
    from scarnet.errors import InputError

    args = argparse.Namespace(device="cpu", threads=1, repeats=1, only=["scarnet"], json=None, overwrite=False,
                              compile=True, cuda_graphs=True, memory=False, cold=False, quiet=True)
    with pytest.raises(InputError, match="choose one"):
        run_benchmark(args)


def test_moving_the_model_drops_captured_graphs():
    graphed = CudaGraphed(build_model(SMALL), batch_size=2)
    graphed._graphs["captured"] = None
    graphed.to(torch.float32)
    assert not graphed._graphs


@needs_cuda
@pytest.mark.parametrize("autocast", [False, True])
def test_on_cuda_replays_match_the_eager_model(autocast):
    torch.manual_seed(0)
    model = build_model(SMALL).eval().cuda()
    graphed = CudaGraphed(model, batch_size=4)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        for rows in (3, 4, 1, 3):  # all padded to 4: one capture
            x = torch.rand(rows, 1, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
            out = graphed(x)
            assert out.shape == (rows, 5, 32, 32)
            torch.testing.assert_close(out.float(), model(x).float(), atol=2e-2 if autocast else 1e-4, rtol=0)
        with eager_calls():
            graphed(x)
    assert graphed.error is None and graphed.captures == 1
    # Outside inference mode (plain no_grad) a graph of its own: an inference tensor cannot be written there.
    with torch.no_grad():
        torch.testing.assert_close(graphed(x).float(), model(x).float(), atol=2e-2 if autocast else 1e-4, rtol=0)
    assert graphed.captures == 2
    # Weights moved away and back behind the wrapper's back: captured anew where their addresses
    # changed, never replayed on freed memory.
    model.cpu().cuda()
    with torch.no_grad():
        torch.testing.assert_close(graphed(x).float(), model(x).float(), atol=2e-2 if autocast else 1e-4, rtol=0)


def test_compiled_model_first_runs_each_shape_eagerly_so_attention_masks_are_built_outside_the_graph(monkeypatch):
    """--compile: the compiled graph must find TinyViT's attention masks built (as a CUDA-graph capture
    does after its warm-up), not build them itself and leave its own outputs in the module's cache."""
    import scarnet.bench as bench
    from scarnet.model.registry import prepare_for_inference
    from scarnet.model.tinyvit import Attention

    torch.manual_seed(0)
    config = ScarNetConfig(encoder="litemedsam", input_size=128, encoder_input_size=64,
                           unet_channels=(4, 8, 8, 8, 8), fusion_level=3)
    model = prepare_for_inference(build_model(config), device="cpu", dtype=torch.float32)
    attentions = [module for module in model.modules() if isinstance(module, Attention)]
    masks_seen: list[int] = []

    def fake_compile(module, **_):  # stands for torch.compile: records what the graph would find
        def compiled(x):
            masks_seen.append(sum(len(attention._image_biases) for attention in attentions))
            return module(x)
        return compiled

    monkeypatch.setattr(torch, "compile", fake_compile)
    wrapped = bench.CompiledOrEager(model, torch.device("cpu"))
    x = torch.rand(2, 1, 128, 128)
    with torch.inference_mode():
        expected = model(x)
        for attention in attentions:
            attention._image_biases.clear()
        first, second = wrapped(x), wrapped(x)
    assert masks_seen[0] > 0, "the compiled model was called before the eager warm-up built the masks"
    assert masks_seen == [masks_seen[0]] * 2 and wrapped.error is None
    assert len(wrapped._warmed) == 1  # once per shape, not per call
    torch.testing.assert_close(first, expected)
    torch.testing.assert_close(second, expected)

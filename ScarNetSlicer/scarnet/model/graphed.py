"""A model's inference forward replayed as CUDA graphs (one capture per input shape).

On a GPU, ScarNet's forward for a 12-slice batch is a few hundred small kernels (12 GFLOP per
slice, about 1 % of an H200's bf16 peak in eager mode): launching them costs more than running
them. A CUDA graph records the launches once and replays them in one call. Inputs are padded to
a fixed batch so that every stack of up to ``batch_size`` slices replays the same graph.

Only for inference on CUDA (no autograd, the model in eval mode): anywhere else, and after a
failed capture (reported once), the wrapped model runs eagerly. Out of GPU memory in a capture
is raised to the caller (the pipeline halves its batch and calls :meth:`CudaGraphed.reset`).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator

import torch
from torch import nn

#: Shapes kept captured at once (each graph holds its own memory pool).
MAX_GRAPHS = 4

_EAGER_ONLY = False


@contextlib.contextmanager
def eager_calls() -> Iterator[None]:
    """Within this block model wrappers that replay or compile (:class:`CudaGraphed`, the benchmark's
    ``torch.compile`` one) run the plain model, e.g. to count FLOPs op by op."""
    global _EAGER_ONLY
    saved, _EAGER_ONLY = _EAGER_ONLY, True
    try:
        yield
    finally:
        _EAGER_ONLY = saved


def calls_are_eager() -> bool:
    """Whether an :func:`eager_calls` block is running."""
    return _EAGER_ONLY


def _cuda_autocast_state() -> tuple[bool, torch.dtype]:
    """Whether autocast is on for CUDA here, and its dtype (the per-device API of torch ≥ 2.4, else the old one)."""
    try:
        return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")
    except TypeError:
        return torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()


class CudaGraphed(nn.Module):
    """``model``'s forward as CUDA graphs, inputs padded to ``batch_size`` rows (eager elsewhere).

    The autocast state of the caller (enabled, dtype) is part of the graph's key and is
    re-entered for the capture with autocast's cast cache off, as graph capture requires.
    """

    def __init__(self, model: nn.Module, batch_size: int = 16) -> None:
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)
        self.batch_size = int(batch_size)
        self._graphs: OrderedDict[tuple, tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]] = OrderedDict()
        self.error: str | None = None
        self.captures = 0

    def reset(self, batch_size: int) -> None:
        """Pad to ``batch_size`` from now on (after a GPU out-of-memory): graphs are captured anew."""
        self.batch_size = int(batch_size)
        self._graphs.clear()
        self.error = None

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .half(): captured graphs would use stale tensors
        self._graphs.clear()
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type != "cuda" or self.error is not None or _EAGER_ONLY or torch.is_grad_enabled()
                or self.model.training or x.shape[0] > self.batch_size):
            return self.model(x)
        rows = x.shape[0]
        padded = self._padded(x)
        autocast_on, autocast_dtype = _cuda_autocast_state()
        # The weights' addresses: a model moved away and back (its parameters reallocated, e.g. by the
        # shared model cache's CPU fallback, which bypasses this wrapper) must not replay old graphs.
        weights = _weights_address(self.model)
        key = (tuple(padded.shape), padded.stride(), padded.dtype, padded.device, autocast_on, autocast_dtype,
               torch.is_inference_mode_enabled(), weights)
        entry = self._graphs.get(key)
        if entry is None:
            if any(captured[-1] != weights for captured in self._graphs):
                self._graphs.clear()
            try:
                with torch.cuda.device(x.device):
                    entry = self._capture(padded, autocast_on, autocast_dtype)
            except torch.cuda.OutOfMemoryError:
                self._graphs.clear()
                raise  # the caller's out-of-memory handling (Segmenter halves the batch, then resets)
            except Exception as error:  # capture refuses some ops and states: run eagerly from now on
                self.error = f"{type(error).__name__}: {' '.join(str(error).split())[:200]}"
                warnings.warn(f"CUDA graph capture failed, running eagerly: {self.error}", RuntimeWarning,
                              stacklevel=2)
                self._graphs.clear()
                return self.model(x)
            self._graphs[key] = entry
            while len(self._graphs) > MAX_GRAPHS:
                self._graphs.popitem(last=False)
        else:
            self._graphs.move_to_end(key)
        graph, static_input, static_output = entry
        static_input.copy_(padded)
        graph.replay()
        # The next replay overwrites the static output: hand out a copy.
        return static_output[:rows].clone()

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` with zero rows appended up to the batch size, in its memory layout."""
        rows = x.shape[0]
        if rows == self.batch_size:
            return x
        layout = (torch.channels_last if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
                  else torch.contiguous_format)
        padded = x.new_zeros((self.batch_size, *x.shape[1:])).contiguous(memory_format=layout)
        padded[:rows] = x
        return padded

    def _capture(self, x: torch.Tensor, autocast_on: bool, autocast_dtype: torch.dtype
                 ) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        static_input = x.clone()
        autocast = torch.autocast("cuda", dtype=autocast_dtype, enabled=autocast_on, cache_enabled=False)
        caller_stream = torch.cuda.current_stream(x.device)
        # Warm-up on a side stream (cuDNN/cuBLAS pick their kernels and workspaces), as capture needs.
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(caller_stream)
        with torch.cuda.stream(side), autocast:
            for _ in range(2):
                self.model(static_input)
        caller_stream.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph), autocast:
                static_output = self.model(static_input)
        finally:
            # torch.cuda.graph leaves its capture stream current when ending a failed capture raises.
            torch.cuda.set_stream(caller_stream)
        self.captures += 1
        return graph, static_input, static_output


def _weights_address(model: nn.Module) -> int:
    """A fingerprint of where the model's parameters and buffers live (what a graph reads)."""
    return hash(tuple(tensor.data_ptr() for tensor in (*model.parameters(), *model.buffers())))

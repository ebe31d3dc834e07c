"""Study: PyTorch operators one ScarNet forward of 12 slices dispatches, by weights precision.

Counted with the benchmark's counter (`scarnet.bench.count_ops`: views, no-op casts and
allocations left out; each of the rest launches at least one kernel on a GPU), on the CPU:
float32 weights; bf16 weights (the pipeline's GPU path); float32 weights under bf16 autocast
(the GPU path before bf16 weights, with CPU autocast's casting rules standing in for CUDA's).
Optional argument: another checkout's ScarNetSlicer folder, whose model code is counted instead
(e.g. a `git worktree` of an older commit), with this checkout's counter.

    python tools/studies/op_counts.py [OTHER/ScarNetSlicer]
"""

from __future__ import annotations

import sys

import torch

from scarnet.bench import count_ops


def main(other_package: str | None = None) -> None:
    if other_package:  # the counter stays this checkout's; the model code comes from there
        for name in [n for n in sys.modules if n == "scarnet" or n.startswith("scarnet.")]:
            del sys.modules[name]
        sys.path.insert(0, other_package)
    from scarnet.model.registry import load_model

    x = torch.rand(12, 1, 128, 128).contiguous(memory_format=torch.channels_last)
    model = load_model(device="cpu")

    def warm_count(run) -> int:
        run()  # what a model builds once per input size and precision is not counted
        return count_ops(run)

    with torch.inference_mode():
        print("float32 weights:", warm_count(lambda: model(x)))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            print("float32 weights under bf16 autocast:", warm_count(lambda: model(x)))
        model = model.to(torch.bfloat16)
        x16 = x.to(torch.bfloat16)
        try:
            print("bf16 weights:", warm_count(lambda: model(x16)))
        except (NotImplementedError, RuntimeError) as error:  # older model code: bf16 resize not on CPU
            print("bf16 weights: does not run on the CPU:", str(error).splitlines()[0])


if __name__ == "__main__":
    main(*sys.argv[1:])

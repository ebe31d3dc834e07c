"""Does ``torch.compile`` of the bundled model give eager's results, in one graph?

``python tools/studies/compile_check.py [--device cpu|cuda] [--slices 4] [--threads 1]``: the model as
``scarnet bench --compile`` runs it (``scarnet.bench.CompiledOrEager``: each new input shape once
eagerly first, then the compiled model), against the eager model on the same random input; prints the
compile time, the largest logit difference, the argmax agreement and dynamo's graph and graph-break
counts. On the CPU it needs a C++ compiler; the first compile takes minutes, inductor's cache less.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch._dynamo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from scarnet.bench import CompiledOrEager
    from scarnet.model.registry import bundled_weights_path, load_model

    device = torch.device(args.device)
    model = load_model(bundled_weights_path(), device=device)
    dtype = next(model.parameters()).dtype
    size = model.config.input_size
    x = torch.randn(args.slices, 1, size, size, device=device, dtype=dtype)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        eager = model(x).float()
        for module in model.modules():  # start as a fresh process would: no attention masks built yet
            if hasattr(module, "_image_biases"):
                module._image_biases.clear()
        compiled = CompiledOrEager(model, device)
        start = time.perf_counter()
        first = compiled(x).float()
        seconds = time.perf_counter() - start
        second = compiled(x).float()
    print(f"compile and first call: {seconds:.1f} s; error: {compiled.error}")
    for name, out in (("first", first), ("second", second)):
        agree = (out.argmax(1) == eager.argmax(1)).float().mean().item()
        largest = (out - eager).abs().max().item()
        print(f"{name} call: largest logit difference {largest:.2e}, argmax agrees on {agree:.4%}")
    counters = torch._dynamo.utils.counters
    print(f"dynamo: {dict(counters['stats'])}, graph breaks: {dict(counters['graph_break']) or 'none'}")


if __name__ == "__main__":
    main()

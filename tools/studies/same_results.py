"""Study: does a change to the model or pipeline code change any result? EMIDEC val, bundled weights.

Runs this checkout's pipeline and another checkout's (e.g. a `git worktree` of an older commit)
side by side in one process on the CPU, on the 20 val exams: labelmaps voxel by voxel, QC flags
and per-slice heart confidence, and the pipeline's seconds for each (interleaved, so the shared
machine's load hits both alike). The other checkout's package is copied under another name so
that both can be imported at once. About 2 min on 2 threads.

    python tools/studies/same_results.py OTHER/ScarNetSlicer
"""

from __future__ import annotations

import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from scarnet.inference import Segmenter
from scarnet.train.emidec import default_emidec_root, load_cases, load_split


def main(other_package: str) -> None:
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    copy = Path(tempfile.mkdtemp())
    shutil.copytree(Path(other_package) / "scarnet", copy / "scarnet_other")
    sys.path.insert(0, str(copy))
    other_inference = importlib.import_module("scarnet_other.inference")
    torch.set_num_threads(2)
    this, other = Segmenter(device="cpu", threads=2), other_inference.Segmenter(device="cpu", threads=2)
    seconds = {"this": 0.0, "other": 0.0}
    voxels = differing = same_flags = 0
    largest_confidence_gap = 0.0
    cases = load_cases(root, load_split(root)["val"])
    for case in cases:
        image = case.as_volume()[0]
        results = {}
        for name, segmenter in (("other", other), ("this", this)):
            started = time.perf_counter()
            results[name] = segmenter(image, name=case.name)
            seconds[name] += time.perf_counter() - started
        a, b = results["other"], results["this"]
        voxels += a.labelmap.array.size
        differing += int((a.labelmap.array != b.labelmap.array).sum())
        same_flags += [s.qc_flags for s in a.report.slices] == [s.qc_flags for s in b.report.slices]
        pairs = zip(a.report.extra["qc"]["heart_confidence"], b.report.extra["qc"]["heart_confidence"])
        gaps = [abs(x - y) for x, y in pairs if x is not None and y is not None]
        largest_confidence_gap = max([largest_confidence_gap, *gaps])
        print(case.name, "voxels differing:", int((a.labelmap.array != b.labelmap.array).sum()), flush=True)
    print(f"{len(cases)} exams: {differing} of {voxels} voxels differ; QC flags identical in {same_flags}; "
          f"largest heart-confidence difference {largest_confidence_gap:.4f}; pipeline seconds: other "
          f"{seconds['other']:.1f}, this {seconds['this']:.1f}")
    shutil.rmtree(copy, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

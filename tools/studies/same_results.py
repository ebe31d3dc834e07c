"""Study: does a change to the model or pipeline code change any result? EMIDEC val, bundled weights.

Runs this checkout's pipeline and another checkout's (e.g. a `git worktree` of an older commit)
side by side in one process on the CPU, on the 20 val exams: labelmaps voxel by voxel, QC flags
and per-slice heart confidence, and the pipeline's seconds for each (interleaved, so the shared
machine's load hits both alike). The other checkout's package is copied under another name so
that both can be imported at once; each pipeline is given the image as its own package's ``Volume``
(``quantify`` accepts no other class). About 2 min on 2 threads; ``--exams N``: the first N only.

    python tools/studies/same_results.py OTHER/ScarNetSlicer [--exams N]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from scarnet.inference import Segmenter
from scarnet.train.emidec import default_emidec_root, load_cases, load_split
from scarnet.volume import Volume


def as_volume_of(volume: Volume, volume_class: type) -> Any:
    """``volume`` as an instance of another copy of the package's ``Volume`` class (its fields that class has).

    Each package's ``quantify`` refuses a Volume of any class but its own (an InputError, "... not Volume"), and a
    segmenter quantifies a labelmap made from the image it is given: the other checkout's needs its own class.
    """
    names = {f.name for f in dataclasses.fields(volume_class) if f.init}
    return volume_class(**{name: getattr(volume, name) for name in names if hasattr(volume, name)})


def main(other_package: str, exams: int | None = None) -> None:
    root = default_emidec_root()
    if root is None:
        sys.exit("EMIDEC data not found (../shared/data/emidec)")
    if not (Path(other_package) / "scarnet" / "inference.py").is_file():
        sys.exit(f"{other_package}: no scarnet package here (give the other checkout's ScarNetSlicer folder)")
    copy = Path(tempfile.mkdtemp())
    try:  # the copy goes whatever happens (an interrupt, an error in either pipeline)
        shutil.copytree(Path(other_package) / "scarnet", copy / "scarnet_other")
        sys.path.insert(0, str(copy))
        other_inference = importlib.import_module("scarnet_other.inference")
        other_volume_class = importlib.import_module("scarnet_other.volume").Volume
        torch.set_num_threads(2)
        this, other = Segmenter(device="cpu", threads=2), other_inference.Segmenter(device="cpu", threads=2)
        seconds = {"this": 0.0, "other": 0.0}
        voxels = differing = same_flags = 0
        largest_confidence_gap = 0.0
        cases = load_cases(root, load_split(root)["val"])[:exams]
        for case in cases:
            image = case.as_volume()[0]
            images = {"other": as_volume_of(image, other_volume_class), "this": image}
            results = {}
            for name, segmenter in (("other", other), ("this", this)):
                started = time.perf_counter()
                results[name] = segmenter(images[name], name=case.name)
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
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of exams") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected 1 or more exams")
    return value


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other_package", help="the other checkout's ScarNetSlicer folder (holding scarnet/)")
    parser.add_argument("--exams", type=positive_int, default=None, help="only the first N val exams")
    arguments = parser.parse_args()
    main(arguments.other_package, arguments.exams)

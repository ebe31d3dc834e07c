"""ScarNet engine: myocardium and scar segmentation and quantification in LGE cardiac MRI.

Pure Python, no Slicer/Qt/VTK. Heavy libraries (torch, SimpleITK) are imported only by the
functions that need them, so ``import scarnet`` stays fast.
"""

from __future__ import annotations

# typing.TYPE_CHECKING without importing typing (2–6 ms here): the package is the first thing the console script
# imports, before scarnet.console can take a Ctrl-C, and that moment stays short.
TYPE_CHECKING = False

__version__ = "0.1.0"

__all__ = ["Volume", "read_volume", "read_labelmap", "quantify", "segment", "load_model", "__version__"]

if TYPE_CHECKING:
    from typing import Any

    from .inference import segment
    from .io import read_labelmap, read_volume
    from .model.registry import load_model
    from .quantify import quantify
    from .volume import Volume

_LAZY = {
    "Volume": ("volume", "Volume"),
    "read_volume": ("io", "read_volume"),
    "read_labelmap": ("io", "read_labelmap"),
    "quantify": ("quantify", "quantify"),
    "segment": ("inference", "segment"),
    "load_model": ("model.registry", "load_model"),
}


def __dir__() -> list[str]:
    # The API is loaded on first use (_LAZY): listed here so that dir() and tab completion show it.
    return sorted({*globals(), *__all__})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attribute = _LAZY[name]
        return getattr(importlib.import_module(f".{module_name}", __name__), attribute)
    raise AttributeError(f"module 'scarnet' has no attribute {name!r}")

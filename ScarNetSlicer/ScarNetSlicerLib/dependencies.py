"""Which Python packages the engine needs in Slicer, and installing them on first use.

Policy (Slicer's own guidance for extensions):

* Nothing is installed when the module is imported or shown: only when "Segment scar" is
  clicked the first time, after **one** confirmation dialog that lists everything.
* PyTorch comes from the **PyTorch extension** (its ``PyTorchUtils`` module picks the CUDA or CPU
  build that fits the machine); never from a plain ``pip install torch``. When that extension is
  missing the user gets one clear message saying how to add it.
* The other packages are installed with ``slicer.packaging.pip_ensure`` (Slicer ≥ 5.11) or
  ``slicer.util.pip_install`` (older). Packages Slicer already ships (numpy, SimpleITK, …) are
  never reinstalled.

This file is pure Python: the Slicer-specific actions (dialog, PyTorchUtils, pip) are passed in
as callables by the module, so the decision logic and the message texts are tested outside Slicer.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable

from scarnet.errors import ScarNetError

#: Import name → pip requirement, for what the module's path through the engine imports at run time besides
#: torch (the command line's nibabel and rich are not on it: a test runs that path without them).
#: scipy and pydicom ship with most Slicer builds; they are listed so a build without them works.
REQUIREMENTS: dict[str, str] = {
    "safetensors": "safetensors>=0.4",
    "slicerio": "slicerio>=1.0",
    "pydicom": "pydicom>=2.4",
    "scipy": "scipy>=1.10",
}
TORCH_IMPORT_NAME = "torch"
#: Name of the Slicer extension that provides PyTorch (and the ``PyTorchUtils`` module).
PYTORCH_EXTENSION = "PyTorch"

PYTORCH_EXTENSION_MISSING = (
    "ScarNet needs PyTorch, which Slicer gets from the 'PyTorch' extension: install it from the "
    "Extensions Manager (View > Extensions Manager, search 'PyTorch'), restart Slicer and try again."
)
INSTALL_DECLINED = "Required Python packages were not installed, so ScarNet cannot run (nothing was changed)."


class DependencyError(ScarNetError, RuntimeError):
    """A required package is missing and was not (or could not be) installed."""


def is_importable(name: str) -> bool:
    """True when ``import name`` would find a module (without importing it: torch is slow to import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def missing_requirements(requirements: dict[str, str] | None = None,
                         importable: Callable[[str], bool] = is_importable) -> list[str]:
    """pip requirement strings of the packages that cannot be imported, in a stable order."""
    requirements = REQUIREMENTS if requirements is None else requirements
    return [requirement for name, requirement in requirements.items() if not importable(name)]


def torch_missing(importable: Callable[[str], bool] = is_importable) -> bool:
    return not importable(TORCH_IMPORT_NAME)


def confirmation_text(missing: Iterable[str], need_torch: bool) -> str:
    """The one dialog text listing everything that will be downloaded and installed."""
    lines = ["ScarNet needs Python packages that are not installed yet. They will be downloaded and "
             "installed into Slicer's Python now (this may take several minutes):", ""]
    if need_torch:
        lines.append("  • PyTorch (via the PyTorch extension, CUDA build if a compatible GPU is found)")
    lines += [f"  • {requirement}" for requirement in missing]
    lines += ["", "Continue?"]
    return "\n".join(lines)


def ensure_dependencies(
    confirm: Callable[[str], bool],
    install_torch: Callable[[], object] | None,
    pip_install: Callable[[list[str]], None],
    importable: Callable[[str], bool] = is_importable,
    requirements: dict[str, str] | None = None,
) -> list[str]:
    """Make sure torch and :data:`REQUIREMENTS` can be imported; return what was installed.

    ``confirm(text)`` asks the user once (True = go ahead); ``install_torch()`` installs PyTorch
    through the PyTorch extension (None when that extension is missing; it returns None when
    the user or the installer gave up); ``pip_install(requirements)`` installs the rest.
    Raises :class:`DependencyError` with one clear line when anything stays missing.
    """
    missing = missing_requirements(requirements, importable)
    need_torch = torch_missing(importable)
    if not missing and not need_torch:
        return []
    if need_torch and install_torch is None:
        raise DependencyError(PYTORCH_EXTENSION_MISSING)
    if not confirm(confirmation_text(missing, need_torch)):
        raise DependencyError(INSTALL_DECLINED)
    installed = []
    if need_torch:
        assert install_torch is not None
        if install_torch() is None or torch_missing(importable):
            raise DependencyError("PyTorch could not be installed; install it from the PyTorch Utils module "
                                  "(PyTorch extension), restart Slicer and try again.")
        installed.append("torch")
    if missing:
        pip_install(missing)
        importlib.invalidate_caches()
        still = missing_requirements(requirements, importable)
        if still:
            raise DependencyError(f"could not install {', '.join(still)}; install them from the Python console with "
                                  f"slicer.util.pip_install('{' '.join(still)}') and restart Slicer.")
        installed += missing
    return installed


__all__ = [
    "DependencyError",
    "INSTALL_DECLINED",
    "PYTORCH_EXTENSION",
    "PYTORCH_EXTENSION_MISSING",
    "REQUIREMENTS",
    "confirmation_text",
    "ensure_dependencies",
    "is_importable",
    "missing_requirements",
    "torch_missing",
]

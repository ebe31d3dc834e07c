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

import importlib.metadata
import importlib.util
import re
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
#: The oldest PyTorch the model runs on (its attention needs torch.nn.functional.scaled_dot_product_attention, and
#: the package asks for torch>=2.1).
MIN_TORCH_VERSION = "2.1"
#: Name of the Slicer extension that provides PyTorch (and the ``PyTorchUtils`` module).
PYTORCH_EXTENSION = "PyTorch"

PYTORCH_EXTENSION_MISSING = (
    "ScarNet needs PyTorch, which Slicer gets from the 'PyTorch' extension: install it from the "
    "Extensions Manager (View > Extensions Manager, search 'PyTorch'; without internet: its package for this "
    "Slicer version, with the Extensions Manager's Install from file), restart Slicer and try again."
)
INSTALL_DECLINED = "Required Python packages were not installed, so ScarNet cannot run (nothing was changed)."
#: What to do where pip cannot reach the package index (a hospital network without internet, or behind a proxy).
OFFLINE_HELP = (
    "Without internet access (or behind a proxy pip does not know): on a machine with internet and the same "
    "operating system, run 'pip download {requirements}' with the Python version of Slicer's Python, copy the files, "
    "then in Slicer's Python console run slicer.util.pip_install('--no-index --find-links FOLDER {requirements}') "
    "and restart Slicer (a proxy: set HTTPS_PROXY before starting Slicer)."
)


class DependencyError(ScarNetError, RuntimeError):
    """A required package is missing and was not (or could not be) installed."""


def is_importable(name: str) -> bool:
    """True when ``import name`` would find a module (without importing it: torch is slow to import)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def installed_version(name: str) -> str | None:
    """The installed distribution's version (None when it is not installed as a distribution)."""
    try:
        return importlib.metadata.version(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None


def _release(version: str) -> tuple[int, ...]:
    """The leading release numbers of a version ("2.1.0+cu121" → (2, 1, 0)), for a ``>=`` comparison."""
    numbers = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(part) for part in numbers.group(0).split(".")) if numbers else ()


def is_older(version: str | None, minimum: str) -> bool:
    """True when ``version`` is known and older than ``minimum`` (release numbers only)."""
    if not version:
        return False
    have, need = _release(version), _release(minimum)
    width = max(len(have), len(need))
    return have + (0,) * (width - len(have)) < need + (0,) * (width - len(need))


def missing_requirements(requirements: dict[str, str] | None = None,
                         importable: Callable[[str], bool] = is_importable,
                         version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """pip requirement strings of the packages that cannot be imported, or are older than their ``>=`` (an old
    package that imports fails later, inside the engine, with a message that says nothing of versions)."""
    requirements = REQUIREMENTS if requirements is None else requirements
    out = []
    for name, requirement in requirements.items():
        minimum = requirement.partition(">=")[2]
        if not importable(name) or (minimum and is_older(version_of(name), minimum)):
            out.append(requirement)
    return out


def torch_missing(importable: Callable[[str], bool] = is_importable) -> bool:
    return not importable(TORCH_IMPORT_NAME)


def torch_too_old(version_of: Callable[[str], str | None] = installed_version) -> str | None:
    """The installed PyTorch's version when it is older than :data:`MIN_TORCH_VERSION`, else None."""
    version = version_of(TORCH_IMPORT_NAME)
    return version if is_older(version, MIN_TORCH_VERSION) else None


def confirmation_text(missing: Iterable[str], need_torch: bool) -> str:
    """The one dialog text listing everything that will be downloaded and installed."""
    lines = ["ScarNet needs Python packages that are not installed (or too old). They will be downloaded and "
             "installed into Slicer's Python now (this may take several minutes):", ""]
    if need_torch:
        lines.append(f"  • PyTorch {MIN_TORCH_VERSION} or newer and torchvision, through the PyTorch extension "
                     "(with its helper light-the-torch; from download.pytorch.org: about 1 GB, several GB for "
                     "the CUDA build it picks when a compatible GPU is found)")
    lines += [f"  • {requirement}" + (" (and pynrrd, which it uses)" if requirement.startswith("slicerio") else "")
              for requirement in missing]
    if missing:
        lines.append("  (from pypi.org)")
    lines += ["", "Continue?"]
    return "\n".join(lines)


def ensure_dependencies(
    confirm: Callable[[str], bool],
    install_torch: Callable[[], object] | None,
    pip_install: Callable[[list[str]], None],
    importable: Callable[[str], bool] = is_importable,
    requirements: dict[str, str] | None = None,
    version_of: Callable[[str], str | None] = installed_version,
    include_torch: bool = True,
) -> list[str]:
    """Make sure torch and :data:`REQUIREMENTS` can be imported; return what was installed.

    ``confirm(text)`` asks the user once (True = go ahead); ``install_torch()`` installs PyTorch
    through the PyTorch extension (None when that extension is missing; it returns None when
    the user or the installer gave up); ``pip_install(requirements)`` installs the rest.
    ``include_torch``: False where no model runs (Update report). ``version_of(name)``: an installed package's
    version (too old counts as missing; PyTorch too old is refused with how to update it). Raises
    :class:`DependencyError` with one clear line when anything stays missing, or pip cannot reach its index (with
    what to do offline).
    """
    missing = missing_requirements(requirements, importable, version_of)
    need_torch = include_torch and torch_missing(importable)
    if include_torch and not need_torch and (old := torch_too_old(version_of)):
        # Not replaced here: Slicer's other extensions may rely on the PyTorch they have.
        raise DependencyError(f"ScarNet needs PyTorch {MIN_TORCH_VERSION} or newer, and Slicer has {old}: update it "
                              "in the PyTorch Utils module (PyTorch extension: uninstall, then install), restart "
                              "Slicer and try again.")
    if not missing and not need_torch:
        return []
    if need_torch and install_torch is None:
        raise DependencyError(PYTORCH_EXTENSION_MISSING)
    if not confirm(confirmation_text(missing, need_torch)):
        raise DependencyError(INSTALL_DECLINED)
    installed = []
    if need_torch:
        assert install_torch is not None
        try:
            result = install_torch()
        except Exception as error:  # noqa: BLE001 - pip and the extension raise anything (no network, a proxy)
            raise DependencyError(f"PyTorch could not be installed ({_one_line(error)}). "
                                  + OFFLINE_HELP.format(requirements="torch torchvision")) from None
        if result is None or torch_missing(importable):
            raise DependencyError("PyTorch could not be installed; install it from the PyTorch Utils module "
                                  "(PyTorch extension), restart Slicer and try again.")
        installed.append("torch")
    if missing:
        try:
            pip_install(missing)
        except Exception as error:  # noqa: BLE001 - pip raises CalledProcessError, OSError, ... (offline)
            raise DependencyError(f"could not install {', '.join(missing)} ({_one_line(error)}). "
                                  + OFFLINE_HELP.format(requirements=" ".join(missing))) from None
        importlib.invalidate_caches()
        still = missing_requirements(requirements, importable, version_of)
        if still:
            raise DependencyError(f"could not install {', '.join(still)}; install them from the Python console with "
                                  f"slicer.util.pip_install('{' '.join(still)}') and restart Slicer. "
                                  + OFFLINE_HELP.format(requirements=" ".join(still)))
        installed += missing
    return installed


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


__all__ = [
    "DependencyError",
    "INSTALL_DECLINED",
    "MIN_TORCH_VERSION",
    "OFFLINE_HELP",
    "PYTORCH_EXTENSION",
    "PYTORCH_EXTENSION_MISSING",
    "REQUIREMENTS",
    "confirmation_text",
    "ensure_dependencies",
    "installed_version",
    "is_importable",
    "is_older",
    "missing_requirements",
    "torch_missing",
    "torch_too_old",
]

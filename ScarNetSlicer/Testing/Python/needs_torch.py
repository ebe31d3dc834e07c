"""Imported (``import needs_torch``, before ``import torch``) by the test files that need PyTorch from the start:
without it they are skipped, with this reason, instead of failing to collect, which stops the whole run. scarnet
depends on torch, but a checkout may lack it (PyPI's Linux wheels are a multi-GB CUDA download), and the tests of
reading, quantifying and writing run without it."""

import pytest

pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch): the model's tests need it")

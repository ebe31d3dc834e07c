"""``python -m scarnet``: the same as the ``scarnet`` command."""

from .console import run

run()

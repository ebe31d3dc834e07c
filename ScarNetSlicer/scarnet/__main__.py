"""``python -m scarnet``: the same as the ``scarnet`` command."""

from .cli import run

run()

"""``python -m scarnet``: the same as the ``scarnet`` command."""

import sys

from .cli import main

sys.exit(main())

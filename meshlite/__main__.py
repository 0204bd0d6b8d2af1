"""``python -m meshlite``: the same as the ``meshlite`` command."""

import sys

from .cli import main

sys.exit(main())

"""``python -m meshlite``: the same as the ``meshlite`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())

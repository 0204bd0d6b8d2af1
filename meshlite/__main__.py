"""``python -m meshlite``: the same as the ``meshlite`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # importing the module (tools that walk the package) runs nothing
    sys.exit(main())

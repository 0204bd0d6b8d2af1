"""The separate process that parses a large config file for a reload
(``_incremental.parse_apart``): reads ``(path, text, environ, profile)`` pickled on
stdin, writes ``("ok", Parsed)`` or ``("error", message, errors)`` pickled on
stdout. Run as ``python -m meshlite.config._child``."""

from __future__ import annotations

import pickle
import sys

from .._errors import ConfigError
from ._parsed import parse


def main() -> int:
    """Parse one request from stdin; the reply goes to stdout."""
    path, text, environ, profile = pickle.load(sys.stdin.buffer)
    reply: tuple[object, ...]
    try:
        reply = ("ok", parse(path, text, environ, profile))
    except ConfigError as error:
        reply = ("error", str(error), list(error.errors))
    sys.stdout.buffer.write(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m worldflux``: the ``worldflux`` command line."""

from __future__ import annotations

import sys

from worldflux.cli import main

if __name__ == "__main__":
    sys.exit(main())

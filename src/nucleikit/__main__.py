"""``python -m nucleikit ...`` is the ``nucleikit`` command."""

import sys

from nucleikit.cli.main import main

if __name__ == "__main__":
    sys.exit(main())

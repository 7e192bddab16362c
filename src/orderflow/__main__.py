"""``python -m orderflow``: the same as the ``orderflow`` command."""

import sys

from orderflow.cli import main

sys.exit(main())

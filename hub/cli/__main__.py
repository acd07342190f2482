"""``python -m hub.cli ...``: the same as the ``loom`` console script."""

import sys

from hub.cli import main

sys.exit(main())

"""``python -m supervision``: see :mod:`supervision.cli`."""

import sys

from supervision.cli import main

sys.exit(main())

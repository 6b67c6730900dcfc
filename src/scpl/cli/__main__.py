"""``python -m scpl.cli``: the `scpl` command (torchrun relaunches use this form)."""

import sys

from scpl.cli import main

sys.exit(main())

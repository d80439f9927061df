"""``python -m hotline.cli``: the same as ``hotline``."""

import sys

from hotline.cli import main

sys.exit(main())

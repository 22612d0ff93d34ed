"""``python -m hftlab.bench``: the same as ``hftlab bench``."""

import sys

from hftlab.bench import main

sys.exit(main())

"""Deprecated: the trading rules are `hftlab.rules` (a course full of POSIX signals needs
another name for BUY/SELL signals). This alias keeps the lessons that still say
``from hftlab import signals`` working until they are re-executed; remove it then."""

from hftlab.rules import *  # noqa: F401,F403
from hftlab.rules import __all__  # noqa: F401

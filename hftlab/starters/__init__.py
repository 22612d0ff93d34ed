"""Starters: a small runnable program for each role, to copy and finish (docs/roles.md).

Each passes some of its role's ``hftlab conform`` cases and fails the rest on purpose; its
TODOs name the failing case numbers. Copy one out of this folder, run it and grade it, for
example ``hftlab conform strategy -- python my_strategy.py``. Each reads its settings from
the environment the lab gives a learner's command (``HFTLAB_*``, see docs/roles.md).
"""

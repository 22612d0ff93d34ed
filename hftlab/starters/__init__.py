"""Starters: a small runnable program for each role, to copy and finish (docs/roles.md).

Each passes some of its role's ``hftlab conform`` cases and fails the rest on purpose; its
TODOs name the failing case numbers. Copy one out of this folder and run, for example,
``hftlab conform strategy -- python my_strategy.py``.
"""

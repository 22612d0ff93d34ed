"""``python -m hftlab.match``: the same as ``hftlab match`` (`hftlab.match.command`)."""

from hftlab.match.command import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())

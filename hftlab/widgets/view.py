"""What every view shares: what it is given, a plain-text form, a live loop, tables.

A view is given what it needs to find the system, as any other process would be:

- a `hftlab.config.Config` (the ports, the book's name, the cadence), or
- a book's name (a view of the book needs nothing else), or
- anything that holds a Config as ``.config`` (a running `hftlab.launcher.Launcher`:
  lessons pass theirs; its config has the ports it really bound).

Every view has a plain-text form, ``.text()``, for static viewers and for tests. Displayed
in a notebook, a view's ``text/plain`` is a short stable description (`View.describe`):
live numbers in a saved notebook would be stale the moment it is saved, and nbval
compares that text.
"""

from __future__ import annotations

import html

import ipywidgets as W

from hftlab.config import Config
from hftlab.widgets.live import Live

__all__ = ["View", "config_of", "book_name", "html_table", "text_table", "styled", "MISSING"]

MISSING = "-"  # a cell with nothing to show (no price yet, no book)


def config_of(source) -> Config | None:
    """The Config a view was given (directly, or as a launcher's ``.config``); None if it
    was given a book's name only."""
    if isinstance(source, str):
        return None
    config = source if isinstance(source, Config) else getattr(source, "config", None)
    if not isinstance(config, Config):
        raise TypeError(f"a view takes a Config, a book's name or a Launcher, not {source!r}")
    return config


def book_name(source) -> str:
    """The book's shared-memory name, from a Config, a launcher or the name itself."""
    config = config_of(source)
    return source if config is None else config.shm_name


def styled(widget, *classes):
    """The widget with these CSS classes (the browser test finds parts of a view by them)."""
    for c in classes:
        widget.add_class(c)
    return widget


def html_table(header, rows) -> str:
    """An HTML table: the first column (a name) left-aligned, the others (numbers) right.
    Cells are HTML already: escape text before passing it."""
    align = lambda i: "left" if i == 0 else "right"
    th = "".join(f"<th style='padding:1px 8px;text-align:{align(i)}'>{html.escape(h)}</th>"
                 for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:1px 8px;text-align:{align(i)};font-family:monospace;"
                         "white-space:nowrap'>"
                         f"{cell}</td>" for i, cell in enumerate(row)) + "</tr>" for row in rows)
    return f"<table style='border-collapse:collapse'><tr>{th}</tr>{body}</table>"


def text_table(header, rows) -> str:
    """Rows of strings as aligned plain text (the same table the widget shows)."""
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(line, widths)) for line in [header, *rows]]
    return "\n".join(line.rstrip() for line in lines)


class View:
    """The base of every view: a widget, a plain-text form, a live loop, close().

    A subclass sets ``widget`` and ``live`` (a `hftlab.widgets.live.Live`) and defines
    `text`, `describe` and `close`.
    """

    widget: W.Widget
    live: Live

    def text(self) -> str:
        raise NotImplementedError

    def describe(self) -> str:
        """A short stable description (the text a saved notebook shows)."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def start(self, duration: float | None = None, frames: int | None = None):
        """Start the live loop (see `hftlab.widgets.live.Live.start`)."""
        self.live.start(duration, frames)
        return self

    def stop(self) -> None:
        self.live.stop()

    def _repr_mimebundle_(self, **kwargs):
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["text/plain"] = self.describe()
        return bundle

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(self.text())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""What learners import has public names: `__all__` everywhere, nothing private borrowed."""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hftlab"

# The modules lessons and learners import. (Add a module here when a lesson starts using it.)
LEARNER_MODULES = [
    "hftlab.book", "hftlab.book.layout", "hftlab.book.seqlock", "hftlab.book.untracked",
    "hftlab.book.stale", "hftlab.book.follow", "hftlab.book.doorbell", "hftlab.protocol", "hftlab.protocol.fields",
    "hftlab.protocol.messages", "hftlab.protocol.columns", "hftlab.config", "hftlab.net", "hftlab.children",
    "hftlab.batched_log", "hftlab.bench.timed", "hftlab.bench.burst", "hftlab.conform.peers", "hftlab.conform.run",
    "hftlab.rules", "hftlab.launcher", "hftlab.process", "hftlab.checks", "hftlab.strategy",
    "hftlab.order_manager", "hftlab.journal", "hftlab.gateway", "hftlab.orderbook", "hftlab.record",
    "hftlab.replay", "hftlab.cli", "hftlab.alternatives", "hftlab.accounts", "hftlab.events", "hftlab.order_rules",
    "hftlab.match", "hftlab.match.score", "hftlab.match.entries", "hftlab.match.run",
]

# What `hftlab.book` exported when it was one module: lessons and learners use these.
BOOK_BEFORE_THE_SPLIT = [
    "HEADER_DTYPE", "RECORD_DTYPE", "FEED_NEVER", "FEED_UP", "FEED_DOWN",
    "MAGIC", "LAYOUT_VERSION", "MAX_SYMBOLS", "MAX_RETRIES",
    "BookError", "BookNotFound", "BookEmpty", "BookInUse", "LayoutMismatch", "BookBusy",
    "Quote", "new_name", "check_name", "layout_nbytes", "SharedPriceBook", "remove_stale",
    "Follower",
]


@pytest.mark.parametrize("name", LEARNER_MODULES)
def test_every_learner_module_declares_its_public_names(name):
    module = importlib.import_module(name)
    assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"
    assert not [n for n in module.__all__ if n.startswith("_")]
    assert len(set(module.__all__)) == len(module.__all__)


def test_the_book_still_exports_what_it_did_and_teaches_with_public_names():
    book = importlib.import_module("hftlab.book")
    assert set(BOOK_BEFORE_THE_SPLIT) <= set(book.__all__)
    for taught in ("open_untracked", "tracker_disabled", "unlink_untracked", "create_untracked"):
        assert taught in book.__all__ and getattr(book, taught).__doc__


def test_only_one_function_calls_cpythons_private_posixshmem():
    users = sorted(str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py")
                   if "_posixshmem" in p.read_text())
    assert users == ["hftlab/book/untracked.py"]


def test_no_package_module_borrows_a_private_name_of_the_book():
    private_use = re.compile(r"\b(?:book|_book|bookmod)\._[a-z]\w*\(")
    found = [f"{p.relative_to(ROOT)}: {m.group(0)}" for p in PACKAGE.rglob("*.py")
             for m in private_use.finditer(p.read_text())]
    assert not found


def test_every_subpackage_is_listed_for_installation():
    listed = re.search(r"^packages = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.M)
    listed = set(re.findall(r'"([^"]+)"', listed.group(1)))
    packages = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"pyproject.toml does not list {packages - listed}"

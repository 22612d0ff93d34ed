"""A course server: many users, one /tmp, one /dev/shm. Another user can neither turn your
doorbell against your files nor have your `hftlab clean` or orderbook touch their book, and
you get one sentence, not a traceback, when their things are in your way.

The cases with a second user run as `hftlab-peer` (tests/peer.py), made by root; without root
they skip, saying so."""

import contextlib
import os
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

from conftest import wait_for
from hftlab import book
from hftlab.book.doorbell import Doorbell, bells_root
from hftlab.config import FAST, Config
from hftlab.launcher import Launcher
from peer import shared_tmp


@pytest.fixture
def tmpdir_shared(monkeypatch):
    """TMPDIR (for this process and the processes it starts) is a fresh /tmp-like folder."""
    path = shared_tmp()
    monkeypatch.setenv("TMPDIR", path)
    monkeypatch.setattr(tempfile, "tempdir", path)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def precious():
    """A folder of yours with files in it, which no hftlab process may ever remove."""
    path = tempfile.mkdtemp(prefix="hftlab-precious-")
    for name in ("notes.txt", "thesis.tex", "12345-abcdef"):  # one named like a bell, too
        with open(os.path.join(path, name), "w") as f:
            f.write("mine\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def files(path):
    return sorted(os.listdir(path))


def test_a_bells_folder_made_by_another_user_is_refused_and_none_of_your_files_go(
        peer, tmpdir_shared, precious):
    # The attack: the peer makes your bells folder first, with a book's folder in it that is a
    # symbolic link to a folder of yours. Your reader then bound its bell there, and your
    # writer's ring removed every file there that refused a datagram: all of them.
    with book.SharedPriceBook(["AAPL"]) as prices:
        root = bells_root()
        assert peer.run(["mkdir", "-m", "0777", root]).returncode == 0
        assert peer.run(["ln", "-s", precious, os.path.join(root, prices.name)]).returncode == 0
        with pytest.raises(book.UnsafeFolder, match="belongs to user hftlab-peer"):
            Doorbell(prices.name)
        prices.set_sleeping()              # as a reader about to sleep would
        prices.update("AAPL", 10.0)        # a write rings: not into a folder that is not ours
        assert prices.rings == 0
    assert files(precious) == ["12345-abcdef", "notes.txt", "thesis.tex"]


def test_a_bells_folder_that_is_yours_but_a_link_or_open_to_writes_is_refused(tmpdir_shared, precious):
    name = book.new_name()
    os.mkdir(bells_root(), 0o700)
    os.symlink(precious, os.path.join(bells_root(), name))
    with pytest.raises(book.UnsafeFolder, match="is a symbolic link"):
        Doorbell(name)
    with book.SharedPriceBook(["AAPL"], name) as prices:
        prices.set_sleeping()
        prices.update("AAPL", 1.0)
        assert prices.rings == 0
    assert files(precious) == ["12345-abcdef", "notes.txt", "thesis.tex"]
    os.unlink(os.path.join(bells_root(), name))
    os.chmod(bells_root(), 0o777)
    with pytest.raises(book.UnsafeFolder, match="can be written by other users"):
        Doorbell(name)
    os.chmod(bells_root(), 0o755)          # ours, only readable by others (as older hftlab made it)
    with Doorbell(name):
        assert stat.S_IMODE(os.lstat(bells_root()).st_mode) == 0o700


def test_a_writer_removes_only_dead_bells_it_can_tell(tmpdir_shared):
    with book.SharedPriceBook(["AAPL"]) as prices, Doorbell(prices.name) as bell:
        folder = os.path.dirname(bell.path)
        plain = os.path.join(folder, "99999999-abcdef")          # named like a bell, a plain file
        with open(plain, "w") as f:
            f.write("not a socket\n")
        other = os.path.join(folder, "readme")                   # not named like a bell
        with open(other, "w") as f:
            f.write("x\n")
        bell.arm(prices)
        prices.update("AAPL", 2.0)
        assert prices.rings == 1 and bell.drain() == 1
        assert os.path.exists(plain) and os.path.exists(other)
        os.unlink(plain)
        os.unlink(other)


def test_a_lab_whose_bells_folder_another_user_took_trades_by_polling_and_says_why(peer, tmpdir_shared):
    assert peer.run(["mkdir", "-m", "0777", bells_root()]).returncode == 0
    with Launcher(Config(**FAST), free_ports=True) as lab:
        wait_for(lambda: "belongs to user hftlab-peer" in lab.log("strategy", 50), 10, "the strategy's sentence")
        wait_for(lambda: "ACK" in lab.log("strategy", 200), 30, "an ACK: the strategy trades by polling")
        assert os.listdir(bells_root()) == []                 # nothing of ours in their folder
        assert "Traceback" not in lab.log("strategy", 200)


def test_clean_and_an_orderbook_leave_another_users_book_alone_in_one_sentence(peer):
    # Yours (root's here), as the peer sees it: not theirs to remove or take over.
    with book.SharedPriceBook(["AAPL"]) as prices:
        cleaned = peer.python(["-m", "hftlab", "clean", "--shm-name", prices.name])
        assert cleaned.returncode == 0, cleaned.stderr
        assert f"left {prices.name!r} alone: it belongs to user root (uid 0), not to you" in cleaned.stdout
        assert "Traceback" not in cleaned.stdout + cleaned.stderr
        taken = peer.python(["-m", "hftlab", "orderbook", "--shm-name", prices.name, "--price-port", "1"])
        assert taken.returncode == 2
        out = taken.stdout + taken.stderr
        assert f"book {prices.name!r} belongs to user root (uid 0), not to you" in out and "Traceback" not in out
        read = peer.python(["-m", "hftlab", "status", "--shm-name", prices.name, "--price-port", "1",
                            "--news-port", "2", "--order-port", "3"])
        assert read.returncode == 0 and "belongs to user root" in read.stdout, read.stdout + read.stderr
        assert prices.writer_alive() and book.SharedPriceBook.attach(prices.name).close() is None


def test_your_clean_and_orderbook_never_remove_another_users_stale_book(peer):
    # The peer's book, its writer gone: stale, but theirs. Root could remove it; it must not.
    name = book.new_name()
    made = peer.python(["-c", "import sys; from hftlab.book import SharedPriceBook; "
                              "SharedPriceBook(['AAPL'], sys.argv[1]).close()", name])
    assert made.returncode == 0, made.stderr
    try:
        assert os.stat(f"/dev/shm/{name}").st_uid == peer.uid
        cleaned = subprocess.run([sys.executable, "-m", "hftlab", "clean", "--shm-name", name],
                                 capture_output=True, text=True, timeout=60)
        assert f"left {name!r} alone: it belongs to user hftlab-peer" in cleaned.stdout, cleaned.stdout
        with pytest.raises(book.NotYours, match="belongs to user hftlab-peer"):
            book.SharedPriceBook(["AAPL"], name)
        assert os.path.exists(f"/dev/shm/{name}")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/{name}")


def test_clean_removes_the_bells_folder_of_a_book_removed_by_hand(tmpdir_shared):
    prices = book.SharedPriceBook(["AAPL"])
    bell = Doorbell(prices.name)
    bell.sock.close()                                      # a reader gone without closing its bell
    book.shm_unlink(prices.name)                            # removed by hand
    prices.close()
    assert os.path.isdir(os.path.join(bells_root(), prices.name))
    out = subprocess.run([sys.executable, "-m", "hftlab", "clean"], capture_output=True, text=True, timeout=60)
    assert f"removed the doorbell folder of book {prices.name!r}" in out.stdout, out.stdout
    assert not os.path.exists(os.path.join(bells_root(), prices.name))

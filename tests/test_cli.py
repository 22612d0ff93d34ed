"""The hftlab command: help everywhere, each process alone, status of a running lab."""

import re
import subprocess
import sys

import pytest

from conftest import wait_for
from hftlab.book import SharedPriceBook


def hftlab(*args, timeout=30):
    return subprocess.run([sys.executable, "-m", "hftlab", *args], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("command", ["run", "status", "clean", "gateway", "orderbook", "strategy",
                                     "order-manager", "bench", "record"])
def test_help_everywhere(command):
    out = hftlab(command, "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: hftlab ")


def test_every_process_takes_the_shared_flags():
    for module in ("gateway", "orderbook", "strategy", "order_manager"):
        out = subprocess.run([sys.executable, "-m", f"hftlab.{module}", "--help"], capture_output=True,
                             text=True, timeout=30)
        assert out.returncode == 0
        for flag in ("--host", "--price-port", "--news-port", "--order-port", "--symbols", "--seed",
                     "--tick-interval", "--news-interval", "--shm-name", "--short-window",
                     "--long-window", "--bullish", "--bearish", "--order-qty"):
            assert flag in out.stdout, (module, flag)


def test_a_bad_flag_value_is_one_sentence():
    out = hftlab("gateway", "--short-window", "30")
    assert out.returncode == 2
    assert "short_window must be at least 1 and less than long_window" in out.stderr
    assert "Traceback" not in out.stderr
    for command in ("orderbook", "strategy", "status", "clean"):
        out = hftlab(command, "--shm-name", "bad/name")
        assert out.returncode == 2 and "bad book name 'bad/name'" in out.stderr, command
        assert "Traceback" not in out.stderr


def test_status_shows_the_running_lab_and_its_book(lab):
    c = lab.config
    with SharedPriceBook.attach(c.shm_name) as book:
        wait_for(lambda: all(book.quotes().values()), 10, "a price for every symbol")
    out = hftlab("status", "--price-port", str(c.price_port), "--news-port", str(c.news_port),
                 "--order-port", str(c.order_port), "--shm-name", c.shm_name)
    assert out.returncode == 0
    assert out.stdout.count("listening") == 3
    assert re.search(rf"book +'{c.shm_name}': writer pid \d+ alive, feed UP", out.stdout)
    assert all(re.search(rf"^  {s} +\d+\.\d\d  seq \d+", out.stdout, re.M) for s in c.symbols)


def test_status_of_nothing_says_so():
    out = hftlab("status", "--price-port", "1", "--news-port", "2", "--order-port", "3",
                 "--shm-name", "hftlab_nothere")
    assert out.returncode == 0
    assert out.stdout.count("not running") == 3
    assert "no book named 'hftlab_nothere'" in out.stdout

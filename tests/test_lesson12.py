"""Lesson 12, the match: the prediction's check and the live leaderboard.

`checks.check_match` judges a prediction (whose slippage and whose P&L come out higher)
against a match's summary, never against a stored answer: these tests hand it made-up
summaries. The leaderboard is tried on a scripted match (it must end on its own, and show
the final table) and on a real, short one.
"""

import time

import pytest

from hftlab import checks, widgets
from hftlab.checks import lesson12
from hftlab.config import FAST, Config
from hftlab.match import MATCH_DEFAULTS, Match, Row


def numbers(pnl, slippage, fills=10):
    return {"pnl": pnl, "realized": pnl, "unrealized": 0.0, "fees": 1.0, "orders": fills, "fills": fills,
            "rejects": {}, "max_drawdown": 0.0, "max_abs_position": 10, "mean_slippage": slippage,
            "tick_to_trade_p50_us": 900.0, "tick_to_trade_p99_us": 5000.0, "status": "finished"}


LATE_LOSES = {"ours": numbers(12.5, 0.0), "slow": numbers(-40.0, 0.11)}
LATE_WINS = {"ours": numbers(-30.0, 0.0), "slow": numbers(20.0, -0.08)}
LEVEL = {"ours": numbers(5.0, 0.0), "slow": numbers(5.4, 0.002)}


@pytest.fixture(autouse=True)
def headless(monkeypatch):
    monkeypatch.setenv("HFTLAB_HEADLESS", "1")


@pytest.mark.parametrize("summary, right", [
    (LATE_LOSES, {"slippage": "slow", "pnl": "ours"}),
    (LATE_WINS, {"slippage": "ours", "pnl": "slow"}),
    (LEVEL, {"slippage": "same", "pnl": "same"}),
])
def test_a_right_prediction_passes(summary, right, capsys):
    assert checks.check_match(right, summary)
    assert capsys.readouterr().out.startswith("All 2 cases pass")
    assert checks.check_match(lambda: right, summary)     # a function that returns it, too


@pytest.mark.parametrize("wrong, words", [
    ({"slippage": "ours", "pnl": "ours"}, ["'slow' came out higher", "Hint:", "waits"]),
    ({"slippage": "same", "pnl": "ours"}, ["slippage", "Hint:"]),
    ({"slippage": "slow", "pnl": "slow"}, ["'ours' came out higher", "Hint:", "every share"]),
    ({"slippage": "slow", "pnl": "same"}, ["pnl", "Hint:"]),
])
def test_a_wrong_prediction_fails_with_a_hint(wrong, words, capsys):
    assert not checks.check_match(wrong, LATE_LOSES)
    out = capsys.readouterr().out
    assert out.startswith("prediction is not right yet: ")
    for word in words:
        assert word in out, out


def test_the_answer_is_the_measurement_not_a_stored_truth(capsys):
    """The same prediction passes on one match and fails on another: nothing is exported."""
    guess = {"slippage": "slow", "pnl": "ours"}
    assert checks.check_match(guess, LATE_LOSES)
    assert not checks.check_match(guess, LATE_WINS)
    assert "this time" in capsys.readouterr().out
    assert not [n for n in lesson12.__all__ if "TRUTH" in n or "ANSWER" in n]


@pytest.mark.parametrize("prediction", [None, {"slippage": None, "pnl": None}, {"slippage": "slow", "pnl": None}])
def test_an_empty_prediction_is_not_done_yet(prediction, capsys):
    assert not checks.check_match(prediction, LATE_LOSES)
    assert capsys.readouterr().out.startswith("not done yet: ")


@pytest.mark.parametrize("hostile, words", [
    ("slow", ["write a dict"]),
    (42, ["write a dict"]),
    (["slow", "ours"], ["write a dict"]),
    ({"slippage": "SLOW", "pnl": "ours"}, ["choose 'ours' or 'slow' or 'same'"]),
    ({"slippage": 1, "pnl": "ours"}, ["choose"]),
    ({"pnl": "ours"}, ["not done yet"]),
    (lambda: 1 / 0, ["ZeroDivisionError"]),
    (lambda: "slow", ["write a dict"]),
])
def test_a_hostile_prediction_gets_a_verdict_not_a_traceback(hostile, words, capsys):
    assert not checks.check_match(hostile, LATE_LOSES)
    out = capsys.readouterr().out
    for word in words:
        assert word in out, out


@pytest.mark.parametrize("summary", [None, {}, "summary", {"ours": numbers(1.0, 0.0)},
                                     {"ours": numbers(1.0, None), "slow": numbers(2.0, None)}])
def test_a_missing_or_odd_summary_gets_a_verdict(summary, capsys):
    assert not checks.check_match({"slippage": "slow", "pnl": "ours"}, summary)
    assert "run the match cell" in capsys.readouterr().out


def test_a_prediction_that_never_returns_gets_a_hint_within_its_bound(capsys):
    def forever():
        while True:
            pass

    began = time.monotonic()
    assert not checks.check_match(forever, LATE_LOSES)
    assert time.monotonic() - began < 5.0
    out = capsys.readouterr().out
    assert "did not return within 3 s" in out and "Hint:" in out


def test_other_names_for_the_two_strategies(capsys):
    summary = {"fast": LATE_LOSES["ours"], "late": LATE_LOSES["slow"]}
    assert checks.check_match({"slippage": "slow", "pnl": "ours"}, summary, fast="fast", slow="late")


# -- the leaderboard -------------------------------------------------------------------------

class Entry:
    def __init__(self, name):
        self.name = name


class ScriptedMatch:
    """What the leaderboard uses of a Match: it is over after `looks` looks."""

    def __init__(self, looks=12):
        self.entries = [Entry("ours"), Entry("slow")]
        self.looks, self.ended, self.steps, self.waited = looks, "", 0, False

    def step(self):
        self.steps += 1
        if self.steps >= self.looks:
            self.ended = "the replay is over and every order was answered"
        return not self.ended

    def scoreboard(self):
        self.step()
        return [Row(self.steps * 0.25, "slow", 10, -1.0 * self.steps, 0.0, 0.1, -1.0 * self.steps),
                Row(self.steps * 0.25, "ours", 10, 2.0, 1.0, 0.1, 3.0)]

    def elapsed(self):
        return self.steps * 0.25

    def wait(self):
        self.waited = True
        while self.step():
            pass
        return dict(LATE_LOSES)


def test_the_leaderboard_shows_the_best_first_and_ends_with_the_match():
    match = ScriptedMatch(looks=4)
    board = widgets.Leaderboard(match, interval=0.01)
    began = time.monotonic()
    summary = board.follow()
    assert time.monotonic() - began < 5.0
    assert summary == LATE_LOSES and match.waited and not board.live.running
    assert board.live.frames <= 4                          # the loop ended when the match did
    lines = board.text().splitlines()
    assert lines[1].split()[:2] == ["1", "ours"] and lines[2].split()[:2] == ["2", "slow"]
    assert "Final" in board.title.value and "the replay is over" in board.title.value
    assert "ours" in board.table.value and "0.1100" in board.table.value
    assert board._repr_mimebundle_()["text/plain"].startswith("Leaderboard of the match ours, slow")


def test_headless_the_leaderboard_draws_a_few_frames_and_the_match_runs_to_its_end():
    match = ScriptedMatch(looks=10_000)
    board = widgets.Leaderboard(match, interval=0.001)
    board.follow()
    assert board.live.frames == widgets.HEADLESS_FRAMES
    assert match.waited and match.ended


def test_live_cells_rank_by_pnl():
    rows = [Row(1.0, "a", 0, 0.0, 0.0, 0.0, -5.0), Row(1.0, "b", 20, 3.0, 4.0, 0.5, 6.5)]
    cells = widgets.leaderboard.live_cells(rows)
    assert [c[:3] for c in cells] == [("1", "b", "6.50"), ("2", "a", "-5.00")]


def test_the_leaderboard_follows_a_real_match(tmp_path):
    config = Config(**FAST, **MATCH_DEFAULTS)
    with Match(config, ["ours=ours", "rand=random"], str(tmp_path), duration=3) as match:
        board = widgets.Leaderboard(match)
        summary = board.follow()
    assert set(summary) == {"ours", "rand"} and match.ended == "3 s are up"
    assert not board.live.running and board.live.error is None
    assert {line.split()[1] for line in board.text().splitlines()[1:]} == {"ours", "rand"}
    assert (tmp_path / "pnl.png").exists()

"""The order blotter: the orders the order manager answered, most recent last.

The answers are read back from the order manager's log, through the two functions that
write and read those lines side by side (`hftlab.order_manager.booked_line` and
`parse_answer`), since a REJECTed order is in no journal; the journal adds the client's
order_id to each booked one.
"""

from __future__ import annotations

from typing import NamedTuple

from hftlab import order_manager, process
from hftlab.widgets.view import MISSING

__all__ = ["Blotter", "blotter_rows", "recent_orders"]


class Blotter(NamedTuple):
    """One answered order, as text (the blotter's columns)."""
    time: str
    order_id: str
    side: str
    qty: str
    symbol: str
    price: str
    reply: str  # "ACK n" or "REJECT: reason"


def blotter_rows(log_text: str, journal: list, n: int = 8) -> list:
    """The last `n` answers in the order manager's log (`log_text`), each booked one with
    its order_id from the `journal` rows (`hftlab.order_manager.read_journal`). Pure."""
    ids = {row["order_no"]: row for row in journal}
    rows = []
    for line in log_text.splitlines():
        logged = process.parse_log_line(line)
        answer = logged and logged.name == "order_manager" and order_manager.parse_answer(logged.text)
        if not answer:
            continue
        if answer.order_no is None:
            rows.append(Blotter(logged.time, answer.order_id, MISSING, MISSING, MISSING, MISSING,
                                f"REJECT: {answer.reason}"))
        else:
            row = ids.get(str(answer.order_no), {})
            rows.append(Blotter(logged.time, row.get("order_id", "?"), answer.side, str(answer.qty),
                                answer.symbol, f"{answer.price:.2f}", f"ACK {answer.order_no}"))
    return rows[-n:]


def recent_orders(lab, n: int = 8) -> list:
    """The last `n` orders the order manager of a running `hftlab.launcher.Launcher`
    answered (none if it has not started one)."""
    if "order_manager" not in lab.children:
        return []
    return blotter_rows(lab.log("order_manager", 400),
                        order_manager.read_journal(lab.config.journal), n)

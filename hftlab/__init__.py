"""hftlab: a toy high-frequency trading system for learning interprocess communication.

Four independent OS processes share no Python objects. They talk only through TCP
sockets (the wire protocol in `hftlab.protocol`) and one shared-memory segment (the
price book in `hftlab.book`):

    gateway --PRICE--> orderbook --writes--> [shared-memory book] --reads--> strategy
    gateway --NEWS-------------------------------------------------------> strategy
    strategy --ORDER--> order manager --ACK/REJECT--> strategy

`hftlab.launcher.Launcher` starts them all; each also runs alone as
`python -m hftlab.<name>`.
"""

from hftlab.config import Config

__version__ = "0.1.0"
__all__ = ["Config", "__version__"]

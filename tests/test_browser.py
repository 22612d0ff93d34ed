"""The live dashboard in a real browser: JupyterLab in headless Chromium, driven by playwright.

nbval runs notebooks without a browser, so widget updates go nowhere and it can never show
that the live book reaches a learner's screen. This test does what a learner does: it starts
JupyterLab on loopback (throwaway config, data, runtime and workspace dirs, a temporary copy
of the notebooks), opens 07_live_dashboard.ipynb, runs all cells, and then checks the page:

- a price in the book table changes between two reads (liveness is a change, not a value);
- the chart is a drawn image (an <img> with a blob:/data: source of nonzero size);
- the news, the orders and the processes are shown; a screenshot goes to artifacts/.

The server runs WITHOUT HFTLAB_HEADLESS, as for a learner, so the dashboard's loop runs for
minutes. Stopping the server shuts its kernel down, and the kernel's launcher stops the four
processes; the test checks that no process it started remains and that the book is gone.

Needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium) and the playwright
Python package (pip install playwright). Never `playwright install`: browser downloads fail
here and are not needed. Without them the test skips locally; under CI it fails instead.
"""

import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from conftest import MARKER, cmdline, free_port, wait_until_gone
from hftlab.children import wait_for

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
NOTEBOOK = "07_live_dashboard.ipynb"
ARTIFACT = ROOT / "artifacts" / "dashboard.png"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-default-apps",
]
SERVER_TIMEOUT = 60.0
CELLS_TIMEOUT = 90.0  # from Run All to a drawn dashboard (a kernel start and four processes)
CHANGE_TIMEOUT = 15.0
VIEWPORT = {"width": 1280, "height": 1000}  # a laptop screen: JupyterLab as most learners see it


def requirements():
    """Skip (locally) or fail (under CI) when the browser or playwright is missing."""
    missing = []
    if not os.path.exists(CHROMIUM):
        missing.append(f"Chromium at {CHROMIUM} (install it with: apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright Python package (install it with: pip install playwright; "
                       "do not run `playwright install`, the test drives Debian's Chromium)")
    if missing:
        message = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message + "; under CI it must run, not skip")
        pytest.skip(message)


@contextlib.contextmanager
def jupyter_lab(tmp: Path, token: str):
    """JupyterLab on a free loopback port over a copy of the notebooks; yields its base URL."""
    root = tmp / "root"
    shutil.copytree(NOTEBOOKS, root / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "HFTLAB_HEADLESS"}  # a learner's kernel
    # No "get notified about Jupyter news?" toast over the page (news_url=None alone leaves it).
    settings = tmp / "settings"
    (settings / "@jupyterlab" / "apputils-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false"}')
    env.update({
        MARKER: token,  # in the environment of everything the server starts
        "JUPYTER_CONFIG_DIR": str(tmp / "config"), "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"), "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "IPYTHONDIR": str(tmp / "ipython"), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
    })
    port = free_port()
    log = open(tmp / "jupyter.log", "wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--ServerApp.root_dir={root / 'notebooks'}",
         "--ServerApp.open_browser=False", "--ServerApp.allow_root=True",
         "--IdentityProvider.token=", "--PasswordIdentityProvider.hashed_password=",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def up():
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited with {server.returncode}: "
                                 f"{(tmp / 'jupyter.log').read_text(errors='replace')[-2000:]}")
        try:
            with no_proxy.open(f"{url}/api/status", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_for(up, SERVER_TIMEOUT, "jupyter lab to answer /api/status")
        yield url
    finally:
        # SIGTERM: the server shuts its kernels down; each kernel's launcher stops its processes.
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


# The header and first-row cells of a table that are not wholly inside the window and
# every box around them that clips (overflow other than visible), as "text: why".
HIDDEN_CELLS = """(root) => {
    const cells = [...root.querySelectorAll('tr:first-child th, tr:nth-child(2) td')];
    const out = [];
    for (const cell of cells) {
        const r = cell.getBoundingClientRect();
        if (r.left < 0 || r.right > window.innerWidth) {
            out.push(`${cell.textContent}: outside the window`);
            continue;
        }
        for (let box = cell.parentElement; box && box !== document.body; box = box.parentElement) {
            const style = getComputedStyle(box);
            if (style.overflowX === 'visible' && style.overflowY === 'visible') continue;
            const b = box.getBoundingClientRect();
            if (r.left < b.left - 1 || r.right > b.right + 1) {
                out.push(`${cell.textContent}: clipped by ${box.className || box.tagName}`);
                break;
            }
        }
    }
    return out;
}"""


def run_all_cells(page) -> None:
    # The toolbar's indicator says idle before any kernel exists: also wait for a kernel name.
    page.wait_for_function(
        """() => {
            const ind = document.querySelector('.jp-Notebook-ExecutionIndicator');
            const name = document.querySelector('.jp-KernelName');
            const ok = ind && ind.getAttribute('data-status') === 'idle' && name
                       && name.textContent.trim() && !/No Kernel/i.test(name.textContent);
            if (!ok) { window.__idleSince = undefined; return false; }
            window.__idleSince = window.__idleSince || Date.now();
            return Date.now() - window.__idleSince > 1000;
        }""", timeout=SERVER_TIMEOUT * 1000, polling=200)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def test_live_dashboard_in_jupyterlab(tmp_path):
    requirements()
    from playwright.sync_api import sync_playwright

    token = secrets.token_hex(8)
    seen = {}
    try:
        with jupyter_lab(tmp_path, token) as url, sync_playwright() as pw:
            browser = pw.chromium.launch_persistent_context(
                str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True,
                args=CHROMIUM_FLAGS, viewport=VIEWPORT)
            try:
                page = browser.pages[0] if browser.pages else browser.new_page()
                page.goto(f"{url}/lab/tree/{NOTEBOOK}")
                run_all_cells(page)
                check_page(page, seen)
            finally:
                browser.close()
    finally:
        # Whatever happened, nothing the server started may outlive the test.
        left = wait_until_gone(token)
    assert not left, "processes left running after the server stopped: " + \
        "; ".join(f"{pid} {cmdline(pid)}" for pid in left)
    assert seen.get("book"), "the page never showed the book's name"
    assert not os.path.exists(f"/dev/shm/{seen['book']}"), f"the book {seen['book']} is still in /dev/shm"
    for name, pid in seen["pids"].items():
        assert not os.path.exists(f"/proc/{pid}"), f"{name} (pid {pid}) is still running"


def check_page(page, seen: dict) -> None:
    dashboard = page.locator(".hftlab-dashboard")
    book = dashboard.locator(".hftlab-book")
    # The last cell's output: every cell has run (the exercise restarts the orderbook).
    page.get_by_text("press stop to end it").wait_for(timeout=CELLS_TIMEOUT * 1000)

    def prices():
        """symbol -> price text, from the table's cells (six to a row)."""
        cells = book.locator("td").all_text_contents()
        rows = [cells[i:i + 6] for i in range(0, len(cells), 6)]
        found = {r[0]: r[1] for r in rows if len(r) == 6 and re.fullmatch(r"\d+\.\d\d", r[1])}
        return found if len(found) == 4 else None

    first = wait_for(prices, CELLS_TIMEOUT, "a price for every symbol in the book table")
    # Liveness is a change: read again until a price differs, with a deadline.
    second = wait_for(lambda: (lambda p: p != first and p)(prices()), CHANGE_TIMEOUT,
                        "a price on the page to change")
    assert sorted(first) == sorted(second) == ["AAPL", "AMZN", "GOOGL", "MSFT"]
    assert any(first[s] != second[s] for s in first)

    chart = dashboard.locator("img.hftlab-chart")
    wait_for(lambda: chart.evaluate("img => img.complete && img.naturalWidth > 0"),
               CHANGE_TIMEOUT, "the chart image to be drawn")
    src = chart.get_attribute("src")
    assert src.startswith(("blob:", "data:")), src
    size = chart.evaluate("img => fetch(img.src).then(r => r.blob()).then(b => b.size)")
    assert size > 1000, f"the chart image is only {size} bytes"

    news = wait_for(lambda: (lambda t: "sentiment" in t and t)(dashboard.locator(".hftlab-news").text_content()),
                      CHANGE_TIMEOUT, "news on the page")
    assert re.search(r"sentiment \d+", news)
    orders = wait_for(lambda: (lambda t: "ACK" in t and t)(dashboard.locator(".hftlab-orders").text_content()),
                        CHANGE_TIMEOUT, "an ACKed order on the page")
    assert re.search(r"(BUY|SELL)", orders)
    # Every column of the orders table is on screen, not cut off by a box around it.
    hidden = dashboard.locator(".hftlab-orders").evaluate(HIDDEN_CELLS)
    assert not hidden, f"orders table cells cut off at a {VIEWPORT['width']} px wide window: {hidden}"
    # The notebook killed and restarted the orderbook: wait for the page to show it back.
    procs = wait_for(lambda: (lambda rows: len(rows) == 4 and all(" running " in f" {r} " for r in rows)
                              and rows)(dashboard.locator(".hftlab-proc").all_text_contents()),
                     CHANGE_TIMEOUT, "all four processes shown running")
    seen["pids"] = {}
    for line in procs:
        m = re.search(r"(\w+)\s+running\s+pid (\d+)", line)
        assert m, f"a process is not running: {line!r}"
        seen["pids"][m.group(1)] = int(m.group(2))
    assert sorted(seen["pids"]) == ["gateway", "order_manager", "orderbook", "strategy"]
    title = dashboard.locator("h3").text_content()
    seen["book"] = re.search(r"hftlab_[0-9a-f]{8}", title).group(0)

    # A chart worth a look for the screenshot: a dozen samples per symbol (a few seconds).
    wait_for(lambda: int(re.search(r"sampled (\d+)", dashboard.locator(".hftlab-chart-caption")
                                     .text_content()).group(1)) >= 48,
               CHANGE_TIMEOUT, "the chart to gather some prices")
    dashboard.scroll_into_view_if_needed()
    ARTIFACT.parent.mkdir(exist_ok=True)
    dashboard.screenshot(path=str(ARTIFACT))
    assert ARTIFACT.stat().st_size > 10_000

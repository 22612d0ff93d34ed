"""docs/roles.md against the code: the book's tables and constants are hftlab/book/layout.py's,
and a C reader written from the docs alone (docs/examples/read_book.c) reads a book that
hftlab.book wrote.

If the layout changes, these fail until the docs say what the code does; if the docs' C
reader drifts from the layout, it fails on a real book."""

import math
import re
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hftlab import book
from hftlab.book import (CREATION_GRACE, FEED_DOWN, FEED_NEVER, FEED_UP, HEADER_DTYPE, LAYOUT_VERSION, MAGIC,
                         MAX_NAME_LEN, MAX_SYMBOLS, RECORD_DTYPE, SharedPriceBook)

ROOT = Path(__file__).resolve().parents[1]
ROLES = ROOT / "docs" / "roles.md"
READ_BOOK = ROOT / "docs" / "examples" / "read_book.c"
SECTION = "## The book, byte by byte"
TABLE_HEAD = ["offset", "size", "type", "field", "meaning"]
# numpy's type of a field -> the C type the docs write for it
C_TYPES = {"S8": "char[8]", "S16": "char[16]", "<u4": "uint32", "<u8": "uint64", "<i8": "int64",
           "<f8": "float64"}
COMPILE_LINE = "cc -std=c11 -O2 -o read_book docs/examples/read_book.c"


def roles() -> str:
    return ROLES.read_text(encoding="utf-8")


def book_section() -> str:
    """The text of roles.md's section on the book, up to the next top-level section."""
    text = roles()
    assert SECTION in text, f"docs/roles.md has no section {SECTION!r}"
    after = text.split(SECTION, 1)[1]
    return after.split("\n## ", 1)[0]


def cells(line: str) -> list:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def layout_tables(text: str) -> list:
    """Each markdown table headed offset | size | type | field | meaning, as a list of rows
    (offset, size, type, field, meaning), the field without its backticks."""
    tables, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and cells(line) == TABLE_HEAD:
            rows = []
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                offset, size, ctype, field, meaning = cells(row)
                rows.append((int(offset), int(size), ctype, field.strip("`"), meaning))
            tables.append(rows)
    return tables


def expected(dtype) -> list:
    """(offset, size, C type, field) for every field of a layout dtype, in order."""
    out = []
    for field in dtype.names:
        ftype, offset = dtype.fields[field][:2]
        out.append((offset, ftype.itemsize, C_TYPES[ftype.str.lstrip("|")], field))
    return out


# -- the docs say what layout.py says ----------------------------------------------------

def test_the_docs_tables_are_the_layout():
    tables = layout_tables(book_section())
    assert len(tables) == 2, f"expected the header's and the record's table, found {len(tables)}"
    header, record = tables
    assert [row[:4] for row in header] == expected(HEADER_DTYPE)
    assert [row[:4] for row in record] == expected(RECORD_DTYPE)
    for rows, dtype in ((header, HEADER_DTYPE), (record, RECORD_DTYPE)):
        last = rows[-1]
        assert last[0] + last[1] == dtype.itemsize      # no padding at the end either
        assert all(row[4] for row in rows), "every field needs a meaning"


def test_the_docs_tables_state_the_constants_the_code_checks():
    header = {row[3]: row[4] for row in layout_tables(book_section())[0]}
    assert f"`{MAGIC.decode()}`" in header["magic"]
    assert header["layout_version"] == str(LAYOUT_VERSION)
    assert header["record_size"] == str(RECORD_DTYPE.itemsize)
    assert header["header_size"].startswith(f"{HEADER_DTYPE.itemsize}:")
    assert f"1 to {MAX_SYMBOLS}" in header["n_symbols"]
    assert f"{FEED_NEVER} never connected, {FEED_UP} up, {FEED_DOWN} down" in header["feed_state"]


def test_every_size_and_version_in_the_roles_doc_is_the_layouts():
    text = roles()
    found = {
        "layout version": (re.findall(r"[Ll]ayout version (\d+)", text), LAYOUT_VERSION),
        "header size": (re.findall(r"(\d+)-byte header", text), HEADER_DTYPE.itemsize),
        "record size": (re.findall(r"(\d+)(?:-byte record| bytes per symbol)", text), RECORD_DTYPE.itemsize),
        "size formula": (re.findall(r"(\d+) \+ (\d+) x (?:`?n_symbols|i\b)", text),
                         (HEADER_DTYPE.itemsize, RECORD_DTYPE.itemsize)),
    }
    for what, (values, want) in found.items():
        assert values, f"docs/roles.md never states the {what}"
        got = {tuple(map(int, v)) if isinstance(v, tuple) else int(v) for v in values}
        assert got == {want}, f"docs/roles.md states the {what} as {sorted(got)}; the code says {want}"


def test_the_book_section_states_the_rest_of_the_contract():
    section = book_section()
    checks = [f"Layout version {LAYOUT_VERSION}", f"the 8 bytes `{MAGIC.decode()}`",
              f"at most {MAX_NAME_LEN} characters of `A-Za-z0-9_.-`", f"1 to {MAX_SYMBOLS} symbols",
              f"`layout_version` is {LAYOUT_VERSION}",
              f"`record_size` is {RECORD_DTYPE.itemsize} and `header_size` is {HEADER_DTYPE.itemsize}",
              f"1 <= `n_symbols` <= {MAX_SYMBOLS}", f"older than {CREATION_GRACE:g} s",
              "O_CREAT | O_EXCL, 0600", COMPILE_LINE, "-lrt"]
    missing = [c for c in checks if c not in section]
    assert not missing, f"the book section of docs/roles.md does not say: {missing}"
    book.check_name("a" * MAX_NAME_LEN)
    with pytest.raises(ValueError):
        book.check_name("a" * (MAX_NAME_LEN + 1))


def test_the_roles_docs_links_within_the_page_resolve():
    text = roles()
    headings = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
                for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
    targets = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert targets, "no links within the page: the sections on the book are linked from the roles"
    assert targets <= headings, f"links to no heading: {sorted(targets - headings)}"
    for role in ("## Orderbook", "## Strategy"):
        part = text.split(role, 1)[1].split("\n## ", 1)[0]
        assert "(#the-book-byte-by-byte)" in part, f"{role} does not link to the book's section"
        assert "layout.py" not in part, f"{role} still sends the learner to the source"


def test_the_c_reader_shown_in_the_docs_is_the_file_and_has_the_layouts_constants():
    source = READ_BOOK.read_text(encoding="utf-8")
    blocks = re.findall(r"```c\n(.*?)```", book_section(), flags=re.S)
    assert blocks, "the book section shows no C"
    for block in blocks:
        assert block in source, "the C shown in docs/roles.md is not what docs/examples/read_book.c says"
    constants = dict((k, int(v)) for k, v in re.findall(r"\b([A-Z_]+) = (\d+)\b", source))
    assert constants == {"LAYOUT_VERSION": LAYOUT_VERSION, "HEADER_SIZE": HEADER_DTYPE.itemsize,
                         "RECORD_SIZE": RECORD_DTYPE.itemsize, "MAX_SYMBOLS": MAX_SYMBOLS,
                         "MAX_NAME": MAX_NAME_LEN}
    magic = re.search(r"MAGIC\[8\] = \{(.*?)\}", source).group(1)
    assert "".join(re.findall(r"'(.)'", magic)).encode() == MAGIC
    assert COMPILE_LINE.replace("cc ", "", 1) in source
    assert len(source.splitlines()) < 130, "the example is meant to be read in one sitting"


# -- the C reader on real books ------------------------------------------------------------

def compile_c(source, exe) -> Path:
    """`source` compiled as the docs say, into `exe`; the test is skipped without a compiler."""
    cc = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH: cannot build docs/examples/read_book.c")
    command = [cc, "-std=c11", "-O2", "-o", str(exe), str(source)]
    built = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if built.returncode != 0 and sys.platform.startswith("linux"):
        built = subprocess.run(command + ["-lrt"], capture_output=True, text=True, timeout=120)  # glibc < 2.34
    assert built.returncode == 0, f"{' '.join(command)} failed:\n{built.stderr}"
    return exe


@pytest.fixture(scope="module")
def read_book(tmp_path_factory):
    """docs/examples/read_book.c, compiled."""
    return compile_c(READ_BOOK, tmp_path_factory.mktemp("read_book") / "read_book")


def run(exe, name, timeout=20):
    return subprocess.run([str(exe), name], capture_output=True, text=True, timeout=timeout)


def failed_with_one_line(result) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_c_reader_prints_every_symbol_of_a_book_python_wrote(read_book):
    symbols = ["AAPL", "MSFT", "BRK.B", "GOOGL", "AMZN", "NVDA", "ABCDEFGH"]
    with SharedPriceBook(symbols, name=book.new_name()) as price_book:
        price_book.update("AAPL", 170.0, seq=6, ts_ns=1)
        price_book.update("AAPL", 172.53, seq=7, ts_ns=2)       # the latest counts
        price_book.update("BRK.B", 0.07, seq=9)
        # Not usable prices, any price not a finite number above 0: only the hot path writes them.
        price_book.update_index(price_book.index("GOOGL"), math.inf, 10, 3)
        price_book.update_index(price_book.index("AMZN"), -2.5, 11, 3)
        price_book.update_index(price_book.index("NVDA"), math.nan, 12, 3)
        price_book.update("ABCDEFGH", 123456.78, seq=2**63 + 5)  # 8 characters: no NUL; a uint64 seq
        result = run(read_book, price_book.name)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        "AAPL 172.53 7",
        "MSFT - 0",             # never written: NaN, seq 0
        "BRK.B 0.07 9",
        "GOOGL - 0",
        "AMZN - 0",
        "NVDA - 0",
        f"ABCDEFGH 123456.78 {2**63 + 5}",
    ]


def test_the_c_reader_says_in_one_line_that_there_is_no_such_book(read_book):
    name = book.new_name()
    line = failed_with_one_line(run(read_book, name))
    assert name in line and "no such book" in line


@pytest.mark.parametrize("size, content, says", [
    (4096, b"", "no HFTBOOK1 magic"),                # all zeros: its creator is starting
    (4096, b"NOTABOOK" + bytes(200), "no HFTBOOK1 magic"),
    (16, b"HFTBOOK1", "less than a header"),
])
def test_the_c_reader_refuses_a_segment_that_is_not_a_book(read_book, size, content, says):
    name = book.new_name()
    shm = book.create_untracked(name, size)
    try:
        shm.buf[:len(content)] = content
        line = failed_with_one_line(run(read_book, name))
        assert "not a book" in line and says in line, line
    finally:
        book.unlink_untracked(shm)
        shm.close()


@pytest.mark.parametrize("field, value, says", [
    ("layout_version", LAYOUT_VERSION + 1, f"layout version {LAYOUT_VERSION + 1}; this program reads "
                                           f"version {LAYOUT_VERSION}"),
    ("record_size", 64, "not a book: record_size 64"),
    ("header_size", 112, "not a book: record_size 56, header_size 112"),
    ("n_symbols", 0, "not a book: 0 symbols"),
    ("n_symbols", MAX_SYMBOLS + 1, f"not a book: {MAX_SYMBOLS + 1} symbols"),
    ("n_symbols", 3, "not a book: 3 symbols in"),     # more than the segment holds
])
def test_the_c_reader_checks_the_header_before_trusting_an_offset(read_book, field, value, says):
    with SharedPriceBook(["AAPL", "MSFT"], name=book.new_name()) as price_book:
        price_book.update("AAPL", 1.0)
        shm = book.open_untracked(price_book.name)      # a second mapping, as another process has
        try:
            if field == "n_symbols" and value == 3 and shm.size >= book.layout_nbytes(3):
                pytest.skip(f"the segment is page-rounded to {shm.size} bytes: 3 records fit")
            struct.pack_into("<I", shm.buf, book.field_offset(HEADER_DTYPE, field), value)
            line = failed_with_one_line(run(read_book, price_book.name))
        finally:
            shm.close()
    assert says in line, line


def test_the_c_reader_gives_up_on_a_record_stuck_in_mid_write(read_book):
    with SharedPriceBook(["AAPL", "MSFT"], name=book.new_name()) as price_book:
        price_book.update("MSFT", 2.0)
        shm = book.open_untracked(price_book.name)
        version = HEADER_DTYPE.itemsize + RECORD_DTYPE.itemsize          # MSFT's record
        try:
            struct.pack_into("<Q", shm.buf, version, 3)     # what a writer killed in mid-write leaves
            began = time.monotonic()
            line = failed_with_one_line(run(read_book, price_book.name))
            took = time.monotonic() - began
            struct.pack_into("<Q", shm.buf, version, 4)
        finally:
            shm.close()
    assert "record 1 stayed in mid-write" in line, line
    assert 0.9 < took < 10, f"gave up after {took:.1f} s, not about a second"


def slow_writer(buf, stop):
    """Write record 0 by the writer's rule, slowly, until `stop` is set: version odd, the price,
    a pause, the seq, version even, a pause. Every write makes price == seq; a reader that
    skipped the seqlock would often see the new price with the old seq."""
    with buf.cast("Q") as words:
        version = HEADER_DTYPE.itemsize // 8
        price, seq = version + 2, version + 3
        k = words[seq]
        while not stop.is_set():
            k += 1
            words[version] = 2 * k - 1
            struct.pack_into("<d", buf, price * 8, float(k))
            for _ in range(30):
                pass
            words[seq] = k
            words[version] = 2 * k
            for _ in range(30):
                pass


def torn_lines(exe, name, runs, stop_at_first=False) -> tuple:
    """Run the reader `runs` times; (its record-0 lines, those whose price is not their seq)."""
    lines, torn = [], []
    for _ in range(runs):
        result = run(exe, name)
        assert result.returncode == 0, result.stderr
        line = result.stdout.splitlines()[0]
        lines.append(line)
        _, price, seq = line.split()
        if price != f"{int(seq):.2f}":
            torn.append(line)
            if stop_at_first:
                break
    return lines, torn


def test_the_c_reader_never_sees_a_torn_record_and_would_without_the_seqlock(read_book, tmp_path):
    # The negative control: the same program with both version checks taken out.
    source = READ_BOOK.read_text(encoding="utf-8")
    checks = ["if (v1 % 2 == 0) {", "if (atomic_load_explicit(&rec[0], memory_order_relaxed) == v1)"]
    assert all(source.count(c) == 1 for c in checks), "read_record changed: update the negative control"
    blind = tmp_path / "blind.c"
    blind.write_text(source.replace(checks[0], "if (1) {").replace(checks[1], "if (1)"), encoding="utf-8")
    blind_exe = compile_c(blind, tmp_path / "blind")

    stop = threading.Event()
    with SharedPriceBook(["AAPL", "MSFT"], name=book.new_name()) as price_book:
        price_book.update("AAPL", 1.0, seq=1)
        shm = book.open_untracked(price_book.name)    # the writer's own mapping
        writer = threading.Thread(target=slow_writer, args=(shm.buf, stop), daemon=True)
        writer.start()
        try:
            lines, torn = torn_lines(read_book, price_book.name, 40)
            _, blind_torn = torn_lines(blind_exe, price_book.name, 200, stop_at_first=True)
        finally:
            stop.set()
            writer.join(10)
            shm.close()
    assert len(set(lines)) > 1, "the writer never moved: the test saw nothing"
    assert torn == [], f"torn records: {torn}"
    assert blind_torn, "without its version checks the reader saw no torn record: this test cannot fail"

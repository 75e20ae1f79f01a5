"""The terminal path: a real ``ipython`` in a pseudo-terminal, typed at as a person would.

The child is ``python -m IPython`` with its ordinary prompt_toolkit prompt (not
``--simple-prompt``): TERM=xterm-256color so prompt_toolkit uses its full
renderer (cursor moves, auto-indent, completion) exactly as in a person's
terminal. ``PROMPT_TOOLKIT_NO_CPR=1`` tells prompt_toolkit not to ask the
terminal for the cursor position (a pty under pexpect never answers, so
prompt_toolkit would print a warning and guess). The screen is not emulated:
the tests read the byte stream with escape sequences stripped, and only match
things a redraw cannot fake (a prompt whose number is higher than the last one,
output lines matched whole, ``Out[n]: ...``).

Cells are typed line by line, waiting for the continuation prompt before the
next line, relying on IPython's auto-indent (a person does not type the
indentation of a block body). A cell magic such as ``%%local`` needs two blank
lines to run, which is IPython's own behaviour (DESIGN.md §4).

The remote side is the real jupyter_server of ``conftest.py`` (base_url
``/user/someone/``); the token reaches the child only through
BINDER_AUTORUN_TOKEN, and must never show in the terminal.
"""

from __future__ import annotations

import os
import re
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession

#: CSI (colours, cursor moves, modes), OSC (window title) and two-byte escapes
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][0-9A-Za-z]|\x1b[=>78NOM]")
_PROMPT = re.compile(r"In \[(\d+)\]:")
_OUT = re.compile(r"^Out\[(\d+)\]: (.*)$", re.M)
_COLLISION = "not unique"


def clean(raw: str) -> str:
    """The terminal stream as text: escape sequences and carriage returns removed."""
    return _ESCAPES.sub("", raw).replace("\r", "")


@dataclass
class Cell:
    """One cell typed at prompt ``number``; ``output`` is what the terminal showed until ``next``."""

    number: int
    output: str
    next: int

    @property
    def lines(self) -> list[str]:
        return [line.rstrip() for line in self.output.split("\n")]

    @property
    def out(self) -> tuple[int, str] | None:
        """``(n, text)`` of the cell's ``Out[n]: text`` line, if it showed one."""
        found = _OUT.findall(self.output)
        assert len(found) <= 1, f"more than one Out[...] for one cell:\n{self.output}"
        return (int(found[0][0]), found[0][1].rstrip()) if found else None


class Terminal:
    """``ipython`` in a pseudo-terminal, with the extension's server token in its environment."""

    def __init__(self, tmp_path: Path, token: str, rows: int = 60, cols: int = 200) -> None:
        self.ipython_dir = tmp_path / "ipython"
        self.ipython_dir.mkdir()
        self.hist_file = tmp_path / "history.sqlite"
        self.token = token
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BINDER_AUTORUN_", "PYTHONSTARTUP", "IPY_TEST"))}
        env.update(
            IPYTHONDIR=str(self.ipython_dir),
            TERM="xterm-256color",
            PROMPT_TOOLKIT_NO_CPR="1",
            PAGER="cat",  # a long `obj?` page must not stop in `less`
            BINDER_AUTORUN_TOKEN=token,
        )
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "IPython", "--no-banner", "--colors=NoColor",
             f"--HistoryManager.hist_file={self.hist_file}",
             "--TerminalInteractiveShell.confirm_exit=False"],
            env=env, cwd=str(tmp_path), encoding="utf-8", codec_errors="replace",
            dimensions=(rows, cols), timeout=15,
        )
        self.raw = ""
        self.pos = 0  # how much of the cleaned text the tests have consumed
        self.eof = False
        self.prompt = self.wait_prompt(after=0)

    # -- reading --------------------------------------------------------------

    @property
    def text(self) -> str:
        return clean(self.raw)

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        try:
            self.raw += self.child.read_nonblocking(65536, timeout=max(timeout, 0.01))
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            self.eof = True

    def _fail(self, what: str) -> None:
        tail = self.text[-3000:].replace(self.token, "<token>")
        pytest.fail(f"terminal: {what}; the terminal shows (tail):\n{tail}", pytrace=False)

    def expect(self, pattern: str | re.Pattern[str], timeout: float = 15, what: str = "") -> re.Match[str]:
        """Wait for ``pattern`` in the text not yet consumed; consume up to its end.

        Anchor patterns to whole lines (``(?m)^...$``) where the typed source echoes the same text.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.text, self.pos)
            if match:
                self.pos = match.end()
                return match
            if time.monotonic() > deadline or self.eof:
                self._fail(f"did not see {what or regex.pattern!r} within {timeout:g} s")
            self._read(deadline - time.monotonic())

    def wait_prompt(self, after: int, timeout: float = 15) -> int:
        """Wait for an ``In [n]:`` prompt with n > ``after`` (redraws of older prompts do not count)."""
        deadline = time.monotonic() + timeout
        while True:
            for match in _PROMPT.finditer(self.text, self.pos):
                if int(match.group(1)) > after:
                    self.pos = match.end()
                    return int(match.group(1))
            if time.monotonic() > deadline or self.eof:
                self._fail(f"no prompt numbered above {after} within {timeout:g} s")
            self._read(deadline - time.monotonic())

    def settle(self, quiet: float = 0.2, timeout: float = 5) -> None:
        """Read until the terminal has been quiet for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.eof:
            before = len(self.raw)
            self._read(quiet)
            if len(self.raw) == before:
                return

    # -- typing ---------------------------------------------------------------

    def type_line(self, line: str) -> None:
        """Type one line and press Enter where more lines follow: wait for the continuation prompt."""
        self.child.send(line + "\r")
        pattern = (re.escape(line.strip()) + r"(?s:.*?)") if line.strip() else ""
        self.expect(pattern + r"\.\.\.:", what=f"a continuation prompt after {line!r}")

    def run(self, *lines: str, timeout: float = 15) -> Cell:
        """Type a cell, line by line, and wait until the next prompt shows."""
        number = self.prompt
        for line in lines[:-1]:
            self.type_line(line)
        start = len(self.text)
        self.child.send(lines[-1] + "\r")
        self.prompt = self.wait_prompt(after=number, timeout=timeout)
        prompt_at = self.pos - len(f"In [{self.prompt}]:")
        return Cell(number, self.text[start:prompt_at], self.prompt)

    def run_remote_ok(self, *lines: str) -> Cell:
        """A cell that must not fail."""
        cell = self.run(*lines)
        assert "Traceback" not in cell.output and "Error" not in cell.output, cell.output
        return cell

    def connect(self, url: str, *options: str) -> int:
        """``%load_ext`` and ``%binder_on``; the number the next prompt shows."""
        self.run("%load_ext binder_autorun")
        line = " ".join(["%binder_on", "--url", url, *options])
        cell = self.run(line)
        said = [text for text in cell.output.rsplit(line, 1)[-1].strip().splitlines() if text.strip()]
        assert len(said) == 1 and said[0].startswith(f"binder_autorun: connected to {url}"), f"%binder_on said:\n{cell.output}"
        assert f"next cell [{self.prompt}]" in said[0] and "%binder_off" in said[0], said
        return self.prompt

    # -- ending ---------------------------------------------------------------

    def close(self) -> str:
        """Leave with Ctrl-D at the prompt (atexit shuts the remote kernel down); the whole transcript."""
        if self.child.closed:
            return self.text
        if self.child.isalive() and not self.eof:
            self.child.sendcontrol("d")
            deadline = time.monotonic() + 15
            while not self.eof and time.monotonic() < deadline:
                self._read(deadline - time.monotonic())
        if self.child.isalive():
            self.child.terminate(force=True)
        self.child.close()
        return self.text


@pytest.fixture
def terminal(remote_server, tmp_path: Path) -> Iterator[Terminal]:
    term = Terminal(tmp_path, remote_server.token)
    try:
        yield term
    finally:
        transcript = term.close()
        # every test also checks the two things that must never appear on the screen
        assert remote_server.token not in transcript, "the token showed in the terminal"
        assert _COLLISION not in transcript, "IPython's history reported a collision:\n" + transcript[-3000:]


def history_rows(hist_file: Path) -> tuple[int, list[tuple[int, int, str, str]]]:
    """(number of sessions, rows of the history table) of IPython's history database."""
    with sqlite3.connect(hist_file) as db:
        sessions = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
        rows = db.execute("SELECT session, line, source, source_raw FROM history ORDER BY session, line").fetchall()
    return sessions, rows


# -- the tests -----------------------------------------------------------------


@pytest.mark.timeout(40)
def test_prompt_shows_the_remote_count(terminal: Terminal, remote_server) -> None:
    first = terminal.connect(remote_server.url)
    assert first == 3, "a fresh remote kernel (count 0) takes the local numbering (two local cells ran)"

    cell = terminal.run_remote_ok("a = 1; print(a)")
    assert cell.number == first and "1" in cell.lines and cell.out is None
    assert cell.next == first + 1

    shown = {}
    for source, value in [("a + 1", "2"), ("a * 10", "10"), ("'text'", "'text'"), ("[a] * 3", "[1, 1, 1]")]:
        cell = terminal.run_remote_ok(source)
        assert cell.out == (cell.number, value), f"{source!r} typed at In [{cell.number}] showed:\n{cell.output}"
        assert cell.next == cell.number + 1
        shown[cell.number] = value
    cell = terminal.run_remote_ok("None")
    assert cell.out is None and cell.next == cell.number + 1

    # the remote kernel itself numbered them so: its Out holds exactly those numbers
    cell = terminal.run_remote_ok("sorted(Out)")
    assert cell.out == (cell.number, str(sorted(shown))), cell.output
    cell = terminal.run_remote_ok(f"Out[{min(shown)}]")
    assert cell.out == (cell.number, "2"), cell.output


@pytest.mark.timeout(40)
def test_prompt_learns_a_remote_count_ahead_at_connect(terminal: Terminal, remote_server) -> None:
    """Attaching to a kernel that already ran cells: the very first prompt shows its next number."""
    server = JupyterServer(remote_server.info)
    session = KernelSession.start(server)
    try:
        for index in range(7):
            assert session.execute(f"x = {index}").get("status") == "ok"
        session.close()  # the kernel stays, with 7 stored cells
        first = terminal.connect(remote_server.url, "--kernel-id", session.kernel_id)
        assert first == 8, f"the prompt after connecting shows In [{first}], the remote will number the cell 8"
        cell = terminal.run_remote_ok("x + 1")
        assert cell.out == (8, "7"), cell.output
        cell = terminal.run_remote_ok("x * 2")
        assert cell.out == (9, "12"), cell.output
    finally:
        terminal.close()
        server.shutdown_kernel(session.kernel_id)


@pytest.mark.timeout(40)
def test_multiline_block_runs_remotely_once(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    terminal.run_remote_ok("import time; seen = []")
    # typed as a person does: IPython auto-indents the body; a blank line ends the block
    number = terminal.prompt
    for line in ("for i in range(3):", "seen.append(i)", "print('item', i, flush=True)"):
        terminal.type_line(line)
    start = len(terminal.text)
    terminal.type_line("time.sleep(0.5)")  # the last line of the body: more may follow
    terminal.child.send("\r")  # the blank line that runs the block
    terminal.expect(r"(?m)^item 0$", what="the first line of output")
    first_output = time.monotonic()
    terminal.prompt = terminal.wait_prompt(after=number)
    gap = time.monotonic() - first_output
    cell = Cell(number, terminal.text[start:], terminal.prompt)
    assert [line for line in cell.lines if line.startswith("item")] == ["item 0", "item 1", "item 2"], cell.output
    assert gap > 0.7, f"output was held back until the cell finished (first line {gap:.2f} s before the end)"
    assert cell.next == cell.number + 1
    cell = terminal.run_remote_ok("seen")
    assert cell.out == (cell.number, "[0, 1, 2]"), "the block ran more than once, or not remotely:\n" + cell.output
    # and it did not run locally
    cell = terminal.run("%%local", "print('local has seen:', 'seen' in dir())", "", "")
    assert "local has seen: False" in cell.lines, cell.output


@pytest.mark.timeout(40)
def test_local_cell_runs_locally(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    cell = terminal.run_remote_ok("import os; os.getpid()")
    assert cell.out is not None and cell.out[0] == cell.number
    remote_pid = int(cell.out[1])
    assert remote_pid != terminal.child.pid

    # a cell magic needs a second blank line in the terminal (IPython's behaviour)
    cell = terminal.run("%%local", "import os; print('local pid', os.getpid())", "", "")
    assert f"local pid {terminal.child.pid}" in cell.lines, cell.output
    assert cell.next == cell.number + 1, "a %%local cell takes its own number"

    # the remote numbering goes on from the prompt, past the local cell's number
    cell = terminal.run_remote_ok("os.getpid()")
    assert cell.out == (cell.number, str(remote_pid)), cell.output


@pytest.mark.timeout(40)
def test_remote_input_and_getpass_answered_in_the_terminal(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    number = terminal.prompt
    terminal.child.send("x = input('name? ')\r")
    terminal.expect(r"(?m)^name\? $", what="the remote input() prompt")
    terminal.child.send("Ada Lovelace\r")
    terminal.prompt = terminal.wait_prompt(after=number)
    cell = terminal.run_remote_ok("x")
    assert cell.out == (cell.number, "'Ada Lovelace'"), cell.output

    number = terminal.prompt
    terminal.child.send("import getpass; pw = getpass.getpass('secret? ')\r")
    terminal.expect(r"(?m)^secret\? $", what="the remote getpass() prompt")
    start = terminal.pos
    terminal.child.send("s3cr3t-value\r")
    terminal.prompt = terminal.wait_prompt(after=number)
    assert "s3cr3t-value" not in terminal.text[start:], "getpass echoed the password"
    cell = terminal.run_remote_ok("len(pw), pw[:2]")
    assert cell.out == (cell.number, "(12, 's3')"), cell.output


@pytest.mark.timeout(40)
def test_ctrl_c_interrupts_the_remote_cell(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    terminal.run_remote_ok("marker = 'still here'")
    number = terminal.prompt
    terminal.child.send("import time; print('sleep' + 'ing', flush=True); time.sleep(30)\r")
    terminal.expect(r"(?m)^sleeping$", what="the remote cell to start")
    started = time.monotonic()
    terminal.child.sendcontrol("c")
    terminal.expect(r"KeyboardInterrupt", timeout=10, what="the remote KeyboardInterrupt")
    elapsed = time.monotonic() - started
    terminal.prompt = terminal.wait_prompt(after=number, timeout=10)
    assert elapsed < 2.0, f"the interrupt took {elapsed:.1f} s to show"
    shown = terminal.text[-2000:]
    assert "Traceback" in shown and "StopWaiting" not in shown, shown

    # the shell is usable again, still remote, still numbered like the remote
    cell = terminal.run_remote_ok("marker")
    assert cell.out == (cell.number, "'still here'"), cell.output
    assert cell.number == number + 1

    # Ctrl-C at a remote input() prompt: the remote KeyboardInterrupt, as natively
    number = terminal.prompt
    terminal.child.send("answer = input('your answer? ')\r")
    terminal.expect(r"(?m)^your answer\? $", what="the remote input() prompt")
    # a person reacts; pressing Ctrl-C within microseconds of the prompt can fall between
    # CPython's prompt write and its read(), where the signal is noted but read() blocks on
    terminal.settle(quiet=0.2)
    terminal.child.sendcontrol("c")
    terminal.expect(r"KeyboardInterrupt: Interrupted by user", timeout=5, what="the remote KeyboardInterrupt")
    terminal.prompt = terminal.wait_prompt(after=number, timeout=10)
    cell = terminal.run_remote_ok("marker + '!'")
    assert cell.out == (cell.number, "'still here!'"), cell.output


@pytest.mark.timeout(40)
def test_second_ctrl_c_stops_waiting(terminal: Terminal, remote_server) -> None:
    """A remote cell that swallows interrupts: the second Ctrl-C gives the shell back; a restart recovers."""
    terminal.connect(remote_server.url)
    terminal.run_remote_ok("import time")
    number = terminal.prompt
    for line in ("while True:", "try:", "time.sleep(10)"):
        terminal.type_line(line)
    terminal.child.send("\x7f" * 4)  # back out of the auto-indent, as a person does
    for line in ("except KeyboardInterrupt:", "print('swallowed', flush=True)"):
        terminal.type_line(line)
    terminal.child.send("\r")
    terminal.settle(quiet=0.5)  # running now, silently
    terminal.child.sendcontrol("c")
    terminal.expect(r"(?m)swallowed$", timeout=5, what="the remote cell catching the first interrupt")
    started = time.monotonic()
    terminal.child.sendcontrol("c")
    terminal.expect(r"Stopped waiting for the remote cell", timeout=5, what="the one-sentence give-up message")
    terminal.prompt = terminal.wait_prompt(after=number, timeout=5)
    assert time.monotonic() - started < 2.0
    shown = terminal.text[-1500:]
    assert "Traceback" not in shown, shown

    cell = terminal.run("%binder_restart", timeout=30)
    assert "restarted" in cell.output, cell.output
    cell = terminal.run_remote_ok("'time' in dir()")  # a fresh kernel
    assert cell.out == (cell.number, "False"), cell.output


@pytest.mark.timeout(40)
def test_remote_error_shows_the_remote_traceback(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    cell = terminal.run("def remote_boom():", "return 1/0", "")
    assert "Traceback" not in cell.output, cell.output
    cell = terminal.run("remote_boom()")  # defined only remotely: a local run would be a NameError
    assert "ZeroDivisionError: division by zero" in cell.lines, cell.output
    assert "NameError" not in cell.output
    assert any("remote_boom" in line for line in cell.lines if "---->" in line or "Cell In" in line), cell.output
    cell = terminal.run("1/0")
    assert "ZeroDivisionError: division by zero" in cell.lines, cell.output
    assert f"Cell In[{cell.number}], line 1" in cell.lines, "the remote traceback names the cell by the prompt's number"
    cell = terminal.run_remote_ok("40 + 2")
    assert cell.out == (cell.number, "42")


@pytest.mark.timeout(50)
def test_history_never_collides(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    typed: dict[int, str] = {}

    def remote(source: str, value: str | None = None) -> Cell:
        cell = terminal.run_remote_ok(source)
        typed[cell.number] = source
        if value is not None:
            assert cell.out == (cell.number, value), cell.output
        return cell

    remote("a = 10")
    doubled = remote("a * 2", "20").number
    cell = terminal.run("%%local", "b = 5; print('local b', b)", "", "")
    assert "local b 5" in cell.lines, cell.output
    remote("a + 1", "11")
    terminal.run("%binder_off")
    cell = terminal.run("c = 3")
    cell = terminal.run("c * 2")  # local: `c` does not exist remotely
    assert cell.out == (cell.number, "6"), cell.output
    typed[cell.number] = "c * 2"
    terminal.run("%binder_on")  # resume the same remote kernel
    remote("a + 2", "12")
    remote("'c' in dir()", "False")

    # `%history` shows what was typed; `-t` the translated source, which for a routed cell must
    # still be the user's source, not the routing call
    for flags in ("-n", "-n -t"):
        cell = terminal.run("%%local", f"%history {flags}", "", "")
        listing = cell.output
        assert "_run_remote" not in listing, f"%history {flags} shows the routing call:\n" + listing
        for number, source in typed.items():
            assert re.search(rf"(?m)^\s*{number}: {re.escape(source)}$", listing), \
                f"%history {flags} lacks {number}: {source}\n{listing}"
    # In / Out keep working locally: the typed source and the remote result
    cell = terminal.run("%%local", f"print(repr(In[{doubled}]), repr(Out[{doubled}]))", "", "")
    assert "'a * 2' 20" in cell.lines, cell.output

    transcript = terminal.close()  # the history writer thread may complain until exit
    assert _COLLISION not in transcript
    sessions, rows = history_rows(terminal.hist_file)
    assert sessions == 1, f"IPython moved its history to a new session: {rows}"
    numbers = [line for _, line, _, _ in rows]
    assert numbers == sorted(set(numbers)), numbers
    raw = {line: source_raw for _, line, _, source_raw in rows}
    for number, source in typed.items():
        assert raw.get(number) == source, (number, raw.get(number))


@pytest.mark.timeout(40)
def test_history_database_holds_the_typed_source(terminal: Terminal, remote_server) -> None:
    """What IPython writes to its database (read by `%history -g`, later sessions, `%rerun`)."""
    terminal.connect(remote_server.url)
    first = terminal.run_remote_ok("a = 10").number
    terminal.run_remote_ok("a * 2")
    # a search reads the database, not the in-memory lists
    cell = terminal.run("%%local", "%history -n -t -g a", "", "")
    assert "_run_remote" not in cell.output, "the history database holds the routing call, not the cell:\n" + cell.output
    terminal.close()
    _, rows = history_rows(terminal.hist_file)
    sources = {line: source for _, line, source, _ in rows}
    assert sources.get(first) == "a = 10" and sources.get(first + 1) == "a * 2", sources


@pytest.mark.timeout(40)
def test_tab_completes_from_the_remote_namespace(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    # the name is built so that no typed line holds it: autosuggestion from history cannot show it
    terminal.run_remote_ok("globals()['remote_only_' + 'variable_xyz'] = 1")
    number = terminal.prompt
    start = len(terminal.text)
    terminal.child.send("remote_only_var\t")
    deadline = time.monotonic() + 5
    while "remote_only_variable_xyz" not in terminal.text[start:] and time.monotonic() < deadline:
        terminal._read(0.1)
    completed = "remote_only_variable_xyz" in terminal.text[start:]
    terminal.child.send("\r")  # run whatever the line holds now
    terminal.prompt = terminal.wait_prompt(after=number)
    cell = Cell(number, terminal.text[start:], terminal.prompt)
    assert completed, (
        "Tab did not complete `remote_only_var` to `remote_only_variable_xyz`: the terminal's completer "
        "did not answer from the remote namespace:\n" + cell.output
    )
    assert cell.out == (number, "1"), cell.output


@pytest.mark.timeout(40)
def test_question_mark_inspects_the_remote_object(terminal: Terminal, remote_server) -> None:
    terminal.connect(remote_server.url)
    terminal.run_remote_ok("def remote_documented():", "'Only the remote kernel knows me.'", "")
    cell = terminal.run("remote_documented?")
    assert "Only the remote kernel knows me." in cell.output, cell.output
    assert "Object `remote_documented` not found." not in cell.output

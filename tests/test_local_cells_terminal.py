"""Local cells in the real terminal (``ipython`` in a pseudo-terminal, see test_terminal.py):
what a ``%%local`` cell's magics run stays local, and Tab in a ``%%local`` cell
completes from the local namespace; ``%b<Tab>`` offers our magics with the remote ones."""

from __future__ import annotations

import time

import pytest

from .test_terminal import Cell, Terminal, terminal  # noqa: F401  # the fixture

PID = "__import__('os').getpid()"


def wait_for(term: Terminal, text: str, since: int, seconds: float = 5) -> bool:
    """Whether ``text`` shows on the terminal after position ``since`` within ``seconds``."""
    deadline = time.monotonic() + seconds
    while text not in term.text[since:] and time.monotonic() < deadline:
        term._read(0.1)
    return text in term.text[since:]


@pytest.mark.timeout(60)
def test_time_inside_a_local_cell_runs_locally(terminal: Terminal, remote_server) -> None:  # noqa: F811
    terminal.connect(remote_server.url)
    cell = terminal.run("%%local", f"%time t = {PID}", "", "")
    assert "Wall time" in cell.output and "Traceback" not in cell.output, cell.output
    cell = terminal.run("%%local", "print('local t', t)", "", "")
    assert f"local t {terminal.child.pid}" in cell.lines, cell.output
    cell = terminal.run_remote_ok("'t' in globals()")
    assert cell.out == (cell.number, "False"), "the timed code ran on the remote kernel:\n" + cell.output


@pytest.mark.timeout(60)
def test_tab_in_a_local_cell_completes_locally(terminal: Terminal, remote_server) -> None:  # noqa: F811
    terminal.connect(remote_server.url)
    # one name on each side; built from parts so that no typed line holds them (autosuggestion from history)
    terminal.run_remote_ok("globals()['twin_' + 'remote_side'] = 2")
    terminal.run("%%local", "globals()['twin_' + 'local_side'] = 1", "", "")
    number = terminal.prompt
    terminal.type_line("%%local")
    start = len(terminal.text)
    terminal.child.send("twin_\t")
    completed = wait_for(terminal, "twin_local_side", start)
    terminal.child.send("\r")
    terminal.type_line("")
    terminal.child.send("\r")
    terminal.prompt = terminal.wait_prompt(after=number)
    cell = Cell(number, terminal.text[start:], terminal.prompt)
    assert completed, "Tab in a %%local cell did not complete from the local namespace:\n" + cell.output
    assert "twin_remote_side" not in cell.output and cell.out == (number, "1"), cell.output

    # the remote kernel knows %bash and %bookmark, not ours: they join its matches
    number = terminal.prompt
    start = len(terminal.text)
    terminal.child.send("%b\t")
    offered = all(wait_for(terminal, name, start) for name in ("bookmark", "binder_off", "binder_status"))
    terminal.child.send("\x15")  # Ctrl-U: drop the line
    cell = terminal.run_remote_ok("'done'")
    assert offered, "%b<Tab> did not offer the remote's magics and ours:\n" + terminal.text[start:]
    assert cell.out == (number, "'done'"), cell.output

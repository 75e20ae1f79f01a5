"""Terminal behaviours a routed session must share with a native one (the real
``ipython`` of test_terminal.py): colours, one traceback per error, late output,
and remote debugger prompts with line editing and history."""

from __future__ import annotations

import re

import pytest

from .test_terminal import Terminal, terminal  # noqa: F401  (the fixture)


@pytest.mark.timeout(60)
def test_nocolor_applies_to_remote_tracebacks(terminal: Terminal, remote_server) -> None:  # noqa: F811
    """The terminal runs with --colors=NoColor: the remote traceback must show no colours either."""
    terminal.connect(remote_server.url)
    start = len(terminal.raw)
    cell = terminal.run("1/0")
    assert "ZeroDivisionError" in cell.output
    raw = terminal.raw[start:]
    lines = [line for line in raw.split("\n") if "ZeroDivisionError" in line or "Traceback (most recent call last)" in line]
    assert lines and not any("\x1b[3" in line or "\x1b[0;3" in line for line in lines), lines


@pytest.mark.timeout(60)
def test_a_raising_formatter_prints_its_traceback_once(terminal: Terminal, remote_server) -> None:  # noqa: F811
    terminal.connect(remote_server.url)
    cell = terminal.run("class Bad:", "def _repr_html_(self): raise ValueError('no html')", "", "")
    cell = terminal.run("Bad()")
    assert len(re.findall(r"(?m)^ValueError: no html", cell.output)) == 1, cell.output
    assert re.search(r"Out\[\d+\]: <__main__.Bad at", cell.output)  # the result still shows


@pytest.mark.timeout(60)
def test_output_after_the_cell_ended_is_printed(terminal: Terminal, remote_server) -> None:  # noqa: F811
    terminal.connect(remote_server.url)
    terminal.run("import threading, time")
    terminal.run("threading.Thread(target=lambda: (time.sleep(0.3), print('late line'))).start()")
    terminal.expect(r"(?m)(?:^|(?<=:))late line$", timeout=10, what="the thread's print after the cell ended")


@pytest.mark.timeout(60)
def test_a_remote_debugger_prompt_has_line_editing_and_history(terminal: Terminal, remote_server) -> None:  # noqa: F811
    terminal.connect(remote_server.url)
    terminal.child.send("import pdb; x = 20; pdb.set_trace(); y = 1\r")
    terminal.expect(r"\(Pdb\)|ipdb>", what="the remote debugger's prompt")
    terminal.child.send("p x * 2 + 2\r")
    terminal.expect(r"(?m)^42\s*$", what="the first answer")
    terminal.expect(r"\(Pdb\)|ipdb>", what="the next prompt")
    terminal.child.send("\x1b[A")  # Up: recall the last debugger command
    terminal.child.send("\r")
    terminal.expect(r"(?m)^42\s*$", what="the recalled command's answer")
    terminal.expect(r"\(Pdb\)|ipdb>", what="the prompt after it")
    terminal.child.send("c\r")
    terminal.prompt = terminal.wait_prompt(after=terminal.prompt)

"""Output that no running cell waits for: late output after a cell ended, and output
while the user answers a remote ``input()`` (issue: fidelity defects 1 and 2).

Timing-dependent, so each case repeats: a race shows up as one wrong run in many.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .frontend_driver import Frontend, Message, routed_frontend

RUNS = 20


@pytest.fixture
def frontend(remote_server: LocalServer, tmp_path: Path) -> Iterator[Frontend]:
    driver = routed_frontend(tmp_path, remote_server.url, remote_server.token)
    yield driver
    driver.shutdown()


@pytest.mark.timeout(120)
def test_output_after_the_cell_ended_lands_under_its_cell(frontend: Frontend) -> None:
    """A thread's print, an asyncio task's print and a thread's display, all after idle,
    reach the frontend parented to the cell that started them, as natively."""
    _, reply = frontend.execute("import asyncio, threading, time\nfrom IPython.display import display")
    assert reply["content"]["status"] == "ok"
    for run in range(RUNS):
        msg_id, reply = frontend.execute(
            f"threading.Thread(target=lambda: (time.sleep(0.05), print('late {run}'))).start()\n"
            f"async def later():\n    await asyncio.sleep(0.15)\n    print('task {run}')\n"
            f"asyncio.ensure_future(later())\n"
            f"threading.Thread(target=lambda: (time.sleep(0.25), display({{'text/plain': 'shown {run}'}}, raw=True))).start()\n"
        )
        assert reply["content"]["status"] == "ok"
        frontend.wait_for(lambda m, i=msg_id: m["msg_type"] == "display_data" and Frontend.parent(m) == i, timeout=10)
        frontend.wait_for(lambda m, i=msg_id, r=run: Frontend.parent(m) == i and f"task {r}" in m["content"].get("text", ""), 10)
        text = frontend.text(msg_id)
        assert f"late {run}\n" in text and f"task {run}\n" in text, (run, text)
        idle = frontend.of(msg_id, "status")[-1]
        late = [m for m in frontend.of(msg_id, "stream", "display_data") if m["received"] >= idle["received"]]
        assert late, "the outputs arrived after the cell's idle, as natively"


@pytest.mark.timeout(120)
def test_what_was_printed_before_input_is_shown_before_the_prompt(frontend: Frontend) -> None:
    """Natively the menu is sent before the prompt; the server may deliver them the other
    way round, so the frontend must not be asked before the menu is out."""
    seen_before_prompt: list[str] = []

    def answer(request: Message) -> str:
        # the IOPub reader gets a moment to read what is already on its socket; a menu that
        # is only sent after the answer (the defect) can never be here in time
        seen_before_prompt.append(frontend.text_once(msg_id, "menu", timeout=0.5))
        return "2"

    for run in range(RUNS):
        msg_id = frontend.kc.execute(f"print('menu {run}: 1 2 3'); v = input('choice> '); print('got', v)", allow_stdin=True)
        reply = frontend.wait_reply(msg_id, answers=answer)
        assert reply["content"]["status"] == "ok"
        frontend.wait_idle(msg_id)
        assert f"menu {run}: 1 2 3" in seen_before_prompt[-1], (run, seen_before_prompt[-1])
        assert frontend.text(msg_id).endswith("got 2\n")


@pytest.mark.timeout(60)
def test_output_keeps_flowing_while_the_user_is_asked(frontend: Frontend) -> None:
    """A background print during input() appears before the answer, not after it."""
    printed_while_asked: list[str] = []
    msg_id = frontend.kc.execute(
        "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.2), print('background', flush=True))).start()\n"
        "v = input('wait> ')\nprint('answered', v)",
        allow_stdin=True,
    )

    def answer(request: Message) -> str:
        frontend.wait_for(lambda m: Frontend.parent(m) == msg_id and "background" in m["content"].get("text", ""), timeout=10)
        printed_while_asked.append(frontend.text(msg_id))
        return "yes"

    reply = frontend.wait_reply(msg_id, answers=answer)
    assert reply["content"]["status"] == "ok"
    frontend.wait_idle(msg_id)
    assert printed_while_asked == ["background\n"]
    assert frontend.text(msg_id) == "background\nanswered yes\n"


@pytest.mark.timeout(60)
def test_pdb_prompts_come_after_the_debugger_output(frontend: Frontend) -> None:
    """pdb writes its location, then asks: the location must be on screen first."""
    commands = iter(["p 6 * 7", "c"])
    expected = iter(["set_trace", "42"])
    texts: list[str] = []

    def answer(request: Message) -> str:
        wanted = next(expected)  # the IOPub reader gets a moment to read what is already on its socket
        texts.append(frontend.text_once(msg_id, wanted, timeout=0.5))
        return next(commands)

    msg_id = frontend.kc.execute("import pdb\nx = 1\npdb.set_trace()\ny = 2", allow_stdin=True)
    reply = frontend.wait_reply(msg_id, answers=answer)
    assert reply["content"]["status"] == "ok"
    frontend.wait_idle(msg_id)
    assert "set_trace" in texts[0]  # where pdb stopped
    assert "42" in texts[1]  # the answer to the first command, before the second prompt


#: a %%local cell: the local IOPub thread is busy for a second whenever the mirror waits for
#: it before a prompt (it may legitimately be busy that long with a flood of output)
BUSY_IOPUB_BEFORE_PROMPTS = """%%local
import time
from binder_autorun.frontend import KernelFrontend
_drain = KernelFrontend.drain
def _busy_drain(self, timeout=2.0):
    self.kernel.iopub_socket.io_thread.schedule(lambda: time.sleep(1))
    _drain(self, timeout)
KernelFrontend.drain = _busy_drain
"""


@pytest.mark.timeout(60)
def test_an_error_shown_just_after_the_prompt_does_not_stop_the_output(frontend: Frontend) -> None:
    """A remote thread shows a traceback just after input() asked, while the local side still
    gets ready to ask: it and what follows it reach the page while the user is asked."""
    _, reply = frontend.execute(BUSY_IOPUB_BEFORE_PROMPTS)
    assert reply["content"]["status"] == "ok"
    seen_while_asked: list[str] = []
    msg_id = frontend.kc.execute(
        "import threading, time\n"
        "def later():\n    time.sleep(0.3)\n    try:\n        1 / 0\n    except ZeroDivisionError:\n"
        "        get_ipython().showtraceback()\n    print('after error', flush=True)\n"
        "threading.Thread(target=later).start()\n"
        "v = input('wait> ')\nprint('answered', v)",
        allow_stdin=True,
    )

    def answer(request: Message) -> str:
        seen_while_asked.append(frontend.text_once(msg_id, "after error", timeout=8))
        return "yes"

    reply = frontend.wait_reply(msg_id, answers=answer)
    assert reply["content"]["status"] == "ok"
    frontend.wait_idle(msg_id)
    assert seen_while_asked == ["after error\n"], "the output after the error waited for the answer"
    assert [m["content"]["ename"] for m in frontend.of(msg_id, "error")] == ["ZeroDivisionError"]
    assert frontend.text(msg_id) == "after error\nanswered yes\n"

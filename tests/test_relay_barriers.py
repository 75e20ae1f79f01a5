"""What the main thread shows behind a relay (execute_result, error) is a barrier the reader
waits behind: an interrupt must never lose it and leave the reader waiting.

Real parts: a real jupyter_server and ipykernel, a real KernelSession and channel. The one
hook is where a Ctrl-C lands: a queue whose ``get`` raises SIGINT once, just after it gave
up an execute_result (the interrupt check right after that C call runs the handler).
"""

from __future__ import annotations

import _thread
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from binder_autorun import session as session_module
from binder_autorun import wire
from binder_autorun.channel import Inbox
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession


class _Relay:
    """Takes streams; leaves execute_result and error to the sink as barriers."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def take(self, msg: wire.Message) -> bool:
        if wire.msg_type(msg) != "stream":
            return False
        self.shown.append(msg["content"]["text"])
        return True

    def hand_over(self, msg: wire.Message) -> bool:
        return wire.msg_type(msg) in ("execute_result", "error")

    def flush(self) -> None:
        pass

    def held_since(self) -> float | None:
        return None

    def seal(self) -> None:
        pass


class _Sink:
    """Records what the main thread is given."""

    def __init__(self) -> None:
        self.relay = _Relay()
        self.messages: list[wire.Message] = []

    def on_message(self, msg: wire.Message) -> None:
        self.messages.append(msg)

    def on_input(self, prompt: str, password: bool) -> str | None:
        return None

    def flush(self) -> None:
        pass


class _InterruptedAfterTake(Inbox):
    """An inbox whose consumer gets a Ctrl-C right after it took the first execute_result."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        event = super().get(block, timeout)
        if isinstance(event, dict) and wire.msg_type(event) == "execute_result" and not getattr(self, "fired", False):
            self.fired = True
            signal.raise_signal(signal.SIGINT)
        return event


@pytest.fixture
def session(remote_server: LocalServer) -> Iterator[KernelSession]:
    started = KernelSession.start(JupyterServer(remote_server.info), interrupt_grace=3.0)
    yield started
    started.shutdown()


@pytest.mark.timeout(60)
def test_a_ctrl_c_just_after_the_result_was_taken_loses_neither_it_nor_the_reader(
    session: KernelSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session_module, "Inbox", _InterruptedAfterTake)
    sink = _Sink()
    reply = session.execute("print('before')\n6 * 7", sink)
    # the Ctrl-C interrupts the remote kernel too: on a loaded machine the cell may not have
    # ended yet when it lands there (as natively, a Ctrl-C at the last moment can fail the cell)
    assert reply["status"] == "ok" or reply.get("ename") == "KeyboardInterrupt", reply
    results = [m["content"]["data"]["text/plain"] for m in sink.messages if wire.msg_type(m) == "execute_result"]
    assert results == ["42"], "the result taken when the interrupt landed is still shown"
    assert sink.relay.shown == ["before\n"]
    monkeypatch.undo()
    assert session.execute("print('next')", _Sink())["status"] == "ok", "the reader went on"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("delay", [0.05, 0.15])
def test_a_ctrl_c_while_a_helper_call_waits_loses_not_its_reply(session: KernelSession, delay: float) -> None:
    """No relay, no barrier: the reply itself. ``interrupt_main`` is seen once the main thread's
    wait returns, i.e. just after the queue gave a message up — where the reply was lost and the
    session then waited for it until the interrupt grace ran out."""
    session.execute("import time", None)
    timer = threading.Timer(delay, _thread.interrupt_main)
    began = time.monotonic()
    timer.start()
    try:
        reply = session.execute("", None, silent=True, store_history=False, user_expressions={"r": "time.sleep(0.3) or 'x'"})
    finally:
        timer.join()
    assert reply["status"] == "ok" and reply.get("interrupted"), reply
    assert reply["user_expressions"]["r"].get("ename") in (None, "KeyboardInterrupt"), reply
    assert time.monotonic() - began < 2.0

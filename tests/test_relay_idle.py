"""Text the reader relays is never held back while the socket is idle, whatever frames
(pings, pongs) arrive after it, and whatever way the request ends.

Real parts only: a real jupyter_server pinging often, reached through a loopback proxy that
delivers what the server sends in bursts (as a busy network path does), real ipykernels.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


from .frontend_driver import Frontend, routed_on_own_server
from .tcp_proxy import TcpProxy

#: how long the proxy gathers what the server sends before passing it on in one write
BURST = 0.2
#: the server's websocket ping interval: several pings fall in each burst
PING_EVERY = 0.02
#: bytes a second through the slow proxy
RATE = 1_000_000


class _WebsocketProxy(TcpProxy):
    """Shapes what a server sends on a websocket (after its ``101`` answer); HTTP passes as is."""

    def __init__(self, target_port: int) -> None:
        self._upgraded: set[int] = set()  # ids of the server-side sockets past their 101
        super().__init__(target_port)

    def _forward(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        if id(src) in self._upgraded:
            self._pass(src, dst, data)
            return
        if data.startswith(b"HTTP/1.1 101"):
            self._upgraded.add(id(src))
        dst.sendall(data)

    def _pass(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        dst.sendall(data)


class BurstProxy(_WebsocketProxy):
    """Passes a websocket's bytes on in bursts of :data:`BURST` seconds, so a frame and the
    pings after it reach the client in one read."""

    def _pass(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        dst.sendall(data + _gather(src, time.monotonic() + BURST))


class SlowProxy(_WebsocketProxy):
    """Passes a websocket's bytes on at :data:`RATE` bytes a second, as a slow link does
    (what the server sends close together travels together)."""

    def _pass(self, src: socket.socket, dst: socket.socket, data: bytes) -> None:
        data += _gather(src, time.monotonic() + BURST)
        for start in range(0, len(data), RATE // 20):
            dst.sendall(data[start : start + RATE // 20])
            time.sleep(0.05)


def _gather(src: socket.socket, until: float) -> bytes:
    """What ``src`` sends until ``until`` (or its end)."""
    gathered = b""
    while (left := until - time.monotonic()) > 0 and select.select([src], [], [], left)[0]:
        more = src.recv(65536)
        if not more:
            break
        gathered += more
    return gathered


@pytest.fixture
def bursty(tmp_path: Path) -> Iterator[Frontend]:
    with routed_on_own_server(tmp_path, BurstProxy, ws_ping_interval=PING_EVERY, ws_ping_timeout=30) as driver:
        yield driver


@pytest.mark.timeout(120)
def test_a_line_printed_before_a_long_computation_is_shown_at_once(bursty: Frontend) -> None:
    """"epoch n" then minutes of work: the line is on the page while the work runs, not when
    the next line comes (the pings behind it in the same read used to keep it held)."""
    msg_id, reply = bursty.execute("import time\nfor n in range(3):\n    print(f'epoch {n}', flush=True)\n    time.sleep(2.5)", timeout=60)
    assert reply["content"]["status"] == "ok"
    streams = bursty.of(msg_id, "stream")
    assert [m["content"]["text"] for m in streams] == [f"epoch {n}\n" for n in range(3)], "each line came on its own"
    idle = bursty.of(msg_id, "status")[-1]["received"]
    gaps = [later["received"] - line["received"] for line, later in zip(streams, [*streams[1:], {"received": idle}])]
    assert min(gaps) > 1.5, f"a line reached the page only with what came after it: {gaps}"


@pytest.fixture
def slow(tmp_path: Path) -> Iterator[Frontend]:
    with routed_on_own_server(tmp_path, SlowProxy, limit_rate=False) as driver:
        yield driver


@pytest.mark.timeout(120)
def test_text_held_when_the_user_stops_waiting_comes_before_the_cells_end(slow: Frontend) -> None:
    """The remote prints, then sends a big display (seconds on this link) and ignores Ctrl-C;
    the user stops waiting (Ctrl-C twice). The text that had arrived is shown before the
    cell's traceback and idle, not after them with the display."""
    _, reply = slow.execute("import signal\nfrom IPython.display import display")
    assert reply["content"]["status"] == "ok"
    msg_id = slow.kc.execute(
        "signal.signal(signal.SIGINT, lambda *_: None)\n"
        "print('last words', flush=True)\n"
        "display({'text/plain': 'x' * 8_000_000}, raw=True)"  # 8 s on this link: a loaded machine's late stop still comes first
    )
    time.sleep(2.0)  # the text is in; the display is still on its way
    for _ in range(2):
        slow.kernel.km.interrupt_kernel()
        time.sleep(0.5)
    reply = slow.wait_reply(msg_id, timeout=30)
    assert reply["content"]["ename"] == "StopWaiting", reply["content"]
    slow.wait_idle(msg_id)
    slow.wait_for(lambda m: Frontend.parent(m) == msg_id and m["msg_type"] == "display_data", timeout=60)
    kinds = [m["msg_type"] if m["msg_type"] != "status" else m["content"]["execution_state"] for m in slow.of(msg_id)]
    assert kinds.index("stream") < kinds.index("error") < kinds.index("idle") < kinds.index("display_data"), kinds


@pytest.fixture
def direct(tmp_path: Path) -> Iterator[Frontend]:
    with routed_on_own_server(tmp_path, limit_rate=False) as driver:  # 3,000 messages a second are not the limiter's to drop
        yield driver


@pytest.mark.timeout(120)
def test_lines_flushed_one_by_one_reach_the_page_joined_whole_and_in_order(direct: Frontend) -> None:
    """A remote printing line by line (flush each) sends a message per line; the page gets the
    same text in a few messages, as ipykernel's own buffered stream would send it."""
    lines = 3000
    msg_id, reply = direct.execute(f"import sys\nfor i in range({lines}):\n    print(i, flush=True)\n    print(-i, file=sys.stderr, flush=True) if i % 1000 == 999 else None", timeout=60)
    assert reply["content"]["status"] == "ok"
    direct.wait_idle(msg_id)
    streams = [m["content"] for m in direct.of(msg_id, "stream")]
    stdout = "".join(s["text"] for s in streams if s["name"] == "stdout")
    assert stdout == "".join(f"{i}\n" for i in range(lines)), [(s["name"], s["text"][-40:]) for s in streams[-4:]]
    order = "".join(s["text"] for s in streams)
    assert order.index("999\n-999\n1000\n") >= 0 and order.index("2999\n-2999\n") >= 0, "stderr kept its place between the lines"
    assert len(streams) < lines / 5, f"{len(streams)} messages for {lines} lines"


@pytest.mark.timeout(120)
def test_a_line_printed_just_before_a_big_display_does_not_wait_for_it(slow: Frontend) -> None:
    """The line and the start of a 3 MB display reach the reader in one read (the proxy passes on
    what the server sends within 0.2 s together, after the pause that lets busy go first); the
    display then takes seconds on this link. The line is on the page at once, as natively."""
    _, reply = slow.execute("import time\nfrom IPython.display import display\nbig = {'text/plain': 'x' * 3_000_000}")
    assert reply["content"]["status"] == "ok"
    msg_id, reply = slow.execute("time.sleep(0.5)\nprint('first', flush=True)\ndisplay(big, raw=True)", timeout=60)
    assert reply["content"]["status"] == "ok"
    slow.wait_idle(msg_id)
    [line] = slow.of(msg_id, "stream")
    [shown] = slow.of(msg_id, "display_data")
    assert line["content"]["text"] == "first\n"
    assert shown["received"] - line["received"] > 1.5, "the line waited for the display behind it"

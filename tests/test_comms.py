"""The comm bridge at the message level: a frontend talks to a local kernel in remote
mode exactly as JupyterLab's widget manager would, and sees what it would natively.

Real parts only: a real jupyter_server with real ipykernels (ipywidgets installed) as
the remote side, a real local ipykernel with the extension, driven over ZeroMQ.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .frontend_driver import Frontend, routed_frontend
from .tcp_proxy import TcpProxy

#: a remote comm target that echoes data and buffers back, counting what it got
ECHO_TARGET = """
from comm import create_comm, get_comm_manager
received = []
def _echo_open(comm, open_msg):
    received.append(('open', open_msg['content']['data']))
    comm.on_msg(lambda msg: (received.append(('msg', msg['content']['data'])),
                             comm.send({'echo': msg['content']['data']}, metadata={'m': 1}, buffers=msg['buffers'])))
    comm.send({'opened': open_msg['content']['data']})
get_comm_manager().register_target('echo_target', _echo_open)
"""


@pytest.fixture
def frontend(remote_server: LocalServer, tmp_path: Path) -> Iterator[Frontend]:
    driver = routed_frontend(tmp_path, remote_server.url, remote_server.token)
    yield driver
    driver.shutdown()


def _ok(frontend: Frontend, code: str) -> str:
    msg_id, reply = frontend.execute(code)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msg_id


def _value(frontend: Frontend, expression: str) -> str:
    msg_id = _ok(frontend, expression)
    return str(frontend.of(msg_id, "execute_result")[0]["content"]["data"]["text/plain"])


def _comm_opens(frontend: Frontend, msg_id: str) -> list[dict]:  # type: ignore[type-arg]
    return [m["content"] for m in frontend.of(msg_id, "comm_open")]


@pytest.mark.timeout(60)
def test_a_remote_comm_reaches_the_frontend_unchanged_and_answers_it(frontend: Frontend) -> None:
    """Kernel -> frontend: comm_open with data, metadata and buffers, parented to the cell.
    Frontend -> kernel: comm_msg with buffers reaches the remote handler, whose reply comes
    back parented to the frontend's message, and the local kernel is busy until then."""
    cell = _ok(frontend, "from comm import create_comm\n"
                         "c = create_comm(target_name='my.target', data={'a': 1}, metadata={'v': '2'}, buffers=[b'\\x00bytes'])\n"
                         "got = []\n"
                         "c.on_msg(lambda m: (got.append(m['content']['data']), c.send({'seen': len(got)}, buffers=m['buffers'])))")
    [opened] = frontend.of(cell, "comm_open")
    assert opened["content"]["target_name"] == "my.target" and opened["content"]["data"] == {"a": 1}
    assert opened["metadata"] == {"v": "2"} and [bytes(b) for b in opened["buffers"]] == [b"\x00bytes"]
    comm_id = opened["content"]["comm_id"]

    sent = frontend.send("comm_msg", {"comm_id": comm_id, "data": {"x": [1, 2]}}, buffers=[b"\xff" * 1000, b"two"])
    frontend.wait_idle(sent)
    [echo] = frontend.of(sent, "comm_msg")
    assert echo["content"] == {"comm_id": comm_id, "data": {"seen": 1}}
    assert [bytes(b) for b in echo["buffers"]] == [b"\xff" * 1000, b"two"]
    statuses = [m["content"]["execution_state"] for m in frontend.of(sent, "status")]
    assert statuses == ["busy", "idle"]
    busy, idle = frontend.of(sent, "status")
    assert busy["received"] <= echo["received"] <= idle["received"], "the reply came while the kernel was busy with the message"
    assert _value(frontend, "got") == "[{'x': [1, 2]}]"

    # comm_info lists the bridged comm with its target, beside the local ones
    info = frontend.request("comm_info_request", {})["content"]
    assert info["comms"][comm_id] == {"target_name": "my.target"}
    assert frontend.request("comm_info_request", {"target_name": "other"})["content"]["comms"] == {}

    # the remote closes it: the frontend hears, and a late message to it is dropped without harm
    closed = _ok(frontend, "c.close()")
    assert [m["content"]["comm_id"] for m in frontend.of(closed, "comm_close")] == [comm_id]
    late = frontend.send("comm_msg", {"comm_id": comm_id, "data": {"x": "late"}})
    frontend.wait_idle(late)
    assert _value(frontend, "len(got)") == "1"
    assert comm_id not in frontend.request("comm_info_request", {})["content"]["comms"]


@pytest.mark.timeout(60)
def test_a_frontend_opens_a_comm_on_a_remote_target(frontend: Frontend) -> None:
    """e.g. the widget manager's control comm: opened by the page, on a target the remote registered."""
    _ok(frontend, ECHO_TARGET)
    opened = frontend.send("comm_open", {"comm_id": "page-comm-1", "target_name": "echo_target", "data": {"hello": 1}})
    frontend.wait_idle(opened)
    assert [m["content"]["data"] for m in frontend.of(opened, "comm_msg")] == [{"opened": {"hello": 1}}]
    sent = frontend.send("comm_msg", {"comm_id": "page-comm-1", "data": {"n": 5}}, buffers=[b"abc"])
    frontend.wait_idle(sent)
    [echo] = frontend.of(sent, "comm_msg")
    assert echo["content"]["data"] == {"echo": {"n": 5}} and echo["metadata"] == {"m": 1}
    assert [bytes(b) for b in echo["buffers"]] == [b"abc"]
    closing = frontend.send("comm_close", {"comm_id": "page-comm-1", "data": {}})
    frontend.wait_idle(closing)
    assert _value(frontend, "[kind for kind, _ in received]") == "['open', 'msg']"
    assert _value(frontend, "len(get_comm_manager().comms)") == "0"  # the remote closed its end too
    # a target nobody registered: the remote refuses it with a comm_close, no hang
    unknown = frontend.send("comm_open", {"comm_id": "page-comm-2", "target_name": "no.such.target", "data": {}})
    frontend.wait_idle(unknown)
    assert [m["content"]["comm_id"] for m in frontend.of(unknown, "comm_close")] == ["page-comm-2"]


@pytest.mark.timeout(90)
def test_widgets_sync_both_ways_and_callbacks_print_where_they_do_natively(frontend: Frontend) -> None:
    cell = _ok(frontend, "import ipywidgets as w\nseen = []\ns = w.IntSlider(value=3)\n"
                         "s.observe(lambda change: seen.append(change['new']), 'value')\ndisplay(s)")
    slider = next(c for c in _comm_opens(frontend, cell) if c["data"]["state"]["_model_name"] == "IntSliderModel")
    assert slider["data"]["state"]["value"] == 3
    [view] = frontend.of(cell, "display_data")
    assert view["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == slider["comm_id"]

    # kernel -> page
    changed = _ok(frontend, "s.value = 7")
    assert [m["content"]["data"] for m in frontend.of(changed, "comm_msg")] == [
        {"method": "update", "state": {"value": 7}, "buffer_paths": []}]
    # page -> kernel: the observer runs remotely, the echo comes back to the page
    moved = frontend.send("comm_msg", {"comm_id": slider["comm_id"], "data": {"method": "update", "state": {"value": 9}, "buffer_paths": []}})
    frontend.wait_idle(moved)
    assert any(m["content"]["data"].get("method") == "echo_update" for m in frontend.of(moved, "comm_msg"))
    assert _value(frontend, "s.value, seen") == "(9, [7, 9])"

    # a Button whose callback prints into an Output widget, clicked after its cell ended
    cell = _ok(frontend, "out = w.Output()\nb = w.Button(description='go')\n"
                         "def clicked(button):\n    with out:\n        print('clicked!')\n"
                         "b.on_click(clicked)\ndisplay(b, out)")
    opens = _comm_opens(frontend, cell)
    button = next(c for c in opens if c["data"]["state"]["_model_name"] == "ButtonModel")
    output = next(c for c in opens if c["data"]["state"]["_model_name"] == "OutputModel")
    click = frontend.send("comm_msg", {"comm_id": button["comm_id"], "data": {"method": "custom", "content": {"event": "click"}}})
    frontend.wait_idle(click)
    # the Output widget claims the click's msg_id, so the page routes the print into it
    claims = [m["content"]["data"]["state"]["msg_id"] for m in frontend.of(click, "comm_msg")
              if m["content"]["comm_id"] == output["comm_id"] and "msg_id" in m["content"]["data"].get("state", {})]
    assert claims == [click, ""]
    assert frontend.text(click) == "clicked!\n"


@pytest.mark.timeout(60)
def test_output_widget_capture_inside_a_cell_names_the_cell(frontend: Frontend) -> None:
    cell = _ok(frontend, "import ipywidgets as w\nout = w.Output()\ndisplay(out)\nwith out:\n    print('inside')\nprint('outside')")
    output = next(c for c in _comm_opens(frontend, cell) if c["data"]["state"]["_model_name"] == "OutputModel")
    claims = [m["content"]["data"]["state"]["msg_id"] for m in frontend.of(cell, "comm_msg")
              if m["content"]["comm_id"] == output["comm_id"] and "msg_id" in m["content"]["data"].get("state", {})]
    assert claims == [cell, ""], "the remote Output widget claims the local cell's msg_id"
    # order as sent: the capture claim, the captured text, the release, then the cell's own text
    order = [(m["msg_type"], m["content"].get("text")) for m in frontend.of(cell, "comm_msg", "stream")
             if m["msg_type"] == "stream" or m["content"]["comm_id"] == output["comm_id"]]
    assert order == [("comm_msg", None), ("stream", "inside\n"), ("comm_msg", None), ("stream", "outside\n")]


@pytest.mark.timeout(90)
def test_remote_restart_and_death_close_the_remote_widgets(frontend: Frontend, tmp_path: Path, own_server: LocalServer) -> None:
    cell = _ok(frontend, "import ipywidgets as w\ns = w.IntSlider()\ndisplay(s)")
    remote_ids = {c["comm_id"] for c in _comm_opens(frontend, cell)}
    local = _ok(frontend, "%%local\nfrom comm import create_comm\nmine = create_comm(target_name='local.target')")
    [local_comm] = _comm_opens(frontend, local)
    restart = _ok(frontend, "%binder_restart")
    closed = {m["content"]["comm_id"] for m in frontend.of(restart, "comm_close")} | {
        m["content"]["comm_id"] for m in frontend.messages(lambda m: m["msg_type"] == "comm_close" and not Frontend.parent(m))}
    assert remote_ids <= closed and local_comm["comm_id"] not in closed
    assert local_comm["comm_id"] in frontend.request("comm_info_request", {})["content"]["comms"]
    assert not remote_ids & set(frontend.request("comm_info_request", {})["content"]["comms"])

    # the remote kernel dies: its new widgets are closed on the page; a message to one says why, and never hangs
    cell = _ok(frontend, "import ipywidgets as w, os\ns = w.IntSlider()\ndisplay(s)\npid = os.getpid()")
    slider = next(c for c in _comm_opens(frontend, cell) if c["data"]["state"]["_model_name"] == "IntSliderModel")
    pid = int(_value(frontend, "pid"))
    os.kill(pid, signal.SIGKILL)
    frontend.wait_for(lambda m: m["msg_type"] == "comm_close" and m["content"]["comm_id"] == slider["comm_id"], timeout=30)


@pytest.mark.timeout(90)
def test_a_widget_event_for_a_gone_server_says_so(own_server: LocalServer, tmp_path: Path) -> None:
    frontend = routed_frontend(tmp_path, own_server.url, own_server.token)
    try:
        cell = _ok(frontend, "from comm import create_comm\nc = create_comm(target_name='t')")
        [opened] = _comm_opens(frontend, cell)
        own_server.stop()
        frontend.wait_for(lambda m: m["msg_type"] == "comm_close" and m["content"]["comm_id"] == opened["comm_id"], timeout=30)
        # said once, under the cell whose widget stopped
        [notice] = frontend.wait_for(lambda m: Frontend.parent(m) == cell and "widgets stopped" in m["content"].get("text", "")) and \
            [m for m in frontend.of(cell, "stream") if "widgets stopped" in m["content"]["text"]]
        assert notice["content"]["name"] == "stderr" and notice["content"]["text"].count("\n") == 1
        assert "relaunch" in notice["content"]["text"]
        late = frontend.send("comm_msg", {"comm_id": opened["comm_id"], "data": {}})
        frontend.wait_idle(late, timeout=20)  # no hang: dropped (the comm is closed on the page)
        cell, reply = frontend.execute("1 + 1")
        assert reply["content"]["status"] == "error"
        [error] = frontend.of(cell, "error")
        assert "relaunch" in error["content"]["evalue"] and len(error["content"]["traceback"]) == 1
    finally:
        frontend.shutdown()


def _comm_message_through_a_drop(own_server: LocalServer, tmp_path: Path, disturb: Callable[[TcpProxy], object]) -> str:
    """Open a remote comm, ``disturb`` the connection, send the comm a message: what the remote got."""
    proxy = TcpProxy(own_server.port)
    frontend = routed_frontend(tmp_path, own_server.url.replace(f":{own_server.port}", f":{proxy.port}"), own_server.token)
    try:
        cell = _ok(frontend, "from comm import create_comm\ngot = []\nc = create_comm(target_name='t')\n"
                             "c.on_msg(lambda m: got.append(m['content']['data']))")
        [opened] = _comm_opens(frontend, cell)
        disturb(proxy)
        sent = frontend.send("comm_msg", {"comm_id": opened["comm_id"], "data": {"n": 1}})
        frontend.wait_idle(sent, timeout=30)
        return _value(frontend, "got")
    finally:
        frontend.shutdown()
        proxy.close()


@pytest.mark.timeout(60)
def test_a_comm_message_during_a_reconnect_is_delivered_once(own_server: LocalServer, tmp_path: Path) -> None:
    assert _comm_message_through_a_drop(own_server, tmp_path, TcpProxy.cut) == "[{'n': 1}]"


@pytest.mark.timeout(60)
def test_a_comm_message_lost_on_its_way_in_a_drop_is_sent_again_and_delivered_once(own_server: LocalServer, tmp_path: Path) -> None:
    def lose_then_cut(proxy: TcpProxy) -> None:
        proxy.freeze(toward="server")  # the widget event vanishes on the way, then the connection drops
        threading.Timer(0.5, proxy.cut).start()

    assert _comm_message_through_a_drop(own_server, tmp_path, lose_then_cut) == "[{'n': 1}]"


@pytest.mark.timeout(60)
def test_an_oversized_frontend_message_is_refused_in_one_sentence(frontend: Frontend) -> None:
    cell = _ok(frontend, "from comm import create_comm\ngot = []\nc = create_comm(target_name='t')\n"
                         "c.on_msg(lambda m: got.append(len(m['buffers'][0])))")
    [opened] = _comm_opens(frontend, cell)
    big = frontend.send("comm_msg", {"comm_id": opened["comm_id"], "data": {}}, buffers=[b"x" * (11 * 2**20)])
    frontend.wait_idle(big)
    text = frontend.text(big)
    assert "binder_autorun:" in text and "MB" in text and "websocket_max_message_size" in text
    assert text.count("\n") == 1
    small = frontend.send("comm_msg", {"comm_id": opened["comm_id"], "data": {}}, buffers=[b"y" * 1000])
    frontend.wait_idle(small)
    assert _value(frontend, "got") == "[1000]"  # the connection survived; the widget still works


@pytest.mark.timeout(60)
def test_widgets_stay_live_after_binder_off_and_local_widgets_stay_local(frontend: Frontend) -> None:
    cell = _ok(frontend, "from comm import create_comm\ngot = []\nc = create_comm(target_name='t')\n"
                         "c.on_msg(lambda m: got.append(m['content']['data']))")
    [remote] = _comm_opens(frontend, cell)
    local_cell = _ok(frontend, "%%local\nfrom comm import create_comm\nmine = []\nlc = create_comm(target_name='lt')\n"
                               "lc.on_msg(lambda m: mine.append(m['content']['data']))")
    [local] = _comm_opens(frontend, local_cell)
    _ok(frontend, "%binder_off")
    for comm_id, data in ((remote["comm_id"], {"to": "remote"}), (local["comm_id"], {"to": "local"})):
        frontend.wait_idle(frontend.send("comm_msg", {"comm_id": comm_id, "data": data}))
    assert _value(frontend, "mine") == "[{'to': 'local'}]"  # remote mode is off: this cell is local
    _ok(frontend, "%binder_on")
    assert _value(frontend, "got") == "[{'to': 'remote'}]"


@pytest.mark.timeout(120)
def test_a_burst_of_updates_arrives_in_order(frontend: Frontend) -> None:
    """A burst of 300 slider updates from the page arrives in order, none lost."""
    cell = _ok(frontend, "import ipywidgets as w\nvalues = []\ns = w.IntSlider(max=1000)\n"
                         "s.observe(lambda change: values.append(change['new']), 'value')")
    slider = next(c for c in _comm_opens(frontend, cell) if c["data"]["state"]["_model_name"] == "IntSliderModel")
    started = time.monotonic()
    sent = [frontend.send("comm_msg", {"comm_id": slider["comm_id"],
                                       "data": {"method": "update", "state": {"value": n}, "buffer_paths": []}})
            for n in range(1, 301)]
    frontend.wait_idle(sent[-1], timeout=60)
    assert time.monotonic() - started < 60
    assert _value(frontend, "values == list(range(1, 301))") == "True"


@pytest.mark.timeout(60)
def test_nothing_is_kept_after_requests_end(frontend: Frontend) -> None:
    """A widget event's buffers are not kept to parent later output (headers are enough), and
    an input() leaves no routing behind (its output barrier is forgotten with the cell)."""
    cell = _ok(frontend, "from comm import create_comm\nc = create_comm(target_name='t')")
    [opened] = _comm_opens(frontend, cell)
    frontend.wait_idle(frontend.send("comm_msg", {"comm_id": opened["comm_id"], "data": {}}, buffers=[b"z" * 2_000_000]))
    msg_id = frontend.kc.execute("v = input('? ')", allow_stdin=True)
    frontend.wait_reply(msg_id, answers=lambda request: "ok")
    frontend.wait_idle(msg_id)
    state = _ok(frontend, "%%local\nimport binder_autorun\nauto = binder_autorun._autorun\n"
                          "print(sorted({tuple(p) for p in auto.bridge._parents.values()}), len(auto.session.channel._inboxes))")
    assert frontend.text(state).strip() == "[('header',)] 0"


@pytest.mark.timeout(60)
def test_a_widget_update_reaches_the_page_while_the_user_is_asked(frontend: Frontend) -> None:
    """A remote thread moves a slider while input() waits for the user: the page gets the
    update before the answer, as natively."""
    _ok(frontend, "import ipywidgets as w, threading, time\ns = w.IntSlider()\ndisplay(s)")
    seen: list[bool] = []

    def moved(m: dict) -> bool:  # type: ignore[type-arg]
        return m["msg_type"] == "comm_msg" and m["content"]["data"].get("state", {}).get("value") == 7

    def answer(request: dict) -> str:  # type: ignore[type-arg]
        try:
            frontend.wait_for(moved, timeout=10)
            seen.append(True)
        except TimeoutError:
            seen.append(False)
        return "ok"

    msg_id = frontend.kc.execute(
        "threading.Thread(target=lambda: (time.sleep(0.3), setattr(s, 'value', 7))).start()\nv = input('wait> ')",
        allow_stdin=True,
    )
    assert frontend.wait_reply(msg_id, answers=answer)["content"]["status"] == "ok"
    assert seen == [True], "the update waited for the answer"

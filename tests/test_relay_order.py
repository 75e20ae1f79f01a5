"""One order for everything the remote sends: the frontend sees the remote's IOPub order,
whichever request a message answers (the running cell, an earlier cell's thread, a widget
event) and whatever the local kernel does with it.

Real parts only: a real jupyter_server (IOPub rate limits lifted, so a burst is not
thinned by the limiter) with real ipykernels, a real local ipykernel with the extension.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


from .frontend_driver import Frontend, routed_on_own_server

#: comm messages sent by each side; the old two-publisher bridge swapped ~2% of them
PER_SIDE = 3000

#: a comm whose messages carry one sequence number, taken and sent under one lock, so the
#: remote publishes them in sequence order; ``send`` parents them to the request it is given
#: (an earlier cell's, as a thread of that cell does on kernels that keep a thread's parent)
SEQUENCED_COMM = f"""
import threading
from comm import create_comm
k = get_ipython().kernel
c = create_comm(target_name='sequenced')
lock, seq, go, opener = threading.Lock(), [0], threading.Event(), k.get_parent()
def send(n, parent):
    for _ in range(n):
        with lock:
            seq[0] += 1
            k.session.send(k.iopub_socket, 'comm_msg', {{'comm_id': c.comm_id, 'data': {{'seq': seq[0]}}}}, parent=parent)
t = threading.Thread(target=lambda: (go.wait(), send({PER_SIDE}, opener)))
t.start()
"""


@pytest.fixture
def frontend(tmp_path: Path) -> Iterator[Frontend]:
    with routed_on_own_server(tmp_path, limit_rate=False) as driver:
        yield driver


def _ok(frontend: Frontend, code: str, timeout: float = 30) -> str:
    msg_id, reply = frontend.execute(code, timeout=timeout)
    assert reply["content"]["status"] == "ok", reply["content"]
    return msg_id


@pytest.mark.timeout(120)
def test_comm_messages_of_an_earlier_cells_thread_and_the_running_cell_keep_the_remote_order(frontend: Frontend) -> None:
    """A widget updated at once by a thread an earlier cell started (its messages belong to no
    running request) and by the running cell: the page gets every update in the remote's order."""
    _ok(frontend, SEQUENCED_COMM)
    cell = _ok(frontend, f"go.set()\nsend({PER_SIDE}, k.get_parent())\nt.join()", timeout=90)
    frontend.wait_for(lambda m: m["msg_type"] == "comm_msg" and m["content"]["data"].get("seq") == 2 * PER_SIDE, timeout=30)
    seqs = [m["content"]["data"]["seq"] for m in frontend.messages(lambda m: m["msg_type"] == "comm_msg" and "seq" in m["content"]["data"])]
    assert sorted(seqs) == list(range(1, 2 * PER_SIDE + 1)), "every update arrives once"
    from_cell = len(frontend.of(cell, "comm_msg"))
    assert 0 < from_cell < 2 * PER_SIDE, "both the running cell and the thread sent some"
    swapped = sum(a > b for a, b in zip(seqs, seqs[1:]))
    assert swapped == 0, f"{swapped} of {len(seqs)} updates arrived out of the remote's order"

"""A reply whose socket wake-up was taken by a send is still seen (jupyter/nbclient#312).

nbclient sends Output-widget ``comm_msg``s on the shell socket it is waiting on; a send
at the moment a reply arrives consumes the socket's wake-up, and the reply then sat
unseen until the wait timed out (a 60 s stall, or a hang without a timeout). Real parts:
a real ipykernel and jupyter_client's asyncio client; the wake-up is taken exactly as a
send takes it — by libzmq processing the socket's pending commands outside the event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import zmq
from jupyter_client.manager import AsyncKernelManager

from binder_autorun.routed_client import SHELL_POLL_SLICE, poll_shell_in_slices

WAIT = 4.0  # the wait's own timeout: what a lost wake-up costs without slices


async def _reply_after_a_lost_wakeup(sliced: bool) -> tuple[dict[str, Any], float]:
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel()
    ready = km.client()
    ready.start_channels(hb=False)
    # wait_for_ready asks again each second: on a slow machine replies to its earlier asks
    # still come, so the wait below uses a client of its own
    kc = km.client()
    try:
        await ready.wait_for_ready(timeout=60)
        kc.start_channels(hb=False)
        if sliced:
            poll_shell_in_slices(kc)
        waiting = asyncio.ensure_future(kc.shell_channel.get_msg(timeout=WAIT))
        await asyncio.sleep(0.2)  # the wait is registered on the socket
        msg_id = kc.kernel_info()
        # hold the event loop while the reply arrives, then take its wake-up as a send would
        raw = zmq.Socket.shadow(kc.shell_channel.socket.underlying)
        deadline = time.monotonic() + 30
        while not raw.get(zmq.EVENTS) & zmq.POLLIN and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raw.get(zmq.EVENTS) & zmq.POLLIN, "the kernel answered"
        began = time.monotonic()
        reply = await waiting
        assert reply["parent_header"]["msg_id"] == msg_id
        return reply, time.monotonic() - began
    finally:
        kc.stop_channels()
        ready.stop_channels()
        await km.shutdown_kernel(now=True)


@pytest.mark.timeout(90)
def test_a_reply_whose_wakeup_a_send_took_is_seen_within_a_slice() -> None:
    reply, waited = asyncio.run(_reply_after_a_lost_wakeup(sliced=True))
    assert reply["msg_type"] == "kernel_info_reply"
    assert waited < SHELL_POLL_SLICE + 1.0, f"the reply waited {waited:.1f} s"


@pytest.mark.timeout(90)
def test_without_slices_the_same_reply_waits_for_the_timeout() -> None:
    """The case above is the real one: unsliced, jupyter_client sees the reply only when its wait ends."""
    _, waited = asyncio.run(_reply_after_a_lost_wakeup(sliced=False))
    assert waited > WAIT - 1.0, f"the reply was seen after {waited:.1f} s"

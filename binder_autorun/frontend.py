"""The local frontend as seen from a remote message: where to re-send it, and how.

Inside a cell the display mirror (``mirror.py``) goes through IPython's own
display machinery. Everything else — output that arrives after its cell ended,
output while the main thread waits at an ``input()`` prompt, comm traffic — is
sent from other threads and with a parent of its own (the cell or widget event
that caused it), which IPython's machinery cannot do. A :class:`LocalFrontend`
does exactly that: the notebook's kernel re-sends the message on its IOPub with
the chosen parent header, unchanged (content, metadata, binary buffers); a
terminal prints what a terminal would show.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, Protocol

from . import wire

log = logging.getLogger(__name__)

#: ZeroMQ topic of what we re-send on the local IOPub (frontends do not read topics)
TOPIC = b"binder_autorun"


class LocalFrontend(Protocol):
    """Shows a remote message as the local kernel's own, parented to ``parent``."""

    #: whether comm messages reach anything (a terminal has no widgets)
    has_comms: bool

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        """Re-send ``msg`` to the frontend with ``parent`` (a message whose header the frontend knows)."""

    def drain(self, timeout: float = 2.0) -> None:
        """Return once everything sent so far is out (before the frontend is asked for input
        on another channel, which would otherwise overtake it)."""


class KernelFrontend:
    """The frontends of the local ipykernel (JupyterLab, Notebook, VS Code, nbclient).

    Thread-safe: ipykernel's IOPub socket hands every send to its IOPub thread,
    which also keeps the order with the shell's own streams and displays.
    """

    has_comms = True

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        kernel = self.kernel
        kernel.session.send(
            kernel.iopub_socket,
            wire.msg_type(msg),
            msg.get("content") or {},
            parent=parent,
            metadata=msg.get("metadata") or {},
            buffers=list(msg.get("buffers") or []) or None,
            ident=TOPIC,
        )

    def drain(self, timeout: float = 2.0) -> None:
        io_thread = getattr(self.kernel.iopub_socket, "io_thread", None)
        if io_thread is None:
            return
        done = threading.Event()
        io_thread.schedule(done.set)  # runs after the sends queued before it
        done.wait(timeout)


class TerminalFrontend:
    """A terminal IPython: text is printed as it would be printed natively."""

    has_comms = False

    def send(self, msg: wire.Message, parent: wire.Message) -> None:
        kind, content = wire.msg_type(msg), msg.get("content") or {}
        if kind == "stream":
            stream = sys.stderr if content.get("name") == "stderr" else sys.stdout
            stream.write(str(content.get("text", "")))
            stream.flush()
        elif kind in ("display_data", "update_display_data", "execute_result"):
            text = (content.get("data") or {}).get("text/plain")
            if text is not None:
                print(text, flush=True)
        elif kind == "error":
            print("\n".join(content.get("traceback") or [f"{content.get('ename')}: {content.get('evalue')}"]), flush=True)

    def drain(self, timeout: float = 2.0) -> None:
        pass  # printed at once


def frontend_for(shell: Any) -> LocalFrontend:
    """The frontend of ``shell``: its kernel's IOPub, or the terminal."""
    kernel = getattr(shell, "kernel", None)
    if kernel is not None and getattr(kernel, "iopub_socket", None) is not None:
        return KernelFrontend(kernel)
    return TerminalFrontend()

"""A frontend at the message level: a real local ipykernel, every IOPub message kept.

Where kernel_driver.LocalKernel reads one cell's messages and stops at its idle,
this driver keeps listening (a background thread records every IOPub message in
arrival order), so tests see what arrives after a cell ended, and it sends what a
widget frontend sends: comm_open, comm_msg (with binary buffers), comm_close,
comm_info_request.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from binder_autorun.autorun import TOKEN_ENV
from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel

Message = dict[str, Any]


class Frontend:
    """A local kernel (the notebook's) with a recorder on its IOPub."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.kernel = LocalKernel(cwd, env)
        self.kc = self.kernel.kc
        self.iopub: list[Message] = []  # every IOPub message, in arrival order
        self.stdin: queue.Queue[Message] = queue.Queue()
        self._lock = threading.Lock()
        self._stopped = False
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stopped:
            try:
                msg = self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                continue
            except Exception:  # channels closed at shutdown
                return
            msg["received"] = time.monotonic()
            with self._lock:
                self.iopub.append(msg)

    # -- requests ------------------------------------------------------------

    def execute(self, code: str, answers: Callable[[Message], str] | None = None, timeout: float = 30) -> tuple[str, Message]:
        """Run a cell to its end (reply and idle); answer input requests with ``answers``."""
        msg_id = self.kc.execute(code, allow_stdin=answers is not None)
        reply = self.wait_reply(msg_id, timeout, answers)
        self.wait_for(lambda m: self.parent(m) == msg_id and m["msg_type"] == "status"
                      and m["content"]["execution_state"] == "idle", timeout)
        return msg_id, reply

    def wait_reply(self, msg_id: str, timeout: float = 30, answers: Callable[[Message], str] | None = None) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers is not None:
                try:
                    request = self.kc.get_stdin_msg(timeout=0.01)
                except queue.Empty:
                    pass
                else:
                    request["received"] = time.monotonic()
                    self.stdin.put(request)
                    self.kc.input(answers(request))
            try:
                msg = self.kc.get_shell_msg(timeout=0.01)
            except queue.Empty:
                continue
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg
        raise TimeoutError(f"no reply to {msg_id} within {timeout} s")

    def send(self, msg_type: str, content: dict[str, Any], buffers: list[bytes] | None = None) -> str:
        """Send a shell message as a widget frontend would; returns its msg_id."""
        msg = self.kc.session.msg(msg_type, content)
        self.kc.session.send(self.kc.shell_channel.socket, msg, buffers=buffers or [])
        return str(msg["header"]["msg_id"])

    def request(self, msg_type: str, content: dict[str, Any], timeout: float = 20) -> Message:
        """Send a shell request and return its reply."""
        return self.wait_reply(self.send(msg_type, content), timeout)

    def wait_idle(self, msg_id: str, timeout: float = 20) -> None:
        """Until the local kernel is idle after handling ``msg_id``."""
        self.wait_for(lambda m: self.parent(m) == msg_id and m["msg_type"] == "status"
                      and m["content"]["execution_state"] == "idle", timeout)

    # -- what arrived ----------------------------------------------------------

    @staticmethod
    def parent(msg: Message) -> str | None:
        return msg["parent_header"].get("msg_id")

    def messages(self, predicate: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        with self._lock:
            return [m for m in self.iopub if predicate(m)]

    def of(self, msg_id: str, *types: str) -> list[Message]:
        """IOPub messages parented to ``msg_id`` (of the given types, if any)."""
        return self.messages(lambda m: self.parent(m) == msg_id and (not types or m["msg_type"] in types))

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 20) -> Message:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.messages(predicate)
            if found:
                return found[0]
            time.sleep(0.01)
        raise TimeoutError(f"no matching IOPub message within {timeout} s")

    def text(self, msg_id: str) -> str:
        """The stream text parented to ``msg_id``."""
        return "".join(m["content"]["text"] for m in self.of(msg_id, "stream"))

    def text_once(self, msg_id: str, needle: str, timeout: float) -> str:
        """The stream text of ``msg_id`` once one of its messages holds ``needle``, or as it is
        when ``timeout`` ends (a caller asserting on it tells which)."""
        try:
            self.wait_for(lambda m: self.parent(m) == msg_id and needle in m["content"].get("text", ""), timeout=timeout)
        except TimeoutError:
            pass
        return self.text(msg_id)

    def shutdown(self) -> None:
        self._stopped = True
        self._reader.join(timeout=2)
        self.kernel.shutdown()


def routed_frontend(cwd: Path, url: str, token: str) -> Frontend:
    """A frontend whose kernel routes to the server at ``url``."""
    frontend = Frontend(cwd, env={TOKEN_ENV: token})
    for code in ("%load_ext binder_autorun", f"%binder_on --url {url}"):
        _, reply = frontend.execute(code)
        assert reply["content"]["status"] == "ok", reply["content"]
    return frontend


@contextlib.contextmanager
def routed_on_own_server(cwd: Path, through: Callable[[int], Any] | None = None, **server_options: Any) -> Iterator[Frontend]:
    """A routed frontend on a jupyter_server of its own (Binder-like base_url), reached directly
    or through ``through(port)``: a proxy with ``port`` and ``close()``."""
    root = cwd / "remote-root"
    root.mkdir()
    server = LocalServer(root_dir=root, base_url="/user/someone/", **server_options)
    server.start()
    proxy = through(server.port) if through is not None else None
    url = f"http://127.0.0.1:{proxy.port}/user/someone/" if proxy is not None else server.url
    try:
        driver = routed_frontend(cwd, url, server.token)
        try:
            yield driver
        finally:
            driver.shutdown()
    finally:
        if proxy is not None:
            proxy.close()
        server.stop()

"""A real local ipykernel driven through jupyter_client, as a notebook frontend would.

Used where nbclient cannot go: stdin, interrupts, completion and inspection.
"""

from __future__ import annotations

import os
import queue
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client.manager import KernelManager

from binder_autorun.autorun import TOKEN_ENV


@dataclass
class Result:
    reply: dict[str, Any]
    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def stdout(self) -> str:
        return "".join(c["text"] for kind, c in self.outputs if kind == "stream" and c["name"] == "stdout")

    @property
    def stderr(self) -> str:
        return "".join(c["text"] for kind, c in self.outputs if kind == "stream" and c["name"] == "stderr")

    @property
    def text(self) -> str:
        """Everything a person would read: streams, text/plain results, tracebacks."""
        parts = []
        for kind, content in self.outputs:
            if kind == "stream":
                parts.append(content["text"])
            elif kind in ("execute_result", "display_data"):
                parts.append(content["data"].get("text/plain", ""))
            elif kind == "error":
                parts.append("\n".join(content["traceback"]))
        return "".join(parts)

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [content for k, content in self.outputs if k == kind]


class LocalKernel:
    """Start a local ipykernel (the notebook's own kernel) and talk to it."""

    def __init__(self, cwd: Path, env: dict[str, str] | None = None) -> None:
        for attempt in (1, 2):
            self.km = KernelManager(kernel_name="python3")
            self.km.start_kernel(env=dict(os.environ, **(env or {})), cwd=str(cwd))
            self.kc = self.km.blocking_client()
            self.kc.start_channels()
            try:
                self.kc.wait_for_ready(timeout=60)
                return
            except RuntimeError:
                # jupyter_client picks free TCP ports, then the kernel binds them: on a busy machine
                # another process can take one in between and the kernel dies at start. Once more.
                self.shutdown()
                if attempt == 2:
                    raise

    def execute(
        self,
        code: str,
        answers: list[str] | None = None,
        allow_stdin: bool | None = None,
        timeout: float = 30,
        interrupt_after: float | None = None,
        silent: bool = False,
        user_expressions: dict[str, str] | None = None,
    ) -> Result:
        """Run a cell; answer input requests from ``answers``; never wait past ``timeout``."""
        answers = list(answers or [])
        started = time.monotonic()
        msg_id = self.kc.execute(
            code, allow_stdin=bool(answers) if allow_stdin is None else allow_stdin, silent=silent, user_expressions=user_expressions
        )
        result = Result(reply={})
        idle = False
        interrupted = False
        while not (result.reply and idle):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"cell did not finish within {timeout} s: {code!r}; got {result.outputs!r}")
            if interrupt_after is not None and not interrupted and time.monotonic() - started > interrupt_after:
                self.km.interrupt_kernel()
                interrupted = True
            for getter in (self.kc.get_iopub_msg, self.kc.get_stdin_msg, self.kc.get_shell_msg):
                try:
                    msg = getter(timeout=0.02)
                except queue.Empty:
                    continue
                if msg["parent_header"].get("msg_id") != msg_id:
                    continue
                kind, content = msg["msg_type"], msg["content"]
                if kind == "execute_reply":
                    result.reply = content
                elif kind == "input_request":
                    result.prompts.append(content)
                    self.kc.input(answers.pop(0) if answers else "")
                elif kind == "status":
                    idle = idle or content["execution_state"] == "idle"
                elif kind != "execute_input":
                    result.outputs.append((kind, content))
        result.seconds = time.monotonic() - started
        return result

    def complete(self, code: str, cursor_pos: int | None = None) -> dict[str, Any]:
        msg_id = self.kc.complete(code, cursor_pos)
        return self._reply(msg_id)

    def inspect(self, code: str, cursor_pos: int | None = None, detail_level: int = 0) -> dict[str, Any]:
        msg_id = self.kc.inspect(code, cursor_pos, detail_level)
        return self._reply(msg_id)

    def _reply(self, msg_id: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = self.kc.get_shell_msg(timeout=deadline - time.monotonic())
            if msg["parent_header"].get("msg_id") == msg_id:
                return msg["content"]
        raise TimeoutError("no reply")

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def routed_kernel(cwd: Path, url: str, token: str) -> LocalKernel:
    """A local kernel in remote mode on the server at ``url`` (the token travels in the environment)."""
    local = LocalKernel(cwd, env={TOKEN_ENV: token})
    for code in ("%load_ext binder_autorun", f"%binder_on --url {url}"):
        result = local.execute(code)
        assert result.reply["status"] == "ok", result.text
    return local


def wrap_remote_execute(hold_on: str = "", fail_on: str = "") -> str:
    """Code wrapping a remote ipykernel's execute handler: a request whose code or user expressions
    mention ``hold_on`` sleeps 30 s before its code runs (so an interrupt lands outside the code),
    one mentioning ``fail_on`` raises KeyboardInterrupt there; either way ipykernel then ends the
    request with an idle status and no reply."""
    return f"""
import time as _t
_k = get_ipython().kernel
_run = _k.do_execute
def _prelude(code, *args, **kwargs):
    said = code + repr(kwargs.get("user_expressions"))
    if {hold_on!r} and {hold_on!r} in said:
        _t.sleep(30)
    if {fail_on!r} and {fail_on!r} in said:
        raise KeyboardInterrupt
    return _run(code, *args, **kwargs)
_k.do_execute = _prelude
"""

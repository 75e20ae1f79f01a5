"""A fresh ipykernel's handshake travels with its first request instead of before it.

``KernelSession.start`` knows the started kernel's spec (GET api/kernelspecs runs beside
the POST): for ipykernel the count is 0 and the kernel_info request goes out without
anyone waiting for it, so ``%binder_on`` ends after the POST and the websocket upgrade,
and the first cell's execute follows at once. These tests hold that to what a user sees:
the first cell's output is complete every time (jupyter_server subscribes IOPub before it
passes on the first message), the count is right, the spec-less and non-ipykernel cases
still get the full handshake, and an unknown kernel name is still one sentence.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from binder_autorun.errors import ServerError
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession, is_ipykernel

from .conftest import BASE_URL

pytestmark = pytest.mark.timeout(180)


class Collected:
    """An OutputSink keeping every message."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def on_message(self, msg: dict[str, Any]) -> None:
        self.messages.append(msg)

    def on_input(self, prompt: str, password: bool) -> str | None:
        return None

    def flush(self) -> None:
        pass

    def text(self) -> str:
        return "".join(m["content"].get("text", "") for m in self.messages if m["header"]["msg_type"] == "stream")


@pytest.fixture(scope="module")
def server_with_wrapped_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server with ``python3`` and ``wrapped``: ipykernel started through ``sh``, which no spec check can call ipykernel."""
    root = tmp_path_factory.mktemp("pipelined")
    spec = root / "share" / "kernels" / "wrapped"
    spec.mkdir(parents=True)
    spec.joinpath("kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", 'exec "$0" -m ipykernel_launcher -f "$1"', sys.executable, "{connection_file}"],
        "display_name": "Wrapped Python", "language": "python",
    }))
    server = LocalServer(root_dir=root, base_url=BASE_URL, env={"JUPYTER_PATH": str(root / "share")})
    server.start()
    yield server
    server.stop()


def _server(local: LocalServer) -> JupyterServer:
    return JupyterServer(local.info)


def test_first_execute_right_after_start_loses_no_output(server_with_wrapped_kernel: LocalServer) -> None:
    """Twenty fresh kernels, each asked to print at once: every output arrives, counted 1."""
    for attempt in range(20):
        session = KernelSession.start(_server(server_with_wrapped_kernel))
        try:
            assert session.spec.get("language") == "python" and is_ipykernel(session.spec)
            assert session._info_pending is not None  # nobody waited for the kernel_info_reply
            sink = Collected()
            reply = session.execute("print('first', 40 + 2)", sink)
            assert reply["status"] == "ok" and reply["execution_count"] == 1, (attempt, reply)
            assert sink.text() == "first 42\n", (attempt, sink.messages)
            assert session.implementation == "ipython" and session.kernel_info["language_info"]["name"] == "python"
        finally:
            session.shutdown()


def test_count_moves_ahead_before_the_first_execute(server_with_wrapped_kernel: LocalServer) -> None:
    """The count advance is queued before the kernel_info reply is in (the spec says ipykernel)."""
    session = KernelSession.start(_server(server_with_wrapped_kernel))
    try:
        session.set_execution_count(7)
        reply = session.execute("1", Collected())
        assert reply["execution_count"] == 7
    finally:
        session.shutdown()


def test_kernels_not_known_to_be_ipykernel_get_the_full_handshake(server_with_wrapped_kernel: LocalServer) -> None:
    session = KernelSession.start(_server(server_with_wrapped_kernel), "wrapped")
    try:
        assert not is_ipykernel(session.spec)
        assert session._info_pending is None and session.kernel_info["implementation"] == "ipython"
        sink = Collected()
        assert session.execute("print('wrapped')", sink)["status"] == "ok" and sink.text() == "wrapped\n"
    finally:
        session.shutdown()


def test_unknown_kernel_name_is_one_sentence(server_with_wrapped_kernel: LocalServer) -> None:
    with pytest.raises(ServerError) as failed:
        KernelSession.start(_server(server_with_wrapped_kernel), "nosuch")
    assert str(failed.value) == "The server has no kernel named 'nosuch'; choose one of: python3, wrapped."


@pytest.mark.parametrize("argv, language, expected", [
    (["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"], "python", True),
    (["/opt/conda/bin/python3.12", "-m", "ipykernel", "-f", "{connection_file}"], "python", True),
    (["R", "--slave", "-e", "IRkernel::main()", "--args", "{connection_file}"], "R", False),
    (["xpython", "-f", "{connection_file}"], "python", False),
    (["sh", "-c", "exec python -m ipykernel_launcher -f $0", "{connection_file}"], "python", False),
])
def test_which_specs_count_as_ipykernel(argv: list[str], language: str, expected: bool) -> None:
    assert is_ipykernel({"argv": argv, "language": language}) is expected
    assert is_ipykernel({}) is False


def test_spec_rides_along_with_the_started_kernel(remote_server: LocalServer, tmp_path: Path) -> None:
    server = _server(remote_server)
    model = server.start_kernel()
    try:
        assert model["spec"]["language"] == "python" and model["name"] == "python3"
    finally:
        server.shutdown_kernel(model["id"])

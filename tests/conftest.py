"""Fixtures: a real jupyter_server on loopback, and notebook runs (routed and native).

The remote side is a real jupyter_server (random port and token, a Binder-like
``base_url``) with real ipykernel kernels; the local side is a real ipykernel
with the extension loaded, driven by nbclient, so tests see exactly what a
notebook would save.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_core.paths import jupyter_runtime_dir
from nbclient import NotebookClient

from binder_autorun.cli import TOKEN_ENV, RoutedNotebookClient
from binder_autorun.routed_client import poll_shell_in_slices
from binder_autorun.launch import LocalServer

BASE_URL = "/user/someone/"


@pytest.fixture(scope="session")
def remote_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """One shared jupyter_server for tests that do not hurt it."""
    server = LocalServer(root_dir=tmp_path_factory.mktemp("remote-root"), base_url=BASE_URL)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[LocalServer]:
    """A jupyter_server for one test (to kill, cut or configure)."""
    root = tmp_path / "remote-root"
    root.mkdir()
    server = LocalServer(root_dir=root, base_url=BASE_URL)
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Each test remembers launched servers in its own file (kernels inherit the variable)."""
    os.environ["BINDER_AUTORUN_STATE"] = str(tmp_path_factory.mktemp("state") / "servers.json")
    yield
    os.environ.pop("BINDER_AUTORUN_STATE", None)


@pytest.fixture(autouse=True)
def _no_token_in_env() -> Iterator[None]:
    saved = os.environ.pop(TOKEN_ENV, None)
    yield
    os.environ.pop(TOKEN_ENV, None)
    if saved is not None:
        os.environ[TOKEN_ENV] = saved


@dataclass
class Run:
    """An executed notebook and the execute_reply content of each code cell."""

    nb: Any
    replies: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cells(self) -> list[Any]:
        return [cell for cell in self.nb.cells if cell.cell_type == "code"]


def notebook(cells: list[str]) -> Any:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in cells])


def _record(run: Run) -> Any:
    def hook(cell: Any, cell_index: int, execute_reply: dict[str, Any] | None = None, **_: Any) -> None:
        run.replies.append((execute_reply or {}).get("content", {}))

    return hook


def run_native_on_server(cells: list[str], server: LocalServer, timeout: float = 60) -> Run:
    """Run cells natively on a kernel of ``server``: nbclient talks to it over ZeroMQ,
    as the server itself does, so nothing of ours is between them."""
    headers = {"Authorization": f"token {server.token}"}
    kernel_id = requests.post(server.url + "api/kernels", json={"name": "python3", "path": ""}, headers=headers, timeout=30).json()["id"]
    run = Run(notebook(cells))
    client = NotebookClient(run.nb, timeout=timeout, allow_errors=True, on_cell_executed=_record(run))
    client.kc = AsyncKernelClient(connection_file=os.path.join(jupyter_runtime_dir(), f"kernel-{kernel_id}.json"))
    client.kc.load_connection_file()
    poll_shell_in_slices(client.kc)  # the native side has nbclient's lost wake-up too (jupyter/nbclient#312)

    async def execute() -> None:
        client.kc.start_channels(hb=False)  # a late first heartbeat on a busy machine reads as "kernel died"
        try:
            await client.kc.wait_for_ready(timeout=60)
            for index, cell in enumerate(run.nb.cells):
                await client.async_execute_cell(cell, index)
            client.set_widgets_metadata()  # as NotebookClient.execute() does at the end
        finally:
            client.kc.stop_channels()

    try:
        asyncio.run(execute())
    finally:
        requests.delete(server.url + f"api/kernels/{kernel_id}", headers=headers, timeout=30)
    return run


def run_routed(cells: list[str], server: LocalServer, cwd: Path, timeout: float = 60, **kwargs: Any) -> Run:
    """Run cells on a local ipykernel that routes them to ``server``."""
    run = Run(notebook(cells))
    os.environ[TOKEN_ENV] = server.token
    client = RoutedNotebookClient(
        run.nb, server_url=server.url, timeout=timeout, kernel_name="python3", allow_errors=True,
        resources={"metadata": {"path": str(cwd)}}, on_cell_executed=_record(run), **kwargs,
    )
    client.execute()
    return run


#: ipykernel names a cell's code file by a per-process hash: "(1850221797.py, line 1)"
_CELL_FILE = re.compile(r"\b\d+\.py\b")


def normalized(value: Any) -> Any:
    """Drop per-process noise (cell file hashes) from error texts."""
    if isinstance(value, str):
        return _CELL_FILE.sub("<cell>.py", value)
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, dict):
        return {key: normalized(item) for key, item in value.items()}
    return value


def merged_outputs(cell: Any) -> list[dict[str, Any]]:
    """Outputs with consecutive same-name streams joined, as a frontend shows them."""
    merged: list[dict[str, Any]] = []
    for output in normalized([dict(output) for output in cell.outputs]):
        if merged and output["output_type"] == "stream" and merged[-1]["output_type"] == "stream" \
                and merged[-1]["name"] == output["name"]:
            merged[-1]["text"] += output["text"]
        else:
            merged.append(output)
    return merged


@pytest.fixture
def python() -> str:
    return sys.executable

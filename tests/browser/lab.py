"""A real JupyterLab server on loopback for browser tests.

Its notebooks run on a local ipykernel (this Python, which has binder_autorun
importable); their environment carries the remote server's token in
``BINDER_AUTORUN_TOKEN`` (``set_kernel_env``) so a notebook's ``%binder_on --url URL``
needs no token.
Everything it writes (config, settings, workspaces, runtime files, notebooks)
goes to a temporary directory.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from ipykernel.kernelspec import RESOURCES

KERNEL_LOG_STARTUP = Path(__file__).with_name("kernel_log.py")

#: JupyterLab settings that keep the page quiet and deterministic: no news or
#: update toasts over the cells, every cell in the DOM (no virtual scrolling).
LAB_SETTINGS: dict[str, dict[str, Any]] = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LabServer:
    """``python -m jupyterlab`` in its own process group, random port and token."""

    def __init__(self, home: Path, env: dict[str, str] | None = None, startup_timeout: float = 60.0) -> None:
        self.home = home
        self.root_dir = home / "root"
        self.extra_env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(24)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = home / "lab.log"
        self.kernel_log_dir = home / "kernel-log"
        self.kernel_path = home / "kernel-path"
        self._deadline = 0.0

    @property
    def url(self) -> str:
        """The server's URL (base_url ``/``)."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def headers(self) -> dict[str, str]:
        """REST API authorization."""
        return {"Authorization": f"token {self.token}"}

    def _environment(self) -> dict[str, str]:
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "settings", "workspaces", "ipython")}
        for path in [self.root_dir, self.kernel_log_dir, self.kernel_path, *dirs.values()]:
            path.mkdir(parents=True, exist_ok=True)
        startup = dirs["ipython"] / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-message-log.py").write_text(KERNEL_LOG_STARTUP.read_text())
        for name, settings in LAB_SETTINGS.items():
            (dirs["settings"] / name).parent.mkdir(parents=True, exist_ok=True)
            (dirs["settings"] / name).write_text(json.dumps(settings))
        env = dict(os.environ)
        env.update(
            JUPYTER_TOKEN=self.token,
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTER_DATA_DIR=str(dirs["data"]),
            # first in the data path, before the venv's: set_kernel_env's python3 kernelspec
            JUPYTER_PATH=str(self.kernel_path),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            IPYTHONDIR=str(dirs["ipython"]),  # the kernels' message log (kernel_log.py)
            BROWSER_KERNEL_LOG_DIR=str(self.kernel_log_dir),
            # kernels find `python` (the kernelspec's argv[0]) and binder_autorun here
            PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
        )
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        """The command line (no token: it is in the environment)."""
        args = [
            sys.executable, "-m", "jupyterlab",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.expose_app_in_browser=True",  # window.jupyterapp, for bounded waits
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--ServerApp.allow_root=True")
        return args

    def start(self) -> None:
        """Start and wait until the API and the lab page answer."""
        self.spawn()
        self.wait_ready()

    def spawn(self) -> None:
        """Start the process without waiting for it (see ``wait_ready``), so the session
        can start the remote server and chromium meanwhile."""
        self.port = free_port()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command(), env=self._environment(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, cwd=self.root_dir, start_new_session=True,
            )
        self._deadline = time.monotonic() + self.startup_timeout

    def wait_ready(self) -> None:
        """Wait (bounded by ``startup_timeout`` from ``spawn``) until the API and the lab page answer."""
        assert self.process is not None, "spawn() first"
        while time.monotonic() < self._deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited during start-up:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "lab", headers=self.headers, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"JupyterLab did not answer within {self.startup_timeout:g} s:\n{self.log_tail()}")

    def set_kernel_env(self, env: dict[str, str]) -> None:
        """Give the kernels started from now on these environment variables (a ``python3``
        kernelspec of this Python first in ``JUPYTER_PATH``; it is read at each kernel
        start, so this works on a running server)."""
        spec = {
            "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (ipykernel)", "language": "python",
            "metadata": {"debugger": True}, "env": env,
        }
        directory = self.kernel_path / "kernels" / "python3"
        directory.mkdir(parents=True, exist_ok=True)
        for logo in Path(RESOURCES).glob("logo-*"):
            shutil.copy(logo, directory)
        (directory / "kernel.json").write_text(json.dumps(spec))

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, token masked."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(errors="replace").replace(self.token, "<token>")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and its kernels (the whole process group)."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout)
        except ProcessLookupError:
            pass

    # --- REST helpers -----------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API; return the decoded JSON (None when empty)."""
        response = requests.request(method, self.url + "api/" + path, headers=self.headers, timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def create_notebook(self, name: str, cells: list[str]) -> str:
        """Write a notebook with these code cells (python3 kernel); return its path."""
        notebook = {
            "nbformat": 4, "nbformat_minor": 5,
            "metadata": {
                "kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"},
                "language_info": {"name": "python"},
            },
            "cells": [
                {"cell_type": "code", "id": f"cell-{index}", "metadata": {}, "source": source,
                 "outputs": [], "execution_count": None}
                for index, source in enumerate(cells)
            ],
        }
        path = f"{name}.ipynb"
        self.api("PUT", f"contents/{path}", json={"type": "notebook", "format": "json", "content": notebook})
        return path

    def start_session(self, path: str) -> None:
        """Start the notebook's session (and python3 kernel) through the API, so the kernel
        boots while the page loads; the page then connects to this session."""
        self.api("POST", "sessions", json={"path": path, "name": path, "type": "notebook", "kernel": {"name": "python3"}})

    def kernel_messages(self, pid: int) -> list[dict[str, Any]]:
        """What kernel ``pid`` has logged so far (see kernel_log.py)."""
        path = self.kernel_log_dir / f"{pid}.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def shutdown_kernels(self) -> None:
        """Shut down every session and kernel (between tests)."""
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")
        for kernel in self.api("GET", "kernels"):
            self.api("DELETE", f"kernels/{kernel['id']}")

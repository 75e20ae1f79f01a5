"""Launching a private jupyter_server on 127.0.0.1 (``%binder_on --local``).

The server runs in its own process group with a random port and token, so it
can be stopped (or, in tests, killed) as a whole. The token is handed over in
the environment, never on the command line where ``ps`` would show it.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from ..errors import LaunchError
from ..interrupts import interrupts_held
from ..server import ServerInfo

log = logging.getLogger(__name__)


#: starts tried when the free port we picked is taken before the server binds it
PORT_ATTEMPTS = 3


class _PortTaken(Exception):
    """The server could not bind the port we picked for it."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the process that started us dies (Linux), so a
    crashed or killed notebook kernel does not leave its private server behind."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


_PR_SET_PDEATHSIG = 1


class LocalServer:
    """A jupyter_server subprocess we start, own and stop.

    ``ws_ping_interval``/``ws_ping_timeout`` (seconds) tune the kernel
    websocket pings, which tests shorten to exercise idle connections.
    ``limit_rate=False`` lifts the server's IOPub rate limits (a private
    server should pass output through like a native kernel does). ``env``
    adds environment variables for the server and its kernels (e.g.
    ``JUPYTER_PATH`` for extra kernel specs).

    A start that fails or is interrupted (Ctrl-C) stops the process it began:
    nothing is left behind.
    """

    def __init__(
        self,
        root_dir: str | os.PathLike[str] | None = None,
        base_url: str = "/",
        ws_ping_interval: float | None = None,
        ws_ping_timeout: float | None = None,
        extra_args: list[str] | None = None,
        startup_timeout: float = 60.0,
        limit_rate: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root_dir = Path(root_dir or os.getcwd()).resolve()
        self.base_url = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
        self.ws_ping_interval = ws_ping_interval
        self.ws_ping_timeout = ws_ping_timeout
        self.extra_args = list(extra_args or [])
        self.startup_timeout = startup_timeout
        self.limit_rate = limit_rate
        self.env = dict(env or {})
        self.port = 0
        self.token = secrets.token_hex(24)
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: tempfile._TemporaryFileWrapper[bytes] | None = None

    def __repr__(self) -> str:
        return f"LocalServer(url={self.url!r}, running={self.running})"

    @property
    def url(self) -> str:
        """The server's URL, base_url included."""
        return f"http://127.0.0.1:{self.port}{self.base_url}"

    @property
    def info(self) -> ServerInfo:
        """Where the server is, with its token, for the rest of the pipeline."""
        return ServerInfo(self.url, self.token)

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The command line that starts the server (no token: it goes in the environment)."""
        args = [
            sys.executable, "-m", "jupyter_server",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--ServerApp.base_url={self.base_url}",
            f"--ServerApp.root_dir={self.root_dir}",
            # a private server must not pick up the user's notebook/lab extensions
        ]
        if not self.limit_rate:
            args.append("--ZMQChannelsWebsocketConnection.limit_rate=False")
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--ServerApp.allow_root=True")  # containers and CI run as root
        settings = {}
        if self.ws_ping_interval is not None:
            settings["ws_ping_interval"] = int(self.ws_ping_interval * 1000)
        if self.ws_ping_timeout is not None:
            settings["ws_ping_timeout"] = int(self.ws_ping_timeout * 1000)
        if settings:
            args.append(f"--ServerApp.tornado_settings={settings!r}")
        return args + self.extra_args

    def start(self) -> ServerInfo:
        """Start the server and wait until its API answers; return where it is.

        Any failure or interrupt on the way stops the process again (an
        interrupted ``%binder_on --local`` must not leave a server running).
        """
        try:
            import jupyter_server  # noqa: F401
        except ImportError:
            raise LaunchError(
                "--local needs jupyter_server, which is not installed; run: pip install 'binder_autorun[local]'."
            ) from None
        env = dict(os.environ, **self.env, JUPYTER_TOKEN=self.token)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.port = free_port()
            try:
                self._log_file = tempfile.NamedTemporaryFile(prefix="binder-autorun-server-", suffix=".log")
                log.info("starting a local jupyter_server at %s in %s", self.url, self.root_dir)
                atexit.register(self.stop)
                with interrupts_held():  # a Ctrl-C inside Popen would leave a child we never learn about
                    self.process = self._spawn(env)
                self._wait_ready()
                return self.info
            except _PortTaken:
                # the free port was taken between our look and the server's bind: another one
                log.info("port %d was taken before the server bound it (attempt %d)", self.port, attempt)
                said = self.log_tail()
                self.stop()
            except BaseException:
                log.info("the local jupyter_server did not come up (failed or interrupted); stopping it")
                self.stop()
                raise
        raise LaunchError(f"The local jupyter_server found no free port in {PORT_ATTEMPTS} tries; its log says: {said}")

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.command(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=self.root_dir,
            start_new_session=True,  # its own process group: stop/kill it as a whole
            # the death signal follows the starting *thread*: only tie it to a main thread
            preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
        )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if not self.running:
                if f"port {self.port} is not available" in self.log_tail():
                    raise _PortTaken
                raise LaunchError(f"The local jupyter_server exited during start-up; its log says: {self.log_tail()}")
            try:
                if requests.get(self.url + "api", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise LaunchError(f"The local jupyter_server did not answer within {self.startup_timeout:g} s; its log says: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        """The last lines of the server's log, token masked, for error messages."""
        if self._log_file is None:
            return ""
        text = Path(self._log_file.name).read_text(errors="replace").replace(self.token, "<token>")
        return " | ".join(text.strip().splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash or a cull would."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (and its kernels); idempotent. A Ctrl-C while waiting kills it."""
        try:
            if self.process is not None and self.process.poll() is None:
                try:
                    os.killpg(self.process.pid, signal.SIGTERM)
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.kill()
                except ProcessLookupError:
                    pass
                except BaseException:
                    self.kill()
                    raise
        finally:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
            atexit.unregister(self.stop)

"""The remote mode of one IPython shell: what it is connected to and how cells run.

:class:`BinderAutorun` is the configurable object behind the magics (``%config
BinderAutorun.<trait>``): it launches or attaches a server, owns the
:class:`~binder_autorun.session.KernelSession`, switches routing on and off,
and runs each routed cell through a :class:`~binder_autorun.mirror.DisplayMirror`.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from IPython.core.interactiveshell import InteractiveShell
from traitlets import Bool, Float, Unicode, default
from traitlets.config import Configurable

from .errors import BinderAutorunError, NotConnected, RemoteError
from .launch import LocalServer
from .mirror import DisplayMirror, ExecutionCounter, RemoteAssist, show_remote_error
from .router import make_transformer
from .server import JupyterServer, ServerInfo
from .session import KernelSession

log = logging.getLogger(__name__)


@dataclass
class Target:
    """How the current server was obtained, so it can be described and relaunched."""

    kind: str  # "url", "local", "binder" or "jupyterhub"
    label: str
    options: dict[str, Any] = field(default_factory=dict, repr=False)


class BinderAutorun(Configurable):
    """Routes every cell of ``shell`` to a remote Jupyter kernel while on."""

    url = Unicode("", help="Jupyter server URL for %binder_on without options (env BINDER_AUTORUN_URL).").tag(config=True)
    token = Unicode("", help="Token for that server (env BINDER_AUTORUN_TOKEN); never shown.").tag(config=True)
    kernel_name = Unicode("", help="Kernel spec to start on the remote server (empty: the server's default).").tag(config=True)
    binderhub = Unicode(help="BinderHub used by %binder_on -r (env BINDER_AUTORUN_BINDERHUB).").tag(config=True)
    launch_timeout = Float(300.0, help="Seconds a BinderHub may stay silent during a launch before we give up.").tag(config=True)
    cell_timeout = Float(0.0, help="Interrupt a remote cell running longer than this many seconds (0: never).").tag(config=True)
    auto_relaunch = Bool(False, help="When the server is gone, relaunch the same target automatically and replay cells.").tag(config=True)

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("BINDER_AUTORUN_URL", "")

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get("BINDER_AUTORUN_TOKEN", "")

    @default("binderhub")
    def _binderhub_default(self) -> str:
        return os.environ.get("BINDER_AUTORUN_BINDERHUB", "https://mybinder.org")

    def __init__(self, shell: InteractiveShell, **kwargs: Any) -> None:
        super().__init__(parent=shell, **kwargs)
        self.shell = shell
        self.session: KernelSession | None = None
        self.target: Target | None = None
        self.local_server: LocalServer | None = None
        self.active = False
        #: sources of the cells that ran remotely (ok) since connect, for %binder_replay
        self.ran: list[str] = []
        self.counter = ExecutionCounter(shell)
        self.assist = RemoteAssist(shell, self._live_session)
        self._transformer = make_transformer(lambda: self.active)
        self._saved_custom_exc: tuple[tuple[type, ...], Any] | None = None
        atexit.register(self.shutdown)

    def __repr__(self) -> str:
        return f"BinderAutorun(target={self.target.label if self.target else None!r}, active={self.active})"

    # -- installing into the shell -------------------------------------------

    def install(self) -> None:
        """Register the cell router and the remote-error display."""
        cleanup = self.shell.input_transformers_cleanup
        if self._transformer not in cleanup:
            cleanup.insert(0, self._transformer)
        if self._saved_custom_exc is None:
            previous = (tuple(self.shell.custom_exceptions), self.shell.CustomTB)
            self._saved_custom_exc = previous

            def handler(shell: InteractiveShell, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> Any:
                if isinstance(value, RemoteError):
                    return show_remote_error(shell, etype, value, tb, tb_offset)
                return previous[1](etype, value, tb, tb_offset=tb_offset)

            self.shell.set_custom_exc((*previous[0], RemoteError), handler)

    def uninstall(self) -> None:
        self.deactivate()
        if self._transformer in self.shell.input_transformers_cleanup:
            self.shell.input_transformers_cleanup.remove(self._transformer)
        if self._saved_custom_exc is not None:
            self.shell.custom_exceptions, self.shell.CustomTB = self._saved_custom_exc
            self._saved_custom_exc = None

    # -- connecting ----------------------------------------------------------

    def connect_url(self, url: str = "", token: str | None = None, kernel_name: str = "", kernel_id: str = "") -> None:
        """Connect to any running Jupyter server (base_url honoured)."""
        url = url or self.url
        if not url:
            raise NotConnected("No server given: use --url URL (or set BINDER_AUTORUN_URL), --local or -r REPO.")
        info = ServerInfo(url, self.token if token is None else token)
        self._connect(info, Target("url", info.url), kernel_name, kernel_id)

    def connect_local(self, root_dir: str | None = None, kernel_name: str = "") -> None:
        """Start a private jupyter_server on 127.0.0.1 and connect to it."""
        self._refuse_if_active()
        server = LocalServer(root_dir=root_dir)
        info = server.start()
        try:
            self._connect(info, Target("local", f"local server in {server.root_dir}", {"root_dir": root_dir}), kernel_name, "")
        except BaseException:
            server.stop()
            raise
        self.local_server = server

    def resume(self) -> None:
        """A bare %binder_on: back to the kernel of the last connection."""
        if self.session is None:
            if self.url:
                self.connect_url()
                return
            raise NotConnected("Nothing to resume: give --url URL --token T, --local or -r REPO.")
        if self.active:
            raise BinderAutorunError(f"Remote mode is already on ({self.target.label if self.target else ''}).")
        if not self.session.alive:
            raise self.session.channel.lost or NotConnected("The last remote session is closed; connect again.")
        self.activate()

    def _refuse_if_active(self) -> None:
        if self.active:
            raise BinderAutorunError(
                f"Remote mode is already on ({self.target.label if self.target else 'connected'}); "
                "run %binder_off first to switch to another server."
            )

    def _connect(self, info: ServerInfo, target: Target, kernel_name: str, kernel_id: str) -> None:
        self._refuse_if_active()
        server = JupyterServer(info)
        server.api_info()
        if kernel_id:
            session = KernelSession.attach(server, kernel_id)
        else:
            session = KernelSession.start(server, kernel_name or self.kernel_name or None)
        self._forget_session()
        self.session, self.target, self.ran = session, target, []
        self._align_counts_at_connect()
        self.activate()
        log.info("connected to %s (kernel %s)", target.label, session.kernel_id)

    def _align_counts_at_connect(self) -> None:
        """One numbering: whichever side is behind catches up (see ExecutionCounter)."""
        assert self.session is not None
        remote_next = self.session.execution_count + 1
        if remote_next > self.counter.next:
            self.counter.set_next(remote_next)
        else:
            self.session.set_execution_count(self.counter.next)

    def activate(self) -> None:
        self.install()
        self.assist.install()
        self.active = True

    def deactivate(self) -> None:
        self.active = False
        self.assist.uninstall()

    def _live_session(self) -> KernelSession:
        if self.session is None:
            raise NotConnected("Remote mode has no session; run %binder_on again.")
        return self.session

    # -- leaving -------------------------------------------------------------

    def off(self, shutdown: bool = False) -> None:
        """Back to the local kernel; ``shutdown`` also stops what we started."""
        self.deactivate()
        if shutdown:
            self.shutdown()

    def shutdown(self) -> None:
        """Shut down the kernel and server we started (also run at exit)."""
        self.deactivate()
        self._forget_session()
        if self.local_server is not None:
            self.local_server.stop()
            self.local_server = None

    def _forget_session(self) -> None:
        if self.session is not None:
            self.session.shutdown()
            self.session = None

    # -- running cells --------------------------------------------------------

    def run_cell(self, source: str) -> None:
        """Run one routed cell remotely, mirroring everything into this shell."""
        session = self._live_session()
        info = getattr(self.shell.displayhook.exec_result, "info", None)
        store_history = bool(getattr(info, "store_history", True))
        silent = bool(getattr(info, "silent", False))
        if store_history:
            self._record_source(source)
            session.set_execution_count(self.counter.next - 1)
        if session.restarted_unexpectedly:
            session.restarted_unexpectedly = False
            print("binder_autorun: the remote kernel was restarted after it died; earlier remote state is lost.", file=sys.stderr)
        mirror = DisplayMirror(self.shell, self.counter, track_count=store_history)
        reply = session.execute(
            source, mirror, silent=silent, store_history=store_history, allow_stdin=mirror.allow_stdin,
            timeout=self.cell_timeout or None,
        )
        if reply.get("timed_out"):
            print(f"binder_autorun: the cell ran longer than {self.cell_timeout:g} s and was interrupted.", file=sys.stderr)
        if reply.get("status") == "ok" and store_history:
            self.ran.append(source)
        mirror.finish(reply)

    def _record_source(self, source: str) -> None:
        """``In[n]``/``%history`` show what the user typed, not our routing call."""
        history = self.shell.history_manager
        if history is not None and history.input_hist_parsed:
            history.input_hist_parsed[-1] = source.rstrip("\n")

    # -- status ---------------------------------------------------------------

    def status(self) -> str:
        """A few lines for %binder_status; never the token."""
        if self.session is None or self.target is None:
            return "binder_autorun: not connected (local kernel). Use %binder_on --url URL, --local or -r REPO."
        session = self.session
        lines = [
            f"mode:       {'remote' if self.active else 'local (remote session kept; %binder_on resumes)'}",
            f"target:     {self.target.label}",
            f"server:     {session.server.url}",
            f"kernel:     {session.kernel_id} ({session.kernel_info.get('implementation', '?')}, "
            f"{session.kernel_info.get('language_info', {}).get('name', '?')})",
            f"connection: {session.channel.state}, {session.channel.reconnects} reconnect(s)",
        ]
        idle = time.monotonic() - session.last_activity
        lines.append(f"idle:       {idle:.0f} s since the last remote cell")
        if session.alive:
            try:
                model = session.server.kernel(session.kernel_id, timeout=5)
                lines.append(f"kernel state: {model.get('execution_state', '?') if model else 'gone'}")
            except BinderAutorunError as exc:
                lines.append(f"kernel state: unknown ({exc})")
        return "\n".join(lines)

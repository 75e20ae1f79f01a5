"""The remote mode of one IPython shell: what it is connected to and how cells run.

:class:`BinderAutorun` is the configurable object behind the magics (``%config
BinderAutorun.<trait>``): it launches or attaches a server, owns the
:class:`~binder_autorun.session.KernelSession`, switches routing on and off,
and runs each routed cell through a :class:`~binder_autorun.mirror.DisplayMirror`.
"""

from __future__ import annotations

import atexit
import ctypes
import getpass
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from IPython.core.error import StdinNotImplementedError
from IPython.core.interactiveshell import InteractiveShell
from traitlets import Bool, Float, Int, Unicode, default
from traitlets.config import Configurable

from . import wire
from .assist import RemoteAssist
from .bridge import Bridge
from .errors import AuthError, BinderAutorunError, ConnectionLost, NotConnected, RemoteError, ServerError
from .frontend import frontend_for
from .launch import GatewayConfig, LocalServer, Target, default_binderhub, launch
from .launch.gateway import gateway_session
from .launch.saved import SavedServers
from .mirror import DisplayMirror, ExecutionCounter, rewrite_history, show_remote_error
from .router import CellRouter
from .server import JupyterServer, ServerInfo, token_in_url
from .session import KernelSession

if TYPE_CHECKING:
    from .sync import Sync

log = logging.getLogger(__name__)


#: where the token comes from when no cell should hold it (the CLI hands it to its kernel here too)
TOKEN_ENV = "BINDER_AUTORUN_TOKEN"

#: MyBinder culls kernels idle for about this long (seconds)
BINDER_IDLE_CULL = 600


def _return_big_blocks_to_the_os(threshold: int) -> None:
    """Big remote outputs are decoded by the reader thread and re-encoded by the main
    one; glibc keeps freed blocks in per-thread arenas, so without this the local
    kernel's peak memory grows with every big output (measured: 6.7x the payload,
    2.9x with it)."""
    global _mmap_threshold_set
    if threshold <= 0 or _mmap_threshold_set == threshold or not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    if mallopt(_M_MMAP_THRESHOLD, threshold):
        _mmap_threshold_set = threshold
        log.info("glibc now serves allocations of %d bytes and more by mmap (BinderAutorun.mmap_threshold)", threshold)


_M_MMAP_THRESHOLD = -3
_mmap_threshold_set = 0


def _notice(text: str) -> None:
    """A one-line message for the user, on stderr so it stays apart from program output."""
    print(f"binder_autorun: {text}", file=sys.stderr)


class _Secret(str):
    """A token whose repr hides it (``%config BinderAutorun`` prints current values)."""

    def __repr__(self) -> str:
        return "'<hidden>'" if self else "''"


class SecretUnicode(Unicode):  # type: ignore[type-arg]
    """A Unicode trait for secrets: the value works as a str but never shows in a repr."""

    def validate(self, obj: Any, value: Any) -> _Secret:
        return _Secret(super().validate(obj, value))


class BinderAutorun(Configurable):
    """Routes every cell of ``shell`` to a remote Jupyter kernel while on."""

    url = Unicode("", help="Jupyter server URL for %binder_on without options (env BINDER_AUTORUN_URL).").tag(config=True)
    token = SecretUnicode("", help="Token for that server (env BINDER_AUTORUN_TOKEN); never shown.").tag(config=True)
    kernel_name = Unicode("", help="Kernel spec to start on the remote server (empty: the server's default).").tag(config=True)
    kernel_path = Unicode(
        "", help="Working directory of a kernel we start, relative to the server's root (empty: the root)."
    ).tag(config=True)
    binderhub = Unicode(help="BinderHub used by %binder_on -r (env BINDER_AUTORUN_BINDERHUB).").tag(config=True)
    launch_timeout = Float(300.0, help="Seconds a BinderHub may stay silent during a launch before we give up.").tag(config=True)
    cell_timeout = Float(0.0, help="Interrupt a remote cell running longer than this many seconds (0: never).").tag(config=True)
    mmap_threshold = Int(
        1 << 20,
        help="On glibc, serve allocations of at least this many bytes by mmap, so the big outputs that pass "
        "through return their memory to the OS (0: leave malloc alone).",
    ).tag(config=True)
    managed = Bool(False, help="Set by `binder-autorun run`: the notebook's own %binder_on cells are skipped.").tag(config=True)
    auto_relaunch = Bool(False, help="When the server is gone, relaunch the same target automatically and replay cells.").tag(config=True)

    @default("url")
    def _url_default(self) -> str:
        return os.environ.get("BINDER_AUTORUN_URL", "")

    @default("token")
    def _token_default(self) -> str:
        return os.environ.get(TOKEN_ENV, "")

    @default("binderhub")
    def _binderhub_default(self) -> str:
        return default_binderhub()

    def __init__(self, shell: InteractiveShell, **kwargs: Any) -> None:
        super().__init__(parent=shell, **kwargs)
        self.shell = shell
        self.session: KernelSession | None = None
        self.target: Target | None = None
        self.local_server: LocalServer | None = None
        self.active = False
        self.saved = SavedServers()
        #: sources of the cells that ran remotely (ok) since connect
        self.ran: list[str] = []
        #: cells of the session before the last relaunch, for %binder_replay
        self.replayable: list[str] = []
        self.build_log: list[str] = []
        self.counter = ExecutionCounter(shell)
        #: local msg_ids already reused by a remote request (a second one gets an id of its own)
        self._reused_ids: dict[str, None] = {}
        #: the folder mirrored around each remote cell (%binder_sync), if any
        self.sync: Sync | None = None
        #: late output and comms: lives as long as the extension, so remote widgets stay live after %binder_off
        self.bridge = Bridge(frontend_for(shell), lambda: self.active, kernel=getattr(shell, "kernel", None))
        self.router = CellRouter(lambda: self.active)
        self.assist = RemoteAssist(shell, self._live_session, self.router)
        self._saved_custom_exc: tuple[tuple[type, ...], Any] | None = None
        atexit.register(self.shutdown)

    def __repr__(self) -> str:
        return f"BinderAutorun(target={self.target.label if self.target else None!r}, active={self.active})"

    # -- installing into the shell -------------------------------------------

    def install(self) -> None:
        """Register the cell router and the remote-error display."""
        self.router.install(self.shell)
        self.bridge.install()
        if self._saved_custom_exc is None:
            previous = (tuple(self.shell.custom_exceptions), self.shell.CustomTB)
            self._saved_custom_exc = previous

            def handler(shell: InteractiveShell, etype: type, value: BaseException, tb: Any, tb_offset: int | None = None) -> Any:
                if isinstance(value, RemoteError):
                    return show_remote_error(shell, etype, value, tb, tb_offset)
                return previous[1](etype, value, tb, tb_offset=tb_offset)

            self.shell.set_custom_exc((*previous[0], RemoteError), handler)

    def uninstall(self) -> None:
        """Undo :meth:`install`: local cells again, IPython's own error display."""
        self.deactivate()
        self.bridge.uninstall()
        self.router.uninstall(self.shell)
        if self._saved_custom_exc is not None:
            self.shell.custom_exceptions, self.shell.CustomTB = self._saved_custom_exc
            self._saved_custom_exc = None

    # -- connecting ----------------------------------------------------------

    def connect_url(self, url: str = "", token: str | None = None, kernel_name: str = "", kernel_id: str = "") -> None:
        """Connect to any running Jupyter server (base_url honoured)."""
        url = url or self.url
        if not url:
            raise NotConnected("No server given: use --url URL (or set BINDER_AUTORUN_URL), --local or -r REPO.")
        given = ServerInfo(url, token if token is not None else (token_in_url(url) or self.token))  # a pasted URL's own token first
        self.with_token(
            lambda secret: self.connect(Target.url(ServerInfo(given.url, secret)), kernel_name, kernel_id), given.token, given.url
        )

    def connect_local(self, root_dir: str | None = None, kernel_name: str = "") -> None:
        """Start a private jupyter_server on 127.0.0.1 and connect to it."""
        self.connect(Target.local(root_dir), kernel_name)

    def connect_binder(self, repo: str, ref: str | None = None, hub: str = "", show_log: bool = False, kernel_name: str = "") -> None:
        """Build and launch ``repo`` through a BinderHub, then connect."""
        self.connect(Target.binder(repo, ref, hub or self.binderhub, show_log), kernel_name)

    def connect_jupyterhub(self, hub: str, token: str | None = None, server_name: str = "", kernel_name: str = "") -> None:
        """Start (or reuse) the user's server on a JupyterHub, then connect."""
        self.with_token(
            lambda secret: self.connect(Target.jupyterhub(hub, secret, server_name), kernel_name),
            self.token if token is None else token, hub,
        )

    def with_token(self, attempt: Callable[[str], None], token: str, where: str) -> None:
        """Run ``attempt(token)``; if no token was given and the server wants one, ask for it
        (a password prompt: in a notebook the frontend's password box), so that no cell ever
        has to hold it. Where nobody can be asked, say which variable to set."""
        try:
            attempt(token)
            return
        except AuthError:
            if token:
                raise
        try:
            secret = getpass.getpass(f"Token for {where} (hidden; {TOKEN_ENV} spares you this prompt): ")
        except (StdinNotImplementedError, EOFError, OSError):
            raise AuthError(
                f"{where} needs a token and there is no way to ask for it here; set {TOKEN_ENV} (or pass --token)."
            ) from None
        if not secret.strip():
            raise AuthError(f"No token given for {where}; set {TOKEN_ENV} or type it at the prompt.")
        attempt(secret.strip())

    def connect_gateway(self, url: str = "", token: str | None = None, kernel_name: str = "", kernel_id: str = "") -> None:
        """Start (or attach) a kernel on an Enterprise Gateway or Kernel Gateway; without ``url``/``token``,
        jupyter_server's gateway-client variables (JUPYTER_GATEWAY_URL, JUPYTER_GATEWAY_AUTH_TOKEN...) apply."""
        config = GatewayConfig.from_env(url, token)
        self.with_token(
            lambda secret: self.connect(Target.gateway(GatewayConfig.from_env(config.url, secret)), kernel_name, kernel_id),
            config.info.token, config.url,
        )

    def resume(self) -> None:
        """A bare %binder_on: back to the kernel of the last connection."""
        if self.session is None:
            if self.url:
                self.connect_url()
                return
            raise NotConnected("Nothing to resume: give --url URL --token T, --local or -r REPO.")
        if not self.session.alive:
            self._reattach_lost()
            return
        self._refuse_if_active()
        self.activate()
        _notice(self._connected_line("back on"))

    def _reattach_lost(self) -> None:
        """Resume a session whose connection was lost: the same kernel, if its server still has
        it (the network or the server came back), else the reason it was lost."""
        lost, target = self.session, self.target
        assert lost is not None
        if lost.channel.lost is None or target is None:
            raise NotConnected("The last remote session is closed; connect again.")
        lost.server.http.close()  # its pooled connections died with the route
        try:
            session = KernelSession.attach(lost.server, lost.kernel_id)
        except BinderAutorunError as exc:
            log.info("could not reattach to the lost kernel: %s", exc)
            raise lost.channel.lost from None
        self.deactivate()
        self._take(session, target, str(target.options.get("kernel_name", "")), "reattached to")

    def relaunch(self, replay: bool = False) -> None:
        """Launch a fresh server for the last target (after a cull or crash); optionally replay."""
        if self.target is None:
            raise NotConnected("Nothing to relaunch yet: connect once with --url, --local or -r REPO.")
        target, earlier = self.target, self.replayable + self.ran
        self.deactivate()
        self._forget_session()
        self.saved.drop(target.key)
        self.connect(target, target.options.get("kernel_name", ""), fresh=True)
        self.replayable = earlier
        if replay:
            self.replay()
        elif earlier:
            _notice(f"{len(earlier)} cell(s) ran remotely before; %binder_replay re-runs them.")

    def replay(self) -> None:
        """Re-run, on the current kernel, the cells that ran remotely before a relaunch."""
        session = self._live_session()
        cells, self.replayable = self.replayable, []
        for index, source in enumerate(cells, 1):
            head = source.strip().splitlines()[0] if source.strip() else ""
            _notice(f"replaying [{index}/{len(cells)}] {head[:70]}")
            reply = session.execute(source, None, store_history=False)
            if reply.get("status") != "ok":
                self.replayable = cells[index:]
                raise BinderAutorunError(
                    f"Replay stopped at cell {index} of {len(cells)}: {reply.get('ename')}: {reply.get('evalue')}; "
                    "fix it and run %binder_replay for the rest."
                )
            self.ran.append(source)

    def restart(self) -> None:
        """Restart the remote kernel: its state is lost, the connection stays."""
        self.bridge.close_remote_comms()  # a native restart closes the kernel's widgets too
        self._live_session().restart()
        self.ran = []
        self._align_counts_at_connect()
        _notice("restarted the remote kernel; its earlier state is gone.")

    def _refuse_if_active(self) -> None:
        if self.active:
            raise BinderAutorunError(
                f"Remote mode is already on ({self.target.label if self.target else 'connected'}); "
                "run %binder_off first to switch to another server."
            )

    def connect(self, target: Target, kernel_name: str = "", kernel_id: str = "", fresh: bool = False) -> None:
        """Launch or reattach ``target``, start or attach a kernel, switch remote mode on."""
        self._refuse_if_active()
        kernel_name = kernel_name or self.kernel_name
        session = None if fresh or kernel_id else self._reattach(target, kernel_name)
        if session is None:
            self._stop_local_server()
            launched = launch(target, self.launch_timeout, self.build_log)
            self.local_server = launched.local_server
            try:
                if target.kind == "gateway":  # no api/status or kernel listing there; starts may be slow
                    session = gateway_session(target.options["config"], kernel_name or None, kernel_id)
                else:
                    server = JupyterServer(launched.info)
                    session = self._open_session(server, target, kernel_name, kernel_id)
            except BaseException:
                self._stop_local_server()
                raise
        self._take(session, target, kernel_name, "connected to")

    def _take(self, session: KernelSession, target: Target, kernel_name: str, verb: str) -> None:
        """Make ``session`` the current one and switch remote mode on."""
        previous = self.session
        if previous is not None and previous.kernel_id == session.kernel_id and previous.server.url == session.server.url:
            session.owns_kernel = previous.owns_kernel
            self.bridge.attach(session)  # the same kernel: its widgets on the page stay, its cells ran there
            previous.close()
        else:
            self._forget_session()
            self.bridge.attach(session, adopt=not session.owns_kernel)
            self.ran = []
        target.options["kernel_name"] = kernel_name
        self.session, self.target = session, target
        self._reused_ids.clear()  # ids are unique per session; a new one may reuse them again
        if target.reattachable:
            self.saved.put(target.key, session.server.url, session.server.info.token, session.kernel_id)
        self._align_counts_at_connect()
        self.activate()
        _notice(self._connected_line(verb))

    def _open_session(self, server: JupyterServer, target: Target, kernel_name: str, kernel_id: str) -> KernelSession:
        """Start (or attach) the kernel in as few round trips as the server allows.

        Starting a kernel is itself authenticated, so it already proves the URL and the
        token; only when it fails is the server asked what it is, to say why in one sentence.
        """
        try:
            if self.kernel_path and not kernel_id:
                server.require_folder(self.kernel_path)
            if kernel_id:
                return KernelSession.attach(server, kernel_id)
            return KernelSession.start(server, kernel_name or None, self.kernel_path)
        except (AuthError, ConnectionLost):
            raise
        except ServerError as failed:
            if target.kind != "url":
                raise  # launchers know theirs is a Jupyter server
            try:
                server.api_info()
            except ServerError:
                raise ServerError(
                    f"{server.url} does not look like a Jupyter server (it has no /api); check the URL, "
                    "base path included (e.g. https://host/user/name/)."
                ) from None
            raise failed

    def _reattach(self, target: Target, kernel_name: str) -> KernelSession | None:
        """Reuse a still-live server (and kernel) saved for ``target``; drop it if dead."""
        record = self.saved.get(target.key)
        if record is None:
            return None
        server = JupyterServer(ServerInfo(record["url"], record["token"]), timeout=5)
        try:
            server.api_info()
            if server.kernel(record["kernel_id"]) is not None:
                session = KernelSession.attach(server, record["kernel_id"])
                _notice(f"reattached to the running kernel at {server.url}.")
            else:
                session = KernelSession.start(server, kernel_name or None, self.kernel_path)
                _notice(f"reusing the running server at {server.url} (new kernel).")
            return session
        except BinderAutorunError as exc:
            log.info("saved server for %s is gone (%s); launching anew", target.label, exc)
            self.saved.drop(target.key)
            return None

    def _align_counts_at_connect(self) -> None:
        """One numbering: whichever side is behind catches up (see ExecutionCounter)."""
        assert self.session is not None
        remote_next = self.session.execution_count + 1
        if remote_next > self.counter.next:
            self.counter.set_next(remote_next)
        else:
            self.session.set_execution_count(self.counter.next)

    def activate(self) -> None:
        """Route every cell to the current session."""
        _return_big_blocks_to_the_os(self.mmap_threshold)
        self.install()
        self.assist.install()
        self.active = True

    def deactivate(self) -> None:
        """Run cells locally again (the session is kept for a bare %binder_on)."""
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
            if self.target is not None:
                self.saved.drop(self.target.key)
            self.shutdown()

    def shutdown(self) -> None:
        """Shut down the kernel and server we started (also run at exit).

        A Binder or JupyterHub kernel is kept at exit (not on ``%binder_off
        --shutdown``) so a restarted local kernel can reattach; the hub's culler
        reclaims it if nobody does.
        """
        self.deactivate()
        keep = self.target is not None and self.target.reattachable and self.saved.get(self.target.key)
        if self.session is not None:
            self.bridge.detach(self.session)
            self.session.close() if keep else self.session.shutdown()
            self.session = None
        self._stop_local_server()

    def _forget_session(self) -> None:
        if self.session is not None:
            self.bridge.detach(self.session)
            self.session.shutdown()
            self.session = None

    def _stop_local_server(self) -> None:
        if self.local_server is not None:
            self.local_server.stop()
            self.local_server = None

    # -- running cells --------------------------------------------------------

    def run_cell(self, source: str) -> None:
        """Run one routed cell remotely, mirroring everything into this shell.

        With ``auto_relaunch``, a server found gone is relaunched, the earlier
        cells are replayed, and the cell runs on the new server.
        """
        try:
            self._run_cell(source)
        except ConnectionLost as lost:
            gone = self.session is not None and self.session.channel.lost is not None
            if not (self.auto_relaunch and gone and self.target is not None):
                raise
            _notice(f"{lost}\nbinder_autorun: auto_relaunch is on: relaunching {self.target.label}.")
            self.relaunch(replay=True)
            self._run_cell(source)

    def _run_cell(self, source: str) -> None:
        session = self._live_session()
        result = self.shell.displayhook.exec_result
        info = getattr(result, "info", None)
        store_history = bool(getattr(info, "store_history", True))
        silent = bool(getattr(info, "silent", False))
        line = int(getattr(result, "execution_count", None) or self.shell.displayhook.prompt_count)
        if session.restarted_unexpectedly:
            _notice("the remote kernel was restarted after it died; earlier remote state is lost.")
            session.wait_ready()
            self.ran = []
        if store_history:
            rewrite_history(self.shell, line, source)
            session.set_execution_count(line)
        parent = self._local_request()
        if parent["header"]["msg_id"] in self._reused_ids:  # a second remote request of one local request
            parent = {"header": {**parent["header"], "msg_id": wire.new_id()}}
        self._reused_ids[str(parent["header"]["msg_id"])] = None
        while len(self._reused_ids) > 1000:
            del self._reused_ids[next(iter(self._reused_ids))]
        self.bridge.remember(parent)  # what the remote sends after the cell ends still lands under it
        mirror = DisplayMirror(self.shell, self.counter, track_count=store_history, bridge=self.bridge)
        expressions = self.assist.requested_expressions()
        sync = self._synced_cell(1)
        if sync is not None:  # the remote's changes come back with the cell's own reply: no extra round trip
            expressions[sync.expression_key] = sync.after_expression()
        reply = session.execute(
            source, mirror, silent=silent, store_history=store_history, allow_stdin=mirror.allow_stdin,
            timeout=self.cell_timeout or None, msg_id=str(parent["header"]["msg_id"]),
            user_expressions=expressions,
        )
        if sync is not None:
            reply = sync.take(reply)  # the frontend never sees our expression
        self.assist.remember(reply)
        if reply.get("timed_out"):
            _notice(f"the cell ran longer than {self.cell_timeout:g} s and was interrupted.")
        if reply.get("status") == "ok" and store_history:
            self.ran.append(source)
        mirror.finish(reply)

    def _connected_line(self, verb: str) -> str:
        """One line: what remote mode now runs on, and how to leave it (never the token)."""
        assert self.session is not None and self.target is not None
        session = self.session
        spec = session.language or session.implementation or "?"
        kernel = self.target.options.get("kernel_name") or "default kernel"
        return (
            f"{verb} {self.target.label}: {kernel} ({spec}, kernel {session.kernel_id[:8]}), next cell "
            f"[{self.counter.next}]; every cell now runs there (%%local for one local cell, %binder_off to leave)."
        )

    def _local_request(self) -> wire.Message:
        """The local request running this cell, whose msg_id the remote request reuses: the
        ids the remote keeps (an Output widget's ``msg_id``) then name a request the frontend knows."""
        kernel = getattr(self.shell, "kernel", None)
        parent = kernel.get_parent("shell") if kernel is not None else None
        if isinstance(parent, dict) and (parent.get("header") or {}).get("msg_id"):
            return parent
        return {"header": {"msg_id": wire.new_id()}}  # a terminal: no frontend request to name

    # -- status ---------------------------------------------------------------

    def status(self, show_log: bool = False) -> str:
        """A few lines for %binder_status; never the token."""
        if show_log:
            return "\n".join(self.build_log) or "binder_autorun: no build log (the last launch was not a Binder build)."
        if self.session is None or self.target is None:
            return "binder_autorun: not connected (local kernel). Use %binder_on --url URL, --local or -r REPO."
        session = self.session
        language = session.kernel_info.get("language_info", {}).get("name", "?")
        idle = time.monotonic() - session.last_activity
        lines = [
            f"mode:       {'remote' if self.active else 'local (the remote session is kept; %binder_on resumes)'}",
            f"target:     {self.target.label}",
            f"server:     {session.server.url}",
            f"kernel:     {session.kernel_id} ({session.implementation or '?'}, {language})",
            f"connection: {session.channel.state}, {session.channel.reconnects} reconnect(s)",
            f"idle:       {idle:.0f} s since the last remote activity",
        ]
        if self.target.culls_idle:
            left = max(0, BINDER_IDLE_CULL - idle)
            lines.append(f"cull:       Binder culls idle kernels after ~{BINDER_IDLE_CULL // 60} min: about {left / 60:.0f} min left")
        if session.alive:
            try:
                model = session.server.kernel(session.kernel_id, timeout=5)
                lines.append(f"kernel state: {model.get('execution_state', '?') if model else 'gone'}")
            except BinderAutorunError as exc:
                lines.append(f"kernel state: unknown ({exc})")
        lines.append(f"sync:       {self.sync.status() if self.sync else 'off (%binder_sync DIR mirrors a folder)'}")
        return "\n".join(lines)

    # -- files and variables across the boundary (transfer.py, variables.py) ----------

    transfer_transport = Unicode(
        "auto", help="How %binder_push/%binder_pull move files: auto (the server's contents API when it has one), "
        "contents, or kernel (through the kernel channel; Python kernels)."
    ).tag(config=True)

    def transfer(self, transport: str = "", quiet: bool = False) -> Any:
        """A :class:`~binder_autorun.transfer.Transfer` between the local working directory and the remote kernel's."""
        from .transfer import Transfer, open_transport

        return Transfer(open_transport(self._live_session(), transport or self.transfer_transport), os.getcwd(), quiet=quiet)

    def push_files(self, paths: list[str], to: str = "", transport: str = "") -> Any:
        """Copy local files, folders and globs into the remote kernel's folder (``to`` inside it)."""
        return self.transfer(transport).push(paths, to)

    def pull_files(self, paths: list[str], to: str = "", transport: str = "") -> Any:
        """Copy remote files, folders and globs into the local working directory (``to`` inside it)."""
        return self.transfer(transport).pull(paths, to)

    def push_variables(self, names: list[str], pickle: bool = False) -> list[str]:
        """Copy local variables into the remote namespace (no pickle unless ``pickle``)."""
        from .variables import push_variables

        return push_variables(self._live_session(), self.shell.user_ns, names, pickle)

    def pull_variables(self, names: list[str], pickle: bool = False) -> list[str]:
        """Copy remote variables into the local namespace (no pickle unless ``pickle``)."""
        from .variables import pull_variables

        return pull_variables(self._live_session(), self.shell.user_ns, names, pickle)

    sync_max_size = Int(100 * 1000 * 1000, help="Sync skips files larger than this many bytes (with a notice).").tag(config=True)

    def start_sync(self, folder: str = ".", transport: str = "") -> None:
        """Mirror the local ``folder`` around each remote cell (see :mod:`binder_autorun.sync`)."""
        from .sync import Sync
        from .transfer import KernelHelper, open_transport

        session = self._live_session()
        self.stop_sync()
        helper = KernelHelper(session)
        helper.check_python()
        sync = Sync.for_folder(open_transport(session, transport or self.transfer_transport), helper, folder, os.getcwd(),
                               max_size=self.sync_max_size)
        sync.start()
        self.sync = sync
        self.shell.events.register("pre_run_cell", self._sync_before)
        self.shell.events.register("post_run_cell", self._sync_after)
        _notice(f"syncing {sync.local_dir} with the remote kernel's ./{sync.remote_dir} around each remote cell.")

    def stop_sync(self) -> None:
        """Stop mirroring (files stay where they are)."""
        if self.sync is None:
            return
        self.sync.stop()
        self.sync = None
        for event, callback in (("pre_run_cell", self._sync_before), ("post_run_cell", self._sync_after)):
            try:
                self.shell.events.unregister(event, callback)
            except ValueError:
                pass

    def _synced_cell(self, depth: int) -> Sync | None:
        """The sync, if the cell at hand is a top-level remote one: pre_run_cell and the cell itself
        run at depth 1, post_run_cell after it (depth 0; ipykernel and IPython trigger it outside run_cell_async)."""
        if self.sync is None or not self.active or self.router.depth != depth or self.router.cell != "remote":
            return None
        return self.sync

    def _sync_step(self, step: str, depth: int) -> None:
        """Sync before or after a top-level remote cell; a failure is one notice, the cell goes on."""
        sync = self._synced_cell(depth)
        if sync is None:
            return
        try:
            getattr(sync, step)()
            sync.state.last_error = ""
        except BinderAutorunError as exc:
            sync.state.last_error = str(exc)
            _notice(f"sync: {exc}")

    def _sync_before(self, info: Any = None) -> None:
        self._sync_step("before_cell", 1)

    def _sync_after(self, result: Any = None) -> None:
        self._sync_step("after_cell", 0)

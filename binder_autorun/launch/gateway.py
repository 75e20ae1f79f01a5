"""Kernels served by a kernel gateway: Jupyter Enterprise Gateway or Kernel Gateway.

Where a team's kernels run on a cluster (Kubernetes, YARN/Spark, Docker) they
are served by a gateway, not a notebook server: it has ``api/kernelspecs``,
``api/kernels`` and the kernel websocket, but no ``api/status``, no contents
API, no sessions, and it may refuse to list kernels. So nothing here calls
those; one kernel's model (``GET api/kernels/{id}``) is allowed on both.

The configuration follows the conventions of jupyter_server's own gateway
client, so an existing set-up works unchanged: ``JUPYTER_GATEWAY_URL``,
``JUPYTER_GATEWAY_AUTH_TOKEN`` / ``_AUTH_SCHEME`` / ``_AUTH_HEADER_KEY``,
``JUPYTER_GATEWAY_HEADERS`` (JSON), ``JUPYTER_GATEWAY_VALIDATE_CERT``,
``JUPYTER_GATEWAY_ALLOWED_ENVS``, ``JUPYTER_GATEWAY_REQUEST_TIMEOUT`` and
``KERNEL_LAUNCH_TIMEOUT``. The kernel start request carries the ``env`` a
gateway places and configures the kernel by (every local ``KERNEL_*``
variable, the allowed ones, ``KERNEL_USERNAME``...).

A cluster kernel may take minutes to start (image pull, scheduling), and the
gateway answers the start request only once the kernel is up: the request runs
on a thread while the caller shows progress, honours the launch timeout and
lets Ctrl-C cancel it — shutting down whatever was started.
"""

from __future__ import annotations

import getpass
import html
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TextIO

import requests

from ..errors import AuthError, BinderAutorunError, LaunchError, NotConnected, ServerError
from ..server import GONE_STATUSES, JupyterServer, ServerInfo, token_in_url
from ..session import KernelSession
from .progress import _in_notebook, _NotebookView, _TerminalView, _View

log = logging.getLogger(__name__)

URL_ENV = "JUPYTER_GATEWAY_URL"
TOKEN_ENV = "JUPYTER_GATEWAY_AUTH_TOKEN"
#: KERNEL_LAUNCH_TIMEOUT's default in jupyter_server's gateway client (seconds)
DEFAULT_LAUNCH_TIMEOUT = 40.0
#: how much longer than the launch timeout a start request may take (JUPYTER_GATEWAY_LAUNCH_TIMEOUT_PAD)
DEFAULT_LAUNCH_PAD = 2.0
DEFAULT_REQUEST_TIMEOUT = 42.0


def _flag(value: str | None, default: bool) -> bool:
    """jupyter_server's reading of a boolean variable: only "no" and "false" turn it off."""
    return default if value is None else value.strip().lower() not in ("no", "false")


@dataclass(frozen=True)
class GatewayInfo(ServerInfo):
    """A gateway's URL and credentials: the token under a configurable header and scheme,
    extra headers (``JUPYTER_GATEWAY_HEADERS``) and whether its TLS certificate is checked.

    The websocket and every REST call take their headers from here, so the extra
    headers (which may hold secrets too) travel everywhere the token does, and
    never show in a repr.
    """

    auth_scheme: str = "token"
    auth_header: str = "Authorization"
    extra_headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    verify: bool = True

    @property
    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.token:
            headers[self.auth_header] = f"{self.auth_scheme} {self.token}" if self.auth_scheme else self.token
        return headers


@dataclass(frozen=True)
class GatewayConfig:
    """Everything needed to start kernels on one gateway (a relaunch starts another alike)."""

    info: GatewayInfo
    #: what the start request's ``env`` carries (values may be secret: never logged)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    launch_timeout: float = DEFAULT_LAUNCH_TIMEOUT
    launch_pad: float = DEFAULT_LAUNCH_PAD
    request_timeout: float = 10.0

    @property
    def url(self) -> str:
        return self.info.url

    @classmethod
    def from_env(
        cls, url: str = "", token: str | None = None, environ: Mapping[str, str] | None = None, working_dir: str = "",
    ) -> GatewayConfig:
        """The gateway at ``url`` (else ``JUPYTER_GATEWAY_URL``), configured as jupyter_server's gateway client is.

        The token: ``token``, else one in the URL (``?token=``), else
        ``JUPYTER_GATEWAY_AUTH_TOKEN``, else ``BINDER_AUTORUN_TOKEN``.
        ``working_dir`` becomes ``KERNEL_WORKING_DIR`` (unless that is set).
        """
        env = os.environ if environ is None else environ
        url = url or env.get(URL_ENV, "")
        if not url:
            raise NotConnected(f"No gateway given: use --gateway URL or set {URL_ENV}.")
        if token is None:
            token = token_in_url(url) or env.get(TOKEN_ENV) or env.get("BINDER_AUTORUN_TOKEN", "")
        try:
            extra = json.loads(env.get("JUPYTER_GATEWAY_HEADERS") or "{}")
            if not isinstance(extra, dict):
                raise ValueError
        except ValueError:
            raise ServerError("JUPYTER_GATEWAY_HEADERS is not a JSON object; set it like '{\"X-Name\": \"value\"}'.") from None
        info = GatewayInfo(
            url,
            token,
            auth_scheme=env.get("JUPYTER_GATEWAY_AUTH_SCHEME", "token"),
            auth_header=env.get("JUPYTER_GATEWAY_AUTH_HEADER_KEY", "Authorization"),
            extra_headers=tuple((str(key), str(value)) for key, value in extra.items()),
            verify=_flag(env.get("JUPYTER_GATEWAY_VALIDATE_CERT"), True),
        )
        launch_timeout, pad = _number(env, "KERNEL_LAUNCH_TIMEOUT", DEFAULT_LAUNCH_TIMEOUT), _number(
            env, "JUPYTER_GATEWAY_LAUNCH_TIMEOUT_PAD", DEFAULT_LAUNCH_PAD
        )
        request_timeout = _number(env, "JUPYTER_GATEWAY_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)
        # as jupyter_server keeps them in step: a start request outlasts the launch by the pad, and a longer
        # request timeout lengthens the launch timeout
        if request_timeout > launch_timeout + pad:
            launch_timeout = request_timeout - pad
        allowed = [name.strip() for name in env.get("JUPYTER_GATEWAY_ALLOWED_ENVS", env.get("JUPYTER_GATEWAY_ENV_WHITELIST", "")).split(",")]
        kernel_env = {key: value for key, value in env.items() if key.startswith("KERNEL_") or key in allowed}
        kernel_env.setdefault("KERNEL_USERNAME", env.get("JUPYTER_GATEWAY_HTTP_USER") or _local_user())
        kernel_env["KERNEL_LAUNCH_TIMEOUT"] = str(int(launch_timeout))
        if working_dir:
            kernel_env.setdefault("KERNEL_WORKING_DIR", working_dir)
        return cls(info, kernel_env, launch_timeout, pad, min(request_timeout, 30.0))


def _number(env: Mapping[str, str], name: str, default: float) -> float:
    try:
        return float(env.get(name) or default)
    except ValueError:
        raise ServerError(f"{name} must be a number of seconds, not {env.get(name)!r}.") from None


def _local_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return ""


class GatewayServer(JupyterServer):
    """REST client for a kernel gateway: kernelspecs and kernels only.

    A 401 is a token problem; a 403 on a kernel start is the gateway refusing
    *that* start (an unauthorized ``KERNEL_USERNAME``, a kernel limit), told in
    its own words.
    """

    def __init__(self, config: GatewayConfig, timeout: float | None = None) -> None:
        super().__init__(config.info, timeout=timeout or config.request_timeout)
        self.config = config
        self._specs: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"GatewayServer({self.info.url!r})"

    def clone(self) -> GatewayServer:
        """A second client (own HTTP session) for another thread."""
        return GatewayServer(self.config, self.timeout)

    def refused(self, method: str, path: str, response: requests.Response) -> ServerError:
        reason = _reason_text(response)
        if response.status_code == 401:
            where = "--token or " + TOKEN_ENV
            if not self.info.token:
                return AuthError(f"The kernel gateway at {self.url} requires a token; give it with {where}.")
            return AuthError(f"The kernel gateway at {self.url} rejected the token (HTTP 401); check {where}.")
        if method == "POST" and path == "api/kernels":
            user = self.config.env.get("KERNEL_USERNAME", "")
            hint = (
                f" (KERNEL_USERNAME was {user!r}; set KERNEL_USERNAME to a user the gateway accepts)"
                if "KERNEL_USERNAME" in reason or (user and f"'{user}'" in reason) else ""
            )
            return ServerError(f"The kernel gateway at {self.url} refused to start a kernel: {_first_sentence(reason)}{hint}.")
        return AuthError(
            f"The kernel gateway at {self.url} refused {method} {path} (HTTP 403: {_first_sentence(reason)}); "
            f"check the token ({TOKEN_ENV}) and what it may do."
        )

    def api_info(self) -> dict[str, Any]:
        """``GET api/kernelspecs``: needs the token, so one round trip proves the URL and the token."""
        specs = self.request("GET", "api/kernelspecs").json()
        if not isinstance(specs, dict) or "kernelspecs" not in specs:
            raise ServerError(f"{self.url} does not look like a kernel gateway (no kernelspecs at api/kernelspecs).")
        self._specs = specs
        return specs

    def kernelspecs(self) -> dict[str, Any]:
        return self._specs if self._specs is not None else self.api_info()

    def start_kernel(self, name: str | None = None, path: str | None = None, kernel_id: str = "") -> dict[str, Any]:
        """``POST api/kernels`` with ``{"name", "env"}``; returns once the gateway has the kernel up.

        ``path`` (a working directory) becomes ``KERNEL_WORKING_DIR``; ``kernel_id``
        becomes ``KERNEL_ID``, which Enterprise Gateway takes as the new kernel's id
        (so a cancelled start can be shut down by id).
        """
        specs = self.kernelspecs()
        known = specs.get("kernelspecs", {})
        name = name or specs.get("default") or next(iter(sorted(known)), "python3")
        if name not in known:
            raise ServerError(f"The kernel gateway at {self.url} has no kernel named {name!r}; choose one of: {', '.join(sorted(known)) or 'none'}.")
        env = dict(self.config.env)
        if path:
            env.setdefault("KERNEL_WORKING_DIR", path)
        if kernel_id:
            env.setdefault("KERNEL_ID", kernel_id)
        log.info("starting a %s kernel on %s (env: %s)", name, self.url, ", ".join(sorted(env)))  # names only: values may be secret
        timeout = self.config.launch_timeout + self.config.launch_pad
        return self.request("POST", "api/kernels", json={"name": name, "env": env}, expect=(200, 201), timeout=timeout).json()


def _reason_text(response: requests.Response) -> str:
    try:
        body = response.json()
        text = body.get("message") or body.get("reason") or response.reason
    except (ValueError, AttributeError):
        text = response.reason
    return " ".join(str(text or f"HTTP {response.status_code}").split())


def _first_sentence(text: str) -> str:
    """Enterprise Gateway's reasons run to two sentences; ours are one."""
    head = text.split(". ", 1)[0]
    return head.rstrip(".")


class _Start(threading.Thread):
    """Starts a kernel (the POST) and connects to it, off the caller's thread.

    :meth:`cancel` may come at any point; whatever was started by then (or
    gets started by the request still in flight) is shut down.
    """

    def __init__(self, server: GatewayServer, kernel_name: str | None, working_dir: str, session_kwargs: dict[str, Any]) -> None:
        super().__init__(name="binder-autorun-gateway-start", daemon=True)
        self.server = server
        self.kernel_name = kernel_name
        self.working_dir = working_dir
        self.session_kwargs = session_kwargs
        self.planned_id = str(uuid.uuid4())
        self.phase = "requesting a kernel"
        self.kernel_id = ""
        self.session: KernelSession | None = None
        self.error: BaseException | None = None
        self.cancelled = False
        self._lock = threading.Lock()
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            model = self.server.start_kernel(self.kernel_name, self.working_dir, kernel_id=self.planned_id)
            with self._lock:
                self.kernel_id = str(model["id"])
                self.phase = "connecting to the kernel"
                self.session = KernelSession(self.server, self.kernel_id, owns_kernel=True, **self.session_kwargs)
                cancelled = self.cancelled
            if cancelled:
                self._discard()
                return
            self.session.connect()
            if self.cancelled:
                self._discard()
        except BaseException as exc:  # handed to the caller's thread
            self.error = exc
            if self.session is not None:
                self._discard()
        finally:
            self.finished.set()

    def cancel(self) -> bool:
        """Stop: shut down the kernel if the gateway has it. False when the start request is still
        in flight with nothing to shut down yet: the thread does it once the request returns."""
        with self._lock:
            self.cancelled = True
            session = self.session
        if session is not None:
            self._discard()
            return True
        # Enterprise Gateway names the kernel by our KERNEL_ID, but may register it only once it is up
        try:
            response = self.server.clone().request("DELETE", f"api/kernels/{self.planned_id}", expect=(200, 204, *GONE_STATUSES))
        except BinderAutorunError:
            return False
        return response.status_code in (200, 204)

    def _discard(self) -> None:
        session = self.session
        if session is not None:
            session.channel.close()
            try:
                self.server.clone().shutdown_kernel(session.kernel_id)
                log.info("shut down the kernel %s whose start was cancelled", session.kernel_id)
            except BinderAutorunError:
                log.info("could not shut down the cancelled kernel %s (gateway gone?)", session.kernel_id)


def start_session(
    server: GatewayServer,
    kernel_name: str | None = None,
    working_dir: str = "",
    *,
    show_after: float = 1.0,
    stream: TextIO | None = None,
    cancel_grace: float = 5.0,
    **session_kwargs: Any,
) -> KernelSession:
    """Start a kernel on the gateway and connect to it, with progress once it takes over ``show_after`` s.

    Bounded by the launch timeout (plus its pad); Ctrl-C cancels (the kernel is
    shut down, waiting up to ``cancel_grace`` s for a start in flight to end)
    and re-raises KeyboardInterrupt.
    """
    server.api_info()  # a wrong URL or token: one sentence, before anything starts
    start = _Start(server, kernel_name, working_dir, session_kwargs)
    progress = GatewayProgress(server.url, kernel_name or server.kernelspecs().get("default") or "default", show_after, stream)
    limit = server.config.launch_timeout + server.config.launch_pad
    start.start()
    try:
        while not start.finished.wait(0.2):
            progress.update(start.phase)
            if progress.elapsed > limit:
                progress.failed("timed out")
                start.cancel()
                raise LaunchError(
                    f"The kernel gateway at {server.url} did not start the kernel within {limit:.0f} s; "
                    "a cluster may need longer: raise KERNEL_LAUNCH_TIMEOUT."
                )
    except KeyboardInterrupt:
        progress.failed("interrupted")
        if not start.cancel():
            try:  # a process about to exit would take the thread (and its clean-up) with it
                start.finished.wait(cancel_grace)
            except KeyboardInterrupt:
                pass
        raise
    if start.error is not None:
        progress.failed("failed")
        raise start.error
    assert start.session is not None
    progress.done()
    log.info("gateway kernel %s up in %.1f s", start.session.kernel_id, progress.elapsed)
    return start.session


def gateway_session(config: GatewayConfig, kernel_name: str | None = None, kernel_id: str = "", **kwargs: Any) -> KernelSession:
    """A session on the gateway: attach to ``kernel_id`` (``GET api/kernels/{id}`` is allowed there
    even where listing is not), else start a kernel with progress."""
    server = GatewayServer(config)
    if kernel_id:
        return KernelSession.attach(server, kernel_id)
    return start_session(server, kernel_name, **kwargs)


class GatewayProgress:
    """Shows a slow kernel start, updated in place with the elapsed time.

    Nothing is shown for a start under ``show_after`` seconds (a gateway on the
    same network); past it, one line (a display in a notebook) updated about
    once a second, ending in a summary.
    """

    def __init__(self, url: str, kernel_name: str, show_after: float = 1.0, stream: TextIO | None = None) -> None:
        self.url = url
        self.kernel_name = kernel_name
        self.show_after = show_after
        self.started = time.monotonic()
        self._stream = stream
        self._view: _View | None = None
        self._shown = ""

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def update(self, phase: str) -> None:
        """Redraw if the phase or the shown second changed (no-op while the start is quick)."""
        if self.elapsed < self.show_after:
            return
        text = f"Kernel gateway [{phase} {self.elapsed:.0f} s] {self.kernel_name} on {self.url}"
        if text != self._shown:
            self._shown = text
            markup = (
                f"Kernel gateway {html.escape(self.url)}: <b>{html.escape(phase)}</b> {self.elapsed:.0f} s "
                f"(<code>{html.escape(self.kernel_name)}</code>)"
            )
            self._show(text, markup)

    def done(self) -> None:
        if self._view is not None:
            text = f"Kernel gateway: {self.kernel_name} kernel ready in {self.elapsed:.1f} s on {self.url}"
            self._view.close(text, html.escape(text))

    def failed(self, why: str) -> None:
        if self._view is not None:
            text = f"Kernel gateway: starting a {self.kernel_name} kernel {why} after {self.elapsed:.0f} s on {self.url}"
            self._view.close(text, html.escape(text))

    def _show(self, text: str, markup: str) -> None:
        if self._view is None:
            self._view = _NotebookView() if self._stream is None and _in_notebook() else _TerminalView(self._stream or sys.stderr)
        self._view.show(text, markup)

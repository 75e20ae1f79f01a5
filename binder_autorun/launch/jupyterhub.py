"""Starting (or reusing) a user's server on a JupyterHub (``%binder_on --jupyterhub``).

The flow follows JupyterHub's REST API:

1. ``GET hub/api/user`` tells whose token this is (and its scopes), so the user
   never has to type their own name;
2. ``POST hub/api/users/{name}/server`` (or ``servers/{server_name}``) starts the
   server: 201 started, 202 still starting, 400 "already running" (reuse it) or
   "pending stop" (wait, then start again);
3. ``GET …/progress`` is an event stream of ``data: {json}`` lines with
   ``progress``, ``message`` and finally ``ready`` (with the server's ``url``
   path) or ``failed`` (with the hub's reason); blank lines are keepalives;
4. the server is at the hub's origin plus that ``url`` path, and the same token
   opens it when it carries an ``access:servers`` scope for that server (every
   token made on ``/hub/token`` without narrowing its scopes does).

The token only travels in the ``Authorization`` header; no message, log record
or repr contains it.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import requests

from ..errors import AuthError, LaunchError
from ..server import ServerInfo
from .events import iter_events

log = logging.getLogger(__name__)

#: seconds to wait for a connection to the hub
CONNECT_TIMEOUT = 10.0
#: longest silence we accept on a progress stream (the hub sends a keepalive every 8 s)
STREAM_SILENCE = 30.0
#: pause between retries while the hub finishes stopping the server
STOP_POLL_INTERVAL = 0.5


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a launch, for a progress display.

    ``phase`` uses BinderHub's names where they fit (``launching``, ``ready``,
    ``failed``) so one renderer can show both kinds of launch; ``progress`` is the
    hub's percentage when it gives one; ``data`` is the hub's event as received.
    """

    phase: str
    message: str = ""
    progress: float | None = None
    data: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class HubLaunch:
    """A ready JupyterHub server: where it is (with the token), whose, and how long it took."""

    info: ServerInfo
    user: str
    server_name: str
    launch_seconds: float
    #: False when the server was already running (or starting) and we only joined it
    started: bool = True
    hub_url: str = ""


def hub_base_url(url: str) -> str:
    """The hub's root (``scheme://host[:port]/prefix/``) from whatever the user pasted.

    Accepts ``hub.example.org``, ``https://hub.example.org/hub/home``,
    ``https://host/prefix/hub/token``, ``https://host/user/name/lab`` and the like.
    """
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        shown = urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
        raise LaunchError(f"{shown!r} is not a JupyterHub address; give one like https://hub.example.org.")
    path = parts.path or "/"
    for marker in ("/hub/", "/user/"):
        probe = path if path.endswith("/") else path + "/"
        if marker in probe:
            path = probe[: probe.index(marker) + 1]
            break
    if not path.endswith("/"):
        path += "/"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], path, "", ""))


def show_progress(event: ProgressEvent) -> None:
    """A JupyterHub launch step as one line on stderr (spawns take seconds, not minutes)."""
    if event.message:
        print(f"JupyterHub: {event.message}", file=sys.stderr)


class JupyterHubLauncher:
    """Start (or reuse) the token owner's server on a JupyterHub and wait until it is ready.

    ``server_name`` picks a named server (the hub must allow them); ``timeout``
    bounds the whole launch in seconds.
    """

    def __init__(self, hub_url: str, token: str, server_name: str = "", timeout: float = 300) -> None:
        self.hub_url = hub_base_url(hub_url)
        self.token = token
        self.server_name = server_name.strip().strip("/")
        self.timeout = timeout
        self.http: requests.Session  # one per launch, made by launch()
        self._deadline = 0.0
        #: True once a spawn is under way that this launch asked for (an interrupt cancels it)
        self._ours = False

    def __repr__(self) -> str:
        return f"JupyterHubLauncher({self.hub_url!r}, server_name={self.server_name!r})"

    # --- public ------------------------------------------------------------------

    def launch(self, on_event: Callable[[ProgressEvent], None] | None = None) -> HubLaunch:
        """Start or reuse the server; report each step to ``on_event``; return where it is.

        Raises :class:`AuthError` for a token the hub refuses (or one that could not
        open the server) and :class:`LaunchError` for everything else, including an
        interrupted launch (the spawn we asked for is then cancelled).
        """
        if not self.token:
            raise AuthError(f"A JupyterHub launch needs an API token; create one on {self.hub_url}hub/token and pass it with --token (or BINDER_AUTORUN_TOKEN).")
        emit = on_event or (lambda event: None)
        began = time.monotonic()
        self._deadline = began + self.timeout
        self._ours = False
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.token}"
        user = ""
        try:
            model = self._whoami()
            user = str(model["name"])
            who = self._who(user)
            emit(ProgressEvent("launching", f"Requesting {who} from {self.hub_url}", 0))
            status, url_path = self._request_start(user, model)
            if url_path is None:
                url_path = self._follow_progress(user, emit, post_status=status)
        except KeyboardInterrupt:
            raise self._interrupted(user) from None
        finally:
            self.http.close()
        elapsed = time.monotonic() - began
        info = ServerInfo(self._absolute(url_path), self.token)
        emit(ProgressEvent("ready", f"Ready: {who} at {info.url}", 100, {"url": info.url}))
        log.info("%s ready at %s after %.1f s (%s)", who, info.url, elapsed, "started" if self._ours else "reused")
        return HubLaunch(info, user, self.server_name, elapsed, started=self._ours, hub_url=self.hub_url)

    # --- steps -------------------------------------------------------------------

    def _whoami(self) -> dict[str, Any]:
        """``GET hub/api/user``: the token's owner, their servers and the token's scopes."""
        response = self._call("GET", "hub/api/user")
        if response.status_code in (401, 403):
            raise AuthError(
                f"The JupyterHub at {self.hub_url} rejected the token (HTTP {response.status_code}); "
                f"create a new one on {self.hub_url}hub/token and pass it with --token (or BINDER_AUTORUN_TOKEN)."
            )
        model = _json(response)
        if response.status_code != 200 or not isinstance(model.get("name"), str):
            raise LaunchError(
                f"{self.hub_url} does not look like a JupyterHub (GET hub/api/user answered HTTP {response.status_code}); "
                "give the hub's address, like https://hub.example.org."
            )
        if model.get("kind") == "service":
            raise LaunchError(
                f"The token belongs to the JupyterHub service {model['name']!r}, not to a user; "
                f"use a user's token from {self.hub_url}hub/token."
            )
        scopes = model.get("scopes")
        if isinstance(scopes, list) and not any(str(s).split("!")[0] == "access:servers" for s in scopes):
            # the hub would start the server, but the server would then refuse this token
            raise AuthError(
                "This JupyterHub token may not open servers (it lacks the 'access:servers' scope); "
                f"create one on {self.hub_url}hub/token without narrowing its scopes."
            )
        return model

    def _request_start(self, user: str, model: dict[str, Any]) -> tuple[int, str | None]:
        """POST the start; return the status and, for a server already running, its URL path."""
        who = self._who(user)
        path = self._server_path(user)
        servers = model.get("servers")
        known = isinstance(servers, dict)
        existing = servers.get(self.server_name) if isinstance(servers, dict) else None
        active = isinstance(existing, dict) and bool(existing.get("ready") or existing.get("pending"))
        while True:
            # a POST cut short by an interrupt may still start the server: cancel it then
            self._ours = known and not active
            response = self._call("POST", path, read_timeout=max(self._remaining(), 1.0))
            status = response.status_code
            message = _message(response)
            if status in (201, 202):
                # 202 also answers a spawn someone else began; the model told us which
                self._ours = not (known and active)
                log.info("JupyterHub %s %s", "started" if status == 201 else "is starting", who)
                return status, None
            self._ours = False
            if status in (401, 403):
                raise AuthError(
                    f"The JupyterHub at {self.hub_url} refused to start {who} (HTTP {status}); "
                    f"the token needs the 'servers' scope: create one on {self.hub_url}hub/token without narrowing its scopes."
                )
            if status == 400 and "already running" in message:
                log.info("%s is already running; reusing it", who)
                url = existing.get("url") if isinstance(existing, dict) else None
                return status, url if isinstance(url, str) and url else self._default_url_path(user)
            if status == 400 and "pending stop" in message:
                if self._remaining() <= 0:
                    raise LaunchError(f"Gave up after {self.timeout:g} s waiting for {who} to stop; try again in a minute.")
                log.info("%s is stopping; will start it again once it has stopped", who)
                time.sleep(min(STOP_POLL_INTERVAL, self._remaining()))
                active = False
                continue
            if status >= 500:
                # the reason is in the progress stream (POST only says "Internal Server Error")
                log.info("JupyterHub answered HTTP %s to starting %s: %s", status, who, message)
                self._ours = not (known and active)
                return status, None
            raise LaunchError(f"The JupyterHub at {self.hub_url} refused to start {who} (HTTP {status}): {message}.")

    def _follow_progress(self, user: str, emit: Callable[[ProgressEvent], None], post_status: int) -> str:
        """Read the spawn's progress stream until ``ready`` (return its URL path) or ``failed``."""
        who = self._who(user)
        progress_path = self._server_path(user) + "/progress"
        read_timeout = max(min(STREAM_SILENCE, self._remaining()), 0.5)
        response = self._call("GET", progress_path, stream=True, read_timeout=read_timeout,
                              headers={"Accept": "text/event-stream"})
        with response:
            if response.status_code in (401, 403):
                raise AuthError(
                    f"The JupyterHub at {self.hub_url} would not show the progress of {who} (HTTP {response.status_code}); "
                    "the token needs the 'read:servers' scope too."
                )
            if response.status_code != 200:
                message = _message(response)
                if post_status >= 500:
                    raise LaunchError(
                        f"JupyterHub could not start {who} (HTTP {post_status}) and gives no reason ({message}); "
                        "the hub's logs may say why, ask its admin."
                    )
                raise LaunchError(f"JupyterHub says {who} is not starting (HTTP {response.status_code}: {message}); run the command again.")
            last = [""]

            def chunks() -> Iterator[bytes]:
                # keepalives carry no event, so the deadline is checked on every chunk
                for chunk in response.iter_content(chunk_size=None):
                    if self._remaining() <= 0:
                        raise self._timed_out(who, last[0])
                    yield chunk

            try:
                for event in iter_events(chunks()):
                    message = str(event.get("message") or "").strip()
                    last[0] = message or last[0]
                    if event.get("failed"):
                        reason = message or "no reason given"
                        raise LaunchError(
                            f"JupyterHub could not start {who}: {_clause(reason)}; "
                            "try again, and if it keeps failing show this message to the hub's admin."
                        )
                    if event.get("ready"):
                        url = event.get("url")
                        return url if isinstance(url, str) and url else self._default_url_path(user)
                    progress = event.get("progress")
                    log.debug("progress of %s: %s %s", who, progress, message)
                    emit(ProgressEvent("launching", message, float(progress) if isinstance(progress, (int, float)) else None, event))
            except requests.exceptions.RequestException as error:
                # a read timeout inside a stream arrives as a ConnectionError
                if self._remaining() <= 0.5:
                    raise self._timed_out(who, last[0]) from None
                if "timed out" in str(error).lower():
                    raise LaunchError(
                        f"The JupyterHub at {self.hub_url} went silent for {read_timeout:g} s while {who} was starting; "
                        "run the command again to keep waiting."
                    ) from None
                raise LaunchError(
                    f"The connection to the JupyterHub at {self.hub_url} broke while {who} was starting; run the command again to keep waiting."
                ) from None
        if self._remaining() <= 0:
            raise self._timed_out(who, last[0])
        raise LaunchError(
            f"JupyterHub stopped reporting before {who} was ready (last: {last[0] or 'nothing'}); run the command again to keep waiting."
        )

    # --- helpers -------------------------------------------------------------------

    def _call(self, method: str, path: str, *, read_timeout: float = 30.0, **kwargs: Any) -> requests.Response:
        """One hub API request; transport failures become one sentence without the token."""
        try:
            return self.http.request(method, self.hub_url + path, timeout=(CONNECT_TIMEOUT, read_timeout), **kwargs)
        except requests.exceptions.SSLError:
            raise LaunchError(
                f"The TLS certificate of the JupyterHub at {self.hub_url} could not be verified; check the address (verification stays on)."
            ) from None
        except requests.exceptions.ConnectTimeout:
            raise LaunchError(f"Could not connect to the JupyterHub at {self.hub_url} within {CONNECT_TIMEOUT:g} s; check the address and your network.") from None
        except requests.exceptions.Timeout:
            raise LaunchError(f"The JupyterHub at {self.hub_url} did not answer within {read_timeout:g} s; try again later.") from None
        except requests.exceptions.RequestException:
            raise LaunchError(f"Could not reach the JupyterHub at {self.hub_url}; check the address and your network.") from None

    def _server_path(self, user: str) -> str:
        base = f"hub/api/users/{quote(user, safe='')}"
        return f"{base}/servers/{quote(self.server_name, safe='')}" if self.server_name else f"{base}/server"

    def _default_url_path(self, user: str) -> str:
        """Where JupyterHub puts a server unless configured otherwise (no subdomains)."""
        path = urlsplit(self.hub_url).path + f"user/{quote(user, safe='')}/"
        return path + (quote(self.server_name, safe="") + "/" if self.server_name else "")

    def _absolute(self, url_path: str) -> str:
        if "://" in url_path:  # hubs with subdomains give full URLs
            return url_path
        parts = urlsplit(self.hub_url)
        return urlunsplit((parts.scheme, parts.netloc, url_path, "", ""))

    def _who(self, user: str) -> str:
        return f"{user}'s server {self.server_name!r}" if self.server_name else f"{user}'s server"

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _timed_out(self, who: str, last: str) -> LaunchError:
        said = f" (JupyterHub last said: {_clause(last)})" if last else ""
        return LaunchError(
            f"Gave up waiting for {who} after {self.timeout:g} s{said}; it may still be starting, so run the same command again to keep waiting."
        )

    def _interrupted(self, user: str) -> LaunchError:
        """Cancel the spawn this launch asked for, so an interrupt leaves nothing half-started."""
        if not (user and self._ours):
            return LaunchError("The JupyterHub launch was interrupted; no server was started by it.")
        who = self._who(user)
        try:
            with requests.Session() as http:
                http.headers["Authorization"] = f"token {self.token}"
                http.delete(self.hub_url + self._server_path(user), timeout=(CONNECT_TIMEOUT, 10))
        except requests.exceptions.RequestException:
            log.warning("could not ask JupyterHub to stop %s after the interrupt", who)
            return LaunchError(f"The launch was interrupted, and stopping {who} failed; stop it from {self.hub_url}hub/home.")
        log.info("launch interrupted; asked JupyterHub to stop %s", who)
        self._ours = False
        return LaunchError(f"The launch was interrupted; JupyterHub was asked to stop {who}, which was still starting.")


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response: requests.Response) -> str:
    """The hub's own error message (its JSON ``message``), else the HTTP reason."""
    return _clause(str(_json(response).get("message") or response.reason or "no message"))


def _clause(text: str) -> str:
    """``text`` ready to sit inside our sentence: trimmed, without a final full stop (an ellipsis stays)."""
    text = " ".join(text.split())
    return text if text.endswith("...") else text.rstrip(".")

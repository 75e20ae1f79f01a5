"""Talking to a Jupyter server: a small REST client that knows base_url and auth.

The token only ever travels in the ``Authorization`` header; it is kept out of
URLs, reprs, log records and error messages.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

import requests

from .errors import AuthError, ConnectionLost, ServerError, ServerUnreachable

log = logging.getLogger(__name__)

#: statuses a proxy or server gives for a server or kernel that is gone
GONE_STATUSES = frozenset({404, 410, 424, 502, 503})


@dataclass(frozen=True)
class ServerInfo:
    """Where a Jupyter server lives: its URL (with base_url) and its token.

    A URL pasted as Jupyter prints it (``http://host:8888/lab?token=abc``) works:
    without an explicit ``token`` the URL's is used, and the stored ``url`` never
    holds it (it is shown in messages and statuses).
    """

    url: str
    token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            object.__setattr__(self, "token", token_in_url(self.url))
        object.__setattr__(self, "url", normalize_url(self.url))

    @property
    def ws_url(self) -> str:
        """The server URL with a websocket scheme."""
        scheme, rest = self.url.split("://", 1)
        return ("wss" if scheme == "https" else "ws") + "://" + rest

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header for requests and the websocket."""
        return {"Authorization": f"token {self.token}"} if self.token else {}


#: first path segments of a frontend page after the base_url (what a browser's address bar shows):
#: JupyterLab, Notebook 7 and classic, RetroLab, Voila, server pages, the API itself
UI_SEGMENTS = frozenset({
    "lab", "tree", "notebooks", "edit", "doc", "view", "voila", "apps", "retro", "consoles",
    "terminals", "login", "logout", "files", "nbconvert", "api", "static", "custom",
})


def token_in_url(url: str) -> str:
    """The ``token`` query parameter of a pasted URL ("" when it has none)."""
    query = urlsplit(url.strip()).query
    return next((value for key, value in parse_qsl(query) if key == "token"), "")


def _base_path(path: str) -> str:
    """``path`` up to (not including) its first frontend segment: ``/user/me/lab/tree/x`` -> ``/user/me/``.

    The segment right after ``user`` is a user name (a user may be called ``lab``), never a page.
    """
    segments = path.split("/")
    for index, segment in enumerate(segments):
        if segment in UI_SEGMENTS and index > 0 and not (index >= 2 and segments[index - 1] == "user"):
            segments = segments[:index]
            break
    base = "/".join(segments)
    return base if base.endswith("/") else base + "/"


def normalize_url(url: str) -> str:
    """Return ``scheme://host[:port]/base/`` without query (token), fragment or frontend path (``/lab``...)."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        shown = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))  # never echo a query (token)
        raise ServerError(f"{shown!r} is not an http(s) server URL; give one like https://host/user/name/.")
    return urlunsplit((parts.scheme, parts.netloc, _base_path(parts.path or "/"), "", ""))


class _HTTP(requests.Session):
    """A requests session whose ``verify=False`` holds: plain requests lets ``REQUESTS_CA_BUNDLE``
    or ``CURL_CA_BUNDLE`` in the environment turn verification back on for every request."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> dict[str, Any]:
        settings: dict[str, Any] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.verify is False and verify is None:
            settings["verify"] = False
        return settings


class JupyterServer:
    """REST client for one Jupyter server (kernels, kernelspecs, status, contents)."""

    def __init__(self, info: ServerInfo, timeout: float = 10.0, verify: bool = True) -> None:
        self.info = info
        self.timeout = timeout
        self.http = _HTTP()
        self.http.headers.update(info.headers)
        self.http.verify = verify and getattr(info, "verify", True)  # a gateway's JUPYTER_GATEWAY_VALIDATE_CERT

    def __repr__(self) -> str:
        return f"JupyterServer({self.info.url!r})"

    @property
    def url(self) -> str:
        """The server's URL with its base_url."""
        return self.info.url

    def request(self, method: str, path: str, *, expect: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        """Send a request; turn transport failures and refusals into one clear sentence."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            response = self.http.request(method, self.url + path, **kwargs)
        except requests.exceptions.SSLError:
            raise ServerError(
                f"The TLS certificate of {self.url} could not be verified; check the URL (verification stays on)."
            ) from None
        except requests.exceptions.Timeout:
            raise ConnectionLost(
                f"The Jupyter server at {self.url} did not answer within {kwargs['timeout']:g} s; "
                "check that it is running and reachable."
            ) from None
        except requests.exceptions.RequestException:
            raise ServerUnreachable(
                f"Could not reach the Jupyter server at {self.url}; check the URL and that the server is running."
            ) from None
        if response.status_code in (401, 403):
            raise self.refused(method, path, response)
        if response.status_code not in expect:
            raise ServerError(
                f"The Jupyter server at {self.url} answered {method} {path.split('?')[0]} with HTTP "
                f"{response.status_code}: {_reason(response)}."
            )
        return response

    def refused(self, method: str, path: str, response: requests.Response) -> ServerError:
        """The error for a 401/403 answer (a gateway tells a refused kernel start apart)."""
        return AuthError(
            f"The Jupyter server at {self.url} rejected the token (HTTP {response.status_code}); "
            "check the token you gave (--token or BINDER_AUTORUN_TOKEN)."
        )

    def api_info(self) -> dict[str, Any]:
        """``GET api``: proves the URL is a Jupyter server and the token works."""
        version = self.request("GET", "api").json()
        if "version" not in version:
            raise ServerError(f"{self.url} does not look like a Jupyter server (no version at /api).")
        # /api is public; /api/status needs auth, so this is what checks the token
        self.request("GET", "api/status")
        return version

    def kernelspecs(self) -> dict[str, Any]:
        """``GET api/kernelspecs``: the kernels this server can start."""
        return self.request("GET", "api/kernelspecs").json()

    def _kernelspecs_aside(self) -> dict[str, Any]:
        """The kernelspecs over a connection of their own (requests sessions are not thread-safe)."""
        side = JupyterServer(self.info, timeout=self.timeout)
        try:
            return side.kernelspecs()
        finally:
            side.close()

    def require_folder(self, path: str) -> None:
        """A kernel started in a folder that does not exist silently runs in its parent: refuse instead."""
        response = self.request("GET", f"api/contents/{quote(path.strip('/'))}", params={"content": "0"}, expect=(200, 404))
        if response.status_code != 200 or response.json().get("type") != "directory":
            raise ServerError(f"The server at {self.url} has no folder {path!r} for --cwd (it is relative to the server's root).")

    def start_kernel(self, name: str | None = None, path: str | None = None) -> dict[str, Any]:
        """Start a kernel; its kernelspec comes back as the model's ``spec`` (``None`` if the server
        would not list them), and an unknown kernel name is one sentence listing the known ones.

        The kernelspecs are asked on a second connection while the POST is in flight, so
        knowing what kernel started (ipykernel or not: see :meth:`KernelSession.start`)
        costs no round trip.
        """
        body: dict[str, Any] = {}
        if name:
            body["name"] = name
        if path is not None:
            body["path"] = path
        specs = _Beside(self._kernelspecs_aside)
        try:
            model: dict[str, Any] = self.request("POST", "api/kernels", json=body, expect=(200, 201)).json()
        except ServerError:
            known = (specs.result() or {}).get("kernelspecs")
            if name and isinstance(known, dict) and name not in known:
                raise ServerError(f"The server has no kernel named {name!r}; choose one of: {', '.join(sorted(known)) or 'none'}.") from None
            raise
        entry = ((specs.result() or {}).get("kernelspecs") or {}).get(model.get("name"))
        model["spec"] = entry.get("spec") if isinstance(entry, dict) else None
        return model

    def kernel(self, kernel_id: str, timeout: float | None = None) -> dict[str, Any] | None:
        """The kernel's model, or None when the server says it is gone."""
        response = self.request(
            "GET", f"api/kernels/{kernel_id}", expect=(200, *GONE_STATUSES), timeout=timeout or self.timeout
        )
        return response.json() if response.status_code == 200 else None

    def interrupt_kernel(self, kernel_id: str) -> None:
        """``POST api/kernels/{id}/interrupt``: what a stop button does."""
        self.request("POST", f"api/kernels/{kernel_id}/interrupt", expect=(200, 204))

    def restart_kernel(self, kernel_id: str) -> dict[str, Any]:
        """``POST api/kernels/{id}/restart``: a fresh kernel, same id."""
        return self.request("POST", f"api/kernels/{kernel_id}/restart", expect=(200,), timeout=max(self.timeout, 60)).json()

    def shutdown_kernel(self, kernel_id: str) -> None:
        """``DELETE api/kernels/{id}`` (a kernel already gone is fine)."""
        self.request("DELETE", f"api/kernels/{kernel_id}", expect=(200, 204, *GONE_STATUSES))

    def close(self) -> None:
        """Close pooled HTTP connections."""
        self.http.close()


class _Beside:
    """A call run on a thread of its own while the caller does something else; its result or None."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self._result: Any = None
        self._thread = threading.Thread(target=self._run, args=(call,), name="binder-autorun-beside", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._result = call()
        except Exception as exc:  # the caller only loses a shortcut
            log.info("side request failed: %s", exc)

    def result(self, timeout: float = 30.0) -> Any:
        self._thread.join(timeout)
        return self._result


def _reason(response: requests.Response) -> str:
    try:
        body = response.json()
        # Enterprise/Kernel Gateway put their explanation in "reason" and leave "message" empty
        message = body.get("message") or body.get("reason") or response.reason
    except (ValueError, AttributeError):
        message = response.reason
    return str(message).rstrip(".")

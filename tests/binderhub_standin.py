"""A stand-in BinderHub on 127.0.0.1 for tests (no machine here reaches a real one).

It speaks BinderHub's build API as BinderHub itself does (DESIGN.md §5, checked
against binderhub/builder.py): ``GET /build/<provider>/<spec>`` with
``Accept: text/event-stream`` answers HTTP 200 and chunked ``data: {json}\\n\\n``
events with ``:keepalive`` comments in between; failures are ``failed`` events
(a request without the Accept header gets one with ``status_code`` 400); after
``ready`` or a build failure the stream stays open. ``ready`` points at a REAL
jupyter_server under ``/user/<name>/``.

The scenario is picked by the configurable ``table`` (``"<provider>/<spec>"`` ->
name), else by a scenario name appearing as a word of the spec
(``gh/standin/build-failure/HEAD``), else ``cache-hit``. ``redirect_to`` makes the
stand-in a federation redirector answering every request with a 307 to the
other stand-in. Every request is recorded in ``received``.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from binder_autorun.launch.local import LocalServer

PROVIDERS = {"gh", "gist", "git", "gl", "zenodo", "figshare", "hydroshare", "dataverse", "ckan"}
SCENARIOS = (
    "cache-hit",
    "build",
    "no-such-ref",
    "build-failure",
    "rate-limit",
    "http-429",
    "quota",
    "spawn-failure",
    "failed-no-message",
    "closes-early",
    "silent",
    "mute",
)
BUILD_ERROR = "The command '/bin/sh -c ${NB_PYTHON_PREFIX}/bin/pip install --no-cache-dir -r \"requirements.txt\"' returned a non-zero code: 1"


@dataclass
class Received:
    """One request the stand-in got, and what became of its stream."""

    path: str
    headers: dict[str, str]
    scenario: str = ""
    client_closed: threading.Event = field(default_factory=threading.Event)  # the client hung up first
    finished: threading.Event = field(default_factory=threading.Event)


class _ClientGone(Exception):
    pass


class BinderHubStandIn:
    """The stand-in hub; ``with BinderHubStandIn(root) as hub: hub.url ...``.

    ``server`` shares a running LocalServer (not stopped by us); without it one
    is started on the first ``ready`` and stopped with the hub.
    """

    def __init__(
        self,
        root_dir: str | Path,
        *,
        user: str = "standin-user",
        table: dict[str, str] | None = None,
        redirect_to: BinderHubStandIn | None = None,
        server: LocalServer | None = None,
        keepalive_interval: float = 0.1,
        hold_seconds: float = 60.0,
    ) -> None:
        self.root_dir = Path(root_dir)
        self.user = user
        self.table = dict(table or {})
        self.redirect_to = redirect_to
        self.keepalive_interval = keepalive_interval
        self.hold_seconds = hold_seconds  # BinderHub keeps the stream open 60 s after ready
        self.received: list[Received] = []
        self.server = server
        self._own_server = server is None
        self._server_lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._httpd.server_port}/"

    @property
    def paths(self) -> list[str]:
        return [request.path for request in self.received]

    def start(self) -> BinderHubStandIn:
        hub = self

        class Handler(_Handler):
            standin = hub

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = False  # server_close() joins every handler thread
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="binderhub-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """End every open stream, stop serving, and stop the jupyter_server we started."""
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._own_server and self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> BinderHubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def scenario_for(self, provider: str, spec: str) -> str:
        if f"{provider}/{spec}" in self.table:
            return self.table[f"{provider}/{spec}"]
        if provider not in PROVIDERS:
            return "unknown-provider"
        words = set(re.split(r"[^A-Za-z0-9-]+", unquote(spec)))
        named = [name for name in SCENARIOS if name in words]
        return max(named, key=len) if named else "cache-hit"

    def jupyter_server(self) -> LocalServer:
        """The real server that ``ready`` events point at (started on demand, anew once it died)."""
        with self._server_lock:
            if self.server is None or (self._own_server and not self.server.running):
                self.server = LocalServer(root_dir=self.root_dir, base_url=f"/user/{self.user}/")
                self.server.start()
            return self.server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    standin: BinderHubStandIn

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        hub = self.standin
        record = Received(self.path, dict(self.headers.items()))
        hub.received.append(record)
        self.close_connection = True
        try:
            if hub.redirect_to is not None:
                self._redirect(hub.redirect_to.url.rstrip("/") + self.path)
                return
            match = re.fullmatch(r"/build/([^/]+)/(.+)", self.path.split("?")[0])
            if not match:
                self._plain(404, "text/html", "<html><title>404: Not Found</title><body>404: Not Found</body></html>")
                return
            provider, spec = match[1], match[2].rstrip("/")
            record.scenario = hub.scenario_for(provider, spec)
            if record.scenario == "http-429":
                self._plain(429, "application/json", json.dumps({"message": "Too many requests"}), {"Retry-After": "120"})
                return
            self._start_stream()
            accept = {part.strip().lower() for part in self.headers.get("Accept", "").split(";")}
            if "text/event-stream" not in accept:  # BinderHub's prepare(): an error event, HTTP stays 200
                self._event({"phase": "failed", "status_code": 400, "message": "Missing Accept header: text/event-stream\n"})
            else:
                getattr(self, "_" + record.scenario.replace("-", "_"))(provider, spec)
            self._write(b"")  # the last chunk: the hub closed the stream
        except _ClientGone:
            record.client_closed.set()
        finally:
            record.finished.set()

    # -- scenarios ---------------------------------------------------------

    def _cache_hit(self, provider: str, spec: str) -> None:
        self._event({"phase": "built", "imageName": _image(spec), "message": "Found built image, launching...\n"})
        self._launching()
        self._ready(provider, spec)
        self._hold()

    def _build(self, provider: str, spec: str) -> None:
        self._event({"phase": "waiting", "message": "Waiting for build to start...\n"})
        self._keepalive()
        self._event({"message": "Picked Git content provider.\n"})  # repo2docker events may have no phase
        self._event({"phase": "Fetching", "message": "Cloning into '/tmp/repo2docker'...\n"})  # capitalized
        self._event({"phase": "fetching", "message": f"HEAD is now at {_sha(spec)[:7]} Update notebook\n"})
        self._event({"phase": "building", "message": "Using PythonBuildPack builder\n"})
        self._event({"phase": "building", "message": "Step 1/3 : FROM docker.io/library/buildpack-deps:jammy"})
        self._event({"phase": "building", "message": "\n"})
        self._event({"phase": "building", "message": "Fetching base image...\r"})
        self._event({"phase": "building", "message": " ---> 0707eec19ac4\n"})
        self._raw(b'data: {"phase": "building",\ndata:  "message": "Step 2/3 : RUN pip install -r requirements.txt\\n"}\n\n')
        self._keepalive()
        self._event({"phase": "building", "message": "Successfully installed numpy-2.1.0\n"})
        self._event({"phase": "building", "message": "Successfully built 4abce9060522\n"})
        self._event({"phase": "pushing", "message": "Pushing image\n", "progress": {"layer1": {"current": 10, "total": 10}}})
        self._event({"phase": "built", "message": "Built image, launching...\n", "imageName": _image(spec)})
        self._launching()
        self._ready(provider, spec)
        self._hold()

    def _no_such_ref(self, provider: str, spec: str) -> None:
        self._event({
            "phase": "failed",
            "message": f"Could not resolve ref for {provider}:{spec}. Double check your URL and that your repo is public.\n",
        })

    def _unknown_provider(self, provider: str, spec: str) -> None:
        self._event({"phase": "failed", "message": f"No provider found for prefix {provider}\n"})

    def _build_failure(self, provider: str, spec: str) -> None:
        self._event({"phase": "waiting", "message": "Waiting for build to start...\n"})
        self._event({"phase": "building", "message": "Step 2/3 : RUN pip install -r requirements.txt\n"})
        self._event({"phase": "building", "message": "ERROR: Could not find a version that satisfies the requirement nonexistent-pkg==9.9\n"})
        self._event({"phase": "building", "message": "ERROR: No matching distribution found for nonexistent-pkg==9.9\n"})
        self._event({"phase": "failed", "message": BUILD_ERROR})
        self._event({"phase": "failed"})
        self._hold()

    def _rate_limit(self, provider: str, spec: str) -> None:
        self._event({"phase": "failed", "status_code": 429, "message": "Rate limit exceeded. Try again in 60 seconds.\n"})

    def _quota(self, provider: str, spec: str) -> None:
        self._event({"phase": "built", "imageName": _image(spec), "message": "Found built image, launching...\n"})
        self._event({"phase": "failed", "message": "Too many users on this BinderHub! Try again soon.\n"})

    def _spawn_failure(self, provider: str, spec: str) -> None:
        self._event({"phase": "built", "imageName": _image(spec), "message": "Found built image, launching...\n"})
        self._event({"phase": "launching", "message": "Launching server...\n"})
        self._event({"phase": "launching", "message": "Launch attempt 1 failed, retrying...\n"})
        self._event({"phase": "failed", "status_code": 500, "message": f"Failed to launch image {_image(spec)}\n"})

    def _failed_no_message(self, provider: str, spec: str) -> None:
        self._event({"phase": "waiting", "message": "Waiting for build to start...\n"})
        self._event({"phase": "failed"})
        self._hold()

    def _closes_early(self, provider: str, spec: str) -> None:
        self._event({"phase": "waiting", "message": "Waiting for build to start...\n"})
        self._event({"phase": "building", "message": "Step 1/3 : FROM docker.io/library/buildpack-deps:jammy\n"})

    def _silent(self, provider: str, spec: str) -> None:
        self._hold()  # keepalives only: alive, but no progress

    def _mute(self, provider: str, spec: str) -> None:
        self._hold(keepalives=False)

    # -- BinderHub's launch and ready events --------------------------------

    def _launching(self) -> None:
        for message in ("Launching server...", "Server requested", "Spawning server..."):
            self._event({"phase": "launching", "message": message + "\n"})
        self.standin.jupyter_server()  # the spawn: where a real hub spends its launch time
        self._event({"phase": "launching", "message": f"Server ready at /user/{self.standin.user}/\n"})

    def _ready(self, provider: str, spec: str) -> None:
        server = self.standin.jupyter_server()
        resolved = _sha(spec)
        owner_repo = spec.rsplit("/", 1)[0]
        repo_url = f"https://github.com/{owner_repo}" if provider == "gh" else unquote(owner_repo)
        persistent = f"{owner_repo}/{resolved}" if provider in ("gh", "gist", "gl", "git") else spec
        self._event({
            "phase": "ready",
            "message": f"server running at {server.url}\n",
            "image": _image(spec),
            "repo_url": repo_url,
            "token": server.token,
            "binder_ref_url": f"{repo_url}/tree/{resolved}",
            "binder_launch_host": self.standin.url,
            "binder_request": f"v2/{provider}/{spec}",
            "binder_persistent_request": f"v2/{provider}/{persistent}",
            "binder_client_ip": self.client_address[0],
            "url": server.url,
        })

    # -- HTTP plumbing -------------------------------------------------------

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.end_headers()

    def _redirect(self, location: str) -> None:
        self.send_response(307)
        self.send_header("Location", location)
        self.send_header("Set-Cookie", "host=member; Path=/build/")
        self.send_header("Content-Length", "0")
        self.send_header("Connection", "close")
        self.end_headers()

    def _plain(self, status: int, content_type: str, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _event(self, data: dict[str, Any]) -> None:
        self._raw(f"data: {json.dumps(data)}\n\n".encode())

    def _keepalive(self) -> None:
        self._raw(b":keepalive\n\n")

    def _raw(self, data: bytes) -> None:
        if self._client_gone():
            raise _ClientGone
        self._write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            raise _ClientGone from None

    def _hold(self, keepalives: bool = True) -> None:
        """Keep the stream open like BinderHub does (until hold_seconds, stop(), or the client leaves)."""
        hub = self.standin
        deadline = time.monotonic() + hub.hold_seconds
        while time.monotonic() < deadline and not hub._stopping.wait(hub.keepalive_interval):
            if keepalives:
                self._keepalive()
            elif self._client_gone():
                raise _ClientGone

    def _client_gone(self) -> bool:
        """The client closed its end (it sends nothing more on this connection, so readable means EOF)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True


def _sha(spec: str) -> str:
    return hashlib.sha1(spec.encode()).hexdigest()


def _image(spec: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", unquote(spec).lower()).strip("-")[:40]
    return f"standin-registry/binder-{slug}:{_sha(spec)}"

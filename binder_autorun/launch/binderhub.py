"""Building and starting a server through a BinderHub's build API.

``GET {hub}/build/{provider}/{spec}`` answers with a server-sent event stream
(DESIGN.md §5). We read it until the first ``ready`` or ``failed`` event (the hub
keeps the stream open after either) and turn every way a launch can go wrong
into one sentence that quotes the hub and says what to do. The server token
from ``ready`` only goes into the returned ServerInfo: never into reprs, log
records or messages.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin

import requests
import urllib3

from ..errors import BinderAutorunError, LaunchError
from ..server import ServerInfo
from .events import EventStreamParser
from .spec import RepoSpec

log = logging.getLogger(__name__)

DEFAULT_HUB = "https://mybinder.org"
LOG_TAIL_LINES = 20
_CHUNK = 65536
_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class BuildEvent:
    """One event of the stream: ``phase`` lower-cased ("" when the hub sent none)."""

    phase: str
    message: str
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> BuildEvent:
        """Wrap a decoded event; ``raw`` keeps everything but the token."""
        phase = str(data.get("phase") or "").strip().lower()
        if phase == "failure":  # older repo2docker spelling, which BinderHub also treats as failed
            phase = "failed"
        raw = {key: value for key, value in data.items() if key != "token"}
        return cls(phase, str(data.get("message") or ""), raw)


@dataclass(frozen=True)
class BinderLaunch:
    """A server a BinderHub started for us, and what the hub told us about it."""

    info: ServerInfo
    spec: RepoSpec
    hub: str  # the hub that served the launch (a federation member after a redirect)
    image: str = ""
    repo_url: str = ""
    binder_ref_url: str = ""
    binder_persistent_request: str = ""  # v2/<provider>/<spec at the resolved commit>: relaunch the same thing
    launch_seconds: float = 0.0
    log: list[str] = field(default_factory=list, repr=False, compare=False)


class BinderLaunchError(LaunchError):
    """A failed launch: one sentence, plus the hub's own words and the build log's tail.

    ``retry_after`` is the hub's suggested wait in seconds (rate limits), if it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        hub_message: str = "",
        log_tail: list[str] | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.hub_message = hub_message
        self.log_tail = list(log_tail or [])
        self.status_code = status_code
        self.retry_after = retry_after

    def _render_traceback_(self) -> list[str]:
        if not self.log_tail:
            return super()._render_traceback_()
        return [*super()._render_traceback_(), "The build log ends with:", *("    " + line for line in self.log_tail)]


class BuildLog:
    """The build output as lines, reassembled as BinderHub's log view shows it.

    Messages are terminal output: a line may span several events, and ``\\r``
    redraws a line (progress bars), so only its last non-empty part remains.
    """

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""

    def feed(self, message: str) -> list[str]:
        """Add one event's message; return the lines it completed."""
        *complete, self._partial = (self._partial + message).split("\n")
        done = [_redrawn(line) for line in complete]
        self.lines.extend(done)
        return done

    def close(self) -> list[str]:
        """Complete the last, unterminated line."""
        return self.feed("\n") if self._partial else []

    @property
    def latest(self) -> str:
        """The line being written, or the last non-blank one."""
        current = _redrawn(self._partial).strip()
        return current or next((line.strip() for line in reversed(self.lines) if line.strip()), "")

    def tail(self, count: int = LOG_TAIL_LINES) -> list[str]:
        return [line for line in self.lines if line.strip()][-count:]


def _redrawn(line: str) -> str:
    return next((part for part in reversed(line.split("\r")) if part), "")


class _Silent(Exception):
    """No event arrived within the silence timeout."""


class BinderHubLauncher:
    """Launch repositories through one BinderHub (a spec from a Binder link names its own).

    ``silence_timeout``: seconds without any event (keepalives do not count:
    a stuck hub still sends them) before we give up. ``connect_timeout``:
    seconds to wait for the hub to accept the connection.
    """

    def __init__(self, hub_url: str = DEFAULT_HUB, silence_timeout: float = 300.0, connect_timeout: float = 10.0) -> None:
        self.hub_url = hub_url
        self.silence_timeout = silence_timeout
        self.connect_timeout = connect_timeout

    def __repr__(self) -> str:
        return f"BinderHubLauncher({self.hub_url!r}, silence_timeout={self.silence_timeout:g})"

    def launch(self, spec: RepoSpec, on_event: Callable[[BuildEvent], None] | None = None) -> BinderLaunch:
        """Build (if needed) and start ``spec``; ``on_event`` sees every event as it arrives.

        Raises BinderLaunchError (a LaunchError) with one sentence on any failure.
        KeyboardInterrupt closes the stream, which makes the hub stop watching the build.
        """
        hub = normalize_hub(spec.hub or self.hub_url)
        started = time.monotonic()
        log.info("launching %s through %s", spec.label, hub)
        with requests.Session() as http, closing(self._open(http, hub, spec)) as response:
            try:
                return _Launch(self, spec, hub, response, started, on_event).follow()
            except KeyboardInterrupt:
                log.info("launch of %s interrupted; closing the event stream", spec.label)
                raise

    def _open(self, http: requests.Session, hub: str, spec: RepoSpec) -> requests.Response:
        """Send the request (following redirects, which keep the Accept header) and check the answer."""
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        try:
            response = http.get(
                hub + spec.build_path, headers=headers, stream=True, timeout=(self.connect_timeout, self.silence_timeout)
            )
        except requests.exceptions.SSLError:
            raise _unreachable(hub, "its TLS certificate could not be verified") from None
        except requests.exceptions.ConnectTimeout:
            raise _unreachable(hub, f"it did not accept a connection within {self.connect_timeout:g} s") from None
        except requests.exceptions.ReadTimeout:
            raise _silent(hub, self.silence_timeout, "", "") from None
        except requests.exceptions.TooManyRedirects:
            raise _unreachable(hub, "it redirected too many times") from None
        except requests.RequestException as error:
            raise _unreachable(hub, _connection_reason(error)) from None
        if response.history:
            log.info("%s redirected the launch to %s", hub, _served_by(response.url, spec) or "another server")
        if response.status_code != 200:
            with closing(response):
                raise _http_error(hub, spec, response)
        content_type = response.headers.get("Content-Type", "")
        if "text/event-stream" not in content_type:
            response.close()
            raise BinderLaunchError(
                f"{hub} answered with {content_type or 'no content type'} instead of an event stream; "
                "check that this is a BinderHub's URL (like https://mybinder.org)."
            )
        return response


class _Launch:
    """The state of one launch while its event stream is read."""

    def __init__(
        self,
        launcher: BinderHubLauncher,
        spec: RepoSpec,
        hub: str,
        response: requests.Response,
        started: float,
        on_event: Callable[[BuildEvent], None] | None,
    ) -> None:
        self.launcher = launcher
        self.spec = spec
        self.hub = hub
        self.response = response
        self.started = started
        self.on_event = on_event
        self.build_log = BuildLog()
        self.phases: list[str] = []
        self.last_message = ""
        self.deadline = time.monotonic() + launcher.silence_timeout

    def follow(self) -> BinderLaunch:
        try:
            for data in self._events():
                event = BuildEvent.from_data(data)
                log.debug("event %s: %s", event.phase or "-", event.message.rstrip())
                if self.on_event is not None:
                    self.on_event(event)
                if event.phase == "failed":
                    raise self._failure(event)
                self.build_log.feed(event.message)
                if event.phase == "ready":
                    return self._ready(data)
                if event.message.strip():
                    self.last_message = event.message
                if event.phase and event.phase not in self.phases:
                    self.phases.append(event.phase)
        except _Silent:
            raise _silent(self.hub, self.launcher.silence_timeout, self.last_phase, self.last_message) from None
        raise BinderLaunchError(
            f"The BinderHub at {self.hub} closed the event stream before the server was ready "
            f"(last phase: {self.last_phase or 'none'}, last message: {_quoted(self.last_message) or 'none'}); "
            f"try again, and if it keeps happening open {self.link} in a browser to see the hub's own log.",
            hub_message=_clean(self.last_message),
            log_tail=self.build_log.tail(),
        )

    @property
    def last_phase(self) -> str:
        return self.phases[-1] if self.phases else ""

    @property
    def link(self) -> str:
        return f"{self.hub}v2/{self.spec.provider}/{self.spec.spec}"

    def _events(self) -> Iterator[dict[str, Any]]:
        parser = EventStreamParser()
        for chunk in self._chunks():
            for data in parser.feed(chunk):
                self.deadline = time.monotonic() + self.launcher.silence_timeout
                yield data
        self.build_log.close()
        yield from parser.close()

    def _chunks(self) -> Iterator[bytes]:
        """Raw chunks as they arrive, each read bounded by the time left before the silence deadline."""
        raw = self.response.raw
        sock = getattr(raw.connection, "sock", None)
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise _Silent
            if sock is not None:
                sock.settimeout(left)
            try:
                chunk = raw.read1(_CHUNK, decode_content=True)
            except urllib3.exceptions.ReadTimeoutError:
                raise _Silent from None
            except (urllib3.exceptions.HTTPError, OSError) as error:
                log.info("the event stream from %s broke: %s", self.hub, type(error).__name__)
                return
            if not chunk:
                return
            yield chunk

    def _ready(self, data: dict[str, Any]) -> BinderLaunch:
        url = str(data.get("url") or "")
        if not url:
            raise BinderLaunchError(
                f"The BinderHub at {self.hub} said the server is ready but gave no URL; "
                f"try again, or open {self.link} in a browser."
            )
        try:
            info = ServerInfo(urljoin(self.response.url, url), str(data.get("token") or ""))
        except BinderAutorunError:
            raise BinderLaunchError(
                f"The BinderHub at {self.hub} gave a server URL we cannot use ({_quoted(url)}); "
                f"open {self.link} in a browser instead."
            ) from None
        self.build_log.close()
        seconds = time.monotonic() - self.started
        log.info("%s is ready at %s after %.1f s", self.spec.label, info.url, seconds)
        return BinderLaunch(
            info=info,
            spec=self.spec,
            hub=_served_by(self.response.url, self.spec) or self.hub,
            image=str(data.get("image") or ""),
            repo_url=str(data.get("repo_url") or ""),
            binder_ref_url=str(data.get("binder_ref_url") or ""),
            binder_persistent_request=str(data.get("binder_persistent_request") or ""),
            launch_seconds=seconds,
            log=list(self.build_log.lines),
        )

    def _failure(self, event: BuildEvent) -> BinderLaunchError:
        """Say what a ``failed`` event means, in the hub's words, and what to do about it."""
        hub, label = self.hub, self.spec.label
        self.build_log.close()
        tail = self.build_log.tail()  # what led to the failure; the failure's own message is quoted separately
        self.build_log.feed(event.message)
        message = _clean(event.message)
        status = event.raw.get("status_code")
        status = status if isinstance(status, int) else None
        lowered = message.lower()
        extra: dict[str, Any] = {"hub_message": message, "status_code": status}
        if status == 429 or "rate limit" in lowered:
            retry = _seconds_in(message)
            return BinderLaunchError(
                f"The BinderHub at {hub} refused the launch because of a rate limit ({message}); "
                f"wait {_wait(retry)} and launch again, or use another BinderHub.",
                retry_after=retry,
                **extra,
            )
        if "too many users" in lowered:
            return BinderLaunchError(
                f"The BinderHub at {hub} is full ({message}); try again in a few minutes or use another BinderHub.",
                retry_after=_seconds_in(message),
                **extra,
            )
        if "no provider found" in lowered:
            return BinderLaunchError(
                f"The BinderHub at {hub} does not support the repository provider {self.spec.provider!r} ({message}); "
                "use a provider it supports or another BinderHub.",
                **extra,
            )
        if "resolve ref" in lowered or "resolving ref" in lowered:
            return BinderLaunchError(
                f"The BinderHub at {hub} could not find {label} ({message}); check the repository name and the ref "
                "(branch, tag or commit), and that the repository is public.",
                **extra,
            )
        if "launching" in self.phases or "failed to launch" in lowered or "took too long to launch" in lowered:
            return BinderLaunchError(
                f"The BinderHub at {hub} built {label} but could not start its server "
                f"({message or 'it gave no reason'}); try again in a few minutes.",
                log_tail=tail,
                **extra,
            )
        if {"fetching", "building", "pushing"} & set(self.phases):
            return BinderLaunchError(
                f"The build of {label} failed on {hub} ({message or 'it gave no reason'}); "
                "fix the repository's environment files using the end of the build log below, then launch again.",
                log_tail=tail,
                **extra,
            )
        if not message:
            return BinderLaunchError(
                f"The BinderHub at {hub} reported a failure without saying why "
                f"(last phase: {self.last_phase or 'none'}); "
                f"try again, and if it keeps failing open {self.link} in a browser to see its log.",
                log_tail=tail,
                **extra,
            )
        return BinderLaunchError(
            f"The BinderHub at {hub} could not launch {label}: {message}; check the repository and try again.",
            log_tail=tail,
            **extra,
        )


def normalize_hub(url: str) -> str:
    """``https://host[/base]/`` for a hub given as ``host``, ``https://host`` or ``https://host/base``."""
    url = url.strip()
    if "://" not in url:
        url = "https://" + url
    url = url.split("?")[0].split("#")[0]
    return url if url.endswith("/") else url + "/"


def _http_error(hub: str, spec: RepoSpec, response: requests.Response) -> BinderLaunchError:
    """A hub (or a proxy before it) that refused the request outright, with an HTTP status."""
    status = response.status_code
    message = _body_message(response)
    said = f"HTTP {status}: {message}" if message else f"HTTP {status}"
    if status == 404:
        return BinderLaunchError(
            f"The BinderHub at {hub} has no build API for {spec.provider}/{spec.spec} ({said}); "
            "check the hub URL (its front page, like https://mybinder.org) and the repository provider.",
            hub_message=message,
            status_code=status,
        )
    if status == 429:
        retry = _retry_after_header(response.headers.get("Retry-After")) or _seconds_in(message)
        return BinderLaunchError(
            f"The BinderHub at {hub} refused the launch because of a rate limit ({said}); "
            f"wait {_wait(retry)} and launch again, or use another BinderHub.",
            hub_message=message,
            status_code=status,
            retry_after=retry,
        )
    if status in (401, 403):
        return BinderLaunchError(
            f"The BinderHub at {hub} refused the launch ({said}); this hub may require you to log in "
            "or to launch from its web page.",
            hub_message=message,
            status_code=status,
        )
    return BinderLaunchError(
        f"The BinderHub at {hub} answered the launch request with {said}; try again in a few minutes or use another BinderHub.",
        hub_message=message,
        status_code=status,
    )


def _body_message(response: requests.Response) -> str:
    """The hub's explanation from a small error body: JSON ``message``, else the page title or reason."""
    try:
        body = response.raw.read(4096, decode_content=True).decode("utf-8", errors="replace")
    except (urllib3.exceptions.HTTPError, OSError):
        body = ""
    try:
        decoded = json.loads(body)
        message = str(decoded.get("message") or "") if isinstance(decoded, dict) else ""
    except ValueError:
        title = re.search(r"<title>(.*?)</title>", body, re.IGNORECASE | re.DOTALL)
        message = title[1] if title else ""
    return _clean(message or response.reason or "")


def _unreachable(hub: str, reason: str) -> BinderLaunchError:
    return BinderLaunchError(
        f"Could not reach the BinderHub at {hub} ({reason}); check the URL and your network connection, "
        "or use another BinderHub."
    )


def _silent(hub: str, seconds: float, phase: str, message: str) -> BinderLaunchError:
    said = f", its last message: {_quoted(message)}" if message.strip() else ""
    return BinderLaunchError(
        f"The BinderHub at {hub} sent no progress for {seconds:g} s (last phase: {phase or 'none'}{said}); "
        "it may be overloaded: try again later, use another BinderHub, or allow a longer launch timeout.",
        hub_message=_clean(message),
    )


def _connection_reason(error: requests.RequestException) -> str:
    text = str(error).lower()
    if "refused" in text:
        return "connection refused"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "its host name does not resolve"
    return "the connection failed"


def _served_by(final_url: str, spec: RepoSpec) -> str:
    """The hub URL of the server that answered (a federation member after a 307)."""
    index = final_url.find(f"/build/{spec.provider}/")
    return final_url[: index + 1] if index >= 0 else ""


def _clean(message: str) -> str:
    """A hub message as one line, without the trailing newline and full stop, and bounded."""
    text = " ".join(message.split()).rstrip(".")
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"


def _quoted(message: str) -> str:
    text = _clean(message)
    return f"“{text}”" if text else ""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(seconds?|secs?|s\b|minutes?|mins?|hours?|h\b)", re.IGNORECASE)


def _seconds_in(message: str) -> float | None:
    """``Try again in 60 seconds`` / ``in 5 minutes`` -> seconds."""
    match = _DURATION.search(message)
    if not match:
        return None
    unit = match[2].lower()
    factor = 3600 if unit.startswith("h") else 60 if unit.startswith("m") else 1
    return float(match[1]) * factor


def _retry_after_header(value: str | None) -> float | None:
    """``Retry-After`` as seconds or as an HTTP date."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _wait(seconds: float | None) -> str:
    if seconds is None:
        return "a few minutes"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"

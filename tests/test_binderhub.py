"""BinderHubLauncher against the stand-in hub: every scenario, the exact request path,
a ready server that really answers, one-sentence failures, bounded time, no token leaks.
"""

from __future__ import annotations

import io
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from binder_autorun.errors import LaunchError
from binder_autorun.launch import progress as progress_module
from binder_autorun.launch.binderhub import (
    BinderHubLauncher,
    BinderLaunch,
    BinderLaunchError,
    BuildEvent,
    BuildLog,
    normalize_hub,
)
from binder_autorun.launch.events import EventStreamParser
from binder_autorun.launch.local import LocalServer, free_port
from binder_autorun.launch.progress import LaunchProgress
from binder_autorun.launch.spec import parse_spec

from .binderhub_standin import BUILD_ERROR, BinderHubStandIn, Received

pytestmark = pytest.mark.timeout(30)

USER = "standin-user"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("binder-root")
    (path / "hello.txt").write_text("hello\n")
    return path


@pytest.fixture(scope="module")
def jupyter(root: Path) -> Iterator[LocalServer]:
    """The one real jupyter_server (under /user/<name>/) that every ready event points at."""
    server = LocalServer(root_dir=root, base_url=f"/user/{USER}/")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def hub(root: Path, jupyter: LocalServer) -> Iterator[BinderHubStandIn]:
    with BinderHubStandIn(root, user=USER, server=jupyter) as standin:
        yield standin


@pytest.fixture
def launcher(hub: BinderHubStandIn) -> BinderHubLauncher:
    return BinderHubLauncher(hub.url, silence_timeout=10, connect_timeout=2)


def requests_during(hub: BinderHubStandIn, action: Callable[[], object]) -> tuple[object, list[Received]]:
    """Run ``action``; return its result (or exception) and the requests the hub got meanwhile."""
    before = len(hub.received)
    try:
        result: object = action()
    except Exception as error:  # noqa: BLE001 - handed to the test to inspect
        result = error
    return result, hub.received[before:]


# -- a successful launch ---------------------------------------------------------


def test_cache_hit_gives_a_server_that_answers(hub: BinderHubStandIn, launcher: BinderHubLauncher, jupyter: LocalServer) -> None:
    events: list[BuildEvent] = []
    started = time.monotonic()
    launch, received = requests_during(hub, lambda: launcher.launch(parse_spec("standin/cache-hit"), events.append))
    elapsed = time.monotonic() - started

    assert isinstance(launch, BinderLaunch)
    assert [e.phase for e in events] == ["built", "launching", "launching", "launching", "launching", "ready"]
    assert events[0].raw["imageName"] == launch.image
    assert [r.path for r in received] == ["/build/gh/standin/cache-hit/HEAD"]
    assert received[0].headers["Accept"] == "text/event-stream"

    assert launch.info.url == jupyter.url and launch.info.url.endswith(f"/user/{USER}/")
    status = requests.get(launch.info.url + "api/status", headers=launch.info.headers, timeout=5)
    assert status.status_code == 200 and "kernels" in status.json()
    assert requests.get(launch.info.url + "api/status", timeout=5).status_code == 403  # the token is what lets us in

    assert launch.hub == hub.url
    assert launch.repo_url == "https://github.com/standin/cache-hit"
    assert launch.binder_ref_url.startswith("https://github.com/standin/cache-hit/tree/")
    assert launch.binder_persistent_request.startswith("v2/gh/standin/cache-hit/")
    assert launch.log[-1] == f"server running at {jupyter.url}"
    assert 0 < launch.launch_seconds <= elapsed
    # the hub keeps the stream open for a minute after ready: we stop at ready and hang up
    assert elapsed < 5
    assert received[0].client_closed.wait(2)


def test_full_build_stream_is_parsed_robustly(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    events: list[BuildEvent] = []
    launch = launcher.launch(parse_spec("standin/build"), events.append)
    phases = [e.phase for e in events]
    assert phases[:4] == ["waiting", "", "fetching", "fetching"]  # no phase -> "", "Fetching" -> "fetching"
    assert {"building", "pushing", "built", "launching"} <= set(phases) and phases[-1] == "ready"
    # a data field spread over two lines is one event
    assert "Step 2/3 : RUN pip install -r requirements.txt\n" in [e.message for e in events]
    # the log reads like BinderHub's terminal: a line split over events is joined, \r redraws
    assert "Step 1/3 : FROM docker.io/library/buildpack-deps:jammy" in launch.log
    assert " ---> 0707eec19ac4" in launch.log
    assert not any("Fetching base image" in line for line in launch.log)
    assert launch.log[0] == "Waiting for build to start..."


REQUEST_PATHS = [
    ("org/repo", "release/v1 beta", "/build/gh/org/repo/release/v1%20beta"),
    ("https://github.com/org/repo/tree/some/branch", None, "/build/gh/org/repo/some/branch"),
    ("https://gitlab.com/group/sub/repo/-/tree/feat/x", None, "/build/gl/group%2Fsub%2Frepo/feat/x"),
    ("https://example.org/any/repo.git", "main", "/build/git/https%3A%2F%2Fexample.org%2Fany%2Frepo.git/main"),
    ("https://gist.github.com/user/abc123", None, "/build/gist/user/abc123/HEAD"),
    ("doi:10.5281/zenodo.3242074", None, "/build/zenodo/10.5281/zenodo.3242074"),
    ("https://demo.ckan.org/dataset/sample-001", None, "/build/ckan/https%3A%2F%2Fdemo.ckan.org%2Fdataset%2Fsample-001"),
]


@pytest.mark.parametrize(("text", "ref", "path"), REQUEST_PATHS, ids=[c[2] for c in REQUEST_PATHS])
def test_the_hub_receives_the_exact_path(hub: BinderHubStandIn, launcher: BinderHubLauncher, text: str, ref: str | None, path: str) -> None:
    launch, received = requests_during(hub, lambda: launcher.launch(parse_spec(text, ref)))
    assert isinstance(launch, BinderLaunch)
    assert [r.path for r in received] == [path]


def test_a_launch_link_names_its_hub(hub: BinderHubStandIn) -> None:
    elsewhere = BinderHubLauncher(f"http://127.0.0.1:{free_port()}/", silence_timeout=10)  # nothing listens there
    link = f"{hub.url}v2/gh/org/repo/some/branch?labpath=notebooks/x.ipynb"
    launch, received = requests_during(hub, lambda: elsewhere.launch(parse_spec(link)))
    assert isinstance(launch, BinderLaunch)
    assert [r.path for r in received] == ["/build/gh/org/repo/some/branch"]


def test_federation_redirect_keeps_the_accept_header(root: Path, hub: BinderHubStandIn) -> None:
    with BinderHubStandIn(root, redirect_to=hub) as federation:
        launcher = BinderHubLauncher(federation.url.rstrip("/"), silence_timeout=10)
        launch, received = requests_during(hub, lambda: launcher.launch(parse_spec("standin/cache-hit")))
        assert isinstance(launch, BinderLaunch)
        assert federation.paths == ["/build/gh/standin/cache-hit/HEAD"]
        assert [r.path for r in received] == ["/build/gh/standin/cache-hit/HEAD"]
        assert received[0].headers["Accept"] == "text/event-stream"  # requests keeps it on a 307
        assert launch.hub == hub.url  # the member that served it
        assert requests.get(launch.info.url + "api/status", headers=launch.info.headers, timeout=5).status_code == 200


# -- failures: one sentence with the hub's words and what to do, quickly ------------

FAILURES = [
    (
        "standin/repo", "no-such-ref", "/build/gh/standin/repo/no-such-ref",
        ["could not find standin/repo @ no-such-ref", "Could not resolve ref for gh:standin/repo/no-such-ref", "check the repository name and the ref"],
    ),
    (
        "{hub}v2/nope/x/y", None, "/build/nope/x/y",
        ["does not support the repository provider 'nope'", "No provider found for prefix nope", "use a provider it supports"],
    ),
    (
        "standin/build-failure", None, "/build/gh/standin/build-failure/HEAD",
        ["The build of standin/build-failure @ HEAD failed", BUILD_ERROR, "fix the repository's environment files"],
    ),
    (
        "standin/rate-limit", None, "/build/gh/standin/rate-limit/HEAD",
        ["rate limit", "Rate limit exceeded. Try again in 60 seconds", "wait 60 s and launch again"],
    ),
    (
        "standin/http-429", None, "/build/gh/standin/http-429/HEAD",
        ["rate limit", "HTTP 429: Too many requests", "wait 2 min and launch again"],
    ),
    (
        "standin/quota", None, "/build/gh/standin/quota/HEAD",
        ["is full", "Too many users on this BinderHub! Try again soon", "try again in a few minutes"],
    ),
    (
        "standin/spawn-failure", None, "/build/gh/standin/spawn-failure/HEAD",
        ["could not start its server", "Failed to launch image standin-registry/", "try again in a few minutes"],
    ),
    (
        "standin/failed-no-message", None, "/build/gh/standin/failed-no-message/HEAD",
        ["reported a failure without saying why", "last phase: waiting", "v2/gh/standin/failed-no-message/HEAD in a browser"],
    ),
    (
        "standin/closes-early", None, "/build/gh/standin/closes-early/HEAD",
        ["closed the event stream before the server was ready", "last phase: building", "Step 1/3 : FROM"],
    ),
]


@pytest.mark.parametrize(("text", "ref", "path", "expected"), FAILURES, ids=[c[2].split("/")[-2] for c in FAILURES])
def test_failures_are_one_clear_sentence(
    hub: BinderHubStandIn, launcher: BinderHubLauncher, text: str, ref: str | None, path: str, expected: list[str]
) -> None:
    started = time.monotonic()
    error, received = requests_during(hub, lambda: launcher.launch(parse_spec(text.format(hub=hub.url), ref)))
    assert time.monotonic() - started < 5  # streams held open after a failure do not hold us
    assert isinstance(error, LaunchError), error
    message = str(error)
    for part in expected:
        assert part in message
    assert hub.url in message
    assert message.endswith(".") and "\n" not in message
    assert [r.path for r in received] == [path]


def test_build_failure_carries_the_log_tail(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    error, received = requests_during(hub, lambda: launcher.launch(parse_spec("standin/build-failure")))
    assert isinstance(error, BinderLaunchError)
    assert error.log_tail[-2:] == [
        "ERROR: Could not find a version that satisfies the requirement nonexistent-pkg==9.9",
        "ERROR: No matching distribution found for nonexistent-pkg==9.9",
    ]
    assert error.hub_message == BUILD_ERROR
    rendered = "\n".join(error._render_traceback_())
    assert "The build log ends with:" in rendered and "No matching distribution found" in rendered
    assert received[0].client_closed.wait(2)  # stopped at the first failed, although the hub kept talking


def test_rate_limits_say_when_to_retry(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    for name, seconds in (("rate-limit", 60), ("http-429", 120)):
        with pytest.raises(BinderLaunchError) as caught:
            launcher.launch(parse_spec(f"standin/{name}"))
        assert (caught.value.status_code, caught.value.retry_after) == (429, seconds)


@pytest.mark.parametrize("scenario", ["silent", "mute"])  # keepalives only / no bytes at all
def test_a_silent_hub_is_given_up_on(hub: BinderHubStandIn, scenario: str) -> None:
    launcher = BinderHubLauncher(hub.url, silence_timeout=1)
    started = time.monotonic()
    error, received = requests_during(hub, lambda: launcher.launch(parse_spec(f"standin/{scenario}")))
    elapsed = time.monotonic() - started
    assert isinstance(error, LaunchError)
    assert "sent no progress for 1 s" in str(error) and "try again later" in str(error)
    assert 0.9 <= elapsed < 3
    assert received[0].client_closed.wait(2)


def test_an_unreachable_hub() -> None:
    url = f"http://127.0.0.1:{free_port()}/"
    started = time.monotonic()
    with pytest.raises(LaunchError) as caught:
        BinderHubLauncher(url, connect_timeout=2).launch(parse_spec("org/repo"))
    assert time.monotonic() - started < 3
    assert str(caught.value).startswith(f"Could not reach the BinderHub at {url} (connection refused); check the URL")


def test_a_url_that_is_not_a_binderhub(hub: BinderHubStandIn) -> None:
    launcher = BinderHubLauncher(hub.url + "wrong/base", silence_timeout=10)
    error, received = requests_during(hub, lambda: launcher.launch(parse_spec("org/repo")))
    assert isinstance(error, BinderLaunchError) and error.status_code == 404
    assert "has no build API for gh/org/repo/HEAD (HTTP 404: 404: Not Found); check the hub URL" in str(error)
    assert [r.path for r in received] == ["/wrong/base/build/gh/org/repo/HEAD"]


def test_a_request_without_accept_gets_one_failed_400_event(hub: BinderHubStandIn) -> None:
    """The stand-in, like BinderHub, refuses non-EventSource requests inside the stream (HTTP stays 200)."""
    response = requests.get(hub.url + "build/gh/org/repo/HEAD", headers={"Accept": "*/*"}, timeout=5)
    parser = EventStreamParser()
    events = parser.feed(response.content) + parser.close()
    assert response.status_code == 200
    assert events == [{"phase": "failed", "status_code": 400, "message": "Missing Accept header: text/event-stream\n"}]


@pytest.mark.skipif(threading.current_thread() is not threading.main_thread(), reason="needs the main thread for SIGINT")
def test_interrupt_closes_the_stream(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    before = len(hub.received)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            launcher.launch(parse_spec("standin/silent"))
    finally:
        timer.cancel()
    assert time.monotonic() - started < 3
    assert hub.received[before].client_closed.wait(2)


# -- the token stays secret ----------------------------------------------------------


def test_the_token_never_leaks(hub: BinderHubStandIn, launcher: BinderHubLauncher, jupyter: LocalServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[BuildEvent] = []
    out = io.StringIO()
    spec = parse_spec("standin/build")
    with LaunchProgress(spec, hub.url, show_log=True, stream=out) as progress:
        launch = launcher.launch(spec, lambda event: (events.append(event), progress(event)))
        progress.done(launch)
    token = jupyter.token
    assert token and launch.info.token == token
    for text in (caplog.text, repr(launch), repr(launch.info), repr(events), repr([e.raw for e in events]), str(launch.log), out.getvalue()):
        assert token not in text
    assert "server running at" in caplog.text  # the debug log did see the ready event


# -- progress ------------------------------------------------------------------------


def test_terminal_progress_is_one_rewritten_line(hub: BinderHubStandIn, launcher: BinderHubLauncher, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    out = io.StringIO()
    spec = parse_spec("standin/build")
    with LaunchProgress(spec, hub.url, stream=out, min_interval=0) as progress:
        progress.done(launcher.launch(spec, progress))
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n") and text.count("\r") > 5
    assert "[building " in text and "Step 1/3 : FROM" in text
    final = text.rsplit("\r", 1)[-1].strip()
    assert final.startswith("Binder ready in ") and final.endswith(f"standin/build @ HEAD (76ca435) on {hub.url}")


def test_show_log_prints_every_line(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    out = io.StringIO()
    spec = parse_spec("standin/build")
    with LaunchProgress(spec, hub.url, show_log=True, stream=out) as progress:
        progress.done(launcher.launch(spec, progress))
    lines = [line.split("\r")[-1].rstrip() for line in out.getvalue().splitlines()]
    for line in ("Picked Git content provider.", "Step 1/3 : FROM docker.io/library/buildpack-deps:jammy", "Server ready at /user/standin-user/"):
        assert line in lines


def test_progress_ends_with_failed_when_the_launch_fails(hub: BinderHubStandIn, launcher: BinderHubLauncher) -> None:
    out = io.StringIO()
    spec = parse_spec("standin/quota")
    with pytest.raises(LaunchError), LaunchProgress(spec, hub.url, stream=out) as progress:
        launcher.launch(spec, progress)
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.rsplit("\r", 1)[-1].rstrip() == "Binder launch of standin/quota @ HEAD failed after 0 s (built)."


class _Handle:
    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    def update(self, bundle: dict[str, str], raw: bool) -> None:
        self.updates.append(bundle)


def test_notebook_progress_updates_one_display(hub: BinderHubStandIn, launcher: BinderHubLauncher, monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython
    import IPython.display

    shown: list[dict[str, str]] = []
    handle = _Handle()

    def display(bundle: dict[str, str], raw: bool, display_id: bool) -> _Handle:
        assert raw and display_id
        shown.append(bundle)
        return handle

    monkeypatch.setattr(IPython, "get_ipython", lambda: type("ZMQInteractiveShell", (), {})())
    monkeypatch.setattr(IPython.display, "display", display)
    spec = parse_spec("standin/build")
    with LaunchProgress(spec, hub.url, min_interval=0) as progress:
        progress.done(launcher.launch(spec, progress))
    assert len(shown) == 1 and len(handle.updates) > 5
    assert {"text/plain", "text/html"} == set(handle.updates[-1])
    assert handle.updates[-1]["text/plain"].startswith("Binder ready in ")
    assert "<b>Binder ready</b>" in handle.updates[-1]["text/html"]


def test_notebook_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    import IPython

    assert not progress_module._in_notebook()  # plain pytest: no IPython shell
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("TerminalInteractiveShell", (), {})())
    assert not progress_module._in_notebook()
    monkeypatch.setattr(IPython, "get_ipython", lambda: type("ZMQInteractiveShell", (), {})())
    assert progress_module._in_notebook()


# -- the parts on their own ----------------------------------------------------------


def test_event_stream_parser_handles_any_chunking() -> None:
    stream = (
        b':keepalive\n\n'
        b'data: {"phase": "waiting", "message": "w\\n"}\r\n\r\n'
        b'event: message\nid: 7\nretry: 1000\n'
        b'data: {"phase": "building",\ndata:  "message": "two lines"}\n\n'
        b'data: {"message": "no blank line between"}\ndata: {"message": "these two"}\n\n'
        b'data: not json\n\n'
        b'data: {"phase": "ready", "url": "http://x/user/y/"}'  # the stream ends without a blank line
    )
    expected = [
        {"phase": "waiting", "message": "w\n"},
        {"phase": "building", "message": "two lines"},
        {"message": "no blank line between"},
        {"message": "these two"},
        {"phase": "ready", "url": "http://x/user/y/"},
    ]
    for size in (1, 7, len(stream)):
        parser = EventStreamParser()
        events = [e for i in range(0, len(stream), size) for e in parser.feed(stream[i : i + size])]
        assert events + parser.close() == expected


def test_build_event_normalizes_and_hides_the_token() -> None:
    assert BuildEvent.from_data({"phase": "Building", "message": "x"}).phase == "building"
    assert BuildEvent.from_data({"phase": "failure"}).phase == "failed"  # older repo2docker wording
    assert BuildEvent.from_data({"message": "no phase"}) == BuildEvent("", "no phase", {})
    ready = BuildEvent.from_data({"phase": "ready", "token": "s3cret", "url": "u"})
    assert "token" not in ready.raw and "s3cret" not in repr(ready)


def test_build_log_reassembles_terminal_output() -> None:
    build_log = BuildLog()
    assert build_log.feed("Step 1/2 : FROM x") == []
    assert build_log.latest == "Step 1/2 : FROM x"
    assert build_log.feed("\n") == ["Step 1/2 : FROM x"]
    build_log.feed("Downloading 10%\rDownloading 90%\r")
    assert build_log.feed(" ---> abc\nlast") == [" ---> abc"]
    assert build_log.close() == ["last"]
    assert build_log.lines == ["Step 1/2 : FROM x", " ---> abc", "last"]
    assert build_log.tail(2) == [" ---> abc", "last"]


@pytest.mark.parametrize(
    ("given", "normalized"),
    [("https://mybinder.org", "https://mybinder.org/"), ("mybinder.org", "https://mybinder.org/"), ("http://h:8/base/?x=1", "http://h:8/base/")],
)
def test_normalize_hub(given: str, normalized: str) -> None:
    assert normalize_hub(given) == normalized

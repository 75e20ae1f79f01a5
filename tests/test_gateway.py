"""Kernels on a real Jupyter Enterprise Gateway and a real Jupyter Kernel Gateway.

Both gateways run on loopback as deployed (token auth, kernel listing
forbidden, no api/status, no contents API); the local side is a real ipykernel
with the extension (``%binder_on --gateway``), or the CLI. See
``tests/gateway_fixture.py`` for how they are installed and started.
"""

from __future__ import annotations

import _thread
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
import requests

from binder_autorun.errors import BinderAutorunError, LaunchError
from binder_autorun.launch.gateway import GatewayConfig, GatewayServer, gateway_session, start_session

from .gateway_fixture import ALLOWED_ENV, SLOW_START, Gateway, start_enterprise_gateway, start_kernel_gateway
from .kernel_driver import LocalKernel, Result

#: KERNEL_USERNAME for the tests: the test machine often runs as root, which Enterprise Gateway refuses
USER = "gateway-test"

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def gateways(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway | BaseException]]:
    """Both gateways, started together (each takes seconds to import); a missing one is a skip reason."""
    started: dict[str, Gateway | BaseException] = {}
    for kind, start in (("enterprise", start_enterprise_gateway), ("kernel", start_kernel_gateway)):
        try:
            started[kind] = start(tmp_path_factory.mktemp(f"{kind}-gateway"))
        except (pytest.skip.Exception, pytest.fail.Exception) as outcome:
            started[kind] = outcome
    yield started
    for gateway in started.values():
        if isinstance(gateway, Gateway):
            gateway.stop()


def _ready(gateways: dict[str, Gateway | BaseException], kind: str) -> Gateway:
    gateway = gateways[kind]
    if isinstance(gateway, BaseException):
        raise gateway
    gateway.wait_ready()
    return gateway


@pytest.fixture(params=["enterprise", "kernel"])
def gateway(gateways: dict[str, Gateway | BaseException], request: pytest.FixtureRequest) -> Gateway:
    return _ready(gateways, request.param)


@pytest.fixture
def eg(gateways: dict[str, Gateway | BaseException]) -> Gateway:
    return _ready(gateways, "enterprise")


def _config(gateway: Gateway, **env: str) -> GatewayConfig:
    return GatewayConfig.from_env(gateway.url, gateway.token, environ={"KERNEL_USERNAME": USER, **env})


def _text(result: Result) -> str:
    return result.text + "\n".join(line for error in result.of("error") for line in error["traceback"])


def _one_error(result: Result) -> str:
    """The single one-line error a failed magic or cell shows (no Python traceback)."""
    assert result.reply["status"] == "error", result.text
    errors = result.of("error")
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1, f"not one sentence: {errors}"
    return str(errors[0]["traceback"][0])


# -- what a gateway is (and is not): the REST contract our client relies on ----------------


def test_connect_needs_no_status_contents_or_listing(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    for path, status in (("api/status", 404), ("api/contents", 404), ("api/kernels", 403)):
        assert requests.get(gateway.url + path, headers=gateway.headers, timeout=10).status_code == status, path
    calls: list[str] = []
    original = requests.Session.request

    def counted(self: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        calls.append(f"{method} {url.removeprefix(gateway.url)}")
        return original(self, method, url, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "request", counted)
    started = time.monotonic()
    session = gateway_session(_config(gateway), show_after=60)
    seconds = time.monotonic() - started
    try:
        assert calls == ["GET api/kernelspecs", "POST api/kernels"], calls  # then only the websocket
        assert session.implementation == "ipython" and session.channel.state == "connected"
        print(f"{gateway.kind} gateway: kernel started and connected in {seconds:.2f} s, REST calls {calls}")
    finally:
        session.shutdown()
    assert not gateway.kernel_exists(session.kernel_id)


# -- the notebook: %binder_on --gateway in a real local kernel ------------------------------


def test_notebook_on_gateway(gateway: Gateway, tmp_path: Path) -> None:
    """Counts, outputs, errors, stdin, interrupt, completion, restart, then a cull and a relaunch."""
    local = LocalKernel(tmp_path, env={
        "JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token, "KERNEL_USERNAME": USER, "KERNEL_FOO": "from-the-client",
        "JUPYTER_GATEWAY_ALLOWED_ENVS": ALLOWED_ENV, ALLOWED_ENV: "allowed-value",
    })
    try:
        assert local.execute("%load_ext binder_autorun").reply["status"] == "ok"
        if gateway.kind == "enterprise":
            local.execute("%env KERNEL_USERNAME=root")  # %env runs locally: not connected yet
            refused = _one_error(local.execute(f"%binder_on --gateway {gateway.url}", timeout=30))
            assert "refused to start a kernel: User 'root' is not authorized" in refused, refused
            assert "token" not in refused.lower()
            local.execute(f"%env KERNEL_USERNAME={USER}")
        wrong = _one_error(local.execute(f"%binder_on --gateway {gateway.url} --token WRONG-TOKEN-42", timeout=30))
        assert "rejected the token (HTTP 401)" in wrong and "WRONG-TOKEN-42" not in wrong

        on = local.execute(f"%binder_on --gateway {gateway.url}", timeout=60)
        assert on.reply["status"] == "ok", _text(on)
        assert gateway.token not in on.text

        env = local.execute(f"import os\nprint(os.environ['KERNEL_FOO'], os.environ['KERNEL_USERNAME'], os.getpid())")
        foo, user, pid = env.stdout.split()
        assert (foo, user) == ("from-the-client", USER) and int(pid) != os.getpid()
        if gateway.kind == "enterprise":  # it passes the allowed variable on (client_envs)
            assert local.execute(f"print(os.environ.get({ALLOWED_ENV!r}))").stdout.strip() == "allowed-value"

        first = local.execute("x = 6 * 7\nx")
        second = local.execute("x + 1")
        assert first.of("execute_result")[0]["data"]["text/plain"] == "42"
        assert second.reply["execution_count"] == first.reply["execution_count"] + 1
        assert second.of("execute_result")[0]["execution_count"] == second.reply["execution_count"]

        error = local.execute("1 / 0")
        assert error.reply["status"] == "error" and error.reply["ename"] == "ZeroDivisionError"
        assert "ZeroDivisionError" in _text(error)

        asked = local.execute("name = input('who? ')\nprint('hello', name)", answers=["gateway"])
        assert asked.prompts[0]["prompt"] == "who? " and "hello gateway" in asked.stdout

        slept = local.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)", interrupt_after=1.5, timeout=20)
        assert slept.reply["status"] == "error" and slept.reply["ename"] == "KeyboardInterrupt"
        assert slept.seconds < 1.5 + 3.0

        completion = local.complete("remote_only_name = 1\nremote_only_n")
        assert completion["status"] == "ok"
        local.execute("remote_only_name = 1")
        assert "remote_only_name" in local.complete("remote_only_n")["matches"]

        status = local.execute("%binder_status")
        assert gateway.url in status.stdout and "connected" in status.stdout and gateway.token not in status.text

        if gateway.kind == "enterprise":  # (the same REST call on Kernel Gateway; time is short)
            restarted = local.execute("%binder_restart", timeout=60)
            assert restarted.reply["status"] == "ok", _text(restarted)
            gone = local.execute("x")
            assert gone.reply["status"] == "error" and gone.reply["ename"] == "NameError"

        # the gateway culls the kernel (what its culler does: shut it down)
        kernel_id = local.execute("%%local\nprint(__import__('binder_autorun')._autorun.session.kernel_id)").stdout.strip()
        assert gateway.delete_kernel(kernel_id) == 204
        culled = local.execute("1 + 1", timeout=30)
        assert culled.seconds < 5, "the cull was not noticed within 5 s"
        message = _one_error(culled)
        assert "no longer has the kernel (it was shut down or culled)" in message and gateway.url in message

        if gateway.kind == "enterprise":
            relaunched = local.execute("%binder_on --relaunch", timeout=60)  # a new kernel, started as the first was
            assert relaunched.reply["status"] == "ok", _text(relaunched)
            assert local.execute("import os; print(os.environ['KERNEL_FOO'])").stdout.strip() == "from-the-client"
    finally:
        local.shutdown()


def test_attach_to_a_running_kernel(eg: Gateway, tmp_path: Path) -> None:
    """--kernel-id: GET api/kernels/{id} is allowed where listing is not."""
    gateway = eg
    kernel_id = gateway.start_kernel(USER)
    local = LocalKernel(tmp_path, env={"JUPYTER_GATEWAY_URL": gateway.url, "JUPYTER_GATEWAY_AUTH_TOKEN": gateway.token})
    try:
        local.execute("%load_ext binder_autorun")
        on = local.execute(f"%binder_on --gateway --kernel-id {kernel_id}", timeout=60)  # the URL from JUPYTER_GATEWAY_URL
        assert on.reply["status"] == "ok", _text(on)
        assert local.execute("import os\nprint(os.environ['KERNEL_USERNAME'])").stdout.strip() == USER
        local.execute("%binder_off --shutdown")
        assert gateway.kernel_exists(kernel_id), "%binder_off --shutdown stopped a kernel it did not start"
    finally:
        local.shutdown()
        gateway.delete_kernel(kernel_id)


# -- slow starts: progress, timeout, cancel ----------------------------------------------


def test_slow_start_shows_progress_in_place(eg: Gateway) -> None:
    stream = io.StringIO()
    session = start_session(GatewayServer(_config(eg)), "slow", show_after=0.5, stream=stream)
    try:
        assert session.channel.state == "connected"
    finally:
        session.shutdown()
    shown = stream.getvalue()
    frames = shown.split("\r")
    assert any("[connecting to the kernel 1 s] slow" in frame for frame in frames), shown
    assert any(" 2 s] slow" in frame for frame in frames), shown  # the same line, updated: the elapsed time moves
    assert "\n" not in shown.rstrip("\n") and "slow kernel ready in" in frames[-1]


def test_launch_timeout_gives_up_and_shuts_down(eg: Gateway) -> None:
    kernel_id = str(uuid.uuid4())  # Enterprise Gateway takes KERNEL_ID as the kernel's id
    # as in jupyter_server, the request timeout (default 42 s) must come down too, else it lengthens the launch timeout
    config = _config(eg, KERNEL_LAUNCH_TIMEOUT="1", JUPYTER_GATEWAY_REQUEST_TIMEOUT="1.5",
                     JUPYTER_GATEWAY_LAUNCH_TIMEOUT_PAD="0.5", KERNEL_ID=kernel_id)
    stream = io.StringIO()
    started = time.monotonic()
    with pytest.raises(LaunchError) as failure:
        start_session(GatewayServer(config), "slow", show_after=0.2, stream=stream)
    assert time.monotonic() - started < 1.5 + 1.0
    assert "did not start the kernel within 2 s" in str(failure.value) and "KERNEL_LAUNCH_TIMEOUT" in str(failure.value)
    assert "timed out after" in stream.getvalue()
    _gone_soon(eg, kernel_id, within=SLOW_START + 5)


def test_interrupt_cancels_the_start_and_shuts_down(eg: Gateway) -> None:
    kernel_id = str(uuid.uuid4())
    stream = io.StringIO()
    timer = threading.Timer(1.5, _thread.interrupt_main)
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            start_session(GatewayServer(_config(eg, KERNEL_ID=kernel_id)), "slow", show_after=0.2, stream=stream)
    finally:
        timer.cancel()
    assert time.monotonic() - started < SLOW_START, "the interrupt did not stop the wait"
    assert re.search(r"starting a slow kernel interrupted after \d s", stream.getvalue()), stream.getvalue()
    _gone_soon(eg, kernel_id, within=SLOW_START + 5)


def _gone_soon(gateway: Gateway, kernel_id: str, within: float) -> None:
    deadline = time.monotonic() + within
    while gateway.kernel_exists(kernel_id):
        assert time.monotonic() < deadline, f"kernel {kernel_id} still runs on the gateway"
        time.sleep(0.2)


# -- the command line ---------------------------------------------------------------------


def test_cli_runs_a_notebook_on_the_gateway_from_the_environment(eg: Gateway, tmp_path: Path) -> None:
    """``binder-autorun run NB --gateway`` with the gateway and token from jupyter_server's variables."""
    source = tmp_path / "nb.ipynb"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import os\nprint(os.environ['KERNEL_FOO'])"),
        nbformat.v4.new_code_cell("%%local\nimport os\nprint('local', os.getpid())"),
        nbformat.v4.new_code_cell("os.getpid()"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, source)
    env = {
        **os.environ, "JUPYTER_GATEWAY_URL": eg.url, "JUPYTER_GATEWAY_AUTH_TOKEN": eg.token,
        "KERNEL_USERNAME": USER, "KERNEL_FOO": "cli-value",
    }
    run = subprocess.run([sys.executable, "-m", "binder_autorun.cli", "run", str(source), "--gateway"],
                         env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert eg.token not in run.stderr + run.stdout
    cells = nbformat.read(tmp_path / "nb.remote.ipynb", as_version=4).cells
    assert cells[0].outputs[0]["text"] == "cli-value\n"
    local_pid = int(cells[1].outputs[0]["text"].split()[1])
    remote_pid = int(cells[2].outputs[0]["data"]["text/plain"])
    assert remote_pid != local_pid
    assert [cell.execution_count for cell in cells] == [1, 2, 3]


def test_env_configuration_follows_jupyter_server() -> None:
    """jupyter_server's gateway-client variables, read as it reads them (no gateway needed)."""
    environ = {
        "JUPYTER_GATEWAY_URL": "https://gw.example.org/gateway/",
        "JUPYTER_GATEWAY_AUTH_TOKEN": "tok", "JUPYTER_GATEWAY_AUTH_SCHEME": "Bearer",
        "JUPYTER_GATEWAY_HEADERS": json.dumps({"X-Team": "science"}), "JUPYTER_GATEWAY_VALIDATE_CERT": "false",
        "JUPYTER_GATEWAY_ALLOWED_ENVS": "SPARK_OPTS, OTHER", "SPARK_OPTS": "--x", "UNRELATED": "no",
        "KERNEL_NAMESPACE": "team", "JUPYTER_GATEWAY_REQUEST_TIMEOUT": "120",
    }
    config = GatewayConfig.from_env(environ=environ, working_dir="/home/me/work")
    assert config.url == "https://gw.example.org/gateway/"
    assert config.info.headers == {"X-Team": "science", "Authorization": "Bearer tok"}
    assert config.info.verify is False and "tok" not in repr(config)
    assert config.launch_timeout == 118.0  # a longer request timeout lengthens the launch timeout
    assert dict(config.env) == {
        "KERNEL_NAMESPACE": "team", "SPARK_OPTS": "--x", "KERNEL_USERNAME": config.env["KERNEL_USERNAME"],
        "KERNEL_LAUNCH_TIMEOUT": "118", "KERNEL_WORKING_DIR": "/home/me/work",
    }
    with pytest.raises(BinderAutorunError, match="No gateway given"):
        GatewayConfig.from_env(environ={})


# -- TLS: a gateway behind a certificate no CA signed ---------------------------------------


@pytest.fixture(scope="module")
def tls_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_kernel_gateway(tmp_path_factory.mktemp("tls-gateway"), tls=True)
    try:
        gateway.wait_ready()
        yield gateway
    finally:
        gateway.stop()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_self_signed_gateway_needs_validate_cert_off_for_rest_and_websocket(tls_gateway: Gateway) -> None:
    """JUPYTER_GATEWAY_VALIDATE_CERT=false turns off the check for the websocket too, not only for REST."""
    with pytest.raises(BinderAutorunError, match=r"^The TLS certificate of https://127\.0\.0\.1:\d+/ could not be verified"):
        gateway_session(_config(tls_gateway), show_after=60)
    session = gateway_session(_config(tls_gateway, JUPYTER_GATEWAY_VALIDATE_CERT="false"), show_after=60)
    try:
        assert session.channel.url.startswith("wss://") and session.channel.state == "connected"
        reply = session.execute("x = 6 * 7", None, user_expressions={"x": "x"})
        assert reply["user_expressions"]["x"]["data"]["text/plain"] == "42"
    finally:
        session.shutdown()


def test_a_private_ca_in_requests_ca_bundle_is_trusted_by_the_websocket_too(
        tls_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification on, the gateway's CA in REQUESTS_CA_BUNDLE: REST and the websocket both trust it."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_gateway.cert))
    monkeypatch.delenv("WEBSOCKET_CLIENT_CA_BUNDLE", raising=False)
    session = gateway_session(_config(tls_gateway), show_after=60)
    try:
        assert session.channel.state == "connected"
        assert session.execute("y = 1", None, user_expressions={"y": "y + 1"})["user_expressions"]["y"]["data"]["text/plain"] == "2"
    finally:
        session.shutdown()

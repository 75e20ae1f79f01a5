"""A real JupyterHub on 127.0.0.1 for tests (pytest fixtures plus a small helper class).

The hub is the real ``jupyterhub`` package with the npm ``configurable-http-proxy``
(the Python port of the proxy broke the kernel websocket subprotocol), the
:class:`jupyterhub.spawner.SimpleLocalProcessSpawner` (no system users, no
containers) and the dummy authenticator. Its single-user servers are real
``jupyterhub-singleuser`` (jupyter_server) processes.

A pre-registered admin *service* token manages users and mints user tokens
through the REST API, exactly as a person does on ``/hub/token``; tests then use
those user tokens the way a user of ``%binder_on --jupyterhub`` would.

Users with special spawners (set by ``pre_spawn_hook`` in the hub config):

* ``broken`` - its spawner command does not exist, so the spawn fails at once;
* ``crasher`` - its single-user server exits with an error right after starting
  (the hub notices after its ``http_timeout``, 3 s for this user);
* ``sleeper`` - its "server" never answers, so the spawn stays pending.

The fixture is named ``jupyterhub``; import its function ``real_jupyterhub`` into
a conftest or test module (or list this module in ``pytest_plugins``). ``.ci/install-jupyterhub.sh``
installs what it needs. Without it, tests skip, except under CI (``CI=true``),
where a missing install step must fail loudly.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from binder_autorun.launch.local import free_port

log = logging.getLogger(__name__)

#: how long the hub may take to answer its API after starting
HUB_STARTUP_TIMEOUT = 60.0

_CONFIG = r'''
import json, sys
settings = json.loads({settings!r})

c = get_config()  # noqa: F821
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = settings["port"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.JupyterHub.db_url = "sqlite:///" + settings["dir"] + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = settings["dir"] + "/jupyterhub_cookie_secret"
c.JupyterHub.pid_file = settings["dir"] + "/jupyterhub.pid"
c.JupyterHub.allow_named_servers = True
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True
# a spawn (stop) that takes longer than these answers 202 and goes on in the
# background, reported by the progress stream (like a hub on Kubernetes); a local
# spawn takes ~2 s. JupyterHub's defaults are 10 s each.
c.JupyterHub.tornado_settings = {{
    "slow_spawn_timeout": settings["slow_spawn_timeout"],
    "slow_stop_timeout": settings["slow_stop_timeout"],
}}

c.JupyterHub.proxy_class = "jupyterhub.proxy.ConfigurableHTTPProxy"
c.ConfigurableHTTPProxy.command = [settings["chp"]]
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:%d" % settings["proxy_api_port"]
c.ConfigurableHTTPProxy.pid_file = settings["dir"] + "/proxy.pid"
c.ConfigurableHTTPProxy.should_start = True

c.JupyterHub.authenticator_class = "jupyterhub.auth.DummyAuthenticator"
c.Authenticator.allow_all = True
c.Authenticator.admin_users = set()

c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = settings["dir"] + "/home/{{username}}"
c.Spawner.cmd = [settings["singleuser"]]
# root (CI, containers) must say so to jupyter_server; harmless otherwise
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 30
c.Spawner.http_timeout = 30
c.Spawner.env_keep = ["PATH", "PYTHONPATH", "LANG", "LC_ALL", "VIRTUAL_ENV"]


def pre_spawn_hook(spawner):
    if spawner.user.name == "broken":
        spawner.cmd = [settings["dir"] + "/no-such-jupyterhub-singleuser"]
    elif spawner.user.name == "crasher":
        spawner.cmd = [sys.executable, "-c", "import sys; sys.exit('the single-user server crashed on purpose')"]
        # the hub only notices through its http_timeout that the server never came up
        spawner.http_timeout = 3
    elif spawner.user.name == "sleeper":
        spawner.cmd = [sys.executable, "-c", "import time; time.sleep(120)"]


c.Spawner.pre_spawn_hook = pre_spawn_hook

c.JupyterHub.services = [{{"name": "test-admin", "api_token": settings["admin_token"]}}]
c.JupyterHub.load_roles = [
    {{
        "name": "test-admin",
        "description": "manages the test hub's users, servers and tokens",
        "scopes": ["admin:users", "admin:servers", "tokens", "read:hub"],
        "services": ["test-admin"],
    }}
]
'''


def configurable_http_proxy() -> str | None:
    """The npm proxy's command: ``$CONFIGPROXY_COMMAND``, on PATH, or in a local npm prefix."""
    explicit = os.environ.get("CONFIGPROXY_COMMAND")
    if explicit:
        return explicit
    found = shutil.which("configurable-http-proxy")
    if found:
        return found
    local = Path(__file__).resolve().parent.parent / ".ci" / "node_modules" / ".bin" / "configurable-http-proxy"
    return str(local) if local.exists() else None


def singleuser_command() -> str | None:
    """``jupyterhub-singleuser`` next to this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "jupyterhub-singleuser"
    return str(beside) if beside.exists() else shutil.which("jupyterhub-singleuser")


def missing_requirements() -> str | None:
    """Why a real hub cannot start here, or None when it can."""
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "the jupyterhub package is not installed (run .ci/install-jupyterhub.sh)"
    if not configurable_http_proxy():
        return "the npm configurable-http-proxy is not installed (run .ci/install-jupyterhub.sh)"
    if not singleuser_command():
        return "jupyterhub-singleuser is not installed (run .ci/install-jupyterhub.sh)"
    return None


class JupyterHubProcess:
    """One real JupyterHub (with its proxy) that we start, query and stop."""

    def __init__(self, slow_spawn_timeout: float = 0.5, slow_stop_timeout: float = 0) -> None:
        self.slow_spawn_timeout = slow_spawn_timeout
        self.slow_stop_timeout = slow_stop_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="binder-autorun-hub-"))
        self.port = free_port()
        self.admin_token = secrets.token_hex(24)
        self.process: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"token {self.admin_token}"

    def __repr__(self) -> str:
        return f"JupyterHubProcess(url={self.url!r})"

    @property
    def url(self) -> str:
        """The hub's public address (the proxy's), as a user would type it."""
        return f"http://127.0.0.1:{self.port}/"

    @property
    def api(self) -> str:
        return self.url + "hub/api/"

    @property
    def log_path(self) -> Path:
        return self.dir / "jupyterhub.log"

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # --- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        chp, singleuser = configurable_http_proxy(), singleuser_command()
        assert chp and singleuser, missing_requirements()
        settings = {
            "dir": str(self.dir),
            "port": self.port,
            "hub_port": free_port(),
            "proxy_api_port": free_port(),
            "chp": chp,
            "singleuser": singleuser,
            "admin_token": self.admin_token,
            "slow_spawn_timeout": self.slow_spawn_timeout,
            "slow_stop_timeout": self.slow_stop_timeout,
        }
        config = self.dir / "jupyterhub_config.py"
        config.write_text(_CONFIG.format(settings=json.dumps(settings)))
        env = dict(os.environ)
        env["CONFIGPROXY_AUTH_TOKEN"] = secrets.token_hex(24)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env.pop("JUPYTERHUB_API_TOKEN", None)
        with open(self.log_path, "wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jupyterhub", "-f", str(config), "--debug"],
                cwd=self.dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + HUB_STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"jupyterhub exited while starting; its log ends:\n{self.log_tail()}")
            try:
                if self.http.get(self.api, timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"jupyterhub did not answer within {HUB_STARTUP_TIMEOUT:g} s; its log ends:\n{self.log_tail()}")

    def stop(self) -> None:
        """Stop the hub; it stops its single-user servers and proxy (then sweep up leftovers)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._kill_leftovers()
        self.http.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill_leftovers(self) -> None:
        """Single-user servers and the proxy run in their own sessions: kill any the hub left."""
        try:
            import psutil
        except ImportError:
            return
        marker = str(self.dir)
        for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
            try:
                cmdline = " ".join(proc.info["cmdline"] or [])
                if marker in cmdline or (proc.info["cwd"] or "").startswith(marker):
                    log.warning("killing leftover hub process %s: %s", proc.pid, cmdline[:200])
                    proc.kill()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue

    # --- admin helpers (through the hub's REST API, as the admin service) -------

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.http.request(method, self.api + path, **kwargs)

    def ensure_user(self, name: str) -> None:
        response = self.request("POST", f"users/{name}")
        assert response.status_code in (201, 409), response.text

    def user_token(self, name: str, scopes: list[str] | None = None, note: str = "test") -> str:
        """Mint an API token for ``name`` (no scopes: the owner's full permissions, like /hub/token)."""
        self.ensure_user(name)
        body: dict[str, Any] = {"note": note}
        if scopes is not None:
            body["scopes"] = scopes
        response = self.request("POST", f"users/{name}/tokens", json=body)
        assert response.status_code == 201, response.text
        return str(response.json()["token"])

    def server_model(self, name: str, server_name: str = "") -> dict[str, Any] | None:
        """The hub's model of a user's server, or None when the hub has none."""
        response = self.request("GET", f"users/{name}")
        assert response.status_code == 200, response.text
        model: dict[str, Any] | None = response.json().get("servers", {}).get(server_name)
        return model

    def stop_server(self, name: str, server_name: str = "", timeout: float = 30.0) -> None:
        """Stop a user's server and wait until the hub reports it gone."""
        path = f"users/{name}/servers/{server_name}" if server_name else f"users/{name}/server"
        response = self.request("DELETE", path)
        assert response.status_code in (202, 204, 400, 404), response.text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            model = self.server_model(name, server_name)
            if model is None or (not model.get("pending") and not model.get("ready")):
                return
            time.sleep(0.2)
        raise AssertionError(f"{name}'s server {server_name!r} did not stop within {timeout:g} s")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"a real JupyterHub is needed: {reason}")
    pytest.skip(f"a real JupyterHub is needed: {reason}")


@pytest.fixture(scope="session", name="jupyterhub")
def real_jupyterhub() -> Iterator[JupyterHubProcess]:
    """A running JupyterHub for the whole session (stopped, servers included, at the end)."""
    reason = missing_requirements()
    if reason:
        _unavailable(reason)
    hub = JupyterHubProcess()
    try:
        hub.start()
    except Exception:
        hub.stop()
        raise
    try:
        yield hub
    finally:
        hub.stop()

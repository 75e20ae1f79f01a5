"""Real kernel gateways on loopback: Jupyter Enterprise Gateway and Jupyter Kernel Gateway.

Enterprise Gateway pins jupyter_server 1.x, so it runs from a venv of its own
that ``.ci/install-gateways.sh`` builds (``$BINDER_AUTORUN_GATEWAY_VENV``, default
``~/.cache/binder_autorun-ci/enterprise-gateway``); Kernel Gateway runs on our
jupyter_server 2 and is installed in our venv by the same script. Without them
the tests skip, saying so — unless ``BINDER_AUTORUN_REQUIRE_GATEWAYS`` is set
(CI sets it), where a missing gateway fails.

Both run as deployed: token auth, kernel listing forbidden (their default),
Enterprise Gateway's default refusal of ``root`` as ``KERNEL_USERNAME``, random
ports, runtime files and logs in a temporary folder.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from binder_autorun.launch import free_port

EG_VENV = Path(os.environ.get("BINDER_AUTORUN_GATEWAY_VENV") or Path.home() / ".cache" / "binder_autorun-ci" / "enterprise-gateway")
REQUIRE_ENV = "BINDER_AUTORUN_REQUIRE_GATEWAYS"

#: a variable that is no KERNEL_* one but Enterprise Gateway passes on when the client allows it
ALLOWED_ENV = "BINDER_AUTORUN_GATEWAY_PASSED"

#: a kernel that takes this long to come up (a cluster scheduling it, in miniature)
SLOW_START = 3.0


def _missing(what: str, how: str) -> None:
    reason = f"{what} is not installed ({how}); run .ci/install-gateways.sh to get it"
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(reason + f" ({REQUIRE_ENV} is set: CI must have it)", pytrace=False)
    pytest.skip(reason)


def _slow_kernelspec(root: Path, python: str) -> Path:
    """A JUPYTER_PATH entry with a kernel ``slow`` that sleeps before it starts."""
    spec = root / "kernels" / "slow"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": ["sh", "-c", f'sleep {SLOW_START}; exec "$0" -m ipykernel_launcher -f "$1"', python, "{connection_file}"],
        "display_name": "Slow Python", "language": "python",
    }))
    return root


class Gateway:
    """One gateway process on 127.0.0.1 (a random port) with a random token."""

    def __init__(self, kind: str, argv: list[str], workdir: Path, env: dict[str, str], tls: bool = False) -> None:
        self.kind = kind
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}/"
        self.log_path = workdir / f"{kind}.log"
        app = "EnterpriseGatewayApp" if kind == "enterprise" else "KernelGatewayApp"
        argv = [*argv, f"--{app}.ip=127.0.0.1", f"--{app}.port={self.port}", f"--{app}.auth_token={self.token}"]
        #: the certificate a TLS gateway serves (it is its own CA)
        self.cert: Path | None = None
        if tls:
            self.cert, key = self_signed_certificate(workdir)
            argv += [f"--{app}.certfile={self.cert}", f"--{app}.keyfile={key}"]
        runtime = workdir / "runtime"
        runtime.mkdir(exist_ok=True)
        full_env = {**os.environ, **env, "JUPYTER_RUNTIME_DIR": str(runtime)}
        for name in [name for name in full_env if name.startswith(("JUPYTER_GATEWAY_", "KERNEL_"))]:
            del full_env[name]  # the gateway's own kernels must not see the test's client settings
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(argv, cwd=workdir, env=full_env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} gateway exited ({self.process.returncode}):\n{self.log_tail()}")
            try:
                if requests.get(self.url + "api", headers=self.headers, timeout=1, verify=False).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.kind} gateway did not answer within {timeout:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start_kernel(self, username: str = "gateway-test") -> str:
        """A kernel started by another client (the test), by plain REST."""
        response = requests.post(self.url + "api/kernels", json={"name": "python3", "env": {"KERNEL_USERNAME": username}},
                                 headers=self.headers, timeout=30)
        response.raise_for_status()
        return str(response.json()["id"])

    def kernel_exists(self, kernel_id: str) -> bool:
        return requests.get(self.url + f"api/kernels/{kernel_id}", headers=self.headers, timeout=10).status_code == 200

    def delete_kernel(self, kernel_id: str) -> int:
        return requests.delete(self.url + f"api/kernels/{kernel_id}", headers=self.headers, timeout=30).status_code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()


def start_enterprise_gateway(workdir: Path) -> Gateway:
    """Enterprise Gateway from its own venv; its kernels (``python3``, ``slow``) run on that venv's Python."""
    executable = EG_VENV / "bin" / "jupyter-enterprisegateway"
    if not executable.exists():
        _missing("Jupyter Enterprise Gateway", f"no {executable}")
    python = str(EG_VENV / "bin" / "python")
    extra = _slow_kernelspec(workdir / "eg-share", python)
    env = {
        "PATH": f"{EG_VENV / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",  # its python3 kernelspec runs "python"
        "JUPYTER_PATH": str(extra),
        "VIRTUAL_ENV": str(EG_VENV),
        "PYTHONPATH": "",
    }
    # a variable its operators let clients pass (JUPYTER_GATEWAY_ALLOWED_ENVS on the client side)
    argv = [str(executable), f"--EnterpriseGatewayApp.client_envs={ALLOWED_ENV}"]
    return Gateway("enterprise", argv, workdir, env)


def self_signed_certificate(workdir: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 that no CA signed (as a private gateway often has)."""
    cert, key = workdir / "gateway.crt", workdir / "gateway.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def start_kernel_gateway(workdir: Path, tls: bool = False) -> Gateway:
    """Kernel Gateway on our own jupyter_server 2 and ipykernel (over https with ``tls``)."""
    try:
        import kernel_gateway  # noqa: F401
    except ImportError:
        _missing("Jupyter Kernel Gateway", "the package jupyter-kernel-gateway is not in this venv")
    extra = _slow_kernelspec(workdir / "kg-share", sys.executable)
    return Gateway("kernel", [sys.executable, "-m", "kernel_gateway"], workdir, {"JUPYTER_PATH": str(extra)}, tls=tls)

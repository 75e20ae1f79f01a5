"""Launching a server: a BinderHub build, a JupyterHub user server, or a private local one.

A :class:`Target` says what to launch (and is kept to relaunch it); :func:`launch`
turns it into a :class:`Launched` server: its URL with base_url, and its token.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..server import ServerInfo
from .binderhub import BinderHubLauncher, normalize_hub
from .gateway import GatewayConfig
from .jupyterhub import JupyterHubLauncher, hub_base_url, show_progress
from .local import LocalServer, free_port
from .progress import LaunchProgress
from .spec import parse_spec

__all__ = ["GatewayConfig", "Launched", "LocalServer", "Target", "default_binderhub", "free_port", "launch"]

DEFAULT_BINDERHUB = "https://mybinder.org"


def default_binderhub() -> str:
    """The hub for ``-r`` when none is named: BINDER_AUTORUN_BINDERHUB or mybinder.org."""
    return os.environ.get("BINDER_AUTORUN_BINDERHUB", DEFAULT_BINDERHUB)


@dataclass
class Target:
    """What to (re)launch: its kind, a label for people, and a token-free identity."""

    kind: str  # "url", "local", "binder", "jupyterhub" or "gateway"
    label: str
    key: str
    options: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def url(cls, info: ServerInfo) -> Target:
        """Any running Jupyter server."""
        return cls("url", info.url, f"url:{info.url}", {"info": info})

    @classmethod
    def local(cls, root_dir: str | None = None) -> Target:
        """A private jupyter_server on 127.0.0.1 serving ``root_dir``."""
        root = os.path.abspath(root_dir or ".")
        return cls("local", f"local server in {root}", f"local:{root}", {"root_dir": root})

    @classmethod
    def binder(cls, repo: str, ref: str | None = None, hub: str = "", show_log: bool = False) -> Target:
        """A repository built and launched by a BinderHub (a bad spec fails here, offline)."""
        spec = parse_spec(repo, ref)
        hub = normalize_hub(spec.hub or hub or default_binderhub())
        return cls("binder", f"{spec.label} on {hub}", f"binder:{hub}{spec.build_path}", {"spec": spec, "hub": hub, "show_log": show_log})

    @classmethod
    def jupyterhub(cls, hub: str, token: str, server_name: str = "") -> Target:
        """The token owner's (named) server on a JupyterHub."""
        hub = hub_base_url(hub)
        label = f"JupyterHub {hub}" + (f" (server {server_name!r})" if server_name else "")
        return cls("jupyterhub", label, f"jupyterhub:{hub}:{server_name}", {"hub": hub, "token": token, "server": server_name})

    @classmethod
    def gateway(cls, config: GatewayConfig) -> Target:
        """A kernel gateway (Enterprise Gateway, Kernel Gateway): kernels only, started with the gateway's env."""
        return cls("gateway", f"kernel gateway {config.url}", f"gateway:{config.url}", {"config": config})

    @property
    def culls_idle(self) -> bool:
        """Binder servers are culled after ~10 idle minutes."""
        return self.kind == "binder"

    @property
    def reattachable(self) -> bool:
        """Launched servers outlive the local kernel and are worth remembering."""
        return self.kind in ("binder", "jupyterhub")


@dataclass
class Launched:
    """A server ready for kernels; ``local_server`` is set when we own its process."""

    info: ServerInfo
    local_server: LocalServer | None = None


def launch(target: Target, timeout: float = 300.0, build_log: list[str] | None = None) -> Launched:
    """Launch ``target`` with progress shown; a Binder build's log lines go to ``build_log``."""
    options = target.options
    if target.kind == "url":
        return Launched(options["info"])
    if target.kind == "gateway":
        return Launched(options["config"].info)  # nothing to launch: kernels start in gateway.start_session
    if target.kind == "local":
        server = LocalServer(root_dir=options["root_dir"], limit_rate=False)  # private: pass output like a native kernel
        return Launched(server.start(), server)
    if target.kind == "binder":
        spec, hub = options["spec"], options["hub"]
        with LaunchProgress(spec, hub, show_log=options["show_log"]) as progress:
            try:
                result = BinderHubLauncher(hub, silence_timeout=timeout).launch(spec, on_event=progress)
            finally:
                if build_log is not None:
                    build_log[:] = progress.build_log.lines  # a failed build's log matters most
            progress.done(result)
        return Launched(result.info)
    hub_launch = JupyterHubLauncher(options["hub"], options["token"], options["server"], timeout=timeout)
    return Launched(hub_launch.launch(on_event=show_progress).info)

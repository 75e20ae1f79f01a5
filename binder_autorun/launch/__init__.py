"""Launching a server: a BinderHub build, a JupyterHub user server, or a private local one.

Every launcher ends with a :class:`~binder_autorun.server.ServerInfo` (URL with
base_url, and token) that the rest of the pipeline connects to.
"""

from .local import LocalServer, free_port

__all__ = ["LocalServer", "free_port"]

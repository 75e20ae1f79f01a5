"""Exceptions that reach the user.

Every failure the user can hit is a :class:`BinderAutorunError` whose message is
one sentence saying what happened and what to do. IPython renders it through
``_render_traceback_`` so no Python traceback (which would quote the magic's
source line, token included) is ever shown.

A remote exception is re-raised locally as an instance of a class created on the
fly with the remote ``ename`` so the local cell fails with the remote name, value
and traceback, exactly as a native cell would.
"""

from __future__ import annotations

from typing import Any

_RED = "\x1b[0;31m"
_RESET = "\x1b[0m"


class BinderAutorunError(Exception):
    """A failure explained to the user in one sentence, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"{_RED}{type(self).__name__}{_RESET}: {self}"]


class SpecError(BinderAutorunError, ValueError):
    """A repository spec or option we cannot understand."""


class ServerError(BinderAutorunError):
    """The Jupyter server refused or failed a request."""


class AuthError(ServerError):
    """The server rejected our token (HTTP 403/401)."""


class LaunchError(BinderAutorunError):
    """Building or starting a server failed."""


class ConnectionLost(BinderAutorunError):
    """The remote server (or our connection to it) is gone for good."""


class ServerUnreachable(ConnectionLost):
    """Nothing answers at the server's address (refused, unresolvable, reset)."""


class KernelDied(BinderAutorunError):
    """The remote kernel died while running a cell; its state is lost."""


class NotConnected(BinderAutorunError):
    """Remote mode needs a connection that does not exist."""


class RemoteError(Exception):
    """Base class of exceptions re-raised from the remote kernel.

    Instances carry the remote ``ename``, ``evalue`` and ``traceback`` (ANSI
    colours intact). ``shown`` is True when the remote ``error`` output was
    already mirrored, so the local cell must fail without showing it twice.
    """

    ename: str = "RemoteError"

    def __init__(self, evalue: str, traceback: list[str], shown: bool = False) -> None:
        super().__init__(evalue)
        self.evalue = evalue
        self.traceback = list(traceback)
        self.shown = shown

    def __str__(self) -> str:
        return self.evalue

    def _render_traceback_(self) -> list[str]:
        return self.traceback


_remote_classes: dict[str, type[RemoteError]] = {}


def remote_error_class(ename: str) -> type[RemoteError]:
    """The local exception class standing for the remote ``ename`` (cached)."""
    cls = _remote_classes.get(ename)
    if cls is None:
        name = ename if ename.isidentifier() else "RemoteError"
        cls = type(name, (RemoteError,), {"ename": ename, "__module__": "binder_autorun.remote"})
        _remote_classes[ename] = cls
    return cls


def remote_error(content: dict[str, Any], shown: bool = False) -> RemoteError:
    """Build the local exception for a remote error reply or ``error`` message."""
    cls = remote_error_class(str(content.get("ename", "RemoteError")))
    return cls(str(content.get("evalue", "")), content.get("traceback") or [], shown=shown)

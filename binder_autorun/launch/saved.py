"""Remembering launched servers, so a restarted local kernel reattaches instead of rebuilding.

One JSON file per user, created readable by its owner only (it holds tokens),
keyed by a target's identity (hub + spec, or server URL). Entries are
validated by the caller before use and dropped when dead.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def default_path() -> Path:
    """``$BINDER_AUTORUN_STATE`` or ``~/.local/state/binder_autorun/servers.json``."""
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(os.environ.get("BINDER_AUTORUN_STATE", os.path.join(state, "binder_autorun", "servers.json")))


class SavedServers:
    """A small owner-only key/value file of ``{url, token, kernel_id, saved}`` records."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_path()

    def __repr__(self) -> str:
        return f"SavedServers({str(self.path)!r})"

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            if self.path.stat().st_mode & 0o077:
                log.warning("ignoring %s: it is readable by other users", self.path)
                return {}
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".servers-", suffix=".tmp")  # owner-only
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temporary, self.path)

    def get(self, key: str) -> dict[str, Any] | None:
        """The record saved for ``key``, if any."""
        return self._read().get(key)

    def put(self, key: str, url: str, token: str, kernel_id: str) -> None:
        """Remember where ``key``'s server and kernel are."""
        data = self._read()
        data[key] = {"url": url, "token": token, "kernel_id": kernel_id, "saved": time.time()}
        self._write(data)

    def drop(self, key: str) -> None:
        """Forget ``key`` (its server is gone or was shut down)."""
        data = self._read()
        if data.pop(key, None) is not None:
            self._write(data)

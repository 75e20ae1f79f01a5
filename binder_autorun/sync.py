"""Keeping a local folder and the remote kernel's copy of it in step around remote cells.

Before each remote cell, local files under DIR that changed since the last sync
(size or mtime) are pushed; after it, files the cell created or changed in the
remote copy (size or mtime, one scan by the kernel) are pulled back. Rules:

- both sides changed a file: before a cell the local copy wins (it is pushed);
  after a cell what the cell wrote wins (it is pulled);
- deletions are not mirrored;
- version control folders and caches (``.git``, ``__pycache__``,
  ``.ipynb_checkpoints``, ...), symlinks and files over ``max_size`` are skipped,
  with one notice per file;
- the remote scan needs a Python kernel.

One :class:`Sync` per folder; the shell's ``pre_run_cell``/``post_run_cell``
events drive it for top-level remote cells only.
"""

from __future__ import annotations

import json
import os
import posixpath
import secrets
import stat as statlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BinderAutorunError
from .transfer import SKIP_DIRS, KernelHelper, Transfer, Transport, destination, human, local_digest


@dataclass
class SyncState:
    pushed_files: int = 0
    pulled_files: int = 0
    pushed_bytes: int = 0
    pulled_bytes: int = 0
    last: float = 0.0
    last_error: str = ""
    skipped: set[str] = field(default_factory=set)


class Sync:
    """Mirror ``local_dir`` with the remote folder of the same relative name."""

    def __init__(self, transport: Transport, helper: KernelHelper, local_dir: str | os.PathLike[str], remote_dir: str,
                 max_size: int = 100 * 1000 * 1000, out: Any = None) -> None:
        self.transport = transport
        self.helper = helper
        self.local_dir = Path(local_dir).resolve()
        self.remote_dir = remote_dir.strip("/")
        self.max_size = max_size
        self._out = out
        self.local: dict[str, tuple[int, int]] = {}
        self.remote_count = 0
        self.key = secrets.token_hex(6)
        self.verify: dict[str, str] = {}
        self.state = SyncState()

    @classmethod
    def for_folder(cls, transport: Transport, helper: KernelHelper, folder: str, cwd: str, **kwargs: Any) -> Sync:
        local = Path(cwd) / os.path.expanduser(folder)
        if not local.is_dir():
            raise BinderAutorunError(f"Cannot sync {folder!r}: there is no such local folder.")
        remote = destination(folder) if folder not in ("", ".") else ""
        return cls(transport, helper, local, remote, **kwargs)

    @property
    def out(self) -> Any:
        """Where sync's lines go: stderr at the moment of writing (apart from the cell's own output)."""
        return self._out if self._out is not None else sys.stderr

    # -- scanning -------------------------------------------------------------------

    def scan_local(self) -> dict[str, tuple[int, int]]:
        """(size, mtime) of every regular file under the folder, one lstat per entry."""
        found: dict[str, tuple[int, int]] = {}

        def walk(folder: str, prefix: str) -> None:
            try:
                entries = os.scandir(folder)
            except OSError:
                return
            with entries:
                for entry in entries:
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if statlib.S_ISDIR(info.st_mode):
                        if entry.name not in SKIP_DIRS:
                            walk(entry.path, prefix + entry.name + "/")
                    elif statlib.S_ISREG(info.st_mode) and ".binder-partial-" not in entry.name:
                        found[prefix + entry.name] = (info.st_size, info.st_mtime_ns)

        walk(str(self.local_dir), "")
        return found

    def remote_changes(self, verify: dict[str, str] | None = None) -> dict[str, int]:
        """Remote files changed since the last scan (the kernel keeps the snapshot), by size."""
        result = json.loads(self.helper.call("scan_changes", self.key, self.remote_dir, sorted(SKIP_DIRS), verify or {}))
        self.remote_count = int(result["count"])
        return {rel: int(size) for rel, size in result["changed"].items()}

    def _small(self, rel: str, size: int) -> bool:
        if size <= self.max_size:
            return True
        if rel not in self.state.skipped:
            self.state.skipped.add(rel)
            print(f"binder_autorun: sync skips {rel} ({human(size)}): over the size limit of {human(self.max_size)} "
                  "(BinderAutorun.sync_max_size).", file=sys.stderr)
        return False

    # -- the two moments ------------------------------------------------------------

    def start(self) -> None:
        """Push what differs (by content), then remember both sides."""
        self.local = {}
        self.before_cell()
        self.remote_changes()  # the baseline

    def before_cell(self) -> None:
        """Push local files changed since the last sync."""
        now = self.scan_local()
        changed = [rel for rel, sig in sorted(now.items()) if self.local.get(rel) != sig and self._small(rel, sig[0])]
        self.verify = {}
        if changed:
            summary = Transfer(self.transport, self.local_dir, out=self.out, quiet=True).push(changed, to=self.remote_dir)
            self.state.pushed_files += summary.files
            self.state.pushed_bytes += summary.bytes
            # the remote scan after the cell tells our own pushes from the cell's writes by content
            self.verify = {rel: local_digest(self.local_dir / rel) for rel in changed}
            if summary.files:
                print(f"binder_autorun: sync pushed {summary.files} file(s) ({human(summary.bytes)}).", file=self.out, flush=True)
        self.local = now
        self.state.last = time.time()

    def after_cell(self) -> None:
        """Pull what the cell created or changed remotely."""
        changed = [rel for rel, size in sorted(self.remote_changes(self.verify).items()) if self._small(rel, size)]
        if changed:
            sources = [posixpath.join(self.remote_dir, rel) if self.remote_dir else rel for rel in changed]
            summary = Transfer(self.transport, self.local_dir, out=self.out, quiet=True).pull(sources, strip=self.remote_dir)
            self.state.pulled_files += summary.files
            self.state.pulled_bytes += summary.bytes
            if summary.files:
                print(f"binder_autorun: sync pulled {summary.files} file(s) ({human(summary.bytes)}).", file=self.out, flush=True)
            for rel in changed:
                try:
                    info = os.stat(self.local_dir / rel)
                    self.local[rel] = (info.st_size, info.st_mtime_ns)
                except OSError:
                    pass
        self.verify = {}
        self.state.last = time.time()

    def status(self) -> str:
        state = self.state
        when = time.strftime("%H:%M:%S", time.localtime(state.last)) if state.last else "never"
        text = (f"{self.local_dir} <-> remote ./{self.remote_dir} ({len(self.local)} local files); last {when}; "
                f"pushed {state.pushed_files} ({human(state.pushed_bytes)}), pulled {state.pulled_files} ({human(state.pulled_bytes)})")
        if state.skipped:
            text += f"; {len(state.skipped)} over the size limit"
        if state.last_error:
            text += f"; last error: {state.last_error}"
        return text


class RunFiles:
    """``binder-autorun run --push/--pull/--sync``: files around a whole notebook run.

    Before the first cell: ``push`` paths (relative to the notebook's folder) go to the
    remote kernel's folder, and with ``sync`` the notebook's folder is mirrored there.
    After the last cell: ``pull`` paths come back, and with ``sync`` whatever the run
    created or changed in the remote copy of the folder.
    """

    def __init__(self, server: Any, kernel_id: str, folder: Path, push: list[str], pull: list[str], sync: bool) -> None:
        self.server, self.kernel_id, self.folder = server, kernel_id, folder
        self.push, self.pull, self.sync = list(push), list(pull), sync
        self._sync: Sync | None = None

    def _session(self) -> Any:
        from .session import KernelSession

        return KernelSession.attach(self.server, self.kernel_id)

    def before(self) -> None:
        """Push (and start syncing); failures are one sentence (BinderAutorunError)."""
        from .transfer import open_transport

        if not (self.push or self.sync):
            return
        session = self._session()
        try:
            transport = open_transport(session)
            if self.push:
                Transfer(transport, self.folder, out=sys.stderr).push(self.push)
            if self.sync:
                self._sync = Sync(transport, KernelHelper(session), self.folder, "", out=sys.stderr)
                self._sync.start()
        finally:
            session.close()

    def after(self) -> None:
        """Pull (and bring back what the run changed)."""
        from .transfer import open_transport

        if not (self.pull or self._sync):
            return
        session = self._session()
        try:
            transport = open_transport(session)
            if self._sync is not None:
                self._sync.transport, self._sync.helper = transport, KernelHelper(session)
                self._sync.after_cell()
            if self.pull:
                Transfer(transport, self.folder, out=sys.stderr).pull(self.pull)
        finally:
            session.close()

"""Keeping a local folder and the remote kernel's copy of it in step around remote cells.

Before each remote cell, local files under DIR that changed since the last sync
(size or mtime) are pushed; after it, files the cell created or changed in the
remote copy are pulled back. Both sides learn what changed from a
:class:`~binder_autorun.watch.Tree` (inotify where it works: a quiet tree costs
almost nothing), and the remote's answer travels as a ``user_expression`` of the
cell's own execute request, so a synced cell is still one round trip. Rules:

- both sides changed a file: before a cell the local copy wins (it is pushed);
  after a cell what the cell wrote wins (it is pulled);
- deletions are not mirrored;
- version control folders and caches (``.git``, ``__pycache__``,
  ``.ipynb_checkpoints``, ...), symlinks and files over ``max_size`` are skipped,
  with one notice per file;
- the remote side needs a Python kernel.

One :class:`Sync` per folder; the shell's ``pre_run_cell``/``post_run_cell``
events drive it for top-level remote cells only.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import posixpath
import secrets
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BinderAutorunError
from .transfer import SKIP_DIRS, KernelCallError, KernelHelper, Transfer, Transport, destination, human, local_digest
from .watch import Tree

log = logging.getLogger(__name__)


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
        self.tree = Tree(str(self.local_dir), SKIP_DIRS)
        self.remote_count = 0
        #: the remote clock (ns) at its last scan: a restarted kernel reports what changed after it
        self.remote_now: int | None = None
        self.key = secrets.token_hex(6)
        #: our user_expression's name in a cell's request (random: no frontend's name can be it)
        self.expression_key = f"binder_autorun_sync_{secrets.token_hex(8)}"
        self.verify: dict[str, str] = {}
        self.state = SyncState()
        self._answer: dict[str, Any] | None = None
        self._rescan_reasons: set[str] = set()

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

    # -- the remote side's answer ------------------------------------------------------

    def _call_args(self) -> tuple[Any, ...]:
        return self.key, self.remote_dir, sorted(SKIP_DIRS), self.verify, self.remote_now

    def after_expression(self) -> str:
        """The remote change query, to be evaluated right after the cell in the cell's own request."""
        args = ", ".join(repr(arg) for arg in self._call_args())
        return f"__import__('sys').modules[{self.helper.module!r}].scan_changes({args})"

    def take(self, reply: dict[str, Any]) -> dict[str, Any]:
        """Keep our expression's result from a cell's execute_reply; return the reply without it
        (the frontend asked for its own expressions only)."""
        theirs = dict(reply.get("user_expressions") or {})
        self._answer = theirs.pop(self.expression_key, None)
        return {**reply, "user_expressions": theirs}

    def _answered(self) -> str | None:
        """The scan the cell's reply carried; None if it has to be asked for: ipykernel evaluates
        user_expressions only after a cell that succeeded, and a restarted kernel lost the helper."""
        value, self._answer = self._answer, None
        if not value:
            return None
        if value.get("status") == "ok":
            return str(ast.literal_eval(value.get("data", {}).get("text/plain", "")))
        if value.get("ename") == "KeyError" and self.helper.module in str(value.get("evalue", "")):
            return None
        raise KernelCallError(str(value.get("ename", "Error")), str(value.get("evalue", "")))

    def remote_changes(self) -> dict[str, int]:
        """Remote files changed since the last scan (the kernel keeps the watch), by size."""
        answer = self._answered()
        if answer is None:
            answer = self.helper.call("scan_changes", *self._call_args())
        result = json.loads(answer)
        self.remote_count, self.remote_now = int(result["count"]), int(result["now"])
        self._note_rescans("remote", str(result.get("rescans", "")))
        return {rel: int(size) for rel, size in result["changed"].items()}

    def _note_rescans(self, side: str, why: str) -> None:
        if why and why not in self._rescan_reasons:
            self._rescan_reasons.add(why)
            log.info("sync rescans the %s tree around every cell: %s", side, why)

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
        self.before_cell()
        self.remote_changes()  # the baseline

    def before_cell(self) -> None:
        """Push local files changed since the last sync."""
        changed = [rel for rel, sig in sorted(self.tree.changes().items()) if self._small(rel, sig[0])]
        self._note_rescans("local", self.tree.why_rescan)
        self.verify = {}
        if changed:
            summary = Transfer(self.transport, self.local_dir, out=self.out, quiet=True).push(changed, to=self.remote_dir)
            self.state.pushed_files += summary.files
            self.state.pushed_bytes += summary.bytes
            # the remote scan after the cell tells our own pushes from the cell's writes by content
            self.verify = {rel: local_digest(self.local_dir / rel) for rel in changed}
            if summary.files:
                print(f"binder_autorun: sync pushed {summary.files} file(s) ({human(summary.bytes)}).", file=self.out, flush=True)
        self.state.last = time.time()

    def after_cell(self) -> None:
        """Pull what the cell created or changed remotely."""
        changed = [rel for rel, size in sorted(self.remote_changes().items()) if self._small(rel, size)]
        if changed:
            sources = [posixpath.join(self.remote_dir, rel) if self.remote_dir else rel for rel in changed]
            summary = Transfer(self.transport, self.local_dir, out=self.out, quiet=True).pull(sources, strip=self.remote_dir)
            self.state.pulled_files += summary.files
            self.state.pulled_bytes += summary.bytes
            if summary.files:
                print(f"binder_autorun: sync pulled {summary.files} file(s) ({human(summary.bytes)}).", file=self.out, flush=True)
            self.tree.note(changed)  # our own writes: not pushed back
        self.verify = {}
        self.state.last = time.time()

    def stop(self) -> None:
        """Release both sides' watches (best effort: the remote may be gone already)."""
        self.tree.close()
        try:
            self.helper.call("scan_stop", self.key)
        except BinderAutorunError as exc:
            log.info("sync could not release the remote watch: %s", exc)

    def status(self) -> str:
        state = self.state
        when = time.strftime("%H:%M:%S", time.localtime(state.last)) if state.last else "never"
        text = (f"{self.local_dir} <-> remote ./{self.remote_dir} ({len(self.tree.files)} local files); last {when}; "
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
                self._sync.tree.close()
            if self.pull:
                Transfer(transport, self.folder, out=sys.stderr).pull(self.pull)
        finally:
            session.close()

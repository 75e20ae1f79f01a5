"""Which files under a folder changed, cheaply enough to ask around every cell.

``%binder_sync`` asks before and after each remote cell, on both sides. Rescanning a tree
of 1,000 files costs milliseconds every time; with Linux's inotify (through ``ctypes``) a
quiet tree costs one ``read()`` that finds nothing, and a busy one an ``lstat`` per path
the kernel named. Without inotify (another OS, no ``ctypes``, the watch limit reached, a
network file system) :class:`Tree` rescans everything, which is always correct.

Stdlib only and no package imports: ``transfer.REMOTE_HELPER`` runs this module's source
inside the remote kernel, so both sides of a sync use this one implementation. (Keep it
runnable on older Pythons: annotations are never evaluated, nothing newer than 3.7.)
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import struct
import sys
from collections.abc import Iterable

#: temporary names of transfers in progress (transfer.PARTIAL): never reported
PARTIAL = ".binder-partial-"

# inotify(7)
IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE = 0x2, 0x4, 0x8
IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE, IN_DELETE = 0x40, 0x80, 0x100, 0x200
IN_DELETE_SELF, IN_MOVE_SELF, IN_Q_OVERFLOW, IN_IGNORED = 0x400, 0x800, 0x4000, 0x8000
IN_ONLYDIR, IN_DONT_FOLLOW, IN_EXCL_UNLINK = 0x1000000, 0x2000000, 0x4000000
IN_NONBLOCK, IN_CLOEXEC = 0o4000, 0o2000000
#: what changes a file's (size, mtime) or a folder's entries
WATCHED = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
           | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW | IN_EXCL_UNLINK)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (then len bytes of NUL-padded name)


class WatchUnavailable(Exception):
    """inotify cannot serve this tree (the reason is the message); rescan instead."""


class Inotify:
    """One inotify instance: watches by folder, and the paths its events name."""

    def __init__(self) -> None:
        if not sys.platform.startswith("linux"):
            raise WatchUnavailable("inotify is Linux only")
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._add, self._rm = libc.inotify_add_watch, libc.inotify_rm_watch
            init = libc.inotify_init1
        except (OSError, AttributeError) as exc:
            raise WatchUnavailable(f"no inotify in this C library ({exc})") from None
        self._add.argtypes, self._rm.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], [ctypes.c_int, ctypes.c_int]
        self.fd = init(IN_NONBLOCK | IN_CLOEXEC)
        if self.fd < 0:
            raise WatchUnavailable(f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}")

    def add(self, path: str) -> int:
        """A watch on the folder ``path`` (its watch descriptor), or -1 if it is gone or unreadable."""
        wd = self._add(self.fd, os.fsencode(path), WATCHED)
        if wd >= 0:
            return int(wd)
        code = ctypes.get_errno()
        if code in (errno.ENOSPC, errno.ENOMEM):
            raise WatchUnavailable("the inotify watch limit is reached (fs.inotify.max_user_watches)")
        return -1

    def remove(self, wd: int) -> None:
        self._rm(self.fd, wd)  # EINVAL when the kernel already dropped it: nothing to do

    def events(self) -> Iterable[tuple[int, int, str]]:
        """(wd, mask, name) of every queued event, without waiting."""
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return
            offset = 0
            while offset < len(data):
                wd, mask, _cookie, length = _EVENT.unpack_from(data, offset)
                offset += _EVENT.size
                yield wd, mask, os.fsdecode(data[offset:offset + length].rstrip(b"\0"))
                offset += length

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:  # a tree dropped unclosed (a reinstalled remote helper) frees its watches too
        self.close()


class Tree:
    """The regular files under ``root`` as ``{relative path: (size, mtime_ns)}``, and what changed.

    Skipped like a push skips them: folders named in ``skip``, symlinks, other
    non-regular files and transfers in progress.
    """

    def __init__(self, root: str, skip: Iterable[str], watch: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.skip = frozenset(skip)
        self.files: dict[str, tuple[int, int]] = {}
        #: why every call rescans the whole tree ('' while inotify serves it)
        self.why_rescan = "" if watch else "watching is off"
        self._inotify: Inotify | None = None
        self._dirs: dict[str, tuple[int, tuple[int, int]]] = {}  # folder ('' or 'a/b/') -> (wd, (dev, ino))
        self._wds: dict[int, str] = {}
        self._started = False

    def changes(self) -> dict[str, tuple[int, int]]:
        """Files new or changed since the last call (every file on the first), by (size, mtime_ns)."""
        changed: dict[str, tuple[int, int]] = {}
        if self._started and self._inotify is not None and "" in self._dirs:  # (a root that went is rescanned)
            dirty = self._dirty()
            if dirty is not None:
                try:
                    self._update(dirty, changed)
                    return changed
                except WatchUnavailable as exc:  # a new folder past the watch limit: what was found so far stays
                    self._give_up(str(exc))
        changed.update(self._rescan())
        return changed

    def note(self, paths: Iterable[str]) -> None:
        """Take these files as they are now (we wrote them): not reported as changes later."""
        for rel in paths:
            sig = self._sig(rel)
            if sig is None:
                self.files.pop(rel, None)
            else:
                self.files[rel] = sig

    def close(self) -> None:
        """Release the inotify instance (the tree rescans if asked again)."""
        if self._inotify is not None:
            self._inotify.close()
            self._inotify = None
        self._dirs.clear()
        self._wds.clear()
        self._started = False

    # -- a whole rescan ----------------------------------------------------------------

    def _rescan(self) -> dict[str, tuple[int, int]]:
        """Walk everything (watching every folder anew while inotify is usable)."""
        old = self.files
        self.close()
        if not self.why_rescan:
            try:
                self._inotify = Inotify()
            except WatchUnavailable as exc:
                self.why_rescan = str(exc)
        try:
            self.files = self._walk("")
        except WatchUnavailable as exc:
            self._give_up(str(exc))
            self.files = self._walk("")
        self._started = True
        return {rel: sig for rel, sig in self.files.items() if old.get(rel) != sig}

    def _give_up(self, why: str) -> None:
        self.close()
        self.why_rescan = why

    def _walk(self, folder: str) -> dict[str, tuple[int, int]]:
        """The files of ``folder`` ('' or 'a/b/') and below, watching each folder while inotify is on."""
        path = os.path.join(self.root, folder)
        if self._inotify is not None:  # watch first: what appears while we list is an event, not a miss
            wd = self._inotify.add(path)
            try:
                info = os.lstat(path)
            except OSError:
                return {}
            if wd >= 0:
                self._dirs[folder], self._wds[wd] = (wd, (info.st_dev, info.st_ino)), folder
        found: dict[str, tuple[int, int]] = {}
        try:
            entries = os.scandir(path)
        except OSError:
            return found
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if stat.S_ISDIR(info.st_mode):
                    if entry.name not in self.skip:
                        found.update(self._walk(folder + entry.name + "/"))
                elif stat.S_ISREG(info.st_mode) and PARTIAL not in entry.name:
                    found[folder + entry.name] = (info.st_size, info.st_mtime_ns)
        return found

    # -- inotify's way -----------------------------------------------------------------

    def _dirty(self) -> dict[str, None] | None:
        """Paths the queued events name, in order; None when only a rescan can tell (overflow, root gone)."""
        assert self._inotify is not None
        dirty: dict[str, None] = {}
        for wd, mask, name in self._inotify.events():
            if mask & IN_Q_OVERFLOW:
                return None
            folder = self._wds.get(wd)
            if folder is None:
                continue
            if mask & IN_IGNORED:  # the watch is gone: its folder's record is no longer kept current
                del self._wds[wd]
            if name:
                dirty[folder + name] = None
            elif mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED):
                if folder == "":
                    return None
                dirty[folder[:-1]] = None  # look again at the folder itself (see _same_folder)
        return dirty

    def _update(self, dirty: dict[str, None], changed: dict[str, tuple[int, int]]) -> None:
        """Re-read the paths events named into ``changed``: folders that went (or were swapped) first,
        so a folder moved within the tree is dropped under its old name before it is watched under the new."""
        for rel in dirty:
            if rel + "/" in self._dirs and not self._same_folder(rel + "/"):
                self._drop(rel + "/")
        for rel in sorted(dirty, key=lambda rel: rel.count("/")):  # parents first: one walk covers the subtree
            try:
                info = os.lstat(os.path.join(self.root, rel))
            except OSError:
                self.files.pop(rel, None)
                continue
            if stat.S_ISDIR(info.st_mode):
                self.files.pop(rel, None)
                if rel + "/" not in self._dirs and rel.rsplit("/", 1)[-1] not in self.skip:
                    changed.update(self._merge(self._walk(rel + "/")))
            elif stat.S_ISREG(info.st_mode) and PARTIAL not in rel.rsplit("/", 1)[-1]:
                sig = (info.st_size, info.st_mtime_ns)
                if self.files.get(rel) != sig:
                    changed[rel] = self.files[rel] = sig
            else:
                self.files.pop(rel, None)

    def _merge(self, found: dict[str, tuple[int, int]]) -> dict[str, tuple[int, int]]:
        """Record the files of a folder that appeared; return those that differ from what we knew."""
        changed = {rel: sig for rel, sig in found.items() if self.files.get(rel) != sig}
        self.files.update(found)
        return changed

    def _same_folder(self, folder: str) -> bool:
        """Whether the folder we watch under this name is still there and still watched. The (dev, ino)
        alone cannot tell: a folder removed and made again usually gets the freed inode back, but not
        the watch (the kernel dropped it with the old folder: IN_IGNORED)."""
        wd, ident = self._dirs[folder]
        if self._wds.get(wd) != folder:
            return False
        try:
            info = os.lstat(os.path.join(self.root, folder))
        except OSError:
            return False
        return stat.S_ISDIR(info.st_mode) and (info.st_dev, info.st_ino) == ident

    def _drop(self, folder: str) -> None:
        """Forget ``folder`` and everything below it (watches and files)."""
        assert self._inotify is not None
        for name in [name for name in self._dirs if name.startswith(folder)]:
            wd = self._dirs.pop(name)[0]
            self._wds.pop(wd, None)
            self._inotify.remove(wd)
        for rel in [rel for rel in self.files if rel.startswith(folder)]:
            del self.files[rel]

    def _sig(self, rel: str) -> tuple[int, int] | None:
        try:
            info = os.lstat(os.path.join(self.root, rel))
        except OSError:
            return None
        return (info.st_size, info.st_mtime_ns) if stat.S_ISREG(info.st_mode) else None

"""Moving files between the local working directory and the remote kernel's.

One transport interface (:class:`Transport`), two implementations:

- :class:`ContentsTransport`: the server's own REST API. Uploads go through the
  contents API (``PUT api/contents/<path>``, base64, ``"chunk": 1, 2, …, -1`` for
  big files, into a temporary name that a ``PATCH`` then renames); downloads
  stream raw bytes from the server's ``files/`` handler (the contents API's GET
  only returns a whole file as one base64 JSON string). Works for any kernel
  language. jupyter_server refuses hidden files (a name starting with ``.``)
  on both; those go over the kernel channel when the kernel is Python.
- :class:`KernelTransport`: base64 chunks through silent executes of a Python
  kernel (kernel gateways have no contents API); small files travel together,
  many in one execute.

:class:`Transfer` does the rest, the same for both: files, folders, globs,
the relative layout, skipping unchanged files (size, then sha256), progress and
a summary line, write-aside-then-rename on both sides, and the path checks
that keep whatever is pulled inside its destination.
"""

from __future__ import annotations

import ast
import base64
import errno
import fnmatch
import glob as globlib
import hashlib
import inspect
import json
import logging
import os
import posixpath
import secrets
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import requests

from . import watch
from .errors import BinderAutorunError, ConnectionLost, ServerUnreachable
from .server import JupyterServer

log = logging.getLogger(__name__)

#: bytes per upload chunk / download read (the contents API's chunks are base64 in JSON)
CHUNK = 8 << 20
#: bytes per chunk through the kernel channel (base64 in an execute request)
KERNEL_CHUNK = 4 << 20
#: folders skipped when walking a tree (version control, caches)
SKIP_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__", ".ipynb_checkpoints", ".mypy_cache", ".pytest_cache"})
#: name part of files written aside before the rename
PARTIAL = ".binder-partial-"
#: how many small files move at once (one request each): a far server's round trips overlap
WORKERS = 4
#: seconds an interrupted transfer waits for the small files in flight
INTERRUPT_GRACE = 5.0


class TransferError(BinderAutorunError):
    """A transfer failed; the message is one sentence and names the path."""


# -- paths -------------------------------------------------------------------


def check_name(name: Any) -> str:
    """A single entry name from a (possibly hostile) listing: no separators, no ``..``."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise TransferError(f"Refused the remote entry {name!r}: a name in a listing must be one plain path component.")
    return name


def check_relative(path: str) -> tuple[str, ...]:
    """The components of a relative POSIX path that stays inside its folder (no ``..``, not absolute)."""
    if not isinstance(path, str) or not path or "\x00" in path or "\\" in path or path.startswith("/") or _drive(path):
        raise TransferError(f"Refused {path!r}: only relative paths inside the destination folder are written.")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if not parts or any(part == ".." for part in parts):
        raise TransferError(f"Refused {path!r}: only relative paths inside the destination folder are written.")
    return parts


def _drive(path: str) -> bool:
    return len(path) >= 2 and path[1] == ":" and path[0].isalpha()


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def safe_local_target(root: Path, relative: str, create: bool = True) -> Path:
    """Where ``relative`` lands under ``root``, refusing anything that would write outside it.

    The folders on the way are created (``create``) one by one, and each must
    resolve inside ``root``: a local symlink pointing out of the tree is refused,
    not followed. The final name itself may be a symlink: the rename replaces
    the link, never its target.
    """
    parts = check_relative(relative)
    real_root = os.path.realpath(root)
    folder = real_root
    for part in parts[:-1]:
        folder = os.path.join(folder, part)
        if create and not os.path.lexists(folder):
            os.mkdir(folder)
        real = os.path.realpath(folder)
        if not _inside(real, real_root):
            raise TransferError(f"Refused to write {relative!r}: {part!r} is a symlink pointing outside {root}.")
        if os.path.lexists(folder) and not os.path.isdir(real):
            raise TransferError(f"Cannot write {relative!r}: {part!r} exists and is not a folder.")
        folder = real
    return Path(folder) / parts[-1]


def destination(source: str) -> str:
    """The relative path a source keeps at the other end: as typed if it is a plain
    relative path, else its last component (an absolute path or one with ``..``)."""
    text = source.replace(os.sep, "/").rstrip("/")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts:
        return ""
    if text.startswith("/") or _drive(text) or ".." in parts:
        return parts[-1] if parts[-1] != ".." else ""
    return "/".join(parts)


def has_magic(pattern: str) -> bool:
    return globlib.has_magic(pattern)


def human(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


# -- local hashing (cached by size and mtime) ---------------------------------

_hash_cache: dict[tuple[str, int, int], str] = {}


def local_digest(path: Path, algorithm: str = "sha256") -> str:
    """The hash of a local file, streamed (cached by path, size and mtime for sha256)."""
    info = path.stat()
    key = (str(path), info.st_size, info.st_mtime_ns)
    if algorithm == "sha256" and key in _hash_cache:
        return _hash_cache[key]
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    if algorithm == "sha256":
        if len(_hash_cache) > 10000:
            _hash_cache.clear()
        _hash_cache[key] = digest.hexdigest()
    return digest.hexdigest()


# -- the transport interface ---------------------------------------------------


@dataclass
class Entry:
    """A remote file or folder (``path`` relative to the transport's working directory)."""

    name: str
    kind: str  # "file" | "dir" | "other"
    size: int = 0
    #: folder identity (to see a symlink loop); None when the transport cannot tell
    identity: Any = None
    #: a symlink whose target leaves the folder being pulled (kernel transport only)
    link_target: str | None = None


class RemoteWriter(ABC):
    """A file being written remotely under a temporary name."""

    @abstractmethod
    def write(self, data: bytes) -> None: ...

    @abstractmethod
    def commit(self) -> None:
        """Move the finished file to its final name."""

    @abstractmethod
    def abort(self) -> None:
        """Remove the temporary file (best effort)."""


class Transport(ABC):
    """Remote file operations, paths relative to the remote kernel's working directory."""

    name = "?"

    @abstractmethod
    def stat(self, path: str) -> Entry | None: ...

    @abstractmethod
    def listdir(self, path: str) -> list[Entry]: ...

    @abstractmethod
    def digest(self, path: str) -> tuple[str, str] | None:
        """(algorithm, hex digest) of a remote file, or None when it cannot be had cheaply."""

    @abstractmethod
    def read(self, path: str, size: int) -> Iterator[bytes]: ...

    @abstractmethod
    def writer(self, path: str, size: int) -> RemoteWriter: ...

    @abstractmethod
    def makedirs(self, path: str) -> None: ...

    def realpath(self, path: str) -> str | None:
        """The remote real path (to see symlinks leaving a tree), None when unknown."""
        return None

    def digests(self, paths: list[str]) -> dict[str, tuple[str, str] | None]:
        """:meth:`digest` of several files (transports that can ask once do)."""
        return {path: self.digest(path) for path in paths}

    def beside(self, path: str) -> bool:
        """Whether the file ``path`` (within one chunk) may move with others: over :meth:`twin`s
        side by side, or in one request where the transport batches."""
        return False

    #: bytes of small files one request carries together (0: one request per file)
    batch_bytes = 0

    def put_many(self, files: list[tuple[str, bytes]]) -> tuple[int, BaseException | None]:
        """Write small files in one request, each aside and then renamed: how many landed, and
        what stopped the rest (a failure or an interrupt) to raise once they are counted."""
        raise NotImplementedError

    def get_many(self, paths: list[str]) -> tuple[list[bytes], BaseException | None]:
        """Read small files in one request: their bytes in order, and what stopped the rest."""
        raise NotImplementedError

    def twin(self) -> Transport:
        """The same transport over a connection of its own (a thread's)."""
        raise NotImplementedError

    def close(self) -> None:
        """Free what a :meth:`twin` opened."""


# -- contents API ---------------------------------------------------------------


class ContentsTransport(Transport):
    """The server's contents API (uploads) and ``files/`` handler (streamed downloads).

    ``base`` is the kernel's working directory relative to the server root;
    ``fallback`` (a :class:`KernelTransport`) carries hidden files, which the
    server refuses.
    """

    name = "contents API"

    def __init__(self, server: Any, base: str = "", fallback: Transport | None = None, chunk: int = CHUNK) -> None:
        self.server = server
        self.base = base.strip("/")
        self.fallback = fallback
        self.chunk = chunk
        self._made: set[str] = set()

    def api_path(self, path: str) -> str:
        joined = posixpath.normpath(posixpath.join(self.base, path)) if path not in ("", ".") else (self.base or ".")
        if joined == "." or joined == "":
            return ""
        if joined.startswith("../") or joined == ".." or joined.startswith("/"):
            raise TransferError(f"{path!r} is outside the remote server's root folder, which its contents API cannot reach.")
        return joined

    def _hidden(self, path: str) -> bool:
        return any(part.startswith(".") for part in self.api_path(path).split("/") if part)

    def _http(self, method: str, url_path: str, what: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", max(60.0, self.server.timeout))
        try:
            response = self.server.http.request(method, self.server.url + url_path, **kwargs)
        except requests.exceptions.Timeout:
            raise ConnectionLost(f"The Jupyter server at {self.server.url} stopped answering while {what}.") from None
        except requests.exceptions.RequestException:
            raise ServerUnreachable(f"The Jupyter server at {self.server.url} went away while {what}.") from None
        if response.status_code not in expect:
            raise TransferError(_remote_failure(response, what, self.server.url))
        return response

    def _contents(self, path: str) -> str:
        return "api/contents/" + quote(self.api_path(path))

    # With a Python kernel that sees the server's files (``fallback``), listings, lookups and
    # hashes come from the kernel: it sees hidden files and symlinks, and hashes a file
    # streaming (the server's ``hash=1`` reads the whole file into memory). Bytes still
    # move through the server's API.

    def stat(self, path: str) -> Entry | None:
        if self.fallback is not None:
            return self.fallback.stat(path)
        response = self._http("GET", self._contents(path), f"looking up {path!r}", expect=(200, 404), params={"content": "0"})
        if response.status_code == 404:
            return None
        return _entry(response.json(), posixpath.basename(self.api_path(path)) or ".")

    def listdir(self, path: str) -> list[Entry]:
        if self.fallback is not None:
            return self.fallback.listdir(path)
        model = self._http("GET", self._contents(path), f"listing {path!r}", params={"content": "1"}).json()
        if model.get("type") != "directory" or not isinstance(model.get("content"), list):
            raise TransferError(f"The server's listing of {path!r} is not a folder listing; nothing was written.")
        entries = []
        signature = []
        for item in model["content"]:
            if isinstance(item, dict):
                entries.append(_entry(item, check_name(item.get("name"))))
                signature.append((entries[-1].name, entries[-1].size, str(item.get("last_modified"))))
        # the server lstat()s: a folder reached through a symlink loop lists the very same children
        self._last_identity = tuple(sorted(signature))
        return entries

    def identity(self, path: str, entries: list[Entry]) -> Any:
        """What a folder looks like (its children's names, sizes and times): a symlink loop shows the same as an ancestor."""
        if self.fallback is not None:
            return self.fallback.identity(path, entries)  # type: ignore[attr-defined]
        return getattr(self, "_last_identity", None)

    def realpath(self, path: str) -> str | None:
        return self.fallback.realpath(path) if self.fallback is not None else None

    def digest(self, path: str) -> tuple[str, str] | None:
        if self.fallback is not None:
            return self.fallback.digest(path)
        response = self._http("GET", self._contents(path), f"hashing {path!r}", expect=(200, 400, 404),
                              params={"content": "0", "hash": "1"})
        if response.status_code != 200:
            return None
        model = response.json()
        if model.get("hash") and model.get("hash_algorithm") in hashlib.algorithms_available:
            return str(model["hash_algorithm"]), str(model["hash"])
        return None

    def read(self, path: str, size: int) -> Iterator[bytes]:
        if self._hidden(path):
            if self.fallback is None:
                raise TransferError(_hidden_sentence(path))
            yield from self.fallback.read(path, size)
            return
        what = f"downloading {path!r}"
        response = self._http("GET", "files/" + quote(self.api_path(path)), what, stream=True)
        try:
            for block in response.iter_content(self.chunk):
                yield block
        except requests.exceptions.RequestException:
            raise ServerUnreachable(f"The Jupyter server at {self.server.url} went away while {what}.") from None
        finally:
            response.close()

    def writer(self, path: str, size: int) -> RemoteWriter:
        if self._hidden(path):
            if self.fallback is None:
                raise TransferError(_hidden_sentence(path))
            return self.fallback.writer(path, size)
        return _ContentsWriter(self, path, size)

    def digests(self, paths: list[str]) -> dict[str, tuple[str, str] | None]:
        if self.fallback is not None:
            return self.fallback.digests(paths)
        return super().digests(paths)

    def beside(self, path: str) -> bool:
        return not self._hidden(path)  # hidden files go through the kernel, one at a time

    def twin(self) -> Transport:
        twin = ContentsTransport(JupyterServer(self.server.info, timeout=self.server.timeout), self.base, None, self.chunk)
        twin._made = self._made
        return twin

    def close(self) -> None:
        self.server.close()

    def makedirs(self, path: str) -> None:
        if self._hidden(path) and self.fallback is not None:
            self.fallback.makedirs(path)
            return
        api = self.api_path(path)
        done = ""
        for part in [p for p in api.split("/") if p]:
            done = f"{done}/{part}" if done else part
            if done in self._made:
                continue
            response = self._http("GET", "api/contents/" + quote(done), f"looking up {done!r}", expect=(200, 404),
                                  params={"content": "0"})
            if response.status_code == 404:
                self._http("PUT", "api/contents/" + quote(done), f"creating the folder {done!r}", expect=(200, 201),
                           json={"type": "directory"})
            elif response.json().get("type") != "directory":
                raise TransferError(f"Cannot create the remote folder {done!r}: a file has that name.")
            self._made.add(done)

    def delete(self, api_path: str) -> None:
        try:
            self._http("DELETE", "api/contents/" + quote(api_path), f"removing {api_path!r}", expect=(200, 204, 404))
        except BinderAutorunError:
            log.info("could not remove %s", api_path)


def _entry(model: dict[str, Any], name: str) -> Entry:
    kind = {"directory": "dir", "file": "file", "notebook": "file"}.get(str(model.get("type")), "other")
    size = model.get("size")
    return Entry(name, kind, int(size) if isinstance(size, int) and size >= 0 else -1)


def _hidden_sentence(path: str) -> str:
    return (f"{path!r} is hidden (a name starting with '.'), which jupyter_server refuses over its contents API; "
            "it can only travel over the kernel channel of a Python kernel (or set ContentsManager.allow_hidden=True on the server).")


def _remote_failure(response: requests.Response, what: str, url: str) -> str:
    try:
        message = str(response.json().get("message") or response.reason)
    except ValueError:
        message = str(response.reason)
    code = response.status_code
    lowered = message.lower()
    if "no space left" in lowered or "errno 28" in lowered or "file too large" in lowered or "errno 27" in lowered:
        return f"The remote disk is full (or the file too large for it) while {what}; no partial file was left under the final name."
    if code == 403 or "permission denied" in lowered:
        return f"The server refused {what}: permission denied there."
    if code == 404:
        return f"Failed {what}: no such file or folder on the server."
    if code == 400 and "hidden" in lowered:
        return f"Failed {what}: jupyter_server refuses hidden files over its contents API."
    if code in (401,):
        return f"The Jupyter server at {url} rejected the token while {what}."
    if code in (424, 502, 503):
        return f"The Jupyter server at {url} is gone (HTTP {code}) while {what}."
    return f"The Jupyter server at {url} failed {what} (HTTP {code}: {message.rstrip('.')})."


class _ContentsWriter(RemoteWriter):
    """One PUT (atomic on the server) for a file within one chunk; else chunks into a
    temporary name, renamed by PATCH once complete."""

    def __init__(self, transport: ContentsTransport, path: str, size: int) -> None:
        self.t = transport
        self.path = path
        self.final = transport.api_path(path)
        self.single = size <= transport.chunk
        folder, name = posixpath.split(self.final)
        self.temp = posixpath.join(folder, f"{name}{PARTIAL}{secrets.token_hex(4)}")
        self.buffer = bytearray()
        self.chunk_no = 0
        self.pending: bytes | None = None

    def _put(self, target: str, data: bytes, chunk: int | None) -> None:
        head = b'{"type": "file", "format": "base64", ' + (b'"chunk": %d, ' % chunk if chunk is not None else b"")
        body = head + b'"content": "' + base64.b64encode(data) + b'"}'
        self.t._http("PUT", "api/contents/" + quote(target), f"uploading {self.final!r}", expect=(200, 201),
                     data=body, headers={"Content-Type": "application/json"})

    def write(self, data: bytes) -> None:
        if self.single:
            self.buffer += data
            return
        # hold one block back: the last chunk must be sent as -1
        if self.pending is not None:
            self.chunk_no += 1
            self._put(self.temp, self.pending, self.chunk_no)
        self.pending = bytes(data)

    def commit(self) -> None:
        if self.single:
            self._put(self.final, bytes(self.buffer), None)
            return
        self._put(self.temp, self.pending or b"", -1 if self.chunk_no else 1)
        if isinstance(self.t.fallback, KernelTransport):  # the kernel sees these files: one atomic os.replace
            self.t.fallback._call("commit", posixpath.join(posixpath.dirname(self.path), posixpath.basename(self.temp)),
                                  self.path, what=f"moving the uploaded {self.path!r} into place")
            return
        what = f"renaming the uploaded {self.final!r} into place"
        response = self.t._http("PATCH", "api/contents/" + quote(self.temp), what, expect=(200, 409),
                                json={"path": self.final})
        if response.status_code == 409:  # PATCH never overwrites: move the old file aside first
            old = f"{self.final}{PARTIAL}old-{secrets.token_hex(4)}"
            self.t._http("PATCH", "api/contents/" + quote(self.final), what, json={"path": old})
            self.t._http("PATCH", "api/contents/" + quote(self.temp), what, json={"path": self.final})
            self.t.delete(old)

    def abort(self) -> None:
        if not self.single and (self.chunk_no or self.pending is not None):
            self.t.delete(self.temp)


# -- kernel channel ---------------------------------------------------------------

#: runs once in the remote Python kernel: a private module with the file operations (and sync's
#: change detection: the same :mod:`~binder_autorun.watch` module as on the local side)
REMOTE_HELPER = f"_WATCH_SOURCE = {inspect.getsource(watch)!r}\n" + r'''
import base64 as _b64, hashlib as _hl, json as _json, os as _os, secrets as _sec, sys as _sys, time as _time, types as _types
_m = _types.ModuleType("_binder_autorun_xfer")
def _kind(p):
    if _os.path.isdir(p): return "dir"
    if _os.path.isfile(p): return "file"
    return "other" if _os.path.lexists(p) else None
def stat(p):
    k = _kind(p)
    if k is None: return _json.dumps(None)
    return _json.dumps({"kind": k, "size": _os.path.getsize(p) if k == "file" else 0, "real": _os.path.realpath(p), "cwd": _os.getcwd()})
def listdir(p):
    out = []
    with _os.scandir(p) as it:
        for e in it:
            k = _kind(e.path)
            if k is None: continue
            out.append({"name": e.name, "kind": k, "size": _os.path.getsize(e.path) if k == "file" else 0,
                        "real": _os.path.realpath(e.path) if e.is_symlink() else None})
    st = _os.stat(p)
    return _json.dumps({"entries": out, "id": [st.st_dev, st.st_ino]})
def digest(p):
    h = _hl.sha256()
    with open(p, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b: break
            h.update(b)
    return h.hexdigest()
def digests(ps):
    out = {}
    for p in ps:
        try: out[p] = digest(p)
        except OSError: out[p] = None
    return _json.dumps(out)
def read(p, offset, n):
    with open(p, "rb") as f:
        f.seek(offset)
        return _b64.b64encode(f.read(n)).decode("ascii")
def makedirs(p):
    _os.makedirs(p, exist_ok=True)
    return "ok"
def open_tmp(p):
    d, n = _os.path.split(p)
    t = _os.path.join(d, "." + n + ".binder-partial-" + _sec.token_hex(4))
    try:
        _os.close(_os.open(t, _os.O_WRONLY | _os.O_CREAT | _os.O_EXCL, 0o644))
    except BaseException:  # an interrupt after the file exists: the caller never learns its name
        abort(t)
        raise
    return t
def append(t, data):
    with open(t, "ab") as f:
        f.write(_b64.b64decode(data))
    return "ok"
def commit(t, p):
    if _os.path.isdir(p): raise IsADirectoryError(p)
    _os.replace(t, p)
    return "ok"
def _failed(e):
    return [type(e).__name__, str(e)]
def put_many(files):
    done = 0
    for p, data in files:
        t = None
        try:
            t = open_tmp(p)
            append(t, data)
            commit(t, p)
        except BaseException as e:  # an interrupt too: what landed is counted
            if t is not None and _os.path.exists(t): abort(t)
            elif t is not None: done += 1  # renamed into place just before the interrupt
            return _json.dumps({"done": done, "error": _failed(e)})
        done += 1
    return _json.dumps({"done": done, "error": None})
def read_many(ps):
    out = []
    for p in ps:
        try:
            with open(p, "rb") as f:
                out.append(_b64.b64encode(f.read()).decode("ascii"))
        except BaseException as e:
            return _json.dumps({"files": out, "error": _failed(e)})
    return _json.dumps({"files": out, "error": None})
def abort(t):
    try: _os.remove(t)
    except OSError: pass
    return "ok"
def cwd_under(marker):
    d = _os.getcwd(); parts = []
    while True:
        if _os.path.exists(_os.path.join(d, marker)):
            _os.remove(_os.path.join(d, marker))
            return _json.dumps("/".join(reversed(parts)))
        up = _os.path.dirname(d)
        if up == d: return _json.dumps(None)
        parts.append(_os.path.basename(d)); d = up
_watch = _types.ModuleType("_binder_autorun_watch")
exec(_WATCH_SOURCE, _watch.__dict__)
_trees = {}
def _pushed(p, h):
    try: return digest(p) == h
    except OSError: return False
def scan_changes(key, root, skip, verify, since=None):
    """Files under root changed since the last call with this key, by size; the watch stays here, so
    replies are small. A new key reports nothing, or with since (the kernel restarted and lost the
    last watch) the files modified after that time. Our own pushes (verify: their sha256) are left out."""
    now = _time.time_ns()
    tree = _trees.get(key)
    if tree is None:
        tree = _trees[key] = _watch.Tree(root or ".", skip)
        changed = {r: s for r, s in tree.changes().items() if since is not None and s[1] >= since - 10 ** 9}
    else:
        changed = tree.changes()
    out = {r: s[0] for r, s in changed.items() if not (r in verify and _pushed(_os.path.join(tree.root, r), verify[r]))}
    return _json.dumps({"changed": out, "count": len(tree.files), "now": now, "rescans": tree.why_rescan})
def scan_stop(key):
    tree = _trees.pop(key, None)
    if tree is not None: tree.close()
    return "ok"
for _f in (stat, listdir, digest, digests, read, makedirs, open_tmp, append, commit, put_many, read_many, abort, cwd_under, scan_changes, scan_stop):
    setattr(_m, _f.__name__, _f)
_m.VERSION = globals().get("VERSION")
_sys.modules["_binder_autorun_xfer"] = _m
del _f, _m
'''

_REF = "__import__('sys').modules['_binder_autorun_xfer']"


class KernelCallError(BinderAutorunError):
    """A helper call failed in the remote kernel (``ename`` says how)."""

    def __init__(self, ename: str, evalue: str) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue = ename, evalue


class KernelHelper:
    """Calls helper functions in a remote Python kernel through silent executes.

    The data travels in ``user_expressions`` (evaluated with ``eval``, so a big
    base64 literal skips IPython's input transformers); results come back as the
    ``text/plain`` repr of a str, read with :func:`ast.literal_eval`.
    """

    def __init__(self, session: Any, module: str = "_binder_autorun_xfer", source: str = REMOTE_HELPER) -> None:
        self.session = session
        self.module, self.source = module, source
        self._installed = False

    def check_python(self) -> None:
        """One sentence unless the remote kernel is a Python (IPython) kernel."""
        language = self.session.kernel_info.get("language_info", {}).get("name", "unknown")
        if self.session.implementation != "ipython" and language != "python":
            raise TransferError(f"This needs a Python remote kernel (the transfer helper is Python); this one runs {language}.")

    def call(self, function: str, *args: Any, what: str = "") -> Any:
        """Call ``function(*args)`` remotely; return its str result (a Ctrl-C meanwhile is raised after it)."""
        result, interrupted = self.call_through(function, *args)
        if interrupted:
            raise KeyboardInterrupt
        return result

    def call_through(self, function: str, *args: Any) -> tuple[Any, bool]:
        """Call ``function(*args)`` remotely: its str result, and whether a Ctrl-C came meanwhile
        (the remote kernel was interrupted, and the call may have ended early or whole)."""
        expression = f"__import__('sys').modules[{self.module!r}].{function}({', '.join(repr(a) for a in args)})"
        if not self._installed:
            self.check_python()
        # install once per kernel (and version): the module keeps state, e.g. sync's remote snapshot
        version = hashlib.sha256(self.source.encode()).hexdigest()[:16]
        install = (f"if getattr(__import__('sys').modules.get({self.module!r}), 'VERSION', None) != {version!r}:\n"
                   f"    exec({self.source!r}, {{'VERSION': {version!r}}})")
        reply = self.session.execute("" if self._installed else install, None, silent=True, store_history=False,
                                     user_expressions={"r": expression})
        result = self._check(reply, "r")
        if result is None:  # the helper is gone (the remote kernel restarted): install it and retry once
            reply = self.session.execute(install, None, silent=True, store_history=False, user_expressions={"r": expression})
            result = self._check(reply, "r")
            if result is None:
                raise TransferError("Could not install the transfer helper in the remote kernel.")
        self._installed = True
        return result, bool(reply.get("interrupted"))

    def _check(self, reply: dict[str, Any], key: str) -> Any:
        if reply.get("status") != "ok" and reply.get("ename") == "KeyboardInterrupt":
            raise KeyboardInterrupt  # interrupted before the call could answer: it tells nothing
        if reply.get("status") != "ok":
            raise KernelCallError(str(reply.get("ename", "Error")), str(reply.get("evalue", "")))
        value = (reply.get("user_expressions") or {}).get(key) or {}
        if value.get("status") != "ok":
            if value.get("ename") == "KeyError" and self.module in str(value.get("evalue", "")):
                return None
            raise KernelCallError(str(value.get("ename", "Error")), str(value.get("evalue", "")))
        text = value.get("data", {}).get("text/plain", "")
        return ast.literal_eval(text)


class KernelTransport(Transport):
    """Files through the websocket of a Python kernel (base64 chunks in silent executes).

    Paths are relative to the kernel's working directory. It sees what the
    contents API cannot: hidden files and symlinks. One kernel serves one request at
    a time, so small files do not move side by side but together: up to a chunk's
    worth in one execute (a round trip each would dominate on a far gateway).
    """

    name = "kernel channel"

    def __init__(self, session: Any, chunk: int = KERNEL_CHUNK) -> None:
        self.helper = KernelHelper(session)
        self.chunk = chunk
        self.batch_bytes = chunk

    def _call(self, function: str, *args: Any, what: str) -> str:
        result, interrupted = self._call_through(function, *args, what=what)
        if interrupted:
            raise KeyboardInterrupt
        return result

    def _call_through(self, function: str, *args: Any, what: str) -> tuple[str, bool]:
        try:
            return self.helper.call_through(function, *args)
        except KernelCallError as exc:
            raise TransferError(_kernel_failure(exc, what)) from None

    def stat(self, path: str) -> Entry | None:
        info = json.loads(self._call("stat", path or ".", what=f"looking up {path!r}"))
        if info is None:
            return None
        return Entry(posixpath.basename(path) or ".", info["kind"], int(info["size"]))

    def realpath(self, path: str) -> str | None:
        info = json.loads(self._call("stat", path or ".", what=f"looking up {path!r}"))
        return None if info is None else str(info["real"])

    def listdir(self, path: str) -> list[Entry]:
        listing = json.loads(self._call("listdir", path or ".", what=f"listing {path!r}"))
        self._last_identity = tuple(listing.get("id") or ())
        return [Entry(check_name(item["name"]), item["kind"], int(item["size"]), link_target=item.get("real"))
                for item in listing["entries"]]

    def identity(self, path: str, entries: list[Entry]) -> Any:
        return getattr(self, "_last_identity", None)

    def digest(self, path: str) -> tuple[str, str] | None:
        return "sha256", self._call("digest", path, what=f"hashing {path!r}")

    def digests(self, paths: list[str]) -> dict[str, tuple[str, str] | None]:
        if not paths:
            return {}
        found = json.loads(self._call("digests", paths, what=f"hashing {len(paths)} files"))
        return {path: ("sha256", found[path]) if found.get(path) else None for path in paths}

    def read(self, path: str, size: int) -> Iterator[bytes]:
        offset = 0
        while True:
            block = base64.b64decode(self._call("read", path, offset, self.chunk, what=f"downloading {path!r}"))
            if not block:
                return
            offset += len(block)
            yield block
            if len(block) < self.chunk:
                return

    def writer(self, path: str, size: int) -> RemoteWriter:
        return _KernelWriter(self, path)

    def beside(self, path: str) -> bool:
        return True

    def put_many(self, files: list[tuple[str, bytes]]) -> tuple[int, BaseException | None]:
        encoded = [(path, base64.b64encode(data).decode("ascii")) for path, data in files]
        answer, interrupted = self._call_through("put_many", encoded, what=f"uploading {len(files)} files")
        result = json.loads(answer)
        return result["done"], _stopped(result, interrupted, _doing("uploading", [path for path, _ in files], result["done"]))

    def get_many(self, paths: list[str]) -> tuple[list[bytes], BaseException | None]:
        answer, interrupted = self._call_through("read_many", paths, what=f"downloading {len(paths)} files")
        result = json.loads(answer)
        blobs = [base64.b64decode(text) for text in result["files"]]
        return blobs, _stopped(result, interrupted, _doing("downloading", paths, len(blobs)))


    def makedirs(self, path: str) -> None:
        if path not in ("", "."):
            self._call("makedirs", path, what=f"creating the folder {path!r}")


def _doing(verb: str, paths: list[str], index: int) -> str:
    """What a batch was doing when it stopped at ``index`` (past the end: an interrupt after the last file)."""
    return f"{verb} {paths[index]!r}" if index < len(paths) else f"{verb} {len(paths)} files"


def _stopped(result: dict[str, Any], interrupted: bool, what: str) -> BaseException | None:
    """What stopped a batch in the kernel: an interrupt (there or here), a failure, or nothing."""
    if interrupted or (result["error"] and result["error"][0] == "KeyboardInterrupt"):
        return KeyboardInterrupt()
    if result["error"]:
        return TransferError(_kernel_failure(KernelCallError(*result["error"]), what))
    return None


def _kernel_failure(exc: KernelCallError, what: str) -> str:
    text = f"{exc.ename}: {exc.evalue}"
    if exc.ename == "PermissionError":
        return f"The remote kernel was refused {what}: permission denied there."
    if exc.ename in ("FileNotFoundError", "NotADirectoryError"):
        return f"Failed {what}: no such file or folder in the remote kernel's folder."
    if "No space left" in text or "Errno 28" in text or "Errno 27" in text:
        return f"The remote disk is full (or the file too large for it) while {what}; no partial file was left under the final name."
    if exc.ename == "IsADirectoryError":
        return f"Failed {what}: a remote folder has that name."
    return f"The remote kernel failed {what} ({text})."


class _KernelWriter(RemoteWriter):
    def __init__(self, transport: KernelTransport, path: str) -> None:
        self.t, self.path = transport, path
        self.temp = transport._call("open_tmp", path, what=f"uploading {path!r}")

    def write(self, data: bytes) -> None:
        for start in range(0, len(data), self.t.chunk):
            piece = base64.b64encode(data[start:start + self.t.chunk]).decode("ascii")
            self.t._call("append", self.temp, piece, what=f"uploading {self.path!r}")

    def commit(self) -> None:
        self.t._call("commit", self.temp, self.path, what=f"moving the uploaded {self.path!r} into place")

    def abort(self) -> None:
        try:
            self.t.helper.call("abort", self.temp)
        except BaseException:
            log.info("could not remove the partial remote file %s", self.temp)


def kernel_base(server: Any, helper: KernelHelper) -> str | None:
    """The kernel's working directory relative to the server root (via a marker file the
    kernel looks for upwards), or None when the kernel does not see the server's files."""
    marker = f"binder-autorun-probe-{secrets.token_hex(6)}.tmp"
    ContentsTransport(server)._http("PUT", "api/contents/" + marker, "probing the kernel's folder", expect=(200, 201),
                                    json={"type": "file", "format": "text", "content": ""})
    try:
        found = json.loads(helper.call("cwd_under", marker))
    except BaseException:
        ContentsTransport(server).delete(marker)
        raise
    if found is None:
        ContentsTransport(server).delete(marker)
        return None
    return str(found)


# -- the transfer engine -------------------------------------------------------------


class Progress:
    """A line updating in place (carriage return) once a transfer takes more than ``after`` seconds."""

    def __init__(self, verb: str, out: IO[str], after: float = 1.0, every: float = 0.25) -> None:
        self.verb, self.out, self.after, self.every = verb, out, after, every
        self.started = time.monotonic()
        self.shown_at = 0.0
        self.width = 0
        self.total = 0
        self.done = 0

    def update(self, done: int, current: str) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.started < self.after or now - self.shown_at < self.every:
            return
        self.shown_at = now
        rate = done / max(now - self.started, 1e-6)
        share = f"{100 * done / self.total:3.0f}% " if self.total else ""
        line = f"{self.verb} {share}{human(done)}/{human(self.total)} at {human(rate)}/s: {current}"[:110]
        self.out.write("\r" + line.ljust(self.width))
        self.out.flush()
        self.width = len(line)

    def finish(self, summary: str) -> None:
        prefix = "\r" if self.width else ""
        self.out.write(prefix + summary.ljust(self.width) + "\n")
        self.out.flush()


@dataclass
class Summary:
    """What a transfer did."""

    verb: str
    files: int = 0
    bytes: int = 0
    skipped: int = 0
    seconds: float = 0.0
    notices: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    def line(self) -> str:
        files = f"{self.files} file{'s' if self.files != 1 else ''}"
        return (f"binder_autorun: {self.verb} {files} ({human(self.bytes)}), {self.skipped} skipped as unchanged, "
                f"in {self.seconds:.2f} s")


@dataclass
class _Item:
    local: Path
    remote: str
    size: int


class Transfer:
    """Push and pull files between ``local_root`` and the remote working directory over ``transport``."""

    def __init__(self, transport: Transport, local_root: str | os.PathLike[str] | None = None,
                 out: IO[str] | None = None, quiet: bool = False, max_size: int | None = None, workers: int = WORKERS) -> None:
        self.transport = transport
        self.workers = workers
        self.local_root = Path(local_root or os.getcwd())
        self.out = out if out is not None else sys.stdout
        self.quiet = quiet
        self.max_size = max_size

    # -- push ------------------------------------------------------------------------

    def push(self, sources: list[str], to: str = "") -> Summary:
        """Copy local files, folders and globs to the remote folder ``to`` (default: the kernel's)."""
        started = time.monotonic()
        summary = Summary("pushed")
        items = self._local_items(sources, to, summary)
        self._run(items, summary, self._push_one, self._push_small, started, "pushing")
        return summary

    def _local_items(self, sources: list[str], to: str, summary: Summary) -> list[_Item]:
        items: list[_Item] = []
        target = to.strip("/") if to else ""
        for source in sources:
            expanded = os.path.expanduser(source)
            base = expanded if os.path.isabs(expanded) else os.path.join(self.local_root, expanded)
            if has_magic(source):
                matches = sorted(globlib.glob(base, recursive=True))
                if not matches:
                    raise TransferError(f"No local file or folder matches {source!r}.")
                for match in matches:
                    rel = os.path.relpath(match, self.local_root)
                    self._add_local(Path(match), destination(rel), target, items, summary)
            else:
                if not os.path.lexists(base):
                    raise TransferError(f"There is no local file or folder {source!r} (in {self.local_root}).")
                if not os.path.exists(base):
                    raise TransferError(f"The local {source!r} is a broken symlink.")
                self._add_local(Path(base), destination(source), target, items, summary)
        return items

    def _add_local(self, path: Path, rel: str, target: str, items: list[_Item], summary: Summary) -> None:
        remote_rel = posixpath.join(target, rel) if target else rel
        if path.is_dir():
            root = os.path.realpath(path)
            self._walk_local(path, root, remote_rel, items, summary)
        elif path.is_file():
            if not rel:
                raise TransferError(f"Cannot tell where {str(path)!r} goes; give a path with a file name.")
            self._add_file(path, remote_rel, items, summary)
        else:
            summary.notices.append(f"skipped {path}: not a regular file or folder")

    def _add_file(self, path: Path, remote: str, items: list[_Item], summary: Summary) -> None:
        try:
            size = path.stat().st_size
        except PermissionError:
            raise TransferError(f"Cannot read the local {str(path)!r}: permission denied.") from None
        if self.max_size is not None and size > self.max_size:
            summary.notices.append(f"skipped {remote} ({human(size)}): over the size limit of {human(self.max_size)}")
            return
        items.append(_Item(path, remote, size))

    def _walk_local(self, folder: Path, root: str, remote: str, items: list[_Item], summary: Summary) -> None:
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except PermissionError:
            raise TransferError(f"Cannot read the local folder {str(folder)!r}: permission denied.") from None
        if not entries and remote:
            items.append(_Item(folder, remote, -1))  # an empty folder is created remotely
        for entry in entries:
            path = Path(entry.path)
            child = posixpath.join(remote, entry.name) if remote else entry.name
            if entry.is_dir(follow_symlinks=False) and entry.name in SKIP_DIRS:
                continue
            if entry.is_symlink():
                real = os.path.realpath(entry.path)
                if not _inside(real, root):
                    summary.notices.append(f"skipped the symlink {child} (it points outside the pushed folder)")
                    continue
                if os.path.isdir(real):
                    summary.notices.append(f"skipped the folder symlink {child} (folder links are not followed)")
                    continue
            if entry.is_dir(follow_symlinks=False):
                self._walk_local(path, root, child, items, summary)
            elif entry.is_file():
                self._add_file(path, child, items, summary)

    def _push_one(self, item: _Item, progress: Progress, summary: Summary) -> None:
        if item.size < 0:
            self.transport.makedirs(item.remote)
            return
        existing = self._push_target(item)
        if existing is not None and existing.size == item.size and _same_content(item.local, self.transport.digest(item.remote)):
            summary.skipped += 1
            progress.total -= item.size
            return
        self._upload(self.transport, item, progress)
        summary.files += 1
        summary.bytes += item.size
        summary.paths.append(item.remote)

    def _push_small(self, items: list[_Item], summary: Summary, progress: Progress) -> None:
        """Small files: the unchanged found with one digest request, the rest uploaded side by side."""
        same_size = [item for item in items if (found := self._push_target(item)) is not None and found.size == item.size]
        digests = self.transport.digests([item.remote for item in same_size])
        unchanged = {item.remote for item in same_size if _same_content(item.local, digests.get(item.remote))}
        summary.skipped += len(unchanged)
        progress.total -= sum(item.size for item in items if item.remote in unchanged)

        todo = [item for item in items if item.remote not in unchanged]
        if self.transport.batch_bytes:
            def put(batch: list[_Item]) -> tuple[list[tuple[int, str]], BaseException | None]:
                files = [(item.remote, _read_small(item.local)) for item in batch]
                landed, failure = self.transport.put_many(files)
                return [(len(data), remote) for remote, data in files[:landed]], failure

            self._in_batches(todo, put, summary, progress)
            return

        def upload(transport: Transport, item: _Item) -> tuple[int, str]:
            self._upload(transport, item, _SILENT)
            return item.size, item.remote

        self._in_parallel(todo, upload, summary, progress)

    def _push_target(self, item: _Item) -> Entry | None:
        """The remote entry ``item`` replaces, if any (its folder is made when missing)."""
        parent = posixpath.dirname(item.remote)
        listing = self._remote_listing(parent)
        existing = listing.get(posixpath.basename(item.remote)) if listing is not None else None
        if existing is not None and existing.kind == "dir":
            raise TransferError(f"Cannot push {item.remote!r}: a remote folder has that name.")
        if listing is None and parent:
            self.transport.makedirs(parent)
            self._listings[parent] = {}
        return existing

    def _upload(self, transport: Transport, item: _Item, progress: Progress) -> None:
        writer = transport.writer(item.remote, item.size)
        try:
            try:
                handle = open(item.local, "rb")
            except PermissionError:
                raise TransferError(f"Cannot read the local {str(item.local)!r}: permission denied.") from None
            with handle:
                done = progress.done
                while block := handle.read(getattr(transport, "chunk", CHUNK)):
                    writer.write(block)
                    done += len(block)
                    progress.update(done, item.remote)
            writer.commit()
        except BaseException:
            writer.abort()
            raise

    def _remote_listing(self, folder: str) -> dict[str, Entry] | None:
        """The remote folder's entries by name (cached per transfer), None if it does not exist."""
        if folder in self._listings:
            return self._listings[folder]
        entry = self.transport.stat(folder) if folder else Entry(".", "dir")
        if entry is None:
            listing = None
        elif entry.kind != "dir":
            raise TransferError(f"Cannot push into {folder!r}: it is a remote file, not a folder.")
        else:
            listing = {e.name: e for e in self.transport.listdir(folder)}
        self._listings[folder] = listing
        return listing

    # -- pull ------------------------------------------------------------------------

    def pull(self, sources: list[str], to: str = "", strip: str = "") -> Summary:
        """Copy remote files, folders and globs into the local folder ``to`` (default: the working directory).

        ``strip`` is a remote folder prefix left out of the local paths (sync mirrors a remote folder).
        """
        started = time.monotonic()
        self._strip = strip.strip("/")
        summary = Summary("pulled")
        dest = self.local_root / os.path.expanduser(to) if to else self.local_root
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TransferError(_local_failure(exc, to)) from None
        self._dest = dest
        items: list[_Item] = []
        for source in sources:
            self._remote_items(source, items, summary)
        self._run(items, summary, self._pull_one, self._pull_small, started, "pulling")
        return summary

    def _remote_items(self, source: str, items: list[_Item], summary: Summary) -> None:
        if has_magic(source):
            matches = self._remote_glob(source)
            if not matches:
                raise TransferError(f"No remote file or folder matches {source!r}.")
            for path, entry in matches:
                self._add_remote(path, destination(path), entry, items, summary)
            return
        found = self.transport.stat(source.rstrip("/") or ".")
        if found is None:
            raise TransferError(f"There is no remote file or folder {source!r} in the kernel's folder.")
        entry = found
        rel = destination(source)
        if self._strip and rel.startswith(self._strip + "/"):
            rel = rel[len(self._strip) + 1:]
        self._add_remote(source.rstrip("/") or ".", rel, entry, items, summary)

    def _add_remote(self, path: str, rel: str, entry: Entry, items: list[_Item], summary: Summary) -> None:
        if entry.kind == "file":
            if not rel:
                raise TransferError(f"Cannot tell where {path!r} goes locally; name a file or folder.")
            check_relative(rel)
            if self.max_size is not None and entry.size > self.max_size:
                summary.notices.append(f"skipped {rel} ({human(entry.size)}): over the size limit of {human(self.max_size)}")
                return
            items.append(_Item(Path(rel), path, entry.size))
        elif entry.kind == "dir":
            root_real = self.transport.realpath(path)
            self._walk_remote(path, rel, items, summary, root_real, [])
        else:
            summary.notices.append(f"skipped the remote {path}: not a regular file or folder")

    def _walk_remote(self, path: str, rel: str, items: list[_Item], summary: Summary, root_real: str | None,
                     ancestors: list[Any]) -> None:
        entries = self.transport.listdir(path)
        identity = getattr(self.transport, "identity", lambda p, e: None)(path, entries)
        if identity is not None and identity in ancestors:
            summary.notices.append(f"skipped the remote {path}: it is a symlink loop (it leads back to a folder above it)")
            return
        if len(ancestors) > 64:
            raise TransferError(f"The remote folder {path!r} is nested more than 64 levels deep (a symlink loop?); nothing more was pulled.")
        if not entries and rel:
            items.append(_Item(Path(rel), path, -1))
        for entry in sorted(entries, key=lambda e: e.name):
            name = check_name(entry.name)
            child, child_rel = posixpath.join(path, name), posixpath.join(rel, name) if rel else name
            if entry.kind == "dir" and name in SKIP_DIRS:
                continue
            if entry.link_target is not None and root_real is not None and not _posix_inside(entry.link_target, root_real):
                summary.notices.append(f"skipped the remote symlink {child} (it points outside the pulled folder)")
                continue
            if entry.kind == "dir":
                self._walk_remote(child, child_rel, items, summary, root_real, [*ancestors, identity])
            elif entry.kind == "file":
                self._add_remote(child, child_rel, entry, items, summary)

    def _remote_glob(self, pattern: str) -> list[tuple[str, Entry]]:
        """Match a glob against remote listings, one path segment at a time (``**``: any depth)."""
        parts = [part for part in pattern.strip("/").split("/") if part not in ("", ".")]
        found: list[tuple[str, Entry]] = []

        def walk(prefix: str, index: int, entry: Entry) -> None:
            if index == len(parts):
                found.append((prefix or ".", entry))
                return
            part = parts[index]
            if entry.kind != "dir":
                return
            if not has_magic(part):
                child = posixpath.join(prefix, part) if prefix else part
                sub = self.transport.stat(child)
                if sub is not None:
                    walk(child, index + 1, sub)
                return
            entries = self.transport.listdir(prefix or ".")
            if part == "**":
                walk(prefix, index + 1, entry)
                for sub in entries:
                    if sub.kind == "dir" and not sub.name.startswith("."):
                        walk(posixpath.join(prefix, sub.name) if prefix else sub.name, index, sub)
                return
            for sub in entries:
                name = check_name(sub.name)
                if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or not name.startswith(".")):
                    walk(posixpath.join(prefix, name) if prefix else name, index + 1, sub)

        walk("", 0, Entry(".", "dir"))
        return sorted(found, key=lambda pair: pair[0])

    def _pull_one(self, item: _Item, progress: Progress, summary: Summary) -> None:
        rel = _rel(item)
        if item.size < 0:
            target = safe_local_target(self._dest, rel + "/x")
            target.parent.mkdir(exist_ok=True)
            return
        target = self._pull_target(item)
        if _same_size(target, item.size) and _same_content(target, self.transport.digest(item.remote)):
            summary.skipped += 1
            progress.total -= item.size
            return
        got = self._download(self.transport.read(item.remote, item.size), item, target, progress)
        summary.files += 1
        summary.bytes += got
        summary.paths.append(rel)

    def _pull_small(self, items: list[_Item], summary: Summary, progress: Progress) -> None:
        """Small files: the unchanged found with one digest request, the rest downloaded side by side."""
        targets = {item.remote: self._pull_target(item) for item in items}
        same_size = [item for item in items if _same_size(targets[item.remote], item.size)]
        digests = self.transport.digests([item.remote for item in same_size])
        unchanged = {item.remote for item in same_size if _same_content(targets[item.remote], digests.get(item.remote))}
        summary.skipped += len(unchanged)
        progress.total -= sum(item.size for item in items if item.remote in unchanged)

        todo = [item for item in items if item.remote not in unchanged]
        if self.transport.batch_bytes:
            def get(batch: list[_Item]) -> tuple[list[tuple[int, str]], BaseException | None]:
                blobs, failure = self.transport.get_many([item.remote for item in batch])
                return [(self._download([data], item, targets[item.remote], _SILENT), _rel(item))
                        for item, data in zip(batch, blobs)], failure

            self._in_batches(todo, get, summary, progress)
            return

        def download(transport: Transport, item: _Item) -> tuple[int, str]:
            return self._download(transport.read(item.remote, item.size), item, targets[item.remote], _SILENT), _rel(item)

        self._in_parallel(todo, download, summary, progress)

    def _pull_target(self, item: _Item) -> Path:
        """Where ``item`` lands locally (its folders made, refusing a way out of the tree)."""
        rel = _rel(item)
        target = safe_local_target(self._dest, rel)
        if target.is_dir() and not target.is_symlink():
            raise TransferError(f"Cannot pull {rel!r}: a local folder has that name.")
        return target

    def _download(self, blocks: Iterable[bytes], item: _Item, target: Path, progress: Progress) -> int:
        """Write the remote file's ``blocks`` aside, then rename it over ``target``; the bytes written."""
        rel = _rel(item)
        temp = target.parent / f".{target.name}{PARTIAL}{secrets.token_hex(4)}"
        got = 0
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "wb") as handle:
                done = progress.done
                for block in blocks:
                    handle.write(block)
                    got += len(block)
                    progress.update(done + got, rel)
            os.replace(temp, target)
        except OSError as exc:
            _remove(temp)
            raise TransferError(_local_failure(exc, rel)) from None
        except BaseException:
            _remove(temp)
            raise
        return got

    # -- shared ---------------------------------------------------------------------

    def _run(self, items: list[_Item], summary: Summary, one: Callable[[_Item, Progress, Summary], None],
             small: Callable[[list[_Item], Summary, Progress], None], started: float, verb: str) -> None:
        """Move ``items``: small files (within one chunk) by ``small`` side by side, the rest one by one."""
        self._listings: dict[str, dict[str, Entry] | None] = {}
        progress = Progress(verb, self.out, after=float("inf") if self.quiet else 1.0)
        progress.total = sum(max(item.size, 0) for item in items)
        try:
            together = self.workers > 1 or self.transport.batch_bytes
            side_by_side = [item for item in items if self._beside(item)] if together else []
            if len(side_by_side) < 2:
                side_by_side = []
            chosen = {id(item) for item in side_by_side}
            for item in [item for item in items if id(item) not in chosen]:
                try:
                    one(item, progress, summary)
                except OSError as exc:
                    raise TransferError(_local_failure(exc, item.remote)) from None
                progress.done = summary.bytes
            if side_by_side:
                small(side_by_side, summary, progress)
        except KeyboardInterrupt:
            raise TransferError(f"Interrupted after {summary.files} file(s); no partial file was left under a final name.") from None
        except BinderAutorunError as exc:
            if summary.files:
                raise type(exc)(f"{exc} ({summary.files} file(s) {summary.verb} before it.)") from None
            raise
        finally:
            summary.seconds = time.monotonic() - started
        for notice in summary.notices:
            if not self.quiet:
                print(f"binder_autorun: {notice}", file=sys.stderr)
        if not self.quiet:
            progress.finish(summary.line())
        elif progress.width:
            self.out.write("\r" + " " * progress.width + "\r")

    def _beside(self, item: _Item) -> bool:
        return 0 <= item.size <= getattr(self.transport, "chunk", CHUNK) and self.transport.beside(item.remote)

    def _in_batches(self, items: list[_Item], move: Callable[[list[_Item]], tuple[list[tuple[int, str]], BaseException | None]],
                    summary: Summary, progress: Progress) -> None:
        """``move(batch)`` for batches of at most ``transport.batch_bytes``, one request each; what
        stopped a batch (a failure, an interrupt) is raised once the files it moved are counted."""
        batches: list[list[_Item]] = []
        size = 0
        for item in items:
            if not batches or size + item.size > self.transport.batch_bytes:
                batches.append([])
                size = 0
            batches[-1].append(item)
            size += item.size
        for batch in batches:
            moved, failure = move(batch)
            for got, path in moved:
                summary.files += 1
                summary.bytes += got
                summary.paths.append(path)
            progress.update(summary.bytes, summary.paths[-1] if summary.paths else "")
            if failure is not None:
                raise failure
        summary.paths.sort()
        progress.done = summary.bytes

    def _in_parallel(self, items: list[_Item], move: Callable[[Transport, _Item], tuple[int, str]],
                     summary: Summary, progress: Progress) -> None:
        """``move(transport, item)`` for every item, ``workers`` at a time, each over a twin transport.

        Counts and the progress line are kept here (one thread writes the line). The first
        failure stops the rest (requests in flight finish) and is raised; so is an interrupt,
        once the files in flight are in place or removed.
        """
        if not items:
            return
        lock = threading.Lock()
        stop = threading.Event()
        pending = iter(items)
        failures: list[BaseException] = []

        def work() -> None:
            transport = self.transport.twin()
            try:
                while not stop.is_set():
                    with lock:
                        item = next(pending, None)
                    if item is None:
                        return
                    try:
                        moved, path = move(transport, item)
                    except OSError as exc:
                        raise TransferError(_local_failure(exc, item.remote)) from None
                    with lock:
                        summary.files += 1
                        summary.bytes += moved
                        summary.paths.append(path)
            except BaseException as exc:
                with lock:
                    failures.append(exc)
                stop.set()
            finally:
                transport.close()

        threads: list[threading.Thread] = []
        try:
            for _ in range(min(self.workers, len(items))):
                threads.append(threading.Thread(target=work, name="binder-autorun-transfer", daemon=True))
                threads[-1].start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.1)
                    progress.update(summary.bytes, summary.paths[-1] if summary.paths else "")
        except KeyboardInterrupt:  # also while the workers were starting: none goes on unwatched
            stop.set()  # the files in flight finish (each lands whole or not at all); wait a little for them
            deadline = time.monotonic() + INTERRUPT_GRACE
            for thread in threads:
                if thread.is_alive():
                    thread.join(max(0.0, deadline - time.monotonic()))
            raise
        summary.paths.sort()
        progress.done = summary.bytes
        if failures:
            raise failures[0]


class _Silent(Progress):
    """No progress line: the files moving side by side are counted by the thread that starts them."""

    def __init__(self) -> None:
        super().__init__("", sys.stderr)

    def update(self, done: int, current: str) -> None:
        pass


_SILENT = _Silent()


def _read_small(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise TransferError(f"Cannot read the local {str(path)!r}: permission denied.") from None


def _rel(item: _Item) -> str:
    """``item``'s local path, relative and with forward slashes (as summaries and progress show it)."""
    return str(item.local).replace(os.sep, "/")


def _same_content(local: Path, remote: tuple[str, str] | None) -> bool:
    """Whether the local file hashes to the remote (algorithm, digest); False when that is unknown."""
    return remote is not None and local_digest(local, remote[0]) == remote[1]


def _same_size(target: Path, size: int) -> bool:
    return target.is_file() and not target.is_symlink() and target.stat().st_size == size


def _posix_inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _remove(path: Path) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _local_failure(exc: OSError, what: str) -> str:
    if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        return f"The local disk is full (or the file too large) while writing {what!r}; no partial file was left under its name."
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Permission denied writing {what!r} locally ({exc.filename or 'its folder'})."
    if exc.errno == errno.ELOOP:
        return f"Refused to write {what!r} through a local symlink."
    return f"Could not write {what!r} locally: {exc.strerror or exc}."


# -- choosing a transport ----------------------------------------------------------------

TRANSPORTS = ("auto", "contents", "kernel")


def has_contents_api(server: Any) -> bool:
    """Whether the server has a contents API (kernel gateways have none)."""
    try:
        response = server.http.get(server.url + "api/contents", params={"content": "0"}, timeout=server.timeout)
    except requests.exceptions.RequestException:
        raise ServerUnreachable(f"Could not reach the Jupyter server at {server.url}.") from None
    return response.status_code == 200


def open_transport(session: Any, kind: str = "auto", base: str | None = None) -> Transport:
    """The transport for ``session``'s kernel: ``contents`` (with the kernel channel for hidden
    files when the kernel is Python), ``kernel``, or ``auto`` (contents when the server has it).

    ``base`` is the kernel's folder relative to the server root when known; else it is
    probed (Python kernels) or taken as the root.
    """
    if kind not in TRANSPORTS:
        raise TransferError(f"Unknown transport {kind!r}; use one of {', '.join(TRANSPORTS)}.")
    helper_ok = session.implementation == "ipython" or session.kernel_info.get("language_info", {}).get("name") == "python"
    if kind == "kernel" or (kind == "auto" and not has_contents_api(session.server)):
        if not helper_ok:
            raise TransferError("This server has no contents API and the remote kernel is not Python, so files cannot be moved.")
        return KernelTransport(session)
    kernel = KernelTransport(session) if helper_ok else None
    if base is None:
        probed = kernel_base(session.server, kernel.helper) if kernel is not None else ""
        if probed is None:  # the kernel does not see the server's files: its own folder is what counts
            return kernel  # type: ignore[return-value]
        base = probed
    return ContentsTransport(session.server, base, fallback=kernel)

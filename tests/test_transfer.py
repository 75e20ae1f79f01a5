"""Files across the boundary (binder_autorun.transfer), against a real jupyter_server on loopback
with a Binder-like base_url and a real remote ipykernel, over both transports: the contents API
(uploads; downloads from ``files/``) and the kernel channel (base64 through silent executes)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.errors import BinderAutorunError
from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession
from binder_autorun.transfer import (
    ContentsTransport,
    Entry,
    KernelTransport,
    Transfer,
    TransferError,
    Transport,
    check_name,
    check_relative,
    destination,
    open_transport,
    safe_local_target,
)

SUMMARY = re.compile(r"binder_autorun: (pushed|pulled) (\d+) files? \(([^)]*)\), (\d+) skipped as unchanged, in [\d.]+ s")


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Relative path -> sha256 of every regular file under root ("<dir>" for empty folders)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "<symlink>"
        elif path.is_file():
            found[rel] = sha(path)
        elif path.is_dir() and not any(path.iterdir()):
            found[rel] = "<dir>"
    return found


@pytest.fixture(scope="module")
def work(remote_server: LocalServer) -> Iterator[tuple[KernelSession, Path]]:
    """A remote kernel whose working directory is a fresh folder under the server's root."""
    name = f"xfer-{uuid.uuid4().hex[:8]}"
    folder = remote_server.root_dir / name
    folder.mkdir()
    session = KernelSession.start(JupyterServer(remote_server.info), "python3", path=name)
    yield session, folder
    session.shutdown()


@pytest.fixture(params=["contents", "kernel"])
def transport(request: pytest.FixtureRequest, work: tuple[KernelSession, Path]) -> Transport:
    return open_transport(work[0], request.param)


@pytest.fixture
def remote(work: tuple[KernelSession, Path]) -> Path:
    return work[1]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def sample_tree(root: Path) -> None:
    (root / "data" / "raw" / "deep").mkdir(parents=True)
    (root / "data" / "empty").mkdir()
    (root / "data" / "a.bin").write_bytes(os.urandom(300_000))
    (root / "data" / "raw" / "x.json").write_text('{"a": 1}')
    (root / "data" / "raw" / "y.json").write_text('{"b": 2}')
    (root / "data" / "raw" / "deep" / "z.csv").write_text("a,b\n1,2\n")
    (root / "data" / "zero.txt").write_bytes(b"")
    (root / "data" / "naïve name with spaces.txt").write_text("ünïcode")
    (root / "data" / ".hidden").write_text("secret-ish")
    (root / "data" / "__pycache__").mkdir()
    (root / "data" / "__pycache__" / "skip.pyc").write_bytes(b"x")


def test_push_and_pull_a_tree_keep_layout_and_bytes(transport: Transport, remote: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    sample_tree(local)
    to = unique("t")
    out = io.StringIO()
    summary = Transfer(transport, local, out=out).push(["data"], to=to)
    expected = {k: v for k, v in tree(local / "data").items() if not k.startswith("__pycache__")}
    assert tree(remote / to / "data") == expected  # same bytes, same layout, empty folder, hidden file, no cache
    assert (summary.files, summary.skipped) == (7, 0)
    match = SUMMARY.search(out.getvalue())
    assert match and match.group(1, 2, 4) == ("pushed", "7", "0"), out.getvalue()
    assert not [p for p in (remote / to).rglob("*") if ".binder-partial-" in p.name]

    # again: everything unchanged is skipped
    again = Transfer(transport, local, out=io.StringIO()).push(["data"], to=to)
    assert (again.files, again.skipped) == (0, 7)
    (local / "data" / "raw" / "x.json").write_text('{"a": 2}')
    changed = Transfer(transport, local, out=io.StringIO()).push(["data"], to=to)
    assert (changed.files, changed.skipped, changed.paths) == (1, 6, [f"{to}/data/raw/x.json"])

    back = tmp_path / "back"
    pulled = Transfer(transport, back, out=io.StringIO()).pull([f"{to}/data"])
    assert tree(back / to / "data") == {k: v for k, v in tree(local / "data").items() if not k.startswith("__pycache__")}
    assert pulled.files == 7
    assert Transfer(transport, back, out=io.StringIO()).pull([f"{to}/data"]).skipped == 7


def test_globs_files_and_to_folders(transport: Transport, remote: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    sample_tree(local)
    inputs = unique("inputs") + "/nested"
    Transfer(transport, local, out=io.StringIO()).push(["data/raw/*.json", "data/a.bin"], to=inputs)
    assert tree(remote / inputs) == {
        "data/raw/x.json": sha(local / "data/raw/x.json"),
        "data/raw/y.json": sha(local / "data/raw/y.json"),
        "data/a.bin": sha(local / "data/a.bin"),
    }
    # a file given by absolute path keeps its name only
    Transfer(transport, tmp_path, out=io.StringIO()).push([str(local / "data" / "zero.txt")], to=inputs)
    assert (remote / inputs / "zero.txt").exists()

    got = tmp_path / "got"
    Transfer(transport, got, out=io.StringIO()).pull([f"{inputs}/data/raw/*.json", f"{inputs}/**/*.bin"], to="downloads/new")
    assert tree(got / "downloads" / "new") == {
        f"{inputs}/data/raw/x.json": sha(local / "data/raw/x.json"),
        f"{inputs}/data/raw/y.json": sha(local / "data/raw/y.json"),
        f"{inputs}/data/a.bin": sha(local / "data/a.bin"),
    }


def test_missing_paths_are_one_sentence(transport: Transport, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match=r"^There is no local file or folder 'nope\.csv'"):
        Transfer(transport, tmp_path, out=io.StringIO()).push(["nope.csv"])
    with pytest.raises(TransferError, match=r"^No local file or folder matches '\*\.nothing'"):
        Transfer(transport, tmp_path, out=io.StringIO()).push(["*.nothing"])
    with pytest.raises(TransferError, match=r"^There is no remote file or folder 'nope\.csv'"):
        Transfer(transport, tmp_path, out=io.StringIO()).pull(["nope.csv"])
    with pytest.raises(TransferError, match=r"^No remote file or folder matches"):
        Transfer(transport, tmp_path, out=io.StringIO()).pull(["nothing-here/*.csv"])
    assert list(tmp_path.iterdir()) == []


def test_push_does_not_follow_symlinks_out_of_the_tree(transport: Transport, remote: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "private.txt").write_text("not yours")
    local = tmp_path / "local" / "proj"
    local.mkdir(parents=True)
    (local / "real.txt").write_text("real")
    (local / "inner-link.txt").symlink_to(local / "real.txt")
    (local / "out-file.txt").symlink_to(outside / "private.txt")
    (local / "out-dir").symlink_to(outside)
    (local / "loop").symlink_to(local)
    to = unique("links")
    summary = Transfer(transport, tmp_path / "local", out=io.StringIO()).push(["proj"], to=to)
    assert tree(remote / to / "proj") == {"real.txt": sha(local / "real.txt"), "inner-link.txt": sha(local / "real.txt")}
    assert any("out-file.txt" in notice and "outside" in notice for notice in summary.notices)
    assert any("out-dir" in notice for notice in summary.notices)


def test_hidden_files_over_the_contents_api_alone_are_one_sentence(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, _ = work
    plain = ContentsTransport(session.server, base=open_transport(session, "contents").base)  # type: ignore[attr-defined]
    (tmp_path / ".env").write_text("A=1")
    with pytest.raises(TransferError, match="hidden .*jupyter_server refuses"):
        Transfer(plain, tmp_path, out=io.StringIO()).push([".env"], to=unique("hid"))


def test_contents_transport_finds_the_kernels_folder(work: tuple[KernelSession, Path], remote_server: LocalServer) -> None:
    session, folder = work
    transport = open_transport(session, "auto")
    assert isinstance(transport, ContentsTransport)
    assert transport.base == folder.relative_to(remote_server.root_dir).as_posix()
    assert not list(remote_server.root_dir.glob("binder-autorun-probe-*"))


def test_large_upload_is_chunked_into_a_temporary_name(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    """A file bigger than one chunk is written aside and renamed, also over an existing file."""
    session, folder = work
    transport = open_transport(session, "contents")
    assert isinstance(transport, ContentsTransport)
    transport.chunk = 64 * 1024
    data = os.urandom(300_000)
    (tmp_path / "big.bin").write_bytes(data)
    to = unique("chunks")
    seen: list[str] = []
    original = transport._http

    def spy(method: str, url_path: str, what: str, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(f"{method} {url_path}")
        return original(method, url_path, what, **kwargs)

    transport._http = spy  # type: ignore[method-assign]
    Transfer(transport, tmp_path, out=io.StringIO()).push(["big.bin"], to=to)
    puts = [line for line in seen if line.startswith("PUT") and "big.bin" in line]
    assert len(puts) == 5 and all(".binder-partial-" in line for line in puts)
    assert not [line for line in seen if line.startswith(("PATCH", "DELETE"))]  # the kernel renames: os.replace
    assert sha(folder / to / "big.bin") == hashlib.sha256(data).hexdigest()
    (tmp_path / "big.bin").write_bytes(data[::-1])
    Transfer(transport, tmp_path, out=io.StringIO()).push(["big.bin"], to=to)  # PATCH cannot overwrite: moved aside first
    assert sha(folder / to / "big.bin") == hashlib.sha256(data[::-1]).hexdigest()
    assert sorted(p.name for p in (folder / to).iterdir() if p.name != ".ipynb_checkpoints") == ["big.bin"]
    # without a kernel that sees the files, PATCH renames (moving an existing file aside first)
    plain = ContentsTransport(session.server, base=transport.base, chunk=64 * 1024)
    plain._http = spy  # type: ignore[method-assign]
    original = ContentsTransport._http.__get__(plain)
    seen.clear()
    Transfer(plain, tmp_path, out=io.StringIO()).push(["big.bin"], to=to + "-plain")
    assert [line for line in seen if line.startswith("PATCH")]
    (tmp_path / "big.bin").write_bytes(data)
    Transfer(plain, tmp_path, out=io.StringIO()).push(["big.bin"], to=to + "-plain")
    assert sha(folder / (to + "-plain") / "big.bin") == hashlib.sha256(data).hexdigest()
    assert sorted(p.name for p in (folder / (to + "-plain")).iterdir() if p.name != ".ipynb_checkpoints") == ["big.bin"]


# -- security: nothing pulled lands outside the destination --------------------------


@pytest.fixture
def hostile_tree(remote: Path, tmp_path: Path) -> str:
    """A server-side tree built to escape: symlinks out of the server root (file and folder),
    an absolute-path link, loops back to itself and to its parent."""
    outside = tmp_path / "server-outside"
    outside.mkdir()
    (outside / "passwd").write_text("root:x:0:0")
    (outside / "sub").mkdir()
    (outside / "sub" / "more.txt").write_text("more")
    name = unique("hostile")
    root = remote / name
    (root / "escape").mkdir(parents=True)
    (root / "ok.txt").write_text("fine")
    (root / "escape" / "inside.txt").write_text("inside")
    (root / "link-file").symlink_to(outside / "passwd")
    (root / "link-dir").symlink_to(outside)
    (root / "abs").symlink_to("/etc/hostname")
    (root / "loop").symlink_to(".")
    (root / "up").symlink_to("..")
    return name


def _all_inside(dest: Path, before_outside: dict[str, str], outside_local: Path) -> None:
    real = os.path.realpath(dest)
    for path in dest.rglob("*"):
        assert not path.is_symlink() or path.name == "escape", f"{path} is a symlink we created"
        assert os.path.realpath(path).startswith(real + os.sep) or path.name == "escape", path
    assert tree(outside_local) == before_outside


def test_pull_of_a_hostile_server_tree_stays_inside_the_destination(transport: Transport, hostile_tree: str, tmp_path: Path) -> None:
    outside_local = tmp_path / "local-outside"
    outside_local.mkdir()
    (outside_local / "keep.txt").write_text("keep")
    before = tree(outside_local)
    dest = tmp_path / "dest"
    summary = Transfer(transport, dest, out=io.StringIO()).pull([hostile_tree])
    _all_inside(dest, before, outside_local)
    got = tree(dest / hostile_tree)
    assert got["ok.txt"] == hashlib.sha256(b"fine").hexdigest()
    assert got["escape/inside.txt"] == hashlib.sha256(b"inside").hexdigest()
    assert all(v != "<symlink>" for v in got.values())  # links arrive as plain files or not at all
    assert not any(key.startswith(("loop/loop", "up/")) for key in got)  # loops are not walked
    if isinstance(transport, KernelTransport) or getattr(transport, "fallback", None) is not None:
        # a transport that sees symlinks skips those leaving the tree, with a notice
        assert "link-file" not in got and not any(key.startswith("link-dir/") for key in got) and "abs" not in got
        assert any("link-dir" in notice and "outside" in notice for notice in summary.notices)
    assert any("loop" in notice for notice in summary.notices)


def test_pull_through_a_local_symlink_out_of_the_destination_is_refused(transport: Transport, hostile_tree: str, tmp_path: Path) -> None:
    outside_local = tmp_path / "local-outside"
    outside_local.mkdir()
    before = tree(outside_local)
    dest = tmp_path / "dest"
    (dest / hostile_tree).mkdir(parents=True)
    (dest / hostile_tree / "escape").symlink_to(outside_local)  # a planted link where a folder will be written
    with pytest.raises(TransferError, match="symlink pointing outside"):
        Transfer(transport, dest, out=io.StringIO()).pull([hostile_tree])
    assert tree(outside_local) == before


def test_pull_replaces_a_local_symlink_file_instead_of_writing_through_it(transport: Transport, remote: Path, tmp_path: Path) -> None:
    name = unique("repl")
    (remote / name).mkdir()
    (remote / name / "f.txt").write_text("new")
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    dest = tmp_path / "dest"
    (dest / name).mkdir(parents=True)
    (dest / name / "f.txt").symlink_to(victim)
    Transfer(transport, dest, out=io.StringIO()).pull([name])
    assert victim.read_text() == "untouched"
    assert not (dest / name / "f.txt").is_symlink() and (dest / name / "f.txt").read_text() == "new"


@pytest.mark.parametrize("name", ["..", ".", "", "../x", "a/b", "/etc/passwd", "a\\..\\b", "x\x00y", None, 3])
def test_hostile_listing_names_are_refused(name: object) -> None:
    with pytest.raises(TransferError, match="Refused"):
        check_name(name)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/abs", "C:/x", "a/..", "..", "", "x\x00", "a\\b"])
def test_paths_that_leave_the_destination_are_refused(path: str, tmp_path: Path) -> None:
    with pytest.raises(TransferError, match="Refused"):
        safe_local_target(tmp_path, path)
    assert list(tmp_path.iterdir()) == []


def test_destination_keeps_relative_paths_and_names_others() -> None:
    assert destination("data/raw/x.csv") == "data/raw/x.csv"
    assert destination("./data/") == "data"
    assert destination("../elsewhere/x.csv") == "x.csv"
    assert destination("/abs/path/y.csv") == "y.csv"
    assert check_relative("a/./b") == ("a", "b")


class _HostileTransport(Transport):
    """A server whose listings try to escape (what a real server cannot be made to send)."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def stat(self, path: str) -> Entry | None:
        return Entry(path, "dir")

    def listdir(self, path: str) -> list[Entry]:
        return [Entry(name, "file", 4) for name in self.names]

    def digest(self, path: str) -> None:
        return None

    def read(self, path: str, size: int) -> Iterator[bytes]:
        yield b"evil"

    def writer(self, path: str, size: int):  # type: ignore[no-untyped-def]
        raise AssertionError

    def makedirs(self, path: str) -> None:
        raise AssertionError


@pytest.mark.parametrize("names", [["ok", "../escaped"], ["/tmp/abs"], ["..", "ok"], ["a/../../b"]])
def test_a_hostile_listing_writes_nothing(names: list[str], tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with pytest.raises(TransferError, match="Refused"):
        Transfer(_HostileTransport(names), dest, out=io.StringIO()).pull(["folder"])
    assert tree(tmp_path) == {"dest": "<dir>"}  # checked before anything is written


# -- failures: one sentence, no partial file, the session keeps working ---------------


def test_local_disk_full_leaves_no_partial_file(transport: Transport, work: tuple[KernelSession, Path], tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    session, folder = work
    name = unique("full")
    (folder / name).mkdir()
    (folder / name / "big.bin").write_bytes(os.urandom(200_000))
    dest = tmp_path / "dest"
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, handle):  # type: ignore[no-untyped-def]
            self.handle = handle

        def __enter__(self):  # type: ignore[no-untyped-def]
            return self

        def __exit__(self, *exc):  # type: ignore[no-untyped-def]
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: Full(real_fdopen(fd, mode)))
    with pytest.raises(TransferError, match="^The local disk is full .*no partial file"):
        Transfer(transport, dest, out=io.StringIO()).pull([f"{name}/big.bin"])
    monkeypatch.undo()
    assert tree(dest) == {f"{name}": "<dir>"}
    assert session.execute("1", None, silent=True)["status"] == "ok"


def test_remote_disk_full_is_one_sentence(tmp_path: Path) -> None:
    """A server whose writes fail past 100 kB (RLIMIT_FSIZE; Python ignores SIGXFSZ, so a write
    fails with EFBIG like a full disk) reports it in one sentence and keeps no partial file."""
    root = tmp_path / "root"
    root.mkdir()

    class Limited(LocalServer):
        def command(self) -> list[str]:
            return ["prlimit", "--fsize=100000", "--", *super().command()]

    server = Limited(root_dir=root, base_url="/user/someone/")
    server.start()
    try:
        transport = ContentsTransport(JupyterServer(server.info), chunk=64 * 1024)
        (tmp_path / "big.bin").write_bytes(os.urandom(300_000))
        (tmp_path / "small.txt").write_text("ok")
        with pytest.raises(TransferError, match="^The remote disk is full"):
            Transfer(transport, tmp_path, out=io.StringIO()).push(["big.bin"])
        assert [p.name for p in root.iterdir() if not p.name.startswith(".")] == []
        Transfer(transport, tmp_path, out=io.StringIO()).push(["small.txt"])  # still usable
        assert (root / "small.txt").read_text() == "ok"
    finally:
        server.stop()


@pytest.mark.timeout(60)
def test_server_gone_mid_transfer_is_one_sentence_without_partial_files(own_server: LocalServer, tmp_path: Path) -> None:
    transport = ContentsTransport(JupyterServer(own_server.info), chunk=256 * 1024)
    (tmp_path / "big.bin").write_bytes(os.urandom(4_000_000))
    (own_server.root_dir / "remote.bin").write_bytes(os.urandom(4_000_000))
    original = transport._http
    calls = {"n": 0}

    def dying(method: str, url_path: str, what: str, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 4:
            own_server.stop()
        return original(method, url_path, what, **kwargs)

    transport._http = dying  # type: ignore[method-assign]
    out = io.StringIO()
    with pytest.raises(BinderAutorunError, match=r"went away while uploading 'big\.bin'") as caught:
        Transfer(transport, tmp_path, out=out).push(["big.bin"])
    assert own_server.token not in str(caught.value) + out.getvalue()
    assert sorted(p.name for p in own_server.root_dir.iterdir()) == ["remote.bin"] or all(
        ".binder-partial-" in p.name or p.name == "remote.bin" for p in own_server.root_dir.iterdir())
    assert not (own_server.root_dir / "big.bin").exists()
    dest = tmp_path / "dest"
    with pytest.raises(BinderAutorunError, match="went away|Could not reach"):
        Transfer(transport, dest, out=io.StringIO()).pull(["remote.bin"])
    assert not dest.exists() or tree(dest) == {}


def test_auto_uses_the_kernel_channel_without_a_contents_api(work: tuple[KernelSession, Path], monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    """A kernel gateway has no contents API: auto falls back to the kernel channel (same interface)."""
    import binder_autorun.transfer as transfer

    session, folder = work
    assert transfer.has_contents_api(session.server) is True
    monkeypatch.setattr(transfer, "has_contents_api", lambda server: False)
    chosen = open_transport(session, "auto")
    assert isinstance(chosen, KernelTransport)
    (tmp_path / "g.txt").write_text("gateway")
    to = unique("gw")
    Transfer(chosen, tmp_path, out=io.StringIO()).push(["g.txt"], to=to)
    assert (folder / to / "g.txt").read_text() == "gateway"


def test_progress_line_updates_in_place_and_hides_the_token(work: tuple[KernelSession, Path], remote_server: LocalServer,
                                                             tmp_path: Path) -> None:
    session, _ = work
    transport = open_transport(session, "contents")
    assert isinstance(transport, ContentsTransport)
    transport.chunk = 256 * 1024
    (tmp_path / "p.bin").write_bytes(os.urandom(3_000_000))
    out = io.StringIO()
    transfer = Transfer(transport, tmp_path, out=out)
    original = transport._http

    def slow(*args, **kwargs):  # type: ignore[no-untyped-def]
        import time

        time.sleep(0.12)  # make the transfer take more than a moment
        return original(*args, **kwargs)

    transport._http = slow  # type: ignore[method-assign]
    transfer.push(["p.bin"], to=unique("prog"))
    text = out.getvalue()
    assert text.count("\r") >= 2 and "pushing" in text and "%" in text  # updated in place
    assert text.endswith("\n") and "\n" not in text[:-1]  # one line on screen
    assert SUMMARY.search(text.rsplit("\r", 1)[-1])  # the summary overwrites the progress line
    assert remote_server.token not in text


@pytest.mark.parametrize("kind", ["push", "pull"])
def test_an_interrupt_mid_transfer_leaves_no_partial_file(kind: str, work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, folder = work
    transport = open_transport(session, "contents")
    assert isinstance(transport, ContentsTransport)
    transport.chunk = 128 * 1024
    name = unique("intr")
    (folder / name).mkdir()
    (folder / name / "r.bin").write_bytes(os.urandom(1_000_000))
    (tmp_path / "l.bin").write_bytes(os.urandom(1_000_000))
    calls = {"n": 0}
    original_http, original_read = transport._http, transport.read

    def http(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if kind == "push" and args[0] == "PUT" and calls["n"] > 2:
            raise KeyboardInterrupt
        return original_http(*args, **kwargs)

    def read(path: str, size: int) -> Iterator[bytes]:
        for index, block in enumerate(original_read(path, size)):
            if index == 2:
                raise KeyboardInterrupt
            yield block

    transport._http, transport.read = http, read  # type: ignore[method-assign]
    dest = tmp_path / "dest"
    with pytest.raises(TransferError, match="^Interrupted after 0 file.*no partial file"):
        if kind == "push":
            Transfer(transport, tmp_path, out=io.StringIO()).push(["l.bin"], to=name)
        else:
            Transfer(transport, dest, out=io.StringIO()).pull([f"{name}/r.bin"])
    assert sorted(p.name for p in (folder / name).iterdir() if p.name != ".ipynb_checkpoints") == ["r.bin"]
    assert not dest.exists() or not [p for p in dest.rglob("*") if p.is_file()]


def test_permission_and_disk_failures_read_as_one_sentence() -> None:
    """Root ignores permission bits, so the wording is checked where the errors are mapped."""
    import errno

    import requests

    from binder_autorun.transfer import _local_failure, _remote_failure

    def response(code: int, message: str) -> requests.Response:
        made = requests.Response()
        made.status_code, made._content = code, ('{"message": "%s"}' % message).encode()
        return made

    url = "http://127.0.0.1:1/user/someone/"
    assert _remote_failure(response(403, "Permission denied: x"), "uploading 'x'", url) == \
        "The server refused uploading 'x': permission denied there."
    assert _remote_failure(response(500, "Unexpected error while saving file: x [Errno 28] No space left on device"),
                           "uploading 'x'", url).startswith("The remote disk is full")
    assert _local_failure(PermissionError(errno.EACCES, "Permission denied", "/x"), "a.txt") == \
        "Permission denied writing 'a.txt' locally (/x)."
    assert _local_failure(OSError(errno.ENOSPC, "No space left on device"), "a.txt").startswith("The local disk is full")

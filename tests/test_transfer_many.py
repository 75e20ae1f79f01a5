"""Many small files: they move side by side (``Transfer.workers`` connections), and the
unchanged ones are found with one digest request, against a real jupyter_server and a real
remote ipykernel. Checked by content (sha256), by what the server was asked (a recorder
around the transport's own methods), and for the failure and interrupt cases: one sentence,
no partial file under a final name on either side."""

from __future__ import annotations

import _thread
import hashlib
import os
import re
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from binder_autorun.session import KernelSession
from binder_autorun.transfer import PARTIAL, ContentsTransport, KernelTransport, Transfer, TransferError, Transport, open_transport

from .kernel_driver import wrap_remote_execute
from .test_transfer import work  # noqa: F401  (a remote kernel in a fresh folder of the server's root)

FILES = 120
CHUNK = 64 << 10  # files above it stream in chunks, one by one


def make_tree(root: Path) -> dict[str, str]:
    """Small files in nested folders, two chunked ones, a hidden one; relative path -> sha256."""
    made: dict[str, str] = {}
    for index in range(FILES):
        rel = f"d{index % 6}/sub{index % 2}/f{index:03d}.bin"
        made[rel] = _write(root / rel, os.urandom(10 + index * 37))
    for rel, size in (("big/one.bin", 3 * CHUNK + 5), ("big/two.bin", CHUNK + 1)):
        made[rel] = _write(root / rel, os.urandom(size))
    made[".hidden/secret.txt"] = _write(root / ".hidden/secret.txt", b"only the kernel channel carries me")
    return made


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def push_tree(transport: Transport, local: Path, remote: Path, name: str) -> dict[str, str]:
    """Make the tree under ``local/name``, push it whole, check it arrived; its shas."""
    made = make_tree(local / name)
    pushed = Transfer(transport, local, quiet=True).push([name])
    assert (pushed.files, pushed.skipped) == (FILES + 3, 0)
    assert shas(remote / name) == made
    return made


def shas(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


class Recorder:
    """Counts the calls a transport (and every twin of it) gets, by method."""

    def __init__(self, transport: Transport) -> None:
        self.calls: Counter[str] = Counter()
        self.threads: set[str] = set()
        self._lock = threading.Lock()
        self.wrap(transport)

    def wrap(self, transport: Transport) -> Transport:
        for name in ("digest", "digests", "writer", "read", "twin"):
            original = getattr(transport, name)
            setattr(transport, name, self._counted(name, original))
        return transport

    def _counted(self, name: str, original: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] += 1
                self.threads.add(threading.current_thread().name)
            result = original(*args, **kwargs)
            return self.wrap(result) if name == "twin" else result
        return call


def contents(session: KernelSession) -> ContentsTransport:
    transport = open_transport(session, "contents")
    assert isinstance(transport, ContentsTransport)
    transport.chunk = CHUNK
    return transport


def test_push_and_pull_many_files_side_by_side(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, remote = work
    local = tmp_path / "local"
    transport = contents(session)
    recorder = Recorder(transport)
    made = push_tree(transport, local, remote, "tree")
    assert recorder.calls["twin"] == 4 and len(recorder.threads) >= 2, recorder.threads  # four connections at once
    assert recorder.calls["digest"] == 0

    recorder.calls.clear()
    again = Transfer(transport, local, quiet=True).push(["tree"])
    assert (again.files, again.skipped) == (0, FILES + 3)
    assert recorder.calls["digests"] == 1 and recorder.calls["writer"] == 0  # one request found the small ones unchanged
    assert recorder.calls["digest"] == 3  # the chunked files and the hidden one (kernel channel) one by one

    (local / "tree/d1/sub1/f001.bin").write_bytes(b"changed, same folder")
    back = tmp_path / "back"
    pulled = Transfer(transport, back, quiet=True).pull(["tree"])
    assert pulled.files == FILES + 3 and shas(back / "tree") == made
    recorder.calls.clear()
    Transfer(transport, local, quiet=True).push(["tree"])
    assert recorder.calls["writer"] == 1 and (remote / "tree/d1/sub1/f001.bin").read_bytes() == b"changed, same folder"
    again_back = Transfer(transport, back, quiet=True).pull(["tree"])
    assert (again_back.files, again_back.skipped) == (1, FILES + 2)
    assert not [p for p in (remote / "tree").rglob("*") if PARTIAL in p.name]
    assert not [p for p in back.rglob("*") if PARTIAL in p.name]


def test_one_failure_among_many_is_one_sentence_and_stops_the_rest(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, remote = work
    local = tmp_path / "local"
    make_tree(local / "fail")
    (remote / "fail/d3/sub1").mkdir(parents=True)
    (remote / "fail/d3/sub1/f003.bin").mkdir()  # a remote folder where a small file should go
    with pytest.raises(TransferError) as failed:
        Transfer(contents(session), local, quiet=True).push(["fail"])
    assert str(failed.value).startswith("Cannot push 'fail/d3/sub1/f003.bin': a remote folder has that name.")
    assert not [p for p in (remote / "fail").rglob("*") if PARTIAL in p.name]


def test_interrupt_among_many_leaves_no_partial_file(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, remote = work
    local = tmp_path / "local"
    for index in range(400):
        _write(local / "stop" / f"f{index:03d}.txt", os.urandom(2000))
    transport = contents(session)
    started = threading.Event()
    original = transport.twin

    def twin() -> Transport:
        started.set()
        return original()

    transport.twin = twin  # type: ignore[method-assign]
    timer = threading.Thread(target=lambda: (started.wait(30), _thread.interrupt_main()))
    timer.start()
    try:
        with pytest.raises(TransferError) as stopped:
            Transfer(transport, local, quiet=True).push(["stop"])
    finally:
        timer.join()
    assert str(stopped.value).startswith("Interrupted after ") and "no partial file was left under a final name" in str(stopped.value)
    landed = sorted(p.name for p in (remote / "stop").iterdir())
    assert 0 <= len(landed) < 400 and not [name for name in landed if PARTIAL in name]
    time.sleep(1.0)
    assert sorted(p.name for p in (remote / "stop").iterdir()) == landed  # no worker went on after the interrupt
    for name in landed:  # whatever arrived is whole
        assert (remote / "stop" / name).read_bytes() == (local / "stop" / name).read_bytes()


class KernelCalls:
    """Counts the executes a kernel transport's helper makes, by helper function."""

    def __init__(self, transport: KernelTransport) -> None:
        self.calls: Counter[str] = Counter()
        original = transport.helper.call_through

        def call_through(function: str, *args: Any) -> Any:
            self.calls[function] += 1
            return original(function, *args)

        transport.helper.call_through = call_through  # type: ignore[method-assign]


def kernel(session: KernelSession) -> KernelTransport:
    transport = open_transport(session, "kernel")
    assert isinstance(transport, KernelTransport)
    transport.chunk = transport.batch_bytes = CHUNK
    return transport


def test_small_files_over_the_kernel_channel_travel_many_to_an_execute(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    """A gateway has no contents API; a far one makes every execute a round trip, so small files
    must not cost one (or three) each."""
    session, remote = work
    local = tmp_path / "local"
    transport = kernel(session)
    counted = KernelCalls(transport)
    made = push_tree(transport, local, remote, "ktree")
    small_bytes = sum((local / "ktree" / rel).stat().st_size for rel in made if not rel.startswith("big/"))
    assert counted.calls["put_many"] <= small_bytes // CHUNK + 2, counted.calls
    assert counted.calls["open_tmp"] == 2  # only the two chunked files go one by one
    # 16 folders looked up and made, the two chunked files in 10; it was three executes a file
    assert sum(counted.calls.values()) < 40, counted.calls

    counted.calls.clear()
    again = Transfer(transport, local, quiet=True).push(["ktree"])
    assert (again.files, again.skipped) == (0, FILES + 3)
    assert counted.calls["digests"] == 1 and counted.calls["put_many"] == 0, counted.calls

    counted.calls.clear()
    back = tmp_path / "back"
    pulled = Transfer(transport, back, quiet=True).pull(["ktree"])
    assert pulled.files == FILES + 3 and shas(back / "ktree") == made
    assert counted.calls["read_many"] <= small_bytes // CHUNK + 2, counted.calls
    assert sum(counted.calls.values()) < 40, counted.calls
    assert not [p for p in (remote / "ktree").rglob("*") if PARTIAL in p.name]
    assert not [p for p in back.rglob("*") if PARTIAL in p.name]


def test_a_failure_inside_a_kernel_batch_names_the_file_and_keeps_what_landed(work: tuple[KernelSession, Path]) -> None:
    session, remote = work
    transport = kernel(session)
    (remote / "kfail").mkdir()
    (remote / "kfail/taken").mkdir()  # a folder where a file should go
    landed, stopped = transport.put_many([("kfail/a.txt", b"first"), ("kfail/taken", b"second"), ("kfail/c.txt", b"third")])
    assert landed == 1 and isinstance(stopped, TransferError)
    assert str(stopped) == "Failed uploading 'kfail/taken': a remote folder has that name."
    assert sorted(p.name for p in (remote / "kfail").iterdir()) == ["a.txt", "taken"]  # no partial file, c.txt not tried
    assert (remote / "kfail/a.txt").read_bytes() == b"first"

    blobs, stopped = transport.get_many(["kfail/a.txt", "kfail/gone.txt", "kfail/a.txt"])
    assert blobs == [b"first"] and isinstance(stopped, TransferError)
    assert str(stopped) == "Failed downloading 'kfail/gone.txt': no such file or folder in the remote kernel's folder."


def test_an_interrupt_among_kernel_batches_counts_what_landed_and_leaves_no_partial_file(
        work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    session, remote = work
    local = tmp_path / "local"
    for index in range(400):
        _write(local / "kstop" / f"f{index:03d}.txt", os.urandom(2000))
    transport = kernel(session)
    original = transport.put_many
    batches = []

    def put_many(files: list[tuple[str, bytes]]) -> Any:
        batches.append(len(files))
        if len(batches) == 3:  # a Ctrl-C while the third batch is being written remotely
            threading.Timer(0.02, _thread.interrupt_main).start()
        return original(files)

    transport.put_many = put_many  # type: ignore[method-assign]
    with pytest.raises(TransferError) as stopped:
        Transfer(transport, local, quiet=True).push(["kstop"])
    # a Ctrl-C seen just as a batch's request left (a loaded machine) stops the transfer without
    # interrupting that batch: it lands whole, unwatched; let it settle before looking
    landed: list[str] = []
    while landed != (now := sorted(p.name for p in (remote / "kstop").iterdir())):
        landed = now
        time.sleep(0.5)
    said = re.fullmatch(r"Interrupted after (\d+) file\(s\); no partial file was left under a final name\.", str(stopped.value))
    assert said, stopped.value
    # the batch in flight is counted when its reply says how far it got; a Ctrl-C landing just
    # before it was counted, or as it left, says one batch fewer than landed
    assert int(said.group(1)) in (len(landed), len(landed) - batches[-1]), (said.group(1), len(landed), batches)
    assert 2 * batches[0] <= len(landed) <= sum(batches) < 400 and len(batches) in (3, 4), batches  # it stopped there
    assert not [name for name in landed if PARTIAL in name]
    for name in landed:  # whatever arrived is whole
        assert (remote / "kstop" / name).read_bytes() == (local / "kstop" / name).read_bytes()


def test_an_interrupt_as_the_helper_creates_a_partial_file_leaves_none(tmp_path: Path) -> None:
    """The remote helper's code, run here: an interrupt landing once the temporary file exists but
    before its name is returned (the caller could never remove it) removes it itself."""
    import sys
    import types

    from binder_autorun.transfer import REMOTE_HELPER

    namespace: dict[str, Any] = {}
    exec(REMOTE_HELPER, namespace)  # noqa: S102 - our own helper, as the remote kernel runs it
    helper = sys.modules.pop("_binder_autorun_xfer")

    def interrupted_close(fd: int) -> None:
        os.close(fd)
        raise KeyboardInterrupt

    namespace["_os"] = types.SimpleNamespace(**{**vars(os), "close": interrupted_close})
    with pytest.raises(KeyboardInterrupt):
        helper.open_tmp(str(tmp_path / "data.bin"))
    assert list(tmp_path.iterdir()) == []
    namespace["_os"] = os
    assert Path(helper.open_tmp(str(tmp_path / "data.bin"))).name.startswith(".data.bin" + PARTIAL)


def test_an_interrupt_just_after_a_batchs_last_file_counts_every_file(work: tuple[KernelSession, Path]) -> None:
    """A Ctrl-C landing in the kernel after a batch's last file was written (or read) leaves
    nothing undone: all are counted, and the interrupt is reported as such."""
    session, remote = work
    transport = kernel(session)
    (remote / "kl").mkdir()
    assert transport.put_many([("kl/warm.txt", b"w")]) == (1, None)  # the helper is in the kernel
    patch = (  # in the helper's own namespace: the interrupt comes just after a file is done
        "import sys as _s\n"
        "_g = _s.modules['_binder_autorun_xfer'].put_many.__globals__\n"
        "_commit, _open = _g['commit'], open\n"
        "def _late_commit(t, p):\n    _commit(t, p)\n    raise KeyboardInterrupt\n"
        "class _LateClose:\n"
        "    def __init__(self, *a): self.f = _open(*a)\n"
        "    def __enter__(self): return self.f\n"
        "    def __exit__(self, *e):\n        self.f.close()\n        raise KeyboardInterrupt\n"
        "_g['commit'] = _late_commit\n"
    )
    assert session.execute(patch, store_history=False)["status"] == "ok"
    done, stopped = transport.put_many([("kl/a.txt", b"one"), ("kl/b.txt", b"two")])
    assert done == 1 and isinstance(stopped, KeyboardInterrupt), (done, repr(stopped))
    assert (remote / "kl" / "a.txt").read_bytes() == b"one" and not (remote / "kl" / "b.txt").exists()
    done, stopped = transport.put_many([("kl/b.txt", b"two")])
    assert done == 1 and isinstance(stopped, KeyboardInterrupt), (done, repr(stopped))
    assert (remote / "kl" / "b.txt").read_bytes() == b"two"
    assert session.execute("_g['commit'], _g['open'] = _commit, _LateClose", store_history=False)["status"] == "ok"
    blobs, stopped = transport.get_many(["kl/a.txt"])
    assert blobs == [b"one"] and isinstance(stopped, KeyboardInterrupt)


def test_a_batch_whose_reply_the_interrupted_kernel_drops_ends_as_an_interrupt(work: tuple[KernelSession, Path], tmp_path: Path) -> None:
    """ipykernel sends no reply for a request an interrupt hits outside its code (here, held in a
    sleep before it): the transfer still ends at once, as interrupted, counting what landed."""
    session, remote = work
    local = tmp_path / "local"
    for index in range(3):
        _write(local / "kdrop" / f"f{index}.txt", b"x" * 100)
    transport = kernel(session)
    # the batch call itself (the helper's install code names put_many too)
    assert session.execute(wrap_remote_execute(hold_on="put_many(["), store_history=False)["status"] == "ok"
    threading.Timer(1.0, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(TransferError, match=r"^Interrupted after 0 file\(s\); no partial file"):
        Transfer(transport, local, quiet=True).push(["kdrop"])
    assert time.monotonic() - started < 1.0 + 3.0
    assert not list((remote / "kdrop").iterdir())

"""%binder_sync from a real local ipykernel routed to a real jupyter_server: local changes are
pushed before a remote cell, what the cell writes is pulled after it, caches and big files are
skipped, %binder_status shows the state, and a `pass` cell over 1,000 unchanged files stays fast.
A synced cell is one execute request (the remote's changes ride on it as a user_expression the
frontend never sees); changes in place, in new folders, from a remote thread, after a failed cell
and after a remote restart all come across."""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel
from .test_transfer_magics import local_dir, ok, routed  # noqa: F401  (fixtures shared with the magics tests)


@pytest.mark.timeout(120)
def test_sync_pushes_before_and_pulls_after_remote_cells(routed: LocalKernel, remote_server: LocalServer, local_dir: Path) -> None:
    name = f"proj-{uuid.uuid4().hex[:6]}"
    proj = local_dir / name
    (proj / ".git").mkdir(parents=True)
    (proj / ".git" / "HEAD").write_text("ref")
    (proj / "data.csv").write_text("a\n1\n")
    (proj / "big.bin").write_bytes(b"x" * 5000)
    remote = remote_server.root_dir / name
    ok(routed.execute("%config BinderAutorun.sync_max_size = 1000"))
    result = ok(routed.execute(f"%binder_sync {name}"))
    assert "syncing" in result.text and "big.bin" in result.text  # the size-limit notice
    assert (remote / "data.csv").read_text() == "a\n1\n"
    assert not (remote / ".git").exists() and not (remote / "big.bin").exists()

    # a local change reaches the remote before the next remote cell runs
    ok(routed.execute(f"%%local\nopen('{name}/data.csv', 'w').write('a\\n1\\n2\\n')"))
    result = ok(routed.execute(f"print(open('{name}/data.csv').read().count(chr(10)))"))
    assert result.stdout.strip().endswith("3")
    # what the cell writes comes back after it
    result = ok(routed.execute(f"import os\nos.makedirs('{name}/out', exist_ok=True)\nopen('{name}/out/r.txt', 'w').write('result')"))
    assert "sync pulled 1 file" in result.text
    assert (proj / "out" / "r.txt").read_text() == "result"
    # a quiet cell moves nothing (its own pushes are not pulled back)
    result = ok(routed.execute("x = 1"))
    assert "sync" not in result.text
    status = ok(routed.execute("%binder_status")).stdout
    assert f"sync:       {proj}" in status and "pulled 1" in status
    ok(routed.execute("%binder_sync --off"))
    ok(routed.execute(f"open('{name}/after.txt', 'w').write('no')"))
    assert not (proj / "after.txt").exists()
    assert "sync:       off" in ok(routed.execute("%binder_status")).stdout


@pytest.mark.timeout(180)
def test_pass_cell_with_1000_unchanged_files_stays_fast(routed: LocalKernel, local_dir: Path) -> None:
    name = f"many-{uuid.uuid4().hex[:6]}"
    for index in range(1000):
        folder = local_dir / name / f"d{index % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{index}.txt").write_text(str(index))

    def timed(count: int = 15) -> float:
        routed.execute("pass")
        return statistics.median(routed.execute("pass").seconds for _ in range(count))

    without = timed()
    ok(routed.execute(f"%binder_sync {name}", timeout=120))
    with_sync = timed()
    print(f"pass cell median: {without * 1000:.1f} ms without sync, {with_sync * 1000:.1f} ms with sync of 1000 files")
    assert with_sync < without + 0.25  # measured overhead is reported; see the note on sync latency


def _synced(routed: LocalKernel, local_dir: Path, prefix: str) -> tuple[str, Path]:
    """A fresh folder with one file, synced; its name and local path."""
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    (local_dir / name).mkdir()
    (local_dir / name / "seed.txt").write_text("seed")
    ok(routed.execute(f"%binder_sync {name}"))
    return name, local_dir / name


@pytest.mark.timeout(120)
def test_a_synced_cell_is_one_execute_request(routed: LocalKernel, local_dir: Path) -> None:
    name, _ = _synced(routed, local_dir, "one")
    # the remote kernel itself records every execute_request it handles from now on
    ok(routed.execute(
        "_k = get_ipython().kernel\n_handle = _k.shell_handlers['execute_request']\n_seen = []\n"
        "async def _counting(stream, ident, parent):\n"
        "    _seen.append((parent['content']['code'].strip(), len(parent['content']['user_expressions'])))\n"
        "    return await _handle(stream, ident, parent)\n"
        "_k.shell_handlers['execute_request'] = _counting"
    ))
    ok(routed.execute("pass"))
    seen = ok(routed.execute("print(_seen)")).stdout
    # the `pass` cell (carrying sync's change query) and the reading cell: no request of sync's own
    assert seen.strip() == "[('pass', 1), ('print(_seen)', 1)]", seen


@pytest.mark.timeout(120)
def test_the_frontend_sees_only_its_own_user_expressions(routed: LocalKernel, local_dir: Path) -> None:
    _synced(routed, local_dir, "expr")
    result = ok(routed.execute("x = 41", user_expressions={"mine": "x + 1", "other": "'sync' in repr(x)"}))
    assert set(result.reply["user_expressions"]) == {"mine", "other"}
    assert result.reply["user_expressions"]["mine"]["data"]["text/plain"] == "42"
    failed = routed.execute("1 / 0", user_expressions={"mine": "x"})
    assert failed.reply["status"] == "error" and failed.reply["user_expressions"] == {}  # as ipykernel natively
    empty = ok(routed.execute("", user_expressions={"mine": "x"}))  # a variable inspector's request
    assert set(empty.reply["user_expressions"]) == {"mine"}


@pytest.mark.timeout(120)
def test_changes_both_ways_in_place_nested_and_after_a_failed_cell(routed: LocalKernel, local_dir: Path) -> None:
    name, proj = _synced(routed, local_dir, "changes")
    # local: the same size in place, and a new file in new nested folders
    ok(routed.execute(f"%%local\nopen('{name}/seed.txt', 'w').write('SEED')\nimport os\n"
                      f"os.makedirs('{name}/new/deeper')\nopen('{name}/new/deeper/x.txt', 'w').write('x')"))
    result = ok(routed.execute(f"print(open('{name}/seed.txt').read(), open('{name}/new/deeper/x.txt').read())"))
    assert result.stdout.strip() == "SEED x" and "sync pushed 2 file(s)" in result.text
    # remote: the same size in place, and new nested folders
    result = ok(routed.execute(f"import os\nopen('{name}/seed.txt', 'w').write('seed')\n"
                               f"os.makedirs('{name}/r1/r2')\nopen('{name}/r1/r2/y.txt', 'w').write('y')"))
    assert "sync pulled 2 file(s)" in result.text
    assert (proj / "seed.txt").read_text() == "seed" and (proj / "r1" / "r2" / "y.txt").read_text() == "y"
    # a cell that fails still has what it wrote before failing pulled back
    failed = routed.execute(f"open('{name}/partial.txt', 'w').write('p')\n1 / 0")
    assert failed.reply["status"] == "error" and "sync pulled 1 file(s)" in failed.text
    assert (proj / "partial.txt").read_text() == "p"
    # nothing changed: nothing moves
    assert "sync" not in ok(routed.execute("pass")).text


@pytest.mark.timeout(120)
def test_a_remote_thread_writing_after_its_cell_is_pulled_at_the_next_cell(routed: LocalKernel, local_dir: Path) -> None:
    name, proj = _synced(routed, local_dir, "thread")
    ok(routed.execute(
        "import threading, time\n"
        f"_t = threading.Thread(target=lambda: (time.sleep(0.5), open('{name}/late.txt', 'w').write('late')))\n_t.start()"
    ))
    assert not (proj / "late.txt").exists()
    time.sleep(1.5)
    assert "sync pulled 1 file(s)" in ok(routed.execute("pass")).text
    assert (proj / "late.txt").read_text() == "late"


@pytest.mark.timeout(180)
def test_sync_keeps_working_across_a_remote_restart(routed: LocalKernel, local_dir: Path) -> None:
    name, proj = _synced(routed, local_dir, "restart")
    ok(routed.execute("%binder_restart"))
    # the first cell after the restart: its writes come back although the kernel lost sync's watch
    result = ok(routed.execute(f"open('{name}/after.txt', 'w').write('after')"))
    assert "sync pulled 1 file(s)" in result.text and (proj / "after.txt").read_text() == "after"
    # and from then on as before, both ways
    (proj / "local.txt").write_text("local")
    assert ok(routed.execute(f"print(open('{name}/local.txt').read())")).stdout.strip() == "local"
    result = ok(routed.execute(f"open('{name}/again.txt', 'w').write('again')"))
    assert "sync pulled 1 file(s)" in result.text and (proj / "again.txt").read_text() == "again"


@pytest.mark.timeout(120)
def test_a_remote_folder_removed_and_made_again_is_pulled_again(routed: LocalKernel, local_dir: Path) -> None:
    name, proj = _synced(routed, local_dir, "remade")
    cell = f"import os, shutil\nshutil.rmtree('{name}/out', ignore_errors=True)\nos.makedirs('{name}/out')\nopen('{name}/out/x', 'w').write('1')"
    for _ in range(4):  # the remote folder is usually made again on the inode it just freed
        (proj / "out" / "x").unlink(missing_ok=True)  # (not a change sync pushes)
        result = ok(routed.execute(cell))
        assert "sync pulled 1 file(s)" in result.text and (proj / "out" / "x").read_text() == "1"
    # and the new folder stays watched
    result = ok(routed.execute(f"open('{name}/out/y', 'w').write('y')"))
    assert "sync pulled 1 file(s)" in result.text and (proj / "out" / "y").read_text() == "y"

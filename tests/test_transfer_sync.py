"""%binder_sync from a real local ipykernel routed to a real jupyter_server: local changes are
pushed before a remote cell, what the cell writes is pulled after it, caches and big files are
skipped, %binder_status shows the state, and a `pass` cell over 1,000 unchanged files stays fast."""

from __future__ import annotations

import statistics
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

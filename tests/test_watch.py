"""binder_autorun.watch.Tree on a real folder, with inotify and with the full-rescan fallback:
both report the same changes and always agree with a fresh scan."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.transfer import SKIP_DIRS
from binder_autorun.watch import Tree


@pytest.fixture(params=[True, False], ids=["inotify", "rescan"])
def tree(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Tree]:
    root = tmp_path / "tree"
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("1111")
    (root / "top.txt").write_text("top")
    watched = Tree(str(root), SKIP_DIRS, watch=request.param)
    assert set(watched.changes()) == {"a/one.txt", "top.txt"}
    if request.param and watched.why_rescan:
        pytest.skip(f"no inotify here: {watched.why_rescan}")
    yield watched
    watched.close()


def changed(tree: Tree) -> set[str]:
    """What the tree reports, after checking its record against a fresh scan of the disk."""
    found = set(tree.changes())
    assert tree.files == Tree(tree.root, SKIP_DIRS, watch=False).changes()
    return found


def later() -> None:
    time.sleep(0.02)  # past the file system's timestamp granularity


def test_quiet_tree_reports_nothing(tree: Tree) -> None:
    assert changed(tree) == set() and changed(tree) == set()


def test_in_place_same_size_and_touch(tree: Tree) -> None:
    root = Path(tree.root)
    later()
    (root / "a" / "one.txt").write_text("2222")
    assert changed(tree) == {"a/one.txt"}
    later()
    os.utime(root / "top.txt")
    assert changed(tree) == {"top.txt"}


def test_new_nested_folders_moves_and_deletions(tree: Tree) -> None:
    root = Path(tree.root)
    (root / "n1" / "n2").mkdir(parents=True)
    (root / "n1" / "n2" / "deep.txt").write_text("deep")
    assert changed(tree) == {"n1/n2/deep.txt"}
    os.rename(root / "n1", root / "m1")  # a folder moved within the tree: new names, old ones gone
    assert changed(tree) == {"m1/n2/deep.txt"} and "n1/n2/deep.txt" not in tree.files
    (root / "m1" / "n2" / "more.txt").write_text("more")  # the moved folder is watched under its new name
    assert changed(tree) == {"m1/n2/more.txt"}
    shutil.rmtree(root / "m1")
    (root / "top.txt").unlink()
    assert changed(tree) == set() and not any(rel.startswith("m1/") for rel in tree.files)
    (root / "m1").mkdir()  # the same name again, a new folder
    (root / "m1" / "back.txt").write_text("b")
    assert changed(tree) == {"m1/back.txt"}


def test_skipped_entries(tree: Tree) -> None:
    root = Path(tree.root)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref")
    (root / "a" / "__pycache__").mkdir()
    (root / "a" / "__pycache__" / "x.pyc").write_bytes(b"x")
    (root / "link.txt").symlink_to(root / "top.txt")
    (root / ".big.bin.binder-partial-1234").write_bytes(b"partial")
    assert changed(tree) == set()


def test_a_background_writer_is_seen_at_the_next_call(tree: Tree) -> None:
    writer = threading.Thread(target=lambda: (time.sleep(0.2), (Path(tree.root) / "a" / "late.txt").write_text("late")))
    writer.start()
    assert changed(tree) == set()
    writer.join()
    assert changed(tree) == {"a/late.txt"}


def test_noted_files_are_not_reported(tree: Tree) -> None:
    root = Path(tree.root)
    later()
    (root / "top.txt").write_text("ours")
    (root / "theirs.txt").write_text("theirs")
    tree.note(["top.txt"])
    assert changed(tree) == {"theirs.txt"}


def test_a_swapped_folder_is_rescanned(tree: Tree) -> None:
    root = Path(tree.root)
    (root / "b").mkdir()
    (root / "b" / "two.txt").write_text("2")
    os.rename(root / "a", root / "old-a")
    os.rename(root / "b", root / "a")  # 'a' is now another folder
    assert changed(tree) == {"a/two.txt", "old-a/one.txt"} and "a/one.txt" not in tree.files


def test_the_root_removed_and_made_again(tree: Tree) -> None:
    root = Path(tree.root)
    shutil.rmtree(root)
    assert changed(tree) == set() and tree.files == {}
    (root / "c").mkdir(parents=True)
    (root / "c" / "new.txt").write_text("new")
    assert changed(tree) == {"c/new.txt"}
    (root / "c" / "newer.txt").write_text("newer")
    assert changed(tree) == {"c/newer.txt"}


def test_an_overflowing_event_queue_falls_back_to_one_rescan(tree: Tree) -> None:
    limit = Path("/proc/sys/fs/inotify/max_queued_events")
    queued = int(limit.read_text()) if limit.exists() else 16384
    if queued > 40000:
        pytest.skip(f"the event queue holds {queued} events: too many files to write here")
    flood = Path(tree.root) / "flood"
    flood.mkdir()
    changed(tree)
    for index in range(queued // 2 + 10):  # create + modify + close_write each: past the queue's size
        (flood / f"{index}.txt").write_text("x")
    assert changed(tree) == {f"flood/{index}.txt" for index in range(queued // 2 + 10)}
    (flood / "0.txt").write_text("y")  # and watched again afterwards
    assert changed(tree) == {"flood/0.txt"}


def test_a_folder_removed_and_made_again_is_watched_again(tree: Tree) -> None:
    root = Path(tree.root)
    (root / "out").mkdir()
    (root / "out" / "a").write_text("a")
    assert changed(tree) == {"out/a"}
    shutil.rmtree(root / "out")
    os.makedirs(root / "out")  # in one go: the freed inode is usually the new folder's
    (root / "out" / "b").write_text("b")
    assert changed(tree) == {"out/b"} and "out/a" not in tree.files
    (root / "out" / "c").write_text("c")  # and its watch is live again
    assert changed(tree) == {"out/c"}


def test_a_folder_removed_and_made_again_between_calls(tree: Tree) -> None:
    root = Path(tree.root)
    shutil.rmtree(root / "a")
    os.makedirs(root / "a")
    assert changed(tree) == set() and "a/one.txt" not in tree.files
    (root / "a" / "two.txt").write_text("2")
    assert changed(tree) == {"a/two.txt"}


def test_nested_folders_removed_and_made_again_in_one_go(tree: Tree) -> None:
    root = Path(tree.root)
    os.makedirs(root / "out" / "a" / "b")
    (root / "out" / "a" / "b" / "old.txt").write_text("old")
    (root / "out" / "a" / "keep.txt").write_text("k")
    assert changed(tree) == {"out/a/b/old.txt", "out/a/keep.txt"}
    for _ in range(2):
        later()
        shutil.rmtree(root / "out")
        os.makedirs(root / "out" / "a" / "b")
        (root / "out" / "a" / "b" / "new.txt").write_text("new")
        assert changed(tree) == {"out/a/b/new.txt"} and "out/a/keep.txt" not in tree.files
    for folder in ("out", "out/a", "out/a/b"):  # every level is watched again
        (root / folder / "late.txt").write_text("late")
        assert changed(tree) == {f"{folder}/late.txt"}


def test_a_folder_moved_away_and_another_moved_into_its_place(tree: Tree) -> None:
    root = Path(tree.root)
    (root / "b").mkdir()
    os.rename(root / "a", root.parent / "gone")  # out of the tree
    os.rename(root / "b", root / "a")
    assert changed(tree) == set() and "a/one.txt" not in tree.files
    (root / "a" / "new.txt").write_text("new")
    assert changed(tree) == {"a/new.txt"}
    shutil.rmtree(root.parent / "gone")  # the old folder's inode is freed ...
    shutil.rmtree(root / "a")
    os.makedirs(root / "a")  # ... and one of them is likely the new folder's
    (root / "a" / "again.txt").write_text("again")
    assert changed(tree) == {"a/again.txt"}
    (root / "a" / "more.txt").write_text("more")
    assert changed(tree) == {"a/more.txt"}


def test_a_folder_replaced_by_a_file_and_back(tree: Tree) -> None:
    root = Path(tree.root)
    shutil.rmtree(root / "a")
    (root / "a").write_text("file")
    assert changed(tree) == {"a"}
    (root / "a").unlink()
    (root / "a").mkdir()
    (root / "a" / "x.txt").write_text("x")
    assert changed(tree) == {"a/x.txt"} and "a" not in tree.files
    shutil.rmtree(root / "a")  # and all three in one go
    (root / "a").write_text("file")
    (root / "a").unlink()
    (root / "a").mkdir()
    (root / "a" / "y.txt").write_text("y")
    assert changed(tree) == {"a/y.txt"}
    (root / "a" / "z.txt").write_text("z")
    assert changed(tree) == {"a/z.txt"}


def test_the_root_removed_and_made_again_in_one_go(tree: Tree) -> None:
    root = Path(tree.root)
    shutil.rmtree(root)
    (root / "a").mkdir(parents=True)
    (root / "a" / "new.txt").write_text("new")
    assert changed(tree) == {"a/new.txt"} and "a/one.txt" not in tree.files
    (root / "a" / "newer.txt").write_text("newer")
    assert changed(tree) == {"a/newer.txt"}


def test_a_folder_moved_away_and_back_stays_watched(tree: Tree) -> None:
    root = Path(tree.root)
    os.rename(root / "a", root / "b")
    os.rename(root / "b", root / "a")  # the same folder (and watch) under its name again
    assert changed(tree) == set()
    (root / "a" / "two.txt").write_text("2")
    assert changed(tree) == {"a/two.txt"}
    os.rename(root / "a", root.parent / "outside")  # out of the tree: what happens there is not ours
    assert changed(tree) == set() and not any(rel.startswith("a/") for rel in tree.files)
    (root.parent / "outside" / "three.txt").write_text("3")
    assert changed(tree) == set()

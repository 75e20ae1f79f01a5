"""Which notebooks one ``binder-autorun run`` executes, where each is written, and the summary.

Everything here is checked before anything is launched, so a typo costs no
Binder build: every notebook is read, every output place checked.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import nbformat

from .errors import BinderAutorunError

#: how a notebook's run can end, in the summary's order
STATES = ("ok", "failed", "interrupted", "terminated", "not run")
#: what a run writes beside a notebook (skipped when a folder is given)
OUTPUT_SUFFIX = ".remote.ipynb"


@dataclass
class Job:
    """One notebook to run: where it is, what it holds, where its executed copy goes."""

    source: Path
    notebook: Any
    output: Path

    @property
    def folder(self) -> Path:
        """The notebook's folder (the local kernel's working directory, --local's default root)."""
        return self.source.resolve().parent


@dataclass
class Outcome:
    """How one notebook's run ended, for the summary and the exit status."""

    source: Path
    state: str  # "ok", "failed", "interrupted", "terminated" or "not run"
    status: int = 0
    cells: str = ""
    seconds: float | None = None
    output: Path | None = None


def plan(paths: list[Path], output: Path | None) -> tuple[list[Job], bool]:
    """The jobs of the command line and whether it is a batch (several notebooks, or a folder)."""
    is_batch = len(paths) > 1 or any(path.is_dir() for path in paths)
    sources: list[Path] = []
    for path in paths:
        for source in notebooks_in(path) if path.is_dir() else [path]:
            if all(source.resolve() != seen.resolve() for seen in sources):
                sources.append(source)
    if not is_batch:
        source = sources[0]
        return [Job(source, read_notebook(source), checked_output(output or _beside(source)))], False
    folder = _output_folder(output) if output is not None else None
    jobs: list[Job] = []
    for source in sources:
        target = folder / (source.stem + OUTPUT_SUFFIX) if folder is not None else _beside(source)
        for job in jobs:
            if job.output.resolve() == target.resolve():
                raise BinderAutorunError(f"{job.source} and {source} would both be written to {target}; run them separately.")
        jobs.append(Job(source, read_notebook(source), checked_output(target)))
    return jobs, True


def notebooks_in(folder: Path) -> list[Path]:
    """A folder's notebooks, sorted: not its outputs (``*.remote.ipynb``), hidden files or checkpoints."""
    found = sorted(
        path for path in folder.glob("*.ipynb")
        if path.is_file() and not path.name.endswith(OUTPUT_SUFFIX) and not path.name.startswith(".")
        and not path.stem.endswith("-checkpoint")
    )
    if not found:
        raise BinderAutorunError(f"{folder} holds no notebooks (*.ipynb) to run.")
    return found


def read_notebook(path: Path) -> Any:
    """The notebook at ``path``, or one sentence saying why it cannot be run."""
    if not path.exists():
        raise BinderAutorunError(f"{path} does not exist; give the path of a notebook (.ipynb).")
    try:
        with path.open(encoding="utf-8") as handle:
            return nbformat.read(handle, as_version=4)
    except OSError as exc:
        raise BinderAutorunError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds for a file that is not a notebook
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise BinderAutorunError(f"{path} is not a Jupyter notebook ({reason.rstrip('.')}).") from None


def checked_output(path: Path) -> Path:
    """``path`` if the executed notebook can be written there, checked before anything runs."""
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise BinderAutorunError(f"-o {path} is a folder; give a file name, like {path / 'out.ipynb'}.")
    if not folder.is_dir():
        raise BinderAutorunError(f"Cannot write {path}: the folder {folder} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise BinderAutorunError(f"Cannot write {path}: permission denied.")
    return path


def _beside(source: Path) -> Path:
    return source.with_name(source.stem + OUTPUT_SUFFIX)


def _output_folder(path: Path) -> Path:
    """``-o DIR`` of a batch: a folder, made if missing (its parent must exist)."""
    if path.exists() and not path.is_dir():
        raise BinderAutorunError(f"-o {path} is a file; with several notebooks -o names a folder to write them into.")
    try:
        path.mkdir(exist_ok=True)
    except OSError as exc:
        raise BinderAutorunError(f"Cannot make the folder {path} for -o: {exc.strerror or exc}.") from None
    return path


def batch_status(outcomes: list[Outcome]) -> int:
    """The command's exit status: a stop's own (130, 143), else 1 if any notebook failed, else 0."""
    for outcome in outcomes:
        if outcome.state in ("interrupted", "terminated"):
            return outcome.status
    return 1 if any(outcome.state == "failed" for outcome in outcomes) else 0


def print_summary(outcomes: list[Outcome], stream: TextIO) -> None:
    """A table of the batch: notebook, status, cells run, time, output."""
    rows = [("notebook", "status", "cells", "time", "output")] + [
        (str(o.source), o.state, o.cells or "-", "-" if o.seconds is None else f"{o.seconds:.1f} s", str(o.output or "-"))
        for o in outcomes
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(4)]
    counts = {state: sum(o.state == state for o in outcomes) for state in STATES}
    tally = ", ".join(f"{count} {state}" for state, count in counts.items() if count)
    stream.write(f"binder-autorun: {len(outcomes)} notebooks: {tally}\n")
    for row in rows:
        stream.write("  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[4] + "\n")
    stream.flush()

"""Holding Ctrl-C for a moment, where an interrupt halfway would lose something."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_held() -> Iterator[None]:
    """Hold SIGINT until the block is done, then raise it (main thread only).

    For steps that must finish once begun: showing one remote message (half of
    it would be lost), starting a process (an interrupt inside ``Popen`` leaves a
    child nobody knows about).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if held:
        raise KeyboardInterrupt

"""One remote kernel session: execute, complete, inspect, interrupt, restart.

A :class:`KernelSession` runs one request at a time on a remote kernel and hands
every message the request causes to an :class:`OutputSink`, in arrival order.
It knows nothing of IPython: the display mirror (``mirror.py``) is one sink, the
tests and benchmarks use others.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import wire
from .channel import Inbox, KernelChannel, Reconnected
from .errors import BinderAutorunError, ConnectionLost
from .interrupts import interrupts_held
from .server import JupyterServer

log = logging.getLogger(__name__)


#: run on an IPython remote (in a throwaway namespace) to move its count forward
_ADVANCE_COUNT = """\
history = ip.history_manager
for inputs in (history.input_hist_parsed, history.input_hist_raw):
    inputs.extend([''] * (n - len(inputs)))
ip.execution_count = n
"""


class OutputSink(Protocol):
    """Where the messages of a remote request go.

    A sink may have a ``relay`` (not None): a
    :class:`~binder_autorun.channel.Relay` that shows plain output from the
    channel's reader thread; the sink then gets only what the relay leaves (and
    the relay says which of those the sink shows, so later output waits for it; its ``seal()``
    is called as the request starts). Without one, a sink may have ``publish_aside(msg)``: show
    a message from another thread. While the user answers a remote ``input()``
    the main thread waits at the prompt, and the remote's output must keep
    flowing (a background thread's print, a progress bar); without either,
    that output waits for the answer.
    """

    def on_message(self, msg: wire.Message) -> None:
        """An iopub message caused by the request (stream, display_data, error, ...)."""

    def on_input(self, prompt: str, password: bool) -> str | None:
        """Answer the remote ``input()``; None means this side cannot provide stdin."""

    def flush(self) -> None:
        """All messages received so far were handed over: make them visible now."""


#: put in an inbox to stop the input pump; whoever reads the inbox after it skips it
_STOP_PUMP = object()

#: seconds a wait for the next remote message lets a Ctrl-C wait (see KernelSession._next)
TAKE_SLICE = 0.05


class _InputPump(threading.Thread):
    """Shows a request's output while the main thread waits for the user's answer.

    It stops at the first message that is not plain output (a status, a reply,
    another input request) and holds it, so the main thread goes on in order.
    """

    def __init__(self, inbox: Inbox, run: _Run, publish: Any) -> None:
        super().__init__(name="binder-autorun-input-pump", daemon=True)
        self.inbox, self.run_state, self.publish = inbox, run, publish

    def run(self) -> None:
        while True:
            event = self.inbox.get()
            if event is _STOP_PUMP:
                return
            if isinstance(event, dict) and wire.parent_id(event) in self.run_state.barriers:
                continue
            if (
                isinstance(event, dict)
                and event.get("channel") == "iopub"
                and wire.parent_id(event) == self.run_state.msg_id
                and wire.msg_type(event) in _OUTPUT_TYPES
            ):
                try:
                    self.publish(event)
                except Exception:  # showing one message must not stop the others
                    log.warning("could not show a remote message while waiting for input", exc_info=True)
                continue
            self.run_state.held.append(event)
            return

    def stop(self) -> None:
        self.inbox.put(_STOP_PUMP)
        self.join()


#: iopub messages that are output (shown where the request's output goes)
_OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "clear_output", "error"})
#: iopub messages the session itself reads and whose handling shows nothing
_BOOKKEEPING = frozenset({"status", "execute_input"})


class _RunRelay:
    """The reader thread's part of one request: the sink's relay takes the request's own
    output; what the session must read (status, counts, replies, input) is left to it."""

    def __init__(self, msg_id: str, relay: Any) -> None:
        self.msg_id, self.relay = msg_id, relay

    def take(self, msg: wire.Message) -> bool:
        return (
            msg.get("channel") == "iopub"
            and wire.parent_id(msg) == self.msg_id
            and wire.msg_type(msg) not in _BOOKKEEPING
            and bool(self.relay.take(msg))
        )

    def hand_over(self, msg: wire.Message) -> bool:
        return bool(self.relay.hand_over(msg))

    def flush(self) -> None:
        self.relay.flush()

    def held_since(self) -> float | None:
        return self.relay.held_since()


@dataclass
class _Run:
    """The state of one request (execute, or a forwarded frontend message) while its messages come in."""

    msg_id: str
    timeout: float | None
    reply: dict[str, Any] | None = None
    idle: bool = False
    interrupted_at: float | None = None
    timed_out: bool = False
    #: the request itself, sent again if the server lost it in a dropped connection
    request: wire.Message | None = None
    #: the remote count of the last stored cell when the request left (an execute that stores history)
    count_before: int | None = None
    #: requests sent after reconnects (queued behind ours), answered in order by ipykernel
    probes: set[str] = field(default_factory=set)
    #: the probe asking the kernel's execution count: did our request run?
    count_probe: str | None = None
    #: sent a second time (it was lost on its way as the connection dropped)
    resent: bool = False
    #: the probe sent when the kernel went idle and no reply followed (ipykernel drops the reply
    #: of a request an interrupt hits outside the cell's code)
    idle_probe: str | None = None
    #: control requests whose IOPub status marks "all output before this point has arrived"
    barriers: set[str] = field(default_factory=set)
    #: messages taken from the inbox by the input pump but left for the main thread
    held: deque[Any] = field(default_factory=deque)
    #: False for a forwarded message (no reply): only its idle ends it, however long the handler runs
    expects_reply: bool = True
    probe_answered: float | None = None
    started: float = field(default_factory=time.monotonic)
    heard: float = field(default_factory=time.monotonic)
    kernel_checked: float = 0.0

    @property
    def deadline(self) -> float | None:
        return self.started + self.timeout if self.timeout else None

    @property
    def finished(self) -> bool:
        return self.reply is not None and self.idle

    def give_up_after(self) -> float | None:
        """When the interrupt grace starts: from the interrupt for a timeout (strict),
        from the last message for a user's interrupt (the kernel may be cleaning up)."""
        if self.interrupted_at is None:
            return None
        return self.interrupted_at if self.timed_out else max(self.interrupted_at, self.heard)


class StopWaiting(BinderAutorunError):
    """The user pressed interrupt twice: stop waiting for a remote cell."""


class KernelSession:
    """A kernel on a Jupyter server, driven over one websocket.

    ``owns_kernel`` says whether we started the kernel (and so may shut it down).
    ``wait_tick`` is how often a waiting request checks the connection is alive;
    it adds no latency (the wait returns as soon as a message arrives).
    ``idle_grace`` bounds the wait for a request's ``idle`` status once its
    reply is in and nothing else arrives (a lost status must not hang a cell);
    ``replay_grace`` is how long a reply may trail a reconnect probe's reply
    (the server replays what it buffered) before it counts as lost. A request
    silent for ``kernel_check_after`` seconds asks the server (at most every
    ``kernel_check_every``) whether the kernel still exists.
    """

    def __init__(
        self,
        server: JupyterServer,
        kernel_id: str,
        owns_kernel: bool = False,
        session_id: str | None = None,
        wait_tick: float = 0.5,
        interrupt_grace: float = 10.0,
        idle_grace: float = 5.0,
        replay_grace: float = 1.0,
        kernel_check_after: float = 2.0,
        kernel_check_every: float = 10.0,
        spec: dict[str, Any] | None = None,
    ) -> None:
        self.server = server
        self.kernel_id = kernel_id
        self.owns_kernel = owns_kernel
        self.wait_tick = wait_tick
        self.interrupt_grace = interrupt_grace
        self.idle_grace = idle_grace
        self.replay_grace = replay_grace
        self.kernel_check_after = kernel_check_after
        self.kernel_check_every = kernel_check_every
        #: the kernelspec the server started the kernel from, when known
        self.spec: dict[str, Any] = dict(spec or {})
        self._kernel_info: dict[str, Any] = {}
        #: a kernel_info request whose reply nobody has needed yet: (inbox, msg_id)
        self._info_pending: tuple[Inbox, str] | None = None
        #: the remote count of the last stored cell
        self.execution_count = 0
        #: the server restarted the kernel since the last cell (crash/OOM): state is lost
        self.restarted_unexpectedly = False
        self.last_activity = time.monotonic()
        self.channel = KernelChannel(server, kernel_id, session_id=session_id, on_kernel_status=self._on_kernel_status)

    def __repr__(self) -> str:
        return f"KernelSession({self.server.url!r}, kernel={self.kernel_id!r}, state={self.channel.state!r})"

    # -- life cycle ---------------------------------------------------------

    @classmethod
    def start(cls, server: JupyterServer, kernel_name: str | None = None, path: str = "", **kwargs: Any) -> KernelSession:
        """Start a new kernel on ``server`` and connect to it.

        ``path`` is the kernel's working directory relative to the server's root
        (the root by default, where a notebook opened there would run).
        """
        model = server.start_kernel(kernel_name, path)
        spec = model.get("spec") or {}
        session = cls(server, model["id"], owns_kernel=True, spec=spec, **kwargs)
        try:
            # a fresh ipykernel needs no handshake before its first request: its count is 0, and the
            # server subscribes IOPub before it passes on our first message (see :meth:`connect`)
            session.connect(wait=not is_ipykernel(spec))
        except BaseException:
            session.shutdown()
            raise
        return session

    @classmethod
    def attach(cls, server: JupyterServer, kernel_id: str, **kwargs: Any) -> KernelSession:
        """Connect to a kernel that already runs on ``server``."""
        if server.kernel(kernel_id) is None:
            raise BinderAutorunError(f"The server at {server.url} has no kernel {kernel_id}; list them at {server.url}api/kernels.")
        session = cls(server, kernel_id, owns_kernel=False, **kwargs)
        try:
            session.connect()
        except BaseException:
            session.close()
            raise
        return session

    def connect(self, wait: bool = True) -> None:
        """Open the websocket, wait until the kernel answers, learn its execution count.

        Without ``wait`` (a kernel we just started, known fresh) the kernel_info request
        goes out and nobody waits for it: jupyter_server passes on a client's first message
        only once its IOPub subscription is live (its "nudge"), so the first execute can
        follow at once and the handshake costs no round trip of its own.
        """
        self.channel.connect()
        if wait:
            self._handshake()
            return
        msg = wire.make_message("kernel_info_request", {}, self.channel.session_id)
        self._info_pending = (self.channel.request(msg), str(msg["header"]["msg_id"]))

    @property
    def kernel_info(self) -> dict[str, Any]:
        """The kernel_info_reply (waits for it if it is still on its way)."""
        if self._info_pending is not None:
            self._receive_kernel_info()
        return self._kernel_info

    @kernel_info.setter
    def kernel_info(self, info: dict[str, Any]) -> None:
        self._kernel_info = info

    def _settle_kernel_info(self) -> None:
        """Take the kernel_info_reply if it is in (shell replies come in order: after the first
        reply, it is), so its request leaves no routing behind."""
        if self._info_pending is None:
            return
        inbox, msg_id = self._info_pending
        while True:
            with interrupts_held():  # taken and kept in one step (see _next)
                try:
                    event = inbox.in_hand if inbox.in_hand is not None else inbox.get_nowait()
                except queue.Empty:
                    return
                inbox.in_hand = None
                if self._took_kernel_info(event, msg_id):
                    return

    def _receive_kernel_info(self, timeout: float = 60.0) -> None:
        """Wait for the pending kernel_info_reply. A wait that ends otherwise (timeout, interrupt,
        lost connection) leaves the request pending: what the spec says still holds meanwhile."""
        assert self._info_pending is not None
        inbox, msg_id = self._info_pending
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self._next(inbox)
            if isinstance(event, Reconnected):  # the request may have been lost with the connection: ask again
                msg = wire.make_message("kernel_info_request", {}, self.channel.session_id)
                self.channel.forget(msg_id)
                self.channel.request(msg, inbox)
                msg_id = str(msg["header"]["msg_id"])
                self._info_pending = (inbox, msg_id)
            elif self._took_kernel_info(event, msg_id):
                return
        raise ConnectionLost(f"The remote kernel at {self.server.url} did not answer within {timeout:g} s; "
                             "it may be stuck, so try %binder_restart.")

    def _took_kernel_info(self, event: Any, msg_id: str) -> bool:
        """Keep ``event`` if it is the pending kernel_info_reply (and stop routing its request)."""
        if not (isinstance(event, dict) and event["channel"] == "shell" and wire.parent_id(event) == msg_id):
            return False
        self._kernel_info = dict(event["content"])
        self._forget_pending_info()
        return True

    @property
    def implementation(self) -> str:
        """The remote kernel's implementation (``ipython`` for ipykernel; known from its spec
        before its kernel_info_reply arrives)."""
        if self._info_pending is not None and is_ipykernel(self.spec):
            return "ipython"
        return str(self.kernel_info.get("implementation", ""))

    @property
    def language(self) -> str:
        """The remote kernel's language (from its spec while its kernel_info_reply is on its way)."""
        if self._info_pending is not None and self.spec.get("language"):
            return str(self.spec["language"])
        return str(self.kernel_info.get("language_info", {}).get("name", ""))

    @property
    def alive(self) -> bool:
        """Whether requests can still be sent."""
        return self.channel.lost is None and self.channel.state != "closed"

    def close(self) -> None:
        """Close the websocket; the remote kernel keeps running."""
        self._forget_pending_info()
        self.channel.close()

    def _forget_pending_info(self) -> None:
        if self._info_pending is not None:
            self.channel.forget(self._info_pending[1])
            self._info_pending = None

    def shutdown(self) -> None:
        """Close and, if we started it, shut the remote kernel down."""
        self._forget_pending_info()
        self.channel.close()
        if self.owns_kernel:
            try:
                self.server.shutdown_kernel(self.kernel_id)
            except BinderAutorunError:
                log.info("could not shut down the remote kernel (server gone?)")

    def interrupt(self) -> None:
        """Interrupt the remote kernel through the server."""
        self.server.interrupt_kernel(self.kernel_id)

    def restart(self) -> None:
        """Restart the remote kernel (state is lost) and re-learn its count."""
        self.server.restart_kernel(self.kernel_id)
        self.wait_ready()

    def wait_ready(self) -> None:
        """After a restart: a new websocket (the kernel may have new ports), then the handshake."""
        self._forget_pending_info()
        self.channel.reopen()
        self._handshake()
        self.restarted_unexpectedly = False

    def _handshake(self, timeout: float = 60.0, attempt: float = 2.0) -> None:
        """Ask kernel_info and the execution count until both are answered and IOPub is live.

        A new websocket gets a new IOPub subscription, and messages published
        before it takes effect are lost (ZeroMQ's slow joiner); a request sent
        while the server swaps in a restarted kernel can be lost too. So both
        requests go out together (one round trip) and are repeated until their
        replies and some IOPub message have arrived. A silent execute's reply
        carries the count of the last stored cell.
        """
        deadline = time.monotonic() + timeout
        while True:
            self._check_usable()
            info_request = wire.make_message("kernel_info_request", {}, self.channel.session_id)
            count_request = self._execute_request("", silent=True, store_history=False)
            inbox = self.channel.request(info_request)
            self.channel.request(count_request, inbox)
            replies: dict[str, dict[str, Any]] = {}
            iopub = False
            until = min(deadline, time.monotonic() + attempt)
            try:
                while time.monotonic() < until and not (len(replies) == 2 and iopub):
                    event = self._next(inbox, tick=max(0.01, until - time.monotonic()))
                    if not isinstance(event, dict):
                        continue
                    if event["channel"] == "shell":
                        replies[str(wire.parent_id(event))] = dict(event["content"])
                    iopub = iopub or event["channel"] == "iopub"
            finally:
                for request in (info_request, count_request):
                    self.channel.forget(request["header"]["msg_id"])
            info = replies.get(info_request["header"]["msg_id"])
            if info is not None:
                self.kernel_info = info
            count = replies.get(count_request["header"]["msg_id"])
            if info is not None and count is not None and iopub:
                self.execution_count = int(count.get("execution_count") or 0)
                return
            if time.monotonic() >= deadline:
                raise ConnectionLost(
                    f"The remote kernel at {self.server.url} did not answer within {timeout:g} s; "
                    "it may be stuck, so try %binder_restart."
                )

    def _on_kernel_status(self, state: str) -> None:
        self.restarted_unexpectedly = True
        if state == "dead":
            self.channel.declare_lost("the kernel died and the server could not restart it")

    # -- requests -----------------------------------------------------------

    def request(self, msg_type: str, content: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
        """A shell request whose reply is all we need (kernel_info, complete, inspect)."""
        self._check_usable()
        msg = wire.make_message(msg_type, content, self.channel.session_id)
        inbox = self.channel.request(msg)
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                event = self._next(inbox)
                if isinstance(event, dict) and event["channel"] == "shell" and wire.msg_type(event).endswith("_reply"):
                    return dict(event["content"])
            raise ConnectionLost(f"The remote kernel did not answer a {msg_type} within {timeout:g} s; it may be busy or stuck.")
        finally:
            self.channel.forget(msg["header"]["msg_id"])

    def complete(self, code: str, cursor_pos: int) -> dict[str, Any]:
        """Tab completion from the remote namespace."""
        return self.request("complete_request", {"code": code, "cursor_pos": cursor_pos}, timeout=10)

    def inspect(self, code: str, cursor_pos: int, detail_level: int = 0) -> dict[str, Any]:
        """``obj?``-style inspection from the remote namespace."""
        return self.request("inspect_request", {"code": code, "cursor_pos": cursor_pos, "detail_level": detail_level}, timeout=10)

    def set_execution_count(self, count: int) -> None:
        """Make the remote's next stored cell take number ``count`` (IPython kernels only).

        Queued without waiting: the shell channel runs requests in order, so the
        next execute sees the new count. Only forward moves, and the remote
        ``In`` list is padded, so ``In[n]`` stays cell n and the remote history
        database never sees a line number twice.
        """
        if self.implementation != "ipython" or count <= self.execution_count + 1:
            return
        code = f"exec({_ADVANCE_COUNT!r}, {{'ip': get_ipython(), 'n': {int(count)}}})"
        self.channel.send(self._execute_request(code, silent=True, store_history=False, stop_on_error=False))  # nobody waits for its reply; the reader drops it
        self.execution_count = count - 1

    def execute(
        self,
        code: str,
        sink: OutputSink | None = None,
        *,
        silent: bool = False,
        store_history: bool = True,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
        timeout: float | None = None,
        msg_id: str | None = None,
        user_expressions: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run ``code`` remotely; stream its messages to ``sink``; return the execute_reply content.

        Finishes when both the reply and the request's ``idle`` status have
        arrived (outputs may follow the reply). A local KeyboardInterrupt
        interrupts the remote kernel and keeps collecting until it answers; a
        second one stops waiting. ``msg_id`` reuses the local request's id (see
        :func:`wire.make_message`).
        """
        self._check_usable()
        msg = self._execute_request(code, silent, store_history, allow_stdin, stop_on_error, msg_id, user_expressions)
        reply = self._collect(msg, sink, timeout)
        if store_history and not silent and reply.get("execution_count"):
            self.execution_count = int(reply["execution_count"])
        self._settle_kernel_info()
        return reply

    def forward(self, msg: wire.Message, sink: OutputSink | None = None) -> None:
        """Send a frontend's message that expects no reply (a comm message) and hand what it
        causes to ``sink`` until the kernel is idle again, as a native kernel is busy while it
        handles it (a widget frontend waits for that idle before it sends the next update)."""
        self._check_usable()
        self._collect(msg, sink, None, expect_reply=False)

    def _collect(self, msg: wire.Message, sink: OutputSink | None, timeout: float | None, expect_reply: bool = True) -> dict[str, Any]:
        """Send ``msg``; hand its messages to ``sink`` until its reply (if expected) and idle are in."""
        msg_id = str(msg["header"]["msg_id"])
        relay = getattr(sink, "relay", None)
        if relay is not None:
            # a batch late output opened may not take this request's first messages: they must go
            # out after what this thread sent before (the local busy and execute_input)
            relay.seal()
        inbox = self.channel.request(msg, Inbox(_RunRelay(msg_id, relay) if relay is not None else None))
        run = _Run(msg_id, timeout, reply=None if expect_reply else {}, expects_reply=expect_reply, request=msg,
                   count_before=self.execution_count if _stores_history(msg) else None)
        try:
            while not run.finished:
                try:
                    self._step(run, inbox, sink)
                except KeyboardInterrupt:
                    if run.interrupted_at is not None:
                        raise StopWaiting(
                            "Stopped waiting for the remote cell after a second interrupt; it may still be running "
                            "there, so use %binder_restart if it stays busy."
                        ) from None
                    self._interrupt(run)
        finally:
            if sink is not None:
                try:
                    sink.flush()  # the main thread's own streams; forget() below flushes the text the
                except Exception:  # reader's relay holds, before the request's end is shown
                    log.warning("could not show the last output of a remote request", exc_info=True)
            for msg_id in (run.msg_id, *run.probes, *run.barriers):
                self.channel.forget(msg_id)
            self.last_activity = time.monotonic()
        reply = run.reply
        assert reply is not None
        if run.timed_out:
            reply["timed_out"] = True
        if run.interrupted_at is not None:
            reply["interrupted"] = True  # a helper's call (not the mirror) re-raises it once the reply is in
        return reply

    def _step(self, run: _Run, inbox: Inbox, sink: OutputSink | None) -> None:
        """Take the next message of a running execute (or handle a quiet tick).

        A Ctrl-C lands while waiting, never halfway through handling a message
        (which would lose it): during handling it is held and raised after —
        except while the user answers ``input()``, which Ctrl-C must cancel.
        """
        event = self._next(inbox, run.give_up_after(), held=run.held, keep=True)
        run.heard = max(run.heard, inbox.heard)  # output the reader relayed counts as heard
        if isinstance(event, dict) and event.get("channel") == "stdin":
            inbox.handled(event)  # given to the user: a Ctrl-C from here on cancels the prompt
            self._handle(run, inbox, sink, event)
            return
        with interrupts_held():  # until handled it stays in hand: the next step takes it again
            self._handle(run, inbox, sink, event)
            inbox.handled(event)

    def _catch_up_step(self, run: _Run, inbox: Inbox, sink: OutputSink, barrier_id: str, deadline: float) -> bool:
        """Take one message during :meth:`_catch_up`; whether the output barrier is in."""
        event = self._next(inbox, tick=max(0.01, deadline - time.monotonic()), keep=True)
        with interrupts_held():
            if isinstance(event, dict) and wire.parent_id(event) == barrier_id:
                inbox.handled(event)
                return event["channel"] == "iopub" and wire.msg_type(event) == "status"
            if isinstance(event, dict) and event["channel"] != "iopub":
                run.held.append(event)  # not output: the main loop takes it after the prompt
            elif event is not None:
                self._handle(run, inbox, sink, event)
            inbox.handled(event)
        return False

    def _handle(self, run: _Run, inbox: Inbox, sink: OutputSink | None, event: wire.Message | Reconnected | None) -> None:
        now = time.monotonic()
        if run.deadline is not None and run.interrupted_at is None and now > run.deadline:
            log.info("cell ran past its timeout; interrupting the remote kernel")
            run.timed_out = True
            self._interrupt(run)
        if isinstance(event, Reconnected):
            if self.implementation == "ipython":  # ipykernel answers shell requests in order
                self._probe(run, inbox)
            return
        if event is None:
            self._on_quiet(run, inbox, now)
            return
        if isinstance(event, BinderAutorunError):
            raise event  # held by the input pump
        run.heard = now
        channel, kind, parent = event["channel"], wire.msg_type(event), wire.parent_id(event)
        if parent in run.probes:
            if channel == "shell" and parent == run.count_probe:
                self._on_count(run, event)
            elif channel == "shell" and parent == run.idle_probe:
                if run.reply is None:  # answered in order: our reply will never come
                    run.reply = self._no_reply(run)
            elif channel == "shell":
                run.probe_answered = now
        elif parent in run.barriers:
            pass
        elif channel == "shell" and kind.endswith("_reply"):
            run.reply = dict(event["content"])
        elif channel == "stdin" and kind == "input_request":
            self._answer_input(run, inbox, sink, event)
        elif channel == "iopub":
            if kind == "status":
                run.idle = event["content"].get("execution_state") == "idle"
            elif kind == "execute_input":
                self.execution_count = int(event["content"].get("execution_count") or self.execution_count)
            if sink is not None:
                sink.on_message(event)
                if inbox.empty():
                    sink.flush()  # caught up: show streamed output now, batch it while busy

    def _on_quiet(self, run: _Run, inbox: Inbox, now: float) -> None:
        """Nothing arrived for a tick: decide whether the cell is over or the kernel gone."""
        if run.expects_reply and run.reply is not None and now - run.heard > self.idle_grace:
            log.info("no idle status %.0f s after the reply; taking the cell as finished", self.idle_grace)
            run.idle = True
        elif run.probe_answered is not None and run.reply is None and now - run.probe_answered > self.replay_grace:
            self._reply_missing(run, inbox, now)
        elif (run.probe_answered is not None and not run.expects_reply and not run.idle
              and run.msg_id not in inbox.heard_from and now - run.probe_answered > self.replay_grace):
            self._forward_missing(run)
        elif run.idle and run.reply is None and run.idle_probe is None and self.implementation == "ipython":
            run.idle_probe = self._probe(run, inbox)  # idle a tick ago and no reply: did the kernel drop it?
        elif (
            now - run.heard > self.kernel_check_after
            and now - run.kernel_checked > self.kernel_check_every
            and now - self.channel.last_activity < self.channel.ping_after + self.channel.pong_timeout
        ):
            # a kernel shut down (culled, or by another client) leaves a healthy websocket silent;
            # an unhealthy one is the channel's to judge (pings), so no REST call then
            run.kernel_checked = now
            try:
                gone = self.server.kernel(self.kernel_id, timeout=2) is None
            except BinderAutorunError:
                return  # unreachable: the channel's own liveness checks decide
            if gone:
                self.channel.declare_lost("the server no longer has the kernel (it was shut down or culled)")

    def _reply_missing(self, run: _Run, inbox: Inbox, now: float) -> None:
        """A probe sent after a reconnect was answered and our reply never came: the server lost
        the reply, or lost the request itself (one sent as the connection dropped never reaches
        the kernel). When the kernel never spoke of the request, its execution count tells which."""
        if run.count_probe is None and run.count_before is not None and run.msg_id not in inbox.heard_from:
            run.count_probe = self._probe(run, inbox, count=True)
            run.probe_answered = now  # its answer is due within replay_grace too
            return
        if run.msg_id in inbox.heard_from:
            raise _result_lost()
        raise ConnectionLost(  # a request that takes no number, or a count probe left unanswered
            "The connection dropped as this request was sent and the server kept no trace of it, so it may or "
            "may not have run remotely; check its effects before running it again."
        )

    def _forward_missing(self, run: _Run) -> None:
        """A forwarded frontend message (a widget event) the kernel answered a later probe before
        saying anything of: it never arrived. Sent once more; if lost again, given up (never a hang)."""
        assert run.request is not None
        run.probe_answered = None
        if run.resent:
            log.warning("a %s was lost twice as the connection dropped; giving it up", wire.msg_type(run.request))
            run.idle = True
            return
        log.info("a %s was lost on its way as the connection dropped; sending it again", wire.msg_type(run.request))
        run.resent = True
        self.channel.send(run.request)

    def _no_reply(self, run: _Run) -> dict[str, Any]:
        """The reply for a request the kernel finished without one (after an interrupt, as
        ipykernel does when the interrupt lands outside the cell's code)."""
        if run.interrupted_at is not None:
            log.info("the remote kernel was interrupted and ended the request without a reply")
            ename, evalue = "KeyboardInterrupt", "the remote kernel was interrupted and ended this cell without a reply"
        else:
            log.warning("the remote kernel went idle without replying to a request")
            ename, evalue = "KernelError", ("the remote kernel ended this request without a reply (its log may say why); "
                                            "check the cell's effects before running it again")
        return {"status": "error", "ename": ename, "evalue": evalue, "traceback": [], "execution_count": self.execution_count}

    def _on_count(self, run: _Run, reply: wire.Message) -> None:
        """The count probe's answer: send our request again if the kernel never ran it."""
        found = (reply["content"].get("user_expressions") or {}).get("n") or {}
        text = str(found.get("data", {}).get("text/plain", "")) if reply["content"].get("status") == "ok" else ""
        assert run.count_before is not None and run.request is not None
        if not text.isdigit() or int(text) > run.count_before + 1:  # the next count moved on (or aborted): it ran
            raise _result_lost()
        log.info("the server lost this cell's request when the connection dropped; sending it again")
        run.count_probe, run.probe_answered = None, None
        self.channel.send(run.request)

    def _interrupt(self, run: _Run) -> None:
        run.interrupted_at = time.monotonic()
        log.info("forwarding an interrupt to the remote kernel")
        try:
            self.interrupt()
        except KeyboardInterrupt:
            raise StopWaiting("Stopped waiting for the remote cell after a second interrupt.") from None

    # -- internals ----------------------------------------------------------

    def _check_usable(self) -> None:
        if self.channel.lost is not None:
            raise self.channel.lost
        if self.channel.state == "closed":
            raise ConnectionLost("This remote session was closed; connect again with %binder_on.")

    def _next(self, inbox: Inbox, quiet_since: float | None = None, tick: float | None = None,
              held: deque[Any] | None = None, keep: bool = False) -> wire.Message | Reconnected | None:
        """The next message (first from ``held``), or None after a quiet tick; raise what ended the stream.

        The message moves into ``inbox.in_hand`` as one step a Ctrl-C cannot split (it
        waits in slices, taken at most :data:`TAKE_SLICE` late): the C call that gives a
        message up is followed by an interrupt check, and a message held only in a local
        variable there would be lost. With ``keep`` it stays in hand until the caller has
        handled it (and calls :meth:`Inbox.handled`). ``quiet_since`` (set once interrupted) starts
        the ``interrupt_grace`` after which a silent kernel is given up on.
        """
        deadline = time.monotonic() + (tick or self.wait_tick)
        while inbox.in_hand is None:
            with interrupts_held():
                if held:
                    inbox.in_hand = held.popleft()
                    break
                try:
                    inbox.in_hand = inbox.get(timeout=max(0.0, min(TAKE_SLICE, deadline - time.monotonic())))
                except queue.Empty:
                    if time.monotonic() < deadline:
                        continue
                    break
        event = inbox.in_hand
        if event is None:
            self.channel.check_alive()
            if quiet_since is not None and time.monotonic() - quiet_since > self.interrupt_grace:
                raise StopWaiting(
                    f"The remote kernel sent nothing for {self.interrupt_grace:g} s after the interrupt; "
                    "stopped waiting, so use %binder_restart if it stays busy."
                ) from None
            return None
        if not keep or isinstance(event, BinderAutorunError) or event is _STOP_PUMP:
            inbox.in_hand = None
        if isinstance(event, BinderAutorunError):
            raise event
        if event is _STOP_PUMP:
            return None
        return event

    def _execute_request(
        self,
        code: str,
        silent: bool = False,
        store_history: bool = True,
        allow_stdin: bool = False,
        stop_on_error: bool = True,
        msg_id: str | None = None,
        user_expressions: dict[str, str] | None = None,
    ) -> wire.Message:
        content = {"code": code, "silent": silent, "store_history": store_history, "user_expressions": user_expressions or {},
                   "allow_stdin": allow_stdin, "stop_on_error": stop_on_error}
        return wire.make_message("execute_request", content, self.channel.session_id, msg_id=msg_id)

    def _probe(self, run: _Run, inbox: Inbox, count: bool = False) -> str:
        """Ask kernel_info into ``inbox`` (one of ``run``'s probes): the kernel answers shell requests
        in order, so its reply arriving before our execute_reply means that reply was lost. With
        ``count``, a silent execute asking the number the next stored cell will take."""
        if count:
            msg = self._execute_request("", silent=True, store_history=False, stop_on_error=False,
                                        user_expressions={"n": "get_ipython().execution_count"})
        else:
            msg = wire.make_message("kernel_info_request", {}, self.channel.session_id)
        msg_id = str(msg["header"]["msg_id"])
        run.probes.add(msg_id)
        self.channel.request(msg, inbox)
        return msg_id

    def _answer_input(self, run: _Run, inbox: Inbox, sink: OutputSink | None, request: wire.Message) -> None:
        """Ask the local user, with what the remote wrote before asking on screen first,
        and its later output flowing while the user types."""
        try:
            value = self._ask(run, inbox, sink, request["content"])
        finally:
            _prompt_over(sink)  # before the answer lets the remote go on
        if value is None:
            value = "\x04"  # the remote raises EOFError instead of waiting forever
        reply = wire.make_message("input_reply", {"value": value}, self.channel.session_id, channel="stdin", parent=request)
        self.channel.send(reply)

    def _ask(self, run: _Run, inbox: Inbox, sink: OutputSink | None, content: dict[str, Any]) -> str | None:
        """Catch up with the output before the prompt, then ask the user."""
        if sink is not None:
            # ipykernel answers a control request with a status on IOPub; give other kernels less time
            self._catch_up(run, inbox, sink, timeout=2.0 if self.implementation == "ipython" else 0.3)
            sink.flush()
        publish = getattr(sink, "publish_aside", None)
        relayed = getattr(sink, "relay", None) is not None  # the reader shows output meanwhile
        pump = _InputPump(inbox, run, publish) if publish is not None and not relayed else None
        if pump is not None:
            pump.start()
        try:
            return sink.on_input(str(content.get("prompt", "")), bool(content.get("password"))) if sink else None
        finally:
            if pump is not None:
                pump.stop()

    def _catch_up(self, run: _Run, inbox: Inbox, sink: OutputSink, timeout: float = 2.0) -> None:
        """Take in the output the remote sent before an input request.

        The server may deliver the input request (stdin) before output printed
        just before it (iopub). A control-channel request is a barrier: the
        kernel publishes its status on IOPub behind that output, so once the
        status is in, so is everything written before the prompt.
        """
        barrier = wire.make_message("kernel_info_request", {}, self.channel.session_id, channel="control")
        barrier_id = str(barrier["header"]["msg_id"])
        run.barriers.add(barrier_id)
        try:
            self.channel.request(barrier, inbox)
        except BinderAutorunError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._catch_up_step(run, inbox, sink, barrier_id, deadline):
                return
        log.info("the kernel did not answer the output barrier within %.0f s; asking anyway", timeout)


def _prompt_over(sink: OutputSink | None) -> None:
    """Tell the sink's relay (if it minds, see OutputRelay.at_prompt) the prompt is over."""
    over = getattr(getattr(sink, "relay", None), "prompt_over", None)
    if over is not None:
        over()


def is_ipykernel(spec: dict[str, Any]) -> bool:
    """Whether a kernelspec runs ipykernel (``python -m ipykernel_launcher``, as its own spec does)."""
    argv = [str(arg) for arg in spec.get("argv") or []]
    return spec.get("language") == "python" and any(arg in ("ipykernel_launcher", "ipykernel") for arg in argv)


def _stores_history(msg: wire.Message) -> bool:
    """Whether ``msg`` is an execute that takes a number (so the kernel's count shows whether it ran)."""
    content = msg.get("content") or {}
    return wire.msg_type(msg) == "execute_request" and bool(content.get("store_history")) and not content.get("silent")


def _result_lost() -> ConnectionLost:
    return ConnectionLost(
        "The connection dropped just as this cell finished and the server lost its result; "
        "the cell did run remotely, so check its effects before running it again."
    )

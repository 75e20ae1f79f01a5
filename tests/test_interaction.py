"""Notebook interaction through a real local kernel: %%local, off/resume, stdin,
interrupt, completion, inspection, payloads, errors, and bad inputs."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer

from .kernel_driver import LocalKernel, routed_kernel, wrap_remote_execute


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[LocalKernel]:
    local = LocalKernel(tmp_path)
    yield local
    local.shutdown()


@pytest.fixture
def routed(remote_server: LocalServer, tmp_path: Path) -> Iterator[LocalKernel]:
    """A local kernel in remote mode on the shared server (token via the environment)."""
    local = routed_kernel(tmp_path, remote_server.url, remote_server.token)
    yield local
    local.shutdown()


def _pid(result_text: str) -> int:
    return int(result_text.strip().splitlines()[-1])


@pytest.mark.timeout(60)
def test_local_cells_and_off_resume(routed: LocalKernel) -> None:
    local_pid = os.getpid()
    remote = routed.execute("import os\nremote_pid = os.getpid()\nprint(remote_pid)")
    local = routed.execute("%%local\nimport os\nprint(os.getpid())")
    assert remote.reply["status"] == local.reply["status"] == "ok"
    assert _pid(remote.stdout) != _pid(local.stdout) != local_pid
    # the kernel of the local notebook never saw remote_pid
    assert routed.execute("%%local\n'remote_pid' in globals()").of("execute_result")[0]["data"]["text/plain"] == "False"

    assert routed.execute("%binder_off").reply["status"] == "ok"
    off = routed.execute("remote_pid")
    assert off.reply["status"] == "error" and off.reply["ename"] == "NameError"

    assert routed.execute("%binder_on").reply["status"] == "ok"  # resume the same kernel
    back = routed.execute("remote_pid")
    assert back.of("execute_result")[0]["data"]["text/plain"] == str(_pid(remote.stdout))


@pytest.mark.timeout(60)
def test_counts_stay_one_sequence_with_local_cells(routed: LocalKernel) -> None:
    counts = []
    for code in ["1", "%%local\n2", "3", "%%local\n4", "5"]:
        result = routed.execute(code)
        counts.append(result.reply["execution_count"])
        assert result.of("execute_result")[0]["execution_count"] == result.reply["execution_count"]
    assert counts == list(range(counts[0], counts[0] + 5))
    # the remote kernel numbered its own cells in the same sequence
    assert routed.execute("In[%d]" % counts[2]).of("execute_result")[0]["data"]["text/plain"] == "'3'"


@pytest.mark.timeout(60)
def test_input_and_getpass_answered_locally(routed: LocalKernel) -> None:
    result = routed.execute("name = input('name? ')\nprint('hello', name)", answers=["Ada"])
    assert [p["prompt"] for p in result.prompts] == ["name? "]
    assert result.stdout == "hello Ada\n"
    secret = routed.execute("import getpass\nlen(getpass.getpass('pw: '))", answers=["s3cret"])
    assert secret.prompts[0]["password"] is True
    assert secret.of("execute_result")[0]["data"]["text/plain"] == "6"


@pytest.mark.timeout(60)
def test_input_without_stdin_fails_like_native(routed: LocalKernel, kernel: LocalKernel) -> None:
    routed_result = routed.execute("input('x? ')", allow_stdin=False)
    native_result = kernel.execute("input('x? ')", allow_stdin=False)
    assert routed_result.reply["status"] == native_result.reply["status"] == "error"
    assert routed_result.reply["ename"] == native_result.reply["ename"] == "StdinNotImplementedError"


@pytest.mark.timeout(60)
def test_interrupt_stops_the_remote_cell(routed: LocalKernel) -> None:
    result = routed.execute("import time\nprint('sleeping', flush=True)\ntime.sleep(30)", interrupt_after=1.5, timeout=20)
    assert result.seconds < 1.5 + 2.0, "the remote cell was not interrupted within a second or two"
    assert result.reply["status"] == "error" and result.reply["ename"] == "KeyboardInterrupt"
    assert result.of("error")[0]["ename"] == "KeyboardInterrupt"
    assert "sleeping" in result.stdout
    assert routed.execute("'still usable'").of("execute_result")[0]["data"]["text/plain"] == "'still usable'"


#: an interrupt landing outside the cell's code (held in a sleep before it) makes ipykernel end the
#: request with no reply, only an idle status
_PRELUDE = wrap_remote_execute(hold_on="PRELUDE", fail_on="NOREPLY")


@pytest.mark.timeout(60)
def test_interrupt_the_kernel_drops_the_reply_of_still_ends_the_cell(routed: LocalKernel) -> None:
    assert routed.execute(_PRELUDE).reply["status"] == "ok"
    result = routed.execute("'PRELUDE'", interrupt_after=1.0, timeout=20)
    assert result.seconds < 1.0 + 3.0, "the cell waited past the kernel's idle for a reply that never comes"
    assert result.reply["status"] == "error" and result.reply["ename"] == "KeyboardInterrupt"
    assert "interrupted and ended this cell without a reply" in result.of("error")[0]["traceback"][0]
    assert routed.execute("'still usable'").of("execute_result")[0]["data"]["text/plain"] == "'still usable'"


@pytest.mark.timeout(60)
def test_request_the_kernel_never_answers_fails_in_one_sentence(routed: LocalKernel) -> None:
    assert routed.execute(_PRELUDE).reply["status"] == "ok"
    result = routed.execute("'NOREPLY'", timeout=20)
    assert result.seconds < 3.0
    assert result.reply["status"] == "error" and result.reply["ename"] == "KernelError"
    assert "ended this request without a reply" in result.of("error")[0]["traceback"][0]
    assert routed.execute("'still usable'").of("execute_result")[0]["data"]["text/plain"] == "'still usable'"


@pytest.mark.timeout(60)
def test_completion_and_inspection_come_from_the_remote(routed: LocalKernel) -> None:
    routed.execute("remote_only_variable_xyz = 12345\ndef remote_fn(alpha, beta):\n    'Remote docstring.'")
    # a cold completer (jedi's first import) on a loaded machine can outlast the 10 s we wait for a
    # remote completion: that first Tab then answers nothing, as JupyterLab's own 1 s provider timeout would
    assert routed.complete("remote_only_var")["status"] == "ok"
    reply = routed.complete("remote_only_var")
    assert "remote_only_variable_xyz" in reply["matches"]
    assert reply["cursor_start"] == 0 and reply["cursor_end"] == len("remote_only_var")
    info = routed.inspect("remote_fn", 3)
    assert info["found"] is True
    assert "Remote docstring." in info["data"]["text/plain"]
    # a %%local cell's namespace is not what completion sees while remote mode is on
    routed.execute("%%local\nlocal_only_variable_abc = 1")
    assert "local_only_variable_abc" not in routed.complete("local_only_var")["matches"]


@pytest.mark.timeout(60)
def test_pager_payload_reaches_the_local_frontend(routed: LocalKernel) -> None:
    routed.execute("def documented():\n    'Docs from the remote side.'")
    result = routed.execute("documented?")
    assert result.reply["status"] == "ok"
    pages = [p for p in result.reply["payload"] if p["source"] == "page"]
    assert pages and "Docs from the remote side." in pages[0]["data"]["text/plain"]


@pytest.mark.timeout(60)
def test_error_stops_and_shown_traceback_does_not(routed: LocalKernel) -> None:
    failed = routed.execute("print('before')\nraise ValueError('remote boom')")
    assert failed.reply["status"] == "error"
    assert (failed.reply["ename"], failed.reply["evalue"]) == ("ValueError", "remote boom")
    errors = failed.of("error")
    assert len(errors) == 1 and errors[0]["ename"] == "ValueError"
    assert any("remote boom" in line for line in errors[0]["traceback"])
    assert failed.reply["traceback"] == errors[0]["traceback"]
    shown = routed.execute("try:\n    1/0\nexcept ZeroDivisionError:\n    get_ipython().showtraceback()\nprint('after')")
    assert shown.reply["status"] == "ok"
    assert [kind for kind, _ in shown.outputs] == ["error", "stream"]


@pytest.mark.timeout(60)
def test_messages_of_other_clients_do_not_leak(routed: LocalKernel, remote_server: LocalServer) -> None:
    from binder_autorun.server import JupyterServer
    from binder_autorun.session import KernelSession

    kernel_id = routed.execute("%%local\nget_ipython().binder_autorun_kernel = __import__('binder_autorun')._autorun.session.kernel_id\nprint(get_ipython().binder_autorun_kernel)").stdout.strip()
    other = KernelSession.attach(JupyterServer(remote_server.info), kernel_id)
    try:
        import threading

        noise = threading.Thread(target=other.execute, args=("for i in range(50):\n    print('NOISE', i)\n    __import__('time').sleep(0.01)",))
        noise.start()
        result = routed.execute("import time\nfor i in range(5):\n    print('mine', i)\n    time.sleep(0.05)")
        noise.join(10)
    finally:
        other.close()
    assert "NOISE" not in result.text
    assert result.stdout == "".join(f"mine {i}\n" for i in range(5))


@pytest.mark.timeout(60)
def test_status_never_shows_the_token(routed: LocalKernel, remote_server: LocalServer) -> None:
    status = routed.execute("%binder_status")
    assert remote_server.url in status.stdout
    assert "connected" in status.stdout
    assert remote_server.token not in status.text


# -- bad inputs: one clear sentence, fast, no token -------------------------


def _magic_error(kernel: LocalKernel, code: str) -> tuple[str, float]:
    kernel.execute("%load_ext binder_autorun")
    started = time.monotonic()
    result = kernel.execute(code, timeout=30)
    assert result.reply["status"] == "error", result.text
    errors = result.of("error")
    assert len(errors) == 1
    traceback = "\n".join(errors[0]["traceback"])
    assert len(errors[0]["traceback"]) == 1, f"a Python traceback was shown: {traceback}"
    return traceback, time.monotonic() - started


@pytest.mark.timeout(60)
def test_unreachable_url(kernel: LocalKernel) -> None:
    message, seconds = _magic_error(kernel, "%binder_on --url http://127.0.0.1:9/user/x/ --token SECRETTOKEN123")
    assert "Could not reach the Jupyter server at http://127.0.0.1:9/user/x/" in message
    assert "SECRETTOKEN123" not in message
    assert seconds < 10


@pytest.mark.timeout(60)
def test_wrong_token(kernel: LocalKernel, remote_server: LocalServer) -> None:
    message, _ = _magic_error(kernel, f"%binder_on --url {remote_server.url} --token WRONGTOKEN987")
    assert "rejected the token (HTTP 403)" in message
    assert "WRONGTOKEN987" not in message and remote_server.token not in message


@pytest.mark.timeout(60)
def test_unknown_kernel_name(kernel: LocalKernel, remote_server: LocalServer) -> None:
    message, _ = _magic_error(kernel, f"%binder_on --url {remote_server.url} --token {remote_server.token} --kernel-name nosuch")
    assert "no kernel named 'nosuch'" in message and "python3" in message
    assert remote_server.token not in message


@pytest.mark.timeout(60)
def test_binder_on_twice(routed: LocalKernel, remote_server: LocalServer) -> None:
    result = routed.execute(f"%binder_on --url {remote_server.url}")
    assert result.reply["status"] == "error"
    assert "already on" in "\n".join(result.of("error")[0]["traceback"])
    assert routed.execute("1 + 1").of("execute_result")[0]["data"]["text/plain"] == "2"


@pytest.mark.timeout(60)
def test_magics_have_help(kernel: LocalKernel) -> None:
    kernel.execute("%load_ext binder_autorun")
    for magic in ("binder_on", "binder_off", "binder_status"):
        result = kernel.execute(f"%{magic} -h")
        assert result.reply["status"] == "ok"
        assert f"%{magic} [-h]" in result.text and "Show this help." in result.text


@pytest.mark.timeout(60)
def test_unexpected_failure_in_a_magic_never_quotes_its_line(kernel: LocalKernel) -> None:
    kernel.execute("%load_ext binder_autorun")
    kernel.execute("import binder_autorun\nbinder_autorun._autorun.connect_url = lambda *args, **kwargs: 1 / 0")
    message, _ = _magic_error(kernel, "%binder_on --url http://127.0.0.1:9/ --token SECRETINLINE77")
    assert "failed unexpectedly (ZeroDivisionError)" in message
    assert "SECRETINLINE77" not in message


@pytest.mark.timeout(60)
def test_reattaching_the_same_kernel_keeps_it(routed: LocalKernel) -> None:
    routed.execute("kept_here = 'yes'")
    kernel_id = routed.execute("%%local\nprint(__import__('binder_autorun')._autorun.session.kernel_id)").stdout.strip()
    url = routed.execute("%%local\nprint(__import__('binder_autorun')._autorun.session.server.url)").stdout.strip()
    assert routed.execute("%binder_off").reply["status"] == "ok"
    assert routed.execute(f"%binder_on --url {url} --kernel-id {kernel_id}").reply["status"] == "ok"
    assert routed.execute("kept_here", timeout=10).of("execute_result")[0]["data"]["text/plain"] == "'yes'"


@pytest.mark.timeout(60)
def test_token_typed_in_a_magic_is_hidden_from_history_and_errors(kernel: LocalKernel, remote_server: LocalServer) -> None:
    kernel.execute("%load_ext binder_autorun")
    mistyped = kernel.execute(f"%binder_on --url {remote_server.url} --tokn {remote_server.token}")
    assert mistyped.reply["status"] == "error"
    assert remote_server.token not in mistyped.text + repr(mistyped.reply)
    connected = kernel.execute(f"%binder_on --url {remote_server.url} --token {remote_server.token}")
    assert connected.reply["status"] == "ok"
    history = kernel.execute("%%local\n%history -n -t\n%history -n -g binder_on").stdout
    assert "--token <hidden>" in history
    assert remote_server.token not in history


@pytest.mark.timeout(60)
def test_local_server_dies_with_a_killed_notebook_kernel(kernel: LocalKernel, tmp_path: Path) -> None:
    kernel.execute("%load_ext binder_autorun")
    assert kernel.execute(f"%binder_on --local {tmp_path}", timeout=60).reply["status"] == "ok"
    pid = int(kernel.execute("%%local\nprint(__import__('binder_autorun')._autorun.local_server.process.pid)").stdout)
    os.kill(kernel.km.provisioner.process.pid, signal.SIGKILL)  # no atexit, no cleanup of ours runs
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()

"""IPython startup file for the JupyterLab kernels: a log of the kernel's messages.

Copied into the lab's ``IPYTHONDIR`` (``profile_default/startup``). Every message
a kernel receives on shell and control, and every comm / status message it sends,
is appended as one JSON line to ``$BROWSER_KERNEL_LOG_DIR/<pid>.jsonl``, so tests
(and people) can see what JupyterLab's widget manager really sends on page load,
reload and kernel restart. Only the local JupyterLab kernels run this.
"""


def _install_message_log() -> None:
    import json
    import os
    import time

    directory = os.environ.get("BROWSER_KERNEL_LOG_DIR")
    ip = get_ipython()  # type: ignore[name-defined]  # noqa: F821
    kernel = getattr(ip, "kernel", None)
    if not directory or kernel is None:
        return
    path = os.path.join(directory, f"{os.getpid()}.jsonl")

    def write(direction: str, channel: str, msg: dict) -> None:
        content = msg.get("content", {})
        entry = {
            "t": round(time.time(), 3), "dir": direction, "channel": channel,
            "msg_type": msg.get("header", {}).get("msg_type"), "msg_id": msg.get("header", {}).get("msg_id"),
            "parent_msg_id": (msg.get("parent_header") or {}).get("msg_id"),
            "content": json.loads(json.dumps(content, default=repr)),
            "buffers": len(msg.get("buffers") or []),
        }
        text = json.dumps(entry)
        if len(text) > 4000:
            entry["content"] = json.dumps(entry["content"])[:3000] + "…"
            text = json.dumps(entry)
        with open(path, "a") as file:
            file.write(text + "\n")

    def wrap(handler, channel):  # type: ignore[no-untyped-def]
        def logged(*args):  # type: ignore[no-untyped-def]
            try:
                write("in", channel, args[-1])
            except Exception:  # a log must never break the kernel
                pass
            return handler(*args)
        return logged

    for table, channel in ((kernel.shell_handlers, "shell"), (kernel.control_handlers, "control")):
        for msg_type, handler in list(table.items()):
            table[msg_type] = wrap(handler, channel)

    session = kernel.session
    original_send = session.send

    def send(stream, msg_or_type, content=None, parent=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        msg = original_send(stream, msg_or_type, content, parent, *args, **kwargs)
        try:
            msg_type = (msg or {}).get("header", {}).get("msg_type", "")
            if msg_type.startswith("comm_") or msg_type in ("status", "execute_reply", "comm_info_reply", "kernel_info_reply", "shutdown_reply"):
                write("out", "iopub" if msg_type.startswith("comm_") or msg_type == "status" else "reply", msg)
        except Exception:
            pass
        return msg

    session.send = send


_install_message_log()
del _install_message_log

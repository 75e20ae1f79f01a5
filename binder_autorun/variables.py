"""Variables across the boundary: ``%binder_push -v df threshold``, ``%binder_pull -v result``.

Values are encoded by one codec (:data:`CODEC`, Python source run on both sides, so
the remote needs nothing installed): JSON-like data (None, bool, int, float, str,
bytes, list, tuple, dict, set), numpy arrays and scalars (the ``.npy`` format:
dtype, shape and raw bytes, read back with ``allow_pickle=False``), pandas
Series, DataFrames and Indexes (each column as a numpy array, categorical codes,
timezone-aware int64 or a list of plain values with its dtype's name). Decoding
only ever builds data: nothing received runs code — except with ``--pickle``,
which is for other objects and says whom it trusts.

The encoded bytes travel through the kernel channel in base64 chunks (silent
executes, like :class:`~binder_autorun.transfer.KernelTransport`), so this needs a
Python remote kernel but no contents API.
"""

from __future__ import annotations

import base64
import json
import re
import types
from typing import Any

from .errors import BinderAutorunError
from .transfer import KERNEL_CHUNK, KernelCallError, KernelHelper, human

#: the codec, run as source in a private module on both sides
CODEC = r'''
import io as _io, json as _json, struct as _struct
MAGIC = b"BAV1"

class NotTransferable(TypeError):
    pass

def _npy(arr, buffers):
    import numpy as np
    arr = np.asarray(arr)
    if arr.dtype.hasobject:
        raise NotTransferable("a numpy array of Python objects (dtype object) is not plain data")
    out = _io.BytesIO()
    np.save(out, arr, allow_pickle=False)
    buffers.append(out.getvalue())
    return len(buffers) - 1

def _from_npy(index, buffers):
    import numpy as np
    return np.load(_io.BytesIO(buffers[index]), allow_pickle=False)

def _type_name(value):
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__

def enc(value, buffers, pickle_ok=False):
    if value is None or isinstance(value, (bool, str)):
        return value
    if type(value) in (int, float):
        return value  # Python's json keeps big ints, -0.0, nan and inf
    if type(value) in (list, tuple, set, frozenset):
        return {"$": type(value).__name__, "v": [enc(item, buffers, pickle_ok) for item in value]}
    if type(value) is dict:
        return {"$": "dict", "k": [enc(k, buffers, pickle_ok) for k in value], "v": [enc(v, buffers, pickle_ok) for v in value.values()]}
    if type(value) in (bytes, bytearray):
        buffers.append(bytes(value))
        return {"$": type(value).__name__, "b": len(buffers) - 1}
    module = type(value).__module__.split(".")[0]
    try:
        if module == "numpy":
            import numpy as np
            if isinstance(value, np.ndarray) and type(value) is np.ndarray:
                return {"$": "ndarray", "b": _npy(value, buffers)}
            if isinstance(value, np.generic):
                return {"$": "npscalar", "b": _npy(np.asarray(value), buffers)}
        if module == "pandas":
            import pandas as pd
            if isinstance(value, pd.DataFrame):
                return {"$": "dataframe", "columns": _enc_index(value.columns, buffers, pickle_ok),
                        "index": _enc_index(value.index, buffers, pickle_ok),
                        "cols": [_enc_col(value.iloc[:, i], buffers, pickle_ok) for i in range(value.shape[1])],
                        "attrs": enc(dict(value.attrs), buffers, pickle_ok)}
            if isinstance(value, pd.Series):
                return {"$": "series", "name": enc(value.name, buffers, pickle_ok), "index": _enc_index(value.index, buffers, pickle_ok),
                        "values": _enc_col(value, buffers, pickle_ok)}
            if isinstance(value, pd.Index):
                return _enc_index(value, buffers, pickle_ok)
            if isinstance(value, (pd.Timestamp, pd.Timedelta)) and not isinstance(value, type(pd.NaT)):
                return {"$": "pdscalar", "v": _enc_col(pd.Series([value]), buffers, pickle_ok)}
    except NotTransferable:
        if not pickle_ok:
            raise
    if pickle_ok:
        import pickle
        buffers.append(pickle.dumps(value, protocol=4))
        return {"$": "pickle", "b": len(buffers) - 1}
    raise NotTransferable(f"an object of type {_type_name(value)} is not plain data (JSON types, bytes, numpy, pandas)")

def _enc_index(index, buffers, pickle_ok):
    import pandas as pd
    name = enc(index.name, buffers, pickle_ok) if not isinstance(index, pd.MultiIndex) else None
    if isinstance(index, pd.RangeIndex):
        return {"$": "range", "start": index.start, "stop": index.stop, "step": index.step, "name": name}
    if isinstance(index, pd.MultiIndex):
        return {"$": "multi", "levels": [_enc_col(index.get_level_values(i), buffers, pickle_ok) for i in range(index.nlevels)],
                "names": [enc(n, buffers, pickle_ok) for n in index.names]}
    return {"$": "index", "values": _enc_col(index, buffers, pickle_ok), "name": name}

def _enc_col(values, buffers, pickle_ok):
    import numpy as np
    import pandas as pd
    dtype = values.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        cat = values.array if hasattr(values, "array") else values
        return {"$": "cat", "codes": _npy(np.asarray(cat.codes), buffers),
                "categories": _enc_index(cat.categories, buffers, pickle_ok), "ordered": bool(dtype.ordered)}
    if isinstance(dtype, pd.DatetimeTZDtype):
        naive = pd.Series(values).dt.tz_convert("UTC").dt.tz_localize(None)
        return {"$": "tz", "tz": str(dtype.tz), "b": _npy(naive.to_numpy(), buffers)}
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return {"$": "npy", "b": _npy(values.to_numpy(), buffers)}
    items = []
    for item in values.tolist() if isinstance(dtype, np.dtype) else list(values):
        if item is pd.NA or item is pd.NaT or (isinstance(item, float) and item != item):
            items.append({"$": "na", "v": "NaT" if item is pd.NaT else "NA" if item is pd.NA else "nan"})
        else:
            items.append(enc(item.item() if hasattr(item, "item") and type(item).__module__ == "numpy" else item, buffers, pickle_ok))
    return {"$": "list", "dtype": str(dtype), "v": items}

def _dec_col(node, buffers):
    import numpy as np
    import pandas as pd
    kind = node["$"]
    if kind == "npy":
        return _from_npy(node["b"], buffers)
    if kind == "cat":
        return pd.Categorical.from_codes(_from_npy(node["codes"], buffers), dtype=pd.CategoricalDtype(
            _dec_index(node["categories"], buffers), ordered=node["ordered"]))
    if kind == "tz":
        return pd.DatetimeIndex(_from_npy(node["b"], buffers)).tz_localize("UTC").tz_convert(node["tz"]).array
    values = [_dec_na(item) if isinstance(item, dict) and item.get("$") == "na" else dec(item, buffers) for item in node["v"]]
    if node["dtype"] == "object":
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return out
    return pd.array(values, dtype=pd.api.types.pandas_dtype(node["dtype"]))

def _dec_na(item):
    import pandas as pd
    return {"NaT": pd.NaT, "NA": pd.NA}.get(item["v"], float("nan"))

def _dec_index(node, buffers):
    import pandas as pd
    if node["$"] == "range":
        return pd.RangeIndex(node["start"], node["stop"], node["step"], name=dec(node["name"], buffers))
    if node["$"] == "multi":
        return pd.MultiIndex.from_arrays([_dec_col(level, buffers) for level in node["levels"]],
                                         names=[dec(n, buffers) for n in node["names"]])
    values = _dec_col(node["values"], buffers)
    return pd.Index(values, name=dec(node["name"], buffers), dtype=getattr(values, "dtype", None), copy=False)

def dec(node, buffers):
    if not isinstance(node, dict):
        return node
    kind = node["$"]
    if kind in ("list", "tuple", "set", "frozenset") and "dtype" not in node:
        items = [dec(item, buffers) for item in node["v"]]
        return {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[kind](items)
    if kind == "dict":
        return dict(zip([dec(k, buffers) for k in node["k"]], [dec(v, buffers) for v in node["v"]]))
    if kind in ("bytes", "bytearray"):
        return (bytes if kind == "bytes" else bytearray)(buffers[node["b"]])
    if kind == "ndarray":
        return _from_npy(node["b"], buffers)
    if kind == "npscalar":
        return _from_npy(node["b"], buffers)[()]
    if kind == "pickle":
        if not PICKLE_OK[0]:
            raise NotTransferable("it was sent pickled, and unpickling was not allowed here")
        import pickle
        return pickle.loads(buffers[node["b"]])
    import pandas as pd
    if kind == "dataframe":
        index, columns = _dec_index(node["index"], buffers), _dec_index(node["columns"], buffers)
        frame = pd.DataFrame({i: _dec_col(col, buffers) for i, col in enumerate(node["cols"])}, index=index)
        if not node["cols"]:
            frame = pd.DataFrame(index=index, columns=columns)
        frame.columns = columns
        frame.attrs.update(dec(node["attrs"], buffers))
        return frame
    if kind == "series":
        return pd.Series(_dec_col(node["values"], buffers), index=_dec_index(node["index"], buffers), name=dec(node["name"], buffers), copy=False)
    if kind in ("range", "multi", "index"):
        return _dec_index(node, buffers)
    if kind == "pdscalar":
        return pd.Series(_dec_col(node["v"], buffers))[0]
    raise NotTransferable(f"unknown encoding {kind!r}")

PICKLE_OK = [False]

def dumps(value, pickle_ok=False):
    buffers = []
    tree = enc(value, buffers, pickle_ok)
    head = _json.dumps({"v": tree, "sizes": [len(b) for b in buffers]}).encode()
    return b"".join([MAGIC, _struct.pack("<Q", len(head)), head, *buffers])

def loads(data, pickle_ok=False):
    if data[:4] != MAGIC:
        raise NotTransferable("the data is not in binder_autorun's format")
    (size,) = _struct.unpack("<Q", data[4:12])
    head = _json.loads(data[12:12 + size])
    buffers, offset = [], 12 + size
    for length in head["sizes"]:
        buffers.append(data[offset:offset + length])
        offset += length
    PICKLE_OK[0] = pickle_ok
    try:
        return dec(head["v"], buffers)
    finally:
        PICKLE_OK[0] = False
'''

#: the remote side: the codec plus a buffer per transfer, in a private module
REMOTE_VARS = CODEC + r'''
import base64 as _b64, secrets as _sec, sys as _sys, types as _types
_store = {}
def export(ns, name, pickle_ok):
    if name not in ns:
        raise NameError(f"name {name!r} is not defined")
    data = dumps(ns[name], pickle_ok)
    token = _sec.token_hex(8)
    _store[token] = data
    return _json.dumps({"token": token, "size": len(data)})
def take(token, offset, n):
    return _b64.b64encode(_store[token][offset:offset + n]).decode("ascii")
def begin():
    token = _sec.token_hex(8)
    _store[token] = bytearray()
    return token
def put(token, data):
    _store[token] += _b64.b64decode(data)
    return "ok"
def assign(ns, name, token, pickle_ok):
    try:
        ns[name] = loads(bytes(_store[token]), pickle_ok)
    finally:
        _store.pop(token, None)
    return "ok"
def drop(token):
    _store.pop(token, None)
    return "ok"
_m = _types.ModuleType("_binder_autorun_vars")
_m.__dict__.update({k: v for k, v in globals().items() if not k.startswith("__")})
_sys.modules["_binder_autorun_vars"] = _m
'''

_codec = types.ModuleType("binder_autorun._codec")
exec(compile(CODEC, "<binder_autorun codec>", "exec"), _codec.__dict__)
NotTransferable: type[Exception] = _codec.NotTransferable

#: what --pickle trusts, said once per use
TRUST = {
    "push": "--pickle: the remote kernel unpickles what you send (your own objects); pickle can run code, so only the "
            "receiving side takes a risk, and here that is the remote kernel trusting you.",
    "pull": "--pickle: this local kernel unpickles what the remote kernel sends, which can run any code the remote "
            "chose; use it only with a remote kernel you trust.",
}


class VariableError(BinderAutorunError):
    """A variable could not cross; the message names it and says why."""


def dumps(value: Any, pickle_ok: bool = False) -> bytes:
    """Encode a value (raises NotTransferable for what needs pickle)."""
    return bytes(_codec.dumps(value, pickle_ok))


def loads(data: bytes, pickle_ok: bool = False) -> Any:
    """Decode a value; without ``pickle_ok`` a pickled part is refused."""
    return _codec.loads(data, pickle_ok)


def _helper(session: Any) -> KernelHelper:
    return KernelHelper(session, module="_binder_autorun_vars", source=REMOTE_VARS)


def _remote_reason(exc: KernelCallError, name: str) -> str:
    if exc.ename == "NameError":
        return f"The remote kernel has no variable {name!r}."
    if exc.ename in ("ModuleNotFoundError", "ImportError"):
        found = re.search(r"No module named '([^'.]+)|import of ([\w.]+) halted", exc.evalue)
        missing = next((group for group in found.groups() if group), exc.evalue) if found else exc.evalue
        return f"Cannot move {name!r}: the remote kernel lacks {missing} (install it there)."
    if exc.ename == "NotTransferable":
        return f"Cannot pull {name!r}: {exc.evalue}; add --pickle to send it pickled ({TRUST['pull'].split(': ', 1)[1]})"
    return f"Cannot move {name!r}: the remote kernel failed ({exc.ename}: {exc.evalue})."


def push_variables(session: Any, namespace: dict[str, Any], names: list[str], pickle_ok: bool = False) -> list[str]:
    """Copy ``names`` from ``namespace`` into the remote kernel's namespace; return one line per variable."""
    helper = _helper(session)
    lines = []
    for name in names:
        _check_identifier(name)
        if name not in namespace:
            raise VariableError(f"There is no local variable {name!r}.")
        try:
            data = dumps(namespace[name], pickle_ok)
        except NotTransferable as exc:
            raise VariableError(f"Cannot push {name!r}: {exc}; add --pickle to send it pickled.") from None
        except ModuleNotFoundError as exc:
            raise VariableError(f"Cannot push {name!r}: this kernel lacks {exc.name}.") from None
        try:
            token = helper.call("begin")
            for start in range(0, len(data), KERNEL_CHUNK):
                helper.call("put", token, base64.b64encode(data[start:start + KERNEL_CHUNK]).decode("ascii"))
            _assign(helper, name, token, pickle_ok)
        except KernelCallError as exc:
            raise VariableError(_remote_reason(exc, name)) from None
        lines.append(f"{name} ({type(namespace[name]).__name__}, {human(len(data))})")
    return lines


def _assign(helper: KernelHelper, name: str, token: str, pickle_ok: bool) -> None:
    expression = f"__import__('sys').modules['_binder_autorun_vars'].assign(globals(), {name!r}, {token!r}, {pickle_ok!r})"
    reply = helper.session.execute("", None, silent=True, store_history=False, user_expressions={"r": expression})
    helper._check(reply, "r")


def pull_variables(session: Any, namespace: dict[str, Any], names: list[str], pickle_ok: bool = False) -> list[str]:
    """Copy ``names`` from the remote kernel's namespace into ``namespace``; return one line per variable."""
    helper = _helper(session)
    lines = []
    for name in names:
        _check_identifier(name)
        try:
            helper.call("drop", "-")  # installs the helper if needed
            expression = f"__import__('sys').modules['_binder_autorun_vars'].export(globals(), {name!r}, {pickle_ok!r})"
            reply = session.execute("", None, silent=True, store_history=False, user_expressions={"r": expression})
            info = json.loads(helper._check(reply, "r"))
            chunks = []
            try:
                for offset in range(0, info["size"], KERNEL_CHUNK):
                    chunks.append(base64.b64decode(helper.call("take", info["token"], offset, KERNEL_CHUNK)))
            finally:
                helper.call("drop", info["token"])
        except KernelCallError as exc:
            raise VariableError(_remote_reason(exc, name)) from None
        data = b"".join(chunks)
        try:
            value = loads(data, pickle_ok)
        except NotTransferable as exc:
            raise VariableError(f"Cannot pull {name!r}: {exc}.") from None
        except ModuleNotFoundError as exc:
            raise VariableError(f"Cannot pull {name!r}: this kernel lacks {exc.name} (install it here).") from None
        namespace[name] = value
        lines.append(f"{name} ({type(value).__name__}, {human(len(data))})")
    return lines


def _check_identifier(name: str) -> None:
    if not name.isidentifier():
        raise VariableError(f"{name!r} is not a variable name.")


__all__ = ["CODEC", "TRUST", "VariableError", "dumps", "loads", "push_variables", "pull_variables", "NotTransferable"]

"""Variables across the boundary without pickle: the codec round-trips JSON-like data, numpy
arrays (dtype, shape, bytes) and pandas objects (dtypes included); nothing received is
unpickled unless allowed; push/pull through a real remote kernel name the variable on error."""

from __future__ import annotations

import fractions
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from binder_autorun.launch import LocalServer
from binder_autorun.server import JupyterServer
from binder_autorun.session import KernelSession
from binder_autorun.variables import NotTransferable, VariableError, dumps, loads, pull_variables, push_variables

FRAME = pd.DataFrame(
    {
        "int": [1, 2, 3],
        "float": [0.5, np.nan, -0.0],
        "str": ["a", None, "ç"],
        "bool": [True, False, True],
        "nullable": pd.array([1, None, 3], dtype="Int64"),
        "boolean": pd.array([True, None, False], dtype="boolean"),
        "when": pd.to_datetime(["2024-01-01 00:00", None, "2024-03-01 12:00"]),
        "tz": pd.date_range("2024-01-01", periods=3, tz="Europe/Paris"),
        "delta": pd.to_timedelta([1, 2, None], unit="s"),
        "cat": pd.Categorical(["lo", "hi", "lo"], categories=["lo", "hi"], ordered=True),
        "mixed": [{"k": [1, 2]}, (1, "x"), None],
        "u8": np.array([1, 2, 255], dtype=np.uint8),
    },
    index=pd.Index(["r1", "r2", "r3"], name="row"),
)

VALUES: list[Any] = [
    None, True, 0, 2**100, -1.5, float("inf"), "text", b"\x00\xff", bytearray(b"ab"),
    [1, [2, (3, {4})]], {"a": 1, 2: "b", (1, 2): None, None: frozenset({1})},
    np.arange(24, dtype=">f8").reshape(2, 3, 4), np.asfortranarray(np.ones((3, 2), dtype=np.int16)),
    np.zeros(3, dtype=[("x", "<f4"), ("y", "S3")]), np.array(["ab", "c"]), np.datetime64("2024-01-01T10:00"),
    np.float32(1.25), np.int64(-7), np.array(5),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_plain_data_and_numpy_round_trip(value: Any) -> None:
    back = loads(dumps(value))
    assert type(back) is type(value)
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape and back.tobytes(order="A") == value.tobytes(order="A")
        assert back.flags.f_contiguous == value.flags.f_contiguous
    elif isinstance(value, np.generic):
        assert back == value and back.dtype == value.dtype
    else:
        assert back == value


def test_pandas_round_trip_keeps_dtypes() -> None:
    back = loads(dumps(FRAME))
    pd.testing.assert_frame_equal(back, FRAME)
    assert back.dtypes.to_dict() == FRAME.dtypes.to_dict()
    series = pd.Series([1.5, 2.5], index=pd.MultiIndex.from_tuples([("a", 1), ("b", 2)], names=["k", "n"]), name="s")
    pd.testing.assert_series_equal(loads(dumps(series)), series)
    duplicate = pd.DataFrame(np.eye(2), columns=["a", "a"], index=pd.RangeIndex(10, 12))
    pd.testing.assert_frame_equal(loads(dumps(duplicate)), duplicate)
    empty = pd.DataFrame(index=pd.RangeIndex(0))
    pd.testing.assert_frame_equal(loads(dumps(empty)), empty)
    pd.testing.assert_index_equal(loads(dumps(pd.Index([3, 1], name="i"))), pd.Index([3, 1], name="i"), exact=True)


def test_other_objects_need_pickle_and_received_pickle_is_refused_by_default() -> None:
    with pytest.raises(NotTransferable, match="fractions.Fraction"):
        dumps(fractions.Fraction(1, 3))
    with pytest.raises(NotTransferable, match="dtype object"):
        dumps(np.array([object()], dtype=object))
    pickled = dumps(fractions.Fraction(1, 3), pickle_ok=True)
    with pytest.raises(NotTransferable, match="unpickling was not allowed"):
        loads(pickled)  # what a hostile sender crafts is not unpickled
    assert loads(pickled, pickle_ok=True) == fractions.Fraction(1, 3)
    with pytest.raises(NotTransferable):
        loads(b"not ours")


@pytest.fixture(scope="module")
def session(remote_server: LocalServer) -> Iterator[KernelSession]:
    session = KernelSession.start(JupyterServer(remote_server.info), "python3")
    yield session
    session.shutdown()


def remote_value(session: KernelSession, expression: str) -> str:
    reply = session.execute("", None, silent=True, store_history=False, user_expressions={"r": expression})
    return str(reply["user_expressions"]["r"]["data"]["text/plain"])


@pytest.mark.timeout(60)
def test_push_and_pull_through_a_remote_kernel(session: KernelSession) -> None:
    big = np.random.default_rng(0).random((1000, 1000))  # 8 MB: several chunks
    local: dict[str, Any] = {"df": FRAME, "threshold": 0.25, "big": big, "cfg": {"a": [1, 2]}}
    lines = push_variables(session, local, ["df", "threshold", "big", "cfg"])
    assert lines[0].startswith("df (DataFrame,") and len(lines) == 4
    assert remote_value(session, "str(df.dtypes.to_dict()) == " + repr(str(FRAME.dtypes.to_dict()))) == "True"
    assert remote_value(session, "float(big.sum())") == repr(float(big.sum()))
    session.execute("result = df[df['float'] > threshold]; doubled = big * 2", None, silent=True, store_history=False)
    back: dict[str, Any] = {}
    pull_variables(session, back, ["result", "doubled", "cfg"])
    pd.testing.assert_frame_equal(back["result"], FRAME[FRAME["float"] > 0.25])
    assert back["doubled"].tobytes() == (big * 2).tobytes() and back["cfg"] == {"a": [1, 2]}


@pytest.mark.timeout(60)
def test_errors_name_the_variable_and_why(session: KernelSession) -> None:
    with pytest.raises(VariableError, match=r"^There is no local variable 'missing'\.$"):
        push_variables(session, {}, ["missing"])
    with pytest.raises(VariableError, match=r"^The remote kernel has no variable 'absent_here'\.$"):
        pull_variables(session, {}, ["absent_here"])
    with pytest.raises(VariableError, match=r"^Cannot push 'f': .*fractions\.Fraction.*--pickle"):
        push_variables(session, {"f": fractions.Fraction(1, 2)}, ["f"])
    with pytest.raises(VariableError, match="is not a variable name"):
        push_variables(session, {}, ["os.system"])
    session.execute("import threading\nlock = threading.Lock()", None, silent=True, store_history=False)
    with pytest.raises(VariableError, match=r"^Cannot pull 'lock': .*_thread.lock.*--pickle"):
        pull_variables(session, {}, ["lock"])
    # a remote without pandas: the remote's import fails, the error says so
    name = f"frame_{uuid.uuid4().hex[:6]}"
    session.execute("import sys\n_saved_pandas = sys.modules.pop('pandas'); sys.modules['pandas'] = None", None, silent=True, store_history=False)
    try:
        with pytest.raises(VariableError, match=rf"^Cannot move '{name}': the remote kernel lacks pandas"):
            push_variables(session, {name: FRAME}, [name])
    finally:
        session.execute("sys.modules['pandas'] = _saved_pandas", None, silent=True, store_history=False)
    assert push_variables(session, {"f": fractions.Fraction(1, 2)}, ["f"], pickle_ok=True)
    assert remote_value(session, "f * 2") == "Fraction(1, 1)"

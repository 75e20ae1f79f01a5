"""%binder_push / %binder_pull from a real local ipykernel in remote mode on a real
jupyter_server (base_url /user/someone/): files both ways with sha256 checks, the magics
stay local, errors are one sentence without the token; variables without pickle."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from binder_autorun.launch import LocalServer
from binder_autorun.router import stays_local

from .kernel_driver import LocalKernel, Result, routed_kernel


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def local_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "notebook-folder"
    folder.mkdir()
    return folder


@pytest.fixture
def routed(remote_server: LocalServer, local_dir: Path) -> Iterator[LocalKernel]:
    kernel = routed_kernel(local_dir, remote_server.url, remote_server.token)
    yield kernel
    kernel.shutdown()


def ok(result: Result) -> Result:
    assert result.reply["status"] == "ok", result.text
    return result


def value(result: Result) -> str:
    return str(ok(result).of("execute_result")[0]["data"]["text/plain"])


def one_sentence(result: Result, remote_server: LocalServer) -> str:
    assert result.reply["status"] == "error"
    (error,) = result.of("error")
    assert len(error["traceback"]) == 1, error["traceback"]
    assert remote_server.token not in result.text
    return str(error["evalue"])


def test_push_and_pull_magics_stay_local() -> None:
    assert stays_local(["%binder_push data.csv --to x"]) and stays_local(["%binder_pull -v result"])


@pytest.mark.timeout(90)
@pytest.mark.parametrize("transport", ["", "kernel"])
def test_files_cross_both_ways_from_a_notebook(routed: LocalKernel, remote_server: LocalServer, local_dir: Path, transport: str) -> None:
    option = f" --transport {transport}" if transport else ""
    top = f"nb-{uuid.uuid4().hex[:6]}"
    (local_dir / top / "images").mkdir(parents=True)
    (local_dir / top / "raw").mkdir()
    (local_dir / top / "data.csv").write_text("x,y\n1,2\n3,4\n")
    (local_dir / top / "images" / "a.png").write_bytes(os.urandom(50_000))
    (local_dir / top / "raw" / "1.json").write_text("[1]")
    (local_dir / top / "raw" / "skip.txt").write_text("no")
    result = ok(routed.execute(f"%binder_push {top}/data.csv {top}/images/ '{top}/raw/*.json'{option}"))
    assert "binder_autorun: pushed 3 files" in result.text and "0 skipped as unchanged" in result.text
    root = remote_server.root_dir
    for rel in ("data.csv", "images/a.png", "raw/1.json"):
        assert sha(root / top / rel) == sha(local_dir / top / rel)
    assert not (root / top / "raw" / "skip.txt").exists()
    # the remote kernel reads what was pushed, with the same relative path
    assert value(routed.execute(f"open('{top}/data.csv').read().count(chr(10))")) == "3"
    assert "3 skipped as unchanged" in ok(routed.execute(f"%binder_push {top}/data.csv {top}/images/ '{top}/raw/*.json'{option}")).text

    # the remote cell writes results; pull them into a local folder
    ok(routed.execute(
        f"import os\nos.makedirs('{top}/results/deep', exist_ok=True); os.makedirs('{top}/figs', exist_ok=True)\n"
        f"open('{top}/results/deep/out.bin', 'wb').write(bytes(range(256)) * 1000)\n"
        f"open('{top}/figs/f.png', 'wb').write(b'png'); open('{top}/figs/f.txt', 'w').write('no')"
    ))
    result = ok(routed.execute(f"%binder_pull {top}/results/ '{top}/figs/*.png' --to downloads{option}"))
    assert "binder_autorun: pulled 2 files" in result.text
    assert sha(local_dir / "downloads" / top / "results" / "deep" / "out.bin") == sha(root / top / "results" / "deep" / "out.bin")
    assert (local_dir / "downloads" / top / "figs" / "f.png").read_bytes() == b"png"
    assert not (local_dir / "downloads" / top / "figs" / "f.txt").exists()
    assert remote_server.token not in result.text

    # errors: one sentence, no token, and the session keeps working
    assert "no remote file or folder 'missing.txt'" in one_sentence(routed.execute(f"%binder_pull missing.txt{option}"), remote_server)
    assert "no local file or folder 'gone.csv'" in one_sentence(routed.execute(f"%binder_push gone.csv{option}"), remote_server)
    assert value(routed.execute("1 + 1")) == "2"


@pytest.mark.timeout(90)
def test_variables_cross_without_pickle(routed: LocalKernel, remote_server: LocalServer) -> None:
    ok(routed.execute(
        "%%local\nimport numpy as np, pandas as pd\n"
        "df = pd.DataFrame({'x': [0.1, 0.7, 0.9], 'n': pd.array([1, None, 3], dtype='Int64'), 's': ['a', None, 'c'],"
        " 'when': pd.date_range('2024-01-01', periods=3, tz='UTC'), 'c': pd.Categorical(['u', 'v', 'u'])})\n"
        "threshold = 0.5\narr = np.arange(12, dtype='<u2').reshape(3, 4)\nmeta = {'name': 'run', 'ids': (1, 2), 'ok': None}"
    ))
    result = ok(routed.execute("%binder_push -v df threshold arr meta"))
    assert "binder_autorun: pushed df (DataFrame" in result.text
    assert value(routed.execute("str(df.dtypes.to_dict())")) == value(routed.execute("%%local\nstr(df.dtypes.to_dict())"))
    assert value(routed.execute("(arr.dtype.str, arr.shape, int(arr.sum()), meta['ids'])")) == "('<u2', (3, 4), 66, (1, 2))"
    ok(routed.execute("result = df[df.x > threshold]\nscores = arr * 2"))
    ok(routed.execute("%binder_pull -v result scores"))
    ok(routed.execute("%%local\npd.testing.assert_frame_equal(result, df[df.x > threshold])\nassert (scores == arr * 2).all() and scores.dtype == arr.dtype"))

    # errors name the variable and say why
    assert "no local variable 'nope'" in one_sentence(routed.execute("%binder_push -v nope"), remote_server)
    assert "remote kernel has no variable 'nothere'" in one_sentence(routed.execute("%binder_pull -v nothere"), remote_server)
    ok(routed.execute("%%local\nimport fractions\nfrac = fractions.Fraction(1, 3)"))
    message = one_sentence(routed.execute("%binder_push -v frac"), remote_server)
    assert "'frac'" in message and "fractions.Fraction" in message and "--pickle" in message
    ok(routed.execute("gen = (i for i in range(3))"))
    message = one_sentence(routed.execute("%binder_pull -v gen"), remote_server)
    assert "'gen'" in message and "--pickle" in message
    # --pickle works and says what it trusts
    result = ok(routed.execute("%binder_push -v frac --pickle"))
    assert "remote kernel unpickles" in result.text
    assert value(routed.execute("frac * 3")) == "Fraction(1, 1)"

"""Notebook parameters as papermill takes, writes and records them.

So a notebook made for ``papermill`` runs unchanged under ``binder-autorun run``:
the same options (``-p``, ``-f``, ``-y``, ``-b``, ``--parameters_raw``), typed
and merged in papermill's order, injected as a cell tagged
``injected-parameters`` in the code papermill's translators write (without
black's reformatting), and recorded under ``metadata.papermill``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import math
from datetime import datetime, timezone
from pathlib import Path
from collections.abc import Callable
from typing import Any

import nbformat

from .errors import BinderAutorunError

#: the tags papermill reads and writes
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
#: the comment heading the injected cell, as papermill writes it
COMMENT = "Parameters"


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """papermill's parameter options (its ``-r`` is ``--parameters_raw``; here ``-r`` stays the repository)."""
    parser.add_argument("-p", "--parameters", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="A parameter, typed as papermill types it: int, float, True/False, None, else a string.")
    parser.add_argument("--parameters_raw", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="A parameter kept as a string (papermill's -r; here -r is the repository).")
    parser.add_argument("-f", "--parameters_file", action="append", default=[], metavar="FILE",
                        help="A YAML (or JSON) file of parameters.")
    parser.add_argument("-y", "--parameters_yaml", action="append", default=[], metavar="YAML",
                        help="Parameters as a YAML mapping.")
    parser.add_argument("-b", "--parameters_base64", action="append", default=[], metavar="BASE64",
                        help="Parameters as a base64-encoded YAML mapping.")


def collect(args: argparse.Namespace) -> dict[str, Any]:
    """The parameters of the command line, merged in papermill's order (base64, files, YAML, -p, raw)."""
    merged: dict[str, Any] = {}
    for text in args.parameters_base64:
        try:
            decoded = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BinderAutorunError("-b/--parameters_base64 is not base64-encoded UTF-8 text.") from None
        merged.update(_mapping(decoded, "-b/--parameters_base64"))
    for name in args.parameters_file:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except OSError as exc:
            raise BinderAutorunError(f"Cannot read the parameters file {name}: {exc.strerror or exc}.") from None
        merged.update(_mapping(text, f"The parameters file {name}"))
    for text in args.parameters_yaml:
        merged.update(_mapping(text, "-y/--parameters_yaml"))
    for name, value in args.parameters:
        merged[name] = resolve_type(value)
    for name, value in args.parameters_raw:
        merged[name] = value
    return merged


def resolve_type(value: str) -> Any:
    """papermill's ``-p`` typing: True, False, None, an int, a float, else the string itself."""
    if value in ("True", "False"):
        return value == "True"
    if value == "None":
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _mapping(text: str, what: str) -> dict[str, Any]:
    """YAML read as papermill reads it (dates stay strings); empty is no parameters."""
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        raise BinderAutorunError("Reading YAML parameters needs PyYAML: pip install 'binder_autorun[cli]'.") from None

    class NoDatesSafeLoader(yaml.SafeLoader):
        """papermill's loader: a safe loader that leaves dates as strings."""

    NoDatesSafeLoader.yaml_implicit_resolvers = {
        key: [resolver for resolver in resolvers if resolver[0] != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    try:
        value = yaml.load(text, Loader=NoDatesSafeLoader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        reason = str(getattr(exc, "problem", "") or exc).strip().splitlines()[0]
        raise BinderAutorunError(f"{what} is not valid YAML ({reason}).") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BinderAutorunError(f"{what} must be a mapping of names to values, not a {type(value).__name__}.")
    return value


# -- translation: papermill's translators, for the languages a Binder commonly serves ----------------------------


def _escaped(value: Any) -> str:
    """A double-quoted string literal, escaped as papermill escapes it (valid in Python, R and Julia)."""
    text = value.encode("unicode_escape").decode("utf-8").replace('"', r"\"") if isinstance(value, str) else value
    return f'"{text}"'


def _python(value: Any) -> str:
    if isinstance(value, str):
        return _escaped(value)
    if value is None or isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return str(value)
        return "float('nan')" if math.isnan(value) else "float('-inf')" if value < 0 else "float('inf')"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_escaped(key)}: {_python(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_python(item) for item in value) + "]"
    return _escaped(value)


def _r(value: Any) -> str:
    if isinstance(value, str):
        return _escaped(value)
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "list(" + ", ".join(f"{_escaped(key)} = {_r(item)}" for key, item in value.items()) + ")"
    if isinstance(value, list):
        return "list(" + ", ".join(_r(item) for item in value) + ")"
    return _escaped(value)


def _julia(value: Any) -> str:
    if isinstance(value, str):
        return _escaped(value)
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        return "Dict(" + ", ".join(f"{_escaped(key)} => {_julia(item)}" for key, item in value.items()) + ")"
    if isinstance(value, list):
        return "[" + ", ".join(_julia(item) for item in value) + "]"
    return _escaped(value)


def _r_name(name: str) -> str:
    """R names cannot start with '_': papermill drops the leading ones."""
    return name.lstrip("_")


#: language (as kernels name it in language_info, lower-cased) -> (literal writer, name writer)
TRANSLATORS: dict[str, tuple[Callable[[Any], str], Callable[[str], str]]] = {"python": (_python, str), "r": (_r, _r_name), "julia": (_julia, str)}


def codify(parameters: dict[str, Any], language: str) -> str:
    """The injected cell's source, as papermill writes it for ``language``."""
    translator = TRANSLATORS.get(language.lower())
    if translator is None:
        raise BinderAutorunError(
            f"Parameters cannot be written in {language or 'an unnamed language'}: binder-autorun writes them in Python, R and Julia."
        )
    literal, name = translator
    return f"# {COMMENT}\n" + "".join(f"{name(str(key))} = {literal(value)}\n" for key, value in parameters.items())


def notebook_language(notebook: Any) -> str:
    """The notebook's own language (for a notebook that connects itself): kernelspec, else language_info."""
    metadata = notebook.metadata
    return str(metadata.get("kernelspec", {}).get("language") or metadata.get("language_info", {}).get("name") or "python")


def inject(notebook: Any, parameters: dict[str, Any], language: str) -> bool:
    """Insert (or replace) the ``injected-parameters`` cell as papermill does; False if there was no ``parameters`` cell."""
    cell = nbformat.v4.new_code_cell(codify(parameters, language))
    cell.metadata["tags"] = [INJECTED_TAG]
    injected = _first_tagged(notebook, INJECTED_TAG)
    given = _first_tagged(notebook, PARAMETERS_TAG)
    if injected >= 0:
        notebook.cells[injected] = cell
    else:
        notebook.cells.insert(given + 1, cell)  # given is -1 without a parameters cell: the top
    papermill = notebook.metadata.setdefault("papermill", {})
    papermill.update(default_parameters={}, parameters=parameters, environment_variables={})
    return injected >= 0 or given >= 0


def record_run(notebook: Any, input_path: Path, output_path: Path, started: datetime, failed: bool) -> None:
    """The run's paths and times in ``metadata.papermill``, as papermill records them."""
    ended = datetime.now(timezone.utc)
    notebook.metadata.setdefault("papermill", {}).update(
        input_path=str(input_path), output_path=str(output_path),
        start_time=started.isoformat(), end_time=ended.isoformat(),
        duration=(ended - started).total_seconds(), exception=True if failed else None,
    )


def _first_tagged(notebook: Any, tag: str) -> int:
    for index, cell in enumerate(notebook.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return -1

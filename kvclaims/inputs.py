"""Reading an input file at the boundary: bounded size, UTF-8, nesting and integer magnitude
(kvclaims.limits), parsed as JSON or TOML.  Every failure is a UsageError naming the file and
the reason, so no input can reach the model as a traceback or a MemoryError."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kvclaims.errors import UsageError
from kvclaims.limits import MAX_INPUT_BYTES, MAX_INT_DIGITS, MAX_NESTING

try:  # Python 3.11+ ships tomllib; 3.10 installs the same parser as tomli (pyproject)
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib  # type: ignore[no-redef]


def read_text(path, what: str = "file") -> str:
    """The file's text, refused when missing, not a regular file, too large or not UTF-8."""
    p = Path(path)
    try:
        if not p.exists():
            raise UsageError(f"{path}: no such {what}")
        if not p.is_file():
            raise UsageError(f"{path}: not a regular file")
        size = p.stat().st_size
        if size > MAX_INPUT_BYTES:
            raise UsageError(f"{path}: {size} bytes, more than the limit of {MAX_INPUT_BYTES}")
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 (byte {e.start})") from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (limit {MAX_INT_DIGITS})")
    return int(text)


def check_shape(value: Any, where: str) -> Any:
    """Refuse documents nested deeper than MAX_NESTING or holding oversized integers (TOML
    parsers have no hook for either); iterative, so depth cannot overflow the stack."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, (dict, list)):
            if depth > MAX_NESTING:
                raise UsageError(f"{where}: nested deeper than the limit of {MAX_NESTING}")
            items = v.values() if isinstance(v, dict) else v
            stack.extend((x, depth + 1) for x in items)
        elif isinstance(v, int) and not isinstance(v, bool):
            if v.bit_length() > 3.33 * MAX_INT_DIGITS:
                raise UsageError(f"{where}: an integer beyond the limit of {MAX_INT_DIGITS} "
                                 f"digits")
        elif isinstance(v, float) and v != v:
            raise UsageError(f"{where}: NaN is not a value")
    return value


def parse_json(text: str, where: str) -> Any:
    """JSON text as Python values, bounded; `where` names the file (and line) in errors."""
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except RecursionError:
        raise UsageError(f"{where}: nested deeper than the limit of {MAX_NESTING}") from None
    except ValueError as e:  # JSONDecodeError and the hooks' refusals
        raise UsageError(f"{where}: not JSON: {_first_line(e)}") from None
    return check_shape(value, where)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_toml(text: str, where: str) -> Any:
    try:
        value = tomllib.loads(text)
    except RecursionError:
        raise UsageError(f"{where}: nested deeper than the limit of {MAX_NESTING}") from None
    except (tomllib.TOMLDecodeError, ValueError) as e:
        raise UsageError(f"{where}: not valid TOML: {_first_line(e)}") from None
    return check_shape(value, where)


def load_json(path) -> Any:
    return parse_json(read_text(path), str(path))


def load_toml(path) -> Any:
    return parse_toml(read_text(path), str(path))


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__

"""Writing outputs safely: every destination is checked before the work starts (so a long
computation never ends in an unwritable path), and every file is written to a temporary
sibling and renamed over the target, so a failed or interrupted run leaves what was there
before intact."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from kvclaims.errors import UsageError


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _probe(directory: Path, option: str, target) -> None:
    """Create and remove a file where the output would go: the only reliable writability test
    (os.access says yes to root on read-only file systems)."""
    try:
        fd, name = tempfile.mkstemp(prefix=".kvclaims-probe-", dir=directory)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise UsageError(f"{option} {target}: cannot write in {directory}: "
                         f"{e.strerror or e}") from None


def check_output_dir(path, option: str) -> Path:
    """A directory outputs will go into: existing and writable, or creatable."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a directory")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a directory")
    _probe(base, option, path)
    return p


def check_output_file(path, option: str, suffix: str = "") -> Path:
    """A file an output will replace: not a directory, its folder writable or creatable."""
    p = Path(path)
    if str(path).endswith(os.sep) or p.is_dir():
        raise UsageError(f"{option} {path}: is a directory, expected a file name")
    if suffix and p.suffix != suffix:
        raise UsageError(f"{option} {path}: expected a {suffix} file name")
    base = _existing_ancestor(p.parent)
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a directory")
    _probe(base, option, path)
    return p


def write_atomic(path, text: str) -> None:
    write_atomic_with(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def write_atomic_with(path, write: Callable[[str], None]) -> None:
    """Call write(temporary path) and rename the result over `path`; on any failure the
    temporary file is removed and `path` keeps its old content."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}-", suffix=p.suffix or ".tmp", dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise

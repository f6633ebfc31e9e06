"""Source text without libcst: decoding, content hashes, CPython's syntax check. What a cache hit needs,
so that `check` answers a cached file without importing libcst."""

from __future__ import annotations

import ast
import gc
import hashlib
import io
import os
import tokenize
import warnings
from typing import Optional


class SourceError(Exception):
    """A file that cannot be read or parsed; the message is one line and names no path."""


def decode(data: bytes) -> str:
    """Decode Python source bytes honouring a BOM and a PEP 263 coding cookie."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        text = data.decode(encoding)
    except (SyntaxError, UnicodeDecodeError, LookupError) as e:
        raise SourceError(f"cannot decode source: {str(e).splitlines()[0]}") from None
    return text[1:] if text.startswith("\ufeff") else text


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _ast(text: str) -> ast.Module:
    """`ast.parse` without its SyntaxWarnings and without the cyclic GC, which finds nothing to free in a
    fresh (acyclic) tree but rescans it while it is built."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return ast.parse(text)
    finally:
        if enabled:
            gc.enable()


def _syntax_message(e: SyntaxError) -> str:
    return f"syntax error at {e.lineno}:{e.offset}: {e.msg}"


def cpython_syntax_error(text: str) -> Optional[str]:
    """CPython's one-line syntax error for text, or None when `ast` accepts it (ValueError, RecursionError
    and MemoryError propagate)."""
    try:
        _ast(text)
    except SyntaxError as e:
        return _syntax_message(e)
    return None


def source_text(source: str | bytes) -> str:
    text = decode(source) if isinstance(source, bytes) else source
    if "\x00" in text:
        raise SourceError("source contains a NUL byte")
    return text


_REAL: dict[str, str] = {}


def canonical(path: str) -> str:
    """The one name of a file, whatever the cwd and spelling (relative, absolute, `./x`, through a symlinked
    folder): cache keys, dependencies and the filter on the files asked about all compare these, so no
    result depends on where it was computed from."""
    ap = os.path.abspath(path)
    real = _REAL.get(ap)
    if real is None:
        real = _REAL[ap] = os.path.realpath(ap)
    return real


def forget_canonical() -> None:
    """Symlinks may have changed since the last run of this process (a test, an editor's server)."""
    _REAL.clear()

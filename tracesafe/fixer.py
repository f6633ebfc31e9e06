"""`tracesafe fix` over files: decode, rewrite, verify, write atomically, report."""

from __future__ import annotations

import difflib
import io
import os
import re
import stat
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import libcst as cst

from tracesafe.analyzer.project import SourceError, decode
from tracesafe.rewriters.engine import FixResult, fix_source


@dataclass
class FileOutcome:
    path: str
    changed: bool = False
    result: FixResult | None = None
    diff: str = ""
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _encoding(data: bytes) -> str:
    try:
        return tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:
        return "utf-8"


def atomic_write(path: Path, data: bytes, expected_old: bytes) -> None:
    """Replace path with data unless it changed since it was read; keep its permissions."""
    if path.read_bytes() != expected_old:
        raise SourceError("changed on disk while it was being fixed; left alone")
    mode = stat.S_IMODE(path.stat().st_mode)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tstmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def fix_file(path: str, form: str, unsafe_fixes: bool, write: bool, entry=None) -> FileOutcome:
    """Fix one file. With `entry` (a bytes regex for entry-point definitions), a file that defines none
    cannot have a fix: it only gets a syntax check."""
    out = FileOutcome(path)
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        out.error = f"cannot read: {e.strerror or e}"
        return out
    if entry is not None and not entry.search(data):
        from tracesafe.runner import _syntax_only

        out.error = _syntax_only(path, data)
        out.result = FixResult(data.decode("utf-8", "replace"))
        return out
    try:
        text = decode(data)
        res = fix_source(text, form, unsafe_fixes=unsafe_fixes, path=path)
    except SourceError as e:
        out.error = str(e)
        return out
    except RecursionError:
        out.error = "source is nested too deeply to rewrite"
        return out
    out.result = res
    if res.source == text:
        return out
    enc = _encoding(data)  # "utf-8-sig" when the file had a BOM: encoding puts it back
    try:
        new_data = res.source.encode(enc)
    except UnicodeEncodeError:
        out.error = f"the rewrite cannot be encoded as {enc}; left unchanged"
        return out
    try:
        cst.parse_module(new_data)
    except cst.ParserSyntaxError:
        out.error = "the rewrite did not parse; left unchanged"
        return out
    out.changed = True
    out.diff = "".join(difflib.unified_diff(text.splitlines(keepends=True), res.source.splitlines(keepends=True),
                                            fromfile=f"a/{path}", tofile=f"b/{path}"))
    if write:
        try:
            atomic_write(p, new_data, data)
        except SourceError as e:
            out.error, out.changed = str(e), False
        except OSError as e:
            out.error, out.changed = f"cannot write: {e.strerror or e}", False
    return out


def call_sites(files: list[str], qualnames: list[str]) -> list[str]:
    """Lines in the scanned files that call a module whose `forward` changed its outputs."""
    classes = {q.split(".")[0] for q in qualnames}
    if not classes:
        return []
    ctor = re.compile(r"self\.(\w+)\s*=\s*(?:\w+\.)*(" + "|".join(map(re.escape, sorted(classes))) + r")\s*\(")
    out = []
    for f in files:
        try:
            lines = Path(f).read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        attrs = {}
        for line in lines:
            m = ctor.search(line)
            if m:
                attrs[m.group(1)] = m.group(2)
        for i, line in enumerate(lines, 1):
            for attr, cls in attrs.items():
                if re.search(r"self\." + re.escape(attr) + r"\s*\(", line):
                    out.append(f"{f}:{i}: calls {cls}.forward, which now returns (value, flag)")
    return out

"""One export: the module and its example inputs to an ONNX file, with one exporter.

Contract: `export_onnx` writes `out_path` or raises. `script` = `torch.jit.script` + the TorchScript exporter
(inputs by position), `trace` = the TorchScript exporter tracing the module, `dynamo` = the torch.export-based
exporter (`dynamo=True`). Dynamic dimensions are named: TorchScript exporters get `dynamic_axes`, dynamo
gets one `torch.export.Dim` per name, which makes torch.export refuse code that pins it to the example's
length; that refusal is raised as `Pinned`, naming each dimension, the length it was pinned to and, when
`frame` (the innermost frame of the user's code) saw it, the line that pinned it."""

from __future__ import annotations

import inspect
import logging
import re
from typing import Any, Callable, Optional

from .errors import UsageError, chain, first_line
from .inputs import Slot

EXPORTERS = ("script", "dynamo", "trace")
DEFAULT_OPSET = {"script": 17, "trace": 17, "dynamo": 18}
TARGET_OF = {"script": "script", "trace": "trace", "dynamo": "dynamo"}  # the `check --target` it answers to


class Pinned(Exception):
    """torch.export specialised dynamic dimensions to the example's lengths."""

    def __init__(self, dims: dict, message: str, where: Optional[dict] = None):
        super().__init__(message)
        self.dims = dims  # name -> the length it was pinned to (None when torch did not say)
        self.where = where or {}  # name -> (file, line): the user's code running when it was pinned


_PINNED = re.compile(r"You marked (\S+) as dynamic but your code specialized it to be a constant \((\d+)\)")
_SUGGESTED = re.compile(r"^\s*(\w+) = (\d+)\s*$", re.M)
_SYMBOL = re.compile(r"create_symbol (s\d+) = \d+ for L\[(.+?)\]\.size\(\)\[(\d+)\]")
_SINGLETON = re.compile(r"(?:set_replacement (s\d+) = (\d+)|eval Eq\((s\d+), (\d+)\) \[guard added\])")


def _pinned(e: BaseException, dims: list[str], where: dict) -> Optional[Pinned]:
    text = str(e)
    if "Constraints violated" not in text and "specialized it to be a constant" not in text:
        return None
    found: dict = {}
    for name, n in _PINNED.findall(text):
        found[name] = int(n)
    for name, n in _SUGGESTED.findall(text):
        if name in dims:
            found.setdefault(name, int(n))
    found = {k: v for k, v in found.items() if k in dims} or {d: None for d in dims}
    return Pinned(found, first_line(e), {d: where[d] for d in found if d in where})


class _Specialisations(logging.Handler):
    """Where torch.export made a dynamic length a constant: its shape environment logs the symbol of each
    input length when it creates it, and `Eq(sN, 32) [guard added]` / `set_replacement sN = 32` when the
    code pins it; the user's frame on the stack at that moment is the line that pinned it."""

    def __init__(self, slots: list[Slot], frame: Callable[[], Optional[tuple]]):
        super().__init__(logging.INFO)
        self.axes = {(s.name, a): d for s in slots for a, d in s.dims.items()}
        self.order = [s.name for s in slots if not s.keyword]
        self.frame = frame
        self.symbols: dict[str, str] = {}  # sN -> dimension name
        self.where: dict[str, tuple] = {}  # dimension name -> (file, line)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a log record must never break the export
            return
        m = _SYMBOL.search(msg)
        if m:
            # L['x'], L['kwargs']['x'], or L['args'][0] for a forward(*args)
            source = m.group(2)
            index = re.match(r"'args'\]\[(\d+)$", source)
            names = re.findall(r"'(\w+)'", source)
            name = (
                self.order[int(index.group(1))]
                if index and int(index.group(1)) < len(self.order)
                else names[-1]
                if names
                else ""
            )
            dim = self.axes.get((name, int(m.group(3))))
            if dim is not None:
                self.symbols[m.group(1)] = dim
            return
        m = _SINGLETON.search(msg)
        if m:
            dim = self.symbols.get(m.group(1) or m.group(3))
            if dim is not None and dim not in self.where:
                at = self.frame()
                if at is not None:
                    self.where[dim] = at

    def __enter__(self):
        self.logger = logging.getLogger("torch.fx.experimental.symbolic_shapes")
        self.old = (self.logger.level, self.logger.propagate, list(self.logger.handlers))
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False  # torch's own handlers would print every guard
        for h in self.old[2]:
            self.logger.removeHandler(h)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        for h in self.old[2]:
            self.logger.addHandler(h)
        self.logger.setLevel(self.old[0])
        self.logger.propagate = self.old[1]
        return False


def _positional(model, slots: list[Slot], example: dict) -> tuple:
    """The script exporter takes inputs by position: keyword inputs go to their parameter's place, the
    parameters between keep their tensor defaults."""
    params = [
        p
        for p in inspect.signature(model.forward).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    given = {s.name for s in slots}
    last = max((i for i, p in enumerate(params) if p.name in given), default=-1)
    out = []
    for p in params[: last + 1]:
        if p.name in given:
            out.append(example[p.name])
        else:
            raise UsageError(f"the script exporter takes inputs by position: give --input {p.name}=... too")
    if any(s.name not in {p.name for p in params} for s in slots):
        raise UsageError(
            "the script exporter takes inputs by position: **kwargs inputs need --exporter trace or dynamo"
        )
    return tuple(out)


def export_onnx(
    model,
    slots: list[Slot],
    example: dict,
    exporter: str,
    opset: int,
    out_path: str,
    dims: list[str],
    consts: Optional[dict] = None,
    frame: Optional[Callable[[], Optional[tuple]]] = None,
) -> None:
    """Export (see the module's contract); raises what the exporter raised, or Pinned."""
    import torch

    positional = tuple(example[s.name] for s in slots if not s.keyword)
    keywords = {s.name: example[s.name] for s in slots if s.keyword}
    if consts and exporter == "script":
        raise UsageError(
            "the script exporter takes tensors by position: constant keyword inputs need --exporter trace or dynamo"
        )
    names = [s.name for s in slots]
    axes = {s.name: {a: d for a, d in s.dims.items()} for s in slots if s.dims}
    if exporter == "script":
        scripted = torch.jit.script(model)
        if returns_optional(scripted) and opset < 16:
            raise UsageError(
                f"forward returns Optional[...]: the TorchScript exporter writes an invalid "
                f"model below opset 16 (asked for {opset}); use --opset 16 or higher"
            )
        args = _positional(model, slots, example) if keywords else positional
        torch.onnx.export(
            scripted, args, out_path, dynamo=False, opset_version=opset, input_names=names, dynamic_axes=axes or None
        )
        return
    if exporter == "trace":
        torch.onnx.export(
            model,
            positional,
            out_path,
            kwargs={**keywords, **(consts or {})} or None,
            dynamo=False,
            opset_version=opset,
            input_names=names,
            dynamic_axes=axes or None,
        )
        return
    shapes: Any = None  # by name, or by position when every input is positional
    if dims:
        made = {d: torch.export.Dim(d, min=1) for d in dims}
        shapes = {s.name: {a: made[d] for a, d in s.dims.items()} or None for s in slots}
        shapes.update({k: None for k in consts or {}})
        if not keywords and not consts:
            shapes = tuple(shapes[s.name] for s in slots)
    # torch.export first, with a named Dim per dynamic dimension: it refuses code that pins one (where
    # torch.onnx.export would quietly retry with other strategies and pin it)
    with _Specialisations(slots, frame or (lambda: None)) as seen:
        try:
            program = torch.export.export(
                model, positional, {**keywords, **(consts or {})}, dynamic_shapes=shapes, strict=False
            )
        except Exception as e:  # noqa: BLE001
            for x in chain(e):
                pinned = _pinned(x, dims, seen.where)
                if pinned is not None:
                    raise pinned from e
            raise
    torch.onnx.export(program, (), out_path, dynamo=True, opset_version=opset, verbose=False)


def returns_optional(scripted) -> bool:
    try:
        return any("Optional" in repr(r.type) or "?" in str(r.type) for r in scripted.forward.schema.returns)
    except Exception:  # noqa: BLE001
        return False

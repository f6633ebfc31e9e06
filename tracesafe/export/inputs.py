"""The inputs a model is exported with and compared on.

Contract: `parse_input` reads `--input [NAME=]SHAPE[:DTYPE][RANGE]` (`2x3`, `input_ids=2x16:int64[0,100)`);
`parse_dynamic` reads `--dynamic DIM=[INPUT:]AXIS` (`seq=1`: axis 1 of every input that has it;
`seq=input_ids:1`: of that input only). `Slot`s bind specs to `forward`'s parameters (positional specs in
order, named specs by name). `cases()` gives the named inputs that are run in eager PyTorch and in
onnxruntime: constant and random fills that tend to drive branches either way (integers stay in their
range), and for every dynamic dimension a new length (1, and one more than the example's), plus all of
them changed at once."""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import UsageError

DTYPES = ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool")
_INT_DEFAULT = (0, 10)
_SPEC = re.compile(
    r"^(?:(?P<name>[A-Za-z_]\w*)=)?(?P<shape>[^:\[]*)(?::(?P<dtype>\w*))?"
    r"(?P<range>\[[^\]\)]*[\]\)])?$"
)


@dataclass
class InputSpec:
    shape: tuple[int, ...]
    dtype: str = "float32"
    name: Optional[str] = None
    low: Optional[float] = None  # values in [low, high) (integers) or [low, high] (floats)
    high: Optional[float] = None

    def __str__(self) -> str:
        s = "x".join(map(str, self.shape)) + ":" + self.dtype
        if self.low is not None and self.high is not None:
            s += f"[{_num(self.low)},{_num(self.high)})"
        return f"{self.name}={s}" if self.name else s

    @property
    def is_int(self) -> bool:
        return self.dtype.startswith(("int", "uint"))


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def parse_input(text: str) -> InputSpec:
    """`2x3`, `2,3`, `2x3:int64`, `:float32` (a 0-d tensor), `input_ids=2x16:int64[0,100)`."""
    m = _SPEC.match(text.strip())
    if m is None:
        raise UsageError(
            f"--input {text!r}: expected [NAME=]SHAPE[:DTYPE][RANGE], e.g. 2x3 or input_ids=2x16:int64[0,100)"
        )
    dtype = (m.group("dtype") or "").strip() or "float32"
    if dtype not in DTYPES:
        raise UsageError(f"--input {text!r}: unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    shape_s = m.group("shape").strip().strip("()")
    shape: tuple[int, ...] = ()
    if shape_s:
        parts = re.split(r"\s*[x,×]\s*", shape_s)
        if not all(re.fullmatch(r"\d+", p) for p in parts):
            raise UsageError(f"--input {text!r}: a shape is sizes joined by `x`, e.g. 2x3 or 2x3:int64")
        shape = tuple(int(p) for p in parts)
        if any(s == 0 for s in shape):
            raise UsageError(f"--input {text!r}: sizes must be at least 1")
    spec = InputSpec(shape, dtype, m.group("name"))
    if m.group("range"):
        r = m.group("range")
        try:
            lo, hi = (float(v) for v in r[1:-1].split(","))
        except ValueError:
            raise UsageError(f"--input {text!r}: a range is [LOW,HIGH), e.g. [0,100)") from None
        if spec.is_int and r.endswith("]"):
            hi += 1
        if dtype == "bool" or not lo < hi or spec.is_int and not (lo.is_integer() and hi.is_integer()):
            raise UsageError(f"--input {text!r}: the range {r} is empty or not of {dtype} values")
        spec.low, spec.high = lo, hi
    return spec


@dataclass(frozen=True)
class DynamicAxis:
    dim: str  # the dimension's name; inputs that share it share one length
    axis: int
    input: Optional[str] = None  # None: every input with that axis


def parse_dynamic(text: str) -> DynamicAxis:
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*=\s*(?:([A-Za-z_]\w*)\s*:)?\s*(\d+)\s*", text)
    if m is None:
        raise UsageError(f"--dynamic {text!r}: expected DIM=AXIS or DIM=INPUT:AXIS, e.g. seq=1 or seq=input_ids:1")
    return DynamicAxis(m.group(1), int(m.group(3)), m.group(2))


@dataclass
class Slot:
    """One input of `forward`: its parameter, how it is passed, and what it holds."""

    name: str
    keyword: bool
    spec: InputSpec
    example: Any = None  # a tensor handed over by a factory (used as is for the example case)
    dims: dict = field(default_factory=dict)  # axis -> dynamic dimension name


def spec_of(tensor, name: Optional[str] = None) -> InputSpec:
    """The spec of an example tensor from a factory: its shape and dtype, integers in the range seen."""
    dtype = str(tensor.dtype).replace("torch.", "")
    if dtype not in DTYPES:
        raise UsageError(f"input {name or '?'}: dtype {dtype} is not supported by the export stage")
    spec = InputSpec(tuple(tensor.shape), dtype, name)
    if spec.is_int and tensor.numel():
        spec.low, spec.high = float(tensor.min()), float(tensor.max()) + 1
    return spec


def bind(forward, specs: list[InputSpec], owner: str) -> list[Slot]:
    """Slots for `forward`'s parameters: positional specs first, in order, then named ones."""
    params = [p for p in inspect.signature(forward).parameters.values()]
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    by_name = {p.name: p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in params)
    pos_specs = [s for s in specs if s.name is None]
    named = [s for s in specs if s.name is not None]
    if named and any(s.name is None for s in specs[specs.index(named[0]) :]):
        raise UsageError("give positional --input values before named ones")
    if len(pos_specs) > len(positional):
        raise UsageError(
            f"{owner}.forward takes {len(positional)} positional input(s) "
            f"({', '.join(p.name for p in positional)}), got {len(pos_specs)} --input"
        )
    slots = [Slot(p.name, False, s) for p, s in zip(positional, pos_specs)]
    named_specs = [(s.name, s) for s in named if s.name is not None]
    taken = {s.name for s in slots}
    for name, s in named_specs:
        if name in taken:
            raise UsageError(f"--input {name}=...: given twice")
        if name not in by_name and not takes_kwargs:
            raise UsageError(
                f"{owner}.forward has no parameter {name!r} (it takes {', '.join(p.name for p in params)})"
            )
        slots.append(Slot(name, True, s))
        taken.add(name)
    missing = [p.name for p in positional if p.default is p.empty and p.name not in taken]
    missing += [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty and p.name not in taken]
    if missing:
        required = [p for p in positional if p.default is p.empty]
        raise UsageError(
            f"{owner}.forward takes {len(required)}"
            f"{'' if len(required) == len(positional) else f'-{len(positional)}'} tensor input(s) "
            f"({', '.join(p.name for p in positional)}), got {len(specs)} --input; "
            f"missing: {', '.join(missing)}"
        )
    return slots


def assign_dims(slots: list[Slot], dynamic: Optional[list[DynamicAxis]], static: bool) -> list[str]:
    """Give each slot its dynamic axes; returns the dimension names. Without --dynamic, axis 0 is the
    dimension `batch` when every input has one and they agree on its length."""
    if static:
        return []
    if not dynamic:
        firsts = {s.spec.shape[0] for s in slots if s.spec.shape}
        if slots and all(s.spec.shape for s in slots) and len(firsts) == 1:
            for s in slots:
                s.dims[0] = "batch"
            return ["batch"]
        return []
    names = {s.name for s in slots}
    for d in dynamic:
        if d.input is not None and d.input not in names:
            raise UsageError(
                f"--dynamic {d.dim}={d.input}:{d.axis}: no input named {d.input!r} (inputs: {', '.join(sorted(names))})"
            )
        hit = [s for s in slots if (d.input is None or s.name == d.input) and d.axis < len(s.spec.shape)]
        if not hit:
            raise UsageError(f"--dynamic {d.dim}: no input has axis {d.axis}")
        for s in hit:
            s.dims[d.axis] = d.dim
    out: list[str] = []
    for s in slots:
        for dim in s.dims.values():
            if dim not in out:
                out.append(dim)
    for dim in out:
        sizes = {s.spec.shape[a] for s in slots for a, d in s.dims.items() if d == dim}
        if len(sizes) > 1:
            raise UsageError(f"dynamic dimension {dim!r} has different lengths in the inputs: {sorted(sizes)}")
    return out


def dim_sizes(slots: list[Slot]) -> dict[str, int]:
    return {d: s.spec.shape[a] for s in slots for a, d in s.dims.items()}


def _make(spec: InputSpec, fill: str, shape: tuple[int, ...]):
    import torch

    dt = getattr(torch, spec.dtype)
    if dt == torch.bool:
        return {"zeros": torch.zeros(shape, dtype=dt), "ones": torch.ones(shape, dtype=dt)}.get(
            fill, torch.rand(shape) > 0.5
        )
    if not dt.is_floating_point:
        ilo, ihi = (int(spec.low), int(spec.high)) if spec.low is not None and spec.high is not None else _INT_DEFAULT
        ints = {"zeros": 0, "ones": 1, "negatives": -1, "large": 100}
        if fill in ints:
            # constants stay in the range: a token id past the vocabulary says nothing about the export
            return torch.full(shape, min(max(ints[fill], ilo), ihi - 1), dtype=dt)
        return torch.randint(ilo, ihi, shape, dtype=dt)
    table = {"zeros": 0.0, "ones": 1.0, "negatives": -1.0, "large": 1000.0}
    if spec.low is not None and spec.high is not None:
        lo, hi = spec.low, spec.high
        if fill in table:
            return torch.full(shape, min(max(table[fill], lo), hi), dtype=dt)
        return (lo + (hi - lo) * torch.rand(shape)).to(dt)
    if fill in table:
        return torch.full(shape, table[fill], dtype=dt)
    return (torch.randn(shape) if fill.startswith("randn") else torch.rand(shape)).to(dt)


FILLS = ("zeros", "ones", "negatives", "large", "randn-0", "randn-1", "rand-2")
EXAMPLE_FILL = "randn-0"


@dataclass
class Case:
    """One input to run: its name, and the tensors for each slot."""

    name: str
    tensors: dict  # slot name -> tensor
    sizes: dict = field(default_factory=dict)  # dynamic dimension -> length, when not the example's


def make_case(slots: list[Slot], fill: str, sizes: Optional[dict] = None, name: Optional[str] = None) -> Case:
    import torch

    if "-" in fill:
        torch.manual_seed(int(fill.rsplit("-", 1)[1]))
    sizes = sizes or {}
    tensors = {}
    for s in slots:
        shape = tuple(sizes.get(s.dims.get(a), n) for a, n in enumerate(s.spec.shape))
        if s.example is not None and fill == "example" and not sizes:
            tensors[s.name] = s.example
        else:
            tensors[s.name] = _make(s.spec, "randn" if fill == "example" else fill, shape)
    return Case(name or fill, tensors, dict(sizes))


def cases(slots: list[Slot], dims: list[str], with_example: bool) -> list[Case]:
    """The inputs every export is compared on (see the module's contract)."""
    import torch

    out = [make_case(slots, "example")] if with_example else []
    out += [make_case(slots, f) for f in FILLS]
    base = dim_sizes(slots)
    for d in dims:
        n = base[d]
        for size in sorted({1, n + 1} - {n}):
            torch.manual_seed(size)
            out.append(make_case(slots, "randn", {d: size}, f"{d}{size}-randn"))
            if size == 1:
                out.append(make_case(slots, "zeros", {d: size}, f"{d}{size}-zeros"))
    if len(dims) > 1:
        torch.manual_seed(len(dims))
        grown = {d: base[d] + 1 for d in dims}
        out.append(make_case(slots, "randn", grown, "+".join(f"{d}{n}" for d, n in grown.items()) + "-randn"))
    return out


def example_case(slots: list[Slot]) -> Case:
    """The input the model is exported with: the factory's tensors, or the first random fill."""
    if all(s.example is not None for s in slots):
        return make_case(slots, "example")
    return make_case(slots, EXAMPLE_FILL)

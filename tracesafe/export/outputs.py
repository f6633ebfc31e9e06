"""Eager outputs, flattened as the exporters flatten them, and compared with onnxruntime's.

Contract: `leaves(value)` lists (path, leaf) in the exporters' order: tuples and lists in order, dicts in
insertion order, `ModelOutput`s and dataclasses by field (a `ModelOutput` holds only its set fields),
`None` kept as a leaf. `Layout.of(example, exporter)` says which leaves the ONNX graph has: the trace and
dynamo exporters drop a `None` output (measured: torch 2.13), the script exporter keeps it as an
Optional. `compare` checks one input's eager output against onnxruntime's: a leaf that was `None` on the
example and is a tensor here is a real mismatch (the graph has no output for it), as is any change of
structure; everything else is compared value by value."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional


def leaves(value: Any, path: str = "") -> list[tuple[str, Any]]:
    if value is None:
        return [(path or "output", None)]
    if isinstance(value, dict):  # ModelOutput is an OrderedDict of its set fields
        out = []
        for k, v in value.items():
            out += leaves(v, f"{path}.{k}" if isinstance(k, str) and k.isidentifier() else f"{path}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        fields = getattr(value, "_fields", None)  # a namedtuple
        out = []
        for i, v in enumerate(value):
            out += leaves(v, f"{path}.{fields[i]}" if fields else f"{path}[{i}]")
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = []
        for f in dataclasses.fields(value):
            out += leaves(getattr(value, f.name), f"{path}.{f.name}")
        return out
    return [(path or "output", value)]


@dataclass
class Layout:
    """The example's output structure, and which leaves the exported graph has."""

    paths: list[str]
    kept: list[bool]  # per leaf: has an ONNX output

    @classmethod
    def of(cls, example: Any, exporter: str) -> "Layout":
        ls = leaves(example)
        return cls([p for p, _ in ls], [v is not None or exporter == "script" for _, v in ls])

    @property
    def dropped(self) -> list[str]:
        return [p.lstrip(".") for p, k in zip(self.paths, self.kept) if not k]


def summary(value: Any) -> str:
    parts = []
    for _, v in leaves(value):
        if v is None:
            parts.append("None")
        elif hasattr(v, "shape"):
            parts.append(f"{tuple(v.shape)}")
        else:
            parts.append(type(v).__name__)
    return ", ".join(parts)


def shapes(value: Any) -> list:
    return [list(v.shape) if hasattr(v, "shape") else None for _, v in leaves(value)]


def compare(eager: Any, got: list, layout: Layout) -> tuple[bool, str]:
    import numpy as np
    import torch

    mine = leaves(eager)
    if [p for p, _ in mine] != layout.paths:
        return (
            False,
            f"the output's structure differs from the example's ({len(mine)} leaves, the example "
            f"has {len(layout.paths)})",
        )
    want = []
    for (path, v), kept in zip(mine, layout.kept):
        if kept:
            want.append((path, v))
        elif v is not None:
            return (
                False,
                f"output {path.lstrip('.')} is None on the example, so the exporter dropped it; here "
                f"it is {summary(v)}",
            )
    if len(want) != len(got):
        return False, f"{len(got)} outputs, eager has {len(want)}"
    for i, ((path, w), g) in enumerate(zip(want, got)):
        label = path.lstrip(".") or str(i)
        label = "the output" if label == "output" else f"output {label}"
        if w is None or g is None:
            if (w is None) != (g is None):
                return (
                    False,
                    f"{label}: eager {'None' if w is None else 'a tensor'}, onnx {'None' if g is None else 'a tensor'}",
                )
            continue
        if isinstance(g, list):
            g = np.stack(g) if g else np.zeros((0,))
        w = (
            w.detach().float().numpy()
            if isinstance(w, torch.Tensor) and w.dtype == torch.bfloat16
            else w.detach().numpy()
            if isinstance(w, torch.Tensor)
            else np.asarray(w)
        )
        g = np.asarray(g)
        if w.shape != g.shape:
            return False, f"{label}: shape {g.shape}, eager {w.shape}"
        if w.dtype == np.bool_ or g.dtype == np.bool_:
            if not (w.astype(bool) == g.astype(bool)).all():
                return False, f"{label}: values differ"
        elif not np.allclose(g.astype(np.float64), w.astype(np.float64), rtol=1e-4, atol=1e-5, equal_nan=True):
            diff = float(np.nanmax(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
            return False, f"{label}: values differ (max abs diff {diff:.3g})"
    return True, ""


def signature_change(cases: list, shapes_in: dict) -> Optional[str]:
    """Where inputs of one shape give an output of different shapes (a placeholder shaped like the input
    on one branch, the real value on the other), the exported graph cannot give that output one fixed
    shape: the ONNX output gets a dynamic dimension the model does not have. None when every output keeps
    its shape (an output that is None on some inputs is an Optional, not a change)."""
    groups: dict[tuple, list] = {}
    for c in cases:
        if c.name in shapes_in:
            groups.setdefault(shapes_in[c.name], []).append(c)
    for group in groups.values():
        width = max(len(c.output_shapes) for c in group)
        for i in range(width):
            seen: dict[tuple, Any] = {}
            for c in group:
                shape = c.output_shapes[i] if i < len(c.output_shapes) else None
                if shape is not None:
                    seen.setdefault(tuple(shape), c)
            # a shape that follows the data (torch.nonzero) is the model's own; one that follows a branch is
            # a signature the graph cannot keep
            if len(seen) > 1 and len({repr(sorted(c.branches.items())) for c in seen.values()}) > 1:
                return (
                    f"output {i} is "
                    + ", ".join(f"{s} on {c.name}" for s, c in seen.items())
                    + " (they took different branches)"
                )
    return None

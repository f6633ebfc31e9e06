"""Which torch the export stage runs on, and what it can do there.

Contract: `TESTED` is the torch range the export tests pass on (measured: 2.13.0, the floor, and 2.14.1;
on 2.12.1 torch.export with named dynamic dimensions refuses a tiny Llama that 2.13 exports, on 2.11 and 2.9.1
the ONNX conversion of torch.cond and of a torch._check on an unbacked value fails). `check(exporter)`
raises UsageError, in one line, when the installed torch lacks what the exporter needs, and returns a note
when it runs outside the tested range."""

from __future__ import annotations

from typing import Optional

from .errors import UsageError

TESTED = ((2, 13), (2, 15))  # [floor, ceiling)
FLOOR = "2.13"


def _version(text: str) -> tuple[int, int]:
    parts = text.split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def check(exporter: str) -> Optional[str]:
    import torch

    have = torch.__version__
    v = _version(have)
    if exporter == "dynamo" and not (hasattr(torch, "export") and hasattr(torch.export, "Dim")):
        raise UsageError(f"the dynamo exporter needs torch.export (torch >= {FLOOR}); torch {have} has none")
    if not hasattr(torch, "cond"):
        raise UsageError(f"torch {have} has no torch.cond, which the `cond` form writes: use torch >= {FLOOR}")
    if not TESTED[0] <= v < TESTED[1]:
        return (
            f"torch {have} is outside the range the export stage is tested with (>= {FLOOR}, < "
            f"{TESTED[1][0]}.{TESTED[1][1]}): its results may differ"
        )
    return None

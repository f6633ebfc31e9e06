"""The export stage: export a model, validate the ONNX graph, and prove it matches eager PyTorch on inputs
that take every branch. The only part of tracesafe that imports torch (it needs the `export` extra).

One module per step, each with its contract in its docstring:
`target` (what to export: a class, a module or a factory, from a file or a module), `inputs` (the example
and the inputs compared on; dynamic dimensions), `exporters` (one export with one exporter; a pinned
dimension), `steps` (a step's time limit and captured output), `analysis` (what `check` says about every
file the model's code reached; where in the user's code the exporter failed), `coverage` (which side of
each branch an input took), `outputs` (eager outputs flattened as the exporter flattens them; parity),
`report` (the verdict as text and JSON) and `stage` (the steps in order)."""

from .errors import TimedOut, UsageError
from .exporters import DEFAULT_OPSET, EXPORTERS
from .inputs import DTYPES, DynamicAxis, InputSpec, parse_dynamic, parse_input
from .report import ExportReport, report_json
from .stage import export
from .steps import DEFAULT_TIMEOUT, time_limit

__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_TIMEOUT",
    "DTYPES",
    "EXPORTERS",
    "DynamicAxis",
    "ExportReport",
    "InputSpec",
    "TimedOut",
    "UsageError",
    "export",
    "parse_dynamic",
    "parse_input",
    "report_json",
    "time_limit",
]

"""tracesafe.rewriters: codemods that turn tracer-unsafe control flow into exportable code."""

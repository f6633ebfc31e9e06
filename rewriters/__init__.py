"""tracesafe.rewriters: codemods that turn tracer-unsafe control flow into exportable code."""

# the rewrite forms, in the order the CLI and the docs list them (importable without loading the forms)
FORMS = ("flag", "optional", "where", "cond")

"""The console entry point.

`tracesafe --version` and `tracesafe rule [CODE | --all]` answer here without importing click (a quarter
of the 0.1 s they may take) or libcst; every other command line goes to the click application in
``tracesafe.cli``, which also implements these two (the tests hold the answers equal).
"""

from __future__ import annotations

import sys

from tracesafe import __version__


def _fast(args: list[str]):
    """(text, is_error) for a command line answered without click, else None."""
    if args == ["--version"]:
        return f"tracesafe, version {__version__}\n", False
    if not args or args[0] != "rule" or len(args) > 2:
        return None
    from tracesafe.analyzer.rules import RULES, rule_listing

    rest = args[1:]
    if rest in ([], ["--all"]):
        return rule_listing(), False
    code = rest[0]
    if code.startswith("-"):  # --help and anything else click parses
        return None
    r = RULES.get(code.upper())
    if r is None:
        return f"tracesafe: error: unknown rule {code!r}; run `tracesafe rule` for the list\n", True
    return r.docs(), False


def main(argv: list[str] | None = None):
    args = sys.argv[1:] if argv is None else list(argv)
    answer = _fast(args)
    if answer is None:
        from tracesafe.cli import main as cli

        return cli(args=args)
    text, is_error = answer
    (sys.stderr if is_error else sys.stdout).write(text)
    return 2 if is_error else 0


if __name__ == "__main__":
    sys.exit(main())

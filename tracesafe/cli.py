"""The `tracesafe` command: a thin shell over the pure core."""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any, NamedTuple, Optional

import click

from tracesafe import __version__
from tracesafe.analyzer.rules import RULES, TARGETS, rule_listing
from tracesafe.rewriters import FORMS

EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def _fail(message: str) -> None:
    click.echo(f"tracesafe: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _codes(values: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(c.strip() for c in v.split(",") if c.strip())
    return out


class Selection(NamedTuple):
    """Which rules and files: the command line's --select/--ignore/--extend-*/--exclude flags."""

    select: tuple = ()
    ignore: tuple = ()
    extend_select: tuple = ()
    extend_ignore: tuple = ()
    exclude: tuple = ()
    extend_exclude: tuple = ()


_SELECTION_OPTIONS = [
    click.option(
        "--select",
        multiple=True,
        help="Rule codes or prefixes to enable (comma-separated; ALL), replacing the config's `select`.",
    ),
    click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable."),
    click.option("--extend-select", multiple=True, help="Rule codes or prefixes to enable on top of the config's."),
    click.option("--extend-ignore", multiple=True, help="Rule codes or prefixes to disable on top of the config's."),
    click.option("--exclude", multiple=True, help="Files to exclude (gitignore patterns), replacing the config's."),
    click.option("--extend-exclude", multiple=True, help="Files to exclude on top of the config's `exclude`."),
]


def _selection_options(f):
    for opt in reversed(_SELECTION_OPTIONS):
        f = opt(f)
    return f


def _selection(kw: dict) -> Selection:
    """Pop the selection flags from a command's keyword arguments."""
    return Selection(
        *(
            tuple(_codes(kw.pop(name)))
            if name in ("select", "ignore", "extend_select", "extend_ignore")
            else tuple(x for v in kw.pop(name) for x in v.split(",") if x.strip())
            for name in Selection._fields
        )
    )


class _Group(click.Group):
    """Turns any unexpected exception into one line and exit 2 (``--debug`` shows the traceback)."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("tracesafe: interrupted", err=True)
            sys.exit(130)
        except Exception as e:  # noqa: BLE001 - the last line of defence
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            msg = str(e).splitlines()[0] if str(e) else ""
            click.echo(f"tracesafe: internal error: {type(e).__name__}: {msg} (run with --debug for details)", err=True)
            sys.exit(EXIT_ERROR)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tracesafe")
@click.option("--debug", is_flag=True, help="Show tracebacks of internal errors.")
@click.pass_context
def main(ctx, debug):
    """Find, fix and prove tracer-unsafe control flow in PyTorch models."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def _groups(
    paths: tuple[str, ...],
    config_file: Optional[str],
    default_path: bool = True,
    force_exclude: bool = True,
    quiet: bool = False,
    config_errors: Optional[list] = None,
    sel: Optional[Selection] = None,
):
    """Files to process grouped by the configuration that governs them, plus (path, error) pairs.
    Each file gets the nearest pyproject.toml with [tool.tracesafe] (or --config); a broken
    configuration is an error for its files only (collected apart in `config_errors` when given). Like
    ruff, a file named on the command line is processed even when `exclude` covers it, unless
    force_exclude (saying so on stderr)."""
    from tracesafe.config import ConfigError, Resolver, excluded, excludes
    from tracesafe.discover import discover

    sel = sel or Selection()
    try:
        resolver = Resolver(config_file)
    except ConfigError as e:
        _fail(str(e))
    groups: dict[int, tuple] = {}
    errors: list[tuple[str, str]] = []
    for arg in list(paths) or (["."] if default_path else []):
        p = Path(arg)
        try:
            fc = resolver.for_path(p if p.exists() else Path.cwd())
        except ConfigError as e:
            (errors if config_errors is None else config_errors).append((arg, str(e)))
            continue
        explicit = p.is_file()
        say = (lambda _path: None) if quiet else _say_excluded
        for path, err in discover([arg], excludes(fc, sel.exclude, sel.extend_exclude), fc.root, force_exclude, say):
            if err:
                errors.append((path, err))
                continue
            try:
                own = resolver.for_path(Path(path))
            except ConfigError as e:
                (errors if config_errors is None else config_errors).append((path, str(e)))
                continue
            if own is not fc and excluded(own, path, excludes(own, sel.exclude, sel.extend_exclude)):
                if force_exclude or not explicit:
                    continue
                say(path)
            groups.setdefault(id(own), (own, []))[1].append(path)
    return list(groups.values()), errors


def _check_flags(sel: Selection) -> None:
    """The flags name known rules (checked before any file, so a typo fails even on no files)."""
    from tracesafe.analyzer.rules import select_codes

    try:
        select_codes(list(sel.select) or None, list(sel.ignore))
        select_codes(list(sel.extend_select) or ["ALL"], list(sel.extend_ignore))
    except ValueError as e:
        _fail(str(e))


def _effective(fc, sel: Selection, target):
    """The Config for the files `fc` governs: the command line's flags over their [tool.tracesafe]."""
    from tracesafe.config import effective

    try:
        config = effective(
            fc,
            select=sel.select,
            ignore=sel.ignore,
            target=target,
            extend_select=sel.extend_select,
            extend_ignore=sel.extend_ignore,
        )
        config.codes()  # a bad code in the file's own configuration
    except ValueError as e:
        _fail(str(e))
    return config


def _stdin_config(name: Optional[str], config_file, sel: Selection, target):
    """The configuration of the file a buffer on standard input stands for (FileConfig, Config)."""
    from tracesafe.config import ConfigError, Resolver

    try:
        fc = Resolver(config_file).for_path(Path(name).parent if name else Path.cwd())
    except ConfigError as e:
        _fail(str(e))
    return fc, _effective(fc, sel, target)


def _check_stdin(name: Optional[str], config_file, force_exclude, sel: Selection, target):
    """Code piped in by an editor or a tool: checked with the pure core, as the file it stands for."""
    from tracesafe import check_source
    from tracesafe.analyzer import SourceError
    from tracesafe.config import excluded, excludes
    from tracesafe.runner import RunResult

    path = name or "-"
    fc, config = _stdin_config(name, config_file, sel, target)
    data = sys.stdin.buffer.read()
    if name and force_exclude and excluded(fc, name, excludes(fc, sel.exclude, sel.extend_exclude)):
        return RunResult([], [])
    try:
        return RunResult(check_source(data, path, config), [])
    except SourceError as e:
        return RunResult([], [(path, str(e))])


def _say_excluded(path: str) -> None:
    click.echo(
        f"{path}: note: excluded by the configuration's `exclude`, processed because it was named "
        f"(--force-exclude skips it)",
        err=True,
    )


_PROGRESS_MIN_FILES = 64  # fewer files are done before a bar would be worth drawing


class _Progress:
    """A progress bar on stderr for long runs when stderr is a terminal (never in a pipe, a log or with
    --quiet): the report itself still goes to stdout, untouched."""

    def __init__(self, label: str, enabled: bool):
        self.label, self.enabled = label, enabled
        self.bar: Optional[Any] = None

    def __call__(self, n: int, total: int) -> None:
        if not self.enabled or total < _PROGRESS_MIN_FILES:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label=self.label, file=sys.stderr)
            self.bar.__enter__()
        self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _progress(label: str, quiet: bool) -> _Progress:
    return _Progress(label, not quiet and sys.stderr.isatty())


_QUIET = click.option("--quiet", "-q", is_flag=True, help="Print the findings (or the diff) and errors, nothing else.")
_COLOR = click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="Colour the text report (auto: on a terminal, unless NO_COLOR is set).",
)

_FORCE_EXCLUDE = click.option(
    "--force-exclude",
    is_flag=True,
    help="Honour `exclude` for files named on the command line too (as pre-commit needs).",
)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@_FORCE_EXCLUDE
@click.option(
    "--format",
    "--output-format",
    "fmt",
    type=click.Choice(["text", "json", "sarif", "github"]),
    default="text",
    show_default=True,
)
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=None,
    help="How you export: which findings matter (default: trace, or the config's).",
)
@_selection_options
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when findings remain.")
@click.option("--statistics", is_flag=True, help="Print a count per rule and a total instead of the findings.")
@click.option(
    "--fix", "apply_fix", is_flag=True, help="Apply the fixes (as `tracesafe fix`), then report what is left."
)
@click.option("--diff", is_flag=True, help="With --fix: print the fixes as a diff and write nothing.")
@click.option("--form", type=click.Choice(FORMS), default=None, help="With --fix: the rewrite form (as `fix --form`).")
@click.option("--unsafe-fixes", is_flag=True, help="Count (with --fix: apply) unsafe fixes too.")
@click.option("--add-noqa", is_flag=True, help="Add `# noqa: CODE` to the line of every finding (idempotent).")
@click.option("--show-settings", is_flag=True, help="Print the resolved configuration of the first file, and exit.")
@click.option("--show-files", is_flag=True, help="Print the files that would be checked, and exit.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=0,
    help="Worker processes (0 = one per core, used only for larger inputs).",
)
@click.option("--no-cache", is_flag=True, help="Do not read or write .tracesafe_cache/.")
@click.option("--config", "config_file", type=click.Path(), default=None, help="Use this pyproject.toml.")
@click.option("--output-file", "-o", type=click.Path(), default=None, help="Write the report to this file.")
@click.option(
    "--hook", is_flag=True, hidden=True, help="pre-commit mode: check exactly the files given (none: nothing to do)."
)
@click.option("--profile", is_flag=True, help="Print seconds per phase to stderr as JSON.")
@click.option(
    "--stdin-filename",
    default=None,
    help="With `-` as the path: the file the code read from standard input stands for (its config, "
    "its imports, the paths in the report).",
)
@_QUIET
@_COLOR
def check(
    paths,
    force_exclude,
    fmt,
    target,
    exit_zero,
    statistics,
    apply_fix,
    diff,
    form,
    unsafe_fixes,
    add_noqa,
    show_settings,
    show_files,
    jobs,
    no_cache,
    config_file,
    output_file,
    hook,
    profile,
    stdin_filename,
    quiet,
    color,
    **kw,
):
    """Report tracer-unsafe control flow in PATHS (default: the current directory)."""
    from tracesafe import report
    from tracesafe.runner import RunResult, check_paths

    sel = _selection(kw)
    _check_flags(sel)
    if statistics and fmt in ("sarif", "github"):
        _fail(f"--statistics prints counts as text or JSON, not {fmt}")
    if (diff or form) and not apply_fix:
        _fail("--diff and --form go with --fix (or use `tracesafe fix`)")
    if "-" in paths and (apply_fix or add_noqa or show_files or show_settings):
        _fail("`-` (standard input) is checked only: for its fixed code use `tracesafe fix - --stdin-filename F`")
    import time

    t0 = time.perf_counter()
    fixed = None
    if apply_fix:
        fixed = _run_fix(
            paths, force_exclude, form, diff, unsafe_fixes, sel, target, jobs, config_file, hook, False, quiet=True
        )
        if diff:  # ruff: `--fix --diff` prints the diff and writes nothing, with fix's exit code
            for path, msg in sorted(set(fixed.errors)):
                click.echo(f"{path}: error: {msg}", err=True)
            sys.exit(EXIT_ERROR if fixed.errors else EXIT_FOUND if fixed.changed and not exit_zero else EXIT_OK)
    if "-" in paths:
        if len(paths) > 1:
            _fail("`-` (standard input) cannot be combined with other paths")
        groups, errors = [], []
        res = _check_stdin(stdin_filename, config_file, force_exclude, sel, target)
    else:
        if stdin_filename:
            _fail("--stdin-filename needs `-` as the path")
        groups, errors = _groups(
            paths, config_file, default_path=not hook, force_exclude=force_exclude or hook, quiet=quiet, sel=sel
        )
        res = RunResult([], [])
    if show_files:
        for _fc, files in groups:
            for f in files:
                click.echo(f)
        for path, msg in sorted(set(errors)):
            click.echo(f"{path}: error: {msg}", err=True)
        sys.exit(EXIT_ERROR if errors else EXIT_OK)
    if show_settings:
        if not groups:
            _fail("no file to show the settings of")
        fc, files = groups[0]
        click.echo(_settings_text(files[0], fc, _effective(fc, sel, target), sel), nl=False)
        sys.exit(EXIT_OK)
    phases = {"discover": time.perf_counter() - t0}
    jobs = jobs or (os.cpu_count() or 1)
    bar = _progress("Checking", quiet)
    for fc, files in groups:
        config = _effective(fc, sel, target)
        # TRACESAFE_NO_PREFILTER=1: analyze every file (the benchmark checks the prefilter loses nothing)
        part = check_paths(
            files,
            config,
            jobs=jobs,
            cache_root=None if no_cache else fc.root,
            config_root=fc.root,
            prefilter=os.environ.get("TRACESAFE_NO_PREFILTER") != "1",
            progress=bar,
        )
        res.findings.extend(part.findings)
        res.errors.extend(part.errors)
        for k, v in part.phases.items():
            phases[k] = phases.get(k, 0.0) + v
    bar.close()
    res.findings.sort(key=lambda f: f.sort_key())
    errors = sorted(set(errors) | set(res.errors) | set(fixed.errors if fixed else ()))
    if add_noqa:
        from tracesafe.noqa import add_noqa as _add

        n, failed = _add(res.findings)
        for path, msg in failed:
            click.echo(f"{path}: error: {msg}", err=True)
        if not quiet:
            click.echo(f"Added {n} noqa directive{'s' if n != 1 else ''}.", err=True)
        sys.exit(EXIT_ERROR if failed or errors else EXIT_OK)
    colored = False
    if statistics and fmt == "json":
        out = report.statistics_json(res.findings, unsafe_fixes)
    elif statistics:
        out = report.statistics(res.findings, unsafe_fixes)
    elif fmt == "json":
        out = report.as_json(res.findings)
    elif fmt == "sarif":
        out = report.sarif(res.findings, Path.cwd())
    elif fmt == "github":
        out = report.github(res.findings)
    else:
        colored = not output_file and report.use_color(color, sys.stdout)
        out = report.text(res.findings, color=colored)
    if output_file:
        try:
            Path(output_file).write_text(out, encoding="utf-8")
        except OSError as e:
            _fail(f"{output_file}: cannot write: {e.strerror}")
    else:
        click.echo(out, nl=False, color=fmt == "text" and not statistics and colored or None)
    for path, msg in errors:
        click.echo(f"{path}: error: {msg}", err=True)
    if fmt == "text" and not statistics and not output_file and not quiet:
        n = len(res.findings)
        done = f" ({fixed.applied} fixed, {n} remaining)" if fixed is not None else ""
        if n:
            click.echo(
                f"Found {n} finding{'s' if n != 1 else ''} in {len({f.path for f in res.findings})} file(s){done}.",
                err=True,
            )
        elif not errors:
            click.echo(f"All checks passed!{done}", err=True)
    if profile:
        import json as _json

        phases["total (wall)"] = time.perf_counter() - t0
        click.echo("profile " + _json.dumps({k: round(v, 3) for k, v in phases.items()}), err=True)
    if errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FOUND if res.findings and not exit_zero else EXIT_OK)


def _settings_text(path: str, fc, config, sel: Selection) -> str:
    """--show-settings: what governs `path`, resolved."""
    from tracesafe.config import excludes

    lines = [
        f"Resolved settings for: {path}",
        f"Settings path: {fc.path if fc.path else '(none: defaults)'}",
        "",
        f"target = {config.target!r}",
        f"form = {config.form!r}",
        f"select = {sorted(config.codes())!r}",
        f"entry-points = {list(config.entry_points)!r}",
        f"exclude = {excludes(fc, sel.exclude, sel.extend_exclude)!r}",
        f"per-file-ignores = {dict(config.per_file_ignores)!r}",
    ]
    return "\n".join(lines) + "\n"


class FixRun(NamedTuple):
    changed: list
    remaining: int
    errors: list
    applied: int


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@_FORCE_EXCLUDE
@click.option(
    "--form", type=click.Choice(FORMS), default=None, help="Rewrite form (default: flag, or the config's `form`)."
)
@click.option("--diff", is_flag=True, help="Print a unified diff and write nothing.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply fixes that change outputs or evaluate skipped arms.")
@_selection_options
@click.option(
    "--target",
    type=click.Choice(TARGETS),
    default=None,
    help="The exporter the remaining findings are counted for (default: the one the form serves, or the config's).",
)
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when files changed or findings remain.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=0),
    default=0,
    help="Worker processes (0 = one per core, used only for larger inputs).",
)
@click.option("--config", "config_file", type=click.Path(), default=None, help="Use this pyproject.toml.")
@click.option(
    "--hook", is_flag=True, hidden=True, help="pre-commit mode: fix exactly the files given (none: nothing to do)."
)
@click.option("--profile", is_flag=True, help="Print seconds per phase to stderr as JSON.")
@click.option("--show-fixes", is_flag=True, help="List what was fixed, per file and rule.")
@click.option(
    "--stdin-filename",
    default=None,
    help="With `-` as the path: fix the code read from standard input as this file (its config, its "
    "imports) and print the fixed code (or the diff) to standard output.",
)
@_QUIET
def fix(
    paths,
    force_exclude,
    form,
    diff,
    unsafe_fixes,
    target,
    exit_zero,
    jobs,
    config_file,
    hook,
    profile,
    show_fixes,
    stdin_filename,
    quiet,
    **kw,
):
    """Rewrite tracer-unsafe control flow in PATHS into an exportable form."""
    sel = _selection(kw)
    _check_flags(sel)
    if "-" in paths:
        if len(paths) > 1:
            _fail("`-` (standard input) cannot be combined with other paths")
        _fix_stdin(stdin_filename, config_file, form, diff, unsafe_fixes, sel, target, exit_zero, quiet)
    if stdin_filename:
        _fail("--stdin-filename needs `-` as the path")
    run = _run_fix(
        paths, force_exclude, form, diff, unsafe_fixes, sel, target, jobs, config_file, hook, show_fixes, quiet, profile
    )
    for path, msg in sorted(set(run.errors)):
        click.echo(f"{path}: error: {msg}", err=True)
    if run.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_FOUND if (run.changed or run.remaining) and not exit_zero else EXIT_OK)


def _run_fix(
    paths,
    force_exclude,
    form,
    diff,
    unsafe_fixes,
    sel: Selection,
    target,
    jobs,
    config_file,
    hook,
    show_fixes,
    quiet,
    profile=False,
) -> FixRun:
    """`fix` over PATHS: rewrites (or diffs) them, prints the notes and the summary (not with quiet), and
    returns what changed and what is left. A configuration that does not load stops it before any file."""
    from tracesafe.fixer import call_sites, fix_files, fix_pool, recount
    from tracesafe.rewriters.engine import FORM_TARGET
    from tracesafe.runner import _entry_pattern
    import time

    t0 = time.perf_counter()
    phases: dict[str, float] = {"fix": 0.0, "recount": 0.0, "files": 0, "reanalysed": 0}
    broken: list[tuple[str, str]] = []
    groups, errors = _groups(
        paths,
        config_file,
        default_path=not hook,
        force_exclude=force_exclude or hook,
        quiet=quiet,
        config_errors=broken,
        sel=sel,
    )
    if broken:  # no file is rewritten under a configuration that does not load
        for path, msg in sorted(set(broken)):
            click.echo(f"{path}: error: {msg}", err=True)
        sys.exit(EXIT_ERROR)
    jobs = jobs or (os.cpu_count() or 1)
    changed, signatures, remaining, all_files, targets = [], [], 0, [], set()
    new_text: dict[str, bytes] = {}  # every file changed so far -> its text as fixed
    fixed: list[tuple[str, tuple]] = []  # (path, codes) of every rewrite applied
    bar = _progress("Fixing", quiet or diff)
    for fc, files in groups:
        config = _effective(fc, sel, target)
        codes = config.codes()
        file_form = form or config.form
        if target is None and "target" not in fc.values:
            config.target = FORM_TARGET[file_form]  # what is left is judged by the exporter the form serves
        targets.add(config.target)
        all_files.extend(files)
        outcomes = []
        entry = None if os.environ.get("TRACESAFE_NO_PREFILTER") == "1" else _entry_pattern(config)
        with fix_pool(jobs, len(files)) as pool:
            for o in fix_files(
                files,
                file_form,
                unsafe_fixes,
                write=not diff,
                entry=entry,
                codes=codes,
                config=config,
                pool=pool,
                jobs=jobs,
            ):
                bar(1, len(files))
                if o.error:
                    errors.append((o.path, o.error))
                    continue
                outcomes.append(o)
                if o.changed:
                    changed.append(o.path)
                    new_text[o.path] = (o.source or "").encode("utf-8")
                    signatures.extend(o.signatures)
                    fixed.extend((o.path, c) for c in o.applied)
                    if diff:
                        click.echo(o.diff, nl=False)
                # at their places in the fixed file; in a diff they go with it to stdout, so a reviewer
                # sees what was left and why
                for n in [] if quiet else o.notes:
                    where = f"{o.path}:{n.position[0]}:{n.position[1]}:" if n.position else f"{o.path}:"
                    what = (
                        f"not fixed by `{file_form}`: {n.reason}"
                        if n.reason
                        else f"has an unsafe `{file_form}` fix (use --unsafe-fixes)"
                    )
                    click.echo(f"{where} {'/'.join(n.codes)} {what}", err=not diff)
            bar.close()
            t1 = time.perf_counter()
            left, again = recount(outcomes, new_text, config, pool, jobs, fc.root)
        remaining += left
        phases["recount"] += time.perf_counter() - t1
        phases["files"] += len(files)
        phases["reanalysed"] += again
    for line in [] if quiet else call_sites(all_files, signatures):
        click.echo(f"{line}: follow up", err=True)
    if show_fixes and fixed:
        click.echo(_show_fixes(fixed, diff), err=True, nl=False)
    if profile:
        import json as _json

        phases["total (wall)"] = time.perf_counter() - t0
        phases["fix"] = phases["total (wall)"] - phases["recount"]
        click.echo("profile " + _json.dumps({k: round(v, 3) for k, v in phases.items()}), err=True)
    if not quiet:
        verb, still = ("Would fix", "would remain") if diff else ("Fixed", "remain")
        if not targets:  # no files: the target the options name
            from tracesafe.analyzer import Config

            targets.add(target or FORM_TARGET[form or Config.form])
        names = ", ".join(sorted(targets))
        hint = f" (see `tracesafe check --target {sorted(targets)[0]}`)" if remaining and len(targets) == 1 else ""
        click.echo(
            f"{verb} {len(changed)} file(s); {remaining} finding(s) {still} for the {names} exporter{hint}.", err=True
        )
    return FixRun(changed, remaining, errors, len(fixed))


def _fix_stdin(name, config_file, form, diff, unsafe_fixes, sel: Selection, target, exit_zero, quiet) -> None:
    """`fix -`: the buffer on standard input, fixed as the file it stands for (ruff's convention: the fixed
    code on stdout, whether or not it changed; with --diff, the diff). Exits."""
    import difflib

    from tracesafe import check_source
    from tracesafe.analyzer import SourceError
    from tracesafe.analyzer.source import decode
    from tracesafe.rewriters.engine import FORM_TARGET, fix_source

    path = name or "-"
    fc, config = _stdin_config(name, config_file, sel, target)
    file_form = form or config.form
    if target is None and "target" not in fc.values:
        config.target = FORM_TARGET[file_form]
    try:
        text = decode(sys.stdin.buffer.read())
        res = fix_source(text, file_form, unsafe_fixes=unsafe_fixes, path=path, codes=config.codes(), config=config)
        left = len(check_source(res.source, path, config))
    except SourceError as e:
        _fail(f"{path}: {e}")
    if diff:
        click.echo(
            "".join(
                difflib.unified_diff(
                    text.splitlines(keepends=True),
                    res.source.splitlines(keepends=True),
                    fromfile=f"a/{path}",
                    tofile=f"b/{path}",
                )
            ),
            nl=False,
        )
    else:
        click.echo(res.source, nl=False)
    if not quiet:
        for p in sorted(res.refused, key=lambda p: p.position or (0, 0)):
            where = f"{path}:{p.position[0]}:{p.position[1]}:" if p.position else f"{path}:"
            click.echo(f"{where} {'/'.join(sorted(p.codes))} not fixed by `{file_form}`: {p.reason}", err=True)
        for p in res.skipped_unsafe:
            where = f"{path}:{p.position[0]}:{p.position[1]}:" if p.position else f"{path}:"
            click.echo(
                f"{where} {'/'.join(sorted(p.codes))} has an unsafe `{file_form}` fix (use --unsafe-fixes)", err=True
            )
        changed = res.source != text
        click.echo(
            f"{'Would fix' if diff else 'Fixed'} {int(changed)} file(s); {left} finding(s) "
            f"{'would remain' if diff else 'remain'} for the {config.target} exporter.",
            err=True,
        )
    sys.exit(EXIT_FOUND if (res.source != text or left) and not exit_zero else EXIT_OK)


def _show_fixes(fixed: list[tuple[str, tuple]], diff: bool) -> str:
    """ruff's --show-fixes: what was rewritten, per file and rule."""
    from collections import Counter

    out = [f"{'Would fix' if diff else 'Fixed'} {len(fixed)} finding(s):"]
    for path in sorted({p for p, _ in fixed}):
        out.append(f"- {path}:")
        counts = Counter(code for p, codes in fixed if p == path for code in codes)
        out.extend(f"    {n} \u00d7 {code} ({RULES[code].name})" for code, n in sorted(counts.items()))
    return "\n".join(out) + "\n"


@main.command("export")
@click.argument("target", metavar="TARGET")
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="[NAME=]SHAPE[:DTYPE][RANGE]",
    help="One per forward input, in order or by name: 2x3, 2x3:int64, input_ids=2x16:int64[0,100) "
    "(default dtype float32; integers in [0,10) unless a range is given).",
)
@click.option(
    "--dynamic",
    "dynamic",
    multiple=True,
    metavar="DIM=[INPUT:]AXIS",
    help="A dynamic dimension: seq=1 (axis 1 of every input) or seq=input_ids:1. Default: batch=0 when "
    "all inputs share their first length.",
)
@click.option("--static", is_flag=True, help="Export with every length fixed.")
@click.option(
    "--init",
    "init_json",
    default=None,
    metavar="JSON",
    help="Keyword arguments as JSON for the class's constructor or the factory.",
)
@click.option(
    "--exporter",
    type=click.Choice(["script", "dynamo", "trace"]),
    default="script",
    show_default=True,
    help="script = torch.jit.script + TorchScript exporter; dynamo = torch.export-based; trace = plain "
    "tracing (shows what goes wrong).",
)
@click.option("--opset", type=int, default=None, help="ONNX opset (default 17; 18 for dynamo).")
@click.option("--output", "-o", type=click.Path(), default=None, help="Write the ONNX model here.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds each step may take (the export, each input's eager and onnxruntime run); a step "
    "that does not finish is reported as timed out, named.",
)
def export_cmd(target, inputs, dynamic, static, init_json, exporter, opset, output, fmt, timeout):
    """Export TARGET to ONNX, validate it, and compare onnxruntime with eager PyTorch on inputs that take
    each branch. TARGET is FILE.py:NAME or package.module:NAME, NAME a module class, a module, or a function
    returning a module or (module, example inputs). Exit 0 only when export, checker and parity all pass."""
    import json as _json

    where, sep, name = target.rpartition(":")
    if not sep or not where or not name.isidentifier():
        _fail(f"{target!r}: expected FILE.py:NAME or package.module:NAME")
    init = None
    if init_json:
        try:
            init = _json.loads(init_json)
        except ValueError as e:
            _fail(f"--init: not valid JSON ({e})")
        if not isinstance(init, dict):
            _fail("--init: expected a JSON object of keyword arguments")
    try:
        from tracesafe import export as ex
    except ImportError as e:
        _fail(f"the export stage needs the `export` extra (pip install 'tracesafe[export]'): {e}")
    try:
        specs = [ex.parse_input(i) for i in inputs]
        axes = [ex.parse_dynamic(d) for d in dynamic]
        # text is printed as it happens: the header first, then each input as it is run
        stream = (lambda text: click.echo(text, nl=False)) if fmt == "text" else None
        report = ex.export(
            target,
            specs,
            init=init,
            exporter=exporter,
            opset=opset,
            output=output,
            timeout=timeout,
            stream=stream,
            dynamic=axes or None,
            static=static,
        )
    except ex.UsageError as e:
        _fail(str(e))
    if fmt == "json":
        click.echo(ex.report_json(report), nl=False)
    sys.exit(EXIT_OK if report.ok else EXIT_FOUND)


@main.command()
def server():
    """Run the language server over stdio (diagnostics, quick fixes and rule docs in your editor)."""
    try:
        from tracesafe.lsp import serve
    except ImportError as e:
        _fail(f"the language server needs pygls (pip install 'tracesafe[lsp]'): {e}")
    serve()


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
def clean(paths):
    """Remove the caches (.tracesafe_cache/) in PATHS (default: the current directory) and below."""
    import shutil

    from tracesafe.discover import _SKIP_DIRS

    removed = 0
    for root in list(paths) or ["."]:
        for dirpath, dirnames, _files in os.walk(root):
            if ".tracesafe_cache" in dirnames:
                target = os.path.join(dirpath, ".tracesafe_cache")
                click.echo(f"Removing cache at: {target}", err=True)
                shutil.rmtree(target, ignore_errors=True)
                removed += 1
            dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS]
    if not removed:
        click.echo("No cache found.", err=True)


@main.command()
@click.argument("code", required=False)
@click.option("--all", "show_all", is_flag=True, help="List every rule.")
def rule(code, show_all):
    """Print a rule's documentation (or list the rules)."""
    if code is None or show_all:
        click.echo(rule_listing(), nl=False)
        return
    r = RULES.get(code.upper())
    if r is None:
        _fail(f"unknown rule {code!r}; run `tracesafe rule` for the list")
    click.echo(r.docs(), nl=False)

"""`tracesafe server`: a Language Server over stdio (pygls, lsprotocol types), for findings as you type.

Contract:
- diagnostics on open, change (debounced) and save, for the unsaved buffer, analysed as the file it stands
  for: its `pyproject.toml` configuration, and cross-file reach through the files on disk with the open
  buffers in place of their files; each with its rule code, a link to the rule's documentation and the
  range of the offending expression;
- code actions: each finding's fix as a quick fix (the edit `fix` makes for that finding alone; an unsafe
  one says so in its title and is never preferred), and "add `# noqa: CODE`";
- hover on a finding: the rule's "What it does / Why is this bad? / Use instead";
- `workspace/didChangeConfiguration` (settings `tracesafe.target`, `select`, `ignore`, `form`) and changes to
  a `pyproject.toml` (configuration is read again for every analysis; watched files re-analyse the open
  buffers) apply without a restart;
- an analysis never blocks the editor: it runs on a worker thread; requests answer from the last result;
  an analysis a newer edit supersedes is cancelled before it starts, or its result dropped.
It never imports torch."""

from __future__ import annotations

import asyncio
import difflib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import to_fs_path

from tracesafe import __version__
from tracesafe.analyzer.finding import Finding
from tracesafe.analyzer.rules import RULES

DEBOUNCE = 0.25  # seconds of quiet after a change before it is analysed
_SLOW = float(os.environ.get("TRACESAFE_LSP_ANALYSIS_DELAY", "0") or 0)
SOURCE = "tracesafe"


class Result:
    """The last analysis of one buffer."""

    def __init__(self, version: Optional[int], text: str, findings: list[Finding]):
        self.version, self.text, self.findings = version, text, findings


class TracesafeServer(LanguageServer):
    def __init__(self):
        super().__init__("tracesafe", __version__, text_document_sync_kind=lsp.TextDocumentSyncKind.Incremental)
        self.settings: dict = {}
        self.results: dict[str, Result] = {}
        self.pending: dict[str, asyncio.Task] = {}
        self.generation: dict[str, int] = {}  # uri -> number of the newest analysis asked for
        # one analysis at a time (the analyzer's caches are not shared between threads)
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracesafe-analysis")
        self.lock = threading.Lock()

    # -------------------------------------------------------------------------------------- analysis
    def config_for(self, path: str):
        from tracesafe.config import ConfigError, Resolver, effective

        try:
            fc = Resolver().for_path(Path(path).parent)  # read again each time: edits apply at once
        except ConfigError as e:
            raise ValueError(str(e)) from None
        s = self.settings
        config = effective(
            fc, select=_list(s.get("select")), ignore=_list(s.get("ignore")), target=s.get("target"), form=s.get("form")
        )
        config.codes()
        return fc, config

    def overlay(self, skip: str) -> dict:
        from tracesafe.analyzer.source import canonical

        out = {}
        for uri, doc in list(self.workspace.text_documents.items()):
            path = to_fs_path(uri)
            if path and uri != skip and path.endswith(".py"):
                out[canonical(path)] = doc.source.encode("utf-8")
        return out

    def analyse(self, uri: str, text: str) -> list[Finding]:
        """The findings `check` would report for this buffer as its file (run on the worker thread)."""
        from tracesafe.analyzer.api import analyze_source
        from tracesafe.analyzer.engine import to_findings
        from tracesafe.analyzer.project import Project
        from tracesafe.rewriters.engine import safe_fix_fields
        from tracesafe.runner import per_file_ignored

        path = to_fs_path(uri) or uri
        fc, config = self.config_for(path)
        if _SLOW:  # tests: an analysis that takes this long (the editor must not wait for it)
            import time

            time.sleep(_SLOW)
        with self.lock:
            project = Project(overlay=self.overlay(uri))
            an, mod = analyze_source(text, path, config, in_tree=True, project=project)
            fixes = safe_fix_fields(an, mod, config.form)
            codes = config.codes()
            found = [
                f
                for f in to_findings(an.raw_findings(), config.target, fixes, fixes_for=mod)
                if f.code in codes and f.path == mod.path
            ]
        return [f for f in found if not per_file_ignored(f, config, fc.root)]

    def schedule(self, uri: str, delay: float) -> None:
        """Analyse the buffer after `delay` seconds of quiet; a newer call supersedes this one."""
        self.generation[uri] = self.generation.get(uri, 0) + 1
        task = self.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        self.pending[uri] = asyncio.get_running_loop().create_task(self._run(uri, self.generation[uri], delay))

    async def _run(self, uri: str, generation: int, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        doc = self.workspace.get_text_document(uri)
        text, version = doc.source, doc.version
        try:
            findings = await asyncio.get_running_loop().run_in_executor(self.worker, self.analyse, uri, text)
        except Exception as e:  # noqa: BLE001 - a file that does not parse, a broken configuration
            if generation == self.generation.get(uri):
                self.window_log_message(
                    lsp.LogMessageParams(lsp.MessageType.Warning, f"tracesafe: {to_fs_path(uri)}: {e}")
                )
                self.results[uri] = Result(version, text, [])
                self.publish(uri)
            return
        if generation != self.generation.get(uri):
            return  # superseded while it ran: a newer analysis will publish
        self.results[uri] = Result(version, text, findings)
        self.publish(uri)

    def publish(self, uri: str) -> None:
        res = self.results.get(uri)
        diags = [diagnostic(f) for f in res.findings] if res else []
        self.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, diagnostics=diags, version=res.version if res else None)
        )

    def relint_all(self) -> None:
        for uri in list(self.workspace.text_documents):
            self.schedule(uri, 0)


def _list(v) -> Optional[list]:
    if v is None:
        return None
    return [v] if isinstance(v, str) else list(v)


_DOCS_DIR: Optional[Path] = None


def doc_uri(code: str) -> Optional[str]:
    """A file with the rule's documentation (written once per process under the user's cache)."""
    global _DOCS_DIR
    if _DOCS_DIR is None:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tracesafe" / f"rules-{__version__}"
        try:
            base.mkdir(parents=True, exist_ok=True)
            for c, r in RULES.items():
                (base / f"{c}.md").write_text(r.docs(), encoding="utf-8")
            _DOCS_DIR = base
        except OSError:
            return None
    return (_DOCS_DIR / f"{code}.md").as_uri()


def diagnostic(f: Finding) -> lsp.Diagnostic:
    href = doc_uri(f.code)
    return lsp.Diagnostic(
        range=lsp.Range(lsp.Position(f.line - 1, f.column - 1), lsp.Position(f.end_line - 1, f.end_column - 1)),
        message=f.message,
        severity=lsp.DiagnosticSeverity.Warning if f.severity == "warning" else lsp.DiagnosticSeverity.Error,
        code=f.code,
        code_description=lsp.CodeDescription(href=href) if href else None,
        source=SOURCE,
        data={"line": f.line, "column": f.column, "fix": f.fix},
    )


def _edits(old: str, new: str) -> list[lsp.TextEdit]:
    """Line-range edits turning old into new."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    out = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.append(lsp.TextEdit(lsp.Range(lsp.Position(i1, 0), lsp.Position(i2, 0)), "".join(b[j1:j2])))
    return out


def _action(title: str, uri: str, version, edits: list, diag: lsp.Diagnostic, preferred: bool) -> lsp.CodeAction:
    doc = lsp.OptionalVersionedTextDocumentIdentifier(uri=uri, version=version)
    return lsp.CodeAction(
        title=title,
        kind=lsp.CodeActionKind.QuickFix,
        diagnostics=[diag],
        is_preferred=preferred,
        edit=lsp.WorkspaceEdit(document_changes=[lsp.TextDocumentEdit(doc, edits)]),
    )


def code_actions(ls: TracesafeServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
    from tracesafe.noqa import _with_codes
    from tracesafe.rewriters.engine import fix_source

    uri = params.text_document.uri
    res = ls.results.get(uri)
    doc = ls.workspace.get_text_document(uri)
    if res is None or res.text != doc.source:
        return []  # the buffer changed since its last analysis: no edit computed on stale positions
    path = to_fs_path(uri) or uri
    out = []
    lines = res.text.splitlines(keepends=True)
    for d in params.context.diagnostics:
        if d.source != SOURCE or not isinstance(d.data, dict):
            continue
        code, fix = str(d.code), d.data.get("fix")
        if fix:
            _fc, config = ls.config_for(path)
            try:
                fixed = fix_source(
                    res.text,
                    fix["form"],
                    unsafe_fixes=True,
                    path=path,
                    codes={code},
                    config=config,
                    at=(d.data["line"], d.data["column"]),
                )
            except Exception:  # noqa: BLE001 - no quick fix rather than a broken edit
                fixed = None
            if fixed is not None and fixed.source != res.text:
                unsafe = fix["applicability"] != "safe"
                out.append(
                    _action(
                        f"Fix {code} with the `{fix['form']}` form{' (unsafe)' if unsafe else ''}",
                        uri,
                        res.version,
                        _edits(res.text, fixed.source),
                        d,
                        preferred=not unsafe,
                    )
                )
        line = d.data["line"] - 1
        if line < len(lines):
            new = _with_codes(lines[line], [code])
            if new != lines[line]:
                edit = lsp.TextEdit(lsp.Range(lsp.Position(line, 0), lsp.Position(line + 1, 0)), new)
                out.append(_action(f"Add `# noqa: {code}`", uri, res.version, [edit], d, preferred=False))
    return out


def hover(ls: TracesafeServer, params: lsp.HoverParams) -> Optional[lsp.Hover]:
    res = ls.results.get(params.text_document.uri)
    if res is None:
        return None
    pos = params.position
    for f in res.findings:
        start, end = (f.line - 1, f.column - 1), (f.end_line - 1, f.end_column - 1)
        if start <= (pos.line, pos.character) <= end:
            r = RULES[f.code]
            text = (
                f"**{r.code} {r.name}** — {f.message}\n\n### What it does\n{r.what}\n\n### Why is this bad?\n"
                f"{r.why}\n\n### Use instead\n```python\n{r.instead.strip()}\n```"
            )
            return lsp.Hover(
                contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=text),
                range=lsp.Range(lsp.Position(*start), lsp.Position(*end)),
            )
    return None


def make_server() -> TracesafeServer:
    server = TracesafeServer()

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: TracesafeServer, params: lsp.DidOpenTextDocumentParams):
        ls.schedule(params.text_document.uri, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: TracesafeServer, params: lsp.DidChangeTextDocumentParams):
        ls.schedule(params.text_document.uri, DEBOUNCE)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: TracesafeServer, params: lsp.DidSaveTextDocumentParams):
        ls.relint_all()  # other buffers may read this file

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: TracesafeServer, params: lsp.DidCloseTextDocumentParams):
        uri = params.text_document.uri
        task = ls.pending.pop(uri, None)
        if task is not None:
            task.cancel()
        ls.generation[uri] = ls.generation.get(uri, 0) + 1
        ls.results.pop(uri, None)
        ls.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(uri=uri, diagnostics=[]))

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION, lsp.CodeActionOptions(code_action_kinds=[lsp.CodeActionKind.QuickFix])
    )
    def actions(ls: TracesafeServer, params: lsp.CodeActionParams):
        return code_actions(ls, params)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def on_hover(ls: TracesafeServer, params: lsp.HoverParams):
        return hover(ls, params)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: TracesafeServer, params: lsp.DidChangeConfigurationParams):
        settings = params.settings or {}
        if isinstance(settings, dict):
            ls.settings = dict(settings.get("tracesafe", settings))
        ls.relint_all()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched(ls: TracesafeServer, params: lsp.DidChangeWatchedFilesParams):
        ls.relint_all()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: TracesafeServer, params: lsp.InitializeParams):
        opts = params.initialization_options
        if isinstance(opts, dict):
            ls.settings = dict(opts.get("tracesafe", opts))

    @server.feature(lsp.INITIALIZED)
    def initialized(ls: TracesafeServer, params: lsp.InitializedParams):
        # pyproject.toml and the Python files other buffers read: re-analyse when they change on disk
        caps = ls.client_capabilities.workspace
        if caps and caps.did_change_watched_files and caps.did_change_watched_files.dynamic_registration:
            ls.client_register_capability(
                lsp.RegistrationParams(
                    registrations=[
                        lsp.Registration(
                            id="tracesafe-files",
                            method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
                            register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
                                watchers=[
                                    lsp.FileSystemWatcher(glob_pattern="**/pyproject.toml"),
                                    lsp.FileSystemWatcher(glob_pattern="**/*.py"),
                                ]
                            ),
                        )
                    ]
                )
            )

    return server


def serve() -> None:
    make_server().start_io()

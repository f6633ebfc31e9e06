"""`tracesafe server` end to end with a real LSP client over stdio (pytest-lsp): open a document and get its
diagnostics, edit it and get new ones, request a quick fix and apply it, see the diagnostic go; hover
shows the rule; configuration changes (client settings, pyproject.toml) apply without a restart; an
unsaved buffer is what another file's analysis reads."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types as lsp  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

pytestmark = pytest.mark.asyncio(loop_scope="function")

MODEL = textwrap.dedent("""\
    import torch
    import torch.nn as nn


    class Net(nn.Module):
        def forward(self, ids, x):
            if (ids >= 10).any():
                raise ValueError("token id out of range")
            if x.sum() > 0:
                x = x * 2
            return x
""")


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "tracesafe", "server"]))
async def client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    (root / "pyproject.toml").write_text('[tool.tracesafe]\ntarget = "dynamo"\nform = "cond"\n')
    lsp_client.root = root
    # (the test client takes no dynamic registration: the server sends watched-file events it is given)
    await lsp_client.initialize_session(
        lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=root.as_uri())
    )
    yield
    await lsp_client.shutdown_session()


async def diagnostics(client: LanguageClient, uri: str, after=None, timeout: float = 30) -> list[lsp.Diagnostic]:
    """The next diagnostics published for uri (after `after()` is sent)."""

    async def wait():
        while True:
            await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
            if uri in client.diagnostics:
                return client.diagnostics.pop(uri)

    task = asyncio.ensure_future(wait())
    await asyncio.sleep(0)
    if after is not None:
        after()
    return await asyncio.wait_for(task, timeout)


def codes(diags) -> list[tuple[int, str]]:
    return sorted((d.range.start.line + 1, d.code) for d in diags)


def open_doc(client: LanguageClient, path: Path, text: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text))
    )
    return uri


def change(client: LanguageClient, uri: str, version: int, text: str):
    return lambda: client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            [lsp.TextDocumentContentChangeWholeDocument(text=text)],
        )
    )


def apply_edits(text: str, edits: list[lsp.TextEdit]) -> str:
    lines = text.splitlines(keepends=True)
    for e in sorted(edits, key=lambda e: e.range.start.line, reverse=True):
        assert e.range.start.character == 0 and e.range.end.character == 0
        lines[e.range.start.line : e.range.end.line] = [e.new_text]
    return "".join(lines)


async def test_diagnostics_edit_quick_fix_and_hover(client: LanguageClient):
    path = client.root / "net.py"
    path.write_text(MODEL)
    uri = path.as_uri()
    diags = await diagnostics(client, uri, lambda: open_doc(client, path, MODEL))
    assert codes(diags) == [(7, "TS109"), (9, "TS101")]
    check = next(d for d in diags if d.code == "TS109")
    assert check.source == "tracesafe" and check.severity == lsp.DiagnosticSeverity.Warning
    assert check.range.start == lsp.Position(6, 8) and check.range.end.line == 6  # the `if` and its test
    assert check.code_description.href.endswith("TS109.md") and Path(
        check.code_description.href[len("file://") :]
    ).read_text().startswith("# TS109 tensor-check")

    # an edit of the unsaved buffer: the value test goes, so does its diagnostic
    edited = MODEL.replace("        if x.sum() > 0:\n            x = x * 2\n", "")
    assert edited != MODEL
    diags = await diagnostics(client, uri, change(client, uri, 2, edited))
    assert codes(diags) == [(7, "TS109")]

    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(6, 12))
    )
    assert "TS109 tensor-check" in hover.contents.value and "### Why is this bad?" in hover.contents.value

    actions = await client.text_document_code_action_async(
        lsp.CodeActionParams(lsp.TextDocumentIdentifier(uri), diags[0].range, lsp.CodeActionContext(diagnostics=diags))
    )
    titles = [a.title for a in actions]
    assert titles == ["Fix TS109 with the `cond` form", "Add `# noqa: TS109`"]
    fix = actions[0]
    assert fix.is_preferred and fix.kind == lsp.CodeActionKind.QuickFix
    fixed = apply_edits(edited, fix.edit.document_changes[0].edits)
    assert "torch._check(torch.logical_not((ids >= 10).any()).item())" in fixed
    compile(fixed, "net.py", "exec")
    diags = await diagnostics(client, uri, change(client, uri, 3, fixed))
    assert list(diags) == []  # applied: the diagnostic is gone

    noqa = apply_edits(edited, actions[1].edit.document_changes[0].edits)
    assert "if (ids >= 10).any():  # noqa: TS109\n" in noqa
    diags = await diagnostics(client, uri, change(client, uri, 4, noqa))
    assert list(diags) == []


async def test_configuration_changes_apply_without_a_restart(client: LanguageClient):
    path = client.root / "net.py"
    path.write_text(MODEL)
    uri = path.as_uri()
    assert codes(await diagnostics(client, uri, lambda: open_doc(client, path, MODEL))) == [(7, "TS109"), (9, "TS101")]
    settings = lsp.DidChangeConfigurationParams(settings={"tracesafe": {"ignore": ["TS109"]}})
    diags = await diagnostics(client, uri, lambda: client.workspace_did_change_configuration(settings))
    assert codes(diags) == [(9, "TS101")]
    (client.root / "pyproject.toml").write_text('[tool.tracesafe]\ntarget = "dynamo"\nignore = ["TS101"]\n')
    event = lsp.DidChangeWatchedFilesParams(
        [lsp.FileEvent((client.root / "pyproject.toml").as_uri(), lsp.FileChangeType.Changed)]
    )
    diags = await diagnostics(client, uri, lambda: client.workspace_did_change_watched_files(event))
    assert codes(diags) == []  # TS101 by the file, TS109 by the client's settings


async def test_an_unsaved_buffer_is_what_other_files_read(client: LanguageClient):
    """gate.py returns a tensor on disk; its unsaved buffer returns a Python bool: net.py's `if` on the gate's
    result is a hazard only while the buffer says so."""
    pkg = client.root / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    gate = "def gate(x):\n    return x.sum() > 0\n"
    (pkg / "gate.py").write_text(gate)
    net = (
        "import torch.nn as nn\n\nfrom .gate import gate\n\n\nclass Net(nn.Module):\n"
        "    def forward(self, x):\n        if gate(x):\n            x = x * 2\n        return x\n"
    )
    (pkg / "net.py").write_text(net)
    uri = (pkg / "net.py").as_uri()
    assert codes(await diagnostics(client, uri, lambda: open_doc(client, pkg / "net.py", net))) == [(8, "TS101")]
    await diagnostics(
        client,
        (pkg / "gate.py").as_uri(),
        lambda: open_doc(client, pkg / "gate.py", gate.replace("x.sum() > 0", "x.dim() > 1")),
    )
    # saving (or any change) re-analyses the open buffers with the other buffers in place of their files
    gate_uri = (pkg / "gate.py").as_uri()
    save = lsp.DidSaveTextDocumentParams(lsp.TextDocumentIdentifier(gate_uri))
    diags = await diagnostics(client, uri, lambda: client.text_document_did_save(save))
    assert codes(diags) == []


@pytest_lsp.fixture(
    config=ClientServerConfig(
        server_command=[sys.executable, "-m", "tracesafe", "server"], server_env={"TRACESAFE_LSP_ANALYSIS_DELAY": "1.5"}
    )
)
async def slow_client(lsp_client: LanguageClient, tmp_path_factory):
    root = tmp_path_factory.mktemp("ws")
    lsp_client.root = root
    await lsp_client.initialize_session(
        lsp.InitializeParams(capabilities=lsp.ClientCapabilities(), root_uri=root.as_uri())
    )
    yield
    await lsp_client.shutdown_session()


async def test_a_slow_analysis_never_blocks_and_a_superseded_one_is_dropped(slow_client: LanguageClient):
    """Each analysis takes 1.5 s here: requests answer at once from the last result, and of five quick
    edits only the last one's diagnostics are published."""
    import time

    client = slow_client
    path = client.root / "net.py"
    path.write_text(MODEL)
    uri = path.as_uri()
    first = await diagnostics(client, uri, lambda: open_doc(client, path, MODEL))
    assert codes(first) == [(7, "TS109"), (9, "TS101")]
    published: list = []
    original = client.diagnostics

    for v in range(2, 7):
        text = MODEL if v < 6 else MODEL.replace("        if x.sum() > 0:\n            x = x * 2\n", "")
        change(client, uri, v, text)()
        await asyncio.sleep(0.05)
    t0 = time.perf_counter()
    hover = await client.text_document_hover_async(
        lsp.HoverParams(lsp.TextDocumentIdentifier(uri), lsp.Position(8, 12))
    )
    assert time.perf_counter() - t0 < 1.0  # answered from the last result while the analysis runs
    assert hover is not None and "TS101" in hover.contents.value
    deadline = time.perf_counter() + 15
    while time.perf_counter() < deadline:
        await client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
        if uri in original:
            published.append(original.pop(uri))
            break
    assert len(published) == 1 and codes(published[0]) == [(7, "TS109")]  # only the last edit's result
    await asyncio.sleep(2)
    assert uri not in original  # and nothing after it

"""Run real transformers models the way a user would, for the before/after behaviour test.

    python behaviour_runner.py MODEL_TYPES_JSON OUT_FILE [CHANGED_LINES_JSON]

Runs in its own interpreter: PYTHONPATH decides which copy of transformers it imports (the original or a
fixed one). For each model type: the class built from a tiny random config (fixed seed), a forward pass,
for a causal LM a prefill plus one cached decode step, and a torch.jit.trace of the forward pass with its
TracerWarning sites counted, and a torch.export of it. Everything lands in OUT_FILE (torch.save) keyed by
model type; a model that
does not build or run here records its error instead (the test compares only what ran before the fix).
With CHANGED_LINES_JSON ({path relative to the transformers package: [line, ...]}: the lines a fix wrote),
each model records how many of those lines its forward pass and decode step ran (`ran_changed`): a model
that ran none of them says nothing about the fix."""

from __future__ import annotations

import json
import os
import signal
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from real_models import inputs, tiny_config, traceable  # noqa: E402

LIMIT = int(os.environ.get("TRACESAFE_MODEL_LIMIT", "60"))  # seconds per model: longer says nothing either way


class _Slow(Exception):
    pass


def _alarm(signum, frame):
    raise _Slow(f"over {LIMIT} s")


def tensors(v, out=None) -> list:
    """The tensors of a model output, in order (ModelOutput is a dict; caches are skipped)."""
    out = [] if out is None else out
    if isinstance(v, torch.Tensor):
        out.append(v.detach().clone())
    elif isinstance(v, dict):
        for x in v.values():
            tensors(x, out)
    elif isinstance(v, (list, tuple)):
        for x in v:
            tensors(x, out)
    return out


FAMILY = {"input_ids": "text", "pixel_values": "vision", "input_values": "audio"}


def pick(model_type: str):
    """(class, family, generative): the causal LM when the type has one, else its base model; LookupError
    when there is none or its main input is not one generated here."""
    import transformers
    from transformers.models.auto import modeling_auto as auto

    name = auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type)
    generative = isinstance(name, str)
    if not generative:
        name = auto.MODEL_MAPPING_NAMES.get(model_type)
    if not isinstance(name, str):
        raise LookupError("no model class")
    cls = getattr(transformers, name)
    main = getattr(cls, "main_input_name", "input_ids")
    family = FAMILY.get(main) if isinstance(main, str) else None
    if family is None:
        raise LookupError(f"input {main!r} not generated here")
    return cls, family, generative


def _stage(res: dict, name: str, fn) -> None:
    """res[name] = fn()'s result, or res[name + "_error"] = what it raised (the same error before and after
    a fix is the same behaviour)."""
    try:
        res[name] = fn()
    except _Slow:
        raise
    except Exception as e:  # noqa: BLE001
        res[name + "_error"] = type(e).__name__
        res[name + "_message"] = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""


class _Lines:
    """sys.settrace over the changed files only: which changed lines ran."""

    def __init__(self, changed: dict):
        import transformers

        root = Path(transformers.__file__).resolve().parent
        self.want = {str(root / rel): set(lines) for rel, lines in changed.items()}
        self.hit: set = set()
        self._files: dict = {}

    def _file(self, name: str):
        f = self._files.get(name)
        if f is None:
            f = self._files[name] = self.want.get(str(Path(name).resolve()), False) if name[:1] != "<" else False
        return f

    def tracer(self, frame, event, arg):
        lines = self._file(frame.f_code.co_filename)
        if lines is False:
            return None
        if event == "line" and frame.f_lineno in lines:
            self.hit.add((frame.f_code.co_filename, frame.f_lineno))
        return self.tracer

    def __enter__(self):
        sys.settrace(self.tracer)
        return self

    def __exit__(self, *exc):
        sys.settrace(None)
        return False


SEQ_AXIS = {"input_ids": 1, "attention_mask": 1, "decoder_input_ids": 1, "input_values": 1}


def _where(e: BaseException) -> str | None:
    """The innermost frame of transformers' code in the exception chain (relative to the package)."""
    import traceback

    import transformers

    root = str(Path(transformers.__file__).resolve().parent) + "/"
    best, seen = None, set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        for fs in traceback.extract_tb(e.__traceback__):
            f = str(Path(fs.filename).resolve())
            if f.startswith(root):
                best = f"{f[len(root) :]}:{fs.lineno}"
        e = e.__cause__ or e.__context__
    return best


def export_dynamic(model, x: dict, family: str) -> dict:
    """torch.export (non-strict) with the batch axis and the sequence axis of text and audio inputs dynamic
    (Dim.DYNAMIC): ok, or the failure's kind (data-dependent guard, pinned axis, other), its first line and
    the innermost line of transformers that caused it (for a pinned axis: the line running when torch
    specialised it). Exported: the program's outputs against eager on the example and on a new batch and
    sequence length (`parity`: "ok" or what differs)."""
    from tracesafe.export.exporters import _Specialisations
    from tracesafe.export.inputs import Slot, spec_of

    names = list(x)
    wrapped = traceable(model, names)
    axes = {n: {0: "batch", **({SEQ_AXIS[n]: "seq"} if n in SEQ_AXIS and family != "vision" else {})} for n in names}
    shapes = (tuple({a: torch.export.Dim.DYNAMIC for a in axes[n]} for n in names),)  # forward(*args)
    slots = [Slot(n, False, spec_of(x[n], n), dims=axes[n]) for n in names]
    import transformers

    root = str(Path(transformers.__file__).resolve().parent) + "/"

    def frame():
        fr = sys._getframe(1)
        while fr is not None:
            f = fr.f_code.co_filename
            if f.startswith(root):
                return (f[len(root) :], fr.f_lineno)
            fr = fr.f_back
        return None

    out: dict = {}
    with _Specialisations(slots, frame) as seen:
        try:
            ep = torch.export.export(wrapped, tuple(x.values()), dynamic_shapes=shapes, strict=False)
        except Exception as e:  # noqa: BLE001
            text = str(e)
            pinned = "specialized it to be a constant" in text or "Constraints violated" in text
            ddd = "data-dependent" in text or "GuardOnDataDependent" in type(e).__name__ or "unbacked" in text.lower()
            out["kind"] = "pinned" if pinned else "data-dependent" if ddd else "other"
            out["message"] = text.strip().splitlines()[0][:300] if text.strip() else type(e).__name__
            where = [f"{f}:{ln}" for f, ln in seen.where.values()] if pinned else []
            out["where"] = where[0] if where else _where(e)
            return out
    out["kind"] = "ok"
    out["parity"] = _program_parity(ep, wrapped, x, axes)
    return out


def _program_parity(ep, wrapped, x: dict, axes: dict) -> str:
    """The exported program against eager: on the example, then with batch + 1 and seq + 1."""
    g = torch.Generator().manual_seed(1)

    def grown(name, t):
        shape = list(t.shape)
        for a in axes[name]:
            shape[a] += 1
        if t.dtype.is_floating_point:
            return torch.randn(shape, generator=g, dtype=t.dtype)
        if name == "attention_mask":
            return torch.ones(shape, dtype=t.dtype)
        return torch.randint(int(t.min()), int(t.max()) + 1, shape, generator=g, dtype=t.dtype)

    for label, args in (
        ("example", tuple(x.values())),
        ("new batch and sequence", tuple(grown(n, t) for n, t in x.items())),
    ):
        try:
            got = ep.module()(*args)
        except Exception as e:  # noqa: BLE001
            return f"{label}: the program raised {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}"
        want = wrapped(*args)
        if len(got) != len(want) or any(
            a.shape != b.shape or not torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5, equal_nan=True)
            for a, b in zip(got, want)
        ):
            return f"{label}: outputs differ from eager"
    return "ok"


def run_one(
    model_type: str, changed: dict | None = None, dynamic_export: bool = False, coverage_only: bool = False
) -> dict:
    cls, family, generative = pick(model_type)
    cfg = tiny_config(model_type)
    if family == "text" and getattr(cfg, "is_encoder_decoder", False):
        family = "seq2seq"
    torch.manual_seed(0)
    model = cls(cfg).eval()
    x = inputs(model, family)
    res = {"class": cls.__name__}

    def decode():
        pre = model(**x, use_cache=True)
        nxt = pre.logits[:, -1:].argmax(-1)
        step = {"input_ids": nxt, "past_key_values": pre.past_key_values, "use_cache": True}
        if "attention_mask" in x:
            step["attention_mask"] = torch.cat([x["attention_mask"], torch.ones_like(nxt)], dim=1)
        return tensors(pre.logits) + tensors(model(**step).logits)

    def trace():
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False  # a Cache object is not a traceable output
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.jit.trace(traceable(model, list(x)), tuple(x.values()), check_trace=False, strict=False)
        return len({(w.filename, w.lineno) for w in caught if issubclass(w.category, torch.jit.TracerWarning)})

    def export():
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        torch.export.export(traceable(model, list(x)), tuple(x.values()))
        return True

    def dynamic():
        if hasattr(model.config, "use_cache"):
            model.config.use_cache = False
        return export_dynamic(model, x, family)

    lines = _Lines(changed or {})
    with torch.no_grad():
        with lines:
            _stage(res, "forward", lambda: tensors(model(**x, use_cache=False) if generative else model(**x)))
            if generative:
                _stage(res, "decode", decode)
        res["ran_changed"] = len(lines.hit)
        if coverage_only:
            return res
        _stage(res, "warnings", trace)
        _stage(res, "exported", export)
        if dynamic_export:
            _stage(res, "dynamic", dynamic)
    return res


def main(types_json: str, out_file: str, changed_json: str | None = None) -> None:
    types = json.loads(Path(types_json).read_text())
    changed = json.loads(Path(changed_json).read_text()) if changed_json and changed_json != "-" else None
    dynamic_export = os.environ.get("TRACESAFE_DYNAMIC_EXPORT") == "1"
    coverage_only = os.environ.get("TRACESAFE_COVERAGE_ONLY") == "1"  # forward and decode: which ran the fix
    results = {}
    signal.signal(signal.SIGALRM, _alarm)
    for mt in types:
        signal.alarm(LIMIT)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[mt] = run_one(mt, changed, dynamic_export, coverage_only)
        except BaseException as e:  # noqa: BLE001 - one model's failure is that model's result
            if isinstance(e, KeyboardInterrupt):
                raise
            results[mt] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        finally:
            signal.alarm(0)
    import transformers

    results["__transformers__"] = str(Path(transformers.__file__).parent)
    torch.save(results, out_file)


if __name__ == "__main__":
    main(*sys.argv[1:4])

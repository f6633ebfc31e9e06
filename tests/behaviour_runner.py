"""Run real transformers models the way a user would, for the before/after behaviour test.

    python behaviour_runner.py MODEL_TYPES_JSON OUT_FILE

Runs in its own interpreter: PYTHONPATH decides which copy of transformers it imports (the original or a
fixed one). For each model type: the class built from a tiny random config (fixed seed), a forward pass,
for a causal LM a prefill plus one cached decode step, and a torch.jit.trace of the forward pass with its
TracerWarning sites counted, and a torch.export of it. Everything lands in OUT_FILE (torch.save) keyed by model type; a model that
does not build or run here records its error instead (the test compares only what ran before the fix)."""

from __future__ import annotations

import json
import signal
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from real_models import inputs, tiny_config, traceable  # noqa: E402

LIMIT = 60  # seconds per model: a model that takes longer says nothing either way


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


def run_one(model_type: str) -> dict:
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

    with torch.no_grad():
        _stage(res, "forward", lambda: tensors(model(**x, use_cache=False) if generative else model(**x)))
        if generative:
            _stage(res, "decode", decode)
        _stage(res, "warnings", trace)
        _stage(res, "exported", export)
    return res


def main(types_json: str, out_file: str) -> None:
    types = json.loads(Path(types_json).read_text())
    results = {}
    signal.signal(signal.SIGALRM, _alarm)
    for mt in types:
        signal.alarm(LIMIT)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[mt] = run_one(mt)
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
    main(*sys.argv[1:3])

"""Real transformers model classes built from tiny random configs, for the tracer ground truth.

The sample is fixed (one class per architecture, chosen for spread: text encoders and decoders,
encoder-decoders, vision, audio, detection, mixture-of-experts, state-space), not picked by result.
Each config is a model type's default, shrunk: widths, depths, heads and experts made small, so that a
forward pass and a trace take well under a second on a CPU.
"""

from __future__ import annotations

import functools
import sys

# (model class, family). The family decides the inputs.
SAMPLE = [
    # text encoders
    ("BertModel", "text"),
    ("RobertaModel", "text"),
    ("AlbertModel", "text"),
    ("DistilBertModel", "text"),
    ("ElectraModel", "text"),
    ("DebertaV2Model", "text"),
    ("XLMRobertaModel", "text"),
    ("ModernBertModel", "text"),
    ("BigBirdModel", "text"),
    ("FNetModel", "text"),
    # text decoders
    ("GPT2Model", "text"),
    ("LlamaModel", "text"),
    ("MistralModel", "text"),
    ("Qwen2Model", "text"),
    ("GemmaModel", "text"),
    ("Gemma2Model", "text"),
    ("Phi3Model", "text"),
    ("OPTModel", "text"),
    ("GPTNeoXModel", "text"),
    ("BloomModel", "text"),
    ("FalconModel", "text"),
    ("CodeGenModel", "text"),
    ("GPTJModel", "text"),
    ("StableLmModel", "text"),
    ("OlmoModel", "text"),
    ("CohereModel", "text"),
    # encoder-decoders
    ("T5Model", "seq2seq"),
    ("BartModel", "seq2seq"),
    ("PegasusModel", "seq2seq"),
    ("MarianModel", "seq2seq"),
    ("LongT5Model", "seq2seq"),
    # mixture of experts
    ("MixtralModel", "text"),
    ("Qwen2MoeModel", "text"),
    ("OlmoeModel", "text"),
    ("SwitchTransformersModel", "seq2seq"),
    # state space / recurrent
    ("MambaModel", "text"),
    ("Mamba2Model", "text"),
    ("FalconMambaModel", "text"),
    ("RwkvModel", "text"),
    # vision
    ("ViTModel", "vision"),
    ("DeiTModel", "vision"),
    ("ConvNextModel", "vision"),
    ("SwinModel", "vision"),
    ("ResNetModel", "vision"),
    ("BeitModel", "vision"),
    ("Dinov2Model", "vision"),
    ("SegformerModel", "vision"),
    ("MobileViTModel", "vision"),
    ("PoolFormerModel", "vision"),
    ("Swinv2Model", "vision"),
    # audio
    ("Wav2Vec2Model", "audio"),
    ("HubertModel", "audio"),
    ("WavLMModel", "audio"),
    ("ASTModel", "spectrogram"),
    # detection
    ("RTDetrModel", "detection"),
    ("YolosModel", "vision"),
]

_INT = {
    "hidden_size": 32,
    "d_model": 32,
    "n_embd": 32,
    "embed_dim": 32,
    "n_embed": 32,
    "dim": 32,
    "emb_dim": 32,
    "intermediate_size": 64,
    "d_ff": 64,
    "n_inner": 64,
    "ffn_dim": 64,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "hidden_dim": 64,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "num_hidden_layers": 2,
    "n_layer": 2,
    "num_layers": 2,
    "n_layers": 2,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "num_decoder_layers": 2,
    "num_attention_heads": 4,
    "n_head": 4,
    "n_heads": 4,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "num_heads": 4,
    "num_key_value_heads": 2,
    "d_kv": 8,
    "head_dim": 8,
    "attention_head_size": 8,
    "num_local_experts": 4,
    "num_experts": 4,
    "num_experts_per_tok": 2,
    "expert_capacity": 8,
    "embedding_size": 32,
    "projection_dim": 32,
    "time_step_rank": 8,
    "state_size": 8,
    "conv_kernel": 4,
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 4,
    "rotary_dim": 8,
    "attention_hidden_size": 32,
    "max_position_embeddings": 128,
    "n_positions": 128,
    "block_size": 8,
    "num_random_blocks": 2,
    "num_queries": 10,
    "encoder_layers_": 2,
    "num_channels": 3,
}
_LIST = {
    "hidden_sizes": [8, 16, 24, 32],
    "depths": [1, 1, 1, 1],
    "num_heads": [2, 2, 2, 2],
    "conv_dim": [16, 16],
    "conv_stride": [5, 2],
    "conv_kernel": [10, 3],
    "embed_dims": [8, 16, 24, 32],
    "neck_hidden_sizes": [8, 8, 16, 16, 24, 24, 32],
}


def tiny_config(model_type: str):
    from transformers import CONFIG_MAPPING

    cfg = CONFIG_MAPPING[model_type]()
    shrink(cfg)
    return cfg


def shrink(cfg) -> None:
    from transformers import PretrainedConfig

    for name, value in list(vars(cfg).items()):
        if isinstance(value, PretrainedConfig):
            shrink(value)
        elif isinstance(value, bool) or name.startswith("_"):
            continue
        elif isinstance(value, int) and name in _INT and value > _INT[name]:
            setattr(cfg, name, _INT[name])
        elif isinstance(value, (list, tuple)) and name in _LIST and value and all(isinstance(v, int) for v in value):
            small = _LIST[name]
            setattr(
                cfg,
                name,
                (small * len(value))[: len(value)]
                if name == "depths" or name == "num_heads"
                else small[: len(value)]
                if len(small) >= len(value)
                else small + small[-1:] * (len(value) - len(small)),
            )
    if isinstance(vars(cfg).get("layer_types"), list):
        n = getattr(cfg, "num_hidden_layers", None)
        if isinstance(n, int):
            cfg.layer_types = cfg.layer_types[:n]
    if isinstance(vars(cfg).get("image_size"), int) and cfg.image_size > 64 and "window_size" not in vars(cfg):
        cfg.image_size = 64
    if getattr(cfg, "model_type", "") == "mamba2":
        cfg.num_heads = cfg.expand * cfg.hidden_size // cfg.head_dim  # mamba2 requires heads * head_dim = inner
    if getattr(cfg, "use_timm_backbone", False):
        cfg.use_timm_backbone = False
        cfg.use_pretrained_backbone = False


def build(class_name: str):
    """(model, family) in eval mode, from a tiny config."""
    import torch
    import transformers

    cls = getattr(transformers, class_name)
    cfg = tiny_config(cls.config_class.model_type)
    if hasattr(cfg, "use_cache"):
        cfg.use_cache = False  # a Cache object is not a traceable output
    torch.manual_seed(0)
    return cls(cfg).eval()


def traceable(model, names):
    """The model called with its inputs by name (in this order), its output flattened to the tensors in it
    (ModelOutput objects may hold lists)."""
    import torch

    class Flat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = []

            def walk(v):
                if isinstance(v, torch.Tensor):
                    out.append(v)
                elif isinstance(v, dict):
                    for x in v.values():
                        walk(x)
                elif isinstance(v, (list, tuple)):
                    for x in v:
                        walk(x)

            walk(self.model(**dict(zip(names, args))))
            return tuple(out)

    return Flat().eval()


def inputs(model, family: str) -> dict:
    """Example inputs: batch 2, a right-padded attention mask for text."""
    import torch

    g = torch.Generator().manual_seed(0)
    cfg = model.config
    if family in ("text", "seq2seq"):
        text = getattr(cfg, "text_config", None) or cfg
        vocab = min(getattr(text, "vocab_size", 100) or 100, 100)
        ids = torch.randint(3, vocab, (2, 16), generator=g)
        mask = torch.ones(2, 16, dtype=torch.long)
        mask[1, -4:] = 0
        out = {"input_ids": ids}
        params = _params(model)
        if "attention_mask" in params:
            out["attention_mask"] = mask
        if family == "seq2seq":
            out["decoder_input_ids"] = ids[:, :8].clone()  # its own storage: a view would carry the strides of ids
        return out
    if family in ("vision", "detection"):
        size = getattr(cfg, "image_size", 64)
        size = size[0] if isinstance(size, (list, tuple)) else size
        return {"pixel_values": torch.randn(2, getattr(cfg, "num_channels", 3), size, size, generator=g)}
    if family == "audio":
        return {"input_values": torch.randn(2, 4000, generator=g)}
    if family == "spectrogram":
        return {"input_values": torch.randn(2, cfg.max_length, cfg.num_mel_bins, generator=g)}
    raise ValueError(family)


def _params(model) -> set:
    import inspect

    return set(inspect.signature(model.forward).parameters)


_ARMS = {"body", "orelse", "finalbody", "handlers", "cases"}  # a compound statement's parts after its header


def _headers(path: str):
    """Every statement but a definition, from `ast`: (node, its header's lines, the nodes that make the
    header). The header of a compound statement is its test, iterable, items or subject; of a simple one,
    all of it."""
    import ast

    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if not isinstance(node, ast.stmt) or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        body = getattr(node, "body", None)
        if isinstance(body, list) and body:
            yield (
                node,
                (node.lineno, max(node.lineno, body[0].lineno - 1)),
                [v for k, v in ast.iter_fields(node) if k not in _ARMS],
            )
        else:
            yield node, (node.lineno, node.end_lineno), [node]


def statement_spans(path: str) -> list[tuple[int, int]]:
    """The header lines of every statement (an `if`'s test, a simple statement's lines)."""
    return [span for _, span, _ in _headers(path)]


@functools.lru_cache(maxsize=None)
def branch_operands(path: str) -> dict[tuple[int, int], list[tuple[int, int, int, int]]]:
    """Statement header -> the spans of the operands of its `and`/`or`s and the arms of its ternaries: the
    parts of a statement that can be skipped while the statement runs. The header is as in
    `statement_spans`; an `assert` counts its test only (its message runs only when the test fails)."""
    import ast

    out: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    for node, span, parts in _headers(path):
        if isinstance(node, ast.Assert):
            parts = [node.test]
        ops = []
        roots = [p for part in parts for p in (part if isinstance(part, list) else [part]) if isinstance(p, ast.AST)]
        for sub in (n for p in roots for n in ast.walk(p)):
            if isinstance(sub, ast.BoolOp):
                arms = sub.values
            elif isinstance(sub, ast.IfExp):
                arms = [sub.body, sub.orelse]  # its test runs whenever the ternary does
            else:
                continue
            ops.extend((a.lineno, a.col_offset, a.end_lineno, a.end_col_offset) for a in arms)
        if ops:
            out.setdefault(span, []).extend(ops)
    return out


@functools.lru_cache(maxsize=None)
def operand_lines(path: str) -> frozenset[int]:
    """The lines of the statement headers that hold an `and`/`or` or a ternary (branch_operands)."""
    return frozenset(ln for a, b in branch_operands(path) for ln in range(a, b + 1))


def fully_ran(path: str, span: tuple[int, int], ran_at: set) -> bool:
    """Every operand of the statement's `and`/`or`s and every arm of its ternaries ran some instruction
    (ran_at: the spans of the instructions that ran, from trace_truth)."""
    for line, col, end_line, end_col in branch_operands(path).get(span, ()):
        if not any((line, col) <= (a, c) and (b, d) <= (end_line, end_col) for a, b, c, d in ran_at):
            return False
    return True


def header(spans, line: int) -> tuple[int, int]:
    """The innermost statement header holding line."""
    inside = [s for s in spans if s[0] <= line <= s[1]]
    return min(inside, key=lambda s: s[1] - s[0]) if inside else (line, line)


def measure(sample=SAMPLE, jobs: int = 2) -> dict:
    """Trace every sample model, check the files it ran, and compare line by line (`score`)."""
    import transformers

    def case(name: str, family: str):
        model = build(name)
        x = inputs(model, family)
        return traceable(model, list(x)), tuple(x.values()), getattr(transformers, name)

    return score(transformers, [(name, lambda n=name, f=family: case(n, f)) for name, family in sample], jobs)


def score(library, cases, jobs: int = 2) -> dict:
    """Ground truth on a library's real code: `cases` are (name, make), make() -> (module to trace, inputs,
    the model's class). A warned line is found when a TS1xx finding lies on the header of its statement. A
    TS1xx finding on a statement that ran under the tracer without any warning in it is a false alarm, unless
    an operand of its `and`/`or` or an arm of its ternary never ran (then it is left out: `tally`)."""
    import inspect
    import os
    import warnings
    from pathlib import Path

    import torch

    from tracer_truth import trace_truth
    from tracesafe.analyzer import Config
    from tracesafe.runner import check_paths

    pkg = Path(library.__file__).resolve().parent
    files = {str(p) for p in pkg.rglob("*.py")}
    warned: dict[str, set[int]] = {}
    executed: dict[str, set[int]] = {}
    external: dict[str, set[int]] = {}  # warned inside torch on a line's behalf: a finding there is confirmed
    ran_at: dict[str, set] = {}  # the instructions run on statements with and/or or a ternary
    traced, failed, classes = [], [], []
    for name, make in cases:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.manual_seed(0)
                module, x, cls = make()
            with torch.no_grad():
                w, e = trace_truth(
                    module, x, files, direct_only=True, external=external, ran_at=ran_at, watch=operand_lines
                )
        except Exception as exc:  # a model that does not build or trace here says nothing either way
            failed.append(f"{name}: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}")
            continue
        traced.append(name)
        classes.append(cls)
        for d, src in ((warned, w), (executed, e)):
            for fn, lines in src.items():
                d.setdefault(fn, set()).update(lines)
    roots = sorted(set(executed) | {str(Path(inspect.getfile(c)).resolve()) for c in classes})
    res = check_paths([os.path.relpath(p) for p in roots], Config(target="trace"), jobs=jobs)
    flagged: dict[str, list] = {}
    for f in res.findings:
        if f.code.startswith("TS1"):
            flagged.setdefault(str(Path(f.path).resolve()), []).append((f.line, f.code))
    counts = tally(warned, executed, external, flagged, lambda fn: Path(fn).relative_to(pkg).as_posix(), ran_at)
    return {"traced": traced, "failed": failed, **counts}


def describe(r: dict) -> list[str]:
    """The figures of a `score`, and every miss and false alarm, as lines to print."""
    alarms, unrun = r["alarms"], r["unrun"]
    ran = r["confirmed"] + len(alarms)
    strict = r["confirmed"] / (ran + len(unrun)) if ran + len(unrun) else 1
    found = r["warned"] - len(r["missed"])
    return [
        f"  recall {found / r['warned'] if r['warned'] else 1:.3f} ({found}/{r['warned']} warned statements flagged)",
        f"  precision on executed code {r['confirmed'] / ran if ran else 1:.3f} ({r['confirmed']} confirmed, "
        f"{len(alarms)} false alarms, {sum(a for a, _ in alarms)} of them on and/or statements; {len(unrun)} not "
        f"fully run left out; strict, counting those, {strict:.3f})",
        *(f"  miss {m}" for m in r["missed"]),
        *(f"  false alarm{' (and/or)' if a else ''} {text}" for a, text in alarms),
        *(f"  not fully run {text}" for text in unrun),
    ]


def tally(
    warned: dict, executed: dict, external: dict, flagged: dict, name=lambda fn: fn, ran_at: dict | None = None
) -> dict:
    """Score findings against the tracer, one unit throughout: a statement (its header). `warned`,
    `executed`, `external`: file -> lines; `flagged`: file -> [(line, code)]. Returns the warned statements,
    those missed, the flagged statements that ran and were confirmed, and the false alarms (and/or apart).
    With `ran_at` (trace_truth's instructions run), a flagged statement that ran without a warning but
    skipped an operand of its `and`/`or` or an arm of its ternary is neither confirmed nor refuted: it goes
    to `unrun`, out of precision, as the shared oracle scores it (its operands.json)."""
    import re
    from pathlib import Path

    missed, confirmed, alarms, unrun, n_warned = [], 0, [], [], 0
    for fn in sorted(set(warned) | set(flagged)):
        spans = statement_spans(fn)
        lines = Path(fn).read_text(encoding="utf-8").splitlines()
        rel = name(fn)
        heads = {header(spans, w) for w in warned.get(fn, ())}
        n_warned += len(heads)
        for a, b in sorted(heads):
            if not any(a <= line <= b for line, _ in flagged.get(fn, ())):
                missed.append(f"{rel}:{a} {lines[a - 1].strip()[:100]}")
        seen = set()
        for line, code in flagged.get(fn, ()):
            a, b = header(spans, line)
            if (a, b) in seen or not any(ln in executed.get(fn, ()) for ln in range(a, b + 1)):
                continue
            seen.add((a, b))
            if (a, b) in heads or any(a <= ln <= b for ln in external.get(fn, ())):
                confirmed += 1
            else:
                text = " ".join(ln.strip() for ln in lines[a - 1 : b])
                if ran_at is not None and not fully_ran(fn, (a, b), ran_at.get(fn, set())):
                    unrun.append(f"{rel}:{a} {code} {text[:100]}")
                    continue
                # `and`/`or` or a conditional expression: the flagged operand may not have run
                partial = re.search(r"\b(and|or)\b|\bif\b.+\belse\b", text)
                alarms.append((bool(partial), f"{rel}:{a} {code} {text[:100]}"))
    return {"warned": n_warned, "missed": missed, "confirmed": confirmed, "alarms": alarms, "unrun": unrun}


def fix_command(form: str, *paths: str) -> list[str]:
    """`tracesafe fix` with every rewrite of one form (unsafe ones too), on two workers, as the real-code
    measurements run it (the behaviour test, the rescue and fp16 benchmarks)."""
    return [
        sys.executable,
        "-m",
        "tracesafe",
        "fix",
        "--unsafe-fixes",
        "--form",
        form,
        "--jobs",
        "2",
        "--exit-zero",
        *paths,
    ]

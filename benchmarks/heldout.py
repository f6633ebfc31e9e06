"""Held-out ground truth: diffusers models from tiny configs, traced by torch.jit.trace, scored like the
transformers oracle (a statement is the unit: its header).

The analyzer was never tuned to diffusers: this measures how it generalises. Every statement the tracer
warns on should carry a TS1xx finding (recall); a TS1xx finding on a statement that ran without a warning is
a false alarm (precision on executed code), unless an operand of its `and`/`or` or an arm of its ternary
never ran: the tracer had nothing to say about it, and it is left out, as in the shared oracle.

    python benchmarks/heldout.py            # needs torch and diffusers
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))


def _t(*shape):
    import torch

    return torch.randn(*shape)


def sample() -> list[tuple[str, dict, object]]:
    """(class, config, inputs): small enough to trace in seconds, covering UNets, VAEs and transformers."""
    import torch

    step = lambda: torch.tensor([10])  # noqa: E731
    down, up = ("DownBlock2D", "AttnDownBlock2D"), ("AttnUpBlock2D", "UpBlock2D")
    unet = dict(block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8, sample_size=16)
    cross = dict(
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=16,
        cross_attention_dim=16,
        attention_head_dim=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    vae = dict(
        block_out_channels=(16, 32),
        norm_num_groups=8,
        latent_channels=4,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
    )
    dit = dict(num_attention_heads=2, attention_head_dim=8, in_channels=4, num_layers=1, sample_size=8)
    return [
        ("UNet2DModel", {**unet, "down_block_types": down, "up_block_types": up}, lambda: (_t(2, 3, 16, 16), step())),
        ("UNet2DConditionModel", cross, lambda: (_t(2, 4, 16, 16), step(), _t(2, 5, 16))),
        ("AutoencoderKL", vae, lambda: (_t(2, 3, 16, 16),)),
        ("VQModel", {**vae, "num_vq_embeddings": 16, "vq_embed_dim": 4}, lambda: (_t(2, 3, 16, 16),)),
        (
            "AutoencoderTiny",
            dict(
                encoder_block_out_channels=(8, 8),
                decoder_block_out_channels=(8, 8),
                num_encoder_blocks=(1, 1),
                num_decoder_blocks=(1, 1),
            ),
            lambda: (_t(2, 3, 16, 16),),
        ),
        (
            "DiTTransformer2DModel",
            {**dit, "out_channels": 4, "num_embeds_ada_norm": 10, "norm_num_groups": 4},
            lambda: (_t(2, 4, 8, 8), step(), torch.tensor([1, 2])),
        ),
        (
            "SD3Transformer2DModel",
            dict(
                sample_size=8,
                patch_size=2,
                in_channels=4,
                num_layers=1,
                attention_head_dim=8,
                num_attention_heads=2,
                joint_attention_dim=16,
                caption_projection_dim=16,
                pooled_projection_dim=16,
                out_channels=4,
                pos_embed_max_size=16,
            ),
            lambda: (_t(2, 4, 8, 8), _t(2, 5, 16), _t(2, 16), step()),
        ),
        (
            "FluxTransformer2DModel",
            dict(
                patch_size=1,
                in_channels=8,
                num_layers=1,
                num_single_layers=1,
                attention_head_dim=8,
                num_attention_heads=2,
                joint_attention_dim=16,
                pooled_projection_dim=16,
                axes_dims_rope=(2, 2, 4),
            ),
            lambda: (
                _t(2, 16, 8),
                _t(2, 5, 16),
                _t(2, 16),
                torch.tensor([1.0, 1.0]),
                torch.zeros(16, 3),
                torch.zeros(5, 3),
            ),
        ),
        (
            "PriorTransformer",
            dict(
                num_attention_heads=2,
                attention_head_dim=8,
                num_layers=1,
                embedding_dim=16,
                num_embeddings=4,
                additional_embeddings=4,
            ),
            lambda: (_t(2, 16), step(), _t(2, 16), _t(2, 4, 16), torch.ones(2, 4, dtype=torch.bool)),
        ),
        (
            "ControlNetModel",
            {k: v for k, v in cross.items() if k not in ("sample_size", "up_block_types")}
            | {"conditioning_embedding_out_channels": (8, 16)},
            lambda: (_t(2, 4, 16, 16), step(), _t(2, 5, 16), _t(2, 3, 32, 32)),
        ),
    ]


def traceable(model, n: int):
    """forward(*inputs) with a plain tuple of tensors out (diffusers returns output dataclasses)."""
    import torch

    class Wrapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *args):
            out = self.model(*args[:n], return_dict=False)
            return tuple(o for o in out if isinstance(o, torch.Tensor)) if isinstance(out, tuple) else out

    return Wrapped()


def cases() -> list:
    """(name, make) for real_models.score: make() builds the model and its inputs."""
    import diffusers

    def case(name, config, make):
        cls = getattr(diffusers, name)
        x = make()
        return traceable(cls(**config).eval(), len(x)), x, cls

    return [(name, lambda n=name, c=config, m=make: case(n, c, m)) for name, config, make in sample()]


def main() -> None:
    import diffusers

    from real_models import describe, score

    t = time.perf_counter()
    r = score(diffusers, cases())
    print(
        f"diffusers {diffusers.__version__}: {len(r['traced'])} models traced ({len(r['failed'])} failed to build "
        f"or trace) in {time.perf_counter() - t:.1f} s"
    )
    for f in r["failed"]:
        print(f"  not traced: {f}")
    print("\n".join(describe(r)))


if __name__ == "__main__":
    main()

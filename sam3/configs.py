"""Named SAM 3 architectures for tests, benchmarks and the embedded toy model.

Every entry builds a real ``transformers.Sam3Config``; only the sizes differ from facebook/sam3.
All use the real CLIP vocabulary (49,408 ids) and context length 32.
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import Sam3Config

VOCAB_SIZE = 49408
CONTEXT_LENGTH = 32


@dataclass(frozen=True)
class ArchSpec:
    """Sizes of a small SAM 3. Field names follow the transformers sub-configs."""

    image_size: int = 168  # square input side, a multiple of patch_size
    patch_size: int = 14  # ViT patch side
    vit_hidden: int = 96  # ViT width
    vit_layers: int = 4  # ViT depth; the last layer uses global attention
    vit_heads: int = 4  # ViT attention heads
    window_size: int = 6  # ViT windowed-attention side, in patches
    text_hidden: int = 64  # CLIP text encoder width
    text_layers: int = 2  # CLIP text encoder depth
    text_heads: int = 4  # CLIP text encoder heads
    hidden: int = 64  # FPN / DETR / mask decoder width
    heads: int = 4  # DETR and mask decoder heads
    detr_encoder_layers: int = 1  # image-text fusion layers
    detr_decoder_layers: int = 2  # query decoder layers
    num_queries: int = 24  # DETR object queries
    scale_factors: tuple[float, ...] = (4.0, 2.0, 1.0, 0.5)  # FPN levels / ViT grid; masks at the first

    def to_config(self) -> Sam3Config:
        """Build the transformers config for these sizes."""
        grid = self.image_size // self.patch_size
        ffn = 4 * self.hidden
        return Sam3Config(
            vision_config=dict(
                backbone_config=dict(
                    model_type="sam3_vit_model",
                    hidden_size=self.vit_hidden,
                    intermediate_size=4 * self.vit_hidden,
                    num_hidden_layers=self.vit_layers,
                    num_attention_heads=self.vit_heads,
                    image_size=self.image_size,
                    pretrain_image_size=self.image_size,
                    patch_size=self.patch_size,
                    window_size=self.window_size,
                    global_attn_indexes=[self.vit_layers - 1],
                ),
                fpn_hidden_size=self.hidden,
                scale_factors=list(self.scale_factors),
                backbone_feature_sizes=[[int(s * grid)] * 2 for s in self.scale_factors[:3]],
            ),
            text_config=dict(
                vocab_size=VOCAB_SIZE,
                max_position_embeddings=CONTEXT_LENGTH,
                hidden_size=self.text_hidden,
                intermediate_size=4 * self.text_hidden,
                num_hidden_layers=self.text_layers,
                num_attention_heads=self.text_heads,
                projection_dim=self.text_hidden,
            ),
            geometry_encoder_config=dict(
                hidden_size=self.hidden, intermediate_size=ffn, num_layers=1, num_attention_heads=self.heads
            ),
            detr_encoder_config=dict(
                hidden_size=self.hidden,
                intermediate_size=ffn,
                num_layers=self.detr_encoder_layers,
                num_attention_heads=self.heads,
            ),
            detr_decoder_config=dict(
                hidden_size=self.hidden,
                intermediate_size=ffn,
                num_layers=self.detr_decoder_layers,
                num_attention_heads=self.heads,
                num_queries=self.num_queries,
            ),
            mask_decoder_config=dict(hidden_size=self.hidden, num_attention_heads=self.heads),
        )


# `tiny`: the fastest config that still exercises every module (unit tests).
# `toy`: 168 px input, 4-layer ViT, 2-layer CLIP text encoder, 24 queries, 48x48 masks (the default
#   ArchSpec); the shipped sam3-toy's architecture until its 133-min recipe was replaced (README).
# `toy24`: `toy` with 24x24 masks and one pixel-decoder stage (FPN scales 2, 1, 0.5): a step costs about
#   0.6x `toy`'s, but its stage 1 never grounds the prompts, so its quality is left to chance (README).
# `toy24d`: the shipped sam3-toy (sam3/toy/train.py's default): `toy24` with `toy`'s two pixel-decoder
#   stages (FPN scales 2, 2, 1, 0.5: the second at 24x24); its stage 1 grounds, and the two-stage recipe
#   meets the quality bars in about 54 min on 2 CPU cores (README, "The embedded model").
# `full`: facebook/sam3's sizes (random weights; GPU benchmarks only).
ARCHS: dict[str, ArchSpec | None] = {
    "tiny": ArchSpec(
        image_size=56,
        vit_hidden=32,
        vit_layers=2,
        window_size=2,
        text_hidden=32,
        text_layers=2,
        hidden=32,
        num_queries=8,
    ),
    "toy": ArchSpec(),
    "toy24": ArchSpec(scale_factors=(2.0, 1.0, 0.5)),
    "toy24d": ArchSpec(scale_factors=(2.0, 2.0, 1.0, 0.5)),
    "full": None,
}


def named_config(name: str) -> Sam3Config:
    """Return the ``Sam3Config`` of a named architecture.

    Raises:
        ValueError: for an unknown name, listing the known ones.
    """
    if name not in ARCHS:
        raise ValueError(f"unknown SAM 3 architecture {name!r}; known: {', '.join(sorted(ARCHS))}")
    spec = ARCHS[name]
    return Sam3Config() if spec is None else spec.to_config()

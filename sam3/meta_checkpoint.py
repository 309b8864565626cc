"""Meta's original SAM 3 checkpoint (``sam3.pt``) remapped into transformers' ``Sam3Model`` layout.

Meta's file (facebook/sam3's ``sam3.pt``, from the ``sam3`` package) holds the video model's state
dict: the image detector under ``detector.*`` and the video tracker under ``tracker.*``. The image
detector's names follow Meta's modules (``backbone.vision_backbone.trunk.blocks.N.attn.qkv``, ...).
The renames below follow transformers' own SAM 3 conversion (``convert_sam3_to_hf.py``) and were
checked against the key list of the model that ``sam3.model_builder.build_sam3_image_model`` builds
(``sam3`` 0.1.4): every Meta tensor lands on a transformers tensor of the same shape, or is one of
the known leftovers in ``IGNORED``. Besides renaming:

- fused attention projections (``attn.qkv``, ``in_proj_weight``/``in_proj_bias``) are split into
  ``q_proj``/``k_proj``/``v_proj`` (equal thirds along the output dimension);
- the ViT's absolute position embedding drops its leading class-token row (577 -> 576 rows);
- the CLIP text projection is stored transposed by Meta (``x @ W``) and is transposed back;
- the ViT's precomputed rotary tables (``freqs_cis``) are dropped: transformers computes them.

The checkpoint is read with ``torch.load(..., weights_only=True)``: no pickled code runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

# Meta prefixes of the detector inside the video checkpoint (``detector.``) or inside wrappers.
DETECTOR_PREFIXES = ("detector.", "sam3_model.")
# Meta tensors that the transformers image model has no place for, on purpose.
IGNORED = (
    re.compile(r"^tracker\."),  # the video tracker (sam3.pt holds the video model)
    re.compile(r"\.attn\.freqs_cis$"),  # ViT rotary tables, recomputed by transformers
    re.compile(r"^geometry_encoder\.points_"),  # point prompts: transformers' image model takes boxes only
)

_N = r"(\d+)"


def _rules() -> list[tuple[re.Pattern, str]]:
    """(Meta pattern, transformers replacement); the first full match wins."""
    vit = "backbone.vision_backbone.trunk."
    neck = "backbone.vision_backbone.convs."
    text = "backbone.language_backbone.encoder."
    dec = "transformer.decoder."
    table: list[tuple[str, str]] = [
        # ViT backbone
        (vit + "pos_embed", "vision_encoder.backbone.embeddings.position_embeddings"),
        (vit + r"patch_embed\.proj\.(.+)", r"vision_encoder.backbone.embeddings.patch_embeddings.projection.\1"),
        (vit + r"ln_pre\.(.+)", r"vision_encoder.backbone.layer_norm.\1"),
        (vit + rf"blocks\.{_N}\.norm([12])\.(.+)", r"vision_encoder.backbone.layers.\1.layer_norm\2.\3"),
        (vit + rf"blocks\.{_N}\.attn\.qkv\.(.+)", r"vision_encoder.backbone.layers.\1.attention.<qkv>.\2"),
        (vit + rf"blocks\.{_N}\.attn\.proj\.(.+)", r"vision_encoder.backbone.layers.\1.attention.o_proj.\2"),
        (vit + rf"blocks\.{_N}\.mlp\.(fc[12])\.(.+)", r"vision_encoder.backbone.layers.\1.mlp.\2.\3"),
        # FPN neck: Meta's convs.N.{dconv_2x2[_0|_1], conv_1x1, conv_3x3}
        (neck + rf"{_N}\.dconv_2x2(?:_0)?\.(.+)", r"vision_encoder.neck.fpn_layers.\1.scale_layers.0.\2"),
        (neck + rf"{_N}\.dconv_2x2_1\.(.+)", r"vision_encoder.neck.fpn_layers.\1.scale_layers.2.\2"),
        (neck + rf"{_N}\.conv_1x1\.(.+)", r"vision_encoder.neck.fpn_layers.\1.proj1.\2"),
        (neck + rf"{_N}\.conv_3x3\.(.+)", r"vision_encoder.neck.fpn_layers.\1.proj2.\2"),
        # CLIP text encoder
        (text + r"token_embedding\.(.+)", r"text_encoder.text_model.embeddings.token_embedding.\1"),
        (text + "positional_embedding", "text_encoder.text_model.embeddings.position_embedding.weight"),
        (text + r"ln_final\.(.+)", r"text_encoder.text_model.final_layer_norm.\1"),
        (text + "text_projection", "text_encoder.text_projection.weight"),
        (
            text + rf"transformer\.resblocks\.{_N}\.attn\.in_proj_(weight|bias)",
            r"text_encoder.text_model.encoder.layers.\1.self_attn.<qkv>.\2",
        ),
        (
            text + rf"transformer\.resblocks\.{_N}\.attn\.out_proj\.(.+)",
            r"text_encoder.text_model.encoder.layers.\1.self_attn.out_proj.\2",
        ),
        (
            text + rf"transformer\.resblocks\.{_N}\.ln_([12])\.(.+)",
            r"text_encoder.text_model.encoder.layers.\1.layer_norm\2.\3",
        ),
        (
            text + rf"transformer\.resblocks\.{_N}\.mlp\.c_fc\.(.+)",
            r"text_encoder.text_model.encoder.layers.\1.mlp.fc1.\2",
        ),
        (
            text + rf"transformer\.resblocks\.{_N}\.mlp\.c_proj\.(.+)",
            r"text_encoder.text_model.encoder.layers.\1.mlp.fc2.\2",
        ),
        (r"backbone\.language_backbone\.resizer\.(.+)", r"text_projection.\1"),
        # geometry (box prompt) encoder
        (r"geometry_encoder\.img_pre_norm\.(.+)", r"geometry_encoder.vision_layer_norm.\1"),
        (r"geometry_encoder\.norm\.(.+)", r"geometry_encoder.prompt_layer_norm.\1"),
        (r"geometry_encoder\.encode_norm\.(.+)", r"geometry_encoder.output_layer_norm.\1"),
        (rf"geometry_encoder\.encode\.{_N}\.(.+)", r"geometry_encoder.layers.\1.<layer>\2"),
        (r"geometry_encoder\.((?:label|cls)_embed|boxes_\w+|final_proj)\.(.+)", r"geometry_encoder.\1.\2"),
        # DETR encoder (image-text fusion)
        (rf"transformer\.encoder\.layers\.{_N}\.(.+)", r"detr_encoder.layers.\1.<layer>\2"),
        # DETR decoder
        (dec + rf"layers\.{_N}\.ca_text\.(.+)", r"detr_decoder.layers.\1.<attn>text_cross_attn.\2"),
        (dec + rf"layers\.{_N}\.cross_attn\.(.+)", r"detr_decoder.layers.\1.<attn>vision_cross_attn.\2"),
        (dec + rf"layers\.{_N}\.self_attn\.(.+)", r"detr_decoder.layers.\1.<attn>self_attn.\2"),
        (dec + rf"layers\.{_N}\.linear([12])\.(.+)", r"detr_decoder.layers.\1.mlp.fc\2.\3"),
        (dec + rf"layers\.{_N}\.norm1\.(.+)", r"detr_decoder.layers.\1.vision_cross_attn_layer_norm.\2"),
        (dec + rf"layers\.{_N}\.catext_norm\.(.+)", r"detr_decoder.layers.\1.text_cross_attn_layer_norm.\2"),
        (dec + rf"layers\.{_N}\.norm2\.(.+)", r"detr_decoder.layers.\1.self_attn_layer_norm.\2"),
        (dec + rf"layers\.{_N}\.norm3\.(.+)", r"detr_decoder.layers.\1.mlp_layer_norm.\2"),
        (dec + r"(query_embed|reference_points|presence_token)\.(.+)", r"detr_decoder.\1.\2"),
        (dec + r"presence_token_out_norm\.(.+)", r"detr_decoder.presence_layer_norm.\1"),
        (dec + r"norm\.(.+)", r"detr_decoder.output_layer_norm.\1"),
        (dec + rf"presence_token_head\.layers\.{_N}\.(.+)", r"detr_decoder.presence_head.layer<+1:\1>.\2"),
        (dec + rf"bbox_embed\.layers\.{_N}\.(.+)", r"detr_decoder.box_head.layer<+1:\1>.\2"),
        (dec + rf"ref_point_head\.layers\.{_N}\.(.+)", r"detr_decoder.ref_point_head.layer<+1:\1>.\2"),
        (dec + rf"boxRPB_embed_([xy])\.layers\.{_N}\.(.+)", r"detr_decoder.box_rpb_embed_\1.layer<+1:\2>.\3"),
        # query scoring
        (rf"dot_prod_scoring\.prompt_mlp\.layers\.{_N}\.(.+)", r"dot_product_scoring.text_mlp.layer<+1:\1>.\2"),
        (r"dot_prod_scoring\.prompt_mlp\.out_norm\.(.+)", r"dot_product_scoring.text_mlp_out_norm.\1"),
        (r"dot_prod_scoring\.prompt_proj\.(.+)", r"dot_product_scoring.text_proj.\1"),
        (r"dot_prod_scoring\.hs_proj\.(.+)", r"dot_product_scoring.query_proj.\1"),
        # mask decoder
        (r"segmentation_head\.pixel_decoder\.(.+)", r"mask_decoder.pixel_decoder.\1"),
        (
            rf"segmentation_head\.(?:mask_predictor\.)?mask_embed\.layers\.{_N}\.(.+)",
            r"mask_decoder.mask_embedder.layers.\1.\2",
        ),
        (r"segmentation_head\.instance_seg_head\.(.+)", r"mask_decoder.instance_projection.\1"),
        (r"segmentation_head\.semantic_seg_head\.(.+)", r"mask_decoder.semantic_projection.\1"),
        (r"segmentation_head\.cross_attend_prompt\.(.+)", r"mask_decoder.<attn>prompt_cross_attn.\1"),
        (r"segmentation_head\.cross_attn_norm\.(.+)", r"mask_decoder.prompt_cross_attn_norm.\1"),
    ]
    return [(re.compile(p), r) for p, r in table]


_RULES = _rules()
# inside a Meta encoder layer (DETR encoder, geometry encoder): its sub-module names
_LAYER = [
    (re.compile(r"self_attn\.(.+)"), r"<attn>self_attn.\1"),
    (re.compile(r"cross_attn(?:_image)?\.(.+)"), r"<attn>cross_attn.\1"),
    (re.compile(r"linear([12])\.(.+)"), r"mlp.fc\1.\2"),
    (re.compile(r"norm([123])\.(.+)"), r"layer_norm\1.\2"),
]
# inside a torch.nn.MultiheadAttention: fused input projection and ``out_proj``
_ATTN = [
    (re.compile(r"(.+)\.in_proj_(weight|bias)"), r"\1.<qkv>.\2"),
    (re.compile(r"(.+)\.out_proj\.(.+)"), r"\1.o_proj.\2"),
]


def _first(rules, key: str) -> str | None:
    for pattern, repl in rules:
        m = pattern.fullmatch(key)
        if m:
            return m.expand(repl)
    return None


def rename(key: str) -> str | None:
    """Transformers name of a Meta detector key (prefix already stripped), or None if unknown.
    A name containing ``<qkv>`` is a fused projection to be split into q/k/v."""
    new = _first(_RULES, key)
    if new is None:
        return None
    if "<layer>" in new:
        head, tail = new.split("<layer>")
        sub = _first(_LAYER, tail)
        if sub is None:
            return None
        new = head + sub
    if "<attn>" in new:
        head, tail = new.split("<attn>")
        sub = _first(_ATTN, tail)
        new = head + (sub if sub is not None else tail)
    return re.sub(r"<\+1:(\d+)>", lambda m: str(int(m.group(1)) + 1), new)


@dataclass
class Remapped:
    """A state dict in transformers' layout, and what did not map."""

    state_dict: dict[str, torch.Tensor]
    unknown: list[str] = field(default_factory=list)  # Meta keys with no rule
    ignored: list[str] = field(default_factory=list)  # known leftovers (tracker, rotary tables, point prompts)


def detector_state_dict(checkpoint: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The detector's tensors of a loaded ``sam3.pt`` (its ``model``/``state_dict`` entry if it is
    wrapped), with the ``detector.`` prefix removed; ``tracker.*`` keys are kept as they are."""
    for wrapper in ("model", "state_dict"):
        inner = checkpoint.get(wrapper)
        if isinstance(inner, Mapping):
            checkpoint = inner
            break
    out: dict[str, torch.Tensor] = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            continue
        for prefix in DETECTOR_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        out[key] = value
    return out


def remap(meta: Mapping[str, torch.Tensor]) -> Remapped:
    """Meta detector keys (see ``detector_state_dict``) -> transformers ``Sam3Model`` keys."""
    result = Remapped({})
    for key, value in meta.items():
        if any(p.search(key) for p in IGNORED):
            result.ignored.append(key)
            continue
        new = rename(key)
        if new is None:
            result.unknown.append(key)
            continue
        if "<qkv>" in new:
            if value.shape[0] % 3:
                raise ValueError(f"{key}: a fused q/k/v projection needs a first dimension divisible by 3")
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                result.state_dict[new.replace("<qkv>", part)] = chunk.contiguous()
            continue
        if new == "text_encoder.text_projection.weight":
            value = value.t()
        result.state_dict[new] = value.contiguous()
    return result


POSITION_KEY = "vision_encoder.backbone.embeddings.position_embeddings"


def fit_position_embeddings(state: dict[str, torch.Tensor], expected: torch.Size) -> None:
    """Drop the class-token row of the ViT position embedding when Meta's table has one more row
    than transformers' (Meta pretrains with a class token that SAM 3 does not keep)."""
    pos = state.get(POSITION_KEY)
    if pos is not None and pos.dim() == 3 and len(expected) == 3 and pos.shape[1] == expected[1] + 1:
        state[POSITION_KEY] = pos[:, 1:].contiguous()

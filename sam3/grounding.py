"""One batch of SAM 3 grounding on precomputed features: ``Sam3Model.forward``'s text-prompt path, step by
step as transformers runs it, with the fine FPN levels fetched per level (a broadcast view where a batch holds
one image) and, on request, only the selected queries' masks (and the pixel decoder only for their pairs).
``sam3.backend.Sam3Backend`` batches pairs through ``ground_batch`` and handles out-of-memory and autocast.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from transformers.masking_utils import create_bidirectional_mask
from transformers.models.sam3.modeling_sam3 import box_cxcywh_to_xyxy, inverse_sigmoid

from sam3.features import GroundingOutput, ImageFeatures, TextFeatures

# Which queries' masks a grounding call computes: called per batch with the batch's outputs (masks
# not yet computed) and the batch's slice of the listed pairs; returns a (B, Q) bool.
MaskSelect = Callable[["GroundingOutput", slice], torch.Tensor]


class PairLevels:
    """The FPN levels of the images of a batch of pairs, fetched per level when needed: a broadcast
    view (no copy) when the batch holds one image, else a gathered copy of that level only."""

    def __init__(self, fpn: list[torch.Tensor], image_idx: torch.Tensor, device: torch.device, dtype: torch.dtype):
        self.fpn, self.device, self.dtype = fpn, device, dtype
        self.idx = image_idx.to(fpn[0].device)
        first = self.idx[:1]
        self.single = int(first) if bool((self.idx == first).all()) else None

    def __len__(self) -> int:
        return len(self.fpn)

    def get(self, k: int, view_ok: bool = True) -> torch.Tensor:
        level = self.fpn[k]
        if view_ok and self.single is not None:
            one = level[self.single].to(self.device, self.dtype)
            return one.unsqueeze(0).expand(self.idx.numel(), *one.shape)
        return level.index_select(0, self.idx).to(self.device, self.dtype)


def ground_batch(
    model, text: TextFeatures, images: ImageFeatures, p_idx, i_idx, masks, pairs, device, dtype
) -> GroundingOutput:
    """``Sam3Model.forward`` for text prompts on precomputed features, step by step as transformers runs
    it (the results are bitwise the model's; tests check), but without per-pair copies of the fine FPN
    levels and, with ``masks`` (a ``MaskSelect``), only the selected queries' masks.

    Args:
        model: the ``Sam3Model``; text: (P,) prompts' features; images: (I,) images' features.
        p_idx, i_idx: (B,) each pair's prompt and image; pairs: the batch's slice of the caller's pairs.
        device, dtype: where and in what the heads run.

    Returns:
        GroundingOutput with leading dim (B,).
    """
    m = model
    levels = PairLevels(images.fpn, i_idx, device, dtype)
    p_idx = p_idx.to(text.features.device)
    feats = text.features.index_select(0, p_idx)
    text_mask = text.mask.index_select(0, p_idx).bool()
    coarse = levels.get(len(levels) - 1, view_ok=False)  # the DETR encoder's input: a small copy
    pos = m.vision_encoder.neck.position_encoding(coarse.shape, device, dtype)
    enc = m.detr_encoder(vision_features=[coarse], text_features=feats, vision_pos_embeds=[pos], text_mask=text_mask)
    grid = coarse.shape[-2:]
    del coarse, pos
    dec = m.detr_decoder(
        vision_features=enc.last_hidden_state,
        text_features=enc.text_features,
        vision_pos_encoding=enc.pos_embeds_flattened,
        text_mask=text_mask,
        spatial_shapes=enc.spatial_shapes,
    )
    offsets = m.detr_decoder.box_head(dec.intermediate_hidden_states)
    boxes = box_cxcywh_to_xyxy((inverse_sigmoid(dec.reference_boxes) + offsets).sigmoid())
    logits = m.dot_product_scoring(
        decoder_hidden_states=dec.intermediate_hidden_states, text_features=enc.text_features, text_mask=text_mask
    ).squeeze(-1)
    queries = dec.intermediate_hidden_states[-1]
    md = m.mask_decoder
    embeds = md.mask_embedder(queries)
    out = GroundingOutput(
        mask_logits=embeds.new_zeros(0),
        query_logits=logits[-1],
        presence_logits=dec.presence_logits[-1].squeeze(-1),
        semantic_logits=embeds.new_zeros(0),
        boxes=boxes[-1],
    )
    want = None
    if masks is not None:
        want = torch.as_tensor(masks(out, pairs if pairs is not None else slice(0, len(p_idx))))
        if want.shape != logits.shape[1:]:
            raise ValueError(f"mask selection must be a (pairs, queries) = {tuple(logits.shape[1:])} bool tensor")
        want = want.to(embeds.device).bool()
    # with a selection, the pixel decoder (most of a pair's cost) runs only for the pairs with a selected
    # query (a lean prediction keeps the detections above a score: most pairs have none); the others'
    # semantic logits are NaN
    run = None if want is None or bool(want.any(1).all()) else want.any(1).nonzero().flatten()  # (b,)
    hidden = enc.last_hidden_state
    if run is not None:
        hidden, feats, text_mask = hidden[run], feats[run], text_mask[run]
        if run.numel():
            levels = PairLevels(images.fpn, i_idx.index_select(0, run.to(i_idx.device)), device, dtype)
    fine = tuple(images.fpn[0].shape[-2:])
    if hidden.shape[0]:
        pixels = pixel_embed(model, levels, hidden, grid, feats, text_mask)
        instance = md.instance_projection(pixels)  # (b, C, h, w)
        semantic = md.semantic_projection(pixels).squeeze(1)  # (b, h, w)
        del pixels
    else:
        instance = semantic = embeds.new_zeros((0, *fine))
    if run is None:
        out.semantic_logits = semantic
    else:
        out.semantic_logits = embeds.new_full((len(p_idx), *fine), float("nan"), dtype=semantic.dtype)
        out.semantic_logits[run] = semantic
    if want is None:
        out.mask_logits = torch.einsum("bqc,bchw->bqhw", embeds, instance)
        return out
    row_of = None if run is None else {b: j for j, b in enumerate(run.tolist())}  # pair -> row of instance
    index = want.nonzero()  # (N, 2): pair, query; ordered by pair then query
    rows = []
    for b in index[:, 0].unique().tolist():
        q = index[index[:, 0] == b, 1]
        j = b if row_of is None else row_of[b]
        rows.append(torch.einsum("bqc,bchw->bqhw", embeds[b : b + 1, q], instance[j : j + 1])[0])
    out.mask_logits = torch.cat(rows) if rows else embeds.new_zeros((0, *fine), dtype=instance.dtype)
    out.mask_index = index
    return out


def pixel_embed(model, levels: PairLevels, encoder_hidden, grid, prompt, prompt_mask) -> torch.Tensor:
    """The mask decoder's pixel embedding (``Sam3MaskDecoder`` up to its pixel decoder): the
    encoder's image tokens, cross-attended to the prompt, upsampled and summed with the finer
    FPN levels. Each level is fetched at its step (a broadcast view for a one-image batch) and
    added in place, instead of cloning every level per pair."""
    md = model.mask_decoder
    normed = md.prompt_cross_attn_norm(encoder_hidden)
    cross_mask = create_bidirectional_mask(
        config=md.config, inputs_embeds=normed, encoder_hidden_states=prompt, attention_mask=prompt_mask
    )
    attended, _ = md.prompt_cross_attn(query=normed, key=prompt, value=prompt, attention_mask=cross_mask)
    hidden = encoder_hidden + md.prompt_cross_attn_dropout(attended)
    height, width = grid
    batch, _, channels = hidden.shape
    prev = hidden[:, : height * width].transpose(1, 2).reshape(batch, channels, height, width)
    decoder = md.pixel_decoder
    for step, k in enumerate(reversed(range(len(levels) - 1))):
        level = levels.get(k)
        prev = F.interpolate(prev, size=level.shape[-2:], mode="nearest")
        prev += level
        del level
        prev = F.relu(decoder.norms[step](decoder.conv_layers[step](prev)))
    return prev

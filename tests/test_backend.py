"""The backend equals transformers' Sam3Model, is differentiable where it must be, and frozen."""

from __future__ import annotations

import copy
import dataclasses
import weakref

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from sam3 import GroundingOutput, Sam3Backend
from sam3.preprocess import preprocess

PROMPTS = [[736, 7117], [320, 736, 7117, 1125, 539], [7117]]


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (50 + 9 * i, 70, 3), dtype=np.uint8) for i in range(n)]


def _full_length(backend, seqs):
    """Reference inputs as Sam3Processor builds them: padded to 32 with EOT, attention mask."""
    ids = torch.full((len(seqs), 32), backend.tokenizer.eot_id)
    mask = torch.zeros((len(seqs), 32), dtype=torch.long)
    for p, s in enumerate(seqs):
        row = [backend.tokenizer.sot_id, *s, backend.tokenizer.eot_id]
        ids[p, : len(row)] = torch.tensor(row)
        mask[p, : len(row)] = 1
    return ids, mask


def test_embeds_path_equals_ids_path(lively_backend):
    b = lively_backend
    ids, mask = b.prompt_ids(PROMPTS)
    assert ids.shape == (3, 7) and mask.sum(1).tolist() == [4, 7, 3]
    by_ids = b.encode_text(ids=(ids, mask))
    by_embeds = b.encode_text(embeds=b.token_embeddings[ids], mask=mask)
    assert torch.equal(by_ids.features, by_embeds.features)
    assert by_ids.features.shape == (3, 7, b.hidden_size)


def test_truncated_text_equals_full_length(lively_backend):
    b = lively_backend
    ids32, mask32 = _full_length(b, PROMPTS)
    ref = b.model.get_text_features(input_ids=ids32, attention_mask=mask32).pooler_output  # (3, 32, C)
    ours = b.encode_text(ids=b.prompt_ids(PROMPTS))
    T = ours.features.shape[1]
    assert T == 7
    valid = ours.mask.unsqueeze(-1)
    assert float(ref[:, :T].abs().mean()) > 0.1  # non-trivial numbers
    assert torch.allclose(ref[:, :T] * valid, ours.features * valid, atol=1e-5, rtol=1e-5)


def test_ground_equals_forward_from_pixels(lively_backend):
    b = lively_backend
    images = _images()
    feats = b.encode_images(images)
    out = b.ground(b.encode_text(ids=b.prompt_ids(PROMPTS)), feats)
    g = b.image_size // b.patch_size
    assert out.mask_logits.shape == (3, 3, b.num_queries, 4 * g, 4 * g)
    assert out.presence_logits.shape == (3, 3) and out.boxes.shape == (3, 3, b.num_queries, 4)
    ids32, mask32 = _full_length(b, PROMPTS)
    pixels = preprocess(images, b.image_size)
    worst = 0.0
    with torch.no_grad():
        for p in range(3):
            for i in range(3):
                ref = b.model(
                    pixel_values=pixels[i : i + 1], input_ids=ids32[p : p + 1], attention_mask=mask32[p : p + 1]
                )
                pairs = [
                    (ref.pred_masks[0], out.mask_logits[p, i]),
                    (ref.pred_logits[0], out.query_logits[p, i]),
                    (ref.presence_logits[0, 0], out.presence_logits[p, i]),
                    (ref.semantic_seg[0, 0], out.semantic_logits[p, i]),
                    (ref.pred_boxes[0], out.boxes[p, i]),
                ]
                for r, o in pairs:
                    assert float(r.abs().mean()) > 1e-2  # compare O(1) numbers, not ~0 ones
                    worst = max(worst, float((r - o).abs().max() / (r.abs().max() + 1e-6)))
    assert worst < 1e-4, f"relative difference {worst:.2e}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_warm_cache_gives_the_cold_numbers(lively_backend, tmp_path, dtype):
    """Features come back from the disk cache bitwise as computed (in the compute dtype), so a warm
    run (a new backend on the same cache, as a second process would be) grounds to identical numbers."""
    b = lively_backend
    model = b.model if dtype == b.dtype else copy.deepcopy(b.model).to(dtype)
    images = _images(2, seed=1)
    cold_backend = Sam3Backend(model, b.tokenizer, b.source, b.device, dtype, cache_dir=tmp_path)
    cold = cold_backend.encode_images(images)
    assert (cold_backend.cache.hits, cold_backend.cache.misses) == (0, 2)
    warm_backend = Sam3Backend(model, b.tokenizer, b.source, b.device, dtype, cache_dir=tmp_path)
    warm = warm_backend.encode_images(images)
    assert (warm_backend.cache.hits, warm_backend.cache.misses) == (2, 0)
    stored = warm_backend.cache.get(warm.keys[0])
    assert stored is not None and all(t.dtype == dtype for t in stored.values())
    for lvl_cold, lvl_warm in zip(cold.fpn, warm.fpn):
        assert lvl_warm.dtype == dtype and torch.equal(lvl_cold, lvl_warm)
    text = warm_backend.encode_text(ids=warm_backend.prompt_ids(PROMPTS[:2]))
    o_cold, o_warm = cold_backend.ground(text, cold), warm_backend.ground(text, warm)
    for f in dataclasses.fields(GroundingOutput):
        if f.name != "mask_index":  # None: every query's mask
            assert torch.equal(getattr(o_cold, f.name), getattr(o_warm, f.name)), f.name
    assert float(o_cold.mask_logits.float().abs().mean()) > 1e-2


def test_gradients_reach_soft_embeddings_only(lively_backend):
    b = lively_backend
    before = {n: p.detach().clone() for n, p in b.model.named_parameters()}
    ids, mask = b.prompt_ids([[736, 7117]])
    soft = b.token_embeddings[ids].detach().clone().requires_grad_(True)
    feats = b.encode_images(_images(2, seed=2))
    out = b.ground(b.encode_text(embeds=soft, mask=mask), feats)
    loss = out.mask_logits.sigmoid().mean() + out.presence_logits.mean()
    loss.backward()
    assert soft.grad is not None and float(soft.grad[0, 1:3].abs().sum()) > 0  # alias positions get gradient
    assert all(p.grad is None and not p.requires_grad for p in b.model.parameters())
    opt = torch.optim.Adam([soft], lr=0.1)
    opt.step()
    for n, p in b.model.named_parameters():
        assert torch.equal(p, before[n]), n
    assert not b.model.training


def test_ground_pairs_and_batching_agree(lively_backend):
    b = lively_backend
    feats = b.encode_images(_images(3, seed=3))
    text = b.encode_text(ids=b.prompt_ids(PROMPTS))
    full = b.ground(text, feats)
    pairs = b.ground_pairs(text, feats, torch.tensor([2, 0, 1]), torch.tensor([1, 2, 0]), batch_size=2)
    assert torch.allclose(pairs.mask_logits[0], full.mask_logits[2, 1], atol=1e-5)
    assert torch.allclose(pairs.query_logits[1], full.query_logits[0, 2], atol=1e-5)
    scores = full.scores()
    expected = full.query_logits.sigmoid() * full.presence_logits.sigmoid()[..., None]
    assert torch.allclose(scores, expected) and scores.shape == (3, 3, b.num_queries)


def test_out_of_memory_halves_the_batch(lively_backend, monkeypatch):
    b = lively_backend
    feats = b.encode_images(_images(2, seed=4))
    text = b.encode_text(ids=b.prompt_ids(PROMPTS))
    expected = b.ground(text, feats, batch_size=6)
    real = Sam3Backend._ground_batch
    seen = []

    def flaky(self, text, images, p_idx, i_idx, *rest) -> GroundingOutput:
        seen.append(len(p_idx))
        if len(p_idx) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(self, text, images, p_idx, i_idx, *rest)

    monkeypatch.setattr(Sam3Backend, "_ground_batch", flaky)
    saved = b.pair_batch_size
    try:
        got = b.ground(text, feats, batch_size=6)
        assert seen[:3] == [6, 3, 1] and b.pair_batch_size == 1
    finally:
        b.pair_batch_size = saved
    assert torch.allclose(got.mask_logits, expected.mask_logits, atol=1e-5)


def test_prompt_length_limits(lively_backend):
    with pytest.raises(ValueError, match="at most 30"):
        lively_backend.prompt_ids([[736] * 31])
    with pytest.raises(ValueError, match="exactly one"):
        lively_backend.encode_text()


def test_token_embedding_table(lively_backend):
    table = lively_backend.token_embeddings
    assert table.shape == (49408, lively_backend.model.config.text_config.hidden_size)
    assert not table.requires_grad


def _model_forward(b, text, feats, p_idx, i_idx):
    """transformers' Sam3Model.forward on the same features (what ground() did before it ran the steps itself)."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling
    from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

    fpn = [lvl[i_idx] for lvl in feats.fpn]
    pos_layer = b.model.vision_encoder.neck.position_encoding
    pos = [pos_layer(lvl.shape, b.device, b.dtype) for lvl in fpn]
    vision = Sam3VisionEncoderOutput(fpn_hidden_states=(*fpn, fpn[-1]), fpn_position_encoding=(*pos, pos[-1]))
    with torch.no_grad():
        return b.model(
            vision_embeds=vision,
            text_embeds=BaseModelOutputWithPooling(pooler_output=text.features[p_idx]),
            attention_mask=text.mask[p_idx].long(),
        )


@pytest.mark.parametrize("one_image", [True, False])
def test_ground_is_bitwise_the_model_forward(lively_backend, one_image):
    """ground() runs Sam3Model's steps itself (views of the FPN levels, masks on demand) and returns
    exactly transformers' numbers, for a batch on one image (broadcast views) and on several."""
    b = lively_backend
    feats = b.encode_images(_images(3, seed=6))
    text = b.encode_text(ids=b.prompt_ids(PROMPTS))
    p_idx = torch.tensor([0, 1, 2, 1])
    i_idx = torch.tensor([2, 2, 2, 2]) if one_image else torch.tensor([2, 0, 1, 0])
    with torch.no_grad():
        ours = b.ground_pairs(text, feats, p_idx, i_idx, batch_size=4)
    ref = _model_forward(b, text, feats, p_idx, i_idx)
    assert torch.equal(ours.mask_logits, ref.pred_masks)
    assert torch.equal(ours.query_logits, ref.pred_logits)
    assert torch.equal(ours.presence_logits, ref.presence_logits.squeeze(-1))
    assert torch.equal(ours.semantic_logits, ref.semantic_seg.squeeze(1))
    assert torch.equal(ours.boxes, ref.pred_boxes)


def _top2_on_even_pairs(out, pairs):
    """a selection: the two best-scoring queries of pairs with an even index, nothing elsewhere."""
    scores = out.scores()
    want = torch.zeros_like(scores, dtype=torch.bool)
    top = scores.topk(2, dim=1).indices
    for j, k in enumerate(range(pairs.start, pairs.stop)):
        if k % 2 == 0:
            want[j, top[j]] = True
    return want


def test_selected_masks_are_the_rows_of_the_full_ones(lively_backend):
    b = lively_backend
    feats = b.encode_images(_images(3, seed=7))
    text = b.encode_text(ids=b.prompt_ids(PROMPTS))
    full = b.ground(text, feats, batch_size=4)
    sel = b.ground(text, feats, batch_size=4, masks=_top2_on_even_pairs)  # 9 pairs in batches of 4, 4, 1
    assert sel.mask_index is not None and sel.mask_index.shape == (2 * 5, 2) and sel.mask_logits.shape[0] == 10
    assert sel.mask_index[:, 0].tolist() == [0, 0, 2, 2, 4, 4, 6, 6, 8, 8]  # flat pair index over (P, I)
    for name in ("query_logits", "presence_logits", "boxes"):
        assert torch.equal(getattr(sel, name), getattr(full, name))
    # the pixel decoder ran for the pairs with a selected query only: the others' semantic logits are NaN
    sem, full_sem = sel.semantic_logits.reshape(9, -1), full.semantic_logits.reshape(9, -1)
    assert torch.allclose(sem[0::2], full_sem[0::2], rtol=1e-5, atol=1e-5) and sem[1::2].isnan().all()
    dense = full.mask_logits.reshape(9, *full.mask_logits.shape[2:])
    worst = 0.0
    for (pair, query), row in zip(sel.mask_index.tolist(), sel.mask_logits):
        worst = max(worst, float((row - dense[pair, query]).abs().max() / dense[pair, query].abs().max()))
        assert query in full.scores().reshape(9, -1)[pair].topk(2).indices.tolist()
    # the same dot products for fewer rows, on a pixel decoder run for the selected pairs only (a smaller
    # batch: a convolution may sum in another order, float32 rounding)
    assert worst < 1e-5, worst
    queries, rows = sel.pair_masks(4)
    assert (
        rows.shape[0] == 2
        and torch.equal(rows, sel.mask_logits[4:6])
        and queries.tolist() == sel.mask_index[4:6, 1].tolist()
    )
    nothing = b.ground(text, feats, masks=lambda out, pairs: torch.zeros_like(out.query_logits, dtype=torch.bool))
    assert nothing.mask_logits.shape == (0, *full.mask_logits.shape[-2:]) and nothing.mask_index.shape == (0, 2)
    assert nothing.semantic_logits.shape == full.semantic_logits.shape and nothing.semantic_logits.isnan().all()


class _LiveTensorBytes(TorchDispatchMode):
    """Bytes of live tensor storages created by torch ops, and their peak: a deterministic
    stand-in for an allocator's peak on CPU (views and in-place results add nothing)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.sizes: dict[int, int] = {}

    def _free(self, key: int) -> None:
        self.live -= self.sizes.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if key and key not in self.sizes:
                    self.sizes[key] = storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._free, key)
        return out


def _peak_bytes(masks, num_queries: int = 256, n_pairs: int = 4) -> tuple[int, int]:
    """Peak live tensor bytes of grounding n_pairs pairs (one batch) with the toy architecture
    (48 x 48 masks) and num_queries queries, and the bytes of one query's mask logits."""
    from transformers import Sam3Model

    from sam3.configs import named_config
    from sam3.loading import resolve_source

    cfg = named_config("toy")
    cfg.detr_decoder_config.num_queries = num_queries
    torch.manual_seed(0)
    model = Sam3Model(cfg).eval().requires_grad_(False)
    base = Sam3Backend.load("random:tiny", device="cpu", use_cache=False)  # for its tokenizer
    b = Sam3Backend(model, base.tokenizer, resolve_source("random:toy"), base.device, base.dtype, use_cache=False)
    feats = b.encode_images(_images(2, seed=8))
    text = b.encode_text(ids=b.prompt_ids(PROMPTS[:2]))
    p_idx, i_idx = torch.tensor([0, 1, 0, 1])[:n_pairs], torch.tensor([0, 0, 1, 1])[:n_pairs]
    with torch.no_grad(), _LiveTensorBytes() as meter:
        out = b.ground_pairs(text, feats, p_idx, i_idx, batch_size=n_pairs, masks=masks)
        del out
    side = 4 * (b.image_size // b.patch_size)
    return meter.peak, side * side * 4


def _keep(k: int):
    def select(out, pairs):
        want = torch.zeros_like(out.query_logits, dtype=torch.bool)
        want[:, :k] = True
        return want

    return select


def test_peak_memory_does_not_grow_with_discarded_queries():
    """256 queries, 4 pairs, 48 x 48 masks: keeping 2 masks per pair peaks exactly where keeping none
    does (the 254 discarded masks per pair are never allocated), while all masks add >= 90% of their
    9.4 MB. (Peak = live tensor bytes, counted per storage by a dispatch mode: deterministic.)"""
    none, one_mask = _peak_bytes(_keep(0))
    kept, _ = _peak_bytes(_keep(2))
    dense, _ = _peak_bytes(None)
    assert kept - none <= 2 * (4 * 2 * one_mask)  # at most the kept masks (and one temporary copy)
    assert dense - kept >= 0.9 * 4 * 254 * one_mask


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_cuda_path_uses_bf16_autocast(lively_backend):
    """On CUDA (bf16 weights, the default there) ground() runs under bf16 autocast; elsewhere not."""
    b = lively_backend
    assert not b.autocast and not isinstance(b._autocast(), torch.autocast)
    cuda = Sam3Backend(b.model, b.tokenizer, b.source, torch.device("cuda"), torch.bfloat16, use_cache=False)
    ctx = cuda._autocast()
    assert cuda.autocast and isinstance(ctx, torch.autocast)
    assert ctx.device == "cuda" and ctx.fast_dtype == torch.bfloat16
    fp32 = Sam3Backend(b.model, b.tokenizer, b.source, torch.device("cuda"), torch.float32, use_cache=False)
    assert not fp32.autocast  # fp32 asked for explicitly: exact fp32

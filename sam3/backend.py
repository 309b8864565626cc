"""The frozen SAM 3 that the optimizer queries: encode images once, encode prompts, ground them.

Lifecycle (like SAM's ``SamPredictor``):

    backend = Sam3Backend.load("toy")
    feats = backend.encode_images(paths)              # heavy, once per image, cached on disk
    text = backend.encode_text(ids=backend.prompt_ids([[736, 7117]]))
    out = backend.ground(text, feats)                 # (P, I) prompt x image pairs, batched

All model parameters are frozen; gradients flow only to ``encode_text(embeds=...)`` inputs.
``ground`` runs transformers' own ``Sam3Model.forward`` on precomputed vision and text features,
so it equals the full forward from pixels.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers.masking_utils import create_causal_mask

from sam3.cache import FeatureCache, default_cache_dir
from sam3.features import GroundingOutput, ImageFeatures, TextFeatures
from sam3.grounding import MaskSelect, ground_batch
from sam3.loading import (
    HASH_MEMO_NAME,
    ResolvedSource,
    build_model,
    fingerprint,
    pick_device,
    pick_dtype,
    resolve_source,
    tokenizer_dir,
)
from sam3.preprocess import ImageLike, content_hash, load_image, preprocess
from sam3.tokenizer import Sam3Tokenizer

logger = logging.getLogger(__name__)

# transformers 5.25 renamed create_causal_mask's past_key_values argument to cache
_CACHE_ARG = "cache" if "cache" in inspect.signature(create_causal_mask).parameters else "past_key_values"


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class Sam3Backend:
    """A frozen SAM 3 with cached image features and batched, differentiable grounding."""

    def __init__(
        self,
        model,
        tokenizer: Sam3Tokenizer,
        source: ResolvedSource,
        device: torch.device,
        dtype: torch.dtype,
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.source = source
        self.device = device
        self.dtype = dtype
        cache_root = Path(cache_dir) if cache_dir else default_cache_dir()
        # weight files are hashed in full once; the digest is remembered beside the feature cache
        self.fingerprint = fingerprint(source, dtype, memo=cache_root / HASH_MEMO_NAME if use_cache else None)
        self.cache = FeatureCache(cache_root, self.fingerprint) if use_cache else None
        cfg = model.config
        self.image_size: int = int(cfg.vision_config.backbone_config.image_size)
        self.patch_size: int = int(cfg.vision_config.backbone_config.patch_size)
        self.hidden_size: int = int(cfg.detr_decoder_config.hidden_size)
        self.num_queries: int = int(cfg.detr_decoder_config.num_queries)
        self.vocab_size: int = int(cfg.text_config.vocab_size)
        self.context_length: int = int(cfg.text_config.max_position_embeddings)
        self.pair_batch_size = 64 if device.type == "cuda" else 16  # halves on out-of-memory
        # on CUDA with bf16 weights (the default there) ground() runs under bf16 autocast: matmuls and
        # convolutions in bf16, softmax and norms in fp32 as autocast's policy has it
        self.autocast = device.type == "cuda" and dtype == torch.bfloat16
        if tokenizer.vocab_size != self.vocab_size:
            raise ValueError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the model's text encoder expects {self.vocab_size}"
            )

    @classmethod
    def load(
        cls,
        source: str | Path = "toy",
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        cache_dir: str | Path | None = None,
        use_cache: bool = True,
    ) -> Sam3Backend:
        """Load a frozen SAM 3.

        Args:
            source: ``toy``, ``random:NAME[@SEED]``, a checkpoint directory or a cached hub id.
            device: ``auto`` (cuda > mps > cpu) or a torch device string.
            dtype: ``auto`` (bf16 on CUDA where supported, else fp32), ``fp32``, ``bf16``, ``fp16``.
            cache_dir: image-feature cache root (default ``$SAM3_ALIAS_CACHE`` or ~/.cache/sam3-alias).
            use_cache: read and write the on-disk image-feature cache.
        """
        resolved = resolve_source(source)
        dev = pick_device(device)
        dt = pick_dtype(dev, dtype)
        model = build_model(resolved, dt, dev)
        tokenizer = Sam3Tokenizer(tokenizer_dir(resolved))
        logger.info("loaded SAM 3 from %s on %s (%s)", resolved.label, dev, dt)
        return cls(model, tokenizer, resolved, dev, dt, cache_dir=cache_dir, use_cache=use_cache)

    # ------------------------------------------------------------------ vocabulary
    @property
    def token_embeddings(self) -> torch.Tensor:
        """(V, D) the text encoder's input token embedding table (frozen)."""
        return self.model.text_encoder.text_model.embeddings.token_embedding.weight

    def prompt_ids(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Wrap alias token sequences in SOT/EOT and pad them to the longest.

        Args:
            sequences: P sequences of alias token ids (no special tokens), 0..30 ids each.

        Returns:
            ids (P, T) long, padded with EOT; mask (P, T) bool, True at SOT .. EOT.
        """
        tok = self.tokenizer
        limit = self.context_length - 2
        rows = []
        for seq in sequences:
            seq = [int(i) for i in seq]
            if len(seq) > limit:
                raise ValueError(f"an alias has at most {limit} tokens; got {len(seq)}")
            rows.append([tok.sot_id, *seq, tok.eot_id])
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), tok.eot_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for p, row in enumerate(rows):
            ids[p, : len(row)] = torch.tensor(row)
            mask[p, : len(row)] = True
        return ids.to(self.device), mask.to(self.device)

    def text_ids(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``prompt_ids`` of plain-text prompts."""
        return self.prompt_ids([self.tokenizer.encode(t, special=False) for t in texts])

    # ------------------------------------------------------------------ text
    def encode_text(
        self,
        ids: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
        embeds: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> TextFeatures:
        """Per-token prompt features for P prompts.

        Exactly one of ``ids`` and ``embeds``. ``embeds`` replace the token embeddings where they
        enter the CLIP text encoder (positional embeddings and the causal mask as the model has
        them) and stay differentiable. Only positions up to the longest prompt are computed: by the
        causal mask, real-token outputs do not depend on later (padding) positions.

        Args:
            ids: (P, T) token ids incl. SOT/EOT, or the (ids, mask) pair from ``prompt_ids``.
            embeds: (P, T, Dt) input embeddings incl. the SOT/EOT embeddings.
            mask: (P, T) bool/int, True at real tokens; default all True.

        Returns:
            TextFeatures with features (P, T', C) and mask (P, T'), T' = longest prompt.
        """
        if isinstance(ids, tuple):
            ids, mask = ids
        if (ids is None) == (embeds is None):
            raise ValueError("encode_text takes exactly one of ids= or embeds=")
        if ids is not None:
            ids = ids.to(self.device)
            embeds = self.token_embeddings[ids]  # (P, T, Dt)
        assert embeds is not None
        embeds = embeds.to(device=self.device, dtype=self.dtype)
        if embeds.dim() != 3:
            raise ValueError(f"embeds must be (P, T, D); got {tuple(embeds.shape)}")
        if mask is None:
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=self.device)
        mask = mask.to(device=self.device).bool()
        if embeds.shape[1] > self.context_length:
            raise ValueError(f"prompts have at most {self.context_length} tokens incl. SOT/EOT")
        length = int(mask.sum(1).max())
        embeds, mask = embeds[:, :length], mask[:, :length]
        text_model = self.model.text_encoder.text_model
        hidden = text_model.embeddings(inputs_embeds=embeds)  # + positions, (P, T', Dt)
        causal = create_causal_mask(
            config=text_model.config, inputs_embeds=hidden, attention_mask=mask.long(), **{_CACHE_ARG: None}
        )
        hidden = text_model.encoder(inputs_embeds=hidden, attention_mask=causal, is_causal=True).last_hidden_state
        hidden = text_model.final_layer_norm(hidden)
        return TextFeatures(self.model.text_projection(hidden), mask)  # (P, T', C)

    # ------------------------------------------------------------------ images
    def encode_images(self, images: Sequence[ImageLike], batch_size: int = 8, progress: bool = False) -> ImageFeatures:
        """Vision features of images, computed once and cached on disk.

        Entries are stored in the dtype they were computed in (the backend's), so features read
        back from the cache are bitwise the ones a cold run computes.

        Args:
            images: paths, PIL images or arrays (see ``sam3.preprocess.load_image``).
            batch_size: images per vision-encoder batch.
            progress: show a tqdm bar.

        Returns:
            ImageFeatures of len(images), in order.
        """
        rgbs = [load_image(im) for im in images]
        keys = [content_hash(rgb) for rgb in rgbs]
        sizes = [tuple(rgb.shape[:2]) for rgb in rgbs]
        levels: list[list[torch.Tensor] | None] = [None] * len(rgbs)
        todo = []
        for i, key in enumerate(keys):
            stored = self.cache.get(key, self.dtype) if self.cache is not None else None
            if stored is not None:
                levels[i] = [stored[f"fpn{k}"].to(self.device) for k in range(len(stored))]
            else:
                todo.append(i)
        bar = tqdm(total=len(todo), desc="encode images", unit="img", disable=not progress or not todo)
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            fpn = self._vision([rgbs[i] for i in chunk])
            for j, i in enumerate(chunk):
                levels[i] = [lvl[j] for lvl in fpn]
                if self.cache is not None:
                    self.cache.put(keys[i], {f"fpn{k}": lvl[j] for k, lvl in enumerate(fpn)})
            bar.update(len(chunk))
        bar.close()
        fpn = [torch.stack([lv[k] for lv in levels]) for k in range(len(levels[0]))] if levels else []
        return ImageFeatures(fpn, keys, sizes)  # type: ignore[arg-type]

    @torch.no_grad()
    def _vision(self, rgbs: list) -> list[torch.Tensor]:
        pixels = preprocess(rgbs, self.image_size).to(self.device, self.dtype)
        out = self.model.get_vision_features(pixel_values=pixels)
        return list(out.fpn_hidden_states[:-1])  # the heads never read the coarsest level

    # ------------------------------------------------------------------ grounding
    def ground(
        self,
        text: TextFeatures,
        images: ImageFeatures,
        batch_size: int | None = None,
        masks: MaskSelect | None = None,
    ) -> GroundingOutput:
        """All P prompts on all I images; outputs with leading dims (P, I) (see ``ground_pairs``)."""
        P, I = len(text), len(images)
        p_idx = torch.arange(P).repeat_interleave(I)
        i_idx = torch.arange(I).repeat(P)
        return self.ground_pairs(text, images, p_idx, i_idx, batch_size, masks=masks).view(P, I)

    def ground_pairs(
        self,
        text: TextFeatures,
        images: ImageFeatures,
        prompt_idx: torch.Tensor,
        image_idx: torch.Tensor,
        batch_size: int | None = None,
        masks: MaskSelect | None = None,
    ) -> GroundingOutput:
        """Listed (prompt, image) pairs, batched; differentiable w.r.t. ``text``.

        Args:
            prompt_idx: (B,) index into ``text`` per pair.
            image_idx: (B,) index into ``images`` per pair.
            batch_size: pairs per forward (default adaptive; halves on out-of-memory).
            masks: None for every query's mask logits; or ``select(out, pairs) -> (b, Q) bool``,
                called per batch with its outputs before masks are computed (``out.scores()`` and
                the rest are there) and the batch's slice of the pairs: only the selected queries'
                masks are computed and returned (``GroundingOutput.mask_index`` says whose), so
                memory does not grow with the queries a caller discards, and the pixel decoder runs
                only for the pairs with a selected query (the others' ``semantic_logits`` are NaN).
                Selected masks equal the corresponding rows of the full ones (up to float rounding
                where the pixel decoder ran on fewer pairs than the batch holds).

        Returns:
            GroundingOutput with leading dim (B,).
        """
        parts = [out for _, out in self.iter_ground_pairs(text, images, prompt_idx, image_idx, batch_size, masks)]
        return GroundingOutput.concat(parts)

    def iter_ground_pairs(
        self,
        text: TextFeatures,
        images: ImageFeatures,
        prompt_idx: torch.Tensor,
        image_idx: torch.Tensor,
        batch_size: int | None = None,
        masks: MaskSelect | None = None,
    ) -> Iterator[tuple[slice, GroundingOutput]]:
        """Like ``ground_pairs`` but yields (slice of pairs, outputs) per batch, for callers that
        reduce each batch (and free its activations) before the next."""
        prompt_idx = torch.as_tensor(prompt_idx, dtype=torch.long)
        image_idx = torch.as_tensor(image_idx, dtype=torch.long)
        if prompt_idx.shape != image_idx.shape:
            raise ValueError("prompt_idx and image_idx must have the same length")
        total = prompt_idx.numel()
        start = 0
        size = batch_size or self.pair_batch_size
        while start < total:
            sl = slice(start, min(start + size, total))
            try:
                out = self._ground_batch(text, images, prompt_idx[sl], image_idx[sl], masks, sl)
            except (torch.OutOfMemoryError, RuntimeError) as exc:
                if not _is_oom(exc) or size == 1:
                    raise
                size = max(1, size // 2)
                self.pair_batch_size = size
                logger.warning("out of memory in ground(); retrying with %d pairs per batch", size)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            yield sl, out
            start = sl.stop

    def _autocast(self):
        if self.autocast:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _ground_batch(
        self,
        text: TextFeatures,
        images: ImageFeatures,
        p_idx: torch.Tensor,
        i_idx: torch.Tensor,
        masks: MaskSelect | None = None,
        pairs: slice | None = None,
    ) -> GroundingOutput:
        """One batch of pairs (``sam3.grounding.ground_batch``), under bf16 autocast where on."""
        with self._autocast():
            return ground_batch(self.model, text, images, p_idx, i_idx, masks, pairs, self.device, self.dtype)

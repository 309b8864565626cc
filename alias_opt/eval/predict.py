"""Predictions of prompts on images at image resolution: SAM 3's detections (scores and RLE masks)
for listed prompt-image pairs, batched through the backend's cached grounding; and
``evaluate_prompts``, which predicts and scores (``alias_opt.eval.metrics``) in one call.

A detection's score is SAM 3's: sigmoid(query logit) x sigmoid(presence logit); a mask is the
sigmoid of its logits upsampled (bilinear) to the image size and thresholded, as transformers'
``Sam3Processor.post_process_instance_segmentation`` does. Only the masks of the detections kept
(every one above the score threshold, at least ``max_dets``) are computed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from alias_opt.data.loader import TargetImage, encode_masks
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, PromptMetrics, Thresholds, score_predictions

UPSAMPLE_BYTES = 256 << 20  # bound on one upsampling step's float buffer


def prompt_token_ids(backend, prompt: str | Sequence[int]) -> list[int]:
    """Alias token ids of a prompt: ids are taken as they are, text is tokenized (no SOT/EOT)."""
    if isinstance(prompt, str):
        return backend.tokenizer.encode(prompt, special=False)
    return [int(i) for i in prompt]


@torch.no_grad()
def predict_pairs(
    backend,
    text,
    feats,
    prompt_idx: torch.Tensor,
    image_idx: torch.Tensor,
    sizes: Sequence[tuple[int, int]],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> Iterator[tuple[int, ImagePredictions]]:
    """Ground listed (prompt, image) pairs and reduce each batch to image-resolution RLE masks.

    Args:
        backend: a ``sam3.Sam3Backend``.
        text: ``TextFeatures`` of the prompts.
        feats: ``ImageFeatures`` of the images.
        prompt_idx, image_idx: (B,) pair indices into ``text`` and ``feats``.
        sizes: (height, width) per image of ``feats``: the size masks are upsampled to.

    Yields:
        (pair index, ImagePredictions) in pair order.
    """

    def kept(s: torch.Tensor) -> torch.Tensor:
        """(n,) query indices a pair keeps, best score first: every one above the threshold, at least max_dets."""
        n_keep = min(s.numel(), max(thresholds.max_dets, int((s > thresholds.score).sum())))
        return torch.argsort(s, descending=True, stable=True)[:n_keep]

    def select(out, sl: slice) -> torch.Tensor:  # only the kept queries' masks are computed
        scores = out.scores().float()  # (B, Q)
        want = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        for b in range(scores.shape[0]):
            want[b, kept(scores[b])] = True
        return want

    for sl, out in backend.iter_ground_pairs(text, feats, prompt_idx, image_idx, masks=select):
        scores = out.scores().float()
        index = out.mask_index  # (N, 2): pair in the batch, query; rows of out.mask_logits
        for b in range(scores.shape[0]):
            k = sl.start + b
            h, w = sizes[int(image_idx[k])]
            s = scores[b]
            keep = kept(s)
            rows_b = torch.nonzero(index[:, 0] == b).flatten()
            row_of = dict(zip(index[rows_b, 1].tolist(), rows_b.tolist()))
            rows = torch.as_tensor([row_of[int(q)] for q in keep], dtype=torch.long, device=out.mask_logits.device)
            step = max(1, UPSAMPLE_BYTES // (4 * h * w))
            rles: list[dict] = []
            for j in range(0, len(rows), step):
                probs = out.mask_logits[rows[j : j + step]].float().sigmoid()[None]
                up = F.interpolate(probs, size=(h, w), mode="bilinear", align_corners=False)[0]
                rles.extend(encode_masks((up > thresholds.mask).cpu().numpy()))
            yield k, ImagePredictions(scores=s[keep].cpu().numpy(), rles=rles, height=h, width=w)
        del out


def predict(
    backend,
    feats,
    images: Sequence[TargetImage],
    prompts: Sequence[Sequence[int]],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[list[ImagePredictions]]:
    """Every prompt on every image: ``[prompt][image]`` predictions at image resolution.

    Args:
        backend: a ``sam3.Sam3Backend``.
        feats: ``ImageFeatures`` of ``images``, in order.
        images: the TargetImages (their JSON size is the output size).
        prompts: alias token id lists (no SOT/EOT).
    """
    if not prompts or not images:
        return [[] for _ in prompts]
    return predict_text(backend, feats, images, backend.encode_text(ids=backend.prompt_ids(prompts)), thresholds)


def predict_text(
    backend,
    feats,
    images: Sequence[TargetImage],
    text,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> list[list[ImagePredictions]]:
    """``predict`` for already-encoded prompts (e.g. soft prompts from ``encode_text(embeds=...)``).

    Args:
        text: ``TextFeatures`` of P prompts.

    Returns:
        ``[prompt][image]`` predictions.
    """
    if len(feats) != len(images):
        raise ValueError(f"{len(feats)} image features for {len(images)} images")
    P, I = len(text), len(images)
    if not images:
        return [[] for _ in range(P)]
    p_idx = torch.arange(P).repeat_interleave(I)
    i_idx = torch.arange(I).repeat(P)
    sizes = [(im.image.height, im.image.width) for im in images]
    out: list[list] = [[None] * I for _ in range(P)]
    for k, pred in predict_pairs(backend, text, feats, p_idx, i_idx, sizes, thresholds):
        out[k // I][k % I] = pred
    return out


def evaluate_prompts(
    backend,
    images: Sequence[TargetImage],
    prompts: Sequence[Sequence[int] | str],
    feats=None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    chunk: int = 16,
    progress: bool = False,
) -> list[PromptMetrics]:
    """Metrics of each prompt on ``images``.

    Args:
        backend: a ``sam3.Sam3Backend``.
        images: the split's TargetImages.
        prompts: alias token id lists, or texts (tokenized without SOT/EOT).
        feats: their ``ImageFeatures``; if None, images are read and encoded ``chunk`` at a time
            (each once for all prompts; the backend's disk cache makes repeats cheap).
        progress: show a progress bar over images.
    """
    ids = [prompt_token_ids(backend, p) for p in prompts]
    if not ids:
        return []
    if feats is not None:
        return [score_predictions(p, images, thresholds) for p in predict(backend, feats, images, ids, thresholds)]
    per_prompt = predict_images(backend, images, ids, thresholds, chunk, progress)
    return [score_predictions(p, images, thresholds) for p in per_prompt]


def predict_images(
    backend,
    images: Sequence[TargetImage],
    prompts: Sequence[Sequence[int]],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    chunk: int = 16,
    progress: bool = False,
) -> list[list[ImagePredictions]]:
    """``predict`` on images not yet encoded: read and encoded ``chunk`` at a time (each once for all
    prompts; the backend's disk cache makes repeats cheap), so no more than a chunk's features are held.

    Args:
        prompts: alias token id lists (no SOT/EOT).
        progress: show a progress bar over images.

    Returns:
        ``[prompt][image]`` predictions.
    """
    if not prompts or not images:
        return [[] for _ in prompts]
    text = backend.encode_text(ids=backend.prompt_ids(prompts))
    per_prompt: list[list[ImagePredictions]] = [[] for _ in prompts]
    bar = tqdm(total=len(images), desc="evaluate", unit="img", disable=not progress)
    for start in range(0, len(images), chunk):
        part = list(images[start : start + chunk])
        part_feats = backend.encode_images([im.image.load() for im in part])
        P, I = len(prompts), len(part)
        sizes = [(im.image.height, im.image.width) for im in part]
        p_idx, i_idx = torch.arange(P).repeat_interleave(I), torch.arange(I).repeat(P)
        for k, pred in predict_pairs(backend, text, part_feats, p_idx, i_idx, sizes, thresholds):
            per_prompt[k // I].append(pred)  # pairs come in order: prompt-major, then image
        bar.update(I)
    bar.close()
    return per_prompt

"""``TrainConfig``: every setting of a sam3-toy training run (``sam3.toy.train``), in a module of
its own so that the batch makers, the model initializer and the trainer import it without a cycle; and
``apply_overrides``, the checked ``FIELD=VALUE`` changes of ``--set``."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from sam3.toy import world


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "toy24d"  # named architecture (sam3.configs.ARCHS); toy24d is the shipped sam3-toy's
    steps: int = 8000  # total optimizer steps (8,000: stage 1 of the shipped recipe, README)
    images_per_step: int = 4
    prompts_per_image: int = 6
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 300
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    # prompt mix: a form, then present (positive) or absent (negative, presence 0) with p_positive
    p_concept: float = 0.45  # "<colour> <shape>"
    p_colour: float = 0.2  # "<colour>"
    p_shape: float = 0.2  # "<shape>"
    p_object: float = 0.15  # "object": every instance
    # the rest: 1-3 random vocabulary tokens (negative)
    p_positive: float = 0.5
    p_hard_negative: float = 0.7  # an absent concept shares a colour or shape with a present instance
    # Initialization. transformers' N(0, 0.02) conv init leaves the FPN features ~100x smaller than the
    # decoder's sine position encodings, so attention ignores image content and grounding never starts.
    reset_convs: bool = True  # PyTorch's default conv init
    fpn_gain: float = 4.0  # scale of the FPN output convs: features of about unit size
    text_gain: float = 6.0  # scale of the text projection: prompt features of about unit size
    pos_std: float = 0.3  # ViT position embeddings as large as patch embeddings (instance masks need position)
    grid_queries: bool = True  # reference boxes start on a grid over the image (stable matching, as anchors)
    init_from: str = ""  # an exported sam3-toy HF directory to fine-tune from instead of the fresh init
    init_partial: bool = False  # init_from may be another architecture: load the weights that fit, keep the rest fresh
    init_vision_from: str = ""  # then the vision encoder (ViT + neck) from this export, e.g. a longer stage A
    cls_weight: float = 2.0  # weight of the query classification (focal) loss
    presence_weight: float = 2.0  # weight of the presence BCE loss
    aux_weight: float = 0.0  # weight of DETR's auxiliary losses on the decoder layers before the last (0: none)
    # training images (the held-out world keeps the defaults 3 and 0.0)
    world_max_concepts: int = 3  # concepts per training image: 1 to this many
    p_related_concept: float = 0.0  # a further concept shares a colour or shape with an earlier one
    # world v2 (sam3.toy.prompts_v2): 4 attributes, >= 300 trained words; the p_* mix above is v1's
    world: str = "v1"  # "v1": 20 colour x shape concepts; "v2": shapes world v2 and its vocabulary
    v2_p_positive: float = 0.45  # a present instance's attributes, any subset: its matches are targets
    v2_p_hard: float = 0.3  # the same with one named attribute changed (mostly absent)
    v2_p_generic: float = 0.05  # a generic noun ("shapes"): every instance
    v2_p_distractor: float = 0.15  # one or two distractor words: nothing (the rest: random tokens)
    v2_p_near_miss: float = 0.5  # a training instance copies an earlier one with one attribute changed
    # After each step, put every trained word's embedding row at one common distance from the table's mean
    # (sam3.toy.modeling.tie_row_norms), so that the table's norms do not mark which words the world uses
    # (a real SAM 3's 49,408 tokens all mean something; the distinct:embed view must not be an answer key).
    tie_word_norms: bool = False
    # Dense attribute loss (world v2, sam3.toy.attributes): a throwaway 1x1 head per FPN level tells every
    # cell on an instance its size, fill, colour and shape. The set loss alone never taught the ViT shape
    # (bench/attribute_probe.py); 0 turns it off. The head and its optimizer live in the checkpoint only.
    attr_weight: float = 0.0
    # Train everything but the vision encoder (ViT + FPN neck): the grounding stage after
    # sam3.toy.pretrain_vision, whose attribute features the set loss would otherwise wear away.
    freeze_vision: bool = False
    # Freeze only the ViT backbone: the FPN neck (whose finest level the mask head reads) trains with the set
    # loss (and the dense attribute loss when attr_weight > 0); the backbone keeps stage A's features.
    freeze_backbone: bool = False


def apply_overrides(cfg: TrainConfig, items: list[str], error) -> TrainConfig:
    """``cfg`` with ``FIELD=VALUE`` overrides, each value parsed as its field's type."""
    types = {f.name: type(getattr(cfg, f.name)) for f in fields(cfg)}
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in types:
            error(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(types)}")
        kind = types[key]
        try:
            changes[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            error(f"--set {item!r}: {value!r} is not of type {kind.__name__}")
    cfg = replace(cfg, **changes)
    rest = 1.0 - (cfg.p_concept + cfg.p_colour + cfg.p_shape + cfg.p_object)
    if rest < -1e-9:
        error(f"prompt mix p_concept + p_colour + p_shape + p_object = {1 - rest:.3f} > 1")
    if cfg.world not in ("v1", "v2"):
        error(f"world={cfg.world!r}: must be v1 or v2")
    mix_v2 = cfg.v2_p_positive + cfg.v2_p_hard + cfg.v2_p_generic + cfg.v2_p_distractor
    if mix_v2 > 1 + 1e-9 or not 0.0 <= cfg.v2_p_near_miss <= 1.0:
        error(f"world-v2 prompt mix sums to {mix_v2:.3f} > 1, or v2_p_near_miss={cfg.v2_p_near_miss} not in [0, 1]")
    if not 1 <= cfg.world_max_concepts <= len(world.CONCEPTS):
        error(f"world_max_concepts={cfg.world_max_concepts}: must be 1 to {len(world.CONCEPTS)} (the world's concepts)")
    if cfg.attr_weight > 0 and cfg.freeze_vision:
        error("attr_weight > 0 trains the vision encoder, which freeze_vision keeps fixed: set one of them")
    if cfg.freeze_vision and cfg.freeze_backbone:
        error("freeze_vision already freezes the backbone: set freeze_vision (ViT + neck) or freeze_backbone (ViT)")
    if cfg.attr_weight < 0 or (cfg.attr_weight > 0 and cfg.world != "v2"):
        error(f"attr_weight={cfg.attr_weight}: must be >= 0, and > 0 only with world=v2 (instances with attributes)")
    if not 0.0 <= cfg.p_related_concept <= 1.0 or cfg.aux_weight < 0:
        error(f"p_related_concept={cfg.p_related_concept} must be in [0, 1], aux_weight={cfg.aux_weight} >= 0")
    return cfg

"""The parts of the discovery config: the loss, the vocabulary index, the soft prompt, GCG, evolution and the
strategies' shared options (``alias_opt.config.SearchConfig`` holds one of each), and the index views' syntax."""

from __future__ import annotations

from dataclasses import dataclass, field

SPACES = ("scoring", "key", "text")  # index spaces with a concept vector (alias_opt.search.embeddings)
TABLE_SPACES = (*SPACES, "embed")  # spaces a VocabularyIndex can be built in ("embed": distinct views only)


@dataclass
class LossConfig:
    """Weights of the set-level mask loss (see ``alias_opt.search.losses``)."""

    dice: float = 1.0  # dice on Hungarian-matched masks
    mask_focal: float = 10.0  # sigmoid focal on matched masks (per-pixel mean, hence the weight)
    score: float = 2.0  # focal on query scores: matched -> 1, others -> 0 (sum / #targets)
    presence: float = 1.0  # BCE on the presence logit: 1 on positive images, 0 on negatives
    semantic: float = 0.5  # BCE + dice of the semantic map against the union of targets
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    negative_weight: float = 1.0  # weight of the negative-image mean against the positive-image mean
    length_penalty: float = 0.002  # added per token to a discrete sequence's loss (prefer short aliases)
    match_dice: float = 1.0  # matching cost weights
    match_focal: float = 10.0
    match_score: float = 2.0


@dataclass
class IndexConfig:
    """Vocabulary shortlist and projection indexes (see ``alias_opt.search.embeddings``)."""

    space: str = "scoring"  # scoring | text | key: the space tokens and the concept are compared in
    shortlist: int = 64  # tokens in the concept's shortlist
    probe_rounds: int = 2  # scoring space: re-probe the decoder with the best shortlist token
    two_sided: bool = False  # shortlist half from each end of the ranking (trained tokens are outliers)
    # pooled shortlist (alias_opt.search.shortlist.pooled_shortlist): views such as "scoring", "-key",
    # "distinct" each give their tokens to the pool; the model screens the pool down to the shortlist.
    # "distinct:embed": the most distinct rows of the token-embedding table (a model's trained words).
    # Empty: the shortlist is the top of ``space`` alone.
    # "VIEW@N" takes N tokens from that view (else pool / len(views)). The five views that hold the concept's
    # words on world v2 with sam3-toy v2 (the positive "scoring", "key" and "text" held 0-2% of them: policy
    # 6161, renamed 3131), at depths from `python bench/pool_depth.py` on 160 categories of 9 design runs: 80
    # each held 97% of their attribute values (eight of the twelve missed were a purple word, at ranks 108 to
    # beyond 200: renamed 8686 "lavender" -> "hearts"); the three negated views at 120 hold 99% (renamed) and
    # every new word of policy, as 120 each does, in a pool of ~295 tokens, not ~360 (80 each: ~235);
    # "distinct" holds nothing past 40.
    # Until 2026-12-05: 80 each (configs/fast.json); before that all eight views at 40 (configs/thorough.json).
    views: list[str] = field(
        default_factory=lambda: ["-scoring@120", "-key@120", "-text@120", "distinct@40", "distinct:embed@80"]
    )
    pool: int = 480  # the most pooled tokens (views without @N take pool / len(views) each)
    # with a name, a pooled token is screened both alone and as a qualifier before the name ("pink" +
    # "circle"): its better screening loss ranks it (a word that narrows a too-broad name fires on other
    # things alone and would be screened out)
    screen_with_name: bool = True
    # the screened pool grows by the token-embedding neighbours (``ProjectionIndex.neighbours``, as the evolution's
    # mutations use them) of its best tokens, screened the same way (``pooled_shortlist``): a word no view holds
    # sits beside words they do ("purple" beside "violet", "navy", "rose", "pink", "blue" in sam3-toy v2's table;
    # policy 4545 "triangle" for purple triangles: no "purple" in the pool of 269, while "purple triangle" beats
    # the answer "triangle encryption" on train, 0.464 vs 0.397 AP)
    neighbours: int = 4  # nearest tokens of each head that join the pool (0: off)
    neighbour_heads: int = 32  # the screened pool's best tokens whose neighbours join it
    # the neighbours of the rest of the screened pool are screened as well and join where they screen at least as
    # well as the pool's neighbour_gate-th token (0: off). The best heads are mostly chance tokens whose neighbours
    # are chance tokens; a word's neighbours are words: renamed 6666 "giant lavender spark" (large purple stars)
    # had no purple word in its pool of 354, while "purple" (beside "rose", "blue", "navy" at pool ranks 136, 341,
    # 342) screens 26th. On 60 categories of renamed design runs 6363, 6464, 6666 (results/s48/recall_probe.py and
    # recall_sim.py) the pools held 145 of 147 attribute values, 147 with 64 (both misses purple), one more token a
    # pool on average; ungated, the ~500 neighbours crowd size and fill words out of the pool's 480 (122 of 147).
    # Costs 500-900 more screened tokens (6-10 k forwards, 7-19% of a category). Fresh 6969 "full lavender disc":
    # no purple word in the pool without it, "purple" 1st with it (answer "purple cooper circles solid", 1.03 x).
    neighbour_gate: int = 64
    projection_metric: str = "l2"  # l2 | cosine: nearest-token projection of soft embeddings
    cache_dir: str | None = None  # default $SAM3_ALIAS_INDEX_CACHE or ~/.cache/sam3-alias/index


@dataclass
class SoftConfig:
    """Soft prompt phase (see ``alias_opt.search.soft_prompt``)."""

    restarts: int = 3  # soft prompts optimised together (one batch)
    inits: list[str] = field(default_factory=lambda: ["shortlist", "name", "random"])  # cycled over restarts
    lengths: list[int] = field(default_factory=lambda: [2, 3, 1])  # tokens per restart, cycled (cut to max_len)
    steps: int = 10  # (40 in configs/thorough.json: no better on world v2, SearchConfig's note)
    # Adam, in units of the token-embedding table's std (per step and coordinate). 0.02 (until issue 20)
    # moved a soft prompt < 0.05 in the ~16 steps a comparison budget buys (4e-4 per step on sam3-toy),
    # far short of its trained words (about 0.66 from the untrained bulk): soft scored held-out AP 0.03.
    lr: float = 3.0
    batch_images: int = 6  # images per step (positives and negatives)
    pez: bool = True  # forward on the projected tokens, update the continuous ones
    eval_every: int = 3  # steps between fitness checks of the projected sequences


@dataclass
class GcgConfig:
    """Gradient-guided token swaps (see ``alias_opt.search.gcg``)."""

    steps: int = 8
    topk: int = 32  # tokens per position from the one-hot gradient
    candidates: int = 48  # single swaps scored together per step
    patience: int = 3  # steps without improvement before stopping


@dataclass
class EvolutionConfig:
    """Evolutionary search (see ``alias_opt.search.evolution``)."""

    population: int = 24
    generations: int = 6  # (32 x 12, patience 4 and 8 pairs in configs/thorough.json)
    elite: int = 4
    crossover: float = 0.3  # fraction of children made by crossover
    patience: int = 2  # generations without improvement before stopping
    grad_topk: int = 16  # tokens per position drawn from the gradient of the best sequence
    neighbours: int = 8  # FAISS neighbours per token for neighbour mutations
    shortlist_pairs: int = 6  # seed with all ordered pairs of the best shortlist singles


@dataclass
class StrategyOptions:
    """How phases share a forward-pass budget, and the settings of the strategies that only stop at one
    (see ``alias_opt.search.strategies``)."""

    soft_fraction: float = 0.4  # with a budget: share of it spent by the end of the PEZ phase (pez+gcg, pez+evolution)
    scan_share: float = 0.25  # with a budget: most of it the shortlist scan, and the extension phase, may each use
    optuna_batch: int = 8  # TPE trials asked, then scored together in one batched call
    optuna_startup: int = 16  # random trials before TPE builds its model
    optuna_screen: bool = True  # screen TPE proposals on a few images before all (like the other phases)
    optuna_trials: int = 256  # TPE trials without a budget (with one, the budget is the stop)
    scan_chunk: int = 256  # tokens per scoring call of the whole-vocabulary scan (vocab-scan)
    random_batch: int = 32  # sequences per scoring call of random search
    random_candidates: int = 512  # random sequences scored without a budget (with one, the budget is the stop)


def parse_view(view: str) -> tuple[bool, float, str]:
    """An ``index.views`` entry as (distinct, sign, space): ``"-key"`` -> (False, -1.0, "key"),
    ``"distinct:text"`` -> (True, 1.0, "text"); the space is "" for a bare ``"distinct"``. A ``@N``
    suffix (``view_tokens``) is ignored here."""
    view = view.partition("@")[0]
    if view.startswith("distinct"):
        return True, 1.0, view.partition(":")[2]
    return False, -1.0 if view.startswith("-") else 1.0, view.lstrip("+-")


def view_tokens(view: str, default: int) -> int:
    """The tokens an ``index.views`` entry gives the pool: N for ``"VIEW@N"`` (``"-key@120"``), else ``default``
    (``index.pool / len(index.views)``). Raises ValueError for a suffix that is not a positive integer."""
    _, at, n = view.partition("@")
    if not at:
        return default
    if not n.isdigit() or int(n) < 1:
        raise ValueError(f'index view {view!r}: the @ suffix must be a positive number of tokens ("-key@120")')
    return int(n)

"""Training images and prompts of shapes world v2 (``TrainConfig.world == "v2"``).

Each training image holds random instances (``render.TRAIN_STYLE``); with ``v2_p_near_miss`` an
instance copies an earlier one and changes one attribute, so that images hold the near misses a
prompt must tell apart ("small red circle" beside a large one). Prompts per image:

    positive    a present instance's attributes, any non-empty subset, in natural word order with
                random synonyms and plurals (and a generic noun where no shape is named): every
                matching instance is a target
    hard        the same with one named attribute changed: usually absent (presence 0), and a
                positive with its targets where another instance happens to match
    generic     a generic noun alone ("shapes", "object"): every instance
    distractor  one or two ``vocab.DISTRACTORS`` words: no targets
    random      the rest: 1-3 random vocabulary tokens that are no trained or reserved word: no targets

Reserved words (``vocab.RESERVED_WORDS``) are never used, not even as random tokens.
"""

from __future__ import annotations

import numpy as np

from sam3.tokenizer import Sam3Tokenizer
from sam3.toy import render, vocab
from sam3.toy.train_config import TrainConfig

SUBSET_SIZES = (0.2, 0.35, 0.3, 0.15)  # probability of naming 1, 2, 3 or 4 attributes


def training_image(rng: np.random.Generator, cfg: TrainConfig) -> render.WorldImage:
    """One training image of world v2 with near misses."""
    lo, hi = render.TRAIN_STYLE.instances
    plan: list[dict[str, str]] = []
    for _ in range(int(rng.integers(lo, hi + 1))):
        if plan and rng.random() < cfg.v2_p_near_miss:
            attrs = dict(plan[int(rng.integers(len(plan)))])
            attr = vocab.ATTRIBUTES[int(rng.integers(4))]
            others = [v for v in vocab.VALUES[attr] if v != attrs[attr]]
            attrs[attr] = others[int(rng.integers(len(others)))]
            plan.append(attrs)
        else:
            plan.append(vocab.random_attrs(rng))
    return render.render_image(rng, plan, render.TRAIN_STYLE)


class PromptSamplerV2:
    """Turns a world-v2 image into (prompt token ids, target instance indices) pairs."""

    def __init__(self, tokenizer: Sam3Tokenizer, cfg: TrainConfig):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.word_ids: dict[str, list[int]] = {}
        for w in (*vocab.TRAINED_WORDS, *vocab.RESERVED_WORDS):
            ids = tokenizer.encode(w, special=False)
            if len(ids) != 1:
                raise ValueError(f"world-v2 word {w!r} is not a single CLIP token: {ids}")
            self.word_ids[w] = ids
        banned = set(tokenizer.special_ids) | {i for ids in self.word_ids.values() for i in ids}
        pool = np.ones(tokenizer.vocab_size, dtype=bool)
        pool[sorted(banned)] = False
        self.random_pool = np.flatnonzero(pool)
        reserved = set(vocab.RESERVED_WORDS)
        self.distractors = [w for w in vocab.DISTRACTORS if w not in reserved]

    def trained_ids(self) -> set[int]:
        """Token ids of every trained word (not the reserved ones)."""
        return {i for w in vocab.TRAINED_WORDS for i in self.word_ids[w]}

    def ids(self, text: str) -> list[int]:
        return [i for w in text.split() for i in self.word_ids[w]]

    def _clause(self, rng: np.random.Generator, attrs: dict[str, str]) -> dict[str, str]:
        k = int(rng.choice(4, p=SUBSET_SIZES)) + 1
        names = sorted(rng.choice(4, size=k, replace=False))
        return {vocab.ATTRIBUTES[i]: attrs[vocab.ATTRIBUTES[i]] for i in names}

    def sample(self, rng: np.random.Generator, img: render.WorldImage, k: int) -> list[tuple[list[int], list[int]]]:
        """``k`` prompts for an image: (token ids, indices of the instances they name)."""
        cfg = self.cfg
        insts = img.instances
        edges = np.cumsum([cfg.v2_p_positive, cfg.v2_p_hard, cfg.v2_p_generic, cfg.v2_p_distractor])
        out = []
        for _ in range(k):
            r = rng.random()
            if r < edges[1] and insts:
                clause = self._clause(rng, insts[int(rng.integers(len(insts)))].attrs)
                if r >= edges[0]:  # hard: change one named attribute
                    attr = list(clause)[int(rng.integers(len(clause)))]
                    others = [v for v in vocab.VALUES[attr] if v != clause[attr]]
                    clause[attr] = others[int(rng.integers(len(others)))]
                text = vocab.phrase(clause, rng=rng)
                out.append((self.ids(text), [i for i, t in enumerate(insts) if t.matches(clause)]))
            elif r < edges[2] and insts:
                out.append((self.ids(vocab.GENERIC[int(rng.integers(len(vocab.GENERIC)))]), list(range(len(insts)))))
            elif r < edges[3]:
                n = 1 if rng.random() < 0.7 else 2
                words = [self.distractors[int(i)] for i in rng.choice(len(self.distractors), size=n, replace=False)]
                out.append((self.ids(" ".join(words)), []))
            else:
                n = int(rng.integers(1, 4))
                out.append(([int(t) for t in rng.choice(self.random_pool, size=n)], []))
        return out

"""What the alias-set builder (``alias_opt.search.alias_set``) chose: each round and the result.

    result = build_alias_set(...)
    record.extra["alias_set_search"] = result.to_dict(tokenizer.decode)

Kept apart from the builder so the record (``alias_opt.record``) reads the result without the search.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from alias_opt.eval.bootstrap import BootstrapDiff
from alias_opt.eval.metrics import PromptMetrics
from alias_opt.search.clusters import ClusterSearch, ClusterSplit
from alias_opt.search.meter import Usage
from alias_opt.search.name_check import NameCheck
from alias_opt.search.objective import Seq
from alias_opt.search.pipeline import SearchOutcome


@dataclass
class SetRound:
    """One round of the set builder.

    Attributes:
        n_targets, uncovered: train targets, and those the set missed before the round.
        searched: a residual search ran (else ``stop`` says why not).
        tried: sequences scored merged with the set.
        pick: the alias added (None: none raised the set's train AP by more than ``set_margin``), after pruning.
        restored: the name's tokens put back into it (``tidy_addition``), in the order put back.
        pruned: the inert tokens dropped from it, in the order dropped.
        set_ap: the set's merged train AP after the round.
        stop: why the builder stopped after this round ("" when it went on).
    """

    n_targets: int
    uncovered: int
    searched: bool = False
    tried: int = 0
    pick: Seq | None = None
    restored: tuple[int, ...] = ()
    pruned: tuple[int, ...] = ()
    set_ap: float = math.nan
    stop: str = ""

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        return {
            "n_targets": self.n_targets,
            "uncovered": self.uncovered,
            "searched": self.searched,
            "tried": self.tried,
            "pick": None if self.pick is None else {"token_ids": list(self.pick), "text": decode(self.pick)},
            "restored": list(self.restored),
            "pruned": list(self.pruned),
            "set_train_ap": self.set_ap,
            "stop": self.stop,
        }


@dataclass
class AliasSetResult:
    """What the set builder chose.

    Attributes:
        members: the aliases (the first search's winner first where it is one); one when no set was kept.
        member_metrics: each member's train metrics alone.
        metrics: the result's train metrics (merged when ``kept``; else the single alias's).
        single_ap: the single alias's train AP.
        built: the best set built (kept or not), built_ap its merged train AP.
        cover: the cover set (``greedy_cover``, pruned), cover_ap its merged train AP (NaN if none);
            cover_restored: per member, the name's tokens put back into it (``tidy_addition``).
        split_pool: the insertions into the name that joined the cover pool (``best_splits``).
        clusters: the searches of the targets' two visual clusters, whose candidates joined the cover
            pool (None with ``cfg.set_clusters`` off).
        cluster_split: the name's insertions screened per visual cluster that joined the cover pool
            (None where ``cfg.set_cluster_split`` is 0 or the single alias's precision did not call for it).
        pairs: the best pairs of the name's insertions by estimated merged AP50 (``alias_opt.search.pairs``)
            whose members joined the cover pool, each with its estimate ([] unless the single alias was too
            broad, train precision below ``cfg.set_pair_precision``, or missed enough train targets for a
            residual search); insertions: how many were scored.
        negatives: images without the category (``cfg.set_negatives``) the pairs' cover set was chosen on
            besides the train images (the pairs' estimate, the cover, ``set_vs_single``, the tidying and
            ``built_ap``, ``cover_ap``; the name check then read the rest); ``metrics``, ``member_metrics``
            and ``single_ap`` stay on the train images alone.
        rounds_skipped: why no residual round ran ("" where they ran): the cover set with the pairs won, or
            it ran and ``cfg.set_residual_after_pairs`` is off.
        first_single: the first search's alias where a member of the built set alone replaced the answer
            (``best_member``, ``cfg.set_member_single``: it beat that alias, or did as well as the kept set);
            else None.
        single_added, single_dropped: that member tidied alone (``tidy_addition`` against its own train AP,
            not the set's): the name's tokens put back, the tokens dropped as inert ((), where none).
        set_vs_single: the built set's train AP minus the single alias's with its bootstrap interval (None
            if not checked: no set, not past ``margin``, or ``set_level`` 0).
        kept: the set beat the single alias by more than ``margin`` (``cfg.set_margin``) and by a paired
            bootstrap win over the train images (``set_vs_single``).
        name_check: where the first search kept a known name and the set (or a member alone) would replace
            it, that answer against the name (``alias_opt.search.name_check``; not ``departs``: the name
            stays the answer); else None.
        rounds: each round.
        searches: the residual searches' outcomes.
        usage: their work plus the merged scoring's pair forwards; wall_time: seconds.
    """

    members: list[Seq]
    member_metrics: list[PromptMetrics]
    metrics: PromptMetrics
    single_ap: float
    built: list[Seq]
    built_ap: float
    kept: bool
    margin: float = 0.0
    cover: list[Seq] = field(default_factory=list)
    cover_ap: float = math.nan
    cover_restored: list[tuple[int, ...]] = field(default_factory=list)
    split_pool: list[Seq] = field(default_factory=list)
    clusters: ClusterSearch | None = None
    cluster_split: ClusterSplit | None = None
    pairs: list[tuple[Seq, Seq, float]] = field(default_factory=list)
    insertions: int = 0
    negatives: int = 0
    rounds_skipped: str = ""
    set_vs_single: BootstrapDiff | None = None
    first_single: Seq | None = None
    single_added: Seq = ()
    single_dropped: Seq = ()
    name_check: NameCheck | None = None
    rounds: list[SetRound] = field(default_factory=list)
    searches: list[SearchOutcome] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    wall_time: float = 0.0

    def to_dict(self, decode: Callable[[Seq], str]) -> dict:
        """The record's ``extra["alias_set_search"]``."""
        return {
            "kept": self.kept,
            "single_train_ap": self.single_ap,
            "built": [{"token_ids": list(s), "text": decode(s)} for s in self.built],
            "built_train_ap": self.built_ap,
            "margin": self.margin,
            "cover": [
                {"token_ids": list(s), "text": decode(s), "restored": list(r)}
                for s, r in zip(self.cover, self.cover_restored or [()] * len(self.cover))
            ],
            "cover_train_ap": self.cover_ap,
            "split_pool": [decode(s) for s in self.split_pool],
            "clusters": None if self.clusters is None else self.clusters.to_dict(decode),
            "cluster_split": None if self.cluster_split is None else self.cluster_split.to_dict(decode),
            "pairs": [{"members": [decode(a), decode(b)], "ap50_estimate": round(e, 4)} for a, b, e in self.pairs],
            "insertions": self.insertions,
            "negatives": self.negatives,
            "rounds_skipped": self.rounds_skipped,
            "set_vs_single": None if self.set_vs_single is None else self.set_vs_single.to_dict(),
            "first_single": None if self.first_single is None else decode(self.first_single),
            "single_added": list(self.single_added),  # token ids, as a round's "restored" and "pruned"
            "single_dropped": list(self.single_dropped),
            "name_check": None if self.name_check is None else self.name_check.to_dict(decode),
            "rounds": [r.to_dict(decode) for r in self.rounds],
            **{f"set_{k}": v for k, v in self.usage.as_dict().items()},
            "set_wall_time": round(self.wall_time, 3),
        }

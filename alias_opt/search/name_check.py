"""The name check: an answer that departs from a name the model knows must beat it clearly on train.

A search picks the best of thousands of candidates on ~20 train images, so the winner's train AP is
biased upwards: on *named* worlds, where the name is exactly right, a chance fit ("orange minho" for
"large hollow orange triangle", +0.031 train AP, -0.047 held out; the set "circle tangerine | tangerine
little" for "small solid orange circle", +0.083 train, -0.076 held out) replaces it about once in 20
categories. The name is the researcher's hypothesis, not one candidate among many: where the model knows
it (train AP >= ``known_name_ap``), the final answer (one alias or a merged set) replaces it only where
the paired bootstrap interval over the train images (coverage ``cfg.name_level``) of AP(answer) -
AP(name) lies above zero (``alias_opt.eval.bootstrap``). An unknown name (renamed, jargon) is not
checked: any answer that finds the targets beats it. Where the search's winner was turned down and the
set builder then proposes another answer over the name, that second look at the same images is made at half
the error rate (``alias_opt.search.alias_set``). An answer that only adds words to the name (``narrows``:
"solid yellow square" for "yellow square") is checked at ``cfg.narrowing_level`` (0.8) instead: it fires where
the name does, less, so it cannot be a broadening that fires beyond the train images; what it drops is targets,
which the train images show.

    check = name_check(answer_preds, name_preds, images, members, level=0.95, seed=seed)
    if check is not None and not check.departs: ...  # the name stays the answer
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from alias_opt.data.targets import TargetImage
from alias_opt.eval.alias_sets import set_bootstrap
from alias_opt.eval.bootstrap import BootstrapDiff
from alias_opt.eval.metrics import DEFAULT_THRESHOLDS, ImagePredictions, Thresholds
from alias_opt.eval.predict import predict_images
from alias_opt.search.objective import Seq


@dataclass(frozen=True)
class NameCheck:
    """The answer checked against the name on the train images.

    Attributes:
        answer: the checked answer's aliases ((1) or (k) token-id tuples).
        diff: train AP(answer, merged) - AP(name) with its paired bootstrap interval.
        extra_negatives: images without the category read besides the train images.
    """

    answer: tuple[Seq, ...]
    diff: BootstrapDiff
    extra_negatives: int = 0

    @property
    def departs(self) -> bool:
        """The answer may replace the name: its interval lies above zero (a bootstrap ``win``)."""
        return self.diff.verdict() == "win"

    def to_dict(self, decode) -> dict:
        """JSON for a record's ``extra``: the answer's texts, the interval and whether the name stayed."""
        return {
            "answer": [decode(s) for s in self.answer],
            **self.diff.to_dict(),
            "extra_negatives": self.extra_negatives,
            "name_kept": not self.departs,
        }


def narrows(members: Sequence[Seq], name: Seq) -> bool:
    """Whether the answer only adds words to the name: every member holds all of the name's tokens (as a
    multiset, in any order) and the answer is not the name alone ("large red circle", "red circle | large red
    circle" for "red circle"; not "red circles", which swaps a token, nor "red", which drops one).

    Args:
        members: the answer's token-id tuples ((k)); name: the name's token ids.
    """
    need, name = Counter(name), tuple(name)
    return bool(name) and any(len(m) > len(name) for m in members) and all(not need - Counter(m) for m in members)


def check_level(members: Sequence[Seq], name: Seq, level: float, narrowing_level: float) -> float:
    """The name check's coverage for this answer: ``narrowing_level`` where it ``narrows`` the name, else
    ``level`` (0 stays 0: no check)."""
    if not level:
        return 0.0
    return narrowing_level if narrows(members, name) else level


def name_check(
    answer: Sequence[Sequence[ImagePredictions]],
    name: Sequence[ImagePredictions],
    images: Sequence[TargetImage],
    members: Sequence[Seq],
    level: float,
    seed: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> NameCheck | None:
    """The paired bootstrap of the answer's train AP (its members' detections merged) minus the name's.

    Args:
        answer: each member's predictions on ``images`` ((k) x (I)); name: the name's ((I,)).
        images: the train images; members: the answer's token-id tuples ((k)), for the record.
        level: the interval's coverage (0: no check); seed: the resampling seed.

    Returns:
        the NameCheck, or None with ``level`` 0 or where the images hold no target.
    """
    diff = set_bootstrap(answer, name, images, level, seed, thresholds)
    return None if diff is None else NameCheck(tuple(tuple(s) for s in members), diff)


def wide_name_check(
    backend,
    answer: Sequence[Sequence[ImagePredictions]],
    name: Sequence[ImagePredictions],
    images: Sequence[TargetImage],
    extra: Sequence[TargetImage],
    members: Sequence[Seq],
    name_seq: Seq,
    level: float,
    seed: int,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> NameCheck | None:
    """``name_check`` over the train images and ``extra`` images without the category: the members and the
    name are predicted on ``extra`` here (encoded a chunk at a time; (k + 1) x len(extra) forwards).

    Args:
        answer, name: predictions on the train ``images`` ((k) x (I) and (I,)), as for ``name_check``.
        extra: further negatives (``TargetSet.extra_negatives``; empty: ``name_check`` alone).
        members: the answer's token-id tuples ((k)); name_seq: the name's.
    """
    if not level:
        return None
    more = predict_images(backend, extra, [list(m) for m in members] + [list(name_seq)], thresholds)
    answer = [[*a, *p] for a, p in zip(answer, more)]
    check = name_check(answer, [*name, *more[-1]], [*images, *extra], members, level, seed, thresholds)
    return None if check is None else NameCheck(check.answer, check.diff, len(extra))

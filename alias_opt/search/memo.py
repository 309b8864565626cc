"""The memo of one objective: the loss of every scored token sequence, by the images it was scored on.

Keys are typed: ``(sequence, Split.FULL)`` is the loss on all train images (what phases rank by),
``(sequence, Split.SCREEN)`` the loss on the screening images, ``(sequence, (i, j, ...))`` the loss on
another subset of image indices. Sequences screened out by ``Objective.score`` are kept apart
(``rejected``): they are never scored on all images unless asked for without screening.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

Seq = tuple[int, ...]


class Split(enum.Enum):
    """Which train images a memoized loss was computed on."""

    FULL = "full"  # every train image
    SCREEN = "screen"  # the objective's screening subset


Subset = Split | tuple[int, ...]


class Memo:
    """Losses of token sequences by image subset, and the screened-out sequences."""

    def __init__(self):
        self._loss: dict[tuple[Seq, Subset], float] = {}
        self._rejected: set[Seq] = set()

    def get(self, seq: Seq, subset: Subset = Split.FULL) -> float | None:
        """The memoized loss of ``seq`` on ``subset`` (None if never scored there)."""
        return self._loss.get((seq, subset))

    def has(self, seq: Seq, subset: Subset = Split.FULL) -> bool:
        return (seq, subset) in self._loss

    def put(self, seq: Seq, subset: Subset, loss: float) -> None:
        self._loss[(seq, subset)] = float(loss)

    def missing(self, seqs: Iterable[Seq], subset: Subset) -> list[Seq]:
        """The distinct sequences of ``seqs`` not yet scored on ``subset``, in order."""
        return list(dict.fromkeys(s for s in seqs if (s, subset) not in self._loss))

    def reject(self, seqs: Iterable[Seq]) -> None:
        """Mark sequences as screened out."""
        self._rejected.update(seqs)

    def is_rejected(self, seq: Seq) -> bool:
        return seq in self._rejected

    def is_known(self, seq: Seq) -> bool:
        """Fully scored or screened out: nothing new to learn by scoring it again (with screening)."""
        return (seq, Split.FULL) in self._loss or seq in self._rejected

    def ranked(self, n: int | None = None) -> list[tuple[Seq, float]]:
        """Fully scored sequences, best first (ties: shorter first)."""
        items = [(s, v) for (s, k), v in self._loss.items() if k is Split.FULL]
        items.sort(key=lambda sv: (sv[1], len(sv[0])))
        return items[:n] if n else items

    def sequences(self, subset: Subset | None = None) -> set[Seq]:
        """Every sequence with a memoized loss (on ``subset``, or on any)."""
        return {s for (s, k) in self._loss if subset is None or k == subset}

"""The one registry of search strategies: a name -> its phases (``alias_opt.search.phases``).

``main.py`` (``alias_opt.discover``), the comparison (``alias_opt.compare``) and tuning all run a
strategy through ``alias_opt.search.pipeline.search``, so a name means one thing everywhere and a
comparison measures exactly what discovery ships. Every pipeline starts by scoring the natural name
(the baseline the alias must beat) and ends by re-ranking the best few candidates and the name by
train-split COCO AP. Without a budget each phase runs its configured amount of work once; with one,
phases share it and the last restarts until it is spent (``alias_opt.search.phases``).

    strategy = get_strategy("pez+evolution")
    strategy.phases  # ('scan', 'extend', 'pez', 'evolution')
"""

from __future__ import annotations

from dataclasses import dataclass

from alias_opt.search.phases import PHASES


@dataclass(frozen=True)
class Strategy:
    """A named pipeline of phases."""

    name: str  # what configs, --strategy and --strategies call it
    phases: tuple[str, ...]  # keys of alias_opt.search.phases.PHASES, run in order
    doc: str  # one line for help texts and the README
    needs_vocab: bool = True  # builds the concept's shortlist (paid from the budget)


DEFAULT = "pez+evolution"

_ALL = (
    Strategy("soft", ("soft",), "soft prompt, no projection while training: the continuous upper bound"),
    Strategy("projection", ("projection",), "the same soft prompt, projected once to the nearest tokens"),
    Strategy("pez", ("scan", "pez"), "shortlist scan, then PEZ (projected forward, continuous update)"),
    Strategy("pez+gcg", ("scan", "pez", "gcg"), "scan, PEZ, then GCG token swaps from PEZ's best"),
    Strategy(
        "pez+evolution",
        ("scan", "extend", "pez", "evolution"),
        "the default: scan, one-token extensions of the best singles, PEZ, then evolution",
    ),
    Strategy("evolution", ("scan", "extend", "evolution"), "pez+evolution without PEZ (no soft prompt)"),
    Strategy(
        "random-evolution",
        ("random-evolution",),
        "the public attempt's recipe: evolution from random tokens, no gradients, no shortlist",
        needs_vocab=False,
    ),
    Strategy("random", ("random",), "random allowed sequences of length 1..max_len", needs_vocab=False),
    Strategy("optuna", ("optuna",), "Optuna TPE over a per-position choice among the shortlist tokens"),
    Strategy("scan", ("scan",), "the shortlist's first scan_size tokens as one-token aliases"),
    Strategy("vocab-scan", ("vocab-scan",), "every allowed single token, in the concept's vocabulary-index order"),
)
STRATEGIES: dict[str, Strategy] = {s.name: s for s in _ALL}
NAMES: tuple[str, ...] = tuple(STRATEGIES)

assert all(p in PHASES for s in _ALL for p in s.phases), "a strategy names an unknown phase"


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; a ValueError that lists the names for an unknown one."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; choose from {', '.join(NAMES)}") from None

"""The alias search: the objective (scorer, memo, cost meter), losses, shortlist and vocabulary indexes,
the phases, and the one registry of strategies (``alias_opt.search.strategies``)."""

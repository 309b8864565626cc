"""Discovery configuration: one nested dataclass, read from JSON files in ``configs/``.

A config file holds only the fields it changes; everything else keeps the defaults below
(``configs/default.json`` is empty on purpose: the defaults live here, once). Unknown keys are
errors, so a typo never silently does nothing.

    cfg = load_config("configs/thorough.json", overrides={"seed": 3})
"""

from alias_opt.config.files import CONFIG_DIR, deep_merge, load_config, read_config_json, setting_differences
from alias_opt.config.parts import (
    SPACES,
    TABLE_SPACES,
    EvolutionConfig,
    GcgConfig,
    IndexConfig,
    LossConfig,
    SoftConfig,
    StrategyOptions,
    parse_view,
    view_tokens,
)
from alias_opt.config.search import SearchConfig

__all__ = [
    "CONFIG_DIR",
    "SPACES",
    "TABLE_SPACES",
    "EvolutionConfig",
    "GcgConfig",
    "IndexConfig",
    "LossConfig",
    "SearchConfig",
    "SoftConfig",
    "StrategyOptions",
    "deep_merge",
    "load_config",
    "parse_view",
    "read_config_json",
    "setting_differences",
    "view_tokens",
]

"""The frozen SAM 3 backend (wraps transformers' Sam3Model). Never imports alias_opt.

Names are imported lazily so that light users (image loading, the tokenizer, the toy world) do not
pay for importing transformers' model code.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "Sam3Backend": "sam3.backend",
    "GroundingOutput": "sam3.features",
    "ImageFeatures": "sam3.features",
    "TextFeatures": "sam3.features",
    "ModelSourceError": "sam3.loading",
    "ImageReadError": "sam3.preprocess",
    "load_image": "sam3.preprocess",
    "preprocess": "sam3.preprocess",
    "Sam3Tokenizer": "sam3.tokenizer",
}

__all__ = [  # a literal list (as _EXPORTS' keys) so that linters see the exports
    "GroundingOutput",
    "ImageFeatures",
    "ImageReadError",
    "ModelSourceError",
    "Sam3Backend",
    "Sam3Tokenizer",
    "TextFeatures",
    "load_image",
    "preprocess",
]

if TYPE_CHECKING:
    from sam3.backend import Sam3Backend
    from sam3.features import GroundingOutput, ImageFeatures, TextFeatures
    from sam3.loading import ModelSourceError
    from sam3.preprocess import ImageReadError, load_image, preprocess
    from sam3.tokenizer import Sam3Tokenizer


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sam3' has no attribute {name!r}")

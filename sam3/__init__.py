"""The frozen SAM 3 backend (wraps transformers' Sam3Model). Never imports alias_opt."""

from sam3.backend import Sam3Backend
from sam3.features import GroundingOutput, ImageFeatures, TextFeatures
from sam3.loading import ModelSourceError
from sam3.preprocess import ImageReadError, load_image, preprocess
from sam3.tokenizer import Sam3Tokenizer

__all__ = [
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

"""SAM 3's CLIP BPE tokenizer: ids, text, round trips and allowed-token masks.

Wraps transformers' ``CLIPTokenizer`` loaded from the checkpoint's own tokenizer files (not
``Sam3Processor``, which imports torchvision). Token ids are the ground truth of an alias; text is
for people. CLIP BPE is not invertible (lower-casing, whitespace and ftfy cleaning), so
``roundtrips`` says whether decoding then encoding gives the same ids back.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import ftfy
import regex
import torch

from sam3.configs import CONTEXT_LENGTH

logger = logging.getLogger(__name__)

ASSET_DIR = Path(__file__).parent / "assets" / "clip_tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json")


def clean_text(text: str) -> str:
    """CLIP's text cleaning before BPE: fix mojibake (ftfy), unescape HTML twice, squeeze whitespace.

    transformers' CLIPTokenizer skips the HTML step; applying it here makes ids equal to those of
    OpenAI CLIP and the official SAM 3 tokenizer for text such as "&amp;".
    """
    text = html.unescape(html.unescape(ftfy.fix_text(text)))
    return regex.sub(r"\s+", " ", text).strip()


class Sam3Tokenizer:
    """CLIP BPE with SAM 3's conventions: SOT + tokens + EOT, context 32."""

    def __init__(self, directory: str | Path = ASSET_DIR):
        from transformers import CLIPTokenizer

        directory = Path(directory)
        if not (directory / "vocab.json").is_file() and not (directory / "tokenizer.json").is_file():
            raise FileNotFoundError(
                f"no tokenizer files (vocab.json + merges.txt or tokenizer.json) in {directory}; "
                f"copy them from the checkpoint or from {ASSET_DIR}"
            )
        self._tok = CLIPTokenizer.from_pretrained(str(directory), local_files_only=True)
        self.vocab_size: int = len(self._tok)
        self.sot_id: int = int(self._tok.bos_token_id)
        self.eot_id: int = int(self._tok.eos_token_id)
        self.context_length = CONTEXT_LENGTH
        self._special = {int(i) for i in self._tok.all_special_ids}

    @property
    def special_ids(self) -> set[int]:
        """Ids that never appear inside an alias (SOT, EOT, pad)."""
        return set(self._special)

    def encode(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text``; with ``special`` wrapped in SOT/EOT. Truncated to the context."""
        ids = self._tok(clean_text(text), add_special_tokens=False)["input_ids"]
        ids = ids[: self.context_length - 2]
        return [self.sot_id, *ids, self.eot_id] if special else list(ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Text of alias ids (special tokens dropped), as CLIP would print it."""
        ids = [int(i) for i in ids if int(i) not in self._special]
        return self._tok.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False).strip()

    def roundtrips(self, ids: Sequence[int]) -> bool:
        """Whether ``encode(decode(ids))`` gives ``ids`` back (so the text is a usable prompt)."""
        ids = [int(i) for i in ids]
        return self.encode(self.decode(ids), special=False) == ids

    def token_strings(self, ids: Iterable[int]) -> list[str]:
        """Raw BPE strings (``</w>`` marks a word end) for display and blocklists."""
        return self._tok.convert_ids_to_tokens([int(i) for i in ids])

    def allowed_mask(
        self, ascii_only: bool = False, blocklist: Iterable[str | int] = (), block_words_of: str = ""
    ) -> torch.Tensor:
        """Boolean (V,) mask of tokens an alias may use.

        Args:
            ascii_only: keep only tokens whose decoded text is ASCII letters, digits or punctuation.
            blocklist: token ids, or words whose tokens are blocked (e.g. the category's own name).
            block_words_of: a text whose every token is blocked (shorthand for a category name).

        Returns:
            (V,) bool tensor; special tokens are always False.
        """
        allowed = torch.ones(self.vocab_size, dtype=torch.bool)
        allowed[list(self._special)] = False
        if ascii_only:
            vocab = self._tok.convert_ids_to_tokens(list(range(self.vocab_size)))
            for i, tok in enumerate(vocab):
                text = self._tok.convert_tokens_to_string([tok])
                if not text.strip().isascii() or not text.strip():
                    allowed[i] = False
        blocked: set[int] = set()
        for item in blocklist:
            if isinstance(item, int):
                blocked.add(item)
            else:
                blocked.update(self.encode(item, special=False))
        if block_words_of:
            blocked.update(self.encode(block_words_of, special=False))
        if blocked:
            allowed[sorted(blocked)] = False
        return allowed

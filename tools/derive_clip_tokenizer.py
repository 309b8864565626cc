"""Derive Hugging Face CLIP tokenizer files from open_clip's BPE merges.

The CLIP BPE vocabulary (49,408 ids) is public, but this workplace cannot reach the Hugging Face
hub. ``open_clip_torch`` ships the original OpenAI merges as ``bpe_simple_vocab_16e6.txt.gz``;
this script rebuilds ``vocab.json`` and ``merges.txt`` from it the way CLIP's SimpleTokenizer
does (256 byte symbols, the same with ``</w>``, 48,894 merges, then SOT and EOT).

Usage:
    pip download --no-deps open_clip_torch==3.3.0 -d /tmp/oc
    python tools/derive_clip_tokenizer.py --wheel /tmp/oc/open_clip_torch-3.3.0-py3-none-any.whl \
        --out sam3/assets/clip_tokenizer
"""

from __future__ import annotations

import argparse
import gzip
import json
import zipfile
from pathlib import Path

N_MERGES = 49152 - 256 - 2  # the slice CLIP's SimpleTokenizer keeps


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP reversible byte -> printable unicode map (public algorithm)."""
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def derive(merges_text: str) -> tuple[dict[str, int], list[str]]:
    lines = merges_text.split("\n")[1 : N_MERGES + 1]
    merges = [tuple(line.split()) for line in lines]
    vocab = list(bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(vocab) == 49408, len(vocab)
    return {tok: i for i, tok in enumerate(vocab)}, [" ".join(m) for m in merges]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", required=True, help="path to an open_clip_torch wheel")
    ap.add_argument("--out", required=True, help="output directory for the tokenizer files")
    args = ap.parse_args(argv)
    with zipfile.ZipFile(args.wheel) as zf:
        raw = gzip.decompress(zf.read("open_clip/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
    vocab, merges = derive(raw)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
    }
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    cfg = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 32, "do_lower_case": True, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""One tokenizer load per process and tokenizer. Every encoder folder of a study (base, intermediate, target) carries
the same XLM-R tokenizer files, and parsing the 250k-piece tokenizer.json takes 1-2 s: paid by every train and
every evaluation of a target stage's 18 runs otherwise. Keyed by the files' content, so a folder with another
tokenizer gets its own."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def load_tokenizer(folder: str | Path):
    """AutoTokenizer.from_pretrained(folder), shared with earlier loads of identical files (callers only read it)."""
    folder = Path(folder)
    h = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        p = folder / name
        if p.is_file():
            found = True
            h.update(name.encode() + b"\0" + p.read_bytes())
    if not found:  # not a local tokenizer folder (a hub id): no content to key on
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(folder))
    return _load(h.hexdigest(), str(folder))


@functools.lru_cache(maxsize=4)
def _load(digest: str, folder: str):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)

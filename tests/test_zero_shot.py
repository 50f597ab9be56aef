"""Zero-shot evaluation and retrieval on the smoke profile: per-language metrics, per-example pieces that
recompute the corpus metric, and XTREME's submission layout."""

import json

import pytest

from xstilts.errors import XstiltsError
from xstilts.evaluation import metrics as M
from xstilts.evaluation.retrieval import run_retrieval
from xstilts.evaluation.zero_shot import evaluate_model
from xstilts.training.runner import finished_run, has_weights, run_phase, train_phase


def _jsonl(path):
    return [json.loads(l) for l in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def trained(smoke_env, tmp_path_factory):
    params, base = smoke_env
    root = tmp_path_factory.mktemp("zs")
    for t in ("panx", "xnli", "xquad"):
        run_phase([t], "target", base, root / t / "model", 1, params, progress=False)
    return params, root


def test_tagging_pieces_recompute_f1_and_export_layout(trained):
    params, root = trained
    out = evaluate_model(root / "panx/model", "panx", params, root / "panx", progress=False)
    assert sorted(out["splits"]["test"]) == ["de", "zh"] and out["primary"] == "f1"
    for lang in ("de", "zh"):
        pieces = _jsonl(root / f"panx/predictions/test/{lang}.jsonl")
        assert len(pieces) == out["splits"]["test"][lang]["n"] == 16
        f1 = M.f1_from_counts((p["n_true"], p["n_pred"], p["n_correct"]) for p in pieces)
        assert f1 == pytest.approx(out["splits"]["test"][lang]["f1"])
        blocks = (root / f"panx/xtreme/panx/test-{lang}.tsv").read_text().strip("\n").split("\n\n")
        assert [len(b.split("\n")) for b in blocks] == [len(p["gold"]) for p in pieces]
    assert out["averages"]["test"]["zero_shot"] == pytest.approx(
        (out["splits"]["test"]["de"]["f1"] + out["splits"]["test"]["zh"]["f1"]) / 2)
    assert out["timing"]["examples_per_s"] > 0 and (root / "panx/config.json").is_file()


def test_classification_and_qa_exports(trained):
    params, root = trained
    out = evaluate_model(root / "xnli/model", "xnli", params, root / "xnli", progress=False)
    pieces = _jsonl(root / "xnli/predictions/test/de.jsonl")
    assert 100 * sum(p["correct"] for p in pieces) / len(pieces) == pytest.approx(out["splits"]["test"]["de"]["accuracy"])
    lines = (root / "xnli/xtreme/xnli/test-de.tsv").read_text().splitlines()
    assert lines == [p["prediction"] for p in pieces]
    assert set(lines) <= {"entailment", "neutral", "contradiction"}
    qa = evaluate_model(root / "xquad/model", "xquad", params, root / "xquad", progress=False)
    sub = json.loads((root / "xquad/xtreme/xquad/test-zh.json").read_text())
    pieces = _jsonl(root / "xquad/predictions/test/zh.jsonl")
    assert set(sub) == {p["id"] for p in pieces} and all(isinstance(v, str) for v in sub.values())
    assert 100 * sum(p["f1"] for p in pieces) / len(pieces) == pytest.approx(qa["splits"]["test"]["zh"]["f1"])


def test_in_memory_model_scores_as_its_saved_weights(trained, smoke_env, tmp_path):
    """Phase 3 without `keep_target_models` is evaluated from memory: same run, same scores as from disk, and a
    run without weights never counts as done (it trains again)."""
    params, root = trained
    m, model = train_phase(["xnli"], "target", smoke_env[1], tmp_path / "m", 1, params, progress=False,
                           save_weights=False)
    assert not has_weights(tmp_path / "m") and finished_run(tmp_path / "m", m["fingerprint"]) is None
    assert (tmp_path / "m/encoder/tokenizer.json").is_file() and (tmp_path / "m/heads.json").is_file()
    mem = evaluate_model(tmp_path / "m", "xnli", params, tmp_path / "mem", progress=False, model=model)
    disk = evaluate_model(root / "xnli/model", "xnli", params, tmp_path / "disk", progress=False)
    assert m["fingerprint"] == disk["train"]["fingerprint"]  # same recipe, seed, data and initial weights
    assert mem["splits"] == disk["splits"]
    pred = "predictions/test/de.jsonl"
    assert (tmp_path / "mem" / pred).read_text() == (tmp_path / "disk" / pred).read_text()


def test_evaluation_errors(trained):
    params, root = trained
    with pytest.raises(XstiltsError, match="trained on \\['panx'\\], not on 'xnli'"):
        evaluate_model(root / "panx/model", "xnli", params, root / "x", progress=False)
    with pytest.raises(XstiltsError, match="unknown evaluation language 'xx'; expected one of: de, zh"):
        evaluate_model(root / "panx/model", "panx", params, root / "x", languages=["xx"], progress=False)
    with pytest.raises(XstiltsError, match="not a finished training run"):
        evaluate_model(root, "panx", params, root / "x", progress=False)


def test_tatoeba_and_bucc_score_an_encoder(smoke_env, tmp_path):
    params, base = smoke_env
    t = run_retrieval(base, "tatoeba", params.data.prepared_dir, tmp_path / "tat", layer=1, pooling="cls",
                      progress=False)
    assert t["layer"] == 1 and t["pooling"] == "cls" and t["scoring"] == "cosine"
    pieces = _jsonl(tmp_path / "tat/predictions/test/de.jsonl")
    assert 100 * sum(p["correct"] for p in pieces) / 16 == t["splits"]["test"]["de"]["accuracy"]
    assert len((tmp_path / "tat/xtreme/tatoeba/test-de.tsv").read_text().splitlines()) == 16
    b = run_retrieval(base, "bucc2018", params.data.prepared_dir, tmp_path / "bucc", progress=False)
    r = b["splits"]["test"]["zh"]
    assert r["n_gold"] == 16 and b["scoring"] == "ratio_margin"
    mined = (tmp_path / "bucc/xtreme/bucc2018/test-zh.tsv").read_text().splitlines()
    assert len(mined) == r["n_pred"] and all(l.startswith("zh-") and "\ten-" in l for l in mined)
    with pytest.raises(XstiltsError, match="not a retrieval task"):
        run_retrieval(base, "xnli", params.data.prepared_dir, tmp_path / "x", progress=False)
    with pytest.raises(XstiltsError, match="retrieval layer 9 out of range"):
        run_retrieval(base, "tatoeba", params.data.prepared_dir, tmp_path / "y", layer=9, progress=False)

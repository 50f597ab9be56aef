"""Evaluation-only tasks: a trained head scores another registry task of its format through a declared label
mapping; a new dataset of an existing format is a registry entry (added here by a fixture file), not code."""

import json

import pytest
import yaml

from xstilts.data.prepare import prepare_task
from xstilts.errors import XstiltsError
from xstilts.evaluation.zero_shot import evaluate_model, map_to_head
from xstilts.tasks import registry
from xstilts.training.runner import run_phase

from conftest import params_for


@pytest.fixture(scope="module")
def panx_model(smoke_env, tmp_path_factory):
    params, base = smoke_env
    prepare_task("lener_br", params)
    out = tmp_path_factory.mktemp("panx") / "model"
    run_phase(["panx"], "target", base, out, 1, params, progress=False)
    return params, out


def test_a_panx_head_scores_legal_ner_through_the_mapping(panx_model, tmp_path):
    params, model = panx_model
    m = evaluate_model(model, "lener_br", params, tmp_path / "eval", progress=False)
    assert m["scored_by"] == "panx" and m["metric"] == "seqeval_f1"
    cov = m["label_mapping"]["test/pt"]
    assert 0 < cov["coverage"] < 1 and cov["gold_total"] > cov["gold_kept"] > 0  # TEMPO, LEGISLACAO... -> O
    golds = [t for line in open(tmp_path / "eval/predictions/test/pt.jsonl") for t in json.loads(line)["gold"]]
    assert set(golds) <= {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}
    with pytest.raises(XstiltsError, match="can be scored by the head of: panx"):
        evaluate_model(model, "ler_de", params, tmp_path / "x", progress=False, head="xnli")


def test_a_classification_label_without_a_place_in_the_head_is_an_error():
    recs = [{"id": "1", "text_a": "a", "label": "maybe"}]
    with pytest.raises(XstiltsError, match="'maybe'.*extend the task's `scored_by` mapping"):
        map_to_head(recs, {}, ["yes", "no"])
    tags = [{"id": "1", "tokens": ["a", "b", "c"], "tags": ["B-X", "B-PER", "O"]}]
    (m,), info = map_to_head(tags, {}, ["O", "B-PER", "I-PER"])
    assert m["tags"] == ["O", "B-PER", "O"] and info["coverage"] == 0.5


def test_a_new_dataset_is_a_registry_entry(tmp_path, monkeypatch, data_root):
    """One TSV with two languages' rows and numeric labels: an extra registry file declares the language filter,
    the label names and the XNLI head that scores it; prepare and evaluation need no new code."""
    root = tmp_path / "data"
    root.mkdir()
    rows = ["lang\tpremise\thypothesis\tgold"] + [f"{l}\tp {l} {i}\th {i}\t{i % 3}" for l in ("de", "fr")
                                                  for i in range(9)]
    (root / "mini_nli.tsv").write_text("\n".join(rows) + "\n")
    extra = tmp_path / "extra_tasks.yaml"
    extra.write_text(yaml.safe_dump({"mini_nli": {
        "format": "classification", "metric": "accuracy", "labels": ["entailment", "neutral", "contradiction"],
        "stand_in": "a fixture", "scored_by": {"xnli": {}},
        "local": {"test": {"path": "mini_nli.tsv", "reader": "tsv", "languages": ["de", "fr"],
                           "filter": {"lang": "{lang}"},
                           "label_map": {"0": "entailment", "1": "neutral", "2": "contradiction"},
                           "options": {"header": True, "columns": {"lang": "lang", "text_a": "premise",
                                                                  "text_b": "hypothesis", "label": "gold"}}}}}}))
    monkeypatch.setenv(registry.EXTRA_ENV, str(extra))
    assert "mini_nli" in registry.task_names()
    params = params_for(tmp_path / "out", root, "smoke", ["mini_nli"])
    counts = prepare_task("mini_nli", params)
    assert counts["splits"]["test"] == {"de": {"source": 18, "prepared": 9}, "fr": {"source": 18, "prepared": 9}}
    rec = json.loads(open(tmp_path / "out/prepared/mini_nli/test/fr.jsonl").readline())
    assert rec["label"] == "entailment" and rec["text_a"].startswith("p fr")
    monkeypatch.setenv(registry.EXTRA_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(Exception, match="registry file"):
        registry.task_names()


def test_languages_a_profile_leaves_out_are_named_once(smoke_env, capsys):
    params, _ = smoke_env
    prepare_task("xnli", params)
    err = capsys.readouterr().err
    assert err.count("prepare xnli: the profile's language list leaves out") == 1 and "ar" in err

"""XTREME-exact metrics: hand-computed values, edge cases, and equality with the official scorer's library."""

import random

import pytest
from seqeval.metrics import f1_score as seqeval_f1_score

from xstilts.errors import XstiltsError
from xstilts.evaluation import metrics as M


def test_accuracy_compares_label_strings():
    score, pieces = M.accuracy(["entailment", "neutral", "contradiction"], ["entailment", "neutral", "neutral"])
    assert score == pytest.approx(200 / 3) and pieces == [1, 1, 0]
    with pytest.raises(XstiltsError, match="3 gold labels but 2 predictions"):
        M.accuracy(["a", "b", "c"], ["a", "b"])


def test_seqeval_hand_computed():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-ORG"]]
    score, pieces = M.seqeval_f1(gold, pred)
    assert pieces == [(2, 2, 1), (1, 1, 1)]
    assert score == pytest.approx(100 * 2 / 3)  # P = R = 2/3
    assert score == pytest.approx(100 * seqeval_f1_score(gold, pred))
    # a partially matching span is not an entity match
    assert M.seqeval_f1([["B-PER", "I-PER"]], [["B-PER", "O"]])[0] == 0.0
    # nothing predicted or nothing to find: 0, as seqeval
    assert M.seqeval_f1([["O", "O"]], [["O", "O"]])[0] == 0.0


def test_udpos_f1_is_chunk_f1_not_token_accuracy():
    gold = [["NOUN", "NOUN", "VERB", "DET", "NOUN"]]
    pred = [["NOUN", "VERB", "VERB", "DET", "NOUN"]]
    score, _ = M.seqeval_f1(gold, pred)
    assert score == pytest.approx(100 * seqeval_f1_score(gold, pred))
    assert score != pytest.approx(M.token_accuracy(gold, pred)[0])  # 80 % token accuracy


@pytest.mark.parametrize("task,lang", [("udpos", "de"), ("panx", "zh")])
def test_seqeval_equals_the_official_library_on_real_data(task, lang, make_params):
    from xstilts.data.prepare import load_split, prepare_task

    params = make_params("smoke", caps={"train": 32, "dev": 16, "test": 300})
    prepare_task(task, params)
    recs = load_split(params.data.prepared_dir, task, "test", lang)
    golds = [r["tags"] for r in recs]
    rng = random.Random(0)
    labels = sorted({t for g in golds for t in g})
    for noise in (0.0, 0.1, 0.4):
        preds = [[rng.choice(labels) if rng.random() < noise else t for t in g] for g in golds]
        ours, pieces = M.seqeval_f1(golds, preds)
        assert ours == pytest.approx(100 * seqeval_f1_score(golds, preds), abs=1e-9)
        # per-sentence pieces recompute the corpus score on any resample
        idx = [rng.randrange(len(golds)) for _ in golds]
        assert M.f1_from_counts(pieces[i] for i in idx) == pytest.approx(
            100 * seqeval_f1_score([golds[i] for i in idx], [preds[i] for i in idx]), abs=1e-9)


def test_squad_scores_hand_computed():
    golds = {"q1": ["Eiffel Tower"], "q2": ["Paris"], "q3": ["blue", "dark blue"], "q4": ["42"], "q5": ["Rome"]}
    preds = {"q1": "the Eiffel Tower!", "q2": "Paris, France", "q3": "very dark blue", "q4": ""}
    score, pieces = M.qa_scores(golds, preds)
    by = {p["id"]: p for p in pieces}
    assert by["q1"]["em"] == 1 and by["q1"]["f1"] == 1
    assert by["q2"]["em"] == 0 and by["q2"]["f1"] == pytest.approx(2 / 3)
    assert by["q3"]["em"] == 0 and by["q3"]["f1"] == pytest.approx(0.8)  # max over golds: 2*(2/3*1)/(5/3)
    assert by["q4"]["f1"] == 0 and by["q4"]["answered"]  # empty prediction
    assert by["q5"] == {"id": "q5", "em": 0.0, "f1": 0.0, "answered": False}  # no prediction scores 0
    assert score["exact_match"] == pytest.approx(20.0)
    assert score["f1"] == pytest.approx(100 * (1 + 2 / 3 + 0.8) / 5)


def test_squad_normaliser_is_english_and_ascii_only():
    assert M.normalize_squad("The  Quick, brown fox.") == "quick brown fox"
    assert M.normalize_squad("«Paris»") == "«paris»"  # unicode punctuation kept by SQuAD v1.1
    assert M.normalize_squad("der Hund") == "der hund"  # no German articles
    assert M.qa_scores({"q": ["Paris"]}, {"q": "«Paris»"})[0]["exact_match"] == 0.0


def test_mlqa_normaliser_per_language():
    assert M.normalize_mlqa("«Paris»", "de") == "paris"  # all unicode punctuation removed
    assert M.normalize_mlqa("der Hund", "de") == "hund"
    assert M.normalize_mlqa("el perro", "es") == "perro"
    assert M.normalize_mlqa("الكتاب", "ar") == "كتاب"
    assert M.normalize_mlqa("北京大学，2020年", "zh") == "北 京 大 学 2020 年"  # CJK split per character
    score, _ = M.qa_scores({"q": ["北京"]}, {"q": "北京大学"}, lang="zh", flavour="mlqa")
    assert score["exact_match"] == 0 and score["f1"] == pytest.approx(100 * 2 / 3)
    with pytest.raises(XstiltsError, match="unknown language 'fr'"):
        M.normalize_mlqa("x", "fr")
    with pytest.raises(XstiltsError, match="needs the language"):
        M.qa_scores({"q": ["a"]}, {"q": "a"}, flavour="mlqa")


def test_bucc_and_tatoeba():
    r = M.bucc_f1([("zh-1", "en-1"), ("zh-2", "en-2")], [("zh-1", "en-1"), ("zh-3", "en-3"), ("zh-4", "en-4")])
    assert (r["tp"], r["n_pred"], r["n_gold"]) == (1, 3, 2)
    assert r["f1"] == pytest.approx(40.0)
    assert M.bucc_f1([("a", "b")], [])["f1"] == 0.0
    score, pieces = M.tatoeba_accuracy([0, 2, 2, 3])
    assert score == 75.0 and pieces == [1, 0, 1, 1]


def test_xtreme_aggregate():
    assert M.task_score("xquad", {"de": {"exact_match": 50, "f1": 70}, "zh": {"exact_match": 30, "f1": 50}}) == 50
    assert M.task_score("panx", {"de": {"f1": 60.0}, "zh": {"f1": 40.0}}) == 50
    assert M.task_score("xnli", {"de": {"accuracy": 70.0}}) == 70
    assert M.xtreme_score({"xnli": 70, "panx": 50, "xquad": 60}) == 60

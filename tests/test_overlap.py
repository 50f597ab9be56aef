"""Overlap of an arm's training data with a target's data: measured on the real (smoke-sized) prepared splits."""

import pytest

from xstilts.data.overlap import measure, normalise, study_overlap, text_units, write_overlap
from xstilts.errors import XstiltsError


def test_normalisation_ignores_case_tokenisation_and_punctuation():
    assert normalise("Al - Zaman : American forces,") == normalise("al-Zaman: AMERICAN forces") == "al zaman american forces"
    assert normalise("Ｆｕｌｌｗｉｄｔｈ") == "fullwidth"  # NFKC


def test_measure_counts_exact_and_8gram_overlap_both_ways():
    train = ["a b c d e f g h i", "short one", "unrelated sentence here"]
    other = ["a b c d e f g h i", "x a b c d e f g h y", "short one", "nothing shared"]
    m = measure(train, other)
    assert m["exact_train_in_target"] == 2 and m["exact_train_in_target_pct"] == pytest.approx(200 / 3)
    assert m["exact_target_in_train"] == 2 and m["exact_target_in_train_pct"] == 50.0
    assert m["ngram_target_units"] == 3  # the copy, the sentence sharing an 8-gram, and the short sentence whole


def test_units_per_format():
    assert text_units({"question": "Who?", "context": "One. Two!"}, "qa") == ["who", "one", "two"]
    assert text_units({"tokens": ["A", "b"]}, "tagging") == ["a b"]
    with pytest.raises(XstiltsError, match="format"):
        text_units({}, "audio")


def test_the_qa_arm_is_a_same_data_control_for_xquad_and_sick_overlaps_nothing(smoke_env, tmp_path):
    params, _ = smoke_env
    r = study_overlap(params, {"qa": ["tydiqa"], "nli": ["sick"]}, ["xquad", "xnli", "panx"])
    assert r["controls"]["xquad"]["qa"]["label"] == "same-data control"
    assert "xnli" not in r["controls"] and "panx" not in r["controls"]
    row = next(x for x in r["rows"] if x["arm"] == "qa" and x["target"] == "xquad" and x["split"] == "train")
    assert row["exact_train_in_target_pct"] == 100.0 and row["train_units"] > 0
    test_rows = [x for x in r["rows"] if x["task"] == "sick" and x["split"] == "test"]
    assert test_rows and all(x["exact_target_in_train"] == 0 for x in test_rows)
    out = write_overlap(r, tmp_path / "ov.json")
    assert out.is_file() and (tmp_path / "ov.csv").read_text().startswith("arm,task,target,split")


def test_an_unprepared_task_is_a_clear_error(smoke_env):
    params, _ = smoke_env
    with pytest.raises(XstiltsError, match="not prepared"):
        study_overlap(params, {"mc": ["cosmosqa"]}, ["xnli"])

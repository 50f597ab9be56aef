"""Prepared counts equal the bundle's MANIFEST.tsv for every bundled file a task reads (before caps)."""

import json

import pytest

from xstilts.data.prepare import load_split, prepare_task
from xstilts.tasks.registry import task_names

# Files no task reads, on purpose: documentation, and COPA test (placeholder labels, bundle README 6.5).
UNREAD = {"extra/copa/test-en.jsonl"}


@pytest.fixture(scope="module")
def uncapped(tmp_path_factory, data_root):
    """Every registry task prepared from the bundle with no caps and every language (mini without its limits)."""
    from conftest import params_for

    params = params_for(tmp_path_factory.mktemp("uncapped"), data_root, "mini", task_names(), caps={},
                        caps_per_task={}, languages={})
    return params, {name: prepare_task(name, params) for name in task_names()}


def test_every_file_count_matches_manifest(uncapped, manifest):
    _, counts = uncapped
    seen = {}
    for name, c in counts.items():
        for path, n in c["files"].items():
            assert path in manifest, f"{name} read {path}, which MANIFEST.tsv does not list"
            assert n == manifest[path], f"{name}: {path} has {n} examples, MANIFEST.tsv says {manifest[path]}"
            seen[path] = n
    data_files = {p for p, n in manifest.items() if n is not None}
    assert data_files - set(seen) == UNREAD


def test_uncapped_prepared_equals_source_where_nothing_is_held_out(uncapped):
    params, counts = uncapped
    c = counts["udpos"]["splits"]
    assert c["train"]["en"] == {"source": 21253, "prepared": 21253}
    assert len(c["test"]) == 16 and len(c["inlang"]) == 23 and len(c["test_dev"]) == 33
    assert counts["panx"]["splits"]["test"]["yo"] == {"source": 100, "prepared": 100}
    assert len(counts["tatoeba"]["splits"]["test"]) == 36
    assert sorted(counts["mlqa"]["splits"]["test"]) == ["ar", "de", "en", "es", "hi", "vi", "zh"]


def test_holdout_partitions_english_dev_without_splitting_premise_groups(uncapped):
    params, counts = uncapped
    train = load_split(params.data.prepared_dir, "xnli", "train", "en")
    dev = load_split(params.data.prepared_dir, "xnli", "dev", "en")
    assert len(train) + len(dev) == 2490
    assert 0.15 < len(dev) / 2490 < 0.25
    assert not {r["text_a"] for r in train} & {r["text_a"] for r in dev}
    # PubMedQA: the official 500-id test split, the other 500 split into train/dev
    pm = counts["pubmedqa"]["splits"]
    assert pm["test"]["en"]["prepared"] == 500
    assert pm["train"]["en"]["prepared"] + pm["dev"]["en"]["prepared"] == 500


def test_records_follow_the_known_facts_of_the_bundle(uncapped):
    params, _ = uncapped
    d = params.data.prepared_dir
    xnli_en = load_split(d, "xnli", "test", "en")
    assert xnli_en[0]["label"] == "contradiction" and xnli_en[1]["label"] == "entailment"  # bundle README 6.1
    paws = load_split(d, "pawsx", "test", "de")
    assert sum('"' in r["text_a"] + r["text_b"] for r in paws) > 0  # CSV quoting undone, inner quotes kept
    de = load_split(d, "udpos", "test", "de")
    assert any(t == "zum" and g == "ADP" for r in de for t, g in zip(r["tokens"], r["tags"]))
    ty = load_split(d, "tydiqa", "train", "en") + load_split(d, "tydiqa", "dev", "en")
    assert len({r["id"] for r in ty}) == len(ty) == 3696  # repeated TyDiQA ids made unique
    for r in ty[:200]:
        s, t = r["answers"]["answer_start"][0], r["answers"]["text"][0]
        assert r["context"][s : s + len(t)] == t
    nli = load_split(d, "xglue_nli_de", "train", "de")
    assert len(nli) == 2245 - 6  # the six lines that duplicate XNLI test rows are dropped
    bucc = load_split(d, "bucc2018", "test", "zh")
    assert sum(r["side"] == "gold" for r in bucc) == 257
    ler = load_split(d, "ler_de", "test", "de")
    assert all(not t.endswith("\r") for r in ler[:50] for t in r["tags"])  # CRLF stripped
    siqa = load_split(d, "siqa", "dev", "en")
    assert {r["label"] for r in siqa} == {0, 1, 2} and all(len(r["choices"]) == 3 for r in siqa)


def test_caps_keep_the_first_examples_and_are_counted(make_params):
    params = make_params("smoke")
    counts = prepare_task("xnli", params)
    test = counts["splits"]["test"]
    assert sorted(test) == ["de", "zh"]  # smoke restricts evaluation languages; train/dev stay English
    assert test["de"] == {"source": 5010, "prepared": 16}
    assert counts["splits"]["train"]["en"]["prepared"] == 32
    de = load_split(params.data.prepared_dir, "xnli", "test", "de")
    zh = load_split(params.data.prepared_dir, "xnli", "test", "zh")
    assert [r["label"] for r in de] == [r["label"] for r in zh]  # parallel rows stay parallel
    meta = json.loads((params.data.prepared_dir and __import__("pathlib").Path(params.data.prepared_dir)
                       / "xnli" / "meta.json").read_text())
    assert meta["labels"] == ["contradiction", "entailment", "neutral"] and meta["stand_in"]


def test_bitext_cap_keeps_gold_sentences_and_distractors(make_params):
    params = make_params("smoke")
    prepare_task("bucc2018", params)
    recs = load_split(params.data.prepared_dir, "bucc2018", "test", "zh")
    gold = [r for r in recs if r["side"] == "gold"]
    ids = {r["id"] for r in recs if r["side"] != "gold"}
    assert len(gold) == 16
    assert all(g["source_id"] in ids and g["target_id"] in ids for g in gold)
    assert sum(r["side"] == "source" for r in recs) == 16 + 64

"""The hub source, exercised offline on locally built parquet files shaped like the hub repos it names.

The bundle's own data is converted into the hub's layout and column names (google/xtreme: ClassLabel tags,
a language column for XNLI, SQuAD-style answers); preparing through the hub source must give the same records
as preparing the original files through the local source.
"""

import pytest

from xstilts.data.prepare import load_split, prepare_task
from xstilts.errors import XstiltsError

datasets = pytest.importorskip("datasets")


def _write(ds, folder, split):
    folder.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(folder / f"{split}-00000-of-00001.parquet"))


@pytest.fixture
def mirror(tmp_path, make_params):
    """Prepare panx/xnli/xquad locally (smoke caps), then write the same data as a google/xtreme-shaped mirror."""
    from datasets import ClassLabel, Dataset, Features, List, Value

    local = make_params("smoke")
    for t in ("panx", "xnli", "xquad"):
        prepare_task(t, local)
    d = local.data.prepared_dir
    root = tmp_path / "mirror"
    ner = ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])
    feats = Features({"tokens": List(Value("string")), "ner_tags": List(ner), "langs": List(Value("string"))})
    for role, split, lang in (("train", "train", "en"), ("dev", "validation", "en"), ("test", "test", "de")):
        recs = load_split(d, "panx", role, lang)
        ds = Dataset.from_dict({"tokens": [r["tokens"] for r in recs],
                                "ner_tags": [[ner.str2int(t) for t in r["tags"]] for r in recs],
                                "langs": [[lang] * len(r["tokens"]) for r in recs]}, features=feats)
        _write(ds, root / "google/xtreme" / f"PAN-X.{lang}", split)
    nli = ClassLabel(names=["contradiction", "entailment", "neutral"])
    rows = {"language": [], "sentence1": [], "sentence2": [], "gold_label": []}
    for lang in ("de", "zh"):
        for r in load_split(d, "xnli", "test", lang):
            rows["language"].append(lang)
            rows["sentence1"].append(r["text_a"])
            rows["sentence2"].append(r["text_b"])
            rows["gold_label"].append(r["label"])
    _write(Dataset.from_dict(rows), root / "google/xtreme" / "XNLI", "test")
    for lang in ("de", "zh"):
        recs = load_split(d, "xquad", "test", lang)
        ds = Dataset.from_dict({k: [r[k] for r in recs] for k in ("id", "title", "context", "question", "answers")})
        _write(ds, root / "google/xtreme" / f"XQuAD.{lang}", "validation")
    return local, root


def test_hub_records_equal_local_records(mirror, make_params):
    local, root = mirror
    hub = make_params("smoke", data_source="hub", languages={"panx": ["de"]})
    hub = hub.model_copy(update={"data": hub.data.model_copy(update={
        "hub_mirror": str(root), "prepared_dir": str(root.parent / "hub_prepared"),
        "counts_dir": str(root.parent / "hub_counts")})})
    counts = prepare_task("panx", hub)
    assert counts["source"] == "hub" and sorted(counts["splits"]["test"]) == ["de"]
    assert counts["files"] == {"hub:google/xtreme/PAN-X.en[train]": 32, "hub:google/xtreme/PAN-X.en[validation]": 16,
                               "hub:google/xtreme/PAN-X.de[test]": 16}
    strip = lambda rs, keys: [{k: r[k] for k in keys} for r in rs]
    for role, lang in (("train", "en"), ("dev", "en"), ("test", "de")):
        assert strip(load_split(hub.data.prepared_dir, "panx", role, lang), ("tokens", "tags")) == \
            strip(load_split(local.data.prepared_dir, "panx", role, lang), ("tokens", "tags"))

    # XNLI test: one parquet file for all languages, filtered on its language column; ClassLabel -> names
    from xstilts.data.sources import HubSource
    from xstilts.tasks.registry import get_task

    src = HubSource(root)
    zh = src.read(get_task("xnli"), "test", "zh")
    assert zh.source_count == 32
    assert strip(zh.records, ("text_a", "text_b", "label")) == \
        strip(load_split(local.data.prepared_dir, "xnli", "test", "zh"), ("text_a", "text_b", "label"))
    de = src.read(get_task("xquad"), "test", "de")
    assert strip(de.records, ("id", "context", "question", "answers")) == \
        strip(load_split(local.data.prepared_dir, "xquad", "test", "de"), ("id", "context", "question", "answers"))


def test_hub_errors_name_the_dataset(mirror, make_params):
    _, root = mirror
    from xstilts.data.sources import HubSource
    from xstilts.tasks.registry import get_task

    src = HubSource(root)
    with pytest.raises(XstiltsError, match=r"hub split 'test': unknown language 'xx'; expected one of: af, ar"):
        src.read(get_task("panx"), "test", "xx")
    with pytest.raises(XstiltsError, match=r"PAN-X\.fr: no test-\*\.parquet"):
        src.read(get_task("panx"), "test", "fr")
    with pytest.raises(XstiltsError, match=r"hub mirror .* has no folder 'rajpurkar/squad'"):
        src.read(get_task("xquad"), "train", "en")

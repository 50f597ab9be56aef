"""Features: the WikiANN '▁' rule for tagging, QA windows that locate the answer, multiple-choice shapes."""

from transformers import AutoTokenizer

from xstilts.data.features import IGNORE, encode
from xstilts.data.prepare import load_split


def test_cjk_words_are_labelled_on_the_character_not_on_a_bare_metaspace(smoke_env):
    params, model_dir = smoke_env
    tok = AutoTokenizer.from_pretrained(model_dir)
    recs = load_split(params.data.prepared_dir, "panx", "test", "zh")
    labels = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    enc = encode("tagging", recs, tok, 128, labels)
    space = tok.convert_tokens_to_ids("▁")
    n_words = n_on_space = 0
    for f, r in zip(enc.features, recs):
        assert sum(l != IGNORE for l in f["labels"]) == sum(p is not None for p in f["positions"])
        for w, pos in enumerate(f["positions"]):
            if pos is None:
                continue
            n_words += 1
            n_on_space += f["input_ids"][pos] == space
            assert f["labels"][pos] == labels.index(r["tags"][w])
    assert n_words > 100 and n_on_space == 0
    # the naive first-sub-token rule would have put most labels on a bare "▁"
    naive = tok([r["tokens"] for r in recs], is_split_into_words=True)
    first = [naive["input_ids"][i][naive.word_ids(i).index(w)] for i, r in enumerate(recs) for w in range(len(r["tokens"]))]
    assert sum(t == space for t in first) > 0.5 * len(first)


def test_qa_training_windows_point_at_the_answer(smoke_env):
    params, model_dir = smoke_env
    tok = AutoTokenizer.from_pretrained(model_dir)
    recs = load_split(params.data.prepared_dir, "tydiqa", "train", "en")
    enc = encode("qa", recs, tok, 128, train=True, doc_stride=32)
    assert len(enc.features) > len(recs)  # long contexts need several windows
    hits = 0
    for f in enc.features:
        if f["start_position"] == 0:
            continue
        hits += 1
        text = tok.decode(f["input_ids"][f["start_position"]: f["end_position"] + 1]).strip()
        answer = recs[f["example_index"]]["answers"]["text"][0]
        assert text.lower().replace(" ", "") in answer.lower().replace(" ", "") or \
            answer.lower().replace(" ", "") in text.lower().replace(" ", "")
    assert hits >= len(recs) * 0.8
    ev = encode("qa", recs, tok, 128, train=False, doc_stride=32)
    assert all("offsets" in f and "start_position" not in f for f in ev.features)


def test_multiple_choice_encodes_one_sequence_per_choice(smoke_env):
    params, model_dir = smoke_env
    tok = AutoTokenizer.from_pretrained(model_dir)
    recs = load_split(params.data.prepared_dir, "siqa", "train", "en")
    enc = encode("multiple_choice", recs, tok, 64)
    assert all(len(f["choices_input_ids"]) == 3 and all(len(x) <= 64 for x in f["choices_input_ids"])
               for f in enc.features)

"""Prepared data of every task round-trips through the XLM-R tokenizer the models use.

- every text maps back: the tokens' character offsets cover (nearly) all non-space characters, few <unk>;
- tagging: every word gets at least one sub-token (first-sub-token labelling needs one per word);
- QA: each gold answer's first and last characters fall inside tokens (the span is recoverable).
"""

import pytest
from transformers import AutoTokenizer

from xstilts.data.prepare import load_split, prepare_task
from xstilts.tasks.registry import get_task, task_names

TEXT_FIELDS = {"classification": ("text_a", "text_b"), "qa": ("context", "question"),
               "multiple_choice": ("context", "question"), "retrieval": ("source", "target"), "bitext": ("text",)}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data_root):
    from conftest import params_for

    params = params_for(tmp_path_factory.mktemp("rt"), data_root, "smoke", task_names())
    return params, {t: prepare_task(t, params) for t in task_names()}


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _coverage(tok, texts):
    """Batch: (non-space chars covered by token offsets, non-space chars, <unk> tokens, tokens)."""
    enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
    got = total = unk = ntok = 0
    for text, ids, offsets in zip(texts, enc["input_ids"], enc["offset_mapping"]):
        covered = set()
        for s, e in offsets:
            covered.update(range(s, e))
        chars = [i for i, c in enumerate(text) if not c.isspace()]
        got += sum(i in covered for i in chars)
        total += len(chars)
        unk += sum(i == tok.unk_token_id for i in ids)
        ntok += len(ids)
    return got, total, unk, ntok


@pytest.mark.parametrize("task", task_names())
def test_prepared_task_round_trips(task, prepared, tok):
    params, counts = prepared
    spec = get_task(task)
    for role, langs in counts[task]["splits"].items():
        for lang in langs:
            where = f"{task}/{role}/{lang}"
            recs = load_split(params.data.prepared_dir, task, role, lang)
            assert recs, f"{where} is empty"
            if spec.format == "tagging":
                enc = tok([r["tokens"] for r in recs], is_split_into_words=True, add_special_tokens=False)
                for i, r in enumerate(recs):
                    words = {w for w in enc.word_ids(i) if w is not None}
                    assert words == set(range(len(r["tokens"]))), f"{where} {r['id']}: a word without sub-tokens"
                continue
            texts = [r[f] for r in recs for f in TEXT_FIELDS[spec.format] if r.get(f)]
            if spec.format == "multiple_choice":
                texts += [c for r in recs for c in r["choices"]]
            got, total, unk, ntok = _coverage(tok, texts)
            assert got >= 0.99 * total, f"{where}: token offsets cover {got}/{total} characters"
            assert unk <= 0.01 * ntok, f"{where}: {unk} <unk> of {ntok} tokens"
            if spec.format == "qa":
                enc = tok([r["context"] for r in recs], add_special_tokens=False)
                for i, r in enumerate(recs):
                    for s, t in zip(r["answers"]["answer_start"], r["answers"]["text"]):
                        end = s + len(t.rstrip()) - 1
                        assert enc.char_to_token(i, end) is not None, f"{where} {r['id']}: answer end unmapped"
                        first = s + (len(t) - len(t.lstrip()))
                        assert enc.char_to_token(i, first) is not None, f"{where} {r['id']}: answer start unmapped"

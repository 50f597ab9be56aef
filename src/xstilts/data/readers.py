"""Parsers from the bundle's / XTREME's file formats to xstilts records.

Each reader yields plain dicts in the record schema of its task format (see `tasks.registry.FORMATS`) plus
`_line`: the 1-based line (or record) number in the source file, used for error messages and `drop_lines`.
A malformed line raises DataFormatError naming the file, the line and what was expected.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

from ..errors import DataFormatError

csv.field_size_limit(1 << 28)


def _open(path: Path):
    return open(path, encoding="utf-8", newline="")


def _strip_eol(line: str) -> str:
    return line.rstrip("\r\n")


def tsv(path: Path, columns, header: bool = False, csv_quoting: bool = False, label_map: dict | None = None,
        lowercase_label: bool = False) -> Iterator[dict]:
    """Tab-separated rows. `columns`: a list (positional; every row must have exactly that many fields) or a
    mapping record-field -> header name (`header: true`). `csv_quoting`: rows written by Python's csv.writer
    (XNLI, PAWS-X): quoted fields are unquoted exactly."""
    with _open(path) as fh:
        if csv_quoting:
            rows = ((reader.line_num, row) for reader in [csv.reader(fh, delimiter="\t")] for row in reader)
        else:
            rows = ((i, _strip_eol(line).split("\t")) for i, line in enumerate(fh, 1))
        names: list[str] | None = None
        index = 0
        for line_no, row in rows:
            if header and names is None:
                names = row
                missing = [h for h in columns.values() if h not in names]
                if missing:
                    raise DataFormatError(path, line_no, f"a header with columns {sorted(columns.values())}",
                                          "\t".join(row))
                continue
            if row == [] or row == [""]:
                raise DataFormatError(path, line_no, "a data row", "an empty line")
            if header:
                if len(row) != len(names):
                    raise DataFormatError(path, line_no, f"{len(names)} tab-separated fields", "\t".join(row))
                rec = {field: row[names.index(h)] for field, h in columns.items()}
            else:
                if len(row) != len(columns):
                    raise DataFormatError(path, line_no, f"{len(columns)} tab-separated fields "
                                          f"({', '.join(columns)})", "\t".join(row))
                rec = dict(zip(columns, row))
            if "label" in rec:
                lab = rec["label"].strip()
                lab = lab.lower() if lowercase_label else lab
                rec["label"] = label_map.get(lab, lab) if label_map else lab
            rec["id"] = str(index)
            rec["_line"] = line_no
            index += 1
            yield rec


def conll(path: Path, sep: str = "\t") -> Iterator[dict]:
    """One `token<sep>tag` per line, a blank line between sentences (CRLF tolerated)."""
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    index = 0
    with _open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            line = _strip_eol(line)
            if not line.strip():
                if tokens:
                    yield {"id": str(index), "tokens": tokens, "tags": tags, "_line": start}
                    index += 1
                    tokens, tags = [], []
                continue
            if not tokens:
                start = line_no
            parts = line.split(sep) if sep != " " else line.rsplit(" ", 1)
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise DataFormatError(path, line_no, f"'token{sep!r}tag'".replace("'\\t'", "<TAB>")
                                      .replace("' '", "<SPACE>"), line)
            tokens.append(parts[0])
            tags.append(parts[1].strip())
    if tokens:
        yield {"id": str(index), "tokens": tokens, "tags": tags, "_line": start}


_CONLLU_COLUMNS = {"upos": 3, "xpos": 4, "deprel": 7}


def conllu(path: Path, column: str) -> Iterator[dict]:
    """CoNLL-U syntactic words (multiword-token ranges and empty nodes skipped); tags from `column`."""
    col = _CONLLU_COLUMNS[column]
    tokens, tags, heads = [], [], []
    start, index = 1, 0
    with _open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            line = _strip_eol(line)
            if not line:
                if tokens:
                    rec = {"id": str(index), "tokens": tokens, "tags": tags, "_line": start}
                    if column == "deprel":
                        rec["heads"] = heads
                    yield rec
                    index += 1
                    tokens, tags, heads = [], [], []
                continue
            if line.startswith("#"):
                if not tokens:
                    start = line_no
                continue
            parts = line.split("\t")
            if len(parts) != 10:
                raise DataFormatError(path, line_no, "10 tab-separated CoNLL-U columns", line)
            if "-" in parts[0] or "." in parts[0]:
                continue
            tokens.append(parts[1])
            tags.append(parts[col])
            heads.append(int(parts[6]) if parts[6].isdigit() else 0)
    if tokens:
        rec = {"id": str(index), "tokens": tokens, "tags": tags, "_line": start}
        if column == "deprel":
            rec["heads"] = heads
        yield rec


def squad(path: Path) -> Iterator[dict]:
    """SQuAD v1.1 JSON. Question ids that repeat (the bundle's TyDiQA files) get a position suffix."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, "SQuAD-format JSON", str(e)) from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataFormatError(path, None, "a JSON object with a 'data' list (SQuAD v1.1)")
    qas = []
    for article in data["data"]:
        for para in article.get("paragraphs", []):
            for qa in para.get("qas", []):
                qas.append((article.get("title", ""), para["context"], qa))
    counts = Counter(qa.get("id") for _, _, qa in qas)
    for n, (title, context, qa) in enumerate(qas):
        answers = qa.get("answers", [])
        for a in answers:
            s = a.get("answer_start")
            if not isinstance(s, int) or context[s : s + len(a.get("text", ""))] != a.get("text"):
                raise DataFormatError(path, n + 1, f"answer_start pointing at the answer text in question "
                                      f"{qa.get('id')!r}", repr(a))
        qid = str(qa["id"]) if counts[qa.get("id")] == 1 else f"{qa['id']}-{n}"
        yield {"id": qid, "title": title, "context": context, "question": qa["question"],
               "answers": {"text": [a["text"] for a in answers],
                           "answer_start": [a["answer_start"] for a in answers]},
               "is_impossible": bool(qa.get("is_impossible", False)), "_line": n + 1}


def jsonl(path: Path, context: str | None, question: str | None, choices: list[str], label: str,
          label_map: dict | None = None, question_map: dict | None = None) -> Iterator[dict]:
    """Multiple choice from JSON lines (COPA, SocialIQA): field names given by the registry."""
    with _open(path) as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(path, line_no, "one JSON object per line", line.strip()) from e
            missing = [k for k in [context, question, label, *choices] if k and k not in obj]
            if missing:
                raise DataFormatError(path, line_no, f"fields {missing}", line.strip())
            yield _mc_record(obj, line_no, context, question, choices, label, label_map, question_map, path)


def csv_mc(path: Path, context: str | None, question: str | None, choices: list[str], label: str,
           label_map: dict | None = None, question_map: dict | None = None) -> Iterator[dict]:
    """Multiple choice from a comma-separated CSV with a header (Cosmos QA)."""
    with _open(path) as fh:
        reader = csv.DictReader(fh)
        for obj in reader:
            missing = [k for k in [context, question, label, *choices] if k and obj.get(k) is None]
            if missing:
                raise DataFormatError(path, reader.line_num, f"fields {missing}", str(obj))
            yield _mc_record(obj, reader.line_num, context, question, choices, label, label_map, question_map, path)


def _mc_record(obj, line_no, context, question, choices, label, label_map, question_map, path) -> dict:
    raw = str(obj[label]).strip()
    lab = label_map[raw] if label_map and raw in label_map else raw
    try:
        lab = int(lab)
    except ValueError:
        raise DataFormatError(path, line_no, f"a label in {sorted(label_map) if label_map else 'integers'}",
                              raw) from None
    if not 0 <= lab < len(choices):
        raise DataFormatError(path, line_no, f"a label index in 0..{len(choices) - 1}", raw)
    q = obj[question] if question else ""
    q = question_map.get(q, q) if question_map else q
    rec_id = obj.get("idx", obj.get("id", line_no - 1))
    return {"id": str(rec_id), "context": obj[context] if context else "", "question": q,
            "choices": [obj[c] for c in choices], "label": lab, "_line": line_no}


def pubmedqa(path: Path) -> Iterator[dict]:
    """PubMedQA PQA-L: question + abstract (without its conclusion) -> yes / no / maybe."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, "a JSON object keyed by PubMed id", str(e)) from e
    for n, (pmid, v) in enumerate(data.items(), 1):
        for k in ("QUESTION", "CONTEXTS", "final_decision"):
            if k not in v:
                raise DataFormatError(path, n, f"field {k!r} in PubMed id {pmid}")
        yield {"id": str(pmid), "text_a": v["QUESTION"], "text_b": " ".join(v["CONTEXTS"]),
               "label": v["final_decision"], "_line": n}


def tatoeba(path: Path) -> Iterator[dict]:
    """`<l>-en.<l>` with its line-aligned `<l>-en.en`: line i of the source translates line i of the target."""
    tgt_path = path.with_name(path.name.rsplit(".", 1)[0] + ".en")
    if not tgt_path.is_file():
        raise DataFormatError(tgt_path, None, f"the English side of {path.name} (missing file)")
    src = path.read_text(encoding="utf-8").split("\n")
    tgt = tgt_path.read_text(encoding="utf-8").split("\n")
    src = src[:-1] if src and src[-1] == "" else src
    tgt = tgt[:-1] if tgt and tgt[-1] == "" else tgt
    if len(src) != len(tgt):
        raise DataFormatError(tgt_path, min(len(src), len(tgt)) + 1,
                              f"{len(src)} lines, aligned with {path.name}", f"{len(tgt)} lines")
    for i, (s, t) in enumerate(zip(src, tgt)):
        yield {"id": str(i), "source": s, "target": t, "_line": i + 1}


def bucc(path: Path) -> Iterator[dict]:
    """BUCC 2018 `<src>-en.<split>.<src>` + `.en` (`id<TAB>sentence`) and `.gold` (`src id<TAB>en id`).

    Yields sentence records (`side` source/target) and gold records (`side` gold, `source_id`, `target_id`)."""
    stem = path.name.rsplit(".", 1)[0]
    src_lang = path.name.rsplit(".", 1)[1]
    for side, suffix in (("source", src_lang), ("target", "en")):
        p = path.with_name(f"{stem}.{suffix}")
        with _open(p) as fh:
            for line_no, line in enumerate(fh, 1):
                parts = _strip_eol(line).split("\t")
                if len(parts) != 2:
                    raise DataFormatError(p, line_no, "'id<TAB>sentence'", line)
                yield {"id": parts[0], "side": side, "text": parts[1], "_line": line_no}
    gold = path.with_name(f"{stem}.gold")
    if gold.is_file():
        with _open(gold) as fh:
            for line_no, line in enumerate(fh, 1):
                parts = _strip_eol(line).split("\t")
                if len(parts) != 2:
                    raise DataFormatError(gold, line_no, "'source id<TAB>target id'", line)
                yield {"id": f"{parts[0]}:{parts[1]}", "side": "gold", "source_id": parts[0],
                       "target_id": parts[1], "_line": line_no}


READERS = {"tsv": tsv, "conll": conll, "conllu": conllu, "squad": squad, "jsonl": jsonl, "csv_mc": csv_mc,
           "pubmedqa": pubmedqa, "tatoeba": tatoeba, "bucc": bucc}

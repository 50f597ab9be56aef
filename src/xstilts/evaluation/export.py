"""Predictions in XTREME's submission layout: `xtreme/<task>/test-<lang>.tsv|json`.

Classification: one label per line. Tagging: one tag per line, a blank line between sentences. QA: a JSON
object question id -> answer text. Tatoeba: the predicted target line per source line. BUCC: `source<TAB>target`
per mined pair.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import atomic_file


def export_predictions(out_root: Path, xtreme_task: str, lang: str, fmt: str, records: list[dict], preds) -> Path:
    folder = out_root / "xtreme" / xtreme_task
    if fmt == "qa":
        path = folder / f"test-{lang}.json"
        with atomic_file(path) as fh:
            json.dump({r["id"]: p for r, p in zip(records, preds)}, fh, ensure_ascii=False)
        return path
    path = folder / f"test-{lang}.tsv"
    with atomic_file(path) as fh:
        if fmt == "tagging":
            fh.write("\n\n".join("\n".join(tags) for tags in preds) + "\n")
        elif fmt == "bitext":
            fh.writelines(f"{s}\t{t}\n" for s, t in preds)
        else:
            fh.writelines(f"{p}\n" for p in preds)
    return path

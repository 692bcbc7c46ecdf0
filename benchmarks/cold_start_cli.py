"""`python -m benchmarks cold-start`: builds what it needs under build/benchmarks/work (once;
--rebuild to redo), then measures benchmarks.cold_start: the torch payload variants, then what
each backend reads from EFS for a first classification and a first heatmap (--backends-only:
just that)."""
import json
import shutil
from pathlib import Path

from benchmarks import cold_start

WORK = cold_start.REPO / "build" / "benchmarks" / "work"


def add_arguments(parser) -> None:
    group = parser.add_argument_group("cold-start")
    group.add_argument("--repeat", type=int, default=5, help="runs per variant (default 5)")
    group.add_argument("--no-trace", action="store_true", help="skip the strace run")
    group.add_argument("--naive-tree", type=Path, help="an existing naive tree to measure")
    group.add_argument("--stripped-tree", type=Path,
                       help="an existing vendor_efs.runtime tree (e.g. build/efs/packages)")
    group.add_argument("--wheels", type=Path, default=Path("/opt/wheels"),
                       help="folder with a torch CPU wheel for this Python to build the trees "
                            "from, when not given; without one, this venv's torch "
                            "(vendor_efs.runtime.host; default %(default)s)")
    group.add_argument("--index-url", help="index for torch's pure dependencies")
    group.add_argument("--rebuild", action="store_true", help="rebuild the work folder")
    group.add_argument("--backends-only", action="store_true",
                       help="only the per-backend table (onnxruntime, torch): no payload variants")


def _build_trees(args, log):
    from vendor_efs.runtime.build import REPORT_FILE, build, format_report
    from vendor_efs.runtime.host import host_build
    built = {}
    kinds = (("naive", args.naive_tree), ("stripped", args.stripped_tree))
    for kind, given in kinds[1:] if args.backends_only else kinds:
        tree = WORK / f"packages-{kind}"
        if given is not None:
            built[kind] = (given.resolve(), None)
            continue
        if args.rebuild or not (tree / REPORT_FILE).exists():
            options = host_build(WORK, args.wheels, index_url=args.index_url)
            report = build(out=tree, naive=kind == "naive", log=log, **options)
            log(format_report(report))
        built[kind] = (tree, json.loads((tree / REPORT_FILE).read_text()))
    return built


def run(args):
    log = lambda message: print(message, flush=True)  # noqa: E731
    if args.rebuild:
        shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True, exist_ok=True)
    trees = _build_trees(args, log)
    app_dir = WORK / "app"
    from lambda_sim.task_root import build_app_tree
    from vendor_efs.models.demo import install_demo
    shutil.rmtree(app_dir, ignore_errors=True)  # always the current app code
    build_app_tree(app_dir)
    store = WORK / "efs"
    install_demo(store / "models")
    report: dict = {}
    text = ""
    if not args.backends_only:
        report = cold_start.measure(app_dir, store, trees["naive"][0], trees["stripped"][0],
                                    WORK, repeat=args.repeat, trace=not args.no_trace, log=log)
        text = cold_start.table(report)
        naive = report["variants"]["naive"]
        if naive.get("touched_but_stripped"):
            text += ("\nWARNING: the naive cold start touched files the strip rules remove: "
                     + ", ".join(naive["touched_but_stripped"][:10]))
        elif "touched_but_stripped" in naive:
            text += ("\nstrip rules checked: none of the files the naive cold start opened or "
                     "looked up is stripped")
    report["builds"] = {kind: built for kind, (_, built) in trees.items() if built}
    report["by_backend"] = cold_start.measure_backends(app_dir, store, trees["stripped"][0],
                                                       WORK, repeat=min(args.repeat, 3), log=log)
    text += "\n" + cold_start.backends_table(report["by_backend"])
    return report, text

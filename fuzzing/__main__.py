"""python -m fuzzing [--runs N] [--mode both|coverage|structure] [--seed S] [options]: fuzzes
the decoders (atheris, one process per content type) and the Lambda entry (structure-aware
mutations of the shared radiographs), prints the figures, writes build/fuzz/summary.json, saves
every input that broke the rule to the corpus, and exits 1 if any did. --replay checks the
corpus instead."""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List

from chalicelib.settings import LOCAL_EFS_ROOT, PROJECT_ROOT
from fuzzing import corpus, coverage, structure
from fuzzing.lambda_worker import Request, Worker
from fuzzing.rule import DEFAULT_RSS_BOUND_MB, DEFAULT_TIME_BOUND_S, Bounds, violations
from fuzzing.structure import Result

WORK = PROJECT_ROOT / "build" / "fuzz"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzzing", description=__doc__.split(":")[0])
    parser.add_argument("--runs", type=int, default=1000,
                        help="inputs in all, split evenly over the targets: the coverage "
                             "mode's (one per content type) and the Lambda entry "
                             "(default %(default)s)")
    parser.add_argument("--mode", choices=("both", "coverage", "structure"), default="both")
    parser.add_argument("--targets", nargs="*", choices=list(coverage.TARGETS),
                        default=list(coverage.TARGETS), help="the coverage mode's targets")
    parser.add_argument("--seed", type=int, default=1, help="the same seed, the same inputs")
    parser.add_argument("--time-bound", type=float, default=DEFAULT_TIME_BOUND_S,
                        help="seconds one input may take (default %(default)s)")
    parser.add_argument("--rss-bound", type=int, default=DEFAULT_RSS_BOUND_MB,
                        help="peak RSS in MB (default %(default)s)")
    parser.add_argument("--corpus", type=Path, default=corpus.CORPUS,
                        help="where breaking inputs are saved (default %(default)s)")
    parser.add_argument("--work", type=Path, default=WORK,
                        help="atheris' growing corpora, logs, summary.json (default %(default)s)")
    parser.add_argument("--efs-root", type=Path, default=LOCAL_EFS_ROOT,
                        help="the model store the Lambda entry serves (default %(default)s)")
    parser.add_argument("--replay", action="store_true",
                        help="only replay the corpus through the Lambda entry")
    args = parser.parse_args(argv)
    bounds = Bounds(time_s=args.time_bound, rss_mb=args.rss_bound)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.replay:
        return replay(args.corpus, bounds, args.efs_root)
    args.work.mkdir(parents=True, exist_ok=True)
    results: List[Result] = []
    started = time.perf_counter()
    targets = ([f"decode-{name}" for name in args.targets] if args.mode != "structure" else [])
    targets += [structure.TARGET] if args.mode != "coverage" else []
    share, extra = divmod(args.runs, len(targets))
    runs = {target: share + (i < extra) for i, target in enumerate(targets)}
    for target in targets:
        if target == structure.TARGET:
            say(f"fuzz: lambda: {runs[target]} structure-aware inputs through "
                f"app.app(event, context)")
            results.append(structure.run(runs[target], args.seed, bounds,
                                         args.efs_root.resolve(), args.corpus, say,
                                         args.work / "lambda-worker.log"))
        else:
            results.append(coverage.run_target(target.removeprefix("decode-"), runs[target],
                                               args.seed, bounds, args.work / "atheris",
                                               args.corpus, say))
    total = time.perf_counter() - started
    print(table(results, bounds, total))
    summary = {"seed": args.seed, "runs": args.runs,
               "bounds": {"time_s": bounds.time_s, "rss_mb": bounds.rss_mb},
               "seconds": round(total, 1),
               "load_average": list(os.getloadavg()), "cpus": os.cpu_count(),
               "targets": [{**r.__dict__, "execs_per_s": round(r.execs_per_s, 1)}
                           for r in results]}
    (args.work / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    print(f"\nfuzz: wrote {args.work / 'summary.json'}")
    return 1 if any(r.violations for r in results) else 0


def table(results: List[Result], bounds: Bounds, total_s: float) -> str:
    rows = [("target", "inputs", "s", "execs/s", "slowest s", "peak RSS MB", "violations",
             "answers")]
    for r in results:
        answers = ", ".join(f"{label}: {n}" for label, n in
                            sorted(r.answers.items(), key=lambda item: -item[1]))
        rows.append((r.target, str(r.inputs), f"{r.seconds:.0f}", f"{r.execs_per_s:.0f}",
                     f"{r.slowest_s:.2f}", f"{r.peak_rss_mb:.0f}", str(len(r.violations)),
                     answers))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
             for row in rows]
    inputs = sum(r.inputs for r in results)
    broken = [v for r in results for v in r.violations]
    lines.append(f"\n{inputs} inputs in {total_s:.0f} s; bounds {bounds.time_s:g} s and "
                 f"{bounds.rss_mb} MB per input; load average {os.getloadavg()[0]:.1f} on "
                 f"{os.cpu_count()} CPUs; {len(broken)} violation(s)")
    for v in broken:
        lines.append(f"  BROKE: {'; '.join(v['broke'])}  {v.get('recipe') or v.get('artifact')}"
                     f"  saved: {v.get('saved') or '-'}")
    return "\n".join(lines)


def replay(corpus_dir: Path, bounds: Bounds, efs_root: Path) -> int:
    """Every corpus entry through the Lambda entry (in a worker); 1 if any breaks the rule."""
    worker, failed = Worker(efs_root.resolve()), 0
    try:
        found = corpus.entries(corpus_dir)
        for entry in found:
            reply = worker.ask(Request(entry.route, entry.content_type, entry.body),
                               max(3 * bounds.time_s, bounds.time_s + 20))
            broke = violations(reply.response, reply.seconds, reply.rss_mb, bounds)
            status = reply.response["statusCode"] if reply.response else reply.failure
            print(f"{entry.path.relative_to(corpus_dir)}: {status} "
                  f"{'BROKE: ' + '; '.join(broke) if broke else 'ok'}")
            failed += bool(broke)
    finally:
        worker.stop()
    print(f"fuzz: replayed {len(found)} corpus entries, {failed} broke the rule")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

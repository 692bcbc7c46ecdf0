"""Cold start: a fresh, isolated interpreter (`python -I -S`: the standard library, the unzipped
app as /var/task, nothing of the venv) from launch to the first answer of app(event, context) for
a PNG, with torch taken from each payload variant:

    naive     the tree `pip install --target` makes (torch + every declared dependency,
              pip's timestamp pycs), imported in place (on EFS on Lambda)
    naive-copied  the same tree copied without keeping mtimes (as many upload paths do): its
              timestamp pycs no longer match, so every cold start compiles from source
    stripped  vendor_efs.runtime's tree (pinned, stripped, unchecked-hash pycs), imported in place
    archive   the stripped tree as one uncompressed tar, unpacked to a fresh /tmp folder by the
              function and imported from there
    archive-py  the same without the shared libraries: the tar holds the Python files and, for
              each ELF file, a symlink to it in the stripped tree on EFS (pages of libtorch are
              faulted in from EFS as in `stripped`, the ~4,800 small files come from /tmp)
    archive-py-tmpfs  the same, unpacked to tmpfs (/dev/shm) instead of this machine's disk:
              how much of the unpack time is this disk's file creation

Every run uses `python -B` too: the function must not (and on a read-only EFS cannot) write
pycs, so a tree whose pycs are stale pays the compile on every cold start.

For each: wall time per phase (median over --repeat runs, the variants interleaved, the page
cache of the tree evicted before every run, so local disk reads are cold too); what one run
asked of the file system under the EFS folder, from strace (opens, path lookups, directory
listings, bytes read); bytes actually pulled from it including mmap page faults (mincore);
and an estimate of the extra time on EFS from published figures (see EFS_FIGURES).

Then per backend (measure_backends): a fresh process answering a PNG and then a heatmap for it,
XRAY_BACKEND=onnxruntime and =torch, with the model store and the stripped torch tree both
where EFS would be: what each reads from the models folder and from the torch tree.
"""
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Dict, List

from benchmarks import pagecache, syscalls
from lambda_sim.probe import base_python, probe_command, run_probe

REPO = Path(__file__).resolve().parent.parent
IMAGE = REPO.parent / "shared" / "fixtures" / "cxr" / "nih_00000001_000_cardiomegaly.png"
VARIANTS = ("naive", "naive-copied", "stripped", "archive", "archive-py", "archive-py-tmpfs")
TMPFS = Path("/dev/shm")
MIB = 1024 * 1024

# Amazon EFS user guide, "Amazon EFS performance specifications" (General Purpose mode,
# Regional): read latency "as low as 250 µs" (the page's earlier text, still in some of its
# translations, said "~1 ms"); maximum per-client throughput 500 MiB/s (Bursting and
# Provisioned; 1,500 MiB/s with Elastic throughput). Each open, uncached path lookup and directory
# read is taken as one round trip; the client's attribute cache is assumed to answer repeats.
EFS_FIGURES = {"latency_ms": (0.25, 1.0), "throughput_mib_s": 500}


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as head:
        return head.read(4) == b"\x7fELF"


def write_archive(tree: Path, archive: Path, link_elf: bool) -> None:
    """An uncompressed tar of `tree`; with link_elf, each ELF file becomes a symlink to its
    absolute path in `tree` (which stays on EFS)."""
    partial = archive.with_suffix(".partial")
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(partial, "w") as tar:
        for root, dirs, files in os.walk(tree):
            dirs.sort()
            for name in sorted(files):
                path = Path(root) / name
                arcname = path.relative_to(tree).as_posix()
                if link_elf and not path.is_symlink() and _is_elf(path):
                    info = tarfile.TarInfo(arcname)
                    info.type, info.linkname = tarfile.SYMTYPE, str(path)
                    tar.addfile(info)
                else:
                    tar.add(str(path), arcname=arcname, recursive=False)
    partial.replace(archive)


class Variant:
    def __init__(self, name: str, work: Path, naive: Path, stripped: Path) -> None:
        self.name, self.work = name, work
        self.efs_roots = []
        self.tmp = work / "tmp"
        if name.startswith("archive"):
            kind = name.replace("-tmpfs", "")
            self.efs = work / f"efs-{kind}"           # the archive alone in its EFS folder
            self.archive = self.efs / "packages.tar"
            if not self.archive.exists():
                write_archive(stripped, self.archive, link_elf=kind == "archive-py")
            if kind == "archive-py":
                self.efs_roots = [stripped]  # the shared libraries stay there
            if name.endswith("-tmpfs"):
                self.tmp = TMPFS / f"xray-benchmark-{os.getpid()}"
        elif name == "naive-copied":
            self.efs = work / "packages-naive-copied"
            if not self.efs.exists():  # a plain copy: new mtimes, as after many uploads
                shutil.copytree(naive, work / "copying", copy_function=shutil.copyfile)
                (work / "copying").rename(self.efs)
            self.archive = None
        else:
            self.efs = naive if name == "naive" else stripped
            self.archive = None
        self.efs_roots = [self.efs] + self.efs_roots

    def command(self, app_dir: Path, store: Path, run: int, record_opens=False) -> List[str]:
        if self.archive is None:
            return probe_command(app_dir, store, IMAGE, packages=self.efs,
                                 record_opens=record_opens)
        extract = self.tmp / f"packages-{run}"
        shutil.rmtree(extract, ignore_errors=True)
        extract.parent.mkdir(parents=True, exist_ok=True)
        return probe_command(app_dir, store, IMAGE, archive=self.archive, extract_to=extract,
                             record_opens=record_opens)

    def cleanup(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def efs_estimate_ms(round_trips: int, pulled_bytes: int) -> Dict[str, float]:
    transfer = pulled_bytes / (EFS_FIGURES["throughput_mib_s"] * MIB) * 1000
    return {f"{latency}ms": round(round_trips * latency + transfer)
            for latency in EFS_FIGURES["latency_ms"]}


def measure(app_dir: Path, store: Path, naive: Path, stripped: Path, work: Path,
            repeat: int = 5, trace: bool = True, log=print) -> Dict:
    from vendor_efs.runtime.build import stripped_by_rules, tree_stats
    variants = [Variant(name, work, naive, stripped) for name in VARIANTS
                if not name.endswith("-tmpfs") or TMPFS.is_dir()]
    runs: Dict[str, List[Dict]] = {v.name: [] for v in variants}
    pulled: Dict[str, List[int]] = {v.name: [] for v in variants}
    for index in range(repeat):
        for variant in (variants if index % 2 == 0 else variants[::-1]):
            for root in variant.efs_roots:
                pagecache.evict(root)
            result = run_probe(variant.command(app_dir, store, index))
            pulled[variant.name].append(sum(sum(pagecache.resident(root).values())
                                            for root in variant.efs_roots))
            runs[variant.name].append(result)
            log(f"cold-start: {variant.name:<9} run {index + 1}/{repeat}: "
                f"{result['ms']['to_first_answer']:.0f} ms to the first answer")
            variant.cleanup()
    reference = runs["stripped"][0]["probabilities"]
    report: Dict = {"image": IMAGE.name, "repeat": repeat, "python": base_python(),
                    "efs_figures": EFS_FIGURES, "variants": {}}
    for variant in variants:
        results = runs[variant.name]
        phases = {key: statistics.median(r["ms"][key] for r in results)
                  for key in results[0]["ms"] if results[0]["ms"][key] is not None}
        spread = [r["ms"]["to_first_answer"] for r in results]
        worst = max(abs(p - reference[label]) for r in results
                    for label, p in r["probabilities"].items())
        entry = {
            "tree": tree_stats(variant.efs),
            "ms_median": {k: round(v, 1) for k, v in phases.items()},
            "to_first_answer_ms_all": [round(v) for v in spread],
            "pulled_bytes_median": int(statistics.median(pulled[variant.name])),
            "read_bytes_io_median": int(statistics.median(r["io"]["rchar"] for r in results)),
            "modules": results[0]["modules"], "torch": results[0]["torch"],
            "max_probability_difference_vs_stripped": worst,
        }
        if trace and syscalls.available():
            stdout, traced = syscalls.run_traced(
                variant.command(app_dir, store, 99), [str(r) for r in variant.efs_roots],
                work / f"strace-{variant.name}.txt")
            variant.cleanup()
            entry["fs"] = traced.summary()
            entry["fs"]["unique_lookups"] = len(traced.touched)
            round_trips = (traced.under["opens"] + traced.under["listdirs"]
                           + len(traced.touched))
            entry["fs"]["round_trips"] = round_trips
            entry["efs_extra_ms_estimate"] = efs_estimate_ms(round_trips,
                                                             entry["pulled_bytes_median"])
            if variant.name == "naive":
                # every file a cold start touches (opens AND stats) must survive stripping
                entry["touched_but_stripped"] = sorted(
                    path for path in traced.touched if stripped_by_rules(path))
        report["variants"][variant.name] = entry
    return report


def table(report: Dict) -> str:
    names = list(report["variants"])
    v = report["variants"]

    def line(label, cell):
        return f"{label:<38}" + "".join(f"{cell(v[n]):>17}" for n in names)

    rows = [
        line("", lambda e: ""),
        f"{'cold start, ' + report['image'][:24]:<38}" + "".join(f"{n:>17}" for n in names),
        line("EFS folder size (MB)", lambda e: f"{e['tree']['bytes'] / 1e6:,.0f}"),
        line("EFS folder files", lambda e: f"{e['tree']['files']:,}"),
        line("to first answer, median (ms)", lambda e: f"{e['ms_median']['to_first_answer']:,.0f}"),
        line("  min-max (ms)", lambda e: f"{min(e['to_first_answer_ms_all']):,}-"
                                         f"{max(e['to_first_answer_ms_all']):,}"),
        line("  interpreter start", lambda e: f"{e['ms_median']['interpreter_start']:,.0f}"),
        line("  unpack archive to /tmp", lambda e: f"{e['ms_median'].get('extract', 0):,.0f}"),
        line("  import app (chalice)", lambda e: f"{e['ms_median']['import_app']:,.0f}"),
        line("  import torch", lambda e: f"{e['ms_median']['import_torch']:,.0f}"),
        line("  model load", lambda e: f"{e['ms_median']['model_load']:,.0f}"),
        line("  decode + preprocess",
             lambda e: f"{e['ms_median']['decode'] + e['ms_median']['preprocess']:,.0f}"),
        line("  first inference", lambda e: f"{e['ms_median']['inference']:,.0f}"),
        line("bytes pulled from EFS folder (MB)",
             lambda e: f"{e['pulled_bytes_median'] / 1e6:,.1f}"),
        line("bytes read() by process (MB)", lambda e: f"{e['read_bytes_io_median'] / 1e6:,.1f}"),
    ]
    if all("fs" in e for e in v.values()):
        rows += [
            line("EFS opens (failed)",
                 lambda e: f"{e['fs']['opens']:,} ({e['fs']['failed_opens']})"),
            line("EFS path lookups (unique paths)",
                 lambda e: f"{e['fs']['lookups']:,} ({e['fs']['unique_lookups']:,})"),
            line("EFS directory reads", lambda e: f"{e['fs']['listdirs']:,}"),
            line("EFS bytes read() (MB)", lambda e: f"{e['fs']['bytes_read'] / 1e6:,.1f}"),
            line("EFS round trips (opens+unique+dirs)", lambda e: f"{e['fs']['round_trips']:,}"),
        ]
        for latency in EFS_FIGURES["latency_ms"]:
            rows.append(line(f"+ on EFS at {latency} ms, "
                             f"{EFS_FIGURES['throughput_mib_s']} MiB/s (est.)",
                             lambda e, k=f"{latency}ms": f"+{e['efs_extra_ms_estimate'][k]:,}"))
    rows.append(line("max |p - p(stripped)|",
                     lambda e: f"{e['max_probability_difference_vs_stripped']:.1e}"))
    return "\n".join(rows)


# What each backend reads from EFS: a fresh Lambda-like process (lambda_sim/runner.py: `-I -S`,
# the app tree as /var/task) answering a PNG, then a heatmap for it, with the models and the
# stripped torch tree both on the "EFS" side, as a stage that ships both has them.
BACKENDS = ("onnxruntime", "torch")
RUNNER = REPO / "lambda_sim" / "runner.py"


def _backend_events() -> str:
    from lambda_sim.events import proxy_event
    body = IMAGE.read_bytes()
    return json.dumps([proxy_event("POST", "/xray", body, "image/png"),
                       proxy_event("POST", "/xray", body, "image/png",
                                   query={"heatmap": "top"})])


def _backend_command(app_dir: Path, answers: Path) -> List[str]:
    return [base_python(), "-I", "-S", "-B", str(RUNNER), str(app_dir), str(answers)]


def _backend_env(app_dir: Path, store: Path, packages: Path, backend: str) -> Dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(app_dir.parent),
            "LAMBDA_TASK_ROOT": str(app_dir), "AWS_LAMBDA_FUNCTION_NAME": "chest-xray-benchmark",
            "XRAY_EFS_ROOT": str(store), "XRAY_PACKAGES_PATH": str(packages),
            "XRAY_MODEL_PATH": str(store / "models" / "current"), "XRAY_BACKEND": backend}


def measure_backends(app_dir: Path, store: Path, packages: Path, work: Path,
                     repeat: int = 3, log=print) -> Dict:
    """Per backend: wall time of the whole process (median of `repeat`, page caches of both
    folders evicted first), bytes pulled from each folder (mincore), whether torch was imported
    after each request, and from one strace run the opens and bytes read() under each."""
    models = (store / "models").resolve()
    roots = {"models": models, "packages": packages.resolve()}
    events = _backend_events()
    report: Dict = {"image": IMAGE.name, "requests": ["POST /xray", "POST /xray?heatmap=top"],
                    "repeat": repeat, "backends": {}}
    for backend in BACKENDS:
        env = _backend_env(app_dir, store, packages, backend)
        answers = work / f"answers-{backend}.json"
        walls, pulled = [], {name: [] for name in roots}
        for index in range(repeat):
            for root in roots.values():
                pagecache.evict(root)
            started = time.perf_counter()
            done = subprocess.run(_backend_command(app_dir, answers), input=events, text=True,
                                  capture_output=True, env=env, cwd=app_dir)
            walls.append((time.perf_counter() - started) * 1000)
            if done.returncode != 0:
                raise RuntimeError(f"{backend} cold start failed:\n{done.stderr[-3000:]}")
            for name, root in roots.items():
                pulled[name].append(sum(pagecache.resident(root).values()))
            log(f"cold-start: backend {backend} run {index + 1}/{repeat}: {walls[-1]:.0f} ms "
                f"to both answers")
        result = json.loads(answers.read_text())
        statuses = [answer["statusCode"] for answer in result["answers"]]
        bodies = [json.loads(answer["body"]) for answer in result["answers"]]
        entry: Dict = {
            "statuses": statuses, "torch_imported": result["torch_imported"],
            "timings_ms": [body.get("timings_ms") for body in bodies],
            "wall_ms_median": round(statistics.median(walls)),
            "wall_ms_all": [round(w) for w in walls],
            "pulled_bytes_median": {name: int(statistics.median(v)) for name, v in pulled.items()},
        }
        if syscalls.available():
            for root in roots.values():
                pagecache.evict(root)
            trace_log = work / f"strace-backend-{backend}.txt"
            syscalls.run_traced(_backend_command(app_dir, answers), [str(models)], trace_log,
                                env=env, stdin=events)
            with open(trace_log, errors="replace") as lines:
                text = lines.readlines()
            entry["fs"] = {}
            for name, root in roots.items():
                traced = syscalls.parse(text, [str(root)])
                entry["fs"][name] = {**traced.summary(), "unique_lookups": len(traced.touched),
                                     "files": sorted(traced.touched)[:50] if name == "models"
                                     else len(traced.touched)}
        report["backends"][backend] = entry
    return report


def backends_table(report: Dict) -> str:
    names = list(report["backends"])
    v = report["backends"]

    def line(label, cell):
        return f"{label:<44}" + "".join(f"{cell(v[n]):>16}" for n in names)

    def fs(root, key, scale=1.0, fmt="{:,.0f}"):
        return lambda e: fmt.format(e["fs"][root][key] / scale) if "fs" in e else "-"

    rows = [
        "",
        f"{'cold start per backend: PNG, then ?heatmap':<44}" + "".join(f"{n:>16}" for n in names),
        line("statuses", lambda e: "/".join(str(s) for s in e["statuses"])),
        line("torch imported after (plain, heatmap)",
             lambda e: "/".join("yes" if t else "no" for t in e["torch_imported"])),
        line("process wall time, median (ms)", lambda e: f"{e['wall_ms_median']:,}"),
        line("  first request: model load (ms)",
             lambda e: f"{e['timings_ms'][0]['model_load']:,.0f}"),
        line("  first heatmap: heatmap step (ms)",
             lambda e: f"{e['timings_ms'][1]['heatmap']:,.0f}"),
        line("models/: files opened", fs("models", "opens")),
        line("models/: bytes read() (MB)", fs("models", "bytes_read", 1e6, "{:,.1f}")),
        line("models/: bytes pulled incl. mmap (MB)",
             lambda e: f"{e['pulled_bytes_median']['models'] / 1e6:,.1f}"),
        line("packages/ (torch): opens (failed)",
             lambda e: (f"{e['fs']['packages']['opens']:,} "
                        f"({e['fs']['packages']['failed_opens']:,})") if "fs" in e else "-"),
        line("packages/ (torch): path lookups", fs("packages", "lookups")),
        line("packages/ (torch): directory reads", fs("packages", "listdirs")),
        line("packages/ (torch): bytes read() (MB)",
             fs("packages", "bytes_read", 1e6, "{:,.1f}")),
        line("packages/ (torch): bytes pulled incl. mmap (MB)",
             lambda e: f"{e['pulled_bytes_median']['packages'] / 1e6:,.1f}"),
    ]
    return "\n".join(rows)

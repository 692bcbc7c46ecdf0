"""Builds the runtime payload the function imports from EFS (torch and what it imports), for
Lambda's platform and Python version, never this machine's:

    python -m vendor_efs.runtime --arch arm64|x86_64 [--find-links DIR] [--index-url URL]
        [--requirements FILE] [--out build/efs/packages] [--naive]

Steps: pip installs the pinned vendor_efs/runtime/requirements-efs-<arch>.txt (--no-deps, wheels
only, for manylinux up to the runtime's glibc) into a fresh folder; the glibc check refuses anything
that needs a newer glibc than the runtime has (wheel tags and the ELF files' symbol versions);
what inference never loads is stripped; everything is byte-compiled for the runtime's Python
with unchecked-hash pycs (no source stat or pyc write on a read-only EFS); size and file count
are reported and written to XRAY_RUNTIME.json in the tree. --naive instead installs what pip
resolves for the requirements (torch's declared dependencies included) and stops there: the
baseline the benchmarks compare against.

The target is Lambda's runtime for the Python this runs under (Chalice deploys the functions as
that Python): python3.13 is Amazon Linux 2023, glibc 2.34, so manylinux_2_17..2_34 wheels load
there (python3.11 was Amazon Linux 2, glibc 2.26: torch 2.5.1 was the last that fit). A tree for
another host (vendor_efs.runtime.host: the tests and benchmarks on this machine) is marked
NOT-FOR-LAMBDA in its XRAY_RUNTIME.json and in a file of that name; so is one built with
`--max-glibc` above the runtime's, which needs `--not-for-lambda`.
"""
import argparse
import compileall
import fnmatch
import importlib.util
import json
import os
import py_compile
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple
from urllib.parse import unquote

from chalicelib.inference.torch_import import RUNTIME_REPORT
from chalicelib.settings import PROJECT_ROOT
from vendor_efs.runtime.glibc import (
    LAMBDA_GLIBC,
    Version,
    check_tree,
    parse_version,
    show,
    this_python,
    wheel_requirement,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = PROJECT_ROOT / "build" / "efs" / "packages"
ARCHES = {"arm64": "aarch64", "x86_64": "x86_64"}  # Lambda's name -> the wheel tags' name
REPORT_FILE = RUNTIME_REPORT  # the build's report, kept in the tree (and on EFS)
NOT_FOR_LAMBDA = "NOT-FOR-LAMBDA"
HIGHEST_MANYLINUX_MINOR = 40


class BuildRefused(SystemExit):
    """The build would not load on the target runtime (or was asked wrongly): a clear message,
    exit status 2, and no tree at --out."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


# What inference never loads. Each rule was checked against the files a cold start opens
# (import torch + model load + first inference, traced by `python -m benchmarks cold-start
# --trace`, which also re-checks it on every run): none of these is opened.
STRIP_RULES: List[Tuple[str, str]] = [
    ("bin", "console scripts (torchrun, isympy, ...): Lambda runs none"),
    ("share", "man pages"),
    ("torch/include", "C/C++ and CUDA headers: read only when compiling extensions"),
    ("torch/share", "CMake files for C++ consumers (incl. Caffe2/CUDA find modules)"),
    ("torch/bin/*", "C++ test binaries, protoc (torch_shm_manager stays: import torch checks "
                    "that it exists)"),
    ("torch/test", "C++ unit-test binaries"),
    ("**/*.a", "static libraries (torch's, and the CUDA ones of a CUDA build)"),
    ("torch/lib/libjitbackend_test.so", "test-only shared library"),
    ("torch/lib/libtorchbind_test.so", "test-only shared library"),
    ("torch/lib/libbackend_with_compiler.so", "test-only shared library"),
    ("torch/lib/libaoti_custom_ops.so", "test-only shared library (AOTInductor tests)"),
    ("torch/lib/libshm_windows", "Windows sources"),
    ("torch/utils/benchmark", "torch.utils.benchmark (Timer, valgrind wrappers)"),
    ("caffe2", "caffe2 leftovers of older wheels"),
    ("torch/_inductor/codegen/cuda", "CUDA code generation (torch.compile on GPUs)"),
    ("torchgen/packaged", "code-generation templates (ATen/autograd .cpp/.cu/.yaml)"),
    ("functorch/examples", "examples"),
    ("**/tests", "test suites of the pure-Python packages"),
    ("torch/lib/libshm", "libshm's C++ headers (torch/lib/libshm.so stays)"),
    ("**/*.pyi", "type stubs"),
    ("**/*.h", "C/C++ headers (AOTInductor runtime): read only when compiling"),
    ("**/*.hpp", "C++ headers: read only when compiling"),
    ("**/*.cpp", "C++ sources (torch.compile/AOTInductor templates)"),
    ("**/*.cu", "CUDA sources"),
    ("**/*.cuh", "CUDA headers"),
    ("**/*.md", "documentation"),
    ("**/*.rst", "documentation"),
]
# Licences and metadata stay as installed; `import torch` stats torch_shm_manager (found by
# tracing stats, not just opens: an opens-only trace missed it) and refuses to start without it.
KEEP_ALWAYS = ("*.dist-info/*", "torch/bin/torch_shm_manager")


@dataclass
class Target:
    arch: str                 # Lambda's name: arm64 | x86_64
    python_version: str       # "3.13"
    glibc: Version            # the runtime's glibc
    allowed_glibc: Version    # what this build accepts (= glibc unless overridden)
    host_only: str = ""       # why the tree is for another host only, however it fits the glibc

    @property
    def machine(self) -> str:
        return ARCHES[self.arch]

    @property
    def for_lambda(self) -> bool:
        return self.allowed_glibc <= self.glibc and not self.host_only

    def pip_platforms(self) -> List[str]:
        """Compatible tags first (pip prefers earlier ones), then plain linux_<arch> (PyTorch's
        own index tags some CPU wheels so; the ELF check decides), then newer manylinux only
        so that the check can name what is too new instead of pip saying 'no version'."""
        machine = self.machine
        ok = [f"manylinux_2_{minor}_{machine}"
              for minor in range(self.allowed_glibc[1], 16, -1)]
        ok += [f"manylinux2014_{machine}", f"linux_{machine}"]
        newer = [f"manylinux_2_{minor}_{machine}"
                 for minor in range(self.allowed_glibc[1] + 1, HIGHEST_MANYLINUX_MINOR + 1)]
        return ok + newer


def configured_arch(project_dir: Path = PROJECT_ROOT, stage: Optional[str] = None) -> Optional[str]:
    """lambda_architecture from .chalice/config.json (the stage's, else the top level's), if
    the file can be read and sets it."""
    from deploy.chalice_files import read_config, stage_value
    from deploy.errors import DeployError
    try:
        config = read_config(project_dir)
    except DeployError:
        return None
    return stage_value(config, stage or "", "lambda_architecture") or None


def resolve_target(arch: Optional[str], python_version: str, max_glibc: Optional[str],
                   not_for_lambda: bool, stage: Optional[str] = None) -> Target:
    arch = arch or configured_arch(stage=stage)
    if arch is None:
        raise BuildRefused("no --arch given and .chalice/config.json sets no "
                           "lambda_architecture: pass --arch arm64 or --arch x86_64")
    if arch not in ARCHES:
        raise BuildRefused(f"unknown architecture {arch!r}: Lambda has arm64 and x86_64")
    if python_version not in LAMBDA_GLIBC:
        raise BuildRefused(f"no Lambda runtime python{python_version} known here (known: "
                           f"{', '.join(LAMBDA_GLIBC)})")
    glibc = LAMBDA_GLIBC[python_version]
    allowed = parse_version(max_glibc) if max_glibc else glibc
    if allowed > glibc and not not_for_lambda:
        raise BuildRefused(
            f"--max-glibc {show(allowed)} is above what Lambda's python{python_version} runtime "
            f"has (glibc {show(glibc)}): such a tree cannot load on Lambda. Add "
            f"--not-for-lambda to build it anyway for another host (e.g. tests).")
    return Target(arch, python_version, glibc, allowed)


def default_requirements(arch: str) -> Path:
    return HERE / f"requirements-efs-{arch}.txt"


def _pip_command(target: Target, requirements: Path, into: Path, naive: bool,
                 index_url: Optional[str], extra_index_urls: Sequence[str],
                 find_links: Sequence[str]) -> List[str]:
    """pip with nothing from this machine's pip configuration (--isolated: no config files, no
    PIP_* variables, so no local wheel folders or constraints unless passed here)."""
    command = [sys.executable, "-m", "pip", "install", "--isolated", "--no-input",
               "--disable-pip-version-check", "--target", str(into),
               "--python-version", target.python_version, "--implementation", "cp",
               "--abi", "cp" + target.python_version.replace(".", ""), "--abi", "abi3",
               "--abi", "none", "--only-binary=:all:", "-r", str(requirements)]
    for platform in target.pip_platforms():
        command += ["--platform", platform]
    if not naive:
        command += ["--no-deps", "--no-compile"]  # the pins are complete; we compile ourselves
    if index_url:
        command += ["--index-url", index_url]
    for url in extra_index_urls:
        command += ["--extra-index-url", url]
    for link in find_links:
        command += ["--find-links", link]
    return command


def _run_pip(command: List[str]) -> None:
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if done.returncode != 0:
        raise BuildRefused("pip could not install the payload:\n" + done.stdout[-4000:])


def preflight(target: Target, command: List[str], report_file: Path) -> List[str]:
    """pip's resolution without installing (--dry-run --report): the wheels it would take.
    Refuses before anything is unpacked if a wheel's tags declare a glibc above the allowed."""
    _run_pip(command + ["--dry-run", "--quiet", "--report", str(report_file)])
    chosen, offenders = [], []
    for item in json.loads(report_file.read_text()).get("install", []):
        name = unquote(item["download_info"]["url"].rsplit("/", 1)[-1])
        chosen.append(name)
        if name.endswith(".whl"):
            platforms = name[:-4].split("-")[-1].split(".")
            kind, needs = wheel_requirement(platforms)
            if needs is not None and needs > target.allowed_glibc:
                offenders.append(f"{name}: wheel tag {'.'.join(platforms)} declares glibc "
                                 f"{show(needs)}")
    if offenders:
        raise BuildRefused(_refusal(target, offenders))
    return chosen


def pip_install(target: Target, requirements: Path, into: Path, naive: bool,
                index_url: Optional[str], extra_index_urls: Sequence[str],
                find_links: Sequence[str], log=print) -> List[str]:
    command = _pip_command(target, requirements, into, naive, index_url, extra_index_urls,
                           find_links)
    log(f"vendor_efs.runtime: pip install for python{target.python_version} "
        f"{target.arch} (glibc <= {show(target.allowed_glibc)}) from "
        f"{index_url or 'PyPI'}{''.join(' + ' + link for link in find_links)}")
    try:
        chosen = preflight(target, command, into.with_name(into.name + ".pip-report.json"))
    except BuildRefused as refused:
        if "+cpu" in requirements.read_text() and not (index_url or find_links):
            refused.message += ("\nThe pins name a CPU-only build (+cpu): PyPI has none. Pass "
                                "PyTorch's CPU index (--index-url ... --extra-index-url "
                                "<PyPI>) or a folder of downloaded wheels (--find-links DIR).")
        raise
    log("vendor_efs.runtime: wheels: " + ", ".join(chosen))
    _run_pip(command)
    return chosen


def _matches(relative: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        name = pattern[3:]
        return fnmatch.fnmatchcase(relative.rsplit("/", 1)[-1], name)
    return fnmatch.fnmatchcase(relative, pattern)


def stripped_by_rules(relative: str, rules: Iterable[Tuple[str, str]] = STRIP_RULES) -> bool:
    """Whether a path (relative to the tree) is removed by the rules, itself or by a folder."""
    if any(fnmatch.fnmatchcase(relative, keep) for keep in KEEP_ALWAYS):
        return False
    parts = relative.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return any(_matches(prefix, pattern) for prefix in prefixes for pattern, _ in rules)


def strip_tree(tree: Path, rules: Iterable[Tuple[str, str]] = STRIP_RULES
               ) -> Tuple[Dict[str, Dict[str, object]], List[str]]:
    """Deletes what the rules name; returns {rule: files, bytes, reason} and every path removed
    (relative, for checking against what a cold start opens)."""
    rules = list(rules)
    summary = {pattern: {"files": 0, "bytes": 0, "reason": reason} for pattern, reason in rules}
    removed: List[str] = []
    for root, dirs, files in os.walk(tree):
        base = Path(root)
        for name in sorted(dirs) + sorted(files):
            path = base / name
            relative = path.relative_to(tree).as_posix()
            if any(fnmatch.fnmatchcase(relative, keep) for keep in KEEP_ALWAYS):
                continue
            rule = next((p for p, _ in rules if _matches(relative, p)), None)
            if rule is None:
                continue
            files_in = [path] if not path.is_dir() or path.is_symlink() else \
                [p for p in path.rglob("*") if p.is_file() or p.is_symlink()]
            summary[rule]["files"] += len(files_in)
            summary[rule]["bytes"] += sum(p.lstat().st_size for p in files_in)
            removed += [p.relative_to(tree).as_posix() for p in files_in]
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
                dirs.remove(name)
            else:
                path.unlink()
    return summary, removed


def compile_tree(tree: Path, python_version: str) -> Dict[str, int]:
    """Unchecked-hash pycs: the import system reads the pyc without checking the source's
    mtime or hash (and never tries to write a pyc), so a read-only EFS costs no extra reads,
    and copies that change mtimes do not invalidate anything."""
    running = this_python()
    if running != python_version:
        raise BuildRefused(f"byte-compiling for python{python_version} needs that interpreter; "
                           f"this is python{running} (run it from the project's .venv)")
    for stale in list(tree.rglob("__pycache__")):
        shutil.rmtree(stale)
    compileall.compile_dir(
        str(tree), quiet=2, workers=0, optimize=-1, ddir=None,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    sources = sorted(tree.rglob("*.py"))
    # Sources this Python cannot compile (e.g. torch's py312_intrinsics.py) cannot be imported
    # by it either; they stay as they are, without a pyc.
    failed = [s.relative_to(tree).as_posix() for s in sources
              if not Path(importlib.util.cache_from_source(str(s))).is_file()]
    return {"sources": len(sources), "pycs": sum(1 for _ in tree.rglob("*.pyc")),
            "not_compilable": failed}


def tree_stats(tree: Path) -> Dict[str, int]:
    files = dirs = size = blocks = 0
    for root, dirnames, filenames in os.walk(tree):
        dirs += len(dirnames)
        for name in filenames:
            info = os.lstat(os.path.join(root, name))
            files += 1
            size += info.st_size
            blocks += info.st_blocks * 512
    return {"files": files, "dirs": dirs, "bytes": size, "disk_bytes": blocks}


def installed_versions(tree: Path) -> Dict[str, str]:
    versions = {}
    for info in sorted(tree.glob("*.dist-info")):
        name, _, version = info.name[:-len(".dist-info")].partition("-")
        versions[name] = version
    return versions


def build(target: Target, out: Path, requirements: Path, naive: bool = False,
          index_url: Optional[str] = None, extra_index_urls: Sequence[str] = (),
          find_links: Sequence[str] = (), log=print) -> Dict:
    started = time.perf_counter()
    if not requirements.is_file():
        raise BuildRefused(f"no requirements file {requirements}")
    out = out.resolve()
    staging = out.with_name(out.name + f".building-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.parent.mkdir(parents=True, exist_ok=True)
    try:
        wheels = pip_install(target, requirements, staging, naive, index_url,
                             extra_index_urls, find_links, log)
        installed = tree_stats(staging)
        report: Dict = {
            "format": "xray-efs-runtime/1", "arch": target.arch,
            "python": target.python_version, "runtime_glibc": show(target.glibc),
            "for_lambda": target.for_lambda, "naive": naive,
            "requirements": requirements.name, "wheels": wheels,
            "versions": installed_versions(staging),
            "installed": installed,
        }
        removed: List[str] = []
        if not naive:
            report["strip"], removed = strip_tree(staging)
            report["stripped"] = tree_stats(staging)
        glibc = check_tree(staging, target.allowed_glibc)
        report["glibc"] = glibc.as_dict()
        if not glibc.ok:
            raise BuildRefused(_refusal(target, glibc.offenders))
        if not naive:
            report["compiled"] = compile_tree(staging, target.python_version)
        if target.host_only:
            (staging / NOT_FOR_LAMBDA).write_text(
                f"Built for another host: {target.host_only}. Do not ship this.\n")
        elif not target.for_lambda:
            (staging / NOT_FOR_LAMBDA).write_text(
                f"Built with --not-for-lambda: needs glibc {show(glibc.elf_max)}, Lambda's "
                f"python{target.python_version} has {show(target.glibc)}. Do not ship this.\n")
        report["final"] = tree_stats(staging)
        report["build_seconds"] = round(time.perf_counter() - started, 1)
        (staging / REPORT_FILE).write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        staging.with_name(staging.name + ".pip-report.json").unlink(missing_ok=True)
    if removed:
        out.with_name(out.name + ".removed.txt").write_text("\n".join(removed) + "\n")
    return report


def _refusal(target: Target, offenders: List[str]) -> str:
    shown = "\n  ".join(offenders[:12]) + ("\n  ..." if len(offenders) > 12 else "")
    return (
        f"REFUSED: this payload needs a newer glibc than Lambda's python{target.python_version} "
        f"runtime has (glibc {show(target.glibc)}"
        f"{', Amazon Linux 2' if target.glibc == (2, 26) else ''}"
        f"{', Amazon Linux 2023' if target.glibc == (2, 34) else ''}"
        f"); on Lambda its import would fail with \"version `GLIBC_...' not found\":\n  {shown}\n"
        f"Use wheels built for manylinux2014 / manylinux_2_17..2_{target.glibc[1]}"
        f"{_glibc_hint(target)}.\n"
        f"To build this tree for another host anyway (tests), pass --max-glibc X.Y "
        f"--not-for-lambda.")


def _glibc_hint(target: Target) -> str:
    if target.glibc < (2, 28):
        return (" (torch 2.5.1 is the last release with such wheels: aarch64 on PyPI, x86_64 "
                "CPU-only on the PyTorch CPU index as linux_x86_64), or a runtime with a newer "
                "glibc (python3.13: 2.34)")
    return ""


def format_report(report: Dict) -> str:
    def row(label: str, stats: Dict[str, int]) -> str:
        return (f"  {label:<28}{stats['files']:>8,} files {stats['bytes'] / 1e6:>9.1f} MB "
                f"({stats['disk_bytes'] / 1e6:.1f} MB on disk)")
    lines = [f"payload for python{report['python']} {report['arch']}: "
             + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
             row("installed" + (" (naive)" if report["naive"] else ""), report["installed"])]
    if "strip" in report:
        for pattern, rule in report["strip"].items():
            if rule["files"]:
                lines.append(f"    - {pattern:<36}{rule['files']:>7,} files "
                             f"{rule['bytes'] / 1e6:>8.1f} MB  {rule['reason']}")
        lines.append(row("stripped", report["stripped"]))
        compiled = report["compiled"]
        lines.append(row(f"+ {compiled['pycs']:,} unchecked-hash pycs", report["final"]))
    glibc = report["glibc"]
    lines.append(f"  glibc: needs {glibc['elf_max_glibc']} (ELF symbol versions), runtime has "
                 f"{glibc['target_glibc'] if report['for_lambda'] else report['runtime_glibc']}")
    if not report["for_lambda"]:
        lines.append(f"  *** {NOT_FOR_LAMBDA}: built for another host; do not ship this tree "
                     f"to Lambda's python{report['python']} ***")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--arch", choices=sorted(ARCHES),
                        help="Lambda architecture (default: lambda_architecture in "
                             ".chalice/config.json)")
    parser.add_argument("--stage", help="read lambda_architecture from this Chalice stage too")
    parser.add_argument("--python-version", default=this_python(),
                        help="Lambda runtime's Python (default: this one, %(default)s, as Chalice "
                             "deploys it)")
    parser.add_argument("--requirements", type=Path,
                        help="pinned requirements (default: "
                             "vendor_efs/runtime/requirements-efs-ARCH.txt)")
    parser.add_argument("--index-url", help="package index (default: PyPI)")
    parser.add_argument("--extra-index-url", action="append", default=[])
    parser.add_argument("--find-links", action="append", default=[],
                        help="a folder (or URL) of wheels, e.g. a downloaded torch CPU wheel")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help="the payload tree to write (default: build/efs/packages)")
    parser.add_argument("--naive", action="store_true",
                        help="baseline: pip's resolution and output as they are, no stripping")
    parser.add_argument("--max-glibc", help="accept wheels up to this glibc (above the "
                                            "runtime's only with --not-for-lambda)")
    parser.add_argument("--not-for-lambda", action="store_true",
                        help="DANGER: allow a tree that cannot load on Lambda (testing only)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        target = resolve_target(args.arch, args.python_version, args.max_glibc,
                                args.not_for_lambda, args.stage)
        if not target.for_lambda:
            print(f"vendor_efs.runtime: *** --not-for-lambda: accepting glibc up to "
                  f"{show(target.allowed_glibc)}; the tree will NOT load on Lambda's "
                  f"python{target.python_version} (glibc {show(target.glibc)}) ***",
                  file=sys.stderr)
        report = build(target, args.out, args.requirements or default_requirements(target.arch),
                       naive=args.naive, index_url=args.index_url,
                       extra_index_urls=args.extra_index_url, find_links=args.find_links,
                       log=lambda m: print(m, file=sys.stderr))
    except BuildRefused as refused:
        print(f"vendor_efs.runtime: {refused.message}", file=sys.stderr)
        raise
    print(json.dumps(report, indent=1) if args.json else format_report(report))
    print(f"vendor_efs.runtime: wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()

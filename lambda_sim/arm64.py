"""An arm64 interpreter on an x86_64 machine, for running the arm64 deployment package the way
runner.py runs the x86_64 one: Debian's arm64 CPython of the runtime's version, with the
libraries it and the zip's wheels link against (glibc, libstdc++), unpacked from Debian's
packages into a root of its own and run through Debian's qemu-user-static:

    .venv/bin/python -m lambda_sim.arm64            # builds build/arm64-python/ once
    qemu-aarch64-static -cpu neoverse-n1 -L build/arm64-python/root \
        build/arm64-python/root/usr/bin/python3.13

Why Debian's packages: they come from a registry CI reaches (no toolchain build, no GitHub), are
signed (apt checks them against this machine's Debian archive keyring), and trixie is the
release whose python3.13 matches Lambda's python3.13 runtime. apt runs with a configuration of
its own (sources, package lists and downloads under build/arm64-python/apt), so this machine's
apt sources, lists and package state are neither used nor changed, and nothing needs root. apt
resolves the closure of roots(); the root is unpacked from those packages only (dpkg-deb -x: no
maintainer scripts) and reused while its stamp (the package list with versions) is present;
concurrent builds (two test sessions) take turns on a lock.

The emulated CPU is a Neoverse N1, the Graviton2 core Lambda's arm64 functions run on, not
qemu's default "max": on qemu 7.2 (Debian 12's) "max" offers SVE, and numpy's bundled OpenBLAS
then computes garbage (a float32 matmul divides by zero). And qemu passes this machine's own
/proc/cpuinfo through, where onnxruntime's CPU detection (the cpuinfo library) finds no ARM
processor and dereferences a null pointer as its extension module loads. qemu's -L prefix
serves any absolute path that exists inside the root in place of the machine's, so the root
holds proc/cpuinfo and sys/devices/system/cpu/{possible,present} describing one N1 core: the
function sees one CPU, whatever this machine has.

What this root is not: Amazon Linux. Its glibc is Debian's, newer than Lambda's, so a run here
proves that the zip's native code loads and computes on aarch64, not that it fits Lambda's glibc
(tests/deploy/test_package.py checks every ELF file's symbol versions for that). Under emulation
a run is many times slower than on an arm64 CPU: no timing from it means anything.
"""
import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional

from chalicelib.settings import PROJECT_ROOT
from vendor_efs.runtime.glibc import this_python

MIRROR = "http://deb.debian.org/debian"
SUITE = "trixie"  # Debian 13: python3.13
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
QEMU = "qemu-aarch64-static"
CPU = "neoverse-n1"  # Graviton2
# /proc/cpuinfo of one Graviton2 core, as its kernel prints it
CPUINFO = ("processor\t: 0\nBogoMIPS\t: 243.75\nFeatures\t: fp asimd evtstrm aes pmull sha1 "
           "sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs\n"
           "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x3\n"
           "CPU part\t: 0xd0c\nCPU revision\t: 1\n\n")
HOME = PROJECT_ROOT / "build" / "arm64-python"
STAMP = "packages.json"


def roots(python: str) -> List[str]:
    """The packages asked for; apt adds their dependencies. libstdc++6: onnxruntime's
    extension module links it (manylinux wheels bundle what they need beyond glibc and it)."""
    return [f"python{python}-minimal", f"libpython{python}-stdlib", "libstdc++6"]


@dataclass(frozen=True)
class Arm64Python:
    root: Path     # the unpacked Debian root: qemu's -L prefix (the ELF interpreter is in it)
    python: Path   # root/usr/bin/python3.x
    qemu: str

    def command(self, *args: str) -> List[str]:
        return [self.qemu, "-cpu", CPU, "-L", str(self.root), str(self.python), *args]


def qemu_command() -> str:
    found = shutil.which(QEMU)
    if not found:
        raise RuntimeError(f"{QEMU} not found: install Debian's qemu-user-static "
                           "(scripts/setup --with-test-tools does)")
    return found


def _apt_config(apt: Path) -> Path:
    """A configuration that points apt at its own folders: Debian's arm64 packages of SUITE."""
    for folder in ("etc/sources.list.d", "etc/preferences.d", "etc/apt.conf.d", "lists/partial",
                   "cache/archives/partial"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "status").touch()  # nothing installed: apt resolves the whole closure
    (apt / "etc" / "sources.list").write_text(
        f"deb [arch=arm64 signed-by={KEYRING}] {MIRROR} {SUITE} main\n", encoding="utf-8")
    config = apt / "apt.conf"
    config.write_text("\n".join([
        'APT::Architecture "arm64";', 'APT::Architectures { "arm64"; };',
        'APT::Install-Recommends "false";', 'Acquire::Languages "none";',
        'Debug::NoLocking "true";',
        f'Dir::Etc "{apt / "etc"}";', f'Dir::Etc::sourcelist "{apt / "etc" / "sources.list"}";',
        f'Dir::Etc::sourceparts "{apt / "etc" / "sources.list.d"}";',
        f'Dir::Etc::parts "{apt / "etc" / "apt.conf.d"}";',
        f'Dir::Etc::preferencesparts "{apt / "etc" / "preferences.d"}";',
        f'Dir::State "{apt}";', f'Dir::State::lists "{apt / "lists"}";',
        f'Dir::State::status "{apt / "status"}";', f'Dir::Cache "{apt / "cache"}";', ""]),
        encoding="utf-8")
    return config


def _apt(config: Path, *args: str, cwd: Optional[Path] = None) -> str:
    env = {**os.environ, "APT_CONFIG": str(config), "DEBIAN_FRONTEND": "noninteractive",
           "LC_ALL": "C"}
    done = subprocess.run(["apt-get", "-q", *args], capture_output=True, text=True, env=env,
                          cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"apt-get {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def resolve(config: Path, python: str) -> List[str]:
    """name=version of every package the root needs, as apt resolves it (a simulated install
    on an empty system)."""
    said = _apt(config, "install", "--simulate", *roots(python))
    # "Inst libc6 (2.41-12 Debian:13.1/stable [arm64])"
    found = [line.split()[1] + "=" + line.split()[2].lstrip("(")
             for line in said.splitlines() if line.startswith("Inst ")]
    if not found:
        raise RuntimeError(f"apt resolved nothing for {roots(python)}:\n{said}")
    return sorted(found)


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def build(home: Path = HOME, python: Optional[str] = None,
          log: Callable[[str], None] = _stderr) -> Arm64Python:
    """The root, unpacked once into home/root (reused while home/root/STAMP exists)."""
    python = python or this_python()
    qemu = qemu_command()
    root = home / "root"
    found = Arm64Python(root=root, python=root / "usr" / "bin" / f"python{python}", qemu=qemu)
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ((root / STAMP).is_file() and found.python.is_file()):
            _unpack(home, root, python, log)
    if not found.python.is_file():
        raise RuntimeError(f"the unpacked packages hold no {found.python}")
    return found


def _unpack(home: Path, root: Path, python: str, log: Callable[[str], None]) -> None:
    if not KEYRING.is_file():
        raise RuntimeError(f"{KEYRING} not found: apt cannot check Debian's signatures "
                           "(install debian-archive-keyring)")
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        raise RuntimeError("apt-get and dpkg-deb are needed to fetch Debian's arm64 packages")
    config = _apt_config(home / "apt")
    log(f"arm64 python: reading Debian {SUITE}'s arm64 package list")
    _apt(config, "update")
    packages = resolve(config, python)
    debs = home / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    log(f"arm64 python: downloading {len(packages)} packages")
    _apt(config, "download", *packages, cwd=debs)
    partial = Path(tempfile.mkdtemp(prefix="root.", dir=home))
    try:
        for deb in sorted(debs.glob("*.deb")):
            subprocess.run(["dpkg-deb", "-x", str(deb), str(partial)], check=True)
        # merged /usr (trixie's packages hold files under usr/ only): the ELF interpreter
        # python asks for is /lib/ld-linux-aarch64.so.1
        for link in ("lib", "bin", "sbin"):
            if not (partial / link).exists():
                (partial / link).symlink_to(f"usr/{link}")
        (partial / "proc").mkdir()
        (partial / "proc" / "cpuinfo").write_text(CPUINFO, encoding="ascii")
        cpus = partial / "sys" / "devices" / "system" / "cpu"
        cpus.mkdir(parents=True)
        for name in ("possible", "present"):
            (cpus / name).write_text("0\n", encoding="ascii")
        (partial / STAMP).write_text(json.dumps({"suite": SUITE, "packages": packages},
                                                indent=1) + "\n", encoding="utf-8")
        if root.exists():
            shutil.rmtree(root)
        partial.rename(root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(home / "apt")  # its package lists, larger than the root: not needed again
    shutil.rmtree(debs, ignore_errors=True)


def main() -> int:
    arm64 = build()
    done = subprocess.run(arm64.command("-I", "-S", "-c", "import platform, sys; "
                                        "print(sys.version.split()[0], platform.machine(), "
                                        "*platform.libc_ver())"))
    print(" ".join(arm64.command()))
    return done.returncode


if __name__ == "__main__":
    raise SystemExit(main())

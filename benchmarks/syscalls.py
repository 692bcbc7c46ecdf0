"""What a process asked of the file system, from `strace -f -y` output: how many opens, path
lookups (stat/access/readlink, found or not), directory listings and bytes read, in total and
under one folder (the EFS tree). On NFS (EFS) each open and each uncached lookup is a round trip
to the server; reads are bounded by throughput."""
import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

STRACE = shutil.which("strace") or "/usr/bin/strace"
TRACED = "%file,read,pread64,getdents64,fstat,mmap"
OPENS = {"open", "openat", "openat2", "creat"}
LOOKUPS = {"stat", "lstat", "newfstatat", "fstatat64", "statx", "access", "faccessat",
           "faccessat2", "readlink", "readlinkat"}
LINE = re.compile(r"^(\d+)\s+(\w+)\((.*)\)\s+=\s+(-?\d+|\?)")
PATH_ARG = re.compile(r'"((?:[^"\\]|\\.)*)"')
FD_PATH = re.compile(r"^-?\d+<([^>]*)>")


def available() -> bool:
    return Path(STRACE).exists()


@dataclass
class Trace:
    root: str
    calls: Counter = field(default_factory=Counter)       # syscall -> count, everywhere
    under: Counter = field(default_factory=Counter)       # "opens", "lookups", ... under root
    total: Counter = field(default_factory=Counter)       # the same, everywhere
    bytes_read_under: int = 0
    bytes_read_total: int = 0
    touched: Set[str] = field(default_factory=set)        # paths under root, relative

    def summary(self) -> Dict[str, int]:
        return {
            "opens": self.under["opens"], "failed_opens": self.under["failed_opens"],
            "lookups": self.under["lookups"], "failed_lookups": self.under["failed_lookups"],
            "listdirs": self.under["listdirs"], "mmaps": self.under["mmaps"],
            "bytes_read": self.bytes_read_under, "files_touched": len(self.touched),
            "all_opens": self.total["opens"], "all_lookups": self.total["lookups"],
            "all_bytes_read": self.bytes_read_total,
        }

    def round_trips(self) -> int:
        """Calls that reach the NFS server on a cold client (opens, lookups incl. misses, and
        directory reads); an upper bound, since the client caches attributes."""
        return self.under["opens"] + self.under["lookups"] + self.under["listdirs"]


def _fd_path(args: str) -> Optional[str]:
    match = FD_PATH.match(args)
    return match.group(1) if match else None


def parse(lines: Sequence[str], root) -> Trace:
    """root: a folder, or several (all counted as 'under')."""
    roots = tuple(r.rstrip("/") + "/" for r in ([root] if isinstance(root, str) else root))
    trace = Trace(root=",".join(roots))

    def under(path: str) -> Optional[str]:
        for prefix in roots:
            if path.startswith(prefix) or path + "/" == prefix:
                return path[len(prefix):] if len(roots) == 1 else path
        return None

    pending: Dict[str, str] = {}
    for raw in lines:
        raw = raw.rstrip("\n")
        if raw.endswith("<unfinished ...>"):
            pid = raw.split(None, 1)[0]
            pending[pid] = raw[: -len("<unfinished ...>")]
            continue
        resumed = re.match(r"^(\d+)\s+<\.\.\. \w+ resumed>(.*)$", raw)
        if resumed:
            pid = resumed.group(1)
            raw = pending.pop(pid, "") + resumed.group(2)
        match = LINE.match(raw)
        if not match:
            continue
        _, name, args, result = match.groups()
        failed = result.startswith("-") or result == "?"
        trace.calls[name] += 1
        kind = None
        path = None
        if name in OPENS or name in LOOKUPS:
            kind = "opens" if name in OPENS else "lookups"
            quoted = PATH_ARG.search(args)
            path = quoted.group(1) if quoted else None
            if path == "" and name in LOOKUPS:  # fstatat(fd, "", AT_EMPTY_PATH) is an fstat
                continue
            if path is not None and not path.startswith("/"):
                base = _fd_path(args)
                path = f"{base}/{path}" if base else path
        elif name == "getdents64":
            kind, path = "listdirs", _fd_path(args)
        elif name in ("read", "pread64"):
            path = _fd_path(args)
            count = 0 if failed else int(result)
            trace.bytes_read_total += count
            if path and under(path) is not None:
                trace.bytes_read_under += count
            continue
        elif name == "mmap":
            fd = re.search(r", (\d+<[^>]*>), ", args)
            path = _fd_path(fd.group(1)) if fd else None
            if path and under(path) is not None:
                trace.under["mmaps"] += 1
            continue
        if kind is None or path is None:
            continue
        trace.total[kind] += 1
        relative = under(path)
        if relative is not None:
            trace.under[kind] += 1
            if failed:
                trace.under["failed_" + kind] += 1
            elif kind != "listdirs":
                trace.touched.add(relative)
    return trace


def run_traced(command: List[str], root, log: Path, env=None, stdin: Optional[str] = None
               ) -> tuple:
    """Runs command under strace (stdin: text for its standard input); returns (its stdout,
    the parsed Trace)."""
    done = subprocess.run([STRACE, "-f", "-qq", "-y", "-s", "0", "-e", f"trace={TRACED}",
                           "-o", str(log)] + command, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, input=stdin)
    if done.returncode != 0:
        raise RuntimeError(f"traced run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    with open(log, errors="replace") as lines:
        return done.stdout, parse(lines, root)

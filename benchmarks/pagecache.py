"""How many bytes of a folder's files a process actually pulled from storage, mmap page faults
included (reads of shared libraries are mostly page faults, which /proc/self/io misses):
evict the folder's files from the page cache, run, then count resident pages with mincore(2).
Includes the kernel's readahead, as an NFS client would. Linux only."""
import ctypes
import os
from pathlib import Path
from typing import Dict

PAGE = os.sysconf("SC_PAGE_SIZE")
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                       ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
PROT_READ, MAP_SHARED = 1, 1


def _files(tree: Path):
    for root, _, names in os.walk(tree):
        for name in names:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                yield path


def evict(tree: Path) -> None:
    for path in _files(tree):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def resident_bytes(path: str) -> int:
    size = os.path.getsize(path)
    if size == 0:
        return 0
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, PROT_READ, MAP_SHARED, fd, 0)
        if address in (None, ctypes.c_void_p(-1).value):
            return 0
        pages = (size + PAGE - 1) // PAGE
        vector = (ctypes.c_ubyte * pages)()
        _libc.mincore(address, size, vector)
        _libc.munmap(address, size)
    finally:
        os.close(fd)
    return sum(byte & 1 for byte in bytes(vector)) * PAGE


def resident(tree: Path) -> Dict[str, int]:
    """{relative path: resident bytes} for the files with any page in memory."""
    found = {}
    for path in _files(tree):
        count = resident_bytes(path)
        if count:
            found[os.path.relpath(path, tree)] = count
    return found

"""Which glibc a built payload tree needs, from two sources that must both fit the target runtime:

- declared: the platform tags of each installed wheel (`*.dist-info/WHEEL`): manylinux2014 means
  glibc 2.17, manylinux_2_28 means 2.28; a wheel fits if any one of its tags fits;
- actual: the GLIBC_x.y symbol versions every ELF file in the tree asks for (its .gnu.version_r
  section), which is what the dynamic loader checks ("version `GLIBC_2.27' not found").

Lambda's Python runtimes: python3.9-3.11 run on Amazon Linux 2 (glibc 2.26), python3.12+ on
Amazon Linux 2023 (glibc 2.34). Chalice makes the same assumption when it picks wheels, and
deploys the functions as the Python it runs under: this_python().
"""
import re
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

Version = Tuple[int, int]

LAMBDA_GLIBC: Dict[str, Version] = {
    "3.9": (2, 26), "3.10": (2, 26), "3.11": (2, 26),  # Amazon Linux 2
    "3.12": (2, 34), "3.13": (2, 34),                  # Amazon Linux 2023
}
LEGACY_MANYLINUX: Dict[str, Version] = {
    "manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
SHT_GNU_VERNEED = 0x6FFFFFFE


def this_python() -> str:
    """The running interpreter's version, e.g. "3.13": Lambda's runtime when Chalice deploys
    from this environment (the project's .venv)."""
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def parse_version(text: str) -> Version:
    match = re.fullmatch(r"(\d+)\.(\d+)", text.strip())
    if not match:
        raise ValueError(f"not a glibc version: {text!r} (expected e.g. 2.26)")
    return int(match.group(1)), int(match.group(2))


def show(version: Optional[Version]) -> str:
    return "none" if version is None else f"{version[0]}.{version[1]}"


def tag_glibc(platform_tag: str) -> Tuple[str, Optional[Version]]:
    """('any' | 'manylinux' | 'unknown' | 'foreign', glibc) of one wheel platform tag."""
    if platform_tag == "any":
        return "any", None
    for legacy, version in LEGACY_MANYLINUX.items():
        if platform_tag.startswith(legacy + "_"):
            return "manylinux", version
    match = re.match(r"manylinux_(\d+)_(\d+)_", platform_tag)
    if match:
        return "manylinux", (int(match.group(1)), int(match.group(2)))
    if platform_tag.startswith("linux_"):
        return "unknown", None  # e.g. PyTorch's own index: only the ELF check can tell
    return "foreign", None       # musllinux, macosx, win: never loads on Lambda


def wheel_requirement(tags: Iterable[str]) -> Tuple[str, Optional[Version]]:
    """A wheel installs if any one of its tags fits: the lowest glibc among its tags."""
    kinds = [tag_glibc(tag.rsplit("-", 1)[-1]) for tag in tags]
    if any(kind == "any" for kind, _ in kinds):
        return "any", None
    versions = [v for kind, v in kinds if kind == "manylinux" and v is not None]
    if versions:
        return "manylinux", min(versions)
    if any(kind == "unknown" for kind, _ in kinds):
        return "unknown", None
    return "foreign", None


def elf_symbol_versions(path: Path) -> Dict[str, List[str]]:
    """{needed library: [symbol versions]} from an ELF file's .gnu.version_r; {} if not ELF."""
    with open(path, "rb") as elf:
        ident = elf.read(16)
        if len(ident) < 16 or ident[:4] != b"\x7fELF":
            return {}
        is64, endian = ident[4] == 2, "<" if ident[5] == 1 else ">"
        if is64:
            elf.seek(0x28)
            (shoff,) = struct.unpack(endian + "Q", elf.read(8))
            elf.seek(0x3A)
        else:
            elf.seek(0x20)
            (shoff,) = struct.unpack(endian + "I", elf.read(4))
            elf.seek(0x2E)
        shentsize, shnum, _ = struct.unpack(endian + "HHH", elf.read(6))
        if not shoff or not shnum:
            return {}
        elf.seek(shoff)
        table = elf.read(shentsize * shnum)
        layout = endian + ("IIQQQQIIQQ" if is64 else "IIIIIIIIII")
        sections = [struct.unpack_from(layout, table, i * shentsize) for i in range(shnum)]
        found: Dict[str, List[str]] = {}
        for section in sections:
            sh_type, offset, size, link, count = (section[1], section[4], section[5],
                                                  section[6], section[7])
            if sh_type != SHT_GNU_VERNEED:
                continue
            strings_offset, strings_size = sections[link][4], sections[link][5]
            elf.seek(strings_offset)
            strings = elf.read(strings_size)
            elf.seek(offset)
            data = elf.read(size)

            def text(index: int) -> str:
                return strings[index:strings.index(b"\0", index)].decode("ascii", "replace")

            entry = 0
            for _ in range(count):
                _, aux_count, file_name, aux, next_entry = struct.unpack_from(
                    endian + "HHIII", data, entry)
                names, at = found.setdefault(text(file_name), []), entry + aux
                for _ in range(aux_count):
                    _, _, _, name, next_aux = struct.unpack_from(endian + "IHHII", data, at)
                    names.append(text(name))
                    at += next_aux
                if not next_entry:
                    break
                entry += next_entry
        return found


def max_versions(needs: Dict[str, List[str]], prefix: str) -> Optional[Tuple[int, ...]]:
    best = None
    for names in needs.values():
        for name in names:
            if name.startswith(prefix) and re.fullmatch(r"[\d.]+", name[len(prefix):]):
                version = tuple(int(part) for part in name[len(prefix):].split("."))
                best = version if best is None or version > best else best
    return best


@dataclass
class GlibcReport:
    target: Version
    wheels: Dict[str, Dict[str, object]] = field(default_factory=dict)
    elf_max: Optional[Version] = None
    elf_files: int = 0
    offenders: List[str] = field(default_factory=list)  # human-readable, one per problem
    glibcxx_max: Optional[str] = None

    @property
    def ok(self) -> bool:
        return not self.offenders

    def as_dict(self) -> Dict[str, object]:
        return {"target_glibc": show(self.target), "elf_max_glibc": show(self.elf_max),
                "elf_files": self.elf_files, "glibcxx_max": self.glibcxx_max,
                "wheels": self.wheels, "offenders": self.offenders}


def check_tree(tree: Path, target: Version) -> GlibcReport:
    """Everything in `tree` that needs a newer glibc than `target` (declared or actual)."""
    report = GlibcReport(target=target)
    for wheel_file in sorted(tree.glob("*.dist-info/WHEEL")):
        tags = [line.split(":", 1)[1].strip() for line in wheel_file.read_text().splitlines()
                if line.startswith("Tag:")]
        kind, needs = wheel_requirement(tags)
        name = wheel_file.parent.name[:-len(".dist-info")]
        report.wheels[name] = {"tags": tags, "glibc": show(needs), "kind": kind}
        if kind == "foreign":
            report.offenders.append(f"{name}: wheel tags {', '.join(tags)} are not for Linux "
                                    "glibc at all")
        elif needs is not None and needs > target:
            report.offenders.append(f"{name}: wheel tag {', '.join(tags)} declares glibc "
                                    f"{show(needs)}")
    glibcxx = None
    for path in sorted(tree.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        elf_needs = elf_symbol_versions(path)
        if not elf_needs:
            continue
        report.elf_files += 1
        glibc = max_versions(elf_needs, "GLIBC_")
        if glibc is not None:
            padded = glibc + (0,)
            version = (padded[0], padded[1])
            if report.elf_max is None or version > report.elf_max:
                report.elf_max = version
            if version > target:
                report.offenders.append(f"{path.relative_to(tree)} needs GLIBC_{show(version)}")
        cxx = max_versions(elf_needs, "GLIBCXX_")
        if cxx is not None and (glibcxx is None or cxx > glibcxx):
            glibcxx = cxx
    report.glibcxx_max = ".".join(map(str, glibcxx)) if glibcxx else None
    return report

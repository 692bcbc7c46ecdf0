"""The model store's command: lists the versions in a store and switches the served one; `demo`
and `import` write new versions (models/demo.py, models/importer.py).

    python -m vendor_efs.models list [--store efs-local/models]
    python -m vendor_efs.models use NAME/VERSION [--store ...]
    python -m vendor_efs.models demo [--store ...]
    python -m vendor_efs.models import xrv|torchvision FILE --name NAME --version V [...]

Versions sit side by side; `use` swaps the `current` link in one rename, so a function that is
loading at that moment reads either the old version or the new one, never a mixture. A warm
function keeps the version it loaded until its container is replaced.
"""
import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

from chalicelib.inference.store import (
    CURRENT,
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    point_current,
    read_manifest,
)
from chalicelib.settings import LOCAL_EFS_ROOT


def versions(models_root: Path) -> Iterator[Tuple[Path, Optional[Manifest], str]]:
    """Every NAME/VERSION folder with its manifest (or None and why it is unusable)."""
    for manifest_path in sorted(models_root.glob(f"*/*/{MANIFEST_NAME}")):
        folder = manifest_path.parent
        if folder.name.startswith(".") or folder.parent.name.startswith("."):
            continue  # an import still being written
        try:
            yield folder, read_manifest(folder), ""
        except ManifestError as error:
            yield folder, None, str(error)


def current_version(models_root: Path) -> Optional[Path]:
    link = models_root / CURRENT
    return link.resolve() if link.exists() else None


def use(models_root: Path, name_version: str) -> Path:
    folder = models_root / name_version
    read_manifest(folder)  # refuse to point at something that would not load
    point_current(models_root, folder)
    return folder


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["demo"]:
        from vendor_efs.models.demo import main as demo
        return demo(argv[1:])
    if argv[:1] == ["import"]:
        from vendor_efs.models.importer import main as import_model
        return import_model(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m vendor_efs.models",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["list", "use", "demo", "import"])
    parser.add_argument("version", nargs="?", help="NAME/VERSION, for use")
    parser.add_argument("--store", type=Path, default=LOCAL_EFS_ROOT / "models")
    args = parser.parse_args(argv)
    if args.command == "use":
        if not args.version:
            parser.error("use needs NAME/VERSION")
        try:
            folder = use(args.store, args.version)
        except ManifestError as error:
            sys.exit(f"not switched: {error}")
        print(f"current -> {folder.relative_to(args.store)}")
        return
    served = current_version(args.store)
    for folder, manifest, problem in versions(args.store):
        mark = "*" if served == folder.resolve() else " "
        label = folder.relative_to(args.store)
        if manifest is None:
            print(f"{mark} {label}  UNUSABLE: {problem}")
        else:
            kind = "trained" if manifest.trained else "UNTRAINED demo"
            print(f"{mark} {label}  {manifest.architecture['name']}  {kind}  "
                  f"sha256 {manifest.sha256[:12]}")


if __name__ == "__main__":
    main()

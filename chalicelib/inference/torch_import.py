"""Where torch comes from. On Lambda it lives on EFS (far over the 250 MB package limit), so the
EFS packages folder must be on sys.path before the first `import torch`; locally the venv's
torch is used and nothing changes. A tree built for another Python (a runtime from before the
function moved to a newer one) is named as such instead of failing on a missing torch._C."""
import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

# written into the tree by vendor_efs.runtime: its Python, architecture, versions, sizes
RUNTIME_REPORT = "XRAY_RUNTIME.json"


class TorchUnavailable(RuntimeError):
    """torch cannot be imported from where the settings say it is; the message says why."""


def import_torch(packages_path: Optional[Path]) -> Any:
    if packages_path is not None:
        if not packages_path.is_dir():
            raise TorchUnavailable(
                f"the packages folder {packages_path} does not exist (is EFS mounted and filled?)")
        # Resolve the `packages` link once: a runtime switched while this container lives
        # must not mix its modules with the ones already imported.
        resolved = os.path.realpath(packages_path)
        _check_built_for_this_python(Path(resolved))
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    try:
        import torch
    except ImportError as error:
        where = f"from {packages_path}" if packages_path else "in this environment"
        raise TorchUnavailable(f"torch cannot be imported {where}: {error}") from None
    return torch


def _check_built_for_this_python(tree: Path) -> None:
    try:
        built_for = json.loads((tree / RUNTIME_REPORT).read_text())["python"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no report (e.g. a hand-made tree): the import itself decides
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if built_for != running:
        raise TorchUnavailable(
            f"the torch runtime in {tree} was built for python{built_for}; this function runs "
            f"python{running}. Rebuild it (python -m vendor_efs.runtime) and ship it "
            f"(python -m vendor_efs.ship runtime ... --use)")

"""Where torch comes from. On Lambda it lives on EFS (far over the 250 MB package limit), so the
EFS packages folder must be on sys.path before the first `import torch`; locally the venv's
torch is used and nothing changes."""
import os
import sys
from pathlib import Path
from typing import Any, Optional


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
        if resolved not in sys.path:
            sys.path.insert(0, resolved)
    try:
        import torch
    except ImportError as error:
        where = f"from {packages_path}" if packages_path else "in this environment"
        raise TorchUnavailable(f"torch cannot be imported {where}: {error}") from None
    return torch

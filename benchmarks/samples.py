"""The JPEG every benchmark, the load test and the tests make from a shared PNG radiograph (the
shared fixtures hold no plain JPEG): grayscale, quality 95, one recipe in one place."""
import io
from pathlib import Path
from typing import Any


def jpeg_of(path: Path, quality: int = 95, **save_args: Any) -> bytes:
    """A JPEG made from a fixture PNG."""
    from PIL import Image
    out = io.BytesIO()
    Image.open(path).convert("L").save(out, "JPEG", quality=quality, **save_args)
    return out.getvalue()

"""POST /preview: the decoded pixels of an upload as a small 8-bit PNG, for what a browser
cannot show by itself (DICOM). It runs the same decoder as POST /xray, so the preview shows the
image after the DICOM display pipeline (VOI window, MONOCHROME1 inverted), and an unreadable file
is refused with the same error before anyone presses "Classify". No torch."""
import base64
import io
from typing import Any, Dict

import numpy as np

from chalicelib.imaging.dispatch import decode
from chalicelib.imaging.image import Limits

PREVIEW_MAX_SIDE = 512  # enough for a page; a 512x512 8-bit PNG of a radiograph is ~150 KB


def preview(body: bytes, content_type: str, limits: Limits) -> Dict[str, Any]:
    from PIL import Image

    image = decode(body, content_type, limits)
    gray = Image.fromarray(np.round(image.pixels * 255).astype(np.uint8), "L")
    gray.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    gray.save(out, "PNG")
    return {"image": image.describe(),
            "preview": {"width": gray.width, "height": gray.height,
                        "png": "data:image/png;base64," +
                               base64.b64encode(out.getvalue()).decode("ascii")}}

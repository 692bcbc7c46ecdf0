"""GET /: the upload page, one self-contained HTML file (page.html: inline CSS and JS, no build
step, nothing fetched from elsewhere, so it works offline) with the upload limit filled in.

The Content-Security-Policy allows exactly the page's own inline script and style (by hash),
images from data: and blob: URLs (the previews and the heatmap), and requests to this origin."""
import base64
import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Dict

PAGE = Path(__file__).with_name("page.html")


@lru_cache(maxsize=4)
def render(max_bytes: int) -> str:
    html = PAGE.read_text(encoding="utf-8")
    return (html.replace("{{MAX_BYTES}}", str(max_bytes))
                .replace("{{MAX_SIZE}}", f"{max_bytes / 1e6:.1f} MB"))


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(block.encode()).digest())
                    .decode() + "'" for block in blocks)


@lru_cache(maxsize=4)
def headers(max_bytes: int) -> Dict[str, str]:
    html = render(max_bytes)
    policy = (f"default-src 'none'; script-src {_hashes(html, 'script')}; "
              f"style-src {_hashes(html, 'style')}; img-src 'self' data: blob:; "
              "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return {"Content-Type": "text/html; charset=utf-8",
            "Content-Security-Policy": policy,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"}

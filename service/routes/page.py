"""``GET /``: the small search page, one self-contained HTML file shipped in ``service/static``."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from service.strict_json import StrictJSONRoute

router = APIRouter(tags=["page"], route_class=StrictJSONRoute)


def _load_page() -> str:
    return files("service").joinpath("static/index.html").read_text(encoding="utf-8")


def _csp_hashes(html: str, tag: str) -> str:
    """The CSP source list allowing exactly the page's own inline ``<tag>`` blocks, by SHA-256."""
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.DOTALL)
    digests = (base64.b64encode(hashlib.sha256(b.encode("utf-8")).digest()).decode() for b in blocks)
    return " ".join(f"'sha256-{d}'" for d in digests) or "'none'"


PAGE_HTML = _load_page()  # read once, at import
# Defence in depth on top of the page's escaping: only its own inline script and style run, it
# talks to this origin only, and it cannot be framed.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; "
        f"script-src {_csp_hashes(PAGE_HTML, 'script')}; "
        f"style-src {_csp_hashes(PAGE_HTML, 'style')}; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index() -> HTMLResponse:
    return HTMLResponse(PAGE_HTML, headers=_HEADERS)

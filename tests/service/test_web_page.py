"""The search page at ``GET /`` in a real browser (Debian Chromium driven by Playwright) against a
real uvicorn server on 127.0.0.1 serving the tiny model.

Skipped, with the reason shown, when ``/usr/bin/chromium`` or the ``playwright`` package is missing
(``.ci/run`` installs Chromium with apt). Playwright never downloads a browser here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import uvicorn

from core.encoder import Encoder
from indexer.build import BuildConfig, build_index
from service.app import create_app
from service.settings import Settings
from tests.loopback import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
# Read at import: the session fixture in conftest clears SEMSEARCH_* before the tests run.
ARTIFACTS = Path(os.environ.get("SEMSEARCH_TEST_ARTIFACTS") or REPO / "test-artifacts")
TIMEOUT_MS = 15_000

XSS_TEXT = '<img src=x onerror="window.__xss=1">bold <b>tags</b>'
XSS_SOURCE = "<script>alert(1)</script>"


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def page_index(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model_dir: Path,
    tiny_docs: list[dict[str, Any]],
    tiny_encoder: Encoder,
) -> Path:
    root = tmp_path_factory.mktemp("web-page")
    docs = [*tiny_docs, {"id": "xss", "text": XSS_TEXT, "metadata": {"source": XSS_SOURCE}}]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    out = root / "index"
    build_index(
        BuildConfig(model=str(tiny_model_dir), corpus=str(corpus), output=str(out), progress=False),
        encoder=tiny_encoder,
    )
    return out


@pytest.fixture(scope="module")
def base_url(page_index: Path, tiny_model_dir: Path) -> Iterator[str]:
    """A real uvicorn server in a background thread; its lifespan loads the model and the index."""
    app = create_app(Settings(index_dir=page_index, model_dir=tiny_model_dir, device="cpu"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn-web-page", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not server.started:
            why = "exited during startup (see the log above)" if not thread.is_alive() else "timed out (60 s)"
            pytest.fail(f"uvicorn did not start: {why}")
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/ready", timeout=10).status_code == 200
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        assert not thread.is_alive(), "uvicorn did not stop within 15 s"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install chromium)")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        pytest.skip(f"the playwright package cannot be imported ({exc}): pip install 'semsearch[dev]'")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    expect.set_options(timeout=TIMEOUT_MS)
    pw: Playwright = sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()
    finally:
        pw.stop()


@pytest.fixture
def page(browser: Browser, base_url: str) -> Iterator[Page]:
    """A fresh context per test (own sessionStorage); console errors and dialogs are recorded."""
    context = browser.new_context(base_url=base_url, viewport={"width": 1000, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))

    def _console(msg: Any) -> None:
        # HTTP errors the tests provoke (422, a stubbed 503) are logged by the browser too.
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            problems.append(f"console {msg.type}: {msg.text}")

    pg.on("console", _console)

    def _dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    pg.on("dialog", _dialog)
    try:
        yield pg
        # A CSP violation, a script error or an alert() all mean the page is broken or injectable.
        assert problems == [], problems
    finally:
        context.close()


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _screenshot(pg: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    pg.screenshot(path=str(path), full_page=True)
    return path


# ------------------------------------------------------------------ tests


def test_page_is_served_self_contained(base_url: str) -> None:
    r = httpx.get(f"{base_url}/", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'sha256-" in r.headers["content-security-policy"]
    html = r.text
    assert 'id="query"' in html and 'id="results"' in html
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    schema = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    assert "/" not in schema["paths"]


def test_search_renders_hits_and_escapes_everything(page: Page, tiny_docs: list[dict[str, Any]]) -> None:
    expect = _expect()
    page.goto("/")
    page.wait_for_load_state("networkidle")
    # No reranker configured: /ready says nothing about one, so the toggle stays hidden.
    expect(page.locator("#rerank-wrap")).to_be_hidden()
    expect(page.locator("#error")).to_be_hidden()

    doc = tiny_docs[12]
    page.fill("#query", doc["text"])
    page.fill("#k", "5")
    page.click("#search")
    hits = page.locator("#results .hit")
    expect(hits).to_have_count(5)
    first = hits.nth(0)
    expect(first.locator(".hit-id")).to_have_text(doc["id"])
    expect(first.locator(".hit-text")).to_have_text(doc["text"])
    expect(first.locator(".hit-score .val")).to_have_text("1.000")
    expect(first.locator(".hit-meta")).to_contain_text(f"topic: {doc['metadata']['topic']}")
    expect(first.locator(".hit-rank")).to_have_text("#1")
    expect(page.locator("#status")).to_contain_text("5 hits in")
    for i in range(5):
        assert hits.nth(i).locator(".hit-text").inner_text().strip()
        score = hits.nth(i).locator(".hit-score .val").inner_text()
        assert len(score.split(".")[1]) == 3, score
    assert page.locator("#results .hit-rerank-score").count() == 0
    _screenshot(page, "web_page.png")

    # The hostile document, found by its own text: shown literally, nothing of it is parsed as HTML.
    page.fill("#query", XSS_TEXT)
    page.fill("#k", "3")
    page.press("#query", "Enter")
    expect(hits).to_have_count(3)
    expect(hits.nth(0).locator(".hit-id")).to_have_text("xss")
    expect(hits.nth(0).locator(".hit-text")).to_have_text(XSS_TEXT)
    expect(hits.nth(0).locator(".hit-meta")).to_contain_text(f"source: {XSS_SOURCE}")
    page.wait_for_timeout(300)  # an injected <img src=x> would have fired onerror by now
    assert page.evaluate("typeof window.__xss") == "undefined"
    for tag in ("b", "img", "script"):
        assert page.locator(f"#results {tag}").count() == 0, tag
    # The tiny model keeps 16 tokens, so this query is cut and the page says so.
    expect(page.locator("#status .note")).to_contain_text("truncated")


def test_whitespace_query_shows_the_server_error(page: Page) -> None:
    expect = _expect()
    page.goto("/")
    page.fill("#query", "the cat")
    page.click("#search")
    expect(page.locator("#results .hit")).to_have_count(10)  # k defaults to 10

    with page.expect_response("**/search") as resp:
        page.fill("#query", "   ")
        page.press("#query", "Enter")
    assert resp.value.status == 422
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("validation_error")
    expect(error).to_contain_text("query")
    expect(page.locator("#results .hit")).to_have_count(0)

    # An out-of-range k is caught before any request.
    page.fill("#query", "the cat")
    page.fill("#k", "101")
    page.click("#search")
    expect(error).to_contain_text("invalid_k")


def test_api_key_is_sent_and_kept_for_the_session(page: Page) -> None:
    expect = _expect()
    page.goto("/")
    with page.expect_request("**/search") as req:
        page.fill("#query", "the dog")
        page.click("#search")
    assert "authorization" not in req.value.headers
    expect(page.locator("#results .hit")).to_have_count(10)

    page.fill("#api-key", "s3cret-key")
    with page.expect_request("**/search") as req:
        page.click("#search")
    assert req.value.headers["authorization"] == "Bearer s3cret-key"
    assert page.get_attribute("#api-key", "type") == "password"

    page.reload()
    expect(page.locator("#api-key")).to_have_value("s3cret-key")


def test_rerank_toggle_follows_ready(page: Page) -> None:
    """Against stubbed /ready and /search answers: the toggle appears only with a reranker, the request
    carries ``rerank`` only when it is checked, and ``rerank_score`` is shown."""
    expect = _expect()
    ready = {"status": "ready", "documents": 2, "reranker": True}
    page.route("**/ready", lambda route: route.fulfill(json=ready))
    sent: list[dict[str, Any]] = []
    hits = [
        {"id": "a", "score": 0.5, "rerank_score": 7.25, "text": "first", "metadata": {"n": 1}},
        {"id": "b", "score": 0.875, "rerank_score": -1.5, "text": "second", "metadata": {}},
    ]

    def _search(route: Any) -> None:
        sent.append(json.loads(route.request.post_data))
        route.fulfill(json={"hits": hits, "took_ms": 1.5, "truncated": False})

    page.route("**/search", _search)
    page.goto("/")
    wrap = page.locator("#rerank-wrap")
    expect(wrap).to_be_visible()

    page.fill("#query", "anything")
    page.click("#search")
    expect(page.locator("#results .hit")).to_have_count(2)
    page.check("#rerank")
    page.click("#search")
    expect(page.locator("#results .hit-rerank-score")).to_have_count(2)
    assert sent == [{"query": "anything", "k": 10}, {"query": "anything", "k": 10, "rerank": True}]
    first = page.locator("#results .hit").nth(0)
    expect(first.locator(".hit-rerank-score .val")).to_have_text("7.250")
    expect(first.locator(".hit-score .val")).to_have_text("0.500")
    _screenshot(page, "web_page_rerank.png")

    # /ready failing (or saying nothing about a reranker) hides it again.
    page.unroute("**/ready")
    page.route(
        "**/ready", lambda route: route.fulfill(status=503, json={"error": {"code": "x", "message": "y"}})
    )
    page.reload()
    page.wait_for_load_state("networkidle")
    expect(wrap).to_be_hidden()

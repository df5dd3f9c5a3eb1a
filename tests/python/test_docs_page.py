"""The API reference page in Debian's headless Chromium, with the network closed but for the
gateway.

Run by tests/gateway/openapi.rs against a live gateway (SWITCHYARD_BASE). The browser is
/usr/bin/chromium (SWITCHYARD_CHROMIUM overrides), driven by Playwright's Python package; no
browser is downloaded. Every request the page makes is checked: one to anywhere but the
gateway is refused and fails the test, and as a second wall the browser's proxy is a closed
loopback port and its resolver resolves no name, so nothing could leave the machine anyway.

What a user would check: the page shows the chat completions operation, and "Try it out" on it
gets the echo backend's answer. Screenshots go to SWITCHYARD_SCREENSHOT_DIR (the test sets
<repo>/target): docs-screenshot.png (the page as it opens) and docs-try-it-out.png (the chat
operation after Execute).
"""

import os
import pathlib
import shutil
import socket
import tempfile
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

BASE = os.environ["SWITCHYARD_BASE"]
CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
SHOTS = pathlib.Path(os.environ["SWITCHYARD_SCREENSHOT_DIR"])
TIMEOUT_MS = 30_000


def closed_loopback_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_docs_page_renders_offline_and_try_it_out_works():
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), (
        f"{CHROMIUM} not found: install Debian's chromium (scripts/test.sh does)"
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    gateway = urlsplit(BASE)
    served, refused, problems = [], [], []

    def only_the_gateway(route):
        url = urlsplit(route.request.url)
        if (url.scheme, url.netloc) == (gateway.scheme, gateway.netloc):
            served.append(url.path)
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                # Loopback bypasses a proxy; everything else would go to a closed port.
                f"--proxy-server=http://127.0.0.1:{closed_loopback_port()}",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            ],
            viewport={"width": 1280, "height": 1000},
        )
        try:
            browser.route("**/*", only_the_gateway)
            page = browser.new_page()
            # CSP violations and script errors show up here.
            page.on(
                "console",
                lambda m: problems.append(f"console {m.type}: {m.text}")
                if m.type in ("error", "warning")
                else None,
            )
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))

            page.goto(f"{BASE}/docs", wait_until="networkidle", timeout=TIMEOUT_MS)
            chat = page.locator("#operations-chat-chat_completions")
            chat.wait_for(timeout=TIMEOUT_MS)
            assert "/v1/chat/completions" in chat.locator(".opblock-summary-path").inner_text()
            for op in ["embeddings-create_embeddings", "models-list_models", "models-retrieve_model"]:
                assert page.locator(f"#operations-{op}").count() == 1, op
            page.screenshot(path=str(SHOTS / "docs-screenshot.png"))

            # Try it out with the document's example, which names a model this gateway routes.
            chat.locator(".opblock-summary-control").click()
            chat.locator(".try-out__btn").click()
            chat.locator("button.execute").click()
            status = chat.locator(".live-responses-table tbody .response-col_status").first
            status.wait_for(timeout=TIMEOUT_MS)
            assert status.inner_text().strip().startswith("200"), status.inner_text()
            answer = chat.locator(".live-responses-table tbody .microlight").first.inner_text()
            assert '"chat.completion"' in answer and '"hi there"' in answer, answer
            chat.screenshot(path=str(SHOTS / "docs-try-it-out.png"))
        finally:
            browser.close()

    assert refused == [], f"the page asked for something other than the gateway: {refused}"
    assert problems == [], problems
    assert "/openapi.json" in served and "/v1/chat/completions" in served, served

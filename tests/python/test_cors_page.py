"""A page on another origin calls the gateway from Debian's headless Chromium with `fetch`: the
preflight (a JSON body with an `Authorization` header is not a simple request), then a streamed
chat completion read to its end, then the headers the gateway exposes. A page on an origin
outside `[server.cors] allowed_origins` gets nothing.

Run by tests/gateway/observe.rs against a live gateway (SWITCHYARD_BASE) whose allowed origin is
SWITCHYARD_PAGE_ORIGIN (`http://127.0.0.1:<port>`): the page is served from that port by a
small server here; the refused page from another port. Both are loopback, like the gateway, so
the browser's private-network rules do not come into it. The browser never leaves loopback:
its resolver resolves no name.
"""

import http.server
import json
import os
import shutil
import socket
import tempfile
import threading
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

BASE = os.environ["SWITCHYARD_BASE"]
CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM", "/usr/bin/chromium")
PAGE_ORIGIN = os.environ["SWITCHYARD_PAGE_ORIGIN"]
TIMEOUT_MS = 30_000

PAGE = b"<!doctype html><html><head><title>app</title></head><body>app</body></html>"

# Runs in the page: the preflight, then a stream read to its end, then the exposed headers.
CALL = """async (base) => {
  const response = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: {"content-type": "application/json", "authorization": "Bearer sk-any"},
    body: JSON.stringify({model: "echo/hello", stream: true,
                          messages: [{role: "user", content: "one two three"}]}),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    text += decoder.decode(value, {stream: true});
  }
  const h = (name) => response.headers.get(name);
  return {status: response.status, text,
          requestId: h("x-request-id"), received: h("x-proxy-received-at"),
          answered: h("x-proxy-final-response-at"), serverTiming: h("server-timing")};
}"""

REFUSED = """async (base) => {
  try {
    await fetch(base + "/v1/chat/completions", {
      method: "POST",
      headers: {"content-type": "application/json"},
      body: JSON.stringify({model: "echo/hello", messages: []}),
    });
    return "granted";
  } catch (e) {
    return "refused: " + e;
  }
}"""


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args):
        pass


def serve(port):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_page_on_another_origin_streams_a_chat_and_reads_the_exposed_headers():
    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), f"{CHROMIUM} not found"
    allowed = serve(urlsplit(PAGE_ORIGIN).port)
    other_port = free_port()
    refused_site = serve(other_port)
    try:
        with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
            browser = p.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                headless=True,
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                ],
            )
            try:
                page = browser.new_page()
                page.goto(PAGE_ORIGIN + "/", timeout=TIMEOUT_MS)
                result = page.evaluate(CALL, BASE)

                other = browser.new_page()
                other.goto(f"http://127.0.0.1:{other_port}/", timeout=TIMEOUT_MS)
                refused = other.evaluate(REFUSED, BASE)
            finally:
                browser.close()
    finally:
        allowed.shutdown()
        refused_site.shutdown()

    assert result["status"] == 200, result
    events = [
        line[len("data: "):]
        for line in result["text"].splitlines()
        if line.startswith("data: ")
    ]
    content = "".join(
        json.loads(e)["choices"][0]["delta"].get("content") or ""
        for e in events
        if e != "[DONE]" and json.loads(e).get("choices")
    )
    assert content == "one two three", result
    assert result["text"].rstrip().endswith("data: [DONE]"), result["text"][-200:]
    assert result["requestId"], "x-request-id not exposed"
    assert result["received"] and result["answered"], "timing headers not exposed"
    assert result["serverTiming"].startswith("gateway;dur="), result
    assert refused.startswith("refused"), refused

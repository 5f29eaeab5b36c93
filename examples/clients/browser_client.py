"""The chat page of examples/chat-ui/ in headless Chromium (Playwright), as a sweep consumer.

    ssevcr sweep cassettes/examples/openai-chat-text.msgpack --cors -- \
        python examples/clients/browser_client.py

Serves the page from its own origin (examples/chat-ui/serve.py), opens it with the replay's URL
(``SSEVCR_URL``, which needs ``--cors``), presses Send and waits for the page to settle. Prints
the page's final state and the answer it shows; exits 0 when the state is ``done``, 1 on any of
the page's error states, 2 when the page threw or never settled. Chromium is Debian's
(``SSEVCR_CHROMIUM`` points elsewhere).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from urllib.parse import urlencode

from playwright.sync_api import sync_playwright

CHAT_UI = Path(__file__).resolve().parent.parent / "chat-ui"
SETTLED = "!['idle', 'waiting', 'streaming'].includes(document.body.dataset.state)"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


def load_serve() -> object:
    spec = importlib.util.spec_from_file_location("chat_ui_serve", CHAT_UI / "serve.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    api = os.environ.get("SSEVCR_URL", "http://127.0.0.1:8080")
    chromium = os.environ.get("SSEVCR_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    static = load_serve().start()  # type: ignore[attr-defined]
    origin = f"http://127.0.0.1:{static.server_address[1]}"
    errors: list[str] = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=ARGS)
            page = browser.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{origin}/index.html?{urlencode({'api': api})}")
            page.wait_for_function("document.body.dataset.state === 'idle'", timeout=15_000)
            page.click("#send")
            page.wait_for_function(SETTLED, timeout=30_000)
            state = page.evaluate("document.body.dataset.state")
            answer = page.text_content("#answer") or ""
            detail = page.text_content("#detail") or ""
            browser.close()
    finally:
        static.shutdown()
        static.server_close()
    print(state)
    print(answer)
    if errors:
        print(f"uncaught errors in the page: {errors}", file=sys.stderr)
        return 2
    if state != "done":
        print(f"the page shows {state}: {detail}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

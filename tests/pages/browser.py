"""Debian's Chromium under Playwright, and the pages as the tests see them.

Playwright's sync API keeps an asyncio loop running in the thread that uses
it, and Django refuses ORM calls from such a thread. So the browser lives in
a thread of its own (``in_browser``) and the test's thread keeps the ORM for
its setup; the pages talk to a real Daphne (``tests.support.processes``).
"""

import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlparse

from playwright.sync_api import Browser, Page, Route, WebSocketRoute, expect, sync_playwright

from tests.support.processes import ROOT

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "pages"

T = TypeVar("T")


def in_browser(scenario: Callable[[Browser], T], *, timeout: float = 120.0) -> T:
    """Run ``scenario(browser)`` in a fresh Chromium on a thread of its own; return its result."""
    outcome: dict = {}

    def run() -> None:
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    outcome["value"] = scenario(browser)
                finally:
                    browser.close()
        except BaseException as exc:  # re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="chromium", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the browser scenario did not finish within {timeout}s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def screenshot(page: Page, name: str) -> Path:
    """Write a full-page screenshot under test-artifacts/pages/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


@dataclass
class Site:
    url: str

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> tuple[int, dict]:
        """Call the REST API as a non-browser client would."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def counselor_token(self, username: str, password: str) -> dict:
        """Return the ``Authorization`` header of a counselor's API token."""
        status, body = self.call("POST", "/api/auth/token", {"username": username, "password": password})
        assert status == 200, body
        return {"Authorization": f"Token {body['token']}"}


@dataclass
class Blocker:
    """Refuse some of a page's realtime endpoints, as a hostile network would.

    WebSockets whose path starts with a blocked prefix are closed before they
    open (code 1006, as a failed handshake); with ``http`` on, SockJS's HTTP
    requests under /ws/sockjs/ are aborted. Change the two at any time;
    ``lift()`` lets everything through again.
    """

    websockets: tuple[str, ...] = ()
    http: bool = False
    refused: list[str] = field(default_factory=list)

    def install(self, page: Page) -> "Blocker":
        """Route the page's traffic through the blocker; call before the page loads."""
        page.route_web_socket(re.compile(r".*"), self._websocket)
        page.route(re.compile(r".*/ws/sockjs/.*"), self._http)
        return self

    def lift(self) -> None:
        self.websockets, self.http = (), False

    def _websocket(self, ws: WebSocketRoute) -> None:
        path = urlparse(ws.url).path
        if self.websockets and path.startswith(self.websockets):
            self.refused.append(path)
            ws.close(code=1006, reason="blocked by the test")
        else:
            ws.connect_to_server()

    def _http(self, route: Route) -> None:
        if not self.http:
            route.continue_()
            return
        self.refused.append(urlparse(route.request.url).path)
        route.abort()


class CustomerPage:
    """The waiting page in one browser context (its own sessionStorage)."""

    def __init__(self, browser: Browser, site: Site, *, locale: str = "en-US", block: Blocker | None = None) -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 1024, "height": 760})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.blocker = None
        if block is not None:
            self.blocker = block.install(self.page)
        self.page.goto(site.url + "/")

    def join(self, name: str = "") -> None:
        self.page.locator("#display-name").fill(name)
        self.page.locator("#join-button").click()
        expect(self.page.locator("#view-waiting")).to_be_visible()

    def expect_rank(self, rank: int, timeout: float = 5000) -> None:
        expect(self.page.locator("#rank")).to_have_text(str(rank), timeout=timeout)

    def expect_tier(self, tier: str, transport: str | None = None, timeout: float = 10000) -> None:
        indicator = self.page.locator("#tier")
        expect(indicator).to_have_attribute("data-tier", tier, timeout=timeout)
        if transport is not None:
            expect(indicator).to_have_attribute("data-transport", transport)

    def visit(self) -> dict:
        """Return what the page keeps in sessionStorage (token, customerId)."""
        return json.loads(self.page.evaluate("sessionStorage.getItem('hearo.visit')") or "null")

    def bearer(self) -> dict:
        return {"Authorization": f"Bearer {self.visit()['token']}"}


class DashboardPage:
    """The counselor dashboard, signed in through Django's login page."""

    def __init__(self, browser: Browser, site: Site, *, username: str, password: str, locale: str = "en-US") -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 1100, "height": 900})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.site = site
        self.username, self.password = username, password

    def sign_in(self) -> None:
        self.page.goto(self.site.url + "/counselor/")
        expect(self.page).to_have_url(re.compile(r"/accounts/login/\?next=/counselor/$"))
        form = self.page.locator("main form")
        form.get_by_label(re.compile("Username|아이디")).fill(self.username)
        form.get_by_label(re.compile("Password|비밀번호")).fill(self.password)
        form.locator("button[type=submit]").click()
        expect(self.page).to_have_url(re.compile(r"/counselor/$"))

    def status_button(self, status: str):
        return self.page.locator(f"#status-buttons .segment[data-status={status}]")


# Contrast of an element's text against the first opaque background behind it (WCAG 2).
CONTRAST_JS = """
(element) => {
  const rgb = (css) => css.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => {
    const channel = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
  };
  let node = element, background = null;
  while (node && !background) {
    const parts = rgb(getComputedStyle(node).backgroundColor);
    if (parts.length === 3 || parts[3] === 1) background = parts.slice(0, 3);
    node = node.parentElement;
  }
  background ??= [255, 255, 255];
  const [a, b] = [luminance(rgb(getComputedStyle(element).color)), luminance(background)];
  return (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
}
"""


def contrast(page: Page, selector: str) -> float:
    return page.locator(selector).evaluate(CONTRAST_JS)


AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def axe_serious_violations(page: Page) -> list[dict]:
    """Run axe-core on the page as it is; return its serious and critical violations.

    Injected with ``evaluate`` (the DevTools protocol), not a script tag: the
    pages' Content-Security-Policy rightly refuses inline scripts.
    """
    if not page.evaluate("Boolean(window.axe)"):
        page.evaluate(AXE.read_text())
    return page.evaluate(
        """async () => (await axe.run(document, { resultTypes: ["violations"] })).violations
             .filter((v) => v.impact === "serious" || v.impact === "critical")
             .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")) }))"""
    )

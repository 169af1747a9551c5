"""The waiting page as people live it: the hand-off that tells the truth, alerts, estimates, plain words, access.

Screenshots go to test-artifacts/pages/people-*.png; with HEARO_README_SCREENSHOTS=1 the
README's three waiting-page pictures are written to docs/screenshots/ as well.
"""

import os
import re
import shutil
import socket
import threading
import time
from urllib.parse import urlparse

import pytest
from django.db import connection
from playwright.sync_api import Page, expect

from matching.models import Counselor, Match
from queues.models import Queue
from queues.ranking import estimate_wait_seconds
from queues.services import queue_default
from tests.pages.browser import Blocker, CustomerPage, Site, axe_serious_violations, in_browser, screenshot
from tests.support.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-pass-1"  # the `counselor` fixture's (display name "Alice")
README_SCREENSHOTS = ROOT / "docs" / "screenshots"
JARGON = re.compile(r"STOMP|SockJS|REST|polling|WebSocket|xhr-|hearo_", re.IGNORECASE)

# Before the page loads: a Notification that records what it is asked to show, a chime
# counter, and a document whose visibility the test controls.
PAGE_STUBS = """
(() => {
  window.__notes = [];
  window.__asked = 0;
  window.__chimes = 0;
  class StubNotification {
    static permission = window.__permission ?? "default";
    static requestPermission() {
      window.__asked += 1;
      StubNotification.permission = "granted";
      return Promise.resolve("granted");
    }
    constructor(title, options) { window.__notes.push({ title, body: options?.body ?? "" }); }
    close() {}
  }
  window.Notification = StubNotification;
  const create = AudioContext.prototype.createOscillator;
  AudioContext.prototype.createOscillator = function () { window.__chimes += 1; return create.call(this); };
  window.__hidden = false;
  Object.defineProperty(document, "visibilityState", { get: () => (window.__hidden ? "hidden" : "visible") });
  Object.defineProperty(document, "hidden", { get: () => window.__hidden });
  window.__setHidden = (hidden) => {
    window.__hidden = hidden;
    document.dispatchEvent(new Event("visibilitychange"));
  };
})();
"""


class Person(CustomerPage):
    """The waiting page with the stubs above installed before it loads."""

    def __init__(self, browser, site: Site, *, locale: str = "en-US", block: Blocker | None = None) -> None:
        self.context = browser.new_context(locale=locale, viewport={"width": 1024, "height": 900})
        self.context.add_init_script(PAGE_STUBS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.blocker = block.install(self.page) if block is not None else None
        self.page.goto(site.url + "/")

    def focused(self) -> str:
        return self.page.evaluate("document.activeElement.id")

    def visible_text(self) -> str:
        return self.page.evaluate("document.body.innerText")


def counselor_token(site: Site) -> dict:
    return site.counselor_token("alice", PASSWORD)


def set_status(site: Site, token: dict, status: str) -> None:
    code, body = site.call("POST", "/api/counselor/status", {"status": status}, headers=token)
    assert code == 200, body


def counselor_status(site: Site, token: dict) -> str:
    return site.call("GET", "/counselor/state", headers=token)[1]["counselor"]["status"]


def readme_screenshot(page: Page, name: str) -> None:
    """Save the README's picture of one state (only when asked: the files are tracked)."""
    path = screenshot(page, f"people-readme-{name}")
    if os.environ.get("HEARO_README_SCREENSHOTS") == "1":
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SCREENSHOTS / f"waiting-{name}.png")


def port_is_closed(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or 80), timeout=1):
            return False
    except OSError:
        return True


# --- The hand-off -----------------------------------------------------------------------


def test_when_the_call_server_cannot_be_reached_the_customer_is_back_at_the_front_and_told_why(site, counselor):
    def scenario(browser):
        customer = Person(browser, site)
        customer.join("Mina")
        customer.expect_rank(1)
        token = counselor_token(site)
        set_status(site, token, "AVAILABLE")
        expect(customer.page.locator("#matched-title")).to_have_text("Alice is ready to talk with you", timeout=5000)
        assert customer.focused() == "matched-title"
        # Alice stops serving the line, so the matcher does not pair the two again at once.
        off_the_line(counselor)
        countdown = customer.page.locator("#join-countdown")
        expect(countdown).to_have_text(re.compile(r"^[0-9]+:[0-5][0-9]$"))
        readme_screenshot(customer.page, "matched")

        with customer.page.expect_response(re.compile(r"/api/livekit/token$")) as grant:
            with customer.page.expect_request(re.compile(r"/api/matches/\d+/call-failed$"), timeout=30000) as failed:
                customer.page.locator("#join-call-button").click()
        # The test server's LIVEKIT_URL (the default, ws://127.0.0.1:7880) is a closed port here.
        assert port_is_closed(grant.value.json()["url"]), "something listens on the LiveKit URL"
        assert failed.value.post_data_json == {"reason": "unreachable"}

        customer.expect_rank(1, timeout=10000)
        expect(customer.page.locator("#back-title")).to_have_text("We couldn't connect the call")
        expect(customer.page.locator("#back-text")).to_have_text(
            "It's not your fault. You're back at the front of the line, "
            "and we will connect you with the next counselor who is free."
        )
        expect(customer.page.locator("#back-title")).to_be_focused()
        assert counselor_status(site, token) == "AVAILABLE"  # not forced AWAY: she tried, and no call took place
        readme_screenshot(customer.page, "call-failed")
        assert axe_serious_violations(customer.page) == []
        # A reload keeps the explanation until the next match.
        customer.page.reload()
        customer.expect_rank(1)
        expect(customer.page.locator("#back-title")).to_have_text("We couldn't connect the call")
        assert customer.errors == []

    in_browser(scenario)
    assert Match.objects.get().end_reason == "call_failed"


def off_the_line(counselor: Counselor) -> None:
    """Take the counselor off every line (in a thread: the browser's thread runs an event loop; the ORM refuses it)."""

    def run() -> None:
        try:
            counselor.queues.clear()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def test_a_released_match_brings_the_customer_back_with_a_kind_word_and_the_focus_on_it(site, counselor):
    def scenario(browser):
        customer = Person(browser, site)
        customer.join("Mina")
        token = counselor_token(site)
        set_status(site, token, "AVAILABLE")
        expect(customer.page.locator("#view-matched")).to_be_visible(timeout=5000)
        match_id = site.call("GET", "/api/queue/rank", headers=customer.bearer())[1]["matchId"]
        off_the_line(counselor)  # or the matcher pairs the two again at once
        status, body = site.call("POST", f"/api/matches/{match_id}/release", {"reason": "test"}, token)
        assert status == 200, body
        customer.expect_rank(1, timeout=5000)
        expect(customer.page.locator("#back-title")).to_have_text("Your counselor couldn't take this call")
        expect(customer.page.locator("#back-title")).to_be_focused()
        assert "not your fault" in customer.page.locator("#back-text").text_content()
        screenshot(customer.page, "people-released")

    in_browser(scenario)


def test_a_dropped_call_offers_reconnect_with_the_time_left(site):
    """The interruption message is injected (a LiveKit webhook would send it); the page's side of it is tested."""

    def scenario(browser):
        customer = Person(browser, site)
        customer.join("Mina")
        customer.expect_rank(1)
        customer.expect_tier("stomp")  # its snapshot came: nothing from the server will overwrite what follows
        customer.page.evaluate(
            """() => {
              const now = Date.now();
              const call = { status: "IN_CALL", matchId: 1, roomName: "hearo_x", counselorName: "Alice",
                             joinDeadline: now + 60000, seq: 1000 };
              window.hearoPage.render({ ...call, status: "MATCHED" });
              window.hearoPage.render({ ...call, interrupted: { side: "customer", reconnectUntil: now + 45000 } });
            }"""
        )
        expect(customer.page.locator("#matched-title")).to_have_text("You are in your call with Alice")
        assert customer.focused() == "matched-title"
        expect(customer.page.locator("#interrupted-title")).to_have_text("Your connection to the call dropped")
        expect(customer.page.locator("#interrupted-text")).to_have_text(
            re.compile(r"^Press “Reconnect” to continue the call\. You have 0:4\d\.$")
        )
        expect(customer.page.get_by_role("button", name="Reconnect")).to_be_visible()
        expect(customer.page.locator("#join-call-button")).to_be_hidden()
        screenshot(customer.page, "people-reconnect")
        assert axe_serious_violations(customer.page) == [], "call, interrupted"
        # Reconnect runs the join again: a fresh grant first.
        with customer.page.expect_request(re.compile(r"/api/livekit/token$")):
            customer.page.get_by_role("button", name="Reconnect").click()
        customer.page.evaluate(
            """() => window.hearoPage.render({ status: "IN_CALL", matchId: 1, counselorName: "Alice", seq: 1001,
                 interrupted: { side: "counselor", reconnectUntil: Date.now() + 30000 } })"""
        )
        expect(customer.page.locator("#interrupted-title")).to_have_text("Your counselor's connection dropped")
        expect(customer.page.locator("#interrupted-text")).to_contain_text("Please stay on this page")
        assert JARGON.search(customer.visible_text()) is None

    in_browser(scenario)


# --- Alerts -----------------------------------------------------------------------------


def test_a_hidden_page_is_told_you_are_next_at_2_and_1_and_notified_with_a_countdown_when_matched(site, counselor):
    def scenario(browser):
        first, second = Person(browser, site), Person(browser, site)
        first.join("One")
        second.join("Two")
        me = Person(browser, site)
        # One line of why, before the browser asks; asked once, at the join click.
        expect(me.page.locator("#notify-why")).to_be_visible()
        assert me.page.evaluate("window.__asked") == 0
        me.join("Mina")
        me.expect_rank(3)
        assert me.page.evaluate("window.__asked") == 1
        expect(me.page.locator("#notify-state")).to_have_text("We will also show a notification when it is your turn.")
        expect(me.page.get_by_label("Play a sound when it is my turn")).to_be_checked()
        me.page.evaluate("window.__setHidden(true)")

        first.page.locator("#cancel-button").click()
        me.expect_rank(2)
        expect(me.page.locator("#rank-note")).to_have_text("Almost there: one person is ahead of you.")
        second.page.locator("#cancel-button").click()
        me.expect_rank(1)
        expect(me.page.locator("#rank-note")).to_have_text("You are next.")
        notes = me.page.evaluate("window.__notes")
        assert [note["title"] for note in notes] == ["Almost there: one person is ahead of you.", "You are next."]

        set_status(site, counselor_token(site), "AVAILABLE")
        expect(me.page.locator("#view-matched")).to_be_visible(timeout=5000)
        notes = me.page.evaluate("window.__notes")
        assert notes[-1] == {"title": "Alice is ready to talk with you", "body": "Come back to HearO to join the call."}
        assert len(notes) == 3  # "you're next" once each, then the match
        assert me.page.evaluate("window.__chimes") >= 5  # two soft notes, then three for the match
        expect(me.page).to_have_title("● Your counselor is ready", timeout=3000)  # the title flashes
        first_left = me.page.locator("#join-countdown").text_content()
        assert re.fullmatch(r"\d+:[0-5]\d", first_left), first_left
        expect(me.page.locator("#join-countdown")).not_to_have_text(first_left, timeout=3000)  # it counts down
        me.page.evaluate("window.__setHidden(false)")
        expect(me.page).to_have_title(re.compile(r"^● HearO"))  # looking stops the flashing
        screenshot(me.page, "people-hidden-matched")
        assert me.errors == []

        # Back in line: sounds off is remembered on this browser; the permission is never asked again.
        off_the_line(counselor)  # or the matcher pairs the two again at once
        me.page.locator("#leave-button").click()
        me.page.locator("#rejoin-button").click()
        expect(me.page.locator("#view-waiting")).to_be_visible()
        assert me.page.evaluate("window.__asked") == 1
        me.page.get_by_label("Play a sound when it is my turn").uncheck()
        assert me.page.evaluate("localStorage.getItem('hearo.sound')") == "off"
        me.page.reload()
        expect(me.page.get_by_label("Play a sound when it is my turn")).not_to_be_checked()

    in_browser(scenario)


def test_a_refused_or_missing_notification_api_changes_nothing_visible(site):
    def scenario(browser):
        context = browser.new_context(locale="en-US")
        context.add_init_script("delete window.Notification; delete window.AudioContext; delete navigator.vibrate;")
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(site.url + "/")
        expect(page.locator("#notify-why")).to_be_hidden()
        page.locator("#join-button").click()
        expect(page.locator("#rank")).to_have_text("1")
        expect(page.locator("#notify-state")).to_be_hidden()
        assert errors == []

    in_browser(scenario)


# --- Estimates and the stale marker ------------------------------------------------------


def test_an_estimate_is_shown_from_the_first_customer_on(site, counselor, settings):
    # The service's first day: Alice takes the very first caller; with no call history yet,
    # the next person's estimate comes from the default handle time.
    status, _ = site.call("POST", "/api/queue/join", {"displayName": "First"})
    assert status == 201
    set_status(site, counselor_token(site), "AVAILABLE")
    deadline = time.monotonic() + 10
    while not Match.objects.filter(ended_at__isnull=True).exists():  # the matcher's pass runs just after
        assert time.monotonic() < deadline, "the first caller was never matched"
        time.sleep(0.1)
    seconds = estimate_wait_seconds(
        rank=1, counselors_on_shift=1, average_call_seconds=float(settings.HEARO_DEFAULT_HANDLE_SECONDS)
    )
    expected = "less than a minute" if seconds < 60 else f"about {round(seconds / 60)} min"

    def scenario(browser):
        customer = Person(browser, site)
        customer.join("Mina")
        customer.expect_rank(1)
        expect(customer.page.locator("#eta")).to_have_text(expected, timeout=8000)
        expect(customer.page.locator("#waited")).to_have_text("less than a minute")
        expect(customer.page.locator("#eta[aria-live=polite]")).to_have_count(1)
        readme_screenshot(customer.page, "waiting")

    in_browser(scenario)


def quiet_line() -> None:
    """A line nobody serves yet (new, so no server-side estimate of it is cached from an earlier test)."""
    queue_default()
    Queue.objects.create(queue_id="evening", name_ko="저녁 상담", name_en="Evening line", languages=["ko", "en"])


def join_quiet_line(customer: "Person", name: str) -> None:
    customer.page.locator("#queue-evening").check()
    customer.join(name)
    customer.expect_rank(1)


def test_with_nobody_on_shift_the_estimate_says_so_instead_of_a_blank(site):
    quiet_line()

    def scenario(browser):
        customer = Person(browser, site)
        join_quiet_line(customer, "Mina")
        expect(customer.page.locator("#eta")).to_have_text("no counselor is online right now", timeout=8000)

    in_browser(scenario)


def test_the_rank_is_dated_while_the_server_is_unreachable_and_live_again_after(site):
    def scenario(browser):
        blocker = Blocker()
        customer = Person(browser, site, block=blocker)
        customer.join("Mina")
        customer.expect_rank(1)
        customer.expect_tier("stomp")
        expect(customer.page.locator("#connection-text")).to_have_text("Live")
        # The server is unreachable: every socket, SockJS request and REST read fails.
        blocker.websockets, blocker.http = ("/ws/",), True
        customer.page.route(re.compile(r".*/api/queue/.*"), lambda route: route.abort())
        customer.page.evaluate("window.hearoClient.link.client.forceDisconnect()")
        stale = customer.page.locator("#stale-note")
        expect(stale).to_have_text(
            re.compile(r"^Last updated \d+ s ago · reconnecting, you keep your place$"), timeout=20000
        )
        expect(customer.page.locator("#rank-box")).to_have_attribute("data-stale", "true")
        expect(customer.page.locator("#connection-announcer")).to_have_text(
            "The connection dropped. We are reconnecting, and you keep your place."
        )
        before = stale.text_content()
        expect(stale).not_to_have_text(before, timeout=3000)  # it keeps counting
        screenshot(customer.page, "people-stale")

        customer.page.unroute(re.compile(r".*/api/queue/.*"))
        blocker.lift()
        expect(stale).to_be_hidden(timeout=20000)
        expect(customer.page.locator("#rank-box")).to_have_attribute("data-stale", "false")
        expect(customer.page.locator("#connection-announcer")).to_have_text(
            "Connected again. Your place is up to date."
        )
        customer.expect_rank(1)

    in_browser(scenario)


# --- Plain words -------------------------------------------------------------------------


def test_the_customer_reads_no_transport_jargon_or_room_id_on_any_tier(site, counselor):
    def scenario(browser):
        customer = Person(browser, site)
        assert JARGON.search(customer.visible_text()) is None
        customer.join("Mina")
        customer.expect_tier("stomp")
        expect(customer.page.locator("#connection-text")).to_have_text("Live")
        assert JARGON.search(customer.visible_text()) is None
        # Support staff still find the transport: in the closed details and the tooltip.
        expect(customer.page.locator("#tier-text")).to_have_text("Live · STOMP over WebSocket")
        expect(customer.page.locator("#tier")).to_have_attribute("title", "Live · STOMP over WebSocket")

        polled = Person(browser, site, block=Blocker(websockets=("/ws/",), http=True))
        polled.join("Joon")
        polled.expect_tier("poll", timeout=20000)
        expect(polled.page.locator("#connection-text")).to_have_text("Checking every 1 s")
        assert JARGON.search(polled.visible_text()) is None

        set_status(site, counselor_token(site), "AVAILABLE")
        expect(customer.page.locator("#view-matched")).to_be_visible(timeout=5000)
        expect(customer.page.locator("#room-name")).to_have_text(re.compile(r"^hearo_"))  # kept for support
        assert JARGON.search(customer.visible_text()) is None
        customer.page.locator("#tech-details summary").click()
        assert "STOMP" in customer.visible_text()  # opened on purpose, for support

    in_browser(scenario)


def test_the_microphone_check_shows_a_level_and_says_what_to_do_when_refused(site):
    def scenario(browser):
        context = browser.new_context(locale="en-US")
        # A microphone that hums (an oscillator), so the meter has something to show.
        context.add_init_script(
            """navigator.mediaDevices.getUserMedia = async () => {
                 const audio = new AudioContext();
                 const tone = audio.createOscillator();
                 const out = audio.createMediaStreamDestination();
                 tone.connect(out); tone.start();
                 return out.stream;
               };"""
        )
        page = context.new_page()
        page.goto(site.url + "/")
        page.locator("#join-button").click()
        expect(page.locator("#rank")).to_have_text("1")
        page.locator("#mic-waiting summary").click()
        page.get_by_role("button", name="Test my microphone").click()
        expect(page.locator("#mic-waiting-message")).to_have_text("We can hear you. Your microphone works.")
        assert page.locator("#mic-waiting-level").evaluate("m => m.value") > 0
        screenshot(page, "people-mic-ok")
        page.get_by_role("button", name="Stop the test").click()

        refused = browser.new_context(locale="ko-KR")
        refused.add_init_script(
            """navigator.mediaDevices.getUserMedia = async () => {
                 throw new DOMException("denied", "NotAllowedError");
               };"""
        )
        korean = refused.new_page()
        korean.goto(site.url + "/")
        korean.locator("#join-button").click()
        expect(korean.locator("#rank")).to_have_text(re.compile(r"^\d$"))
        korean.locator("#mic-waiting summary").click()
        korean.get_by_role("button", name="마이크 테스트").click()
        expect(korean.locator("#mic-waiting-message")).to_contain_text("브라우저가 마이크 사용을 허용하지 않았습니다")
        screenshot(korean, "people-mic-denied-ko")

    in_browser(scenario)


# --- Focus and axe in every state -----------------------------------------------------------


def test_each_view_takes_the_focus_to_its_heading_and_passes_axe(site, counselor):
    def scenario(browser):
        customer = Person(browser, site)
        assert axe_serious_violations(customer.page) == [], "join"
        customer.join("Mina")
        assert customer.focused() == "waiting-title"
        customer.expect_tier("stomp")
        assert axe_serious_violations(customer.page) == [], "waiting"

        token = counselor_token(site)
        set_status(site, token, "AVAILABLE")
        expect(customer.page.locator("#view-matched")).to_be_visible(timeout=5000)
        expect(customer.page.locator("#matched-title")).to_be_focused()
        assert axe_serious_violations(customer.page) == [], "matched"

        match_id = site.call("GET", "/api/queue/rank", headers=customer.bearer())[1]["matchId"]
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=customer.bearer())[0] == 200
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=token)[0] == 200
        expect(customer.page.locator("#matched-title")).to_have_text("You are in your call with Alice")
        expect(customer.page.locator("#waiting-app")).to_have_attribute("data-view", "call")
        expect(customer.page.locator("#matched-title")).to_be_focused()

        # Back in line (the counselor let the match go), then leave: each moves the focus.
        assert site.call("POST", f"/api/matches/{match_id}/release", {"reason": "test"}, token)[0] == 200
        expect(customer.page.locator("#back-title")).to_be_focused(timeout=5000)
        set_status(site, token, "AWAY")
        assert axe_serious_violations(customer.page) == [], "back in line"

        customer.page.locator("#cancel-button").click()
        expect(customer.page.locator("#ended-title")).to_be_focused()
        assert axe_serious_violations(customer.page) == [], "ended"
        customer.page.locator("#rejoin-button").click()
        expect(customer.page.locator("#waiting-title")).to_be_focused()
        assert customer.errors == []

    in_browser(scenario)


def test_the_korean_page_speaks_korean_in_the_new_places(site):
    quiet_line()

    def scenario(browser):
        customer = Person(browser, site, locale="ko-KR")
        join_quiet_line(customer, "민아")
        customer.expect_tier("stomp")
        expect(customer.page.locator("#connection-text")).to_have_text("실시간")
        expect(customer.page.locator("#eta")).to_have_text("지금은 접속한 상담사가 없습니다", timeout=8000)
        expect(customer.page.get_by_label("내 차례가 되면 소리로 알리기")).to_be_checked()
        text = customer.visible_text()
        assert JARGON.search(text) is None
        assert not re.search(r"[A-Za-z]{4,}", text.replace("HearO", "").replace("English", "")), text
        screenshot(customer.page, "people-waiting-ko")

    in_browser(scenario)

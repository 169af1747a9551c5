"""The counselor's side of the hand-off: release, a call server that cannot be reached, a stale queue, axe.

The call server is "a closed port": the token's LiveKit URL is rewritten to
a port nothing listens on, so the page's real join fails the way it does in
the field and reports call_failed through the real server.
"""

import json
import os
import re
import shutil
import socket
import threading
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from playwright.sync_api import Page, expect

from matching.models import Counselor, Match
from queues.models import Registration
from tests.pages.browser import Blocker, DashboardPage, Site, axe_serious_violations, in_browser, screenshot
from tests.pages.test_dashboard_routing import single_line
from tests.support.processes import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-pass-1"  # the `counselor` fixture's
README_SHOT = ROOT / "docs" / "screenshots" / "dashboard.png"
UNREACHABLE_EN = (
    "The call server can't be reached. The customer has been put back at the front of the line. You are available."
)


def closed_port() -> int:
    """Return a local port nothing listens on (bound once, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def point_calls_at(page: Page, url: str) -> None:
    """Rewrite the LiveKit token's server URL, as a misconfigured or unreachable call server would be."""

    def rewrite(route):
        response = route.fetch()
        body = response.json()
        body["url"] = url
        route.fulfill(response=response, body=json.dumps(body))

    page.route(re.compile(r".*/api/livekit/token$"), rewrite)


def orm(read):
    """Run an ORM read from the browser's thread (Django refuses it there: Playwright's loop runs)."""
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = read()
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    return result["value"]


class Visitor:
    """A customer who joins over REST (the waiting page has tests of its own): its token, its state."""

    def __init__(self, site: Site, name: str) -> None:
        self.site = site
        status, joined = site.call("POST", "/api/queue/join", {"displayName": name})
        assert status == 201, joined
        self.registration_id = joined["registrationId"]
        self.bearer = {"Authorization": f"Bearer {joined['token']}"}

    def beat(self) -> None:
        """Renew the lease, as the page's heartbeat would."""
        assert self.site.call("POST", "/api/queue/heartbeat", headers=self.bearer)[0] == 200

    def state(self) -> dict:
        status, body = self.site.call("GET", "/api/queue/rank", headers=self.bearer)
        assert status == 200, body
        return body

    def expect_rank(self, rank: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state()).get("rank") != rank and time.monotonic() < deadline:
            time.sleep(0.2)
        assert state["status"] == "WAITING" and state["rank"] == rank, state


def signed_in(browser, site, locale: str = "en-US", block: Blocker | None = None) -> DashboardPage:
    dashboard = DashboardPage(browser, site, username="alice", password=PASSWORD, locale=locale)
    if block is not None:
        block.install(dashboard.page)
    dashboard.sign_in()
    expect(dashboard.page.locator("#tier")).to_have_attribute("data-tier", "stomp", timeout=20000)
    return dashboard


def shoot(page: Page, name: str, *, readme: bool = False) -> None:
    """Screenshots at the two widths counselors use; the README's at 1440 px."""
    for width in (1100, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        path = screenshot(page, f"{name}-{width}")
        if readme and width == 1440 and os.environ.get("HEARO_README_SCREENSHOTS") == "1":
            README_SHOT.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, README_SHOT)
    page.set_viewport_size({"width": 1100, "height": 900})


def test_a_counselor_releases_a_customer_who_goes_back_to_the_head_of_the_line(site, counselor):
    def scenario(browser):
        customer = Visitor(site, "Mina")
        customer.expect_rank(1)
        dashboard = signed_in(browser, site)
        page = dashboard.page
        expect(page.locator("#status-busy")).to_be_hidden()
        dashboard.status_button("AVAILABLE").click()

        # Matched: the countdown to the join deadline runs, the focus is on the news.
        expect(page.locator("#match-alert-title")).to_have_text("New customer: Mina")
        expect(page.locator("#join-countdown")).to_have_text(re.compile(r"^[01]:\d\d left to join$"))
        expect(page.locator("#match-alert-title")).to_be_focused()
        expect(page.locator("#announce")).to_have_text("New customer: Mina")
        first = page.locator("#join-countdown").text_content()
        expect(page.locator("#join-countdown")).not_to_have_text(first)  # it counts down
        # The status buttons stay reachable and say what to do instead of going dead.
        away = dashboard.status_button("AWAY")
        expect(away).to_have_attribute("aria-disabled", "true")
        assert away.evaluate("(el) => !el.disabled")  # focusable, and it answers
        expect(page.locator("#status-busy")).to_be_visible()
        away.focus()
        page.keyboard.press("Enter")
        expect(page.locator("#release-button")).to_be_focused()
        expect(page.locator("#current-status")).to_have_text("In a session")
        registration_id = customer.registration_id
        arrival = orm(lambda: Registration.objects.get(pk=registration_id).virtual_arrival)

        page.locator("#release-button").click()
        expect(page.locator("#release-form")).to_be_visible()
        expect(page.locator("#release-reason-cannot")).to_be_focused()
        page.get_by_label("I can't take this call").check()
        page.get_by_label("Anything else (optional)").fill("headset broke")
        shoot(page, "dashboard-release-form-en")
        assert axe_serious_violations(page) == []
        with page.expect_response(re.compile(r"/api/matches/\d+/release$")) as released:
            page.locator("#release-confirm").click()
        assert released.value.status == 200
        assert released.value.request.post_data_json == {"reason": "cannot_take_call: headset broke"}

        ended = page.locator("#match-ended")
        expect(ended).to_contain_text("You released the customer. They are back at the front of the line.")
        expect(page.locator("#match-ended-status")).to_have_text("You are available.")
        expect(page.locator("#match-ended-title")).to_be_focused()
        expect(page.locator("#current-status")).to_have_text("Available")
        expect(page.locator("#history-body tr").first).to_contain_text("released")
        customer.beat()
        customer.expect_rank(1)

        # Back in line with its arrival kept, ranked first.
        visit = orm(lambda: Registration.objects.get(pk=registration_id))
        assert visit.status == Registration.Status.WAITING and visit.virtual_arrival == arrival
        assert customer.state()["reason"] == "released"  # and its page is told why
        assert orm(lambda: Match.objects.get(registration_id=registration_id).end_reason) == "released"

        # The next customer goes to the counselor; the released one keeps the head for another.
        Visitor(site, "Jun")
        expect(page.locator("#match-alert-title")).to_have_text("New customer: Jun", timeout=10000)
        customer.expect_rank(1)
        assert dashboard.errors == []

    in_browser(scenario)
    assert Counselor.objects.get(pk=counselor.pk).status == Counselor.Status.BUSY


@pytest.mark.parametrize("language", ["en", "ko"])
def test_an_unreachable_call_server_ends_the_match_as_call_failed_and_the_counselor_stays_available(
    site, counselor, language
):
    def scenario(browser):
        customer = Visitor(site, "Mina")
        customer.expect_rank(1)
        dashboard = signed_in(browser, site, locale="ko-KR" if language == "ko" else "en-US")
        page = dashboard.page
        point_calls_at(page, f"ws://127.0.0.1:{closed_port()}")
        dashboard.status_button("AVAILABLE").click()
        expect(page.locator("#match-details")).to_be_visible()
        expect(page.locator("#join-countdown")).to_be_visible()
        shoot(page, f"dashboard-assigned-{language}", readme=language == "en")
        assert axe_serious_violations(page) == []

        with page.expect_request(re.compile(r"/api/matches/\d+/call-failed$"), timeout=30000) as reported:
            page.locator("#join-call-button").click()
        assert reported.value.post_data_json["reason"] in ("unreachable", "timeout")

        ended = page.locator("#match-ended")
        expect(ended).to_be_visible(timeout=10000)
        if language == "en":
            # The words of the brief, in the two parts the page keeps current.
            told, available = UNREACHABLE_EN.rsplit(" ", 3)[0], "You are available."
            expect(page.locator("#match-ended-text")).to_have_text(told)
            expect(page.locator("#match-ended-status")).to_have_text(available)
            expect(page.locator("#announce")).to_contain_text(told)  # said, politely, as well as shown
            expect(page.locator("#current-status")).to_have_text("Available")
        else:
            expect(ended).to_contain_text("통화 서버에 연결할 수 없습니다")
        expect(page.locator("#match-ended-title")).to_be_focused()
        expect(page.locator("#match-details")).to_be_hidden()
        customer.beat()
        customer.expect_rank(1)
        assert customer.state()["reason"] == "call_failed"
        shoot(page, f"dashboard-call-failed-{language}")
        assert axe_serious_violations(page) == []
        assert dashboard.errors == []
        return customer.state()

    state = in_browser(scenario)
    assert state["status"] == "WAITING" and state["rank"] == 1
    assert Match.objects.get().end_reason == "call_failed"
    # Nobody was a no-show: the counselor who tried is free, not sent AWAY.
    assert Counselor.objects.get(pk=counselor.pk).status == Counselor.Status.AVAILABLE


def test_the_longest_wait_stops_counting_while_the_dashboard_is_disconnected(site, counselor):
    blocker = Blocker()
    cut = {"state": False}
    status, joined = site.call("POST", "/api/queue/join", {"displayName": "Mina"})
    assert status == 201, joined
    # Waiting for 12 minutes and some: the longest wait reads "12 min 40 s", the widest it gets.
    then = timezone.now() - timedelta(minutes=12, seconds=40)
    Registration.objects.filter(pk=joined["registrationId"]).update(
        enqueued_at=then, virtual_arrival=then, queue_since=then
    )

    def scenario(browser):
        dashboard = signed_in(browser, site, block=blocker)
        page = dashboard.page
        page.route(
            re.compile(r".*/counselor/state$"), lambda route: route.abort() if cut["state"] else route.continue_()
        )
        longest = page.locator("#queue-longest")
        expect(longest).to_have_text(re.compile(r"^12 min \d+ s$"))
        expect(page.locator("#queue-stale")).to_be_hidden()

        # The network goes: no socket, no SockJS, no REST read.
        blocker.websockets, blocker.http, cut["state"] = ("/ws/",), True, True
        page.evaluate("window.hearoClient.link.client.forceDisconnect()")
        stale = page.locator("#queue-stale")
        expect(stale).to_have_text(re.compile(r"^Last updated \d+ s ago · reconnecting…$"), timeout=15000)
        expect(page.locator("#queue-stats")).to_have_attribute("data-stale", "true")
        held = longest.text_content()
        expect(stale).to_have_text(re.compile(r"^Last updated [2-9]\d* s ago"), timeout=10000)
        assert longest.text_content() == held  # held, not counting on
        shoot(page, "dashboard-stale-en")
        color = page.locator("#queue-longest").evaluate("(el) => getComputedStyle(el).color")
        assert color == "rgb(74, 90, 102)"  # greyed (--muted)
        assert single_line(page, "#queue-longest")  # no "1 min 59 / s" at 1100 px

        # The network comes back: live again, counting again, and said so.
        blocker.lift()
        cut["state"] = False
        page.evaluate("window.dispatchEvent(new Event('online'))")
        expect(stale).to_be_hidden(timeout=15000)
        expect(page.locator("#queue-stats")).to_have_attribute("data-stale", "false")
        expect(page.locator("#announce")).to_have_text("Connected again: the queue is up to date.")
        now = longest.text_content()
        expect(longest).not_to_have_text(now, timeout=5000)
        assert dashboard.errors == []

    in_browser(scenario)


def test_the_dashboard_in_a_call_and_after_it_has_no_serious_accessibility_violation(site, counselor):
    def scenario(browser):
        dashboard = signed_in(browser, site)
        page = dashboard.page
        expect(page.locator("#dashboard-app")).to_have_attribute("aria-busy", "false")
        assert axe_serious_violations(page) == []  # idle, offline
        customer = Visitor(site, "Mina")
        dashboard.status_button("AVAILABLE").click()
        expect(page.locator("#match-details")).to_be_visible()
        match_id = customer.state()["matchId"]

        # Both sides join (as LiveKit's webhook would say): the view changes, the focus follows.
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=customer.bearer)[0] == 200
        token = site.counselor_token("alice", PASSWORD)
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=token)[0] == 200
        expect(page.locator("#match-alert-title")).to_have_text("In the call with Mina")
        expect(page.locator("#match-alert-title")).to_be_focused()
        expect(page.locator("#join-countdown")).to_be_hidden()
        expect(page.locator("#complete-button")).to_be_visible()
        expect(page.locator("#release-button")).to_be_visible()
        assert axe_serious_violations(page) == []
        shoot(page, "dashboard-in-call-en")

        # The customer's connection drops and comes back (the server's messages, injected).
        inject(
            page,
            {
                "type": "MATCH_INTERRUPTED",
                "matchId": match_id,
                "side": "customer",
                "reconnectUntil": int(time.time() * 1000) + 45000,
                "timestamp": int(time.time() * 1000),
            },
        )
        expect(page.locator("#match-interrupted")).to_contain_text("Mina's connection dropped.")
        expect(page.locator("#match-interrupted-countdown")).to_have_text(re.compile(r"^0:(4[0-5]|3\d) left$"))
        expect(page.locator("#match-alert-title")).to_be_focused()
        assert axe_serious_violations(page) == []
        inject(page, {"type": "MATCH_RESUMED", "matchId": match_id})
        expect(page.locator("#match-interrupted")).to_be_hidden()
        expect(page.locator("#announce")).to_contain_text("The call resumed.")

        page.locator("#complete-button").click()
        expect(page.locator("#match-ended-text")).to_have_text("The session is complete.")
        expect(page.locator("#match-ended-title")).to_be_focused()
        assert axe_serious_violations(page) == []
        assert dashboard.errors == []

    in_browser(scenario)


def inject(page: Page, body: dict) -> None:
    """Deliver a counselor-topic message as if the server had pushed it."""
    page.evaluate("(body) => window.hearoClient._deliver(body, false)", body)


def test_each_ending_is_told_in_plain_words(site, counselor):
    """The endings the server decides on its own (no-shows, drops), told as MATCH_ENDED says them."""
    endings = [
        ({"reason": "call_dropped", "by": "customer"}, "The customer's connection dropped and did not come back."),
        ({"reason": "call_dropped", "by": "counselor"}, "Your connection dropped and did not come back in time."),
        ({"reason": "customer_no_show"}, "The customer did not join in time. The session has ended."),
        ({"reason": "counselor_no_show"}, "You did not join in time."),
        ({"reason": "call_failed", "by": "customer", "failure": "permission_denied"}, "The call could not start."),
    ]

    def scenario(browser):
        dashboard = signed_in(browser, site)
        page = dashboard.page
        # These matches exist only on the page: once the first state read is in, keep the
        # later re-reads from undoing them.
        expect(page.locator("#dashboard-app")).to_have_attribute("aria-busy", "false")
        page.route(re.compile(r".*/counselor/state$"), lambda route: route.abort())
        for index, (ending, words) in enumerate(endings, start=1):
            match = {
                "type": "MATCH_ASSIGNED",
                "matchId": 9000 + index,
                "roomName": f"hearo_test_{index}",
                "customerName": "Mina",
                "joinDeadline": int(time.time() * 1000) + 60000,
                "timestamp": int(time.time() * 1000),
            }
            inject(page, match)
            expect(page.locator("#join-countdown")).to_have_text(re.compile(r"^(1:00|0:5\d) left to join$"))
            inject(page, {"type": "MATCH_ENDED", "matchId": 9000 + index, **ending})
            expect(page.locator("#match-ended-text")).to_contain_text(words)
            expect(page.locator("#match-ended-title")).to_be_focused()
        assert dashboard.errors == []

    in_browser(scenario)

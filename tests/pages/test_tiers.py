"""The four tiers in a real browser: step down under a block, reach MATCHED, step back up."""

import re

import pytest
from playwright.sync_api import expect

from tests.pages.browser import Blocker, CustomerPage, DashboardPage, in_browser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-pass-1"  # the `counselor` fixture's

TIERS = [
    # what the test blocks: WebSocket path prefixes, SockJS's HTTP → the tier and transport left
    pytest.param(("/ws/stomp",), False, "sockjs", "websocket", id="stomp-blocked"),
    pytest.param(("/ws/",), False, "sockjs", "xhr-streaming", id="websockets-blocked"),
    pytest.param(("/ws/stomp", "/ws/sockjs"), True, "raw", "websocket", id="stomp-sockjs-blocked"),
    pytest.param(("/ws/",), True, "poll", "http", id="everything-blocked"),
]
LABELS = {
    "sockjs": "Live · STOMP over SockJS ({transport})",
    "raw": "Live · JSON over WebSocket",
    "poll": "Checking every 1 s · REST polling",
}


@pytest.mark.parametrize(("websockets", "http", "tier", "transport"), TIERS)
def test_the_page_reaches_matched_on_the_tier_left_and_steps_back_up(
    site, counselor, websockets, http, tier, transport
):
    token = site.counselor_token("alice", PASSWORD)

    def scenario(browser):
        blocker = Blocker(websockets=websockets, http=http)
        customer = CustomerPage(browser, site, block=blocker)
        customer.join("Mina")
        customer.expect_rank(1)
        customer.expect_tier(tier, transport)
        expect(customer.page.locator("#tier-text")).to_have_text(LABELS[tier].format(transport=transport))
        for prefix in websockets:
            assert any(path.startswith(prefix) for path in blocker.refused), f"{prefix} was never tried"
        with customer.page.expect_request(re.compile(r"/api/queue/heartbeat$"), timeout=3000):
            pass  # the REST heartbeat goes on whatever the tier

        status, _ = site.call("POST", "/api/counselor/status", {"status": "AVAILABLE"}, headers=token)
        assert status == 200
        expect(customer.page.locator("#room-name")).to_have_text(re.compile(r"^hearo_"), timeout=5000)
        room = site.call("GET", "/counselor/state", headers=token)[1]["openMatch"]["roomName"]
        expect(customer.page.locator("#room-name")).to_have_text(room)
        customer.expect_tier(tier, transport)  # MATCHED arrived on that tier
        screenshot(customer.page, f"tier-{tier}-{transport}-matched")

        blocker.lift()
        customer.expect_tier("stomp", "websocket", timeout=15000)
        expect(customer.page.locator("#tier-text")).to_have_text("Live · STOMP over WebSocket")
        # The snapshot after the new subscription is the truth: still matched, same room.
        expect(customer.page.locator("#room-name")).to_have_text(room)
        expect(customer.page.locator("#view-matched")).to_be_visible()
        assert customer.errors == []

    in_browser(scenario)


def test_the_page_steps_down_when_its_socket_dies_and_keeps_the_rank(site):
    def scenario(browser):
        blocker = Blocker()
        ahead, customer = CustomerPage(browser, site), CustomerPage(browser, site, block=blocker)
        ahead.join("Ahead")
        ahead.expect_rank(1)
        customer.join("Me")
        customer.expect_rank(2)
        customer.expect_tier("stomp")
        # The network now refuses every WebSocket and SockJS: the live socket dies too.
        blocker.websockets, blocker.http = ("/ws/",), True
        customer.page.evaluate("window.hearoClient.link.client.forceDisconnect()")
        customer.expect_tier("poll", "http", timeout=15000)
        ahead.page.locator("#cancel-button").click()
        customer.expect_rank(1, timeout=5000)  # learnt by polling

    in_browser(scenario)


def test_the_dashboard_follows_the_queue_and_the_match_over_rest_polling(site, counselor):
    def scenario(browser):
        dashboard = DashboardPage(browser, site, username="alice", password=PASSWORD, locale="ko-KR")
        Blocker(websockets=("/ws/",), http=True).install(dashboard.page)
        dashboard.sign_in()
        page = dashboard.page
        expect(page.locator("#tier")).to_have_attribute("data-tier", "poll", timeout=15000)
        expect(page.locator("#tier-text")).to_have_text("1초마다 확인 · REST 폴링")
        expect(page.locator("#current-status")).to_have_text("오프라인")
        customer = CustomerPage(browser, site)
        customer.join("Mina")
        expect(page.locator("#queue-waiting")).to_have_text("1", timeout=5000)
        dashboard.status_button("AVAILABLE").click()
        expect(customer.page.locator("#room-name")).to_have_text(re.compile(r"^hearo_"), timeout=5000)
        room = customer.page.locator("#room-name").text_content()
        expect(page.locator("#match-room")).to_have_text(room, timeout=5000)
        expect(page.locator("#match-alert")).to_contain_text("Mina 님이")
        screenshot(page, "dashboard-ko-polling")

    in_browser(scenario)

"""The counselor dashboard with a customer: sign in, go AVAILABLE, the match, the call, complete."""

import re
import time

import pytest
from playwright.sync_api import expect

from tests.pages.browser import CustomerPage, DashboardPage, in_browser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-pass-1"  # the `counselor` fixture's


def test_a_counselor_goes_available_and_both_pages_show_the_same_room_within_a_second(site, counselor):
    def scenario(browser):
        customer = CustomerPage(browser, site)
        customer.join("Mina")
        customer.expect_rank(1)

        dashboard = DashboardPage(browser, site, username="alice", password=PASSWORD)
        screenshot_login(dashboard)
        dashboard.sign_in()
        page = dashboard.page
        expect(page.locator("#tier")).to_have_attribute("data-tier", "stomp", timeout=10000)
        expect(page.locator("#queue-waiting")).to_have_text("1")
        expect(page.locator("#skills-line")).to_have_text("You take: General counseling · in 한국어, English")
        expect(page.locator("#queue-longest")).to_have_text(re.compile(r"^\d+ s$"))
        expect(dashboard.status_button("OFFLINE")).to_have_attribute("aria-pressed", "true")
        expect(page.locator("#history-body")).to_have_text("No sessions yet today.")
        screenshot(page, "dashboard-offline")

        dashboard.status_button("AVAILABLE").click()
        # Functional bound from the issue: both pages name the room within a second.
        deadline = time.monotonic() + 1.5
        expect(customer.page.locator("#room-name")).to_have_text(re.compile(r"^hearo_"), timeout=1500)
        room = customer.page.locator("#room-name").text_content()
        left_ms = max(100, (deadline - time.monotonic()) * 1000)
        expect(page.locator("#match-room")).to_have_text(room, timeout=left_ms)

        expect(page.locator("#match-alert")).to_contain_text("Mina")
        expect(page.locator("#match-alert")).to_contain_text(room)
        expect(page.locator("#current-status")).to_have_text("In a session")
        expect(page.locator("#queue-waiting")).to_have_text("0")
        expect(page.locator("#history-body tr")).to_have_count(1)
        expect(page.locator("#history-body")).to_contain_text("in progress")
        expect(customer.page.locator("#matched-status")).to_have_text("Ready: join the call when you are")
        screenshot(page, "dashboard-match-assigned")
        screenshot(customer.page, "waiting-matched")

        # The customer reads whom it will talk to; the room id is only for the call (and support).
        expect(customer.page.locator("#matched-title")).to_contain_text("Alice")
        # The customer's room token names the same room. No LiveKit server runs here (the page's
        # Join would report call-failed and end the match: test_waiting_people covers that path).
        status, grant = site.call("POST", "/api/livekit/token", headers=customer.bearer())
        assert status == 200 and grant["roomName"] == room

        # Both sides confirm as LiveKit's webhook would; the dashboard can then complete.
        match_id = site.call("GET", "/api/queue/rank", headers=customer.bearer())[1]["matchId"]
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=customer.bearer())[0] == 200
        token_header = site.counselor_token("alice", PASSWORD)
        assert site.call("POST", f"/api/matches/{match_id}/joined", headers=token_header)[0] == 200
        expect(customer.page.locator("#matched-status")).to_have_text("In your call")
        expect(page.locator("#complete-button")).to_be_enabled()

        page.locator("#complete-button").click()
        expect(customer.page.locator("#ended-title")).to_have_text("Your session has ended")
        expect(customer.page.locator("#rejoin-button")).to_be_visible()
        # A minute of wrap-up (the default queue's) counts down; "Available" ends it early.
        expect(page.locator("#current-status")).to_have_text("Wrapping up")
        expect(page.locator("#wrap-up-countdown")).to_have_text(re.compile(r"^Next customer in 0:(5\d|60)$"))
        expect(page.locator("#match-details")).to_be_hidden()
        expect(page.locator("#history-body tr").first).to_contain_text("completed")
        screenshot(page, "dashboard-wrap-up")
        dashboard.status_button("AVAILABLE").click()
        expect(page.locator("#current-status")).to_have_text("Available")
        expect(page.locator("#wrap-up")).to_be_hidden()
        screenshot(page, "dashboard-history")
        screenshot(customer.page, "waiting-completed")
        assert customer.errors == [] and dashboard.errors == []

    in_browser(scenario)


def screenshot_login(dashboard: DashboardPage) -> None:
    dashboard.page.goto(dashboard.site.url + "/accounts/login/")
    screenshot(dashboard.page, "login-en")


def test_the_dashboard_is_for_counselors_only(site, django_user_model):
    django_user_model.objects.create_user(username="bob", password="not-a-counselor-1")

    def scenario(browser):
        visitor = DashboardPage(browser, site, username="bob", password="not-a-counselor-1")
        visitor.sign_in()
        expect(visitor.page.locator("h1")).to_have_text("This account is not a counselor")
        response = visitor.page.request.get(site.url + "/counselor/state")
        assert response.status == 403 and response.json()["error"] == "forbidden"

    in_browser(scenario)
    status, body = site.call("GET", "/counselor/state")
    assert (status, body["error"]) == (401, "unauthorized")

"""The customer's waiting page in a real browser: ranks, cancel, reload, languages, access."""

import re

import pytest
from playwright.sync_api import expect

from tests.pages.browser import CustomerPage, contrast, in_browser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_two_customers_see_ranks_1_and_2_and_the_second_moves_up_when_the_first_leaves(site):
    def scenario(browser):
        first, second = CustomerPage(browser, site), CustomerPage(browser, site)
        # The first joins with the keyboard only: type a name, press Enter.
        first.page.locator("#display-name").focus()
        first.page.keyboard.type("Mina")
        first.page.keyboard.press("Enter")
        first.expect_rank(1)
        second.join("Joon")
        second.expect_rank(2)
        first.expect_tier("stomp", "websocket")
        second.expect_tier("stomp", "websocket")
        expect(second.page.locator("#status-text")).to_have_text("Waiting for a counselor")
        # Never blank, never "estimating…": nobody is on shift, but the server's wait board is cached
        # for a few seconds, so right after another test it may still count that test's counselor.
        honest = re.compile(r"^(no counselor is online right now|about \d+ min|less than a minute)$")
        expect(second.page.locator("#eta")).to_have_text(honest)
        expect(second.page.locator("#tier-text")).to_have_text("Live · STOMP over WebSocket")
        # Screen readers hear the rank change: it lives in a polite live region.
        expect(second.page.locator("[aria-live=polite]").locator("#rank")).to_have_count(1)
        screenshot(second.page, "waiting-rank-2")

        second.page.evaluate("window.__sameDocument = true")
        first.page.locator("#cancel-button").focus()
        first.page.keyboard.press("Enter")
        expect(first.page.locator("#ended-title")).to_have_text("You left the queue")
        expect(first.page.locator("#rejoin-button")).to_be_visible()
        second.expect_rank(1)
        assert second.page.evaluate("window.__sameDocument") is True, "the page reloaded"
        expect(second.page.locator("#rank-note")).to_have_text("You are next.")
        screenshot(first.page, "waiting-cancelled")

        # Rejoining keeps the customer (same customerId), now behind the second.
        customer = first.visit()["customerId"]
        first.page.locator("#rejoin-button").click()
        first.expect_rank(2)
        assert first.visit()["customerId"] == customer
        assert first.errors == [] and second.errors == []

    in_browser(scenario)


def test_a_reload_keeps_the_place(site):
    def scenario(browser):
        ahead, me = CustomerPage(browser, site), CustomerPage(browser, site)
        ahead.join("Ahead")
        ahead.expect_rank(1)
        me.join("Me")
        me.expect_rank(2)
        before = me.visit()
        me.page.reload()
        expect(me.page.locator("#view-waiting")).to_be_visible()
        me.expect_rank(2)
        me.expect_tier("stomp")
        assert me.visit() == before  # the same token: the same visit, not a new one
        expect(me.page.locator("#view-join")).to_be_hidden()

    in_browser(scenario)


def test_korean_is_the_default_english_comes_by_accept_language_and_by_the_switch(site):
    def scenario(browser):
        korean = CustomerPage(browser, site, locale="fr-FR")  # not offered: the default, Korean
        expect(korean.page.locator("html")).to_have_attribute("lang", "ko")
        expect(korean.page.locator("#join-title")).to_have_text("상담사와 이야기하기")
        korean.join("민아")
        korean.expect_rank(1)
        expect(korean.page.locator("#status-text")).to_have_text("상담사를 기다리는 중")
        expect(korean.page.locator("#tier-text")).to_have_text("실시간 · STOMP (WebSocket)")
        screenshot(korean.page, "waiting-ko")

        english = CustomerPage(browser, site, locale="en-US")
        expect(english.page.locator("html")).to_have_attribute("lang", "en")
        expect(english.page.locator("#join-title")).to_have_text("Talk to a counselor")
        screenshot(english.page, "join-en")

        # The switch: the page comes back in English, still in the queue.
        korean.page.get_by_role("button", name="English").click()
        expect(korean.page.locator("html")).to_have_attribute("lang", "en")
        korean.expect_rank(1)
        expect(korean.page.locator("#status-text")).to_have_text("Waiting for a counselor")
        screenshot(korean.page, "waiting-en")

        korean.page.goto(site.url + "/accounts/login/")
        expect(korean.page.locator("h1")).to_have_text("Counselor sign-in")
        korean.page.get_by_role("button", name="한국어").click()
        expect(korean.page.locator("h1")).to_have_text("상담사 로그인")
        screenshot(korean.page, "login-ko")

    in_browser(scenario)


def test_the_page_has_aa_contrast_and_a_large_rank(site):
    def scenario(browser):
        customer = CustomerPage(browser, site)
        for selector in ("#join-title", "#view-join .lede", "label[for=display-name]", "#join-button"):
            assert contrast(customer.page, selector) >= 4.5, selector
        customer.join()
        customer.expect_rank(1)
        for selector in ("#rank", ".rank-label", "#eta", "#cancel-button", "#tier-text"):
            assert contrast(customer.page, selector) >= 4.5, selector
        size = customer.page.locator("#rank").evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
        assert size >= 64
        # Every control is reachable with Tab.
        customer.page.keyboard.press("Tab")
        focused = set()
        for _ in range(8):
            focused.add(customer.page.evaluate("document.activeElement.id || document.activeElement.textContent"))
            customer.page.keyboard.press("Tab")
        assert "cancel-button" in focused
        assert any(re.search("English", name or "") for name in focused)

    in_browser(scenario)

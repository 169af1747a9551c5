"""The waiting page's lines in a real browser: topics, languages, urgent help, closed and full lines, moves."""

import re
import threading
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from playwright.sync_api import Browser, expect

from queues.models import Queue, Registration
from queues.services import queue_default
from tests.pages.browser import CustomerPage, Site, contrast, in_browser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SEOUL = ZoneInfo("Asia/Seoul")
YOUTH_HELPLINE = {"label": {"ko": "청소년 상담 1388", "en": "Youth helpline"}, "phone": "1388"}
NIGHT_HELP = {"label": {"ko": "자살예방 상담", "en": "Suicide prevention line"}, "phone": "109"}
WEB_HELP = {"label": {"ko": "온라인 상담", "en": "Chat online"}, "url": "https://www.cyber1388.kr/"}


class SeoulCustomer(CustomerPage):
    """The waiting page as a customer in Seoul sees it (times shown in KST), at a chosen width."""

    def __init__(self, browser: Browser, site: Site, *, locale: str = "en-US", width: int = 1024) -> None:
        self.context = browser.new_context(
            locale=locale, timezone_id="Asia/Seoul", viewport={"width": width, "height": 900}
        )
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.blocker = None
        self.page.goto(site.url + "/")

    def topic(self, queue_id: str):
        return self.page.locator(f"#topic-options .option[data-queue={queue_id}]")

    def pick(self, queue_id: str, language: str | None = None) -> None:
        self.page.locator(f"#queue-{queue_id}").check()
        if language:
            self.page.locator(f"#language-{language}").check()

    def join_picked(self) -> None:
        self.page.locator("#join-button").click()
        expect(self.page.locator("#view-waiting")).to_be_visible()


def tomorrow_nine_to_six() -> list[dict]:
    """Opening hours that leave the line closed all of today (Seoul time), opening tomorrow at 09:00."""
    tomorrow = (datetime.now(SEOUL) + timedelta(days=1)).weekday()
    return [{"day": tomorrow, "opens": "09:00", "closes": "18:00"}]


def lines(*, closed_night: bool = True, youth_cap: int | None = None) -> None:
    """General (the default), a youth line in Korean and English, and an evening line closed today."""
    queue_default()
    Queue.objects.create(
        queue_id="youth",
        name_ko="청소년 상담",
        name_en="Youth line",
        languages=["ko", "en"],
        max_waiting=youth_cap,
        alternatives=[YOUTH_HELPLINE, WEB_HELP],
    )
    Queue.objects.create(
        queue_id="night",
        name_ko="마음 상담",
        name_en="Talk it through",
        languages=["ko"],
        hours=tomorrow_nine_to_six() if closed_night else None,
        alternatives=[NIGHT_HELP],
    )


def queue_update(queue_id: str, **fields) -> None:
    """Change a queue while a page is open (the browser's thread runs an event loop; the ORM refuses it)."""

    def run() -> None:
        try:
            Queue.objects.filter(queue_id=queue_id).update(**fields)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()


def only_registration() -> Registration:
    registrations = list(Registration.objects.all())
    assert len(registrations) == 1, registrations
    return registrations[0]


def test_a_customer_picks_the_youth_line_in_english_on_the_korean_page_and_waits_in_it(site):
    lines()

    def scenario(browser):
        customer = SeoulCustomer(browser, site, locale="ko-KR")
        expect(customer.topic("youth")).to_be_visible()
        # The default line is picked, in the page's language, until the customer chooses.
        expect(customer.page.locator("#queue-general")).to_be_checked()
        expect(customer.page.locator("#language-ko")).to_be_checked()
        customer.pick("youth", "en")
        expect(customer.page.locator("#urgent-alternatives")).to_contain_text("청소년 상담 1388")
        customer.page.locator("#display-name").fill("민아")
        customer.join_picked()
        customer.expect_rank(1)
        expect(customer.page.locator("#queue-line")).to_have_text("청소년 상담 · English")
        # Focus follows the customer to the new view (the form is gone).
        assert customer.page.evaluate("document.activeElement.id") == "waiting-title"
        assert customer.visit()["queueId"] == "youth"
        customer.page.reload()
        customer.expect_rank(1)
        expect(customer.page.locator("#queue-line")).to_have_text("청소년 상담 · English")
        assert customer.errors == []

    in_browser(scenario)
    registration = only_registration()
    assert (registration.queue_id, registration.language, registration.urgent) == ("youth", "en", False)


def test_joining_without_picking_takes_the_default_line_as_before(site):
    lines()

    def scenario(browser):
        customer = SeoulCustomer(browser, site, locale="ko-KR")
        expect(customer.topic("youth")).to_be_visible()
        with customer.page.expect_request(re.compile(r"/api/queue/join$")) as sent:
            customer.join("민아")
        assert sent.value.post_data_json == {"displayName": "민아"}  # what the page always sent
        customer.expect_rank(1)
        expect(customer.page.locator("#queue-line")).to_have_text("일반 상담 · 한국어")

    in_browser(scenario)
    registration = only_registration()
    assert (registration.queue_id, registration.language) == ("general", "ko")


def test_a_closed_line_shows_when_it_opens_and_where_to_turn_and_cannot_be_picked(site):
    lines()

    def scenario(browser):
        customer = SeoulCustomer(browser, site)
        night = customer.topic("night")
        expect(night).to_have_attribute("data-state", "closed")
        expect(customer.page.locator("#queue-night")).to_be_disabled()
        expect(night.locator(".option-meta")).to_have_text(re.compile(r"^Closed now · opens tomorrow at 9:00\sAM$"))
        link = night.get_by_role("link", name=re.compile("Suicide prevention line"))
        expect(link).to_have_attribute("href", "tel:109")
        # The open lines carry no alternatives list of their own; the closed one keeps its radio unchecked.
        expect(customer.topic("youth").locator(".option-instead")).to_be_hidden()
        customer.page.locator("label[for=queue-night]").click(force=True)
        expect(customer.page.locator("#queue-night")).not_to_be_checked()
        expect(customer.page.locator("#queue-general")).to_be_checked()

    in_browser(scenario)


def test_a_line_that_fills_up_before_the_click_says_so_with_its_alternatives_and_creates_nothing(site):
    lines()

    def scenario(browser):
        customer = SeoulCustomer(browser, site)
        customer.pick("youth")
        queue_update("youth", max_waiting=0)  # full from now on
        customer.page.locator("#join-button").click()
        refused = customer.page.locator("#refused")
        expect(refused).to_be_visible()
        expect(customer.page.locator("#refused-text")).to_have_text(
            "This line is full right now, so we could not add you. Please try again in a few minutes."
        )
        expect(refused.get_by_role("link", name=re.compile("Youth helpline"))).to_have_attribute("href", "tel:1388")
        expect(refused.get_by_role("link", name=re.compile("Chat online"))).to_have_attribute(
            "href", "https://www.cyber1388.kr/"
        )
        expect(refused.get_by_role("link", name=re.compile("Emergency"))).to_have_attribute("href", "tel:119")
        assert customer.page.evaluate("document.activeElement.id") == "refused"
        # The list is read again: the full line can no longer be picked.
        expect(customer.topic("youth")).to_have_attribute("data-state", "full")
        expect(customer.page.locator("#view-join")).to_be_visible()
        screenshot(customer.page, "join-refused-full")

    in_browser(scenario)
    assert not Registration.objects.exists()


def test_a_line_that_closes_before_the_click_says_when_it_opens(site):
    lines(closed_night=False)

    def scenario(browser):
        customer = SeoulCustomer(browser, site)
        customer.pick("night")
        queue_update("night", hours=tomorrow_nine_to_six())
        customer.page.locator("#join-button").click()
        expect(customer.page.locator("#refused-text")).to_have_text(
            "This line is closed right now, so we could not add you."
        )
        expect(customer.page.locator("#refused-opens")).to_have_text(re.compile(r"^It opens tomorrow at 9:00\sAM\.$"))
        link = customer.page.locator("#refused").get_by_role("link", name=re.compile("Suicide prevention line"))
        expect(link).to_have_attribute("href", "tel:109")

    in_browser(scenario)
    assert not Registration.objects.exists()


def test_an_urgent_join_goes_ahead_and_the_customer_it_passed_is_told_why(site):
    lines()

    def scenario(browser):
        waiting = SeoulCustomer(browser, site)
        waiting.join("Joon")
        waiting.expect_rank(1)
        waiting.expect_tier("stomp")
        expect(waiting.page.locator("#rank-reason")).to_be_hidden()

        urgent = SeoulCustomer(browser, site)
        expect(urgent.page.locator("#urgent-field legend")).to_have_text("Are you in danger right now?")
        urgent.page.get_by_label("Yes, I am in danger right now").check()
        urgent.join("Mina")
        urgent.expect_rank(1)
        expect(urgent.page.locator("#urgent-note")).to_be_visible()
        expect(urgent.page.locator("#waiting-alternatives").get_by_role("link", name=re.compile("119"))).to_be_visible()

        waiting.expect_rank(2)
        reason = waiting.page.locator("#rank-reason")
        expect(reason).to_have_text("Someone who needs urgent help was placed ahead of you.")
        # It is inside the polite live region: a screen reader hears why the number went up.
        expect(waiting.page.locator("#rank-region #rank-reason")).to_have_count(1)
        screenshot(waiting.page, "waiting-urgent-ahead")
        assert waiting.errors == [] and urgent.errors == []

    in_browser(scenario)
    urgent = Registration.objects.get(customer__display_name="Mina")
    assert (urgent.queue_id, urgent.urgent) == ("general", True)


def test_with_no_counselor_online_the_page_says_so_instead_of_a_number(site):
    lines()

    def scenario(browser):
        customer = SeoulCustomer(browser, site, locale="ko-KR")
        customer.join()
        customer.expect_rank(1)
        expect(customer.page.locator("#eta-reason")).to_have_text(
            re.compile("^지금은 이 상담 창구를 맡은 상담사가 접속해 있지 않습니다. 순서는 그대로 유지되며")
        )
        expect(customer.page.locator("#eta-reason[aria-live=polite]")).to_have_count(1)

        english = SeoulCustomer(browser, site)
        english.join()
        expect(english.page.locator("#eta-reason")).to_have_text(re.compile("^No counselor is online for your line"))

    in_browser(scenario)


def test_an_overflow_tells_the_customer_it_moved_line_and_keeps_its_place_in_time(site):
    lines()
    Queue.objects.filter(queue_id="youth").update(overflow_queue_id="general", overflow_after_seconds=1)

    def scenario(browser):
        ahead = SeoulCustomer(browser, site, locale="ko-KR")
        ahead.join("Ahead")  # the general line, Korean
        moving = SeoulCustomer(browser, site)
        moving.pick("youth", "ko")
        moving.join_picked()
        expect(moving.page.locator("#queue-line")).to_have_text("Youth line · 한국어")
        # The matcher's next pass moves it; it joined after "Ahead", so it is second there.
        expect(moving.page.locator("#moved-note")).to_have_text(
            re.compile(r"^You were moved to another line, “General counseling”, .* still counts\.$"), timeout=20000
        )
        expect(moving.page.locator("#queue-line")).to_have_text("General counseling · 한국어")
        moving.expect_rank(2)
        assert moving.visit()["queueId"] == "general"
        screenshot(moving.page, "waiting-moved")

    in_browser(scenario)
    moved = Registration.objects.get(customer__display_name="")
    assert moved.queue_id == "general" and moved.virtual_arrival == moved.enqueued_at


def test_when_no_line_is_open_the_form_says_so_and_where_to_turn_instead(site):
    lines()
    queue_update("general", hours=tomorrow_nine_to_six())
    queue_update("youth", max_waiting=0)

    def scenario(browser):
        customer = SeoulCustomer(browser, site)
        expect(customer.page.locator("#none-open")).to_be_visible()
        expect(customer.page.locator("#join-button")).to_be_disabled()
        expect(customer.topic("general")).to_have_attribute("data-state", "closed")
        expect(customer.topic("youth")).to_have_attribute("data-state", "full")
        help_now = customer.page.locator("#none-open-alternatives")
        for number in ("1388", "109", "119"):
            expect(help_now.locator(f"a[href='tel:{number}']")).to_have_count(1)
        screenshot(customer.page, "join-none-open")

    in_browser(scenario)


@pytest.mark.parametrize("locale", ["ko-KR", "en-US"])
def test_the_choices_fit_a_phone_and_a_desk(site, locale):
    lines()

    def scenario(browser):
        for width in (390, 1280):
            customer = SeoulCustomer(browser, site, locale=locale, width=width)
            expect(customer.topic("night")).to_have_attribute("data-state", "closed")
            overflow = customer.page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the page scrolls sideways at {width}px"
            for selector in ("#topic-field legend", ".option[data-state=closed] .option-meta", "#urgent-field legend"):
                assert contrast(customer.page, selector) >= 4.5, selector
            screenshot(customer.page, f"join-lines-{locale}-{width}")
            customer.page.get_by_label(re.compile("Yes, I am in danger|네, 지금 위험")).check()
            customer.join_picked()
            customer.expect_rank(1)
            screenshot(customer.page, f"waiting-line-{locale}-{width}")
            customer.page.locator("#cancel-button").click()
            expect(customer.page.locator("#view-ended")).to_be_visible()
            customer.context.close()

    in_browser(scenario)

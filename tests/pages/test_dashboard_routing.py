"""The dashboard of a counselor with several queues: its lines, their waits, staff changes and the wrap-up."""

import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from matching import counselors
from matching.models import Counselor
from queues.models import DEFAULT_QUEUE_ID, Queue, Registration
from tests.pages.browser import DashboardPage, in_browser, screenshot

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PASSWORD = "s3cret-pass-1"  # the `counselor` fixture's
SHOTS = Path(os.environ.get("HEARO_SHOTS", "/tmp/shots"))
# Who waits where (queue, language), and since how long: the lines must tell them apart.
CUSTOMERS = [
    ("general", "ko", 75),
    ("general", "en", 30),
    ("youth", "ko", 4 * 60 + 5),
    ("crisis", "ko", 12 * 60 + 40),
    ("crisis", "en", 50),
    ("crisis", "ko", 20),
]
EXPECTED = {
    "en": {"youth": "Youth line", "crisis": "Crisis line"},
    "ko": {"youth": "청소년 상담", "crisis": "위기 상담"},
}


@pytest.fixture
def three_lines(site, counselor):
    """Alice serves three queues in Korean and English; six customers wait in them."""
    Queue.objects.create(queue_id="youth", name_ko="청소년 상담", name_en="Youth line", languages=["ko"])
    Queue.objects.create(queue_id="crisis", name_ko="위기 상담", name_en="Crisis line", languages=["ko", "en"])
    body = {"queues": [DEFAULT_QUEUE_ID, "youth", "crisis"], "languages": ["ko", "en"]}
    counselors.counselor_skills_set(counselor_id=counselor.counselor_id, body=body, actor="test")
    tokens = []
    for queue_id, language, waited in CUSTOMERS:
        status, joined = site.call("POST", "/api/queue/join", {"queueId": queue_id, "language": language})
        assert status == 201, joined
        tokens.append(joined["token"])
        # As if they joined a while ago (the order inside each line is kept: earlier joins waited longer).
        then = timezone.now() - timedelta(seconds=waited)
        Registration.objects.filter(pk=joined["registrationId"]).update(
            enqueued_at=then, virtual_arrival=then, queue_since=then
        )
    return tokens


def keep_alive(site, tokens) -> None:
    """Beat for every waiting customer, so the server's sweep keeps them through the test."""
    for token in tokens:
        site.call("POST", "/api/queue/heartbeat", headers={"Authorization": f"Bearer {token}"})


def wrap_up(counselor: Counselor, seconds: int) -> None:
    """Put the counselor in wrap-up, as the end of a call in a queue with this wrap-up would."""
    # On shift first (AWAY: nobody is matched meanwhile), so it holds a lease the server's sweep sees.
    counselor = counselors.counselor_set_status(counselor=counselor, status=Counselor.Status.AWAY)
    with transaction.atomic():
        counselors.counselor_status_change(
            counselor=counselor, status=Counselor.Status.WRAP_UP, actor="test", wrap_up_seconds=seconds
        )


def shoot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (1100, 1440):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=SHOTS / f"{name}-{width}.png", full_page=True)
    screenshot(page, name)


@pytest.mark.parametrize("language", ["en", "ko"])
def test_the_dashboard_shows_each_queue_its_wait_and_the_wrap_up_countdown(site, counselor, three_lines, language):
    wrap_up(counselor, 119)
    keep_alive(site, three_lines)

    def scenario(browser):
        locale = "ko-KR" if language == "ko" else "en-US"
        dashboard = DashboardPage(browser, site, username="alice", password=PASSWORD, locale=locale)
        dashboard.sign_in()
        page = dashboard.page
        expect(page.locator("#tier")).to_have_attribute("data-tier", "stomp", timeout=10000)
        expect(page.locator("#queue-waiting")).to_have_text("6")
        rows = page.locator("#queue-lines-body tr")
        expect(rows).to_have_count(3)
        names = EXPECTED[language]
        expect(page.locator("#skills-line")).to_contain_text(names["youth"])
        expect(page.locator("#skills-line")).to_contain_text("English")
        crisis = page.locator("#queue-lines-body tr[data-queue-id=crisis]")
        expect(crisis.locator("td").nth(0)).to_have_text(names["crisis"])
        expect(crisis.locator("td").nth(1)).to_have_text("3")
        # The longest wait is the crisis line's first customer: 12 minutes and some seconds.
        minutes = re.compile(r"^12 ?(min|분)")
        expect(crisis.locator("td").nth(2)).to_have_text(minutes)
        expect(page.locator("#queue-longest")).to_have_text(minutes)
        expect(page.locator("#queue-lines-body tr[data-queue-id=youth] td").nth(1)).to_have_text("1")
        # The wrap-up counts down from about two minutes.
        expect(page.locator("#wrap-up")).to_be_visible()
        expect(page.locator("#current-status")).to_have_text("Wrapping up" if language == "en" else re.compile(r"\S"))
        expect(page.locator("#wrap-up-countdown")).to_have_text(re.compile(r"\b1:[0-5]\d\b"))
        expect(page.locator("#wrap-up-ready")).to_be_visible()
        shoot(page, f"dashboard-routing-wrap-up-{language}")
        assert single_line(page, "#queue-longest") and single_line(page, "#wrap-up-countdown")
        assert dashboard.errors == []

    in_browser(scenario)


def test_a_staff_change_reaches_the_open_dashboard_and_ready_ends_the_wrap_up_early(site, counselor, three_lines):
    wrap_up(counselor, 119)
    keep_alive(site, three_lines)
    counselor.user.is_staff = True  # the same person may be a supervisor; the staff API needs only is_staff
    counselor.user.save(update_fields=["is_staff"])
    staff = site.counselor_token("alice", PASSWORD)

    def scenario(browser):
        dashboard = DashboardPage(browser, site, username="alice", password=PASSWORD)
        dashboard.sign_in()
        page = dashboard.page
        expect(page.locator("#tier")).to_have_attribute("data-tier", "stomp", timeout=10000)
        expect(page.locator("#queue-lines-body tr")).to_have_count(3)

        # Staff take the crisis line away: the dashboard hears SKILLS and re-reads its lines.
        body = {"queues": [DEFAULT_QUEUE_ID, "youth"], "languages": ["ko"]}
        status, _ = site.call("PATCH", f"/api/admin/counselors/{counselor.counselor_id}", body, headers=staff)
        assert status == 200
        expect(page.locator("#queue-lines-body tr")).to_have_count(2)
        expect(page.locator("#queue-lines-body tr[data-queue-id=crisis]")).to_have_count(0)
        expect(page.locator("#queue-waiting")).to_have_text("3")
        expect(page.locator("#skills-line")).to_have_text("You take: General counseling, Youth line · in 한국어")

        keep_alive(site, three_lines)
        page.locator("#wrap-up-ready").click()
        expect(page.locator("#wrap-up")).to_be_hidden()
        # Available at once, and with customers waiting the matcher may hand one over straight away.
        expect(page.locator("#current-status")).to_have_text(re.compile(r"^(Available|In a session)$"))
        assert dashboard.errors == []

    in_browser(scenario)
    counselor.refresh_from_db()
    assert counselor.status in (Counselor.Status.AVAILABLE, Counselor.Status.BUSY)


def single_line(page, selector: str) -> bool:
    """Return whether an element's text fits on one line (no "1 min 59 / s")."""
    return page.locator(selector).evaluate(
        "(el) => { const r = document.createRange(); r.selectNodeContents(el); return r.getClientRects().length <= 1; }"
    )

"""The pages: the customer's waiting room, the counselor's dashboard and its JSON.

The pages are static shells; everything live comes from the REST API and the
realtime tiers, driven by ``static/js/hearo-client.js``. What the scripts need
to know (URLs, intervals, translated strings) is handed over once, through
``json_script``, so the JavaScript holds no settings and no texts of its own.
"""

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.middleware.csrf import get_token
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.utils.translation import get_language, get_language_info
from django.utils.translation import gettext as _
from drf_spectacular.utils import extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from common.errors import DomainError
from common.events import epoch_ms
from matching import dashboard
from matching.selectors import counselor_for_user, counselor_profile
from queues.models import DEFAULT_QUEUE_ID
from queues.selectors import queue_languages, queue_names, queue_order
from realtime.hub import queue_stats_body

# SockJS transports in the order tier 2 tries them: a WebSocket first, then
# HTTP streaming for proxies that refuse upgrades, then plain long-polling.
SOCKJS_TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling"]

# Shown beside the urgent question whatever the queue lists: a customer in
# danger must always see a number that answers now (Korea's emergency line).
EMERGENCY_PHONE = "119"


def client_config(request, **extra) -> dict:
    """Return what hearo-client.js needs: endpoints and intervals."""
    return {
        "stompUrl": "/ws/stomp",
        "sockjsUrl": "/ws/sockjs",
        "sockjsTransports": SOCKJS_TRANSPORTS,
        "rawUrl": "/ws/raw",
        "pollSeconds": settings.HEARO_POLL_SECONDS,
        "heartbeatSeconds": settings.HEARO_HEARTBEAT_SECONDS,
        # Probe better tiers at least every three polls: a client stuck on a
        # lower tier costs the server more than a failed probe does.
        "retryMaxSeconds": max(3, 3 * settings.HEARO_POLL_SECONDS),
        "livekitUrl": settings.LIVEKIT_URL,
        "livekitScript": static("vendor/livekit/livekit-client.umd.js"),
        "csrfToken": get_token(request),
        "debug": settings.DEBUG,
        **extra,
    }


def language_names() -> dict[str, str]:
    """Return each language a queue may serve, named in its own language (한국어, English)."""
    names = {}
    for code in queue_languages():
        try:
            names[code] = get_language_info(code)["name_local"]
        except KeyError:
            names[code] = code
    return names


def tier_strings() -> dict:
    return {
        "tier.connecting": _("Connecting…"),
        "tier.stomp": _("Live · STOMP over WebSocket"),
        "tier.sockjs": _("Live · STOMP over SockJS (%(transport)s)"),
        "tier.raw": _("Live · JSON over WebSocket"),
        "tier.poll": _("Checking every %(seconds)s s · REST polling"),
        "tier.offline": _("Reconnecting…"),
    }


def waiting_strings() -> dict:
    """Return the waiting page's texts in the request's language."""
    return {
        **tier_strings(),
        "eta.soon": _("less than a minute"),
        "eta.minutes": _("about %(minutes)s min"),
        "status.WAITING": _("Waiting for a counselor"),
        "status.MATCHED": _("Ready: join the call when you are"),
        "status.IN_CALL": _("In your call"),
        "status.COMPLETED": _("Your session has ended"),
        "status.CANCELLED": _("You left the queue"),
        "status.EXPIRED": _("Your place in the queue expired"),
        "announce.MATCHED": _("A counselor is ready for you. Join the call when you are ready."),
        "ended.completed": _("Thank you for talking with us. We hope it helped."),
        "ended.cancelled": _("You are no longer in the queue. You can join again whenever you are ready."),
        "ended.lease_expired": _(
            "We lost contact with this page for a while, so your place was released. Please join again."
        ),
        "ended.customer_no_show": _(
            "A counselor was ready, but the call was not joined in time. Please join again when you can talk."
        ),
        "ended.default": _("Your visit has ended. You can join again at any time."),
        "call.fetching": _("Preparing your call…"),
        "call.connecting": _("Connecting to the call…"),
        "call.joined": _("You are in the call. Your counselor will be with you shortly."),
        "call.unreachable": _("The call server cannot be reached right now. Please try again in a moment."),
        "call.failed": _("Could not start the call: %(detail)s"),
        "error.network": _("We could not reach HearO. Please check your connection and try again."),
        "error.rate_limited": _("Too many attempts from this network. Please wait a minute and try again."),
        "error.generic": _("Something went wrong: %(detail)s"),
        "anonymous": _("Guest"),
        **routing_strings(),
        **handoff_strings(),
        **wait_strings(),
    }


def handoff_strings() -> dict:
    """Return the waiting page's texts about the call: who is ready, the time left, what went wrong and why."""
    return {
        "matched.title": _("A counselor is ready for you"),
        "matched.title.named": _("%(name)s is ready to talk with you"),
        "matched.lede": _("Your counselor is keeping this time for you. Join the call when you are ready."),
        "call.title": _("You are in your call"),
        "call.title.named": _("You are in your call with %(name)s"),
        "announce.IN_CALL": _("Your counselor has joined. You are in the call."),
        "countdown.over": _("the time is up; we are checking"),
        "interrupted.customer.title": _("Your connection to the call dropped"),
        "interrupted.customer": _("Press “Reconnect” to continue the call. You have %(time)s."),
        "interrupted.customer.now": _("Press “Reconnect” to continue the call."),
        "interrupted.counselor.title": _("Your counselor's connection dropped"),
        "interrupted.counselor": _(
            "Please stay on this page: they have %(time)s to reconnect. "
            "If they cannot, you go back to the front of the line."
        ),
        # Back in line: what happened, that it is not the customer's fault, and where they are now.
        "back.call_failed.title": _("We couldn't connect the call"),
        "back.call_failed": _(
            "It's not your fault. You're back at the front of the line, "
            "and we will connect you with the next counselor who is free."
        ),
        "back.released.title": _("Your counselor couldn't take this call"),
        "back.released": _(
            "It's not your fault. You're back at the front of the line, "
            "and we will connect you with the next counselor who is free."
        ),
        "back.counselor_no_show.title": _("Your counselor couldn't join in time"),
        "back.counselor_no_show": _(
            "It's not your fault. You're back at the front of the line, "
            "and we will connect you with the next counselor who is free."
        ),
        "back.call_dropped.title": _("Your call was cut off"),
        "back.call_dropped": _(
            "It's not your fault. You're back at the front of the line, "
            "and we will connect you with the next counselor who is free."
        ),
        "back.default.title": _("The call did not start"),
        "back.default": _("It's not your fault. You're back at the front of the line."),
        "ended.call_dropped": _(
            "Your call was cut off and could not be resumed. It's not your fault. "
            "If you would like to keep talking, you can join the line again."
        ),
        "mic.test": _("Test my microphone"),
        "mic.stop": _("Stop the test"),
        "mic.listening": _("Say something: the bar should move when you speak."),
        "mic.ok": _("We can hear you. Your microphone works."),
        "mic.silent": _("We could not hear anything. Check that your microphone is not muted, then test again."),
        "mic.denied": _(
            "Your browser did not allow the microphone. Click the lock or microphone icon next to the web "
            "address, allow the microphone, then test again. You can still join the call and listen."
        ),
        "mic.none": _(
            "We could not find a microphone. Plug one in (or use your phone), then test again. "
            "You can still join the call and listen."
        ),
        "mic.unsupported": _("This browser cannot test the microphone. You can still join the call."),
    }


def wait_strings() -> dict:
    """Return the waiting page's texts about the wait: the estimate, time waited, alerts, the connection."""
    return {
        "eta.no_counselor_online": _("no counselor is online right now"),
        "eta.checking": _("checking…"),
        "waited.soon": _("less than a minute"),
        "waited.minutes": _("%(minutes)s min"),
        "waited.hours": _("%(hours)s h %(minutes)s min"),
        "rank.note.1": _("You are next."),
        "rank.note.2": _("Almost there: one person is ahead of you."),
        "notify.keep_open": _("Please keep HearO open nearby."),
        "notify.matched_body": _("Come back to HearO to join the call."),
        "notify.on": _("We will also show a notification when it is your turn."),
        "title.flash": _("● Your counselor is ready"),
        # What the customer reads about the connection; the transport is in the support details.
        "connection.connecting": _("Connecting…"),
        "connection.offline": _("Reconnecting…"),
        "connection.stomp": _("Live"),
        "connection.sockjs": _("Live (compatibility mode)"),
        "connection.raw": _("Live (compatibility mode)"),
        "connection.poll": _("Checking every %(seconds)s s"),
        "connection.lost": _("The connection dropped. We are reconnecting, and you keep your place."),
        "connection.back": _("Connected again. Your place is up to date."),
        "stale.seconds": _("Last updated %(seconds)s s ago · reconnecting, you keep your place"),
        "stale.minutes": _("Last updated %(minutes)s min ago · reconnecting, you keep your place"),
    }


def routing_strings() -> dict:
    """Return the waiting page's texts about lines: choosing one, refusals, moves, estimates."""
    return {
        "queue.waiting": _("%(count)s waiting"),
        "queue.eta": _("wait %(eta)s"),
        "queue.no_counselor_online": _("no counselor online yet; you can still join"),
        "queue.closed": _("Closed now"),
        "queue.closed_opens": _("Closed now · opens %(when)s"),
        "queue.full": _("Full right now · please try again in a few minutes"),
        "queue.instead": _("Until then, you can reach:"),
        "when.today": _("today at %(time)s"),
        "when.tomorrow": _("tomorrow at %(time)s"),
        "when.later": _("%(day)s at %(time)s"),
        "refused.queue_closed": _("This line is closed right now, so we could not add you."),
        "refused.queue_full": _(
            "This line is full right now, so we could not add you. Please try again in a few minutes."
        ),
        "refused.unknown_queue": _("This line is no longer available. Please choose another one."),
        "refused.unsupported_language": _("This line does not take that language. Please choose another language."),
        "refused.invalid": _("We could not read your choice. Please check it and try again."),
        "refused.opens": _("It opens %(when)s."),
        "line.value": _("%(queue)s · %(language)s"),
        "rank.urgent_ahead": _("Someone who needs urgent help was placed ahead of you."),
        "eta.closed": _("after the line opens"),
        "eta.why.no_counselor_online": _(
            "No counselor is online for your line right now. You keep your place, "
            "and we will show an estimate as soon as one is."
        ),
        "eta.why.closed": _("Your line is closed right now. You keep your place and will be helped when it opens."),
        "moved": _(
            "You were moved to another line, “%(queue)s”, so someone can help you sooner. "
            "The time you have already waited still counts."
        ),
        "emergency": _("Emergency services"),
    }


def dashboard_strings() -> dict:
    """Return the dashboard's texts in the request's language."""
    return {
        **tier_strings(),
        "status.AVAILABLE": _("Available"),
        "status.AWAY": _("Away"),
        "status.OFFLINE": _("Offline"),
        "status.BUSY": _("In a session"),
        "status.WRAP_UP": _("Wrapping up"),
        "wrapup.left": _("Next customer in %(time)s"),
        "wrapup.over": _("Available again in a moment…"),
        "skills.line": _("You take: %(queues)s · in %(languages)s"),
        "skills.none": _("You are not assigned to any queue yet; ask a supervisor."),
        "queue.none": _("—"),
        "queue.seconds": _("%(seconds)s s"),
        "queue.minutes": _("%(minutes)s min %(seconds)s s"),
        "alert.title": _("New customer"),
        "alert.body": _("%(name)s is waiting in room %(room)s"),
        "alert.started": _("Both of you are in the call."),
        "alert.waiting_join": _("Join the call when you are ready."),
        "alert.ended": _("The session ended (%(reason)s)."),
        "anonymous": _("Guest"),
        "reason.completed": _("completed"),
        "reason.customer_cancelled": _("customer left"),
        "reason.customer_no_show": _("customer did not join"),
        "reason.counselor_no_show": _("not joined in time"),
        "reason.counselor_lost": _("connection lost"),
        "reason.open": _("in progress"),
        "history.empty": _("No sessions yet today."),
        "call.fetching": _("Preparing the call…"),
        "call.connecting": _("Connecting to the call…"),
        "call.joined": _("You are in the call."),
        "call.unreachable": _("The call server cannot be reached right now. Please try again in a moment."),
        "call.failed": _("Could not start the call: %(detail)s"),
        "notify.granted": _("Alerts are on."),
        "notify.denied": _("The browser blocks notifications; the sound alert still plays."),
        "error.generic": _("Something went wrong: %(detail)s"),
        "error.network": _("We could not reach HearO. Please check your connection and try again."),
    }


def waiting_room(request):
    """Render the customer's waiting page (anyone; the visit lives in sessionStorage).

    The lines to choose from come from GET /api/queues once the page runs;
    the names here only label the customer's line at once after a reload.
    """
    extra = {
        "defaultQueueId": DEFAULT_QUEUE_ID,
        "queueNames": queue_names(language=get_language()),
        "languageNames": language_names(),
        "emergencyPhone": EMERGENCY_PHONE,
    }
    context = {"config": client_config(request, **extra), "strings": waiting_strings()}
    return render(request, "waiting.html", context)


@login_required
def counselor_dashboard(request):
    """Render the counselor's dashboard; a logged-in non-counselor gets a 403 page."""
    try:
        counselor = counselor_for_user(user=request.user)
    except DomainError as exc:
        return render(request, "counselor/not_counselor.html", {"detail": exc.detail}, status=exc.status)
    extra = {
        "counselorId": counselor.counselor_id,
        "stateUrl": reverse("dashboard-state"),
        "queueNames": queue_names(language=get_language()),
        "languageNames": language_names(),
    }
    context = {
        "counselor": counselor_profile(counselor=counselor),
        "config": client_config(request, **extra),
        "strings": dashboard_strings(),
    }
    return render(request, "counselor/dashboard.html", context)


class DashboardStateApi(APIView):
    """The dashboard's one read: profile, open match, queue summary, today's calls.

    Fetched on load and after every reconnect (the counselor topic's snapshot
    is only the queue summary), and polled on the REST tier.
    """

    @extend_schema(exclude=True)
    def get(self, request):
        counselor = counselor_for_user(user=request.user)
        order = queue_order()
        return Response(
            {
                "type": "DASHBOARD",
                "counselor": counselor_profile(counselor=counselor),
                "openMatch": dashboard.dashboard_open_match(counselor=counselor),
                "queue": queue_stats_body(order.queues, order.version),
                "history": dashboard.dashboard_history_today(counselor=counselor),
                "timestamp": epoch_ms(),
            }
        )

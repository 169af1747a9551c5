"""LiveKit: room tokens for the two sides of a match, and webhook verification.

Tokens are audio-only and short-lived (LIVEKIT_TOKEN_TTL_SECONDS, not the
library's six-hour default), grant one room and nothing else: no admin, no
data channel, no room creation or listing. No LiveKit server is contacted.
"""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from livekit import api

from common.errors import Unauthorized
from matching.models import Match


def access_token(*, identity: str, name: str, room_name: str) -> str:
    """Return a signed JWT that lets ``identity`` join ``room_name`` with its microphone."""
    grants = api.VideoGrants(
        room_join=True,
        room=room_name,
        can_publish=True,
        can_subscribe=True,
        can_publish_sources=["microphone"],
        can_publish_data=False,
    )
    return (
        api.AccessToken(settings.LIVEKIT_API_KEY, settings.LIVEKIT_API_SECRET)
        .with_identity(identity)
        .with_name(name)
        .with_ttl(timedelta(seconds=settings.LIVEKIT_TOKEN_TTL_SECONDS))
        .with_grants(grants)
        .to_jwt()
    )


def room_token(*, match: Match, side: str) -> dict:
    """Return ``{url, token, roomName, identity}`` for one side of a match."""
    if side == "customer":
        customer = match.registration.customer
        identity, name = customer.identity, customer.display_name or "customer"
    else:
        identity, name = match.counselor.identity, match.counselor.name
    return {
        "url": settings.LIVEKIT_URL,
        "token": access_token(identity=identity, name=name, room_name=match.room_name),
        "roomName": match.room_name,
        "identity": identity,
    }


@dataclass(frozen=True)
class WebhookEvent:
    event: str
    room_name: str
    identity: str


def webhook_event(*, body: str, authorization: str) -> WebhookEvent:
    """Verify a LiveKit webhook (signed JWT over the body's sha256) and return its gist."""
    receiver = api.WebhookReceiver(api.TokenVerifier(settings.LIVEKIT_API_KEY, settings.LIVEKIT_API_SECRET))
    try:
        event = receiver.receive(body, authorization)
    except Exception:  # the library raises bare Exception, jwt errors and parse errors alike
        raise Unauthorized("bad webhook signature", code="bad_signature") from None
    return WebhookEvent(event=event.event, room_name=event.room.name, identity=event.participant.identity)

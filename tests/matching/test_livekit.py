"""LiveKit room tokens and webhooks, checked with livekit-api's own verifier."""

import base64
import hashlib
import json
import time
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from livekit import api as lk

from matching.models import Match
from queues.models import Registration
from tests.conftest import bearer

pytestmark = pytest.mark.django_db
S = Registration.Status
WRONG_SECRET = "not-the-secret-but-as-long-as-a-real-one"


@pytest.fixture(autouse=True)
def _production_length_secret(settings):
    # The development secret ("secret", as livekit-server --dev) is too short for HS256.
    settings.LIVEKIT_API_SECRET = "a-test-secret-long-enough-for-hs256-keys"


def verify(token: str) -> lk.access_token.Claims:
    return lk.TokenVerifier(settings.LIVEKIT_API_KEY, settings.LIVEKIT_API_SECRET).verify(token)


def test_the_customer_gets_an_audio_only_token_for_its_own_room(api, matched):
    token, _, match = matched
    response = api.post("/api/livekit/token", **bearer(token))
    assert response.status_code == 200, response.content
    body = response.json()
    customer = match.registration.customer
    assert body["url"] == settings.LIVEKIT_URL
    assert (body["roomName"], body["identity"]) == (match.room_name, customer.identity)

    claims = verify(body["token"])
    assert (claims.identity, claims.name) == (customer.identity, "Mina")
    grants = claims.video
    assert (grants.room_join, grants.room) == (True, match.room_name)
    assert grants.can_publish_sources == ["microphone"] and grants.can_publish_data is False
    assert grants.can_subscribe is True
    for admin_grant in ("room_admin", "room_create", "room_list", "room_record", "ingress_admin"):
        assert not getattr(grants, admin_grant), admin_grant


def test_tokens_live_for_the_configured_ttl_not_six_hours(api, matched, settings):
    settings.LIVEKIT_TOKEN_TTL_SECONDS = 600
    token, _, _ = matched
    signed = api.post("/api/livekit/token", **bearer(token)).json()["token"]
    payload = jwt.decode(signed, options={"verify_signature": False})
    assert abs(payload["exp"] - time.time() - 600) < 30


def test_the_counselor_gets_its_own_distinct_identity_in_the_same_room(api, matched, as_counselor):
    token, counselor, match = matched
    customer_body = api.post("/api/livekit/token", **bearer(token)).json()
    body = as_counselor(counselor).post("/api/livekit/token", {"matchId": match.id}, format="json").json()
    assert body["roomName"] == match.room_name == customer_body["roomName"]
    assert body["identity"] == counselor.identity != customer_body["identity"]
    assert verify(body["token"]).identity == counselor.identity


def test_a_wrong_secret_does_not_verify(api, matched):
    token, _, _ = matched
    signed = api.post("/api/livekit/token", **bearer(token)).json()["token"]
    with pytest.raises(jwt.InvalidSignatureError):
        lk.TokenVerifier(settings.LIVEKIT_API_KEY, WRONG_SECRET).verify(signed)


def test_nobody_else_gets_a_token(api, matched, on_shift, join, as_counselor):
    _, _, match = matched
    waiting_customer = join("Other")["token"]
    idle_counselor = on_shift()
    refused = [
        api.post("/api/livekit/token", **bearer(waiting_customer)),
        as_counselor(idle_counselor).post("/api/livekit/token"),
        as_counselor(idle_counselor).post("/api/livekit/token", {"matchId": match.id}, format="json"),
    ]
    for response in refused:
        assert response.status_code == 403
        assert set(response.json()) == {"error", "detail"}
    assert api.post("/api/livekit/token").status_code == 401
    assert api.post("/api/livekit/token", **bearer("forged")).status_code == 401


def test_a_participant_asking_for_another_match_is_refused(api, matched, on_shift, join):
    token, _, match = matched
    response = api.post("/api/livekit/token", {"matchId": match.id + 1}, format="json", **bearer(token))
    assert (response.status_code, response.json()["error"]) == (403, "no_open_match")


def test_an_ended_match_gets_no_token(api, matched):
    token, _, _ = matched
    api.post("/api/queue/cancel", **bearer(token))
    assert api.post("/api/livekit/token", **bearer(token)).status_code == 403


# --- webhooks ----------------------------------------------------------------------------


def webhook(api, payload: dict, *, secret: str | None = None):
    body = json.dumps(payload)
    digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
    signed = (
        lk.AccessToken(settings.LIVEKIT_API_KEY, secret or settings.LIVEKIT_API_SECRET)
        .with_sha256(digest)
        .with_ttl(timedelta(minutes=5))
        .to_jwt()
    )
    return api.post("/api/livekit/webhook", body, content_type="application/webhook+json", HTTP_AUTHORIZATION=signed)


def joined_event(match: Match, identity: str) -> dict:
    return {
        "event": "participant_joined",
        "room": {"name": match.room_name},
        "participant": {"identity": identity},
        "id": "EV_1",
        "createdAt": str(int(time.time())),
    }


def test_participant_joined_webhooks_confirm_both_sides(api, matched):
    _, counselor, match = matched
    first = webhook(api, joined_event(match, match.registration.customer.identity))
    assert first.status_code == 200 and first.json() == {"counted": True}
    webhook(api, joined_event(match, counselor.identity))
    match.refresh_from_db()
    match.registration.refresh_from_db()
    assert match.customer_joined_at and match.counselor_joined_at
    assert match.registration.status == S.IN_CALL
    assert match.events.filter(what="customer_joined", actor="livekit").exists()


def test_webhooks_about_strangers_and_other_events_are_acknowledged_and_ignored(api, matched):
    _, _, match = matched
    assert webhook(api, joined_event(match, "customer-someone-else")).json() == {"counted": False}
    left = joined_event(match, match.registration.customer.identity) | {"event": "participant_left"}
    assert webhook(api, left).json() == {"counted": False}
    match.refresh_from_db()
    assert match.customer_joined_at is None


def test_a_badly_signed_webhook_is_a_json_401(api, matched):
    _, _, match = matched
    response = webhook(api, joined_event(match, match.registration.customer.identity), secret=WRONG_SECRET)
    assert response.status_code == 401
    assert response.json()["error"] == "bad_signature"
    response = api.post("/api/livekit/webhook", "{}", content_type="application/webhook+json")
    assert response.status_code == 401
    match.refresh_from_db()
    assert match.customer_joined_at is None

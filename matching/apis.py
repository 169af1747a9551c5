"""REST endpoints for counselors and matches.

Counselors authenticate with a session or ``Authorization: Token``; the
match endpoints also take the customer's ``Authorization: Bearer`` token.
"""

from django.contrib.auth import authenticate
from django.utils.translation import get_language
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.views import APIView

from common import events, lockout
from common.api import StrictCharField, StrictSerializer, bearer_token
from common.errors import Forbidden, Unauthorized
from matching import counselors, handoff, livekit, selectors
from matching.models import Counselor
from queues import apis as queue_apis
from queues.apis import ERROR
from queues.models import Registration
from queues.selectors import registration_by_token

STATE = inline_serializer(
    "QueueState",
    {
        "customerId": serializers.CharField(),
        "registrationId": serializers.IntegerField(),
        "status": serializers.ChoiceField(Registration.Status.choices),
        "rank": serializers.IntegerField(required=False, help_text="while WAITING"),
        "estimatedWaitSeconds": serializers.IntegerField(required=False, allow_null=True),
        "version": serializers.IntegerField(required=False, help_text="queue version; drop older messages"),
        "seq": serializers.IntegerField(
            help_text="this visit's change counter: a message with a lower seq than one already seen is stale"
        ),
        "identity": serializers.CharField(required=False, help_text="once MATCHED: your LiveKit identity"),
        "roomName": serializers.CharField(required=False),
        "matchId": serializers.IntegerField(required=False),
        "counselorName": serializers.CharField(
            required=False, help_text="MATCHED and IN_CALL: the counselor's display name (show this, not the room)"
        ),
        "joinDeadline": serializers.IntegerField(
            required=False, help_text="MATCHED and IN_CALL: epoch ms by which to join the call"
        ),
        "interrupted": inline_serializer(
            "CallInterrupted",
            {
                "side": serializers.ChoiceField(["customer", "counselor"]),
                "reconnectUntil": serializers.IntegerField(help_text="epoch ms: the call ends if not back by then"),
            },
            required=False,
            help_text="IN_CALL while one side left the call; absent once it resumed",
        ),
        "reason": serializers.CharField(
            required=False,
            help_text="terminal statuses: why the visit ended; WAITING: why the rank moved (urgent_ahead, "
            "overflow) or why the visit is back in line (call_failed, released, counselor_no_show, call_dropped)",
        ),
        "timestamp": serializers.IntegerField(help_text="epoch milliseconds"),
    },
)
PROFILE = inline_serializer(
    "Counselor",
    {
        "counselorId": serializers.CharField(),
        "username": serializers.CharField(),
        "displayName": serializers.CharField(),
        "status": serializers.ChoiceField(Counselor.Status.choices),
    },
)


class TokenIn(StrictSerializer):
    username = StrictCharField(max_length=150)
    password = StrictCharField(max_length=256, trim_whitespace=False)


class TokenApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(
        request=TokenIn,
        responses={
            200: inline_serializer("AuthToken", {"token": serializers.CharField()}),
            400: ERROR,
            401: ERROR,
            429: OpenApiResponse(ERROR, "too_many_attempts (with retryAfter, seconds, and a Retry-After header)"),
        },
        description="Exchange a counselor's or a staff user's username and password for an API token "
        "(`Authorization: Token <key>`). Failures are limited per username and per client address.",
    )
    def post(self, request):
        data = TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        username = data.validated_data["username"]
        lockout.login_refuse_if_locked(request, username)
        user = authenticate(request, **data.validated_data)
        if user is None:
            lockout.login_failed(request, username)
            raise Unauthorized("wrong username or password", code="bad_credentials")
        if not user.is_staff:
            selectors.counselor_for_user(user=user)  # only counselors and staff get API tokens
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


class CounselorAPIView(APIView):
    def counselor(self, request) -> Counselor:
        return selectors.counselor_for_user(user=request.user)


class MeApi(CounselorAPIView):
    @extend_schema(responses={200: PROFILE, 403: ERROR})
    def get(self, request):
        return Response(selectors.counselor_profile(counselor=self.counselor(request)))


class StatusIn(StrictSerializer):
    status = serializers.ChoiceField(choices=list(counselors.SELF_SERVICE_STATUSES))


class StatusApi(CounselorAPIView):
    @extend_schema(request=StatusIn, responses={200: PROFILE, 400: ERROR, 403: ERROR, 409: ERROR})
    def post(self, request):
        data = StatusIn(data=request.data)
        data.is_valid(raise_exception=True)
        counselor = counselors.counselor_set_status(
            counselor=self.counselor(request), status=data.validated_data["status"]
        )
        return Response(selectors.counselor_profile(counselor=counselor))


class HeartbeatApi(CounselorAPIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer(
                "CounselorLease", {"leaseExpiresAt": serializers.IntegerField(help_text="epoch ms")}
            ),
            401: ERROR,
            403: ERROR,
            409: OpenApiResponse(ERROR, "not_on_shift: the counselor is OFFLINE"),
        },
        description="Keep an on-shift counselor (AVAILABLE, AWAY, BUSY) alive; without it the matcher "
        "sets the counselor OFFLINE once the lease runs out.",
    )
    def post(self, request):
        expires_at = counselors.counselor_heartbeat(counselor=self.counselor(request))
        return Response({"leaseExpiresAt": events.epoch_ms(expires_at)})


# --- Matches: either side ------------------------------------------------------

PARTICIPANT_ERRORS = {
    401: OpenApiResponse(ERROR, "no customer bearer token and no counselor login"),
    403: OpenApiResponse(ERROR, "not a participant of this (open) match"),
}
MATCH = inline_serializer(
    "MatchState",
    {
        "matchId": serializers.IntegerField(),
        "roomName": serializers.CharField(),
        "customerJoined": serializers.BooleanField(),
        "counselorJoined": serializers.BooleanField(),
        "endReason": serializers.CharField(allow_blank=True),
        "joinDeadline": serializers.IntegerField(help_text="epoch ms"),
        "interruptedSide": serializers.CharField(allow_null=True, help_text="the side that left a call, if any"),
        "reconnectUntil": serializers.IntegerField(allow_null=True, help_text="epoch ms, while interrupted"),
    },
)


def match_body(match) -> dict:
    return {
        "matchId": match.id,
        "roomName": match.room_name,
        "customerJoined": match.customer_joined_at is not None,
        "counselorJoined": match.counselor_joined_at is not None,
        "endReason": match.end_reason,
        "joinDeadline": events.epoch_ms(match.join_deadline),
        "interruptedSide": match.interrupted_side or None,
        "reconnectUntil": events.epoch_ms(match.reconnect_until) if match.reconnect_until else None,
    }


class ParticipantAPIView(APIView):
    """Base for endpoints either side of a match may call."""

    def caller(self, request) -> selectors.Caller:
        """Return the customer's visit (bearer token) or the logged-in counselor."""
        token = bearer_token(request)
        if token:
            return registration_by_token(token=token)
        return selectors.counselor_for_user(user=request.user)


class RoomTokenIn(StrictSerializer):
    matchId = serializers.IntegerField(required=False, help_text="optional: must be the caller's open match")


class RoomTokenApi(ParticipantAPIView):
    @extend_schema(
        request=RoomTokenIn,
        responses={
            200: inline_serializer(
                "RoomToken",
                {
                    "url": serializers.CharField(),
                    "token": serializers.CharField(help_text="LiveKit JWT: this room, microphone only"),
                    "roomName": serializers.CharField(),
                    "identity": serializers.CharField(help_text="the caller's own LiveKit identity"),
                },
            ),
            400: ERROR,
            **PARTICIPANT_ERRORS,
        },
        description="Sign a LiveKit token for the caller's own open match.",
    )
    def post(self, request):
        data = RoomTokenIn(data=request.data or {})
        data.is_valid(raise_exception=True)
        caller = self.caller(request)
        match = selectors.match_open_for(caller=caller)
        if data.validated_data.get("matchId", match.id) != match.id:
            raise Forbidden("that is not your open match", code="no_open_match")
        side = selectors.match_side(match=match, caller=caller)
        return Response(livekit.room_token(match=match, side=side))


class MatchJoinedApi(ParticipantAPIView):
    @extend_schema(
        request=None,
        responses={200: MATCH, 404: ERROR, 409: ERROR, **PARTICIPANT_ERRORS},
        description="Confirm the caller joined the call. When both sides have, the visit is IN_CALL.",
    )
    def post(self, request, match_id: int):
        match = selectors.match_get(match_id=match_id)
        side = selectors.match_side(match=match, caller=self.caller(request))
        return Response(match_body(handoff.match_joined(match_id=match.id, side=side, actor=_actor(match, side))))


class CallFailedIn(StrictSerializer):
    reason = serializers.ChoiceField(choices=list(handoff.CALL_FAILURES))
    detail = StrictCharField(max_length=200, required=False, allow_blank=True, help_text="logged only, never shown")


class MatchCallFailedApi(ParticipantAPIView):
    @extend_schema(
        request=CallFailedIn,
        responses={
            200: MATCH,
            400: ERROR,
            404: ERROR,
            409: OpenApiResponse(ERROR, "match_ended: the match ended for another reason"),
            **PARTICIPANT_ERRORS,
        },
        description="Report that the caller tried to join the call and could not (it is then never a no-show). "
        "`unreachable` or `timeout` before the call started ends the match as `call_failed`: the customer goes "
        "back to the head of its line, the counselor is AVAILABLE, both are told. `permission_denied` and "
        "`other` are recorded only (fix it and retry until the join deadline). Idempotent.",
    )
    def post(self, request, match_id: int):
        caller = self.caller(request)
        match = selectors.match_get(match_id=match_id)
        side = selectors.match_side(match=match, caller=caller)
        data = CallFailedIn(data=request.data or {})
        data.is_valid(raise_exception=True)
        match = handoff.match_call_failed(
            match_id=match.id,
            side=side,
            reason=data.validated_data["reason"],
            detail=data.validated_data.get("detail", ""),
            actor=_actor(match, side),
        )
        return Response(match_body(match))


def _actor(match, side: str) -> str:
    return side if side == "customer" else f"counselor:{match.counselor.counselor_id}"


class ReleaseIn(StrictSerializer):
    reason = StrictCharField(max_length=200, required=False, allow_blank=True, help_text="kept for supervisors")


class MatchReleaseApi(CounselorAPIView):
    @extend_schema(
        request=ReleaseIn,
        responses={
            200: MATCH,
            400: ERROR,
            401: ERROR,
            403: OpenApiResponse(ERROR, "not_your_match, or not a counselor"),
            404: ERROR,
            409: OpenApiResponse(ERROR, "match_ended: the match ended for another reason"),
        },
        description="Give the customer back to the queue (the match's counselor only; before or during the "
        "call). The match ends as `released`; the customer keeps its place at the head of its line and is "
        "told; the counselor is AVAILABLE (WRAP_UP if a call took place). Idempotent.",
    )
    def post(self, request, match_id: int):
        if bearer_token(request):
            # A customer is a side of the match too, but only its counselor may give it back.
            raise Forbidden("only the match's counselor can release it", code="not_your_match")
        counselor = self.counselor(request)
        match = selectors.match_get(match_id=match_id)
        data = ReleaseIn(data=request.data or {})
        data.is_valid(raise_exception=True)
        released = handoff.match_release(
            match_id=match.id, counselor=counselor, reason=data.validated_data.get("reason", "")
        )
        return Response(match_body(released))


class MatchCompleteApi(CounselorAPIView):
    @extend_schema(
        request=None,
        responses={200: MATCH, 401: ERROR, 403: ERROR, 404: ERROR, 409: ERROR},
        description="End the call as completed (the match's counselor only). Idempotent.",
    )
    def post(self, request, match_id: int):
        match = selectors.match_get(match_id=match_id)
        return Response(match_body(handoff.match_complete(match_id=match.id, counselor=self.counselor(request))))


class LiveKitWebhookApi(APIView):
    authentication_classes: list = []  # LiveKit signs the body; no user behind it
    permission_classes: list = []

    @extend_schema(
        request=None,
        responses={200: inline_serializer("WebhookAck", {"counted": serializers.BooleanField()}), 401: ERROR},
        description="LiveKit webhooks (Authorization: the signed JWT): the server-side truth of the call. "
        "participant_joined confirms a join; participant_left in a call interrupts it for "
        "HEARO_RECONNECT_GRACE_SECONDS (the side coming back resumes it, else it ends as call_dropped); "
        "room_finished ends the room's match (completed after a call, call_failed before one).",
    )
    def post(self, request):
        event = livekit.webhook_event(
            body=request.body.decode("utf-8", "replace"), authorization=request.headers.get("Authorization", "")
        )
        counted = handoff.match_livekit_event(event=event.event, room_name=event.room_name, identity=event.identity)
        return Response({"counted": counted})


LINE = inline_serializer(
    "QueueLine",
    {
        "language": serializers.CharField(),
        "waiting": serializers.IntegerField(),
        "estimatedWaitSeconds": serializers.IntegerField(allow_null=True),
        "estimatedWaitReason": serializers.CharField(allow_null=True, help_text="no_counselor_online or closed"),
    },
)
PUBLIC_QUEUE = inline_serializer(
    "PublicQueue",
    {
        "queueId": serializers.CharField(),
        "name": serializers.CharField(help_text="in the request's language (Accept-Language)"),
        "languages": serializers.ListField(child=serializers.CharField()),
        "open": serializers.BooleanField(),
        "accepting": serializers.BooleanField(help_text="false when closed or full"),
        "full": serializers.BooleanField(),
        "opensAt": serializers.IntegerField(allow_null=True, help_text="epoch ms of the next opening, when closed"),
        "waiting": serializers.IntegerField(),
        "estimatedWaitSeconds": serializers.IntegerField(allow_null=True, help_text="for someone joining now"),
        "estimatedWaitReason": serializers.CharField(allow_null=True),
        "urgentHeadStartSeconds": serializers.IntegerField(),
        "alternatives": serializers.ListField(child=serializers.DictField()),
        "lines": LINE.__class__(many=True),
    },
    many=True,
)


class QueuesApi(APIView):
    """``/api/queues``: the lines a customer may pick (public)."""

    authentication_classes: list = []
    permission_classes: list = []

    @extend_schema(responses={200: PUBLIC_QUEUE}, description="Every queue: open or not, its wait, where else to turn.")
    def get(self, request):
        return Response(selectors.queues_public(language=get_language()))


class RankApi(queue_apis.CustomerAPIView):
    """``/api/queue/rank``: the visit's state, rank or match (the REST-polling tier)."""

    @extend_schema(responses={200: STATE, **queue_apis.BEARER_ERRORS}, description="The REST-polling fallback.")
    def get(self, request):
        return Response(selectors.registration_state(registration=self.registration(request)))


class CancelApi(queue_apis.CustomerAPIView):
    """``/api/queue/cancel``: leave the queue, or end a MATCHED or IN_CALL visit's match."""

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("Cancelled", {"status": serializers.CharField()}),
            409: ERROR,
            **queue_apis.BEARER_ERRORS,
        },
        description="Leave the queue, or end the call you were matched to. Idempotent.",
    )
    def post(self, request):
        return Response({"status": handoff.visit_cancel(registration=self.registration(request))})

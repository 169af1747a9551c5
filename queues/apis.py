"""REST endpoints of the waiting queue (thin: parse, call one service, format)."""

from django.conf import settings
from django_ratelimit.core import is_ratelimited
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from common import events
from common.api import StrictBooleanField, StrictCharField, StrictSerializer, bearer_token
from common.clientaddr import request_client_address
from common.errors import TooManyRequests
from queues import selectors, services

ERROR = inline_serializer("Error", {"error": serializers.CharField(), "detail": serializers.JSONField()})
BEARER_ERRORS = {401: OpenApiResponse(ERROR, "missing, unknown or revoked bearer token")}


class JoinIn(StrictSerializer):
    displayName = StrictCharField(max_length=80, required=False, allow_blank=True, trim_whitespace=True)
    queueId = StrictCharField(max_length=40, required=False, help_text="default: the default queue (general)")
    language = StrictCharField(max_length=20, required=False, help_text="default: the queue's first language")
    urgent = StrictBooleanField(
        required=False, default=False, help_text="in danger right now: wait ahead by the queue's head start"
    )


def client_address(group: str, request) -> str:
    """Return the rate-limit key: the client's address (X-Forwarded-For only behind a trusted proxy)."""
    return request_client_address(request)


class CustomerAPIView(APIView):
    """Base for endpoints that take the customer's ``Authorization: Bearer`` token."""

    authentication_classes: list = []
    permission_classes: list = []

    def registration(self, request):
        return selectors.registration_by_token(token=bearer_token(request))


class JoinApi(CustomerAPIView):
    @extend_schema(
        request=JoinIn,
        responses={
            201: inline_serializer(
                "Joined",
                {
                    "registrationId": serializers.IntegerField(),
                    "customerId": serializers.CharField(),
                    "token": serializers.CharField(help_text="bearer credential for this visit"),
                    "rank": serializers.IntegerField(allow_null=True),
                    "status": serializers.CharField(),
                    "queueId": serializers.CharField(),
                    "language": serializers.CharField(),
                    "urgent": serializers.BooleanField(),
                    "timestamp": serializers.IntegerField(),
                    "heartbeatSeconds": serializers.IntegerField(),
                    "leaseSeconds": serializers.IntegerField(),
                    "pollSeconds": serializers.IntegerField(),
                },
            ),
            200: OpenApiResponse(description="the caller's visit was already active (same body)"),
            400: OpenApiResponse(ERROR, "invalid, unknown_queue or unsupported_language; nothing created"),
            409: OpenApiResponse(
                ERROR,
                "queue_closed (with opensAt, alternatives) or queue_full (with alternatives); nothing created",
            ),
            429: ERROR,
        },
        description=(
            "Join the queue (rate-limited per client address). "
            "A bearer token of an earlier visit keeps the same customerId."
        ),
    )
    def post(self, request):
        if is_ratelimited(
            request, group="queue-join", key=client_address, rate=settings.HEARO_JOIN_RATE, increment=True
        ):
            raise TooManyRequests("too many joins from this address; try again in a minute")
        data = JoinIn(data=request.data)
        data.is_valid(raise_exception=True)
        given = data.validated_data
        result = services.registration_join(
            display_name=given.get("displayName", ""),
            token=bearer_token(request),
            queue_id=given.get("queueId"),
            language=given.get("language"),
            urgent=given.get("urgent", False),
        )
        registration = result.registration
        body = {
            "registrationId": registration.id,
            "customerId": registration.customer.customer_id,
            "token": result.token,
            "rank": selectors.registration_rank(registration=registration),
            "status": registration.status,
            "queueId": registration.queue_id,
            "language": registration.language,
            "urgent": registration.urgent,
            "timestamp": events.epoch_ms(registration.enqueued_at),
            "heartbeatSeconds": settings.HEARO_HEARTBEAT_SECONDS,
            "leaseSeconds": settings.HEARO_LEASE_SECONDS,
            "pollSeconds": settings.HEARO_POLL_SECONDS,
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class HeartbeatApi(CustomerAPIView):
    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("Lease", {"leaseExpiresAt": serializers.IntegerField(help_text="epoch ms")}),
            409: ERROR,
            **BEARER_ERRORS,
        },
    )
    def post(self, request):
        expires_at = services.registration_heartbeat(registration=self.registration(request))
        return Response({"leaseExpiresAt": events.epoch_ms(expires_at)})

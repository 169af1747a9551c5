"""REST endpoints for counselors (session or ``Authorization: Token`` auth)."""

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.response import Response
from rest_framework.views import APIView

from hearo.api import StrictCharField, StrictSerializer
from hearo.errors import Unauthorized
from matching import selectors, services
from matching.models import Counselor
from queues.apis import ERROR

PROFILE = inline_serializer(
    "Counselor",
    {
        "counselorId": serializers.CharField(),
        "username": serializers.CharField(),
        "displayName": serializers.CharField(),
        "status": serializers.ChoiceField(Counselor.Status.values),
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
        responses={200: inline_serializer("AuthToken", {"token": serializers.CharField()}), 400: ERROR, 401: ERROR},
        description="Exchange a counselor's username and password for an API token (`Authorization: Token <key>`).",
    )
    def post(self, request):
        data = TokenIn(data=request.data)
        data.is_valid(raise_exception=True)
        user = authenticate(request, **data.validated_data)
        if user is None:
            raise Unauthorized("wrong username or password", code="bad_credentials")
        selectors.counselor_for_user(user=user)  # only counselors get API tokens
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
    status = serializers.ChoiceField(choices=list(services.SELF_SERVICE_STATUSES))


class StatusApi(CounselorAPIView):
    @extend_schema(request=StatusIn, responses={200: PROFILE, 400: ERROR, 403: ERROR, 409: ERROR})
    def post(self, request):
        data = StatusIn(data=request.data)
        data.is_valid(raise_exception=True)
        counselor = services.counselor_set_status(
            counselor=self.counselor(request), status=data.validated_data["status"]
        )
        return Response(selectors.counselor_profile(counselor=counselor))

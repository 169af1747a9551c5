"""Staff endpoints: who serves which queues and languages (``/api/admin/counselors``)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from common.api import StaffAPIView
from matching import counselors, selectors
from matching.models import Counselor
from queues.apis import ERROR
from queues.staff_apis import STAFF_ERRORS, actor

COUNSELOR = inline_serializer(
    "StaffCounselor",
    {
        "counselorId": serializers.CharField(),
        "username": serializers.CharField(),
        "displayName": serializers.CharField(),
        "status": serializers.ChoiceField(Counselor.Status.choices),
        "queues": serializers.ListField(child=serializers.CharField(), help_text="queueIds served"),
        "languages": serializers.ListField(child=serializers.CharField(), help_text="language codes served"),
        "wrapUpUntil": serializers.IntegerField(allow_null=True, help_text="epoch ms, while WRAP_UP"),
    },
)


class SkillsIn(serializers.Serializer):
    queues = serializers.ListField(child=serializers.CharField(), required=False)
    languages = serializers.ListField(child=serializers.CharField(), required=False)


class CounselorsApi(StaffAPIView):
    @extend_schema(responses={200: COUNSELOR.__class__(many=True), **STAFF_ERRORS}, description="Every counselor.")
    def get(self, request):
        return Response([selectors.counselor_profile(counselor=c) for c in selectors.counselor_list()])


class CounselorApi(StaffAPIView):
    @extend_schema(responses={200: COUNSELOR, 404: ERROR, **STAFF_ERRORS})
    def get(self, request, counselorId: str):
        return Response(selectors.counselor_profile(counselor=selectors.counselor_by_id(counselor_id=counselorId)))

    @extend_schema(
        request=SkillsIn,
        responses={
            200: COUNSELOR,
            400: OpenApiResponse(ERROR, "invalid_skills, unknown_queue or unsupported_language (with `field`)"),
            404: ERROR,
            **STAFF_ERRORS,
        },
        description="Set the queues and languages a counselor serves; the matcher looks again at once.",
    )
    def patch(self, request, counselorId: str):
        counselor = counselors.counselor_skills_set(counselor_id=counselorId, body=request.data, actor=actor(request))
        return Response(selectors.counselor_profile(counselor=counselor))

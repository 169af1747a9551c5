"""Staff endpoints: the queues' configuration (``/api/admin/queues``).

Thin: the body goes to ``queues.staff`` as it came (``queues.config``
validates it, the same checks the Django admin runs); the serializers here
only document the shape in the OpenAPI schema.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from common.api import StaffAPIView
from queues import selectors, staff
from queues.apis import ERROR


class TextPair(serializers.Serializer):
    ko = serializers.CharField(max_length=80, required=False)
    en = serializers.CharField(max_length=80, required=False)


class OpeningHours(serializers.Serializer):
    day = serializers.IntegerField(min_value=0, max_value=6, help_text="0 = Monday … 6 = Sunday")
    opens = serializers.CharField(help_text="HH:MM, the queue's timezone")
    closes = serializers.CharField(help_text="HH:MM; earlier than opens: runs past midnight")


class Alternative(serializers.Serializer):
    label = TextPair()
    phone = serializers.CharField(required=False)
    url = serializers.URLField(required=False)


class QueueConfig(serializers.Serializer):
    queueId = serializers.SlugField(max_length=40)
    name = TextPair(help_text="display name; one language given stands in for the other")
    languages = serializers.ListField(child=serializers.CharField(), required=False, help_text="default: ko, en")
    timezone = serializers.CharField(required=False, help_text="IANA name; default Asia/Seoul")
    hours = OpeningHours(many=True, required=False, allow_null=True, help_text="absent or null: always open")
    closedDates = serializers.ListField(child=serializers.DateField(), required=False)
    maxWaiting = serializers.IntegerField(min_value=1, required=False, allow_null=True, help_text="null: no cap")
    overflowQueueId = serializers.SlugField(required=False, allow_null=True)
    overflowAfterSeconds = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    urgentHeadStartSeconds = serializers.IntegerField(min_value=0, max_value=86400, required=False, default=600)
    wrapUpSeconds = serializers.IntegerField(min_value=0, max_value=3600, required=False, default=60)
    alternatives = Alternative(many=True, required=False)


class QueueConfigPatch(QueueConfig):
    queueId = serializers.SlugField(required=False, help_text="may be given, but cannot change")
    name = TextPair(required=False)


STAFF_ERRORS = {
    401: OpenApiResponse(ERROR, "a bad Authorization: Token"),
    403: OpenApiResponse(ERROR, "staff_only: not logged in as staff (is_staff)"),
}
INVALID = OpenApiResponse(ERROR, "invalid_queue (with `field`), unknown_queue (overflow target)")


def actor(request) -> str:
    return f"staff:{request.user.get_username()}"


class QueuesApi(StaffAPIView):
    @extend_schema(responses={200: QueueConfig(many=True), **STAFF_ERRORS}, description="Every queue's settings.")
    def get(self, request):
        return Response([selectors.queue_body(queue) for queue in selectors.queue_list()])

    @extend_schema(
        request=QueueConfig,
        responses={201: QueueConfig, 400: INVALID, 409: OpenApiResponse(ERROR, "queue_exists"), **STAFF_ERRORS},
        description="Create a queue. Every field but queueId and name is optional.",
    )
    def post(self, request):
        queue = staff.queue_create(body=request.data, actor=actor(request))
        return Response(selectors.queue_body(queue), status=status.HTTP_201_CREATED)


class QueueApi(StaffAPIView):
    @extend_schema(responses={200: QueueConfig, 404: ERROR, **STAFF_ERRORS})
    def get(self, request, queueId: str):
        return Response(selectors.queue_body(selectors.queue_by_id(queue_id=queueId)))

    @extend_schema(
        request=QueueConfigPatch,
        responses={200: QueueConfig, 400: INVALID, 404: ERROR, **STAFF_ERRORS},
        description="Change the settings given; the others stay. Customers already waiting keep their place.",
    )
    def patch(self, request, queueId: str):
        queue = staff.queue_update(queue_id=queueId, body=request.data, actor=actor(request))
        return Response(selectors.queue_body(queue))

    @extend_schema(
        request=None,
        responses={
            204: None,
            404: ERROR,
            409: OpenApiResponse(ERROR, "default_queue, queue_in_use or queue_has_history (close it: hours: [])"),
            **STAFF_ERRORS,
        },
        description="Delete a queue that never had a visit. A used queue is closed instead.",
    )
    def delete(self, request, queueId: str):
        staff.queue_delete(queue_id=queueId, actor=actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)

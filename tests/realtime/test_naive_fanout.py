"""The benchmark's naive baseline still tells each customer its rank in its own line."""

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from common import events
from queues import services
from realtime.naive_fanout import naive_fanout
from tests.support.routing import line

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_sends_every_waiting_customer_its_rank_in_its_queue_and_language():
    line("youth", languages=["ko"])
    visits = [
        services.registration_join().registration,
        services.registration_join(queue_id="youth").registration,
        services.registration_join().registration,
        services.registration_join(language="en").registration,
    ]
    layer = get_channel_layer()
    channels = {}
    for visit in visits:
        channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(events.customer_group(visit.customer.customer_id), channel)
        channels[visit.id] = channel

    naive_fanout(7)

    got = {reg_id: async_to_sync(layer.receive)(channel)["body"] for reg_id, channel in channels.items()}
    assert [(got[v.id]["queueId"], got[v.id]["rank"], got[v.id]["version"]) for v in visits] == [
        ("general", 1, 7),
        ("youth", 1, 7),
        ("general", 2, 7),
        ("general", 1, 7),
    ]

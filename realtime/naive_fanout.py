"""The benchmark baseline HearO replaces: one group_send per waiting customer.

Loaded only with ``HEARO_FANOUT=naive`` (``RealtimeConfig.ready`` installs it
as the queue publisher), so the product's publish path never meets it.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from common import events
from queues.selectors import queue_snapshot


def naive_fanout(
    version: int,
    queue_ids: list[str] | None = None,
    reason: str = "",
    language: str | None = None,
) -> None:
    """Send every waiting customer its rank in its line, one channel-layer message each."""
    layer = get_channel_layer()

    async def send_all(snapshot) -> None:
        ranks: dict[tuple[str, str], int] = {}
        for (registration_id, customer_id), line in zip(snapshot.waiting, snapshot.lines, strict=True):
            ranks[line] = rank = ranks.get(line, 0) + 1
            body = events.waiting(
                customer_id=customer_id,
                registration_id=registration_id,
                queue_id=line[0],
                rank=rank,
                version=version,
                eta=None,
            )
            await layer.group_send(events.customer_group(customer_id), {"type": "customer.event", "body": body})

    async_to_sync(send_all)(queue_snapshot())

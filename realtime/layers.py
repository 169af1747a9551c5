"""The channel layer HearO runs on Redis: channels-redis with a pool that waits, and a lighter receive.

redis-py 7's default pool raises ``MaxConnectionsError`` the moment all its
connections are out. Seen under the fan-out benchmark: when ~2,000 sockets
close at once, their consumers' ``group_discard`` calls exhaust the pool of
1,000, the surplus fail, and their channels stay group members (for the
group expiry, a day). A blocking pool makes the surplus wait their turn.
With sentinels the pool also finds the primary through them
(common/redis_clients.py), and follows a failover.

Every socket's consumer waits on its own process-local channel for as long
as the socket is open. channels-redis gives each waiting receive an
``asyncio.Queue`` (four deques, ~3 KiB) and two tasks queued on one lock;
here each waits on one future, and one reader task per event loop takes the
process's messages off Redis and hands each to its channel's future (or
keeps it, up to the layer's capacity, until that channel asks, as
channels-redis's buffer does). The reader runs while any channel of its
loop is live: from its first receive until its consumer ends (``forget``). The wire, the keys and the delivery
guarantees are channels-redis's own (``receive_single``, which a
cancellation never makes lose a message); only the in-process hand-over differs.
"""

import asyncio
import logging
from collections import OrderedDict

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool

from common import redis_clients

log = logging.getLogger(__name__)

# How long a channel-layer call waits for a free connection before failing.
POOL_WAIT_SECONDS = 10
# The reader's pauses while Redis does not answer (doubling up to the last).
READ_RETRY_SECONDS = (0.1, 2.0)
# Channels whose consumers ended, remembered so a message that raced the end is not kept forever.
GONE_REMEMBERED = 10_000


class _LocalChannels:
    """One event loop's process-local channels: which are live, who waits now, and the reader."""

    __slots__ = ("live", "reader", "waiting")

    def __init__(self) -> None:
        self.live: set[str] = set()  # received on, not yet forgotten
        self.waiting: dict[str, asyncio.Future] = {}
        self.reader: asyncio.Task | None = None


def channel_forget(layer, channel: str) -> None:
    """Tell a layer that keeps messages per channel (this module's) that the channel's consumer has ended."""
    forget = getattr(layer, "forget", None)  # the in-memory layer keeps nothing of ours
    if forget is not None:
        forget(channel)


class WaitingRedisChannelLayer(RedisChannelLayer):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._local: dict[asyncio.AbstractEventLoop, _LocalChannels] = {}
        # Messages read before their channel asked, for the whole process (a
        # loop's reader may read another loop's messages, as channels-redis's).
        self._kept: dict[str, list[dict]] = {}
        self._gone: OrderedDict[str, None] = OrderedDict()

    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        if address.startswith("sentinel://"):  # a label: the sentinels name the server
            return redis_clients.async_pool(blocking_timeout=POOL_WAIT_SECONDS, **host)
        return BlockingConnectionPool.from_url(address, timeout=POOL_WAIT_SECONDS, **host)

    # -- process-local channels -----------------------------------------------

    def _channels(self) -> _LocalChannels:
        loop = asyncio.get_running_loop()
        local = self._local.get(loop)
        if local is None:
            for old in [old for old in self._local if old.is_closed()]:
                del self._local[old]
            local = self._local[loop] = _LocalChannels()
        return local

    async def receive(self, channel: str) -> dict:
        """Return the channel's next message; a process-local channel waits on one future."""
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        local = self._channels()
        kept = self._kept.get(channel)
        if kept:
            message = kept.pop(0)
            if not kept:
                del self._kept[channel]
            return message
        if channel in local.waiting:
            raise RuntimeError(f"two receivers on one channel: {channel}")
        future = asyncio.get_running_loop().create_future()
        local.waiting[channel] = future
        local.live.add(channel)
        if local.reader is None or local.reader.done():
            local.reader = asyncio.create_task(self._read(local, self.non_local_name(channel)))
        try:
            return await future
        finally:
            if local.waiting.get(channel) is future:
                del local.waiting[channel]

    def forget(self, channel: str) -> None:
        """The channel's consumer has gone: drop what was kept for it; the last one stops the reader."""
        self._kept.pop(channel, None)
        self._gone[channel] = None
        if len(self._gone) > GONE_REMEMBERED:
            self._gone.popitem(last=False)
        local = self._local.get(asyncio.get_running_loop())
        if local is None:
            return
        local.live.discard(channel)
        if not local.live and local.reader is not None:
            local.reader.cancel()  # mid-read is safe: the message waits in Redis's backup queue
            local.reader = None

    async def _read(self, local: _LocalChannels, process_channel: str) -> None:
        """Take this process's messages off Redis, handing each to its channel (until cancelled)."""
        pause = READ_RETRY_SECONDS[0]
        while True:
            try:
                to, message = await self.receive_single(process_channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away (a restart, a failover): the receivers wait
                redis_clients.watch.lost()
                log.debug("channel layer unreachable (%s); reading again in %.1f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(2 * pause, READ_RETRY_SECONDS[1])
                continue
            pause = READ_RETRY_SECONDS[0]
            for name in to if isinstance(to, list) else (to,):
                self._hand(local, name, message)

    def _hand(self, local: _LocalChannels, channel: str, message: dict) -> None:
        future = local.waiting.pop(channel, None)
        if future is not None and not future.done():
            future.set_result(message)
            return
        if channel in self._gone:
            log.debug("message for a channel whose consumer ended (%s) dropped", channel)
            return
        kept = self._kept.setdefault(channel, [])
        if len(kept) >= self.capacity:
            kept.pop(0)  # as channels-redis: a consumer that stopped reading loses the oldest
        kept.append(message)

"""The channel layer HearO runs on Redis: channels-redis with a pool that waits.

redis-py 7's default pool raises ``MaxConnectionsError`` the moment all its
connections are out. Seen under the fan-out benchmark: when ~2,000 sockets
close at once, their consumers' ``group_discard`` calls exhaust the pool of
1,000, the surplus fail, and their channels stay group members (for the
group expiry, a day). A blocking pool makes the surplus wait their turn.
With sentinels the pool also finds the primary through them
(common/redis_clients.py), and follows a failover.
"""

from channels_redis.core import RedisChannelLayer
from redis.asyncio import BlockingConnectionPool

from common import redis_clients

# How long a channel-layer call waits for a free connection before failing.
POOL_WAIT_SECONDS = 10


class WaitingRedisChannelLayer(RedisChannelLayer):
    def create_pool(self, index):
        host = dict(self.hosts[index])
        address = host.pop("address")
        if address.startswith("sentinel://"):  # a label: the sentinels name the server
            return redis_clients.async_pool(blocking_timeout=POOL_WAIT_SECONDS, **host)
        return BlockingConnectionPool.from_url(address, timeout=POOL_WAIT_SECONDS, **host)

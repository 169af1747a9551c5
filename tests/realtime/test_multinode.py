"""Two real Daphne nodes sharing one Redis: a change served by A reaches a client on B."""

import pytest

from tests.support.processes import daphne
from tests.support.stomp_ws import StompWs
from tests.test_server import call


@pytest.mark.django_db(transaction=True)
def test_a_customer_on_node_b_hears_a_cancel_served_by_node_a(tmp_path, redis_url):
    with daphne(tmp_path, "node-a") as (port_a, _), daphne(tmp_path, "node-b") as (port_b, _):
        _, ahead = call(port_a, "POST", "/api/queue/join", body={})
        _, me = call(port_a, "POST", "/api/queue/join", body={})
        client = StompWs(port_b)
        try:
            assert client.connect_customer(me["token"]).command == "CONNECTED"
            client.subscribe(f"/topic/queue-rank/{me['customerId']}")
            assert client.json()["rank"] == 2
            status, _ = call(port_a, "POST", "/api/queue/cancel", ahead["token"])
            assert status == 200
            pushed = client.json()
            assert (pushed["status"], pushed["rank"], pushed["customerId"]) == ("WAITING", 1, me["customerId"])
        finally:
            client.close()

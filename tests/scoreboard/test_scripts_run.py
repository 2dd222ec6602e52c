"""scoreboard.redis.scripts_run / script_run: several EVALSHA in one write on one pooled connection,
against the real Redis (REDIS_URL) and a throwaway redis-server the test freezes.

The replies must be what redis-py's pipeline would return; a script Redis forgot (SCRIPT FLUSH, a
restart) is loaded and run again; an error reply is raised and the connection stays usable; a
connection that failed half-way is never handed out again with replies still in flight."""

from __future__ import annotations

import time

import pytest
import redis

from scoreboard import redis as scoreboard_redis
from tests.reliability.throwaway import throwaway_redis

pytestmark = [pytest.mark.redis]

ECHO = "redis.call('INCR', KEYS[1]); return {KEYS[1], ARGV[1], tonumber(ARGV[2]) + 1}"
FAILS = "return redis.error_reply('ERR the script said no')"
SPIN = "local n = 0; for i = 1, tonumber(ARGV[1]) do n = n + 1 end; return n"


@pytest.fixture
def client(settings):
    scoreboard_redis.reset_breakers()
    client = scoreboard_redis.get_redis()
    assert client is not None
    return client


def calls(client, n: int, prefix: str = "k") -> list[scoreboard_redis.ScriptCall]:
    echo = scoreboard_redis.registered_script(client, ECHO)
    return [(echo, [f"test:{prefix}{i}"], [f"v{i}", i]) for i in range(n)]


def test_the_replies_are_the_pipelines_in_order_and_it_is_one_write(client, monkeypatch):
    batch = calls(client, 4)
    client.script_load(ECHO)
    sent: list[bytes] = []
    send = redis.connection.AbstractConnection.send_packed_command

    def spy(conn, command, check_health=True):
        if any(b"EVALSHA" in bytes(chunk) for chunk in command):  # not other threads' PINGs and handshakes
            sent.append(b"".join(bytes(chunk) for chunk in command))
        return send(conn, command, check_health)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", spy)
    replies = scoreboard_redis.scripts_run(client, batch)
    monkeypatch.undo()
    pipe = client.pipeline(transaction=False)
    for script, keys, args in calls(client, 4, prefix="p"):
        pipe.evalsha(script.sha, len(keys), *keys, *args)
    expected = [[f"test:p{i}".encode(), f"v{i}".encode(), i + 1] for i in range(4)]
    assert pipe.execute() == expected
    assert replies == [[f"test:k{i}".encode(), f"v{i}".encode(), i + 1] for i in range(4)]
    assert len(sent) == 1 and sent[0].count(b"EVALSHA") == 4  # one write for the four scripts
    assert [client.get(f"test:k{i}") for i in range(4)] == [b"1"] * 4


def test_a_script_redis_forgot_is_loaded_and_run_once(client):
    batch = calls(client, 3)
    scoreboard_redis.scripts_run(client, batch)
    client.script_flush()
    replies = scoreboard_redis.scripts_run(client, batch)
    assert [reply[2] for reply in replies] == [1, 2, 3]
    assert [client.get(f"test:k{i}") for i in range(3)] == [b"2"] * 3  # each ran once more, not twice
    assert scoreboard_redis.script_run(client, batch[0][0], ["test:one"], ["x", 41]) == [b"test:one", b"x", 42]


def test_an_error_reply_is_raised_and_the_connection_stays_in_step(client):
    fails = scoreboard_redis.registered_script(client, FAILS)
    batch = calls(client, 2)
    with pytest.raises(redis.ResponseError, match="the script said no"):
        scoreboard_redis.scripts_run(client, [batch[0], (fails, ["test:x"], []), batch[1]])
    # Every reply of that write was read: the next call on the pooled connection gets its own answer.
    assert client.get("test:k1") == b"1"  # the script after the failing one still ran
    assert scoreboard_redis.script_run(client, batch[0][0], ["test:after"], ["y", 1]) == [b"test:after", b"y", 2]


def test_a_connection_that_timed_out_half_way_is_dropped_not_reused():
    scoreboard_redis.reset_breakers()
    with throwaway_redis() as server:
        client = scoreboard_redis.client_for(server.url, 0.2)
        spin = scoreboard_redis.registered_script(client, SPIN)
        client.script_load(SPIN)
        with pytest.raises(redis.TimeoutError):
            # The second script outlasts the socket timeout: its reply (and the third's) arrive late.
            scoreboard_redis.scripts_run(client, [(spin, [], [1]), (spin, [], [60_000_000]), (spin, [], [2])])
        time.sleep(1.5)  # let Redis finish the spin and write the late replies
        pool = client.connection_pool
        assert pool._available_connections and all(conn._sock is None for conn in pool._available_connections)
        scoreboard_redis.reset_breakers()  # the timeout opened the circuit (tests/reliability cover that)
        # A fresh connection answers its own call, never the stale replies of the one before.
        assert scoreboard_redis.script_run(client, spin, [], [7]) == 7
    scoreboard_redis.reset_breakers()

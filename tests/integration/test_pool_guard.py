"""A pool whose server is down fails at once after its first failed wait, so that a
down server holds no worker thread for the pool's timeout; it recovers by itself."""

from __future__ import annotations

import time

import psycopg_pool
import pytest
from psycopg import conninfo

from tenantdb.core import connecting
from tenantdb.devenv import processes
from tests.e2e.support import Forwarder

pytestmark = pytest.mark.postgres


def test_a_pool_whose_server_is_down_fails_at_once_then_recovers(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connecting, "DOWN_SECONDS", 0.5)
    real = conninfo.conninfo_to_dict(database_url)
    link = Forwarder(processes.free_port(), (processes.LOOPBACK, processes.free_port()))
    url = conninfo.make_conninfo(database_url, host=processes.LOOPBACK, port=str(link.port))
    pool = connecting.GuardedPool(url, min_size=1, max_size=2, open=True, timeout=2)
    try:
        with pytest.raises(psycopg_pool.PoolTimeout) as first:
            pool.getconn()
        assert "unreachable moments ago" not in str(first.value)  # it waited, then failed
        with pytest.raises(psycopg_pool.PoolTimeout, match="unreachable moments ago"):
            pool.getconn()  # known down: at once, with the cause
        link.retarget((str(real.get("host") or processes.LOOPBACK), int(real["port"])))
        deadline = time.monotonic() + 60
        while True:
            try:
                with pool.connection() as conn:
                    assert conn.execute("SELECT 1").fetchone() == (1,)
                break
            except psycopg_pool.PoolTimeout:
                assert time.monotonic() < deadline, "the pool never reconnected"
    finally:
        pool.close()
        link.close()


def test_a_busy_pool_is_not_taken_for_a_down_one(database_url: str) -> None:
    pool = connecting.GuardedPool(database_url, min_size=1, max_size=1, open=True, timeout=0.5)
    try:
        with pool.connection():
            with pytest.raises(psycopg_pool.PoolTimeout) as waited:
                pool.getconn()  # the one connection is in use
            assert "unreachable moments ago" not in str(waited.value)
            with pytest.raises(psycopg_pool.PoolTimeout) as again:
                pool.getconn()
            assert "unreachable moments ago" not in str(again.value)
    finally:
        pool.close()

"""bench.dbwrite runs the real write statement: a parameter the statement gained and the benchmark
does not pass fails here, not in the middle of a make bench (it did twice)."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from bench.dbwrite import score_write_rate


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the write statement is PostgreSQL's")
@pytest.mark.parametrize("boards", [1, 3])
def test_the_write_benchmark_runs_the_write_statement(boards: int) -> None:
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"  # the migrated test database
    out = score_write_rate(url, seconds=0.3, clients=1, boards=boards, scratch=f"sb_test_dbwrite_{os.getpid()}")
    assert out["writes_per_s"] > 0
    assert out["row_writes_per_s"] > out["writes_per_s"]
    assert out["boards"] == boards

"""Service times for the capacity planner from stored runs (PostgreSQL) and bench JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integrations.capacity.measured import service_times_from_bench, service_times_from_database


def _study(conn, uid: str, modalities: list[str]) -> None:
    conn.execute(
        "INSERT INTO studies (study_instance_uid, modalities, state) VALUES (%s, %s, 'done')",
        (uid, modalities),
    )


def test_worker_time_per_study_by_modality(database) -> None:
    with database.connection() as conn:
        for index, seconds in enumerate((40.0, 50.0, 45.0)):
            uid = f"1.2.3.{index}"
            _study(conn, uid, ["CT", "SR"])
            conn.execute(
                "INSERT INTO dispatch (study_instance_uid, generation, reason, state, started_at,"
                " finished_at) VALUES (%s, 1, 'closed', 'completed', now() - make_interval("
                "secs => %s), now())",
                (uid, seconds),
            )
        # a failed run is no service time; a run older than the window is not counted
        _study(conn, "1.2.3.9", ["CT"])
        conn.execute(
            "INSERT INTO dispatch (study_instance_uid, generation, reason, state, started_at,"
            " finished_at) VALUES ('1.2.3.9', 1, 'closed', 'failed', now() - interval '3 s', now())"
        )
        _study(conn, "1.2.3.8", ["CT"])
        conn.execute(
            "INSERT INTO dispatch (study_instance_uid, generation, reason, state, started_at,"
            " finished_at) VALUES ('1.2.3.8', 1, 'closed', 'completed',"
            " now() - interval '60 days', now() - interval '60 days' + interval '9 s')"
        )
        # work-pool route: no dispatch times, the span of the recorded steps instead
        _study(conn, "1.2.4.1", ["SR", "DX"])
        now = datetime.now(UTC)
        for step, start, end in (("load_study", 7.0, 6.0), ("infer", 6.0, 1.0)):
            conn.execute(
                "INSERT INTO study_steps (study_instance_uid, generation, step, state, started_at,"
                " finished_at) VALUES ('1.2.4.1', 1, %s, 'completed', %s, %s)",
                (step, now - timedelta(seconds=start), now - timedelta(seconds=end)),
            )
    found = service_times_from_database(database, days=30)
    assert sorted(found) == ["CT", "DX"]
    assert sorted(found["CT"]) == pytest.approx([40.0, 45.0, 50.0], abs=0.01)
    assert found["DX"] == pytest.approx([6.0], abs=0.01)


def test_bench_json_rows_of_one_device(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    path.write_text(
        json.dumps(
            {
                "results": [
                    {"analyzer": "head-ct-ich", "device": "cpu", "p50_s": 2.5, "p95_s": 3.3},
                    {"analyzer": "head-ct-ich", "device": "cuda", "p50_s": 0.2, "p95_s": 0.3},
                ]
            }
        )
    )
    assert service_times_from_bench(path, "cpu") == {"head-ct-ich": (2.5, 3.3)}
    assert service_times_from_bench(path, "cuda") == {"head-ct-ich": (0.2, 0.3)}

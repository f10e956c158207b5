"""PostgreSQL restarted in the middle of the work (a private cluster this test starts and
stops, never the shared server): a study being processed, one arriving while the database is
down (its instances answered 0xA700 and sent again by the modality), one arriving after.
No study is lost, each ends with one completed run and one analysis, and nothing is
delivered twice. Real node, study closer, warm worker, Prefect server, the demo model."""

from __future__ import annotations

import time

import pytest
from pynetdicom import AE

from integrations.dicom.status import STORE_OUT_OF_RESOURCES
from models.phantoms.chest import chest_xray_study
from tests.fix_dcmtk import storescu
from tests.fix_hl7 import wait_until
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.site import running_node, running_worker

CHEST_RULE = {
    "name": "chest",
    "modality": ["DX"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


def rows(database, query: str, *params: object) -> list[dict] | None:
    try:
        with database.connection() as conn:
            return conn.execute(query, params).fetchall()
    except Exception:  # the database is down or coming back
        return None


@pytest.mark.slow
def test_postgres_restart_mid_flow_loses_no_study(
    settings_factory,
    restartable_postgres,
    node_port,
    orthanc,
    prefect_api_url,
    demo_models_dir,
    tmp_path,
):
    settings = settings_factory(
        database={"url": restartable_postgres.url, "pool_size": 4},
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        pacs={"ae_title": PACS_AE_TITLE, "port": orthanc.dicom_port, "timeout_seconds": 10},
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker={"lease_seconds": 10},
    )
    studies = [
        chest_xray_study(60 + n, [], accession_number=f"PGRESTART-{n}", size=256) for n in range(3)
    ]
    files = []
    for study in studies:
        paths = []
        for ds in study.datasets:
            paths.append(tmp_path / f"{ds.SOPInstanceUID}.dcm")
            ds.save_as(paths[-1], enforce_file_format=True)
        files.append(paths)
    uids = [study.study_instance_uid for study in studies]
    modality = AE(ae_title="MODALITY")
    for ds in studies[1].datasets:
        modality.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    with running_node(settings) as site, running_worker(settings):
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[0]).returncode == 0
        wait_until(
            lambda: rows(
                site.database,
                "SELECT 1 FROM dispatch WHERE study_instance_uid = %s AND state = 'running'",
                uids[0],
            ),
            60,
            "the first study's run under way",
        )
        restartable_postgres.stop()  # mid-flow
        assoc = modality.associate("127.0.0.1", site.port, ae_title=NODE_AE_TITLE)
        assert assoc.is_established
        statuses = [assoc.send_c_store(ds).Status for ds in studies[1].datasets]
        assoc.release()
        assert set(statuses) == {STORE_OUT_OF_RESOURCES}  # nothing acknowledged that is not durable
        time.sleep(2.0)
        restartable_postgres.start()
        # the modality sends the refused study again, and the next one arrives
        wait_until(
            lambda: storescu("MODALITY", NODE_AE_TITLE, site.port, files[1]).returncode == 0,
            60,
            "resend",
        )
        assert storescu("MODALITY", NODE_AE_TITLE, site.port, files[2]).returncode == 0
        try:
            wait_until(
                lambda: (
                    (
                        found := rows(
                            site.database,
                            "SELECT study_instance_uid FROM studies WHERE state = 'done'",
                        )
                    )
                    is not None
                    and {row["study_instance_uid"] for row in found} >= set(uids)
                ),
                90,
                "every study done",
            )
        except AssertionError:
            print(
                "STUDIES",
                rows(site.database, "SELECT study_instance_uid, state, generation FROM studies"),
            )
            print(
                "DISPATCH",
                rows(
                    site.database,
                    "SELECT study_instance_uid, state, error, lease_expires_at, worker FROM dispatch",
                ),
            )
            raise
        time.sleep(2.0)
        dispatch = rows(
            site.database,
            "SELECT study_instance_uid, state, count(*) AS n FROM dispatch GROUP BY 1, 2 ORDER BY 1, 2",
        )
        analyses = rows(
            site.database, "SELECT study_instance_uid, count(*) AS n FROM analyses GROUP BY 1"
        )
        reports = rows(
            site.database,
            "SELECT sop_instance_uid, count(*) AS n FROM results_outbox WHERE part = 'report'"
            " AND state <> 'superseded' GROUP BY 1",
        )
        instances = rows(
            site.database, "SELECT study_instance_uid, count(*) AS n FROM instances GROUP BY 1"
        )
    print("dispatch after the restart:", dispatch)
    completed = {row["study_instance_uid"] for row in dispatch if row["state"] == "completed"}
    assert completed == set(uids)
    assert all(row["n"] == 1 for row in dispatch if row["state"] == "completed")
    assert {row["study_instance_uid"]: row["n"] for row in analyses} == dict.fromkeys(uids, 1)
    assert {row["study_instance_uid"]: row["n"] for row in instances} == {
        uid: len(study.datasets) for uid, study in zip(uids, studies, strict=True)
    }
    assert reports and all(row["n"] == 1 for row in reports)  # one delivery row per SR

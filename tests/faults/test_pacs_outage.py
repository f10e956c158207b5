"""A PACS outage while studies are processed: Orthanc (a real one, this test's own) is stopped,
studies arrive from a modality and are analysed, the runs complete without waiting for the
PACS, and once Orthanc is started again every result reaches it, SR before overlays, with no
manual step. Prints the time from the PACS restart to the last result stored."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from deployments.orthanc import OrthancClient, OrthancConfig, OrthancProcess, free_port
from integrations.db.worklist import WorklistStore
from integrations.dicom.scu import DicomClient, Peer
from integrations.escalation.channels import outbox_priority
from models.results import UrgencyTier
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE, OrthancPeer
from tests.integration.results.outbox_helpers import new_instances, outbox_rows, wait_for
from tests.site import running_node, running_results_sender, running_worker

MODALITY_AE_TITLE = "MODALITY"
CHEST_RULE = {
    "name": "chest",
    "modality": ["DX", "CR"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}


@pytest.fixture
def own_orthanc(tmp_path) -> Iterator[tuple[OrthancProcess, OrthancPeer]]:
    """An Orthanc this test may stop and start again (same storage, same ports)."""
    config = OrthancConfig(
        storage_dir=tmp_path / "orthanc",
        ae_title=PACS_AE_TITLE,
        dicom_port=free_port(),
        http_port=free_port(),
    )
    process = OrthancProcess(config)
    process.start()
    client = OrthancClient(process.url)
    yield process, OrthancPeer(client, PACS_AE_TITLE, config.dicom_port, process.url, 0)
    client.close()
    process.stop()


def send_from_modality(node_port: int, datasets) -> None:
    client = DicomClient(
        Peer(NODE_AE_TITLE, "127.0.0.1", node_port, MODALITY_AE_TITLE, timeout_seconds=30)
    )
    client.store(datasets)


def dispatch_states(site, study_uids):
    with site.database.connection() as conn:
        rows = conn.execute(
            "SELECT study_instance_uid, state FROM dispatch WHERE study_instance_uid = ANY(%s)",
            (list(study_uids),),
        ).fetchall()
    return {row["study_instance_uid"]: row["state"] for row in rows}


@pytest.mark.parametrize(
    ("outage_seconds", "study_count"),
    [
        pytest.param(20, 2, id="20s-outage"),
        pytest.param(300, 4, id="5min-outage", marks=[pytest.mark.slow, pytest.mark.timeout(600)]),
    ],
)
def test_pacs_outage_runs_complete_and_every_result_arrives_after_the_restart_in_order(
    outage_seconds,
    study_count,
    own_orthanc,
    settings_factory,
    node_port,
    prefect_api_url,
    demo_models_dir,
):
    from models.phantoms.chest import chest_xray_study

    process, pacs = own_orthanc
    settings = settings_factory(
        node={
            "ae_title": NODE_AE_TITLE,
            "port": node_port,
            "allowed_callers": [PACS_AE_TITLE, MODALITY_AE_TITLE],
        },
        pacs={"ae_title": PACS_AE_TITLE, "port": pacs.dicom_port, "timeout_seconds": 10},
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        routing={"rules": [CHEST_RULE]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
    )
    studies = [
        chest_xray_study(40 + index, ["Pneumothorax"], accession_number=f"OUTAGE-{index}")
        for index in range(study_count)
    ]
    uids = [study.study_instance_uid for study in studies]
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings) as sender,
    ):
        process.stop()
        down_at = time.monotonic()
        for study in studies:
            send_from_modality(site.port, study.datasets)
        wait_for(
            lambda: set(dispatch_states(site, uids).values()) == {"completed"},
            timeout=60 + 30 * study_count,
        )
        runs_done_after = time.monotonic() - down_at
        assert process.process is None  # every run completed while the PACS was down
        for uid in uids:
            assert site.store.study(uid).state == "done"
            steps = site.store.steps(uid)
            assert steps["store_results"]["state"] == "completed"
            assert steps["store_results"]["detail"]["queued"] == 1
            assert "did not answer" in steps["fetch_priors"]["detail"]["prior"]
            assert WorklistStore(site.database).get(uid)["status"] != "results stored"
        # the sender keeps trying each study's SR (and records it) while the PACS is away;
        # the overlays wait behind their SR
        wait_for(
            lambda: all(
                row["attempts"] >= 1
                for row in outbox_rows(site.database)
                if row["part"] == "report"
            )
        )
        queued = outbox_rows(site.database)
        assert {row["state"] for row in queued} == {"pending"}
        for row in queued:  # Critical studies' results are delivered first
            tier = WorklistStore(site.database).get(row["study_instance_uid"])["tier"]
            assert row["priority"] == outbox_priority(UrgencyTier(tier))
        reports = [row for row in queued if row["part"] == "report"]
        assert len(reports) == study_count
        assert all("PeerUnavailableError" in row["last_error"] for row in reports)
        assert all(row["attempts"] == 0 for row in queued if row["part"] == "overlay")

        time.sleep(max(0.0, outage_seconds - (time.monotonic() - down_at)))
        process.start()
        restarted_at = time.time()
        delivered = wait_for(
            lambda: (
                (rows := outbox_rows(site.database))
                and all(row["state"] == "sent" for row in rows)
                and rows
            ),
            timeout=120,
        )
        last_stored = max(row["sent_at"] for row in delivered).timestamp()
        recovery = last_stored - restarted_at
        print(
            f"\nPACS outage {outage_seconds} s, {study_count} studies ({len(delivered)} objects):"
            f" runs completed {runs_done_after:.1f} s after the PACS went down;"
            f" time from PACS restart to last result stored: {recovery:.2f} s"
            f" (max attempts {max(row['attempts'] for row in delivered)})"
        )
        steps = {uid: site.store.steps(uid)["deliver_results:pacs"] for uid in uids}
        worklist = {uid: WorklistStore(site.database).get(uid)["status"] for uid in uids}
        assert sender.outbox.counts() == {"sent": len(delivered)}

    assert recovery < 30.0
    assert all(step["state"] == "completed" for step in steps.values())
    assert set(worklist.values()) == {"results stored"}
    # What the PACS received, in the order it received it: each study's SR before its overlays.
    arrived = [change["sop_instance_uid"] for change in new_instances(pacs)]
    by_uid = {row["sop_instance_uid"]: row for row in delivered}
    assert sorted(arrived) == sorted(by_uid)
    for uid in uids:
        order = [by_uid[sop]["part"] for sop in arrived if by_uid[sop]["study_instance_uid"] == uid]
        assert order[0] == "report" and order.count("report") == 1 and len(order) >= 2
        assert set(order[1:]) == {"overlay"}

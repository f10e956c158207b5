"""Claims by priority against a real PostgreSQL: studies recorded as the node does, closed by
the study closer, claimed by workers; and the claim of a worker that stopped recovered."""

from __future__ import annotations

import time

from pydicom import Dataset
from pydicom.sequence import Sequence

from flows.dispatch import StudyCloser, WarmWorker
from integrations.db.patients import PatientStore
from integrations.db.store import StudyStore
from integrations.dicom.header import read_header
from integrations.emr.identifiers import MrnRules
from integrations.hl7.adt import parse_adt
from tests.dicom_samples import CT_IMAGE, make_instance, write
from tests.emr_samples import adt

ROUTE_EVERYTHING = {"rules": [{"name": "all", "analyzers": ["chest-xray"]}]}


def receive(store: StudyStore, folder, name: str, *, priority: str = "", **kwargs) -> str:
    dataset = make_instance(name, **kwargs)
    if priority:
        request = Dataset()
        request.RequestedProcedurePriority = priority
        dataset.RequestAttributesSequence = Sequence([request])
    path = write(dataset, folder / name)
    data = path.read_bytes()
    store.record_instance(
        read_header(data), path=str(path), size_bytes=len(data), calling_ae_title="TEST"
    )
    return dataset.StudyInstanceUID


def close_all(database, closer: StudyCloser, uids: list[str]) -> None:
    """Close the studies one at a time, in the order given (their close times follow it)."""
    for uid in uids:
        with database.connection() as conn:
            conn.execute(
                "UPDATE studies SET last_received_at = clock_timestamp() - interval '1 hour'"
                " WHERE study_instance_uid = %s",
                (uid,),
            )
        assert closer.run_once() == 1


def test_workers_claim_by_order_priority_then_study_type_then_close_time(
    settings_factory, database, tmp_path
):
    settings = settings_factory(routing=ROUTE_EVERYTHING)
    store = StudyStore(database)
    closer = StudyCloser(store, settings)
    # An emergency patient known from ADT (PV1-2 E), whose knee radiograph says nothing.
    patients = PatientStore(database, MrnRules.from_settings(settings.mrn))
    text = adt("A04", "ADT-PRIO-1", mrn="ER-7", patient_class="E")
    message = parse_adt(text, settings.hl7.accepted_versions)
    patients.receive(
        raw=text.encode(), header=message.header, charset="utf-8", peer="test",
        message=message, ack_code="AA",
    )  # fmt: skip
    uids = {
        "knee": receive(store, tmp_path, "knee", modality="CR", body_part="KNEE"),
        "chest": receive(store, tmp_path, "chest"),
        "head-ct": receive(
            store, tmp_path, "head-ct", modality="CT", body_part="HEAD", sop_class_uid=CT_IMAGE
        ),
        "stat-knee": receive(
            store, tmp_path, "stat-knee", modality="CR", body_part="KNEE", priority="STAT"
        ),
        "er-knee": receive(
            store, tmp_path, "er-knee", modality="CR", body_part="KNEE", patient_id="ER-7"
        ),
        "chest-later": receive(store, tmp_path, "chest-later"),
    }
    close_all(database, closer, list(uids.values()))

    claimed = []
    while (item := store.claim("test-worker", 15)) is not None:
        claimed.append(next(name for name, uid in uids.items() if uid == item.study_instance_uid))
    assert claimed == ["stat-knee", "er-knee", "head-ct", "chest", "chest-later", "knee"]

    with database.connection() as conn:
        rows = {
            row["study_instance_uid"]: row
            for row in conn.execute("SELECT * FROM dispatch ORDER BY id").fetchall()
        }
    assert rows[uids["head-ct"]]["priority_rule"] == "head-ct"
    assert rows[uids["stat-knee"]]["priority_reason"] == (
        "order STAT from dicom; rule extremity-radiograph (rank 10)"
    )
    assert rows[uids["er-knee"]]["priority_reason"].startswith("order ASAP from adt")
    # a rerun keeps the place its study was given at close
    store.finish_dispatch(rows[uids["head-ct"]]["id"], succeeded=True, worker="test-worker")
    store.request_rerun(uids["head-ct"])
    with database.connection() as conn:
        rerun = conn.execute(
            "SELECT priority, priority_rule FROM dispatch WHERE reason = 'rerun'"
        ).fetchone()
    assert (rerun["priority"], rerun["priority_rule"]) == (190, "head-ct")


def test_an_expired_claim_is_queued_again_and_its_run_listed_as_lost(
    settings_factory, database, tmp_path
):
    settings = settings_factory(routing=ROUTE_EVERYTHING)
    store = StudyStore(database)
    uid = receive(store, tmp_path, "lost")
    close_all(database, StudyCloser(store, settings), [uid])
    item = store.claim("worker-a", 5)
    assert item is not None
    store.attach_flow_run(item.id, "5f0c2a8e-0000-4000-8000-000000000001")
    assert store.extend_lease(item.id, 5, "worker-a")
    assert not store.extend_lease(item.id, 5, "worker-b")  # only the holder renews
    assert store.claim("worker-b", 5) is None  # the live claim blocks the study
    assert store.requeue_expired() == []
    with database.connection() as conn:
        conn.execute("UPDATE dispatch SET lease_expires_at = clock_timestamp() - interval '1 s'")
    assert store.requeue_expired() == [uid]
    (lost,) = store.lost_runs()
    assert (str(lost["flow_run_id"]), lost["worker"]) == (
        "5f0c2a8e-0000-4000-8000-000000000001",
        "worker-a",
    )
    again = store.claim("worker-b", 5)
    assert again is not None and again.id == item.id
    # the stopped worker, should it come back, records nothing over the new claim
    assert not store.finish_dispatch(item.id, succeeded=False, error="late", worker="worker-a")
    assert store.finish_dispatch(item.id, succeeded=True, worker="worker-b")


def test_heartbeat_sets_the_lost_prefect_run_to_crashed_with_the_reason(
    settings_factory, database, tmp_path, prefect_api_url
):
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    @flow(name="dispatch-priority-test")
    def placeholder() -> None:
        return None

    settings = settings_factory(routing=ROUTE_EVERYTHING)
    store = StudyStore(database)
    uid = receive(store, tmp_path, "crashed")
    close_all(database, StudyCloser(store, settings), [uid])
    item = store.claim("host-1:worker-1", 5)
    assert item is not None
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(placeholder, state=Running())
        store.attach_flow_run(item.id, str(flow_run.id))
        with database.connection() as conn:
            conn.execute("UPDATE dispatch SET lease_expires_at = clock_timestamp()")
        time.sleep(0.01)
        WarmWorker(store, settings, name="host-2:worker-2").heartbeat_once()
        state = client.read_flow_run(flow_run.id).state
    assert state is not None and state.is_crashed()
    assert (
        state.message == "worker host-1:worker-1 stopped (heartbeat lost); the study was re-queued"
    )
    assert store.lost_runs() == []
    assert store.claim("host-2:worker-2", 5) is not None


def test_an_express_worker_takes_only_short_studies_counting_frames(
    settings_factory, database, tmp_path
):
    settings = settings_factory(routing=ROUTE_EVERYTHING, worker={"express_max_images": 4})
    store = StudyStore(database)
    closer = StudyCloser(store, settings)

    def receive_series(name: str, instances: int, frames: int | None = None, **kwargs) -> str:
        for number in range(1, instances + 1):
            dataset = make_instance(name, number=number, **kwargs)
            if frames is not None:
                dataset.NumberOfFrames = frames
            path = write(dataset, tmp_path / f"{name}-{number}")
            data = path.read_bytes()
            store.record_instance(
                read_header(data), path=str(path), size_bytes=len(data), calling_ae_title="TEST"
            )
        return dataset.StudyInstanceUID

    uids = {
        # highest priority first: head CT, then the multi-frame MR, then the radiographs
        "head-ct": receive_series(
            "lane-ct", 6, modality="CT", body_part="HEAD", sop_class_uid=CT_IMAGE
        ),
        # one instance, but 40 frames: 40 images of work, not one
        "enhanced": receive_series("lane-mf", 1, frames=40, modality="MR", body_part="BRAIN"),
        "chest": receive_series("lane-chest", 2),
        "knee": receive_series("lane-knee", 4, modality="CR", body_part="KNEE"),
    }
    close_all(database, closer, list(uids.values()))
    with database.connection() as conn:
        images = {
            row["study_instance_uid"]: row["image_count"]
            for row in conn.execute("SELECT study_instance_uid, image_count FROM dispatch")
        }
    assert {name: images[uid] for name, uid in uids.items()} == {
        "head-ct": 6,
        "enhanced": 40,
        "chest": 2,
        "knee": 4,
    }

    express = WarmWorker(store, settings, name="express-1", express=True)
    claimed = []
    while (item := store.claim(express.name, 15, express.max_images)) is not None:
        claimed.append(item.study_instance_uid)
    assert claimed == [uids["chest"], uids["knee"]]
    general = [store.claim("worker-1", 15), store.claim("worker-1", 15)]
    assert [item.study_instance_uid for item in general if item] == [
        uids["head-ct"],
        uids["enhanced"],
    ]

    # A rerun keeps the study's image count, so it stays in its lane.
    store.finish_dispatch(general[0].id, succeeded=False, error="test", worker="worker-1")
    assert store.request_rerun(uids["head-ct"]) is not None
    assert store.claim(express.name, 15, express.max_images) is None
    assert store.claim("worker-1", 15).study_instance_uid == uids["head-ct"]

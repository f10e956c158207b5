"""A site whose Critical chest findings page surgery, as the fault tests build it, and how
long the first page took after study close (I/O: reads the node's database, sends DICOM)."""

from __future__ import annotations

from pynetdicom import AE

from tests.faults.workers import wait_for
from tests.fix_orthanc import NODE_AE_TITLE
from tests.integration.escalation.conftest import escalation_section

DEADLINE_SECONDS = 60.0  # a Critical finding pages within 60 s of study close
CHEST_RULE = {
    "name": "chest", "modality": ["DX"], "body_part": ["CHEST"], "analyzers": ["chest-xray"]
}  # fmt: skip


def send(port: int, datasets) -> None:  # type: ignore[no-untyped-def]
    """C-STORE every dataset on one association, as the modality MODALITY."""
    ae = AE(ae_title="MODALITY")
    for dataset in datasets:
        ae.add_requested_context(dataset.SOPClassUID, dataset.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title=NODE_AE_TITLE)
    assert assoc.is_established
    try:
        for dataset in datasets:
            assert assoc.send_c_store(dataset).Status == 0
    finally:
        assoc.release()


def dispatch_states(database) -> dict[str, int]:  # type: ignore[no-untyped-def]
    with database.connection() as conn:
        rows = conn.execute("SELECT state, count(*) AS n FROM dispatch GROUP BY state").fetchall()
    return {row["state"]: row["n"] for row in rows}


def fault_settings(
    settings_factory,
    node_port,
    demo_models_dir,
    notify_http,
    notify_smtp,
    *,
    worker: dict | None = None,
    rules: list[dict] | None = None,
    **sections,
):  # type: ignore[no-untyped-def]
    """Chest X-rays routed to the demo model (and ``rules`` besides), any pneumothorax
    Critical and paged to surgery; one warm worker unless ``worker`` says otherwise;
    ``sections`` added (the PACS, say)."""
    return settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": node_port, "allowed_callers": ["MODALITY"]},
        study={"quiet_seconds": 1.0, "poll_seconds": 0.05},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        worker=worker or {"count": 1, "lease_seconds": 30},
        routing={"rules": [CHEST_RULE, *(rules or [])]},
        urgency={
            "rules": [
                {"name": "fault-any-pneumothorax", "labels": ["Pneumothorax"],
                 "min_probability": 0.0, "tier": "Critical"}
            ]
        },
        escalation=escalation_section(
            notify_http,
            notify_smtp,
            rules=[{"name": "fault-pneumothorax", "labels": ["Pneumothorax"], "team": "surgery"}],
        ),
        **sections,
    )  # fmt: skip


def pages(notify_http, study_instance_uid: str) -> list:  # type: ignore[no-untyped-def]
    return [
        hook
        for hook in notify_http.received("/hooks/surgery")
        if hook.json()["study"]["study_instance_uid"] == study_instance_uid
    ]


def seconds_to_first_page(site, notify_http, study_instance_uid: str) -> float:  # type: ignore[no-untyped-def]
    hook = wait_for(
        lambda: next(iter(pages(notify_http, study_instance_uid)), None),
        DEADLINE_SECONDS + 60,
        "the page",
    )
    study = site.store.study(study_instance_uid)
    assert study is not None and study.closed_at is not None
    return hook.received_at - study.closed_at.timestamp()

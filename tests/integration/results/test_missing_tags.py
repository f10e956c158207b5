"""A study without Patient Orientation, through the real node, worker, Prefect and Orthanc.

The issue this covers: a missing optional tag failed the whole run at build_overlays after the
SR had been stored. Now the run completes, the SR in the PACS says which carrier was not
produced and why, the run log says it at WARNING, and the other overlays are in the PACS.
"""

from __future__ import annotations

import io

import httpx
import pytest
from pydicom import dcmread

from integrations.dicom import result_codes
from tests.fix_orthanc import NODE_ALIAS
from tests.fix_prefect import flow_runs
from tests.integration.results.conftest import completed_runs, site
from tests.integration.test_end_to_end import upload, wait_for
from tests.site import running_node, running_results_sender, running_worker
from tests.unit.results.test_missing_attributes import not_produced_statements


def warnings_of_run(api_url: str, flow_run_id: str) -> list[str]:
    response = httpx.post(
        f"{api_url}/logs/filter",
        json={"logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": 30}}},
        timeout=10,
    )
    response.raise_for_status()
    return [row["message"] for row in response.json()]


@pytest.mark.slow
def test_a_study_without_patient_orientation_completes_with_the_sr_saying_why(
    settings_factory, node_port, default_orthanc, demo_models_dir, make_mllp_peer, prefect_api_url
):
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(32, ["Pneumothorax"], accession_number="NO-ORIENT")
    for dataset in study.datasets:
        for keyword in ("PatientOrientation", "ImageOrientationPatient"):
            if keyword in dataset:
                delattr(dataset, keyword)
    uid = study.study_instance_uid
    upload(default_orthanc, study.datasets)

    def held_by_modality() -> dict[str, list]:
        held: dict[str, list] = {}
        for instance in default_orthanc.client.instances_of(uid):
            data = default_orthanc.client.instance_file(instance["ID"])
            dataset = dcmread(io.BytesIO(data))
            held.setdefault(str(dataset.Modality), []).append(dataset)
        return held

    settings = site(
        settings_factory,
        node_port,
        default_orthanc,
        demo_models_dir,
        make_mllp_peer().port,
        results={"carriers": ["sr", "gsps", "secondary_capture"]},
    )
    with (
        running_node(settings) as node,
        running_worker(settings),
        running_results_sender(settings),
    ):
        assert default_orthanc.client.send_study(NODE_ALIAS, [uid])["FailedInstancesCount"] == 0
        wait_for(lambda: completed_runs(node, uid) == 1)
        steps = node.store.steps(uid)
        assert node.store.study(uid).state == "done"
        study_key = node.store.study(uid).study_key  # what Prefect knows the study by
        held = wait_for(lambda: {"SR", "PR"} <= set(found := held_by_modality()) and found)
    assert all(step["state"] == "completed" for step in steps.values())
    assert steps["build_overlays:chest-xray"]["detail"]["objects"] == ["gsps"]
    assert {"SR", "PR"} <= set(held) and "OT" not in held  # GSPS yes, Secondary Capture no
    (statement,) = not_produced_statements(held["SR"][0])
    assert "(secondary_capture) not produced" in statement and "Patient Orientation" in statement
    assert result_codes.CARRIER_NOT_PRODUCED.meaning == "Result object not produced"
    (run,) = [
        run
        for run in flow_runs(prefect_api_url, "process-study")
        if run["parameters"].get("study_key") == study_key
    ]
    assert run["state_type"] == "COMPLETED"
    logged = wait_for(
        lambda: [
            message
            for message in warnings_of_run(prefect_api_url, run["id"])
            if "secondary_capture) not produced" in message
        ],
        timeout=30,
    )
    assert "Patient Orientation" in logged[0]

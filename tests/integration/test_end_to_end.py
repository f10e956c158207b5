"""The whole chain against real peers: Orthanc or dcmtk sends a study, the node closes it, a
warm worker runs process-study as a run of the Prefect deployment, the SR lands in Orthanc."""

from __future__ import annotations

import io
import time

import httpx
import pytest
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore
from tests.fix_dcmtk import storescu
from tests.fix_orthanc import NODE_AE_TITLE, PACS_AE_TITLE
from tests.fix_prefect import flow_runs
from tests.site import running_node, running_results_sender, running_worker

CHEST_RULE = {
    "name": "chest",
    "modality": ["DX", "CR"],
    "body_part": ["CHEST"],
    "analyzers": ["chest-xray"],
}
SR_MODALITY = "SR"


@pytest.fixture
def site_settings(settings_factory, node_port, orthanc, prefect_api_url, demo_models_dir):
    def make(**overrides):
        sections = {
            "node": {
                "ae_title": NODE_AE_TITLE,
                "port": node_port,
                "allowed_callers": [PACS_AE_TITLE, "MODALITY"],
            },
            "pacs": {
                "ae_title": PACS_AE_TITLE,
                "host": "127.0.0.1",
                "port": orthanc.dicom_port,
                "timeout_seconds": 10,
            },
            "study": {"quiet_seconds": 1.0, "poll_seconds": 0.05},
            "routing": {"rules": [CHEST_RULE]},
            "models": {"dir": str(demo_models_dir), "device": "cpu"},
        }
        for section, values in overrides.items():
            sections[section] = {**sections.get(section, {}), **values}
        return settings_factory(**sections)

    return make


def wait_for(predicate, timeout: float = 90.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def orthanc_sr_instances(orthanc, study_uid):
    return [
        i
        for i in orthanc.client.instances_of(study_uid)
        if i.get("MainDicomTags", {}).get("SOPInstanceUID") and _modality(orthanc, i) == SR_MODALITY
    ]


def _modality(orthanc, instance):
    series = orthanc.client.http.get(f"/series/{instance['ParentSeries']}").json()
    return series["MainDicomTags"].get("Modality")


def upload(orthanc, datasets):
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        orthanc.client.upload(buffer.getvalue())


def study_key(study_uid):
    from tasks.runtime import get_runtime

    study = get_runtime().store.study(study_uid)
    return study.study_key if study else None


def runs_of(prefect_api_url, study_uid, state_type="COMPLETED"):
    key = study_key(study_uid)
    return [
        run
        for run in flow_runs(prefect_api_url, "process-study")
        if key and run["parameters"].get("study_key") == key and run["state_type"] == state_type
    ]


def completed_runs(prefect_api_url, study_uid):
    return runs_of(prefect_api_url, study_uid)


def test_study_pushed_by_orthanc_ends_with_an_sr_in_orthanc_and_a_completed_deployment_run(
    site_settings, clean_orthanc, prefect_api_url
):
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(11, ["Pneumothorax"], accession_number="E2E-ORTHANC")
    upload(clean_orthanc, study.datasets)
    settings = site_settings()
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        outcome = clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
        assert outcome["FailedInstancesCount"] == 0
        srs = wait_for(lambda: orthanc_sr_instances(clean_orthanc, study.study_instance_uid))
        assert len(srs) == 1
        sr = dcmread(io.BytesIO(clean_orthanc.client.instance_file(srs[0]["ID"])))
        assert sr.StudyInstanceUID == study.study_instance_uid
        assert sr.PatientID == study.datasets[0].PatientID
        runs = wait_for(lambda: completed_runs(prefect_api_url, study.study_instance_uid))
        assert runs[0]["deployment_id"] is not None  # a run of the process-study deployment
        key = site.store.study(study.study_instance_uid).study_key
        assert runs[0]["name"] == f"DX {key} gen 1"  # readable, PHI-free name
        assert runs[0]["parameters"] == {"study_key": key}
        # the results sender records the delivery as a step once every object is stored
        wait_for(
            lambda: (
                site.store.steps(study.study_instance_uid)
                .get("deliver_results:pacs", {})
                .get("state")
                == "completed"
            )
        )
        steps = site.store.steps(study.study_instance_uid)
        assert {
            "fetch_priors",
            "run_inference:chest-xray",
            "escalate",
            "store_results",
            "update_worklist",
            "deliver_results:pacs",
        } <= set(steps)
        assert {name: step["state"] for name, step in steps.items()} == {
            name: "completed" for name in steps
        }
        assert site.store.study(study.study_instance_uid).state == "done"


def test_study_sent_by_storescu_ends_with_an_sr_and_a_rerun_replaces_it(
    site_settings, clean_orthanc, tmp_path, dcmtk_tools
):
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(12, [], accession_number="E2E-STORESCU")
    files = []
    for ds in study.datasets:
        path = tmp_path / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    settings = site_settings()
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert result.returncode == 0, result.stderr
        first = wait_for(lambda: orthanc_sr_instances(clean_orthanc, study.study_instance_uid))
        assert site.store.request_rerun(study.study_instance_uid) is not None
        wait_for(
            lambda: _dispatch_states(site, study.study_instance_uid) == ["completed", "completed"]
        )
        second = orthanc_sr_instances(clean_orthanc, study.study_instance_uid)
    assert [i["MainDicomTags"]["SOPInstanceUID"] for i in second] == [
        i["MainDicomTags"]["SOPInstanceUID"] for i in first
    ]


def _logs(prefect_api_url, flow_run_id, level=0):
    response = httpx.post(
        f"{prefect_api_url}/logs/filter",
        json={
            "logs": {"flow_run_id": {"any_": [flow_run_id]}, "level": {"ge_": level}},
            "limit": 200,
        },
        timeout=10,
    )
    response.raise_for_status()
    return [log["message"] for log in response.json()]


def _dispatch_states(site, study_uid):
    with site.database.connection() as conn:
        return [
            row["state"]
            for row in conn.execute(
                "SELECT state FROM dispatch WHERE study_instance_uid = %s ORDER BY id", (study_uid,)
            )
        ]


def _delivered(site, study_uid):
    """Every queued result of the study left the results outbox (stored or already there)."""
    with site.database.connection() as conn:
        states = [
            row["state"]
            for row in conn.execute(
                "SELECT state FROM results_outbox WHERE study_instance_uid = %s", (study_uid,)
            )
        ]
    return bool(states) and all(state in ("sent", "superseded") for state in states)


def test_unreachable_pacs_completes_the_run_and_the_outbox_delivers_without_a_rerun(
    site_settings, clean_orthanc, node_port, prefect_api_url
):
    from deployments.orthanc import free_port
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(13, ["Effusion"], accession_number="E2E-DOWN")
    upload(clean_orthanc, study.datasets)
    down = site_settings(pacs={"port": free_port()})  # nothing listens there
    with (
        running_node(down) as site,
        running_worker(down),
        running_results_sender(down) as sender,
    ):
        clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
        wait_for(lambda: _dispatch_states(site, study.study_instance_uid) == ["completed"])
        # priors the PACS could not give are a degraded step: a WARNING, and in the summary
        (run,) = runs_of(prefect_api_url, study.study_instance_uid)
        warnings = wait_for(
            lambda: [
                line
                for line in _logs(prefect_api_url, run["id"], level=30)  # WARNING and up
                if line.startswith("going on without a prior: ")
            ]
        )
        assert "PACS did not answer C-FIND" in warnings[0]
        (summary,) = httpx.post(
            f"{prefect_api_url}/artifacts/filter",
            json={"artifacts": {"flow_run_id": {"any_": [run["id"]]}}},
            timeout=10,
        ).json()
        assert "## Prior: no prior: PACS did not answer C-FIND (PACS" in summary["data"]
        assert "refused the association (connection refused)" in summary["data"]
        steps = site.store.steps(study.study_instance_uid)
        assert steps["store_results"]["state"] == "completed"
        assert steps["store_results"]["detail"]["queued"] == 1
        assert site.store.study(study.study_instance_uid).state == "done"
        waiting = wait_for(
            lambda: [
                row
                for row in sender.outbox.messages(study.study_instance_uid)
                if row["attempts"] >= 1 and row["last_error"]
            ]
        )
        assert (
            "PeerUnavailableError" in waiting[0]["last_error"]
            or "refused the association" in (waiting[0]["last_error"])
        )
        assert orthanc_sr_instances(clean_orthanc, study.study_instance_uid) == []
    up = site_settings()
    with running_node(up) as site, running_results_sender(up):
        # the PACS is reachable again: what waited is delivered, no rerun, no manual step
        wait_for(lambda: _delivered(site, study.study_instance_uid))
        assert orthanc_sr_instances(clean_orthanc, study.study_instance_uid)
        stored = AnalysisStore(site.database).result_objects(study.study_instance_uid)
        assert stored and all(row["stored_at"] is not None for row in stored)
        kinds = {row["kind"] for row in stored}
        assert {"sr", "gsps"} <= kinds
        assert _dispatch_states(site, study.study_instance_uid) == ["completed"]


def test_run_started_from_the_prefect_deployment_is_executed_by_the_warm_worker(
    site_settings, clean_orthanc, prefect_api_url
):
    from models.phantoms.chest import chest_xray_study

    study = chest_xray_study(14, [], accession_number="E2E-UI")
    upload(clean_orthanc, study.datasets)
    settings = site_settings()
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        clean_orthanc.client.send_study("pacsflow", [study.study_instance_uid])
        wait_for(lambda: completed_runs(prefect_api_url, study.study_instance_uid))
        # What the "Run" button of the deployment does in the Prefect UI:
        deployment = httpx.get(
            f"{prefect_api_url}/deployments/name/process-study/process-study", timeout=10
        ).json()
        for _attempt in range(5):  # the test server's SQLite answers 503 when busy
            created = httpx.post(
                f"{prefect_api_url}/deployments/{deployment['id']}/create_flow_run",
                json={"parameters": {"study_key": study_key(study.study_instance_uid)}},
                timeout=10,
            )
            if created.status_code != 503:
                break
            time.sleep(1)
        created.raise_for_status()
        wait_for(lambda: len(completed_runs(prefect_api_url, study.study_instance_uid)) == 2)
        assert site.store.study(study.study_instance_uid).state == "done"


HEAD_CT_RULE = {
    "name": "head-ct",
    "modality": ["CT"],
    "body_part": ["HEAD", "BRAIN"],
    "analyzers": ["head-ct-ich"],
}


def test_a_patients_second_study_is_compared_with_the_first(site_settings, clean_orthanc):
    """fetch_priors moves the earlier study (with pacsflow's SR) here; the SR's measurements
    give the interval change, kept with the analysis and named in the step record."""
    from models.phantoms.head_ct import head_ct_study

    first = head_ct_study(
        21, ["Subdural hemorrhage"], patient_id="E2E-PRIOR", accession_number="E2E-CT1"
    )
    second = head_ct_study(
        22, ["Subdural hemorrhage"], patient_id="E2E-PRIOR", accession_number="E2E-CT2"
    )
    for study, date in ((first, "20260105"), (second, "20261105")):
        for ds in study.datasets:
            ds.StudyDate = date
    settings = site_settings(routing={"rules": [HEAD_CT_RULE]})
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        upload(clean_orthanc, first.datasets)
        clean_orthanc.client.send_study("pacsflow", [first.study_instance_uid])
        wait_for(lambda: orthanc_sr_instances(clean_orthanc, first.study_instance_uid))
        wait_for(lambda: site.store.study(first.study_instance_uid).state == "done")
        upload(clean_orthanc, second.datasets)
        clean_orthanc.client.send_study("pacsflow", [second.study_instance_uid])
        wait_for(lambda: site.store.study(second.study_instance_uid).state == "done", timeout=120)
        steps = site.store.steps(second.study_instance_uid)
        (analysis,) = AnalysisStore(site.database).analyses(second.study_instance_uid)
        # the prior came back with its SR and stayed a closed, analysed study
        assert (
            site.store.study(first.study_instance_uid).state,
            site.store.study(first.study_instance_uid).generation,
        ) == ("done", 1)
    assert steps["fetch_priors"]["detail"]["prior"] == first.study_instance_uid
    change = analysis["summary"]["interval_change"]
    assert change["status"] == "compared"
    assert change["prior_accession_number"] == "E2E-CT1"
    assert change["prior_study_date"] == "2026-01-05"
    volumes = [c for c in change["changes"] if c["unit"]["value"] == "mL"]
    assert volumes and volumes[0]["prior_value"] > 0
    assert (
        "Compared with 2026-01-05 (E2E-CT1)"
        in steps["build_results:head-ct-ich"]["detail"]["interval_change"]
    )


def test_vendor_brain_mr_without_body_part_is_read_on_its_post_contrast_t1_and_marked_not_clinical(
    site_settings, clean_orthanc, tmp_path, dcmtk_tools
):
    """The issue's case: a German 2D brain MR (twenty 5 mm slices per series, no
    BodyPartExamined) is routed, the demo brain model reads its post-contrast T1 (the one
    sequence its package declares it was trained on: not the FLAIR the default order prefers),
    and the SR that reaches Orthanc says NOT FOR CLINICAL USE (the demo model is not for
    clinical use). 128 px, as the model was trained: the demo package from recipe r6 on
    refuses 64 px series (3.75 mm pixels) as unlike its training data."""
    from pathlib import Path

    from integrations.result_files import load_analysis
    from models.phantoms.vendor_mr import series_uid_of, vendor_brain_mr_study
    from tests.dicom_samples import write

    study = vendor_brain_mr_study(21, "siemens", matrix=128, tumour=True)
    files = [write(ds, tmp_path / "mr") for ds in study.datasets]
    brain_rule = {
        "name": "brain-mri",
        "modality": ["MR"],
        "body_part": ["HEAD", "BRAIN"],
        "analyzers": ["brain-mri-tumor"],
    }
    settings = site_settings(routing={"rules": [CHEST_RULE, brain_rule]})
    with (
        running_node(settings) as site,
        running_worker(settings),
        running_results_sender(settings),
    ):
        result = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert result.returncode == 0, result.stderr
        srs = wait_for(lambda: orthanc_sr_instances(clean_orthanc, study.study_instance_uid))
        sr = dcmread(io.BytesIO(clean_orthanc.client.instance_file(srs[0]["ID"])))
        (row,) = AnalysisStore(site.database).analyses(study.study_instance_uid)
    analysis = load_analysis(Path(row["result_path"]))
    assert analysis.status == "analysed" and analysis.clinical_use is False
    (read,) = analysis.extra["series"]
    assert read["series_instance_uid"] == series_uid_of(21, "siemens", "t1_post")
    assert read["sequence"] == "T1 post-contrast" and read["slices"] == 20

    def texts(item):
        for child in item.get("ContentSequence", []):
            if child.ValueType == "TEXT":
                yield str(child.TextValue)
            yield from texts(child)

    assert any(text.startswith("NOT FOR CLINICAL USE") for text in texts(sr))

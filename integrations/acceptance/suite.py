"""Run the acceptance suite against a running site, the way studies really travel (I/O).

For each case: C-STORE the study to the site's PACS (``[pacs]``), note the PACS's close time,
have the PACS send it to the node (Orthanc REST ``/modalities/{id}/store`` when
``[pacs] rest_url`` is set, else a C-MOVE to the node's AE title), then watch
the site do its work: the node's database for arrival, analysis, worklist and escalation;
the PACS by C-FIND for the SR and the overlays (their pixels or graphics checked against the
ground-truth region); the console API, logged in as each role's account, for what every role
sees. Every step of every case ends pass or fail with its time; the record is built by
:mod:`integrations.acceptance.record` and written by :mod:`integrations.acceptance.report`.

Times are the database's clock (``clock_timestamp()``) on both ends of each measurement, so
a site whose database runs on another host measures no clock skew.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import io
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from pydicom import Dataset, dcmread

from integrations.acceptance.geometry import (
    HotSpot,
    ImagePlane,
    hot_spots,
    image_planes,
    matches_finding,
    on_region,
)
from integrations.acceptance.record import (
    CaseResult,
    StepResult,
    finish_record,
    settings_digest,
)
from integrations.acceptance.truth import Case, with_fresh_uids
from integrations.db.connection import Database, open_database
from integrations.dicom.pacs_api import instance_file, pacs_api_client, send_studies
from integrations.dicom.scu import DicomClient, pacs_peer
from integrations.doctor.checks import Address, node_modality_id
from integrations.doctor.probes import pacs_api
from integrations.errors import ConfigError, PacsflowError
from integrations.hl7.priority import HL7_PRIORITY
from integrations.ldap.rbac import Role, View, WorklistDetail, allowed, worklist_detail
from integrations.settings import Settings
from models.results import UrgencyTier

log = logging.getLogger("pacsflow.acceptance")

OVERLAY_KINDS = ("gsps", "secondary_capture", "segmentation")
# "prior": taken as a prior of another study (moved at the node's request), never analysed
FINAL_STATES = ("done", "failed", "unrouted", "prior")
# How long a study must have nothing pending (analysis done, outboxes drained) before a step
# that still fails is final.
IDLE_SECONDS = 5.0
# The steps held to [acceptance] results_seconds after study close at the node.
RESULT_STEPS = ("sr_in_pacs", "overlay_on_region", "worklist_tier")
# Console routes each role's visibility is checked on, with the view each needs.
SITE_PAGES = {
    "/api/analytics": View.ANALYTICS,
    "/api/system": View.SYSTEM,
    "/api/audit": View.AUDIT,
}


@dataclass
class _Tracked:
    case: Case
    result: CaseResult
    planes: dict[str, ImagePlane]
    pacs_closed_at: datetime.datetime | None = None
    send_error: str = ""
    settled: dict[str, bool] = field(default_factory=dict)
    idle_since: float | None = None  # monotonic time the site first had nothing pending
    found_in_pacs: set[str] = field(default_factory=set)  # SOP Instance UIDs C-FIND answered
    marks: dict[str, list[HotSpot]] = field(default_factory=dict)  # per overlay SOP UID
    aliases: dict[str, str] | None = None  # code meaning -> finding label, once analysed


def run_suite(
    settings: Settings,
    cases: Sequence[Case],
    *,
    source: str,
    run_id: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Send every case through the site and measure each step; returns the (unsigned) record."""
    run_id = run_id or uuid.uuid4().hex[:12]
    say = progress or (lambda line: log.info("%s", line))
    database = open_database(settings, migrate_schema=False)
    try:
        started_at = _now(database)
        tracked = []
        for case in cases:
            fresh = with_fresh_uids(case, run_id)
            tracked.append(
                _Tracked(
                    fresh,
                    CaseResult(
                        case=case.case,
                        description=case.description,
                        modality=fresh.modality,
                        expected_tier=case.expected_tier.value,
                        expected_findings=list(case.findings),
                    ),
                    image_planes(fresh.datasets),
                )
            )
        modality_id, route_error = _node_at_pacs(settings)
        for item in tracked:
            if route_error:
                item.send_error = route_error
            else:
                _send(settings, database, item, modality_id)
            say(f"{item.case.case}: sent to the PACS and on to the node")
        _watch(settings, database, tracked, say)
        finished_at = _now(database)
        return finish_record(
            run_id=run_id,
            started_at=started_at.isoformat(),
            finished_at=finished_at.isoformat(),
            site=site_summary(settings),
            versions=versions(settings),
            cases=[item.result for item in tracked],
            source=source,
        )
    finally:
        database.close()


def _now(database: Database) -> datetime.datetime:
    with database.connection() as conn:
        row = conn.execute("SELECT clock_timestamp() AS now").fetchone()
    return row["now"]


def site_summary(settings: Settings) -> dict[str, Any]:
    """What identifies the site in the record: AE titles and the settings digest."""
    return {
        "node_ae_title": settings.node.ae_title,
        "pacs_ae_title": settings.pacs.ae_title,
        "pacs_route": "REST" if settings.pacs.rest_url else "C-MOVE",
        "worklist_route": settings.worklist.route,
        "result_carriers": list(settings.results.carriers),
        "settings_digest": settings_digest(
            settings.model_dump(mode="json", exclude={"config_path"})
        ),
    }


def versions(settings: Settings) -> dict[str, Any]:
    """pacsflow's version and every model package's, with its checksum and clinical flag."""
    from models.package_registry import PackageRegistry

    registry = PackageRegistry(settings.models.dir, "cpu", allow_non_clinical=True)
    packages = {}
    for status in registry.statuses():
        manifest = status.manifest
        packages[status.name] = {
            "version": manifest.version if manifest else "",
            "analyzer": manifest.analyzer if manifest else "",
            "clinical_use": bool(manifest.clinical_use) if manifest else False,
            "checksum": status.checksum,
        }
    try:
        own = importlib.metadata.version("pacsflow")
    except importlib.metadata.PackageNotFoundError:
        own = "unknown"
    return {"pacsflow": own, "models": packages}


# -- sending -------------------------------------------------------------------------------


def _node_at_pacs(settings: Settings) -> tuple[str, str]:
    """The PACS's modality id for the node when the PACS has a REST API (found as doctor
    finds it), and why the suite cannot send through the PACS; both empty for a C-MOVE."""
    pacs, node = settings.pacs, settings.node
    if not pacs.rest_url or pacs.node_modality_id:
        return pacs.node_modality_id, ""
    api = pacs_api(settings)
    if api is None or api.error:
        why = api.error if api else "not configured"
        return "", f"the PACS's API ([pacs] rest_url) failed: {why}"
    found = node_modality_id(api, Address(node.ae_title, node.host, node.port, node.tls_port))
    if not found:
        return "", (
            f"the PACS has no modality with AE title {node.ae_title} or at the node's port;"
            " register the node there, or set [pacs] node_modality_id"
        )
    return found, ""


def _send(settings: Settings, database: Database, item: _Tracked, modality_id: str) -> None:
    """C-STORE to the PACS, then have the PACS send the study to the node (as
    ``modality_id`` over its REST API, else by C-MOVE), as a modality
    (``[acceptance] calling_ae_title``) would."""
    case = item.case
    client = DicomClient(
        replace(pacs_peer(settings), calling_ae_title=settings.acceptance.calling_ae_title)
    )
    try:
        client.store(list(case.datasets), study_instance_uid=case.study_instance_uid)
        item.pacs_closed_at = _now(database)
        if settings.pacs.rest_url:
            with pacs_api_client(settings.pacs) as http:
                # synchronous: it may take as long as the suite waits for a study
                outcome = send_studies(
                    http,
                    modality_id,
                    [case.study_instance_uid],
                    settings.acceptance.study_timeout_seconds,
                )
            if int(outcome.get("FailedInstancesCount", 0) or 0):
                item.send_error = (
                    f"the PACS failed to send {outcome['FailedInstancesCount']} instances"
                )
        else:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = case.study_instance_uid
            moved = client.move(
                query, settings.node.ae_title, study_instance_uid=case.study_instance_uid
            )
            if moved.failed:
                item.send_error = f"the PACS failed to move {moved.failed} instances"
    except (PacsflowError, httpx.HTTPError, OSError) as error:
        item.send_error = f"sending through the PACS failed: {error}"


# -- watching ------------------------------------------------------------------------------


def _watch(
    settings: Settings, database: Database, tracked: list[_Tracked], say: Callable[[str], None]
) -> None:
    limits = settings.acceptance
    deadline = time.monotonic() + limits.study_timeout_seconds
    roles = RoleProbe(settings)
    try:
        while True:
            final = time.monotonic() >= deadline
            open_cases = 0
            for item in tracked:
                if item.result.steps and all(item.settled.values()):
                    continue
                steps, settled = _measure(settings, database, item, roles, final)
                item.result.steps = steps
                item.settled = settled
                if all(settled.values()):
                    passed = sum(step.passed for step in steps)
                    failed = "; ".join(
                        f"{step.step} FAILED: {step.detail}" for step in steps if not step.passed
                    )
                    say(
                        f"{item.case.case}: {passed}/{len(steps)} steps passed"
                        + (f" ({failed})" if failed else "")
                    )
                else:
                    open_cases += 1
            if not open_cases:
                return
            time.sleep(1.0)
    finally:
        roles.close()


def _measure(
    settings: Settings, database: Database, item: _Tracked, roles: RoleProbe, final: bool
) -> tuple[list[StepResult], dict[str, bool]]:
    """Every step of one case as it stands now, and which of them are settled (a pass, or a
    fail whose limit has passed, or anything once ``final``)."""
    facts = _facts(database, item.case.study_instance_uid)
    now = facts["now"]
    item.result.study_key = facts["study_key"] or ""
    steps = [
        _arrival(settings, item, facts),
        _analysis(settings, item, facts),
        _sr_in_pacs(settings, item, facts),
        _overlay(settings, item, facts),
        _worklist(settings, item, facts),
        _escalation(settings, item, facts),
        roles.step(item, facts),
    ]
    closed = facts["closed_at"]
    done = facts["state"] in FINAL_STATES
    # The site has nothing left to do for the study: what still fails stays failed.
    if done and not facts["pending"]:
        item.idle_since = item.idle_since or time.monotonic()
    else:
        item.idle_since = None
    idle = item.idle_since is not None and time.monotonic() - item.idle_since >= IDLE_SECONDS
    start = item.pacs_closed_at or now
    # Nothing will arrive: the PACS refused to send, or the arrival limit passed and the node
    # never heard of the study; the other steps cannot pass either.
    never = bool(item.send_error) or (
        not facts["state"] and (now - start).total_seconds() > settings.acceptance.arrival_seconds
    )
    settled = {}
    for step in steps:
        if step.passed or final or never:
            settled[step.step] = True
        elif step.step == "arrival":
            settled[step.step] = (now - start).total_seconds() > settings.acceptance.arrival_seconds
        elif step.step == "escalation" and closed is not None:
            settled[step.step] = (
                now - closed
            ).total_seconds() > settings.acceptance.escalation_seconds and done
        elif step.step in RESULT_STEPS and closed is not None:
            settled[step.step] = idle or (
                (now - closed).total_seconds() > settings.acceptance.results_seconds
            )
        elif step.step == "analysis" and closed is not None:
            settled[step.step] = done or (
                (now - closed).total_seconds() > settings.acceptance.analysis_latency_seconds
            )
        else:
            settled[step.step] = idle
    return steps, settled


def _facts(database: Database, study_uid: str) -> dict[str, Any]:
    """What the node's database says about one study, in one transaction."""
    with database.connection() as conn:
        now = conn.execute("SELECT clock_timestamp() AS now").fetchone()["now"]
        study = conn.execute(
            "SELECT state, closed_at, study_key FROM studies WHERE study_instance_uid = %s",
            (study_uid,),
        ).fetchone()
        arrival = conn.execute(
            "SELECT count(*) AS n, max(received_at) AS last FROM instances"
            " WHERE study_instance_uid = %s",
            (study_uid,),
        ).fetchone()
        analyses = conn.execute(
            "SELECT analyzer, status, tier, summary, result_path, created_at FROM analyses"
            " WHERE study_instance_uid = %s",
            (study_uid,),
        ).fetchall()
        objects = conn.execute(
            "SELECT sop_instance_uid, series_instance_uid, kind, path, stored_at"
            " FROM result_objects WHERE study_instance_uid = %s AND status <> 'superseded'",
            (study_uid,),
        ).fetchall()
        worklist = conn.execute(
            "SELECT tier, tier_at, primary_finding FROM worklist WHERE study_instance_uid = %s",
            (study_uid,),
        ).fetchone()
        ris = conn.execute(
            "SELECT message_control_id, payload, state, sent_at, last_error FROM hl7_outbox"
            " WHERE study_instance_uid = %s AND destination = 'ris' ORDER BY id",
            (study_uid,),
        ).fetchall()
        escalations = conn.execute(
            "SELECT finding, tier, team, state, study_closed_at, first_notified_at"
            " FROM escalations WHERE study_instance_uid = %s",
            (study_uid,),
        ).fetchall()
        pending = conn.execute(
            "SELECT (SELECT count(*) FROM results_outbox WHERE study_instance_uid = %s"
            "        AND state = 'pending')"
            "     + (SELECT count(*) FROM hl7_outbox WHERE study_instance_uid = %s"
            "        AND destination = 'ris' AND state = 'pending') AS n",
            (study_uid, study_uid),
        ).fetchone()["n"]
        overlay_steps = conn.execute(
            "SELECT detail FROM study_steps WHERE study_instance_uid = %s"
            " AND step LIKE 'build_overlays:%%'",
            (study_uid,),
        ).fetchall()
    return {
        "now": now,
        "state": study["state"] if study else "",
        "closed_at": study["closed_at"] if study else None,
        "study_key": study["study_key"] if study else "",
        "instances": arrival["n"],
        "last_received_at": arrival["last"],
        "analyses": analyses,
        "objects": objects,
        "worklist": worklist,
        "ris": ris,
        "escalations": escalations,
        "pending": pending,
        # "kind: reason" for each carrier the engine said it cannot build for this study
        "skipped": [
            line for row in overlay_steps for line in (row["detail"] or {}).get("skipped", [])
        ],
    }


def _seconds(later: datetime.datetime | None, earlier: datetime.datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return round((later - earlier).total_seconds(), 3)


def _arrival(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    limit = settings.acceptance.arrival_seconds
    expected = len(item.case.datasets)
    if item.send_error:
        return StepResult("arrival", False, None, limit, item.send_error)
    seconds = _seconds(facts["last_received_at"], item.pacs_closed_at)
    received = facts["instances"]
    if received < expected:
        return StepResult(
            "arrival", False, None, limit, f"{received} of {expected} instances at the node"
        )
    passed = seconds is not None and seconds <= limit
    return StepResult(
        "arrival", passed, seconds, limit, f"{received} instances, last {seconds:.1f} s after close"
    )


def _positive_labels(analyses: list[dict[str, Any]]) -> list[str]:
    labels: list[str] = []
    for analysis in analyses:
        for finding in (analysis["summary"] or {}).get("positive", []):
            if finding["label"] not in labels:
                labels.append(finding["label"])
    return labels


def _analysis(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    limit = settings.acceptance.analysis_latency_seconds
    analyses = facts["analyses"]
    if facts["state"] != "done" or not analyses:
        state = facts["state"] or "not at the node"
        return StepResult("analysis", False, None, limit, f"study {state}")
    seconds = _seconds(max(a["created_at"] for a in analyses), facts["closed_at"])
    found = _positive_labels(analyses)
    item.result.found_findings = found
    item.result.found_tier = UrgencyTier.most_urgent(
        [UrgencyTier(a["tier"]) for a in analyses]
    ).value
    analysed = [a for a in analyses if a["status"] == "analysed"]
    missing = [label for label in item.case.findings if label not in found]
    problems = []
    if not analysed:
        problems.append("no analyzer could analyse the study")
    if missing:
        problems.append(f"expected finding(s) not reported: {', '.join(missing)}")
    if seconds is None or seconds > limit:
        problems.append("over the latency limit")
    statuses = ", ".join(f"{a['analyzer']} {a['status']}" for a in analyses)
    return StepResult(
        "analysis",
        not problems,
        seconds,
        limit,
        "; ".join(problems) or f"{statuses}; found {', '.join(found) or 'nothing'}",
    )


def _find_in_pacs(settings: Settings, study_uid: str, series_uid: str, sop_uid: str) -> bool:
    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = series_uid
    query.SOPInstanceUID = sop_uid
    matches = DicomClient(pacs_peer(settings)).find(query, study_instance_uid=study_uid)
    return any(str(match.get("SOPInstanceUID", "")) == sop_uid for match in matches)


def _stored_and_found(
    settings: Settings, item: _Tracked, objects: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The objects the PACS answers for by C-FIND, and a problem line for each it does not."""
    found, problems = [], []
    for row in objects:
        if row["stored_at"] is None:
            problems.append(f"{row['kind']} not yet stored")
            continue
        if row["sop_instance_uid"] in item.found_in_pacs:
            found.append(row)
            continue
        try:
            if _find_in_pacs(
                settings,
                item.case.study_instance_uid,
                row["series_instance_uid"],
                row["sop_instance_uid"],
            ):
                item.found_in_pacs.add(row["sop_instance_uid"])
                found.append(row)
            else:
                problems.append(f"{row['kind']} stored but not found by C-FIND")
        except PacsflowError as error:
            problems.append(f"C-FIND failed: {error}")
    return found, problems


def _sr_in_pacs(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    reports = [row for row in facts["objects"] if row["kind"] == "sr"]
    if not reports:
        return StepResult("sr_in_pacs", False, detail="no SR built")
    found, problems = _stored_and_found(settings, item, reports)
    seconds = _seconds(max((r["stored_at"] for r in found), default=None), facts["closed_at"])
    limit = settings.acceptance.results_seconds
    if seconds is not None and seconds > limit:
        problems.append("stored after the limit")
    passed = bool(found) and not problems
    return StepResult(
        "sr_in_pacs",
        passed,
        seconds,
        limit,
        "; ".join(problems) or f"{len(found)} SR found by C-FIND",
    )


def _object_bytes(settings: Settings, row: dict[str, Any]) -> bytes:
    """The object as the PACS holds it (Orthanc REST), else pacsflow's copy of the same UID."""
    if settings.pacs.rest_url:
        with pacs_api_client(settings.pacs) as http:
            held = instance_file(http, row["sop_instance_uid"])
        if held is not None:
            return held
    return Path(row["path"]).read_bytes()


def _label_aliases(analyses: list[dict[str, Any]]) -> dict[str, str]:
    """Code meaning -> label for every finding (Secondary Captures name the meaning)."""
    from integrations.result_files import load_analysis

    aliases = {}
    for analysis in analyses:
        path = Path(analysis["result_path"])
        if not path.is_file():
            continue
        try:
            result = load_analysis(path)
        except (OSError, ValueError, KeyError):
            continue
        for finding in result.findings:
            aliases[finding.code.meaning.lower()] = finding.label
    return aliases


def _overlay(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    wanted = [kind for kind in settings.results.carriers if kind in OVERLAY_KINDS]
    overlays = [row for row in facts["objects"] if row["kind"] in OVERLAY_KINDS]
    findings = item.case.findings
    if not wanted:
        return StepResult("overlay_on_region", True, detail="no overlay carrier configured")
    if facts["state"] != "done":
        return StepResult("overlay_on_region", False, detail="study not analysed yet")
    if not findings:
        if overlays:
            kinds = ", ".join(sorted({row["kind"] for row in overlays}))
            return StepResult(
                "overlay_on_region", False, detail=f"overlays ({kinds}) on a normal study"
            )
        return StepResult("overlay_on_region", True, detail="normal study: no overlay, none sent")
    if not overlays:
        return StepResult("overlay_on_region", False, detail="no overlay built")
    found, problems = _stored_and_found(settings, item, overlays)
    if item.aliases is None:
        item.aliases = _label_aliases(facts["analyses"])
    aliases = item.aliases
    kinds_on_region: set[str] = set()
    checked = 0
    for row in found:
        uid = row["sop_instance_uid"]
        if uid not in item.marks:  # a SOP Instance UID names one content: read it once
            try:
                item.marks[uid] = hot_spots(dcmread(io.BytesIO(_object_bytes(settings, row))))
            except (OSError, httpx.HTTPError, ValueError) as error:
                problems.append(f"{row['kind']} unreadable: {error}")
                continue
        for spot in item.marks[uid]:
            label = aliases.get(spot.label.lower(), spot.label)
            if not matches_finding(label, findings):
                continue
            checked += 1
            if on_region(
                spot,
                item.case.region,
                item.planes,
                margin=settings.acceptance.region_margin,
                through_plane_mm=settings.acceptance.through_plane_mm,
            ):
                kinds_on_region.add(spot.carrier)
            else:
                problems.append(f"{spot.describe()} is off the ground-truth region")
    skipped = {line.split(":", 1)[0]: line for line in facts["skipped"]}
    missing = [kind for kind in wanted if kind not in {row["kind"] for row in found}]
    unexplained = [kind for kind in missing if kind not in skipped]
    if unexplained:
        problems.append(f"no {', '.join(unexplained)} found in the PACS")
    if not checked:
        problems.append("no overlay marks a ground-truth finding")
    seconds = _seconds(max((r["stored_at"] for r in found), default=None), facts["closed_at"])
    limit = settings.acceptance.results_seconds
    if seconds is not None and seconds > limit:
        problems.append("stored after the limit")
    notes = [f"not built ({skipped[kind]})" for kind in missing if kind in skipped]
    return StepResult(
        "overlay_on_region",
        not problems,
        seconds,
        limit,
        "; ".join(
            problems + notes
            if problems
            else [f"{checked} marks of {', '.join(sorted(kinds_on_region))} on the region", *notes]
        ),
    )


def _worklist(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    expected = item.case.expected_tier
    row = facts["worklist"]
    if row is None or not row["tier"]:
        return StepResult("worklist_tier", False, detail="no tier in the worklist yet")
    seconds = _seconds(row["tier_at"], facts["closed_at"])
    problems = []
    if row["tier"] != expected.value:
        problems.append(f"worklist says {row['tier']}, truth is {expected.value}")
    worklist = settings.worklist
    ris_note = ""
    if worklist.route != "none" and expected.value in worklist.send_tiers:
        code, _ = HL7_PRIORITY[expected]
        sent = [
            message
            for message in facts["ris"]
            if message["state"] == "sent" and _priority_in(message["payload"], code)
        ]
        if sent:
            ris_seconds = _seconds(min(m["sent_at"] for m in sent), facts["closed_at"])
            seconds = max(seconds or 0.0, ris_seconds or 0.0)
            ris_note = f"; RIS acknowledged priority {code}"
        else:
            last = facts["ris"][-1] if facts["ris"] else None
            state = f"{last['state']}: {last['last_error'] or ''}" if last else "none queued"
            problems.append(f"no RIS message with priority {code} acknowledged ({state})")
    limit = settings.acceptance.results_seconds
    if seconds is not None and seconds > limit:
        problems.append("after the limit")
    return StepResult(
        "worklist_tier",
        not problems,
        seconds,
        limit,
        "; ".join(problems) or f"worklist tier {row['tier']}{ris_note}",
    )


def _priority_in(payload: str, code: str) -> bool:
    """Whether an ORM/OMI carries ``code`` as its priority (ORC-7.6 or TQ1-9)."""
    for segment in payload.replace("\n", "\r").split("\r"):
        fields = segment.split("|")
        if fields[0] == "ORC" and len(fields) > 7 and fields[7].split("^")[5:6] == [code]:
            return True
        if fields[0] == "TQ1" and len(fields) > 9 and fields[9].split("^")[0] == code:
            return True
    return False


def _escalation(settings: Settings, item: _Tracked, facts: dict[str, Any]) -> StepResult:
    limit = settings.acceptance.escalation_seconds
    rows = facts["escalations"]
    if item.case.expected_tier is not UrgencyTier.CRITICAL:
        if rows:
            teams = ", ".join(sorted({row["team"] for row in rows}))
            return StepResult(
                "escalation", False, None, None, f"a non-Critical study was escalated ({teams})"
            )
        if facts["state"] != "done":
            return StepResult("escalation", False, None, None, "study not analysed yet")
        return StepResult("escalation", True, None, None, "not Critical: nobody paged")
    notified = [row for row in rows if row["first_notified_at"] is not None]
    if not notified:
        states = ", ".join(f"{row['team']} {row['state']}" for row in rows) or "none raised"
        return StepResult("escalation", False, None, limit, f"no page delivered ({states})")
    first = min(notified, key=lambda row: row["first_notified_at"])
    seconds = _seconds(first["first_notified_at"], first["study_closed_at"] or facts["closed_at"])
    passed = seconds is not None and seconds <= limit
    return StepResult(
        "escalation", passed, seconds, limit, f"team {first['team']} reached ({first['finding']})"
    )


# -- roles ---------------------------------------------------------------------------------


class RoleProbe:
    """Logs in to the console once per configured role account and checks, per study, that
    each role sees what it must and nothing more."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = str(settings.console.base_url).rstrip("/")
        self.clients: dict[Role, httpx.Client] = {}
        self.login_problems: dict[Role, str] = {}
        self._site_pages: dict[Role, list[str]] | None = None

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    def _client(self, role: Role) -> httpx.Client | None:
        if role in self.clients or role in self.login_problems:
            return self.clients.get(role)
        account = self.settings.acceptance.role_accounts[role.value]
        password = os.environ.get(account.password_env, "")
        client = httpx.Client(base_url=self.base_url, timeout=15, follow_redirects=False)
        try:
            answer = client.post(
                "/login", data={"username": account.username, "password": password}
            )
        except httpx.HTTPError as error:
            client.close()
            self.login_problems[role] = f"console unreachable: {error}"
            return None
        if answer.status_code != 303:
            client.close()
            self.login_problems[role] = (
                f"login as {account.username} refused ({answer.status_code})"
            )
            return None
        self.clients[role] = client
        return client

    def _pages(self, role: Role, client: httpx.Client) -> list[str]:
        problems = []
        for path, view in SITE_PAGES.items():
            status = client.get(path).status_code
            should = 200 if allowed({role}, view) else 403
            if status != should:
                problems.append(f"{role.value} {path} answered {status}, expected {should}")
        return problems

    def step(self, item: _Tracked, facts: dict[str, Any]) -> StepResult:
        accounts = self.settings.acceptance.role_accounts
        if not accounts:
            return StepResult("roles", False, detail="no [acceptance] role_accounts configured")
        if facts["state"] != "done" or not facts["study_key"]:
            return StepResult("roles", False, detail="study not analysed yet")
        problems: list[str] = []
        checked = []
        for name in sorted(accounts):
            role = Role(name)
            client = self._client(role)
            if client is None:
                problems.append(self.login_problems[role])
                continue
            try:
                problems.extend(self._study_visibility(role, client, item, facts["study_key"]))
                if self._site_pages is None:
                    self._site_pages = {}
                if role not in self._site_pages:
                    self._site_pages[role] = self._pages(role, client)
                problems.extend(self._site_pages[role])
            except httpx.HTTPError as error:
                problems.append(f"{role.value}: console request failed: {error}")
            checked.append(role.value)
        return StepResult(
            "roles",
            not problems,
            detail="; ".join(problems) or f"checked {', '.join(checked)}",
        )

    def _study_visibility(
        self, role: Role, client: httpx.Client, item: _Tracked, study_key: str
    ) -> list[str]:
        problems = []
        roles = {role}
        answer = client.get("/api/worklist")
        if not allowed(roles, View.WORKLIST):
            if answer.status_code != 403:
                problems.append(f"{role.value} sees the worklist ({answer.status_code})")
        elif answer.status_code != 200:
            problems.append(f"{role.value} cannot open the worklist ({answer.status_code})")
        else:
            rows = [row for row in answer.json()["studies"] if row.get("key") == study_key]
            detail = worklist_detail(roles)
            if not rows:
                problems.append(f"{role.value} does not see the study in the worklist")
            else:
                problems.extend(_worklist_row_problems(role, detail, rows[0], item))
        study = client.get(f"/api/studies/{study_key}")
        should = 200 if allowed(roles, View.STUDY) else 403
        if study.status_code != should:
            problems.append(
                f"{role.value} study page answered {study.status_code}, expected {should}"
            )
        return problems


def _worklist_row_problems(
    role: Role, detail: WorklistDetail | None, row: dict[str, Any], item: _Tracked
) -> list[str]:
    problems = []
    sees_tier = "tier" in row
    if detail is WorklistDetail.STATUS:
        if sees_tier or "primary_finding" in row:
            problems.append(f"{role.value} sees the tier or finding (status only allowed)")
        return problems
    if not sees_tier or row["tier"] != item.case.expected_tier.value:
        problems.append(
            f"{role.value} sees tier {row.get('tier')}, expected {item.case.expected_tier.value}"
        )
    if detail is WorklistDetail.TRIAGE and "primary_probability" in row:
        problems.append(f"{role.value} sees probabilities (triage only allowed)")
    if detail is WorklistDetail.FULL and "primary_probability" not in row:
        problems.append(f"{role.value} lacks the full worklist")
    return problems


def require_signing_key(settings: Settings) -> Path:
    """The configured signing key file, or ConfigError saying how to make one."""
    name = settings.acceptance.signing_key_file
    if not name:
        raise ConfigError(
            "[acceptance] signing_key_file is not set: create a key with"
            " `pacsflow acceptance keygen FILE` and set signing_key_file = FILE"
        )
    path = Path(name)
    if not path.is_file():
        raise ConfigError(
            f"[acceptance] signing_key_file {path} does not exist: create it with"
            f" `pacsflow acceptance keygen {path}`"
        )
    return path


def load_cases(
    studies_dir: Path | None, truth_csv: Path | None, only: Sequence[str] = ()
) -> tuple[list[Case], str]:
    """The generated cases, or a site's studies (every DICOM file under ``studies_dir``) with
    the truth CSV; returns the cases and the record's ``source``."""
    from integrations.acceptance.truth import cases_from_truth, generated_cases, read_truth_csv

    if studies_dir is None and truth_csv is None:
        return generated_cases(only), "generated"
    if studies_dir is None or truth_csv is None:
        raise ConfigError("--studies and --truth go together")
    try:
        rows = read_truth_csv(truth_csv.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ConfigError(f"{truth_csv}: {error}") from None
    if only:
        rows = [row for row in rows if row.case in only]
    datasets = []
    for path in sorted(studies_dir.rglob("*")):
        if path.is_file():
            try:
                datasets.append(dcmread(path))
            except (OSError, ValueError):
                continue  # not DICOM (DICOMDIR's neighbours, notes)
    try:
        return cases_from_truth(rows, datasets), "site studies"
    except ValueError as error:
        raise ConfigError(str(error)) from None


@dataclass(frozen=True)
class AcceptanceOutcome:
    record: dict[str, Any]
    json_path: Path
    html_path: Path
    pdf_path: Path


def run_acceptance(
    settings: Settings,
    *,
    output_dir: Path | None = None,
    studies_dir: Path | None = None,
    truth_csv: Path | None = None,
    only: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> AcceptanceOutcome:
    """Run the suite and write the signed record (``output_dir`` defaults to
    ``<storage_dir>/acceptance/<run id>``)."""
    from integrations.acceptance.report import write_record

    key_file = require_signing_key(settings)  # before sending anything
    cases, source = load_cases(studies_dir, truth_csv, only)
    if not cases:
        raise ConfigError("no acceptance case to run")
    run_id = uuid.uuid4().hex[:12]
    record = run_suite(settings, cases, source=source, run_id=run_id, progress=progress)
    target = output_dir or settings.node.storage_dir / "acceptance" / run_id
    written = write_record(record, target, key_file, settings.acceptance.chromium)
    return AcceptanceOutcome(record, written.json_path, written.html_path, written.pdf_path)

"""The PACS's REST API (Orthanc), configured once in ``[pacs]`` (I/O).

``[pacs] rest_url`` with ``rest_username`` and the password in ``rest_password_env``:
``pacsflow doctor`` reads the PACS's registrations and has it C-ECHO the node through this
client, and the acceptance suite has the PACS send studies to the node and reads back what
it holds. Calls raise ``httpx.HTTPError`` (a refused request is ``HTTPStatusError``); the
callers decide whether that is a finding or a failed step.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import httpx

from integrations.settings import PacsSettings


def pacs_api_client(pacs: PacsSettings) -> httpx.Client:
    """An HTTP client for ``[pacs] rest_url``, with its basic auth and ``timeout_seconds``."""
    auth = None
    if pacs.rest_username:
        auth = (pacs.rest_username, os.environ.get(pacs.rest_password_env, ""))
    return httpx.Client(base_url=pacs.rest_url.rstrip("/"), auth=auth, timeout=pacs.timeout_seconds)


def orthanc_error(response: httpx.Response) -> str:
    """``HTTP 404: <Orthanc's details>``: what a refused call says, in one line."""
    try:
        body = response.json()
        detail = body.get("Details") or body.get("Message") or ""
    except ValueError:
        detail = response.text[:200]
    return f"HTTP {response.status_code}" + (f": {detail}" if detail else "")


def find_resource(http: httpx.Client, uid: str, resource_type: str) -> str | None:
    """Orthanc's ID of the ``resource_type`` (``Study``, ``Instance``) a DICOM UID names."""
    response = http.post("/tools/lookup", content=uid)
    response.raise_for_status()
    for hit in response.json():
        if hit.get("Type") == resource_type:
            return str(hit["ID"])
    return None


def send_studies(
    http: httpx.Client,
    modality_id: str,
    study_instance_uids: Iterable[str],
    timeout_seconds: float | None = None,
) -> dict[str, Any]:
    """Have the PACS C-STORE whole studies to one of its modalities and wait for the end
    (``POST /modalities/{id}/store``, synchronous); Orthanc's answer, with its counts."""
    resources = [find_resource(http, uid, "Study") for uid in study_instance_uids]
    response = http.post(
        f"/modalities/{modality_id}/store",
        json={"Resources": [r for r in resources if r], "Synchronous": True},
        timeout=timeout_seconds if timeout_seconds is not None else http.timeout,
    )
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def instance_file(http: httpx.Client, sop_instance_uid: str) -> bytes | None:
    """The instance's bytes as the PACS holds them; None when it holds no such instance."""
    instance_id = find_resource(http, sop_instance_uid, "Instance")
    if instance_id is None:
        return None
    response = http.get(f"/instances/{instance_id}/file")
    response.raise_for_status()
    return response.content

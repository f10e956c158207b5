"""The opaque study key: assigned by the database on every path that creates a study row."""

from __future__ import annotations

import io
import re

from integrations.db.store import StudyStore
from integrations.dicom.header import read_header
from tests.dicom_samples import make_instance

KEY = re.compile(r"^S[0-9A-HJKMNP-TV-Z]{12}$")  # Crockford base32: no I, L, O, U


def _header(name: str):
    buffer = io.BytesIO()
    make_instance(name, number=1, patient_id="KEY-PAT").save_as(buffer, enforce_file_format=True)
    return read_header(buffer.getvalue())


def test_each_received_study_and_each_prior_gets_its_own_key(database):
    store = StudyStore(database)
    headers = [_header(f"key-{index}") for index in range(3)]
    for header in headers:
        store.record_instance(header, path="/dev/null", size_bytes=0, calling_ae_title="M")
    store.register_prior("1.2.826.0.1.3680043.8.498.999", "KEY-PAT", "ACC-PRIOR")
    keys = [store.study(header.study_instance_uid).study_key for header in headers]
    keys.append(store.study("1.2.826.0.1.3680043.8.498.999").study_key)
    assert all(KEY.match(key) for key in keys), keys
    assert len(set(keys)) == 4
    found = store.study_by_key(keys[0].lower())
    assert found is not None and found.study_instance_uid == headers[0].study_instance_uid
    # a second instance of a study keeps the study's key
    store.record_instance(_header("key-0"), path="/dev/null", size_bytes=0, calling_ae_title="M")
    assert store.study(headers[0].study_instance_uid).study_key == keys[0]

"""Character sets modalities really send, through dcmtk ``storescu`` into the node and out
again in pacsflow's result objects: Cyrillic cp1251 bytes labelled ``ISO_IR 6``, the
``ISO IR 192`` typo, multi-valued ISO 2022 with Japanese (``ISO 2022 IR 87``), and person
names with ideographic and phonetic groups.

For each: the node stores the instance without an exception, the spooled file keeps the name's
bytes exactly as sent, and every result object built from the received image declares a
valid Specific Character Set explicitly, reads back with the patient's name as pydicom reads
the source, and passes ``dciodvfy``."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.charset import python_encoding
from pydicom.filebase import DicomBytesIO

from deployments.orthanc import free_port
from integrations.dicom.result_objects import build_result_objects
from integrations.settings import ResultsSettings
from tests.dciodvfy import RESULT_OBJECT_WARNINGS, assert_conformant
from tests.fix_dcmtk import storescu
from tests.site import running_node
from tests.unit.results import synthetic

NODE_AE_TITLE = "PACSFLOW"
JAPANESE_NAME = "Yamada^Tarou=山田^太郎=やまだ^たろう"


@dataclass(frozen=True)
class Case:
    name: str
    character_set: str | list[str]
    patient_name: bytes | str  # bytes: written as they are, whatever the label says


CASES = [
    Case("cp1251-labelled-ascii", "ISO_IR 6", "Иванов^Иван".encode("cp1251")),
    Case("iso-ir-192-typo", "ISO IR 192", "Müller^Jürgen".encode()),
    Case("iso-2022-japanese", ["", "ISO 2022 IR 87"], JAPANESE_NAME),
    Case("ideographic-groups-utf8", "ISO_IR 192", JAPANESE_NAME.encode()),
    Case("ideographic-groups-euc-kr", ["", "ISO 2022 IR 149"], "Hong^Gildong=洪^吉洞=홍^길동"),
]


def source_image(case: Case, folder: Path) -> tuple[Path, bytes]:
    """The modality's file, and the bytes of its Patient Name value as encoded there."""
    image, _ = synthetic.chest_radiograph(study_key=f"charset-{case.name}", character_set=None)
    image.SpecificCharacterSet = case.character_set
    if isinstance(case.patient_name, bytes):
        image.add_new(0x00100010, "PN", case.patient_name)
    else:
        image.PatientName = case.patient_name
    path = folder / f"{case.name}.dcm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom's own note on the typo
        image.save_as(path, enforce_file_format=True)
        written = dcmread(path)
        raw = written.get_item(0x00100010).value
    return path, bytes(raw)


def valid_term(term: str) -> bool:
    return term == "" or term in python_encoding


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_character_set_in_and_out(case, settings_factory, tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": free_port(), "allowed_callers": ["MODALITY"]}
    )
    path, raw_name = source_image(case, tmp_path)
    with running_node(settings, close_studies=False) as site:
        sent = storescu("MODALITY", NODE_AE_TITLE, site.port, [path])
        assert sent.returncode == 0, sent.stdout + sent.stderr
        with site.database.connection() as conn:
            rows = conn.execute("SELECT path FROM instances").fetchall()
    assert len(rows) == 1
    spooled = Path(rows[0]["path"]).read_bytes()
    assert raw_name in spooled  # the bytes the modality sent, not a re-encoding
    problems = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not problems, [r.getMessage() for r in problems]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        received = dcmread(Path(rows[0]["path"]))
        expected_name = str(received.PatientName)
    lesion = synthetic.Lesion((205.0, 78.0), (16.0, 12.0))
    objects = build_result_objects(
        synthetic.chest_analysis(received, lesion), [received], profile=ResultsSettings()
    )
    assert objects
    for item in objects:
        dataset = item.dataset
        assert "SpecificCharacterSet" in dataset, item.kind
        declared = dataset.SpecificCharacterSet
        terms = [declared] if isinstance(declared, str) else list(declared)
        assert all(valid_term(str(term)) for term in terms), (item.kind, terms)
        buffer = DicomBytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a wrong or unknown term warns on reading
            back = dcmread(DicomBytesIO(data))
            assert str(back.PatientName) == expected_name, item.kind
        assert_conformant(data, allowed_warnings=RESULT_OBJECT_WARNINGS)

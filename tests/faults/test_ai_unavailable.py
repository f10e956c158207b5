"""GPU out of memory, or no GPU, with the real demo head CT model: a smaller batch, then the
CPU, else "AI unavailable", never "no finding".

Out of memory is injected where a GPU first runs out of it, in the runtime's
``models.runtime.to_device`` (this machine has no GPU to fill): ``torch.cuda.OutOfMemoryError``
for batches over a size, for everything on "the GPU", or everywhere. The results must equal an
undisturbed run's; when nothing fits, the study is marked "AI unavailable" on the worklist and
nothing is saved, queued for the PACS or sent to the EMR."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
import torch

from deployments.orthanc import free_port
from integrations.db.connection import open_database
from integrations.db.store import StudyStore
from integrations.errors import AIUnavailableError
from integrations.operator_report import failure_message
from models import runtime
from models.phantoms.head_ct import head_ct_study
from models.runtime import fallback_plan, resolve_device
from tasks.inference import run_inference
from tasks.runtime import Runtime, install_runtime, reset_runtime
from tasks.study import load_study
from tests.fix_dcmtk import storescu
from tests.site import running_node

ANALYZER = "head-ct-ich"
NODE_AE_TITLE = "PACSFLOW"
HEAD_RULE = {"name": "head", "modality": ["CT"], "body_part": ["HEAD"], "analyzers": [ANALYZER]}
SLICES = 40


def head_ct(seed: int = 1):
    """A head CT phantom of the kind the demo model was trained on, with a bleed."""
    return head_ct_study(seed, ["Intraparenchymal hemorrhage"], slices=SLICES).datasets


def inject_out_of_memory(
    monkeypatch, fails: Callable[[int, torch.device], bool]
) -> list[tuple[str, int]]:
    """``to_device`` raising CUDA's out-of-memory error when ``fails(batch, device)``; returns
    the (device type, batch) of every call, as the runtime made them."""
    calls: list[tuple[str, int]] = []
    real = runtime.to_device

    def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
        calls.append((device.type, int(array.shape[0])))
        if fails(int(array.shape[0]), device):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(array, device)

    monkeypatch.setattr(runtime, "to_device", to_device)
    return calls


def probabilities(result) -> dict[str, float]:
    return {finding.label: finding.probability for finding in result.findings}


@pytest.fixture
def analyzer(demo_registry):
    return demo_registry.get(ANALYZER)


def test_fallback_plan_halves_the_batch_then_moves_to_the_cpu():
    assert fallback_plan(torch.device("cuda"), 8) == [
        *((torch.device("cuda"), size) for size in (8, 4, 2, 1)),
        *((torch.device("cpu"), size) for size in (8, 4, 2, 1)),
    ]
    assert fallback_plan(torch.device("cpu"), 3) == [(torch.device("cpu"), n) for n in (3, 1)]


def test_no_gpu_runs_on_the_cpu(caplog):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda") == torch.device("cpu")
    assert "sees no GPU" in caplog.text


def test_out_of_memory_on_large_batches_gives_the_same_result_with_smaller_ones(
    analyzer, monkeypatch, caplog
):
    datasets = head_ct()
    reference = analyzer.analyze(datasets)
    assert reference.status == "analysed"
    calls = inject_out_of_memory(monkeypatch, lambda batch, device: batch > 4)
    with caplog.at_level(logging.WARNING):
        result = analyzer.analyze(datasets)
    assert result.status == "analysed"
    assert probabilities(result) == pytest.approx(probabilities(reference), abs=1e-5)
    assert [h.label for h in result.heatmaps] == [h.label for h in reference.heatmaps]
    assert max(batch for _, batch in calls) > 4  # it did try the big batch first
    assert "out of memory on cpu at batch" in caplog.text


def test_gpu_out_of_memory_at_every_batch_moves_to_the_cpu(analyzer, monkeypatch, caplog):
    datasets = head_ct(2)
    reference = analyzer.analyze(datasets)
    # the analyzer as it is on a GPU machine: its network "on CUDA", where every batch fails
    monkeypatch.setattr(analyzer, "device", torch.device("cuda"))
    calls = inject_out_of_memory(monkeypatch, lambda batch, device: device.type == "cuda")
    with caplog.at_level(logging.WARNING):
        result = analyzer.analyze(datasets)
    assert result.status == "analysed"
    assert probabilities(result) == pytest.approx(probabilities(reference), abs=1e-5)
    tried = list(dict.fromkeys(calls))
    # every batch size on "the GPU", then the CPU at the package's own batch size (32)
    assert tried[0] == ("cuda", 32) and ("cuda", 1) in tried and ("cpu", 32) in tried
    assert "trying cpu" in caplog.text


def test_out_of_memory_everywhere_is_ai_unavailable_never_no_finding(analyzer, monkeypatch):
    monkeypatch.setattr(analyzer, "device", torch.device("cuda"))
    inject_out_of_memory(monkeypatch, lambda batch, device: True)
    with pytest.raises(AIUnavailableError, match="out of memory on every device"):
        analyzer.analyze(head_ct(3))


def test_ai_unavailable_study_is_marked_and_nothing_leaves(
    settings_factory, demo_models_dir, monkeypatch, tmp_path
):
    settings = settings_factory(
        node={"ae_title": NODE_AE_TITLE, "port": free_port(), "allowed_callers": ["MODALITY"]},
        models={"dir": str(demo_models_dir), "device": "cpu"},
        routing={"rules": [HEAD_RULE]},
    )
    files = []
    for dataset in head_ct(4):
        files.append(tmp_path / f"{dataset.SOPInstanceUID}.dcm")
        dataset.save_as(files[-1], enforce_file_format=True)
    with running_node(settings, close_studies=False) as site:
        sent = storescu("MODALITY", NODE_AE_TITLE, site.port, files)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    database = open_database(settings)
    install_runtime(Runtime(settings=settings, database=database))
    inject_out_of_memory(monkeypatch, lambda batch, device: True)
    try:
        study = StudyStore(database).study(str(head_ct(4)[0].StudyInstanceUID))
        assert study is not None
        context = load_study.fn(study.study_key)
        assert ANALYZER in context.analyzers
        with pytest.raises(AIUnavailableError) as raised:
            run_inference.fn(context, ANALYZER)
    finally:
        reset_runtime()  # closes the runtime's database
    database = open_database(settings)
    message = failure_message(f"run_inference:{ANALYZER}", raised.value)
    assert "AI unavailable" in message and "(not 'no finding')" in message
    with database.connection() as conn:
        worklist = conn.execute(
            "SELECT status, tier FROM worklist WHERE study_instance_uid = %s",
            (context.study_instance_uid,),
        ).fetchone()
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM analyses) AS analyses,"
            " (SELECT count(*) FROM results_outbox) AS results,"
            " (SELECT count(*) FROM hl7_outbox) AS hl7"
        ).fetchone()
    database.close()
    assert worklist == {"status": "AI unavailable", "tier": None}
    assert counts == {"analyses": 0, "results": 0, "hl7": 0}

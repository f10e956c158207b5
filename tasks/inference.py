"""run_inference: one analyzer on the routed series of a study (I/O).

The model comes from the per-process registry, loaded once and kept warm; the result goes to
disk beside the spool and a row in ``analyses``; the task returns a reference.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from pydicom import dcmread

from integrations.db.analyses import AnalysisStore
from integrations.db.worklist import WorklistStore
from integrations.errors import AIUnavailableError
from integrations.result_files import save_analysis, study_results_dir
from integrations.urgency import apply_urgency, finding_rules, fired_rule
from models.results import AnalysisResult, UrgencyTier
from tasks.context import AnalysisRef, CriticalFinding, StudyContext
from tasks.runtime import get_runtime
from tasks.steps import recorded_step, step_log


def analysis_ref(result: AnalysisResult, result_path: str) -> AnalysisRef:
    primary = result.primary_finding
    rules = finding_rules(result)
    return AnalysisRef(
        analyzer=result.analyzer,
        result_path=result_path,
        status=result.status,
        tier=result.tier.value,
        model_version=result.model.version,
        primary_finding=primary.label if primary else "",
        critical_findings=tuple(
            CriticalFinding(
                finding.label,
                round(finding.probability, 4),
                code=f"{finding.code.scheme}:{finding.code.value}",
                rule=rules.get(finding.label, ""),
            )
            for finding in result.positive_findings
            if finding.tier is UrgencyTier.CRITICAL
        ),
        inference_seconds=result.inference_seconds,
        urgency_rule=fired_rule(result),
        primary_probability=round(primary.probability, 4) if primary else None,
        clinical_use=result.clinical_use,
    )


@task(name="run_inference", cache_policy=NO_CACHE, persist_result=False)
def run_inference(context: StudyContext, analyzer: str) -> AnalysisRef:
    from models.registry import get_registry

    runtime = get_runtime()
    with recorded_step(f"run_inference:{analyzer}", context) as detail:
        series = context.analyzers[analyzer]
        instances = runtime.store.instances(context.study_instance_uid, series)
        datasets = [dcmread(instance.path) for instance in instances]
        registry = get_registry(
            runtime.settings.models.dir,
            runtime.settings.models.device,
            allow_non_clinical=runtime.settings.models.allow_non_clinical,
        )
        try:
            result = registry.get(analyzer).analyze(datasets)
        except AIUnavailableError as error:
            # Out of memory on every device: nothing is saved or sent, the worklist says so.
            WorklistStore(runtime.database).mark_ai_unavailable(context.study_instance_uid)
            detail.update(images=len(datasets), status="AI unavailable")
            step_log().error("%s: AI unavailable: %s", analyzer, error)
            raise
        # The site's urgency rules decide the tiers before anything is saved or sent.
        result = apply_urgency(result, runtime.settings.urgency.to_rules())
        folder = study_results_dir(
            runtime.settings.node.results_dir, context.study_instance_uid, context.generation
        )
        path = save_analysis(folder, result)
        summary = {
            "status": result.status,
            "reason": result.reason,
            "tier": result.tier.value,
            "urgency_rule": fired_rule(result),
            "positive": [
                {
                    "label": f.label,
                    "probability": round(f.probability, 4),
                    "tier": f.tier.value,
                    "rule": finding_rules(result).get(f.label, ""),
                }
                for f in result.positive_findings
            ],
        }
        AnalysisStore(runtime.database).record_analysis(
            study_instance_uid=context.study_instance_uid,
            analyzer=analyzer,
            generation=context.generation,
            model_name=result.model.name,
            model_version=result.model.version,
            status=result.status,
            tier=result.tier.value,
            result_path=str(path),
            summary=summary,
            inference_seconds=result.inference_seconds,
        )
        detail.update(
            images=len(datasets),
            tier=result.tier.value,
            status=result.status,
            seconds=round(result.inference_seconds, 3),
        )
        positives = ", ".join(
            f"{f.label} {f.probability:.2f} ({f.tier.value})" for f in result.positive_findings
        )
        step_log().info(
            "%s %s: %s, tier %s, %s (%d images, %.1f s)",
            analyzer,
            result.model.version,
            result.status,
            result.tier.value,
            positives or result.reason or "no finding",
            len(datasets),
            result.inference_seconds,
        )
        return analysis_ref(result, str(path))

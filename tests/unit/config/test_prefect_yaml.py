"""prefect.yaml declares every deployment `pacsflow serve` offers, on the pool the settings
name, for the Prefect that is installed; the worker route follows [worker]."""

from __future__ import annotations

from pathlib import Path

import prefect
import pytest
import yaml

from deployments.catalog import DEPLOYMENTS
from integrations.errors import ConfigError
from integrations.settings import (
    DEFAULT_WORK_POOL,
    DEFAULT_WORK_QUEUE,
    default_worker_count,
    load_settings,
)

PREFECT_YAML = Path(__file__).resolve().parents[3] / "prefect.yaml"


@pytest.fixture(scope="module")
def project() -> dict:
    return yaml.safe_load(PREFECT_YAML.read_text())


def test_prefect_version_is_the_installed_one(project):
    assert project["prefect-version"] == prefect.__version__


def test_every_served_deployment_is_declared_with_its_entrypoint(project):
    declared = {item["name"]: item for item in project["deployments"]}
    assert set(declared) == {spec.name for spec in DEPLOYMENTS}
    for spec in DEPLOYMENTS:
        module, attribute = spec.entrypoint.split(":")
        assert declared[spec.name]["entrypoint"] == f"{module.replace('.', '/')}.py:{attribute}"
        assert declared[spec.name]["description"] == spec.description
        assert declared[spec.name]["work_pool"]["name"] == DEFAULT_WORK_POOL
        schedules = [item["cron"] for item in declared[spec.name].get("schedules") or ()]
        assert schedules == ([spec.cron] if spec.cron else [])


def test_process_study_is_on_the_pool_and_queue_the_dispatcher_uses(project):
    (process_study,) = [d for d in project["deployments"] if d["name"] == "process-study"]
    assert process_study["work_pool"]["work_queue_name"] == DEFAULT_WORK_QUEUE


@pytest.mark.parametrize(
    ("worker", "pool", "warm"),
    [
        ({}, False, default_worker_count()),  # the default follows the machine
        ({"count": 0}, True, 0),
        ({"count": 3, "route": "work-pool"}, True, 0),
    ],
)
def test_the_route_follows_the_worker_settings(worker, pool, warm):
    settings = load_settings(None, search=False, worker=worker).worker
    assert settings.uses_work_pool is pool and settings.warm_count == warm


def test_a_warm_route_without_warm_workers_is_refused():
    with pytest.raises(ConfigError, match="process no study"):
        load_settings(None, search=False, worker={"count": 0, "route": "warm"})


def test_the_monitoring_report_is_scheduled_daily(project):
    (monitoring,) = [d for d in project["deployments"] if d["name"] == "monitoring-daily"]
    minute, hour, day, month, weekday = monitoring["schedules"][0]["cron"].split()
    assert (day, month, weekday) == ("*", "*", "*") and minute.isdigit() and hour.isdigit()


@pytest.mark.parametrize(
    ("worker", "express"),
    [
        ({"count": 1}, 0),  # one worker takes everything
        ({"count": 2}, 1),  # the default on two cores: one for short studies, one for all
        ({"count": 8}, 1),
        ({"count": 4, "express_workers": 2}, 2),
        ({"count": 3, "express_workers": 0}, 0),
        ({"count": 0}, 0),  # the work-pool route has no warm workers at all
    ],
)
def test_the_express_lane_follows_the_worker_settings(worker, express):
    settings = load_settings(None, search=False, worker=worker).worker
    assert settings.express_count == express


def test_an_express_lane_that_leaves_no_worker_for_long_studies_is_refused():
    with pytest.raises(ConfigError, match="no worker for studies over express_max_images"):
        load_settings(None, search=False, worker={"count": 2, "express_workers": 2})

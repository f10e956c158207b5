"""The monitoring report as an HTML page IT reads (pure: Jinja2, autoescaped).

The page is drawn from the report's JSON, so the page and the JSON file say the same thing;
like the JSON it names studies by study key and UIDs only.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

_environment = Environment(
    loader=PackageLoader("integrations.monitoring", "templates"),
    autoescape=select_autoescape(["j2", "html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


_environment.filters["seconds"] = _seconds
_environment.filters["percent"] = _percent


def report_html(report: dict[str, Any]) -> str:
    """The page for a report's JSON (:meth:`MonitoringReport.to_json`)."""
    return _environment.get_template("report.html.j2").render(report=report)

"""The web console: worklist, study results, analytics, system health and audit under RBAC."""

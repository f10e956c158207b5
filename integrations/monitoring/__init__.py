"""The 30 days after go-live: the daily monitoring report (see :mod:`integrations.monitoring.daily`)."""

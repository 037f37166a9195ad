"""Alerting: rules evaluated on the store's merged view, alert state, and notification channels.

Above storage, below the api: the alerter reads what every engine wrote through the query layer
(:class:`netspectra.storage.query.QueryStore`), so two engines in a queue group fire exactly the
alerts one engine fires; the api only shows alerts (ListAlerts, Grafana annotations).
"""

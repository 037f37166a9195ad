"""The query side: grpclib v1.QueryService (reflection, health) and the Grafana JSON endpoint over storage."""

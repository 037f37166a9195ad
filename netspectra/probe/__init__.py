"""The probe: capture sources, the Go-compatible publisher, optional persistence, and the probe role."""

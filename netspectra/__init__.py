"""NetSpectra: who talks to whom, how much — exact flows and sketches over live or captured traffic."""

__version__ = "0.1.0"

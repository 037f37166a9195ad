"""Shared data types below every role: what capture produces and what engine, storage and api pass on.

Nothing here imports capture, wire, bus, engine, storage or api, so any layer (and every sketch
plugin, through :mod:`netspectra.sketch_api`) can use these types without importing a role.
"""

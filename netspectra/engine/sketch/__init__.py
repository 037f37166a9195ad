"""The ``sketch`` aggregator group: heavy-hitter and spreader sketches discovered as plugins.

Algorithms register through the entry-point group ``netspectra.sketches`` (built-ins too, see
``pyproject.toml``); :mod:`.protocol` is the contract, :mod:`.registry` finds and validates
them, :mod:`.group` runs one sketch per configured task.
"""

"""The engine: fans every packet batch out to aggregator groups (exact, sketch, plugins), snapshots them."""

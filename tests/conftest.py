"""Fixtures shared by every test folder: real servers and reference implementations as plugins."""

pytest_plugins = ["tests.fixtures.protos", "tests.fixtures.nats", "tests.fixtures.clickhouse"]

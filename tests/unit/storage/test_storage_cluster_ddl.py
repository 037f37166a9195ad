"""The cluster form of the schema is derived from schema.sql alone, statement by statement."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from netspectra.config.models import ClickHouseOptions
from netspectra.storage import sql
from netspectra.storage.cluster import LOCAL_SUFFIX, cluster_statements, sharded_tables

CLUSTER = "shards"
DATABASE = "netspectra"


def _create(
    name: str, rest: str = "(\n    EngineId String,\n    X UInt8\n) ENGINE = MergeTree() ORDER BY X"
) -> str:
    return f"CREATE TABLE IF NOT EXISTS {name} {rest}"


def test_every_mergetree_table_of_the_schema_is_sharded_and_nothing_else() -> None:
    tables = sharded_tables()
    created = [re.search(r"EXISTS (\w+)", s).group(1) for s in sql.schema_statements()]  # type: ignore[union-attr]
    assert set(tables) == set(created)  # every table schema.sql has today is a MergeTree one
    # a flow's rows and its latest rows share a shard: the same hash as flow_latest's FlowKey
    assert tables["flow_metrics"] == f"cityHash64({sql.FLOW_IDENTITY})"
    assert f"cityHash64({sql.FLOW_IDENTITY}) AS FlowKey" in sql.LATEST_SELECT
    assert tables["flow_latest"] == "FlowKey"


def test_a_table_added_to_the_schema_gets_the_cluster_form_for_free() -> None:
    """What another change to schema.sql (a sketch-state table) gets without touching cluster.py."""
    statements = [
        _create("sketch_states"),
        _create("no_engine", "(A UInt8) ENGINE = ReplacingMergeTree() ORDER BY A"),
    ]
    statements.append("CREATE TABLE IF NOT EXISTS marker (Done UInt8) ENGINE = TinyLog")
    tables = sharded_tables(statements)
    assert tables == {"sketch_states": "cityHash64(EngineId)", "no_engine": "rand()"}
    local, distributed = cluster_statements(statements[0], CLUSTER, DATABASE, tables)
    assert local.every_node and distributed.every_node
    assert local.sql == statements[0].replace("sketch_states", "sketch_states" + LOCAL_SUFFIX)
    assert distributed.sql == (
        "CREATE TABLE IF NOT EXISTS sketch_states AS sketch_states_local ENGINE = "
        "Distributed('shards', 'netspectra', 'sketch_states_local', cityHash64(EngineId))"
    )
    # a non-MergeTree table stays one plain table on each node
    assert [(s.sql, s.every_node) for s in cluster_statements(statements[2], CLUSTER, DATABASE, tables)] == [
        (statements[2], True)
    ]


def test_the_schema_statements_become_local_plus_distributed_pairs() -> None:
    tables = sharded_tables()
    for statement in sql.schema_statements():
        name = re.search(r"EXISTS (\w+)", statement).group(1)  # type: ignore[union-attr]
        local, distributed = cluster_statements(statement, CLUSTER, DATABASE, tables)
        assert local.sql.startswith(f"CREATE TABLE IF NOT EXISTS {name}_local (")
        assert local.sql.split("(", 1)[1] == statement.split("(", 1)[1]  # columns, engine, keys untouched
        assert (
            f"ENGINE = Distributed('shards', 'netspectra', '{name}_local', {tables[name]})" in distributed.sql
        )


def test_the_view_reads_and_fills_the_local_tables() -> None:
    (view,) = cluster_statements(sql.LATEST_VIEW, CLUSTER, DATABASE, sharded_tables())
    assert view.every_node
    assert " TO flow_latest_local AS SELECT " in view.sql
    assert view.sql.endswith(" FROM flow_metrics_local")
    assert view.sql.replace("_local", "") == sql.LATEST_VIEW


def test_optimize_alter_and_inserts() -> None:
    tables = sharded_tables()
    assert [
        (s.sql, s.every_node) for s in cluster_statements(sql.LATEST_COMPACT, CLUSTER, DATABASE, tables)
    ] == [("OPTIMIZE TABLE flow_latest_local", True)]
    alter = sql.ADD_ENGINE_ID["flow_metrics"]
    assert [s.sql for s in cluster_statements(alter, CLUSTER, DATABASE, tables)] == [
        alter.replace("flow_metrics", "flow_metrics_local"),
        alter,
    ]
    # the back-fill reads and writes the Distributed tables, once, from the server it runs on
    (backfill,) = cluster_statements(sql.LATEST_BACKFILL, CLUSTER, DATABASE, tables)
    assert (backfill.sql, backfill.every_node) == (sql.LATEST_BACKFILL, False)


@pytest.mark.parametrize("name", ["prod", "shards_2", "a.b-c"])
def test_cluster_names(name: str) -> None:
    assert ClickHouseOptions(cluster=name).cluster == name


@pytest.mark.parametrize("name", ["", "x'y", "two words", "1st"])
def test_bad_cluster_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="cluster"):
        ClickHouseOptions(cluster=name)

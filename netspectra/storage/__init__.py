"""Storage: snapshot writers (files, ClickHouse via asynch, embedded chdb) and the store the api queries."""

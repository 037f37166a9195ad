"""One validation path: each broken config names exactly its problems, all at once, exit 2, no traceback.

The cases are the broken configs measured in issue 9 (each passed `config check` with exit 0, and
`run` then crashed in a restart loop). Real files, directories and sockets: a port is "in use"
because a listening socket holds it, a directory is blocked because a regular file is in the way.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netspectra.config.validate import check, warnings

ROOT = Path(__file__).resolve().parents[3]
#: Listen on free ports of the loopback only, so no case depends on what else runs here.
QUIET_API = 'api:\n  grpc_listen_addr: "127.0.0.1:0"\n  http_listen_addr: "127.0.0.1:0"\n'


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def netspectra(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netspectra", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def problem_lines(stderr: str) -> list[str]:
    return [line.strip() for line in stderr.splitlines() if line.startswith("  ")]


def problem_paths(stderr: str) -> set[str]:
    return {line.split(": ", 1)[0] for line in problem_lines(stderr)}


# (case, YAML with {tmp} and {busy} placeholders, {path: words the message must hold})
CASES = [
    (
        "unknown group type",
        "aggregator:\n  types: [exakt, sketch]\n" + QUIET_API,
        {"aggregator.types[0]": "did you mean 'exact'"},
    ),
    (
        "listen address without a colon",
        'api:\n  grpc_listen_addr: "50051"\n  http_listen_addr: "127.0.0.1:0"\n',
        {"api.grpc_listen_addr": "is not HOST:PORT"},
    ),
    (
        "port in use",
        'api:\n  grpc_listen_addr: "127.0.0.1:{busy}"\n  http_listen_addr: "127.0.0.1:0"\n',
        {"api.grpc_listen_addr": "in use"},
    ),
    (
        "grpc and http on one port",
        'api:\n  grpc_listen_addr: "127.0.0.1:{free}"\n  http_listen_addr: "127.0.0.1:{free}"\n',
        {"api.http_listen_addr": "the same port as api.grpc_listen_addr"},
    ),
    (
        "missing TLS files",
        QUIET_API + "  tls_cert: {tmp}/server.crt\n  tls_key: {tmp}/server.key\n",
        {"api.tls_cert": "does not exist", "api.tls_key": "does not exist"},
    ),
    (
        "missing NATS creds file",
        "probe:\n  nats_url: nats://127.0.0.1:4222\n  auth:\n    creds_file: {tmp}/nats.creds\n" + QUIET_API,
        {"probe.auth.creds_file": "does not exist"},
    ),
    (
        "embedded store behind a file",
        "aggregator:\n  exact:\n    writers:\n"
        "      - {{type: embedded, embedded: {{path: {tmp}/file/store}}}}\n" + QUIET_API,
        {"aggregator.exact.writers[0].embedded.path": "in the way"},
    ),
    (
        "clickhouse spool behind a file",
        "aggregator:\n  sketch:\n    writers:\n"
        "      - {{type: clickhouse, clickhouse: {{queue_dir: {tmp}/file/spool}}}}\n" + QUIET_API,
        {"aggregator.sketch.writers[0].clickhouse.queue_dir": "in the way"},
    ),
    (
        "file writer root is a file",
        "aggregator:\n  exact:\n    writers:\n      - {{type: file, file: {{root_path: {tmp}/file}}}}\n"
        + QUIET_API,
        {"aggregator.exact.writers[0].file.root_path": "is not a directory"},
    ),
    (
        "probe persistence behind a file",
        "probe:\n  persistence: {{enabled: true, path: {tmp}/file/captures}}\n" + QUIET_API,
        {"probe.persistence.path": "in the way"},
    ),
    (
        "bad period hides no sketch parameter",
        "aggregator:\n  period: 1x\n  sketch:\n    tasks:\n"
        "      - {{name: cm, algorithm: count_min, flow_fields: [SrcIP], width: 0}}\n" + QUIET_API,
        {"aggregator.period": "not a duration", "aggregator.sketch.tasks[0].width": "greater than"},
    ),
    (
        "unknown sketch algorithm and parameter",
        "aggregator:\n  sketch:\n    tasks:\n"
        "      - {{name: a, algorithm: count_mni, flow_fields: [SrcIP]}}\n"
        "      - {{name: b, algorithm: count_min, flow_fields: [SrcIp], widht: 5}}\n" + QUIET_API,
        {
            "aggregator.sketch.tasks[0].algorithm": "did you mean 'count_min'",
            "aggregator.sketch.tasks[1].flow_fields[0]": "Input should be",
            "aggregator.sketch.tasks[1].flow_fields": "at least 1 item",
            "aggregator.sketch.tasks[1].widht": "unknown parameter of count_min",
        },
    ),
    (
        "bad retentions, each named",
        "aggregator:\n  exact:\n    writers:\n"
        "      - {{type: clickhouse, clickhouse: {{retention: 30days, queue_dir: {tmp}/spool}}}}\n"
        "      - {{type: embedded, embedded: {{retention: -5, path: {tmp}/store}}}}\n"
        "  sketch:\n    writers:\n"
        "      - {{type: clickhouse, clickhouse: {{retention: true, queue_dir: {tmp}/spool}}}}\n" + QUIET_API,
        {
            "aggregator.exact.writers[0].clickhouse.retention": "'30days' is not a duration",
            "aggregator.exact.writers[1].embedded.retention": "cannot be negative",
            "aggregator.sketch.writers[0].clickhouse.retention": "a duration must be a string",
        },
    ),
    (
        "metrics address without a port",
        'metrics:\n  listen_addr: "127.0.0.1"\n' + QUIET_API,
        {"metrics.listen_addr": "is not HOST:PORT"},
    ),
    (
        "metrics port out of range",
        'metrics:\n  listen_addr: "127.0.0.1:65536"\n' + QUIET_API,
        {"metrics.listen_addr": "is not HOST:PORT"},
    ),
]


def _write(tmp_path: Path, text: str, busy: int) -> Path:
    (tmp_path / "file").write_text("not a directory\n")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    path = tmp_path / "broken.yaml"
    path.write_text(text.format(tmp=tmp_path, busy=busy, free=free))
    return path


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_config_check_names_exactly_the_problems(tmp_path, busy_port, case, text, expected):
    path = _write(tmp_path, text, busy_port)
    result = netspectra("config", "check", str(path))
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    assert problem_paths(result.stderr) == set(expected), result.stderr
    lines = problem_lines(result.stderr)
    for field, words in expected.items():
        assert any(line.startswith(f"{field}: ") and words in line for line in lines), (field, lines)


@pytest.mark.parametrize(("case", "text", "expected"), CASES, ids=[case[0] for case in CASES])
def test_the_same_problems_in_process(tmp_path, busy_port, case, text, expected):
    checked = check(_write(tmp_path, text, busy_port))
    assert checked.settings is None
    assert {problem.path for problem in checked.problems} == set(expected)


SIX_PROBLEMS = """\
probe:
  nats_url: nats://127.0.0.1:4222
  auth:
    creds_file: {tmp}/missing.creds
aggregator:
  types: [exakt, sketch]
  period: 1x
  sketch:
    writers:
      - {{type: embedded, embedded: {{path: {tmp}/file/store}}}}
    tasks:
      - {{name: cm, algorithm: count_min, flow_fields: [SrcIP], width: -5}}
api:
  grpc_listen_addr: "50051"
  http_listen_addr: "127.0.0.1:0"
"""
SIX_PATHS = {
    "probe.auth.creds_file",
    "aggregator.types[0]",
    "aggregator.period",
    "aggregator.sketch.writers[0].embedded.path",
    "aggregator.sketch.tasks[0].width",
    "api.grpc_listen_addr",
}


def test_six_problems_are_reported_in_one_run_and_run_refuses_with_the_same_lines(tmp_path):
    path = _write(tmp_path, SIX_PROBLEMS, busy=0)
    checked = netspectra("config", "check", "--roles", "engine,api", str(path))
    assert checked.returncode == 2
    assert problem_paths(checked.stderr) == SIX_PATHS
    assert len(problem_lines(checked.stderr)) == 6, checked.stderr

    ran = netspectra("run", "--roles", "engine,api", "--config", str(path))
    assert ran.returncode == 2
    assert problem_lines(ran.stderr) == problem_lines(checked.stderr)
    assert "Traceback" not in ran.stdout + ran.stderr
    assert "Starting roles" not in ran.stderr and "Started" not in ran.stderr  # no role began


def test_run_refuses_a_taken_port_with_one_line_and_no_restart(tmp_path, busy_port):
    path = tmp_path / "api.yaml"
    path.write_text(
        f'api:\n  grpc_listen_addr: "127.0.0.1:{busy_port}"\n  http_listen_addr: "127.0.0.1:0"\n'
        f"  store: {{type: embedded, embedded: {{path: {tmp_path}/store}}}}\n"
    )
    result = netspectra("run", "--roles", "api", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert problem_paths(result.stderr) == {"api.grpc_listen_addr"}
    assert len(problem_lines(result.stderr)) == 1
    assert "Restarting" not in result.stderr and "Traceback" not in result.stderr


def test_run_refuses_a_missing_creds_file_with_one_line(tmp_path):
    path = tmp_path / "engine.yaml"
    path.write_text(
        f"probe:\n  nats_url: nats://127.0.0.1:4222\n  auth:\n    creds_file: {tmp_path}/nats.creds\n"
    )
    result = netspectra("run", "--roles", "engine", "--config", str(path))
    assert result.returncode == 2, result.stderr
    assert problem_lines(result.stderr) == [
        f"probe.auth.creds_file: NATS credentials file '{tmp_path}/nats.creds' does not exist"
    ]
    assert "Traceback" not in result.stderr


def test_a_probe_only_run_does_not_check_the_api_port(tmp_path, busy_port):
    capture = tmp_path / "t.pcap"
    assert netspectra("generate", str(capture), "--packets", "10", "--flows", "2").returncode == 0
    path = tmp_path / "probe.yaml"
    path.write_text(
        f'probe:\n  nats_url: nats://127.0.0.1:4222\napi:\n  grpc_listen_addr: "127.0.0.1:{busy_port}"\n'
    )
    checked = check(
        path,
        ["probe"],
        adjust=lambda s: s.model_copy(
            update={"probe": s.probe.model_copy(update={"source": "file", "pcap": str(capture)})}
        ),
    )
    assert checked.problems == ()
    assert {p.path for p in check(path, ["api"]).problems} == {"api.grpc_listen_addr", "api.store"}


def test_a_good_file_has_no_problem():
    assert check(ROOT / "config.yaml").problems == ()


def test_a_netspectra_error_is_one_line_and_a_traceback_only_with_debug(tmp_path):
    missing = tmp_path / "missing.yaml"
    for command in (["tail", "--config", str(missing)], ["run", "--config", str(missing)]):
        result = netspectra(*command)
        assert result.returncode == 2, (command, result.stderr)
        assert "Traceback" not in result.stderr and "cannot read the config file" in result.stderr
    result = netspectra("query", "health", "--addr", "127.0.0.1:1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    # tail with an unreachable server raises BusError inside the command: one line, exit 1
    unreachable = ["tail", "--url", "nats://127.0.0.1:1", "--count", "1"]
    result = netspectra(*unreachable)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("error:")]) == 1
    debug = netspectra("--debug", *unreachable)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


def test_an_unreachable_nats_is_retried_with_one_line_each_not_a_crash_loop(tmp_path):
    import signal
    import threading

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "engine.yaml"
    path.write_text(f"probe:\n  nats_url: nats://127.0.0.1:{port}\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "netspectra", "run", "--roles", "engine", "--config", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    lines: list[str] = []
    retried = threading.Event()

    def read() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if sum("Role engine waits: cannot connect to NATS" in seen for seen in lines) >= 3:
                retried.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert retried.wait(120), "".join(lines)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(60)
        reader.join(10)
        process.stderr.close()  # type: ignore[union-attr]  # Popen leaves its pipe to whoever reads it
    output = "".join(lines)
    assert code == 0, output
    assert "Traceback" not in output and "crashed" not in output


def test_metrics_beyond_loopback_is_a_warning_and_the_file_still_passes(tmp_path):
    path = tmp_path / "open.yaml"
    path.write_text('metrics:\n  listen_addr: "0.0.0.0:0"\n' + QUIET_API)
    result = netspectra("config", "check", str(path), "--roles", "probe,engine")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("warning: metrics.listen_addr: '0.0.0.0:0' listens beyond this host")
    assert "no token and no TLS" in line
    settings = check(path).settings
    assert settings is not None
    for address in ("127.0.0.1:0", "[::1]:0", "localhost:0"):
        quiet = settings.model_copy(
            update={"metrics": settings.metrics.model_copy(update={"listen_addr": address})}
        )
        assert warnings(quiet, ["engine"]) == [], address
    every = settings.model_copy(update={"metrics": settings.metrics.model_copy(update={"listen_addr": ":0"})})
    assert [w.path for w in warnings(every, ["probe"])] == ["metrics.listen_addr"]
    assert warnings(settings, ["api"]) == []  # an api-only process does not serve it


def test_a_taken_metrics_port_is_a_warning_only_where_it_would_be_served(tmp_path, busy_port):
    path = tmp_path / "busy.yaml"
    path.write_text(f'metrics:\n  listen_addr: "127.0.0.1:{busy_port}"\n' + QUIET_API)
    result = netspectra("config", "check", str(path), "--roles", "engine")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"warning: metrics.listen_addr: cannot listen on '127.0.0.1:{busy_port}': Address already in use: "
        "the process will count without serving /metrics"
    ]
    # with the api role, /metrics is on the api's port: metrics.listen_addr is not bound
    assert netspectra("config", "check", str(path)).stderr == ""

"""Read a config file, lay secrets from the environment over it, validate once.

This is the only place NetSpectra reads its environment, under one scheme:
``NETSPECTRA_<SECTION>_<FIELD>`` overrides that setting of the file, and its ``_FILE`` twin names
a file holding the value (as Docker and Kubernetes mount secrets). The variables are the keys of
:data:`SECRET_VARIABLES`; ``NATS`` means ``probe.auth`` (and ``engine.auth`` when the engine has
credentials of its own), ``CLICKHOUSE`` every ClickHouse block. Values read here are secrets:
they land in ``SecretStr`` fields and are never printed.

Go2NetSpectra's head config writes ``${VAR}`` in its values and loads a ``.env`` file first; so do
we: ``${NAME}`` anywhere in the file's text is replaced by the variable's value before YAML is
parsed (an unset variable is the empty string, as Go's ``os.ExpandEnv`` gives, so a required
value left unset is reported at its field). Only the braced form is expanded (a ``$`` in a
password stays as written). Variables come from the environment, then from a ``.env`` file next to
the config file and in the working directory (the environment wins; a ``.env`` never overrides).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from netspectra.config.models import Settings
from netspectra.config.problems import format_problems, model_problems, rule_label
from netspectra.errors import ConfigError

#: Environment variable → where it lands (``*`` = every ClickHouse block of every group).
SECRET_VARIABLES: dict[str, tuple[str, ...]] = {
    "NETSPECTRA_NATS_USER": ("probe", "auth", "user"),
    "NETSPECTRA_NATS_PASSWORD": ("probe", "auth", "password"),
    "NETSPECTRA_NATS_TOKEN": ("probe", "auth", "token"),
    "NETSPECTRA_NATS_CREDS": ("probe", "auth", "creds_file"),
    "NETSPECTRA_NATS_NKEYS_SEED": ("probe", "auth", "nkeys_seed_file"),
    "NETSPECTRA_NATS_TLS_CA": ("probe", "auth", "tls_ca"),
    "NETSPECTRA_NATS_TLS_CERT": ("probe", "auth", "tls_cert"),
    "NETSPECTRA_NATS_TLS_KEY": ("probe", "auth", "tls_key"),
    "NETSPECTRA_API_TOKEN": ("api", "auth_token"),
    "NETSPECTRA_CLICKHOUSE_PASSWORD": ("*clickhouse", "password"),
    "NETSPECTRA_SMTP_PASSWORD": ("smtp", "password"),
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_DOTENV_LINE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*")


def load_settings(path: str | Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The validated settings of ``path`` (defaults when None). Raises ConfigError naming every bad field."""
    raw = read_config(path, environ)
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        problems = [rule_label(problem, raw) for problem in model_problems(error)]
        raise ConfigError(format_problems(config_source(path), problems)) from None


def config_source(path: str | Path | None) -> str:
    """How reports name the config: its path, or ``defaults``."""
    return "defaults" if path is None else str(path)


def read_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The file's mapping with the environment's variables laid over it, not yet validated.

    ``environ`` (default: the process's environment, plus a ``.env`` in the working directory)
    is completed by a ``.env`` next to the config file.
    """
    variables = config_environment(path, environ)
    raw = read_yaml(Path(path), variables) if path is not None else {}
    return apply_secret_overrides(raw, variables)


def config_environment(path: str | Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables a config sees: ``environ`` first, then ``.env`` files that do not override it."""
    variables: dict[str, str] = {}
    places = [Path(path).parent / ".env"] if path is not None else []
    if environ is None:
        places.append(Path.cwd() / ".env")
    for place in places:
        for name, value in read_dotenv(place).items():
            variables.setdefault(name, value)
    variables.update(os.environ if environ is None else environ)
    return variables


def read_dotenv(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a ``.env`` file (``#`` comments, ``export``, quotes); {} when absent."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _DOTENV_LINE.fullmatch(line)
        if match is None:
            raise ConfigError(f"{path}:{number}: not NAME=value")
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def expand_variables(text: str, variables: Mapping[str, str]) -> str:
    """``${NAME}`` → its value ('' when unset, as Go's os.ExpandEnv)."""
    return _VARIABLE.sub(lambda match: variables.get(match.group(1), ""), text)


def read_yaml(path: Path, variables: Mapping[str, str] | None = None) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file: {error.strerror or error}") from None
    if variables is not None:
        text = expand_variables(text, variables)
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (probe, engine, ...)")
    return data


def _parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` by libyaml when PyYAML has it: the pure-Python parser took ~60 % of a
    ``config check`` of the default config (90 ms of ~150 ms here). libyaml's errors carry no
    source excerpt, so a file it refuses is parsed again by the pure parser, whose message (with
    the offending line) is the one reported."""
    loader = getattr(yaml, "CSafeLoader", None)
    if loader is not None:
        try:
            return yaml.load(text, Loader=loader)
        except yaml.YAMLError:
            pass
    return yaml.safe_load(text)


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per invalid field: ``path.to.field[0]: reason``."""
    return format_problems(source, model_problems(error))


def _secret_value(name: str, environ: Mapping[str, str]) -> str | None:
    if name in environ:
        return environ[name]
    file_name = environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigError(f"{name}_FILE: cannot read {file_name}: {error.strerror}") from None
    return None


def apply_secret_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """A copy of ``raw`` with every secret variable that is set laid over the file's value."""
    result = _deep_copy(raw)
    for name, target in SECRET_VARIABLES.items():
        value = _secret_value(name, environ)
        if value is None:
            continue
        if target[0] == "*clickhouse":
            for block in _clickhouse_blocks(result):
                block[target[1]] = value
            api = result.setdefault("api", {}) or {}
            store = api.get("store") if isinstance(api, dict) else None
            if isinstance(store, dict) and isinstance(store.get("clickhouse"), dict):
                store["clickhouse"][target[1]] = value
            continue
        if target[:2] == ("probe", "auth"):
            engine = result.get("engine")
            if isinstance(engine, dict) and isinstance(engine.get("auth"), dict):
                # The engine has credentials of its own: the variable is meant for it too.
                engine["auth"][target[2]] = value
        node = result
        for key in target[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[target[-1]] = value
    return result


def _clickhouse_blocks(raw: dict[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    aggregator = raw.get("aggregator")
    if not isinstance(aggregator, dict):
        return blocks
    for group_name in ("exact", "sketch"):
        group = aggregator.get(group_name)
        if not isinstance(group, dict):
            continue
        for writer in group.get("writers") or []:
            if isinstance(writer, dict) and writer.get("type") == "clickhouse":
                block = writer.get("clickhouse")
                if not isinstance(block, dict):
                    block = {}
                    writer["clickhouse"] = block
                blocks.append(block)
    return blocks


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _deep_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_deep_copy(item) for item in value]
    return value

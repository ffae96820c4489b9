import json
import os
from configparser import ConfigParser
from pathlib import Path

DEFAULTS = {"server": {"host": "127.0.0.1", "port": 8080}, "log": {"level": "info"}}


def deep_merge(base, override):
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path, env_prefix="APP_"):
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())
    else:
        parser = ConfigParser()
        parser.read(path)
        data = {section: dict(parser[section]) for section in parser.sections()}
    config = deep_merge(DEFAULTS, data)
    for name, value in os.environ.items():
        if name.startswith(env_prefix):
            section, _, key = name[len(env_prefix):].lower().partition("_")
            config.setdefault(section, {})[key] = value
    return config

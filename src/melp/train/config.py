"""Training presets: YAML files in ``melp/configs/train``, plus ``key=value`` overrides.

A preset is a nested dict (``seed``, ``model``, ``data``, ``optim``, ``trainer``, ``checkpoint``,
``output``). ``load_config("tiny")`` reads the packaged preset, ``load_config("my.yaml")`` a file;
``apply_overrides(cfg, ["optim.lr=2e-4"])`` replaces values by dotted path, parsing each value as
YAML so that numbers, booleans, lists and ``null`` keep their types. The resolved dict is saved
with every run, so a run folder says exactly how it was trained.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_config(name_or_path: str | Path) -> dict:
    """A preset by name (``tiny``, ``paper``) or a YAML file by path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        text = path.read_text()
        source = str(path)
    else:
        name = str(name_or_path)
        if name not in preset_names():
            raise ValueError(f"unknown training preset {name!r}; choose one of {preset_names()} or give a YAML path")
        text = (PRESET_DIR / f"{name}.yaml").read_text()
        source = f"preset {name}"
    cfg = yaml.safe_load(text)
    if not isinstance(cfg, dict):
        raise ValueError(f"training config {source} must be a YAML mapping, got {type(cfg).__name__}")
    return cfg


def add_set_argument(parser, help: str) -> None:
    """The one ``--set KEY=VALUE`` style of every command: repeatable, collected in ``args.overrides``
    for ``apply_overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help)


def apply_overrides(cfg: dict, overrides: list[str] | None) -> dict:
    """A copy of ``cfg`` with each ``dotted.key=value`` applied (value parsed as YAML)."""
    values = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        values[key.strip()] = parse_value(raw)
    return apply_values(cfg, values)


def apply_values(cfg: dict, values: dict) -> dict:
    """A copy of ``cfg`` with ``{"dotted.key": python value}`` applied."""
    cfg = copy.deepcopy(cfg)
    for key, value in values.items():
        parts = key.split(".")
        node = cfg
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {key}=...: {part!r} is not a section of the config")
            node = child
        node[parts[-1]] = copy.deepcopy(value)
    return cfg


def parse_value(raw: str):
    """A command-line value as YAML, except that ``2e-4`` is a number (YAML 1.1 wants ``2.0e-4``)."""
    if not raw.strip():
        return None
    value = yaml.safe_load(raw)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def save_config(cfg: dict, path: str | Path) -> None:
    # lists of numbers on one line (a corpus caption vocabulary is a list of hundreds of token ids)
    Path(path).write_text(yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None))

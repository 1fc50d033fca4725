"""Class descriptions for zero-shot classification.

``class_descriptions.yaml`` (next to this file) holds, per task, class name -> description (a
string, or a list of paraphrases whose text embeddings are averaged), plus ``snomed``: SNOMED CT
code -> description for the CinC task, whose classes are ``#Dx`` codes. The descriptions were
written for this project and are worded differently from the simulator's report statements.
Users pass their own as a YAML file or a dict, either flat (class -> text) or per task.
"""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

DEFAULT_FILE = Path(__file__).with_name("class_descriptions.yaml")
# task names inside caches / adapters -> section of the descriptions file
ALIASES = {"super": "ptbxl-super", "sub": "ptbxl-sub", "form": "ptbxl-form", "rhythm": "ptbxl-rhythm"}


def normalize_key(name: str) -> str:
    """Case, spaces and punctuation do not matter when matching class names."""
    return re.sub(r"[^a-z0-9]+", " ", str(name).lower()).strip()


@lru_cache(maxsize=None)
def _default() -> dict:
    return yaml.safe_load(DEFAULT_FILE.read_text())


def default_descriptions() -> dict:
    """The whole shipped file: section -> {class: description}."""
    return _default()


def _as_list(value, where: str) -> list[str]:
    texts = [value] if isinstance(value, str) else list(value or [])
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"{where}: a description must be a non-empty string or list of strings")
    return texts


def _lookup(table: dict, name: str):
    if name in table:
        return table[name]
    wanted = normalize_key(name)
    for key, value in table.items():
        if normalize_key(key) == wanted:
            return value
    return None


def load_user_descriptions(source) -> dict:
    """A dict, or a YAML file path, -> dict."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"descriptions file {path} does not exist")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping class -> description (or task -> mapping)")
    return data


def descriptions_for(task: str, classes: list[str], override=None) -> tuple[dict[str, list[str]], list[dict]]:
    """Descriptions of ``classes`` for ``task``: (class -> list of texts, missing).

    Order of lookup: ``override`` (flat, or its section for the task), the shipped section of the
    task, then the SNOMED map (for classes named by a code). Classes found nowhere come back in
    ``missing`` as {class, reason} so that callers report them as skipped.
    """
    section = ALIASES.get(task, task)
    tables = []
    if override is not None:
        user = load_user_descriptions(override)
        nested = user.get(section, user.get(task))
        tables.append(("user", nested if isinstance(nested, dict) else user))
    shipped = default_descriptions()
    if isinstance(shipped.get(section), dict):
        tables.append((section, shipped[section]))
    tables.append(("snomed", shipped.get("snomed", {})))
    found, missing = {}, []
    for name in classes:
        for where, table in tables:
            value = _lookup(table, name)
            if value is not None and not isinstance(value, dict):
                found[name] = _as_list(value, f"description of {name!r} ({where})")
                break
        else:
            missing.append({"class": name, "reason": f"no description for task {task!r} (pass --descriptions)"})
    return found, missing


def snomed_name(code: str) -> str | None:
    """A short name for a SNOMED CT code: its shipped description up to the first comma or ' with '."""
    value = default_descriptions().get("snomed", {}).get(str(code))
    if value is None:
        return None
    text = value if isinstance(value, str) else value[0]
    return re.split(r",| with ", text, maxsplit=1)[0].strip()


def display_name(name: str) -> str:
    """A class as tables and plots show it: a SNOMED code gets its name ("atrial fibrillation (164889003)")."""
    short = snomed_name(name) if str(name).isdigit() else None
    return f"{short} ({name})" if short else str(name)

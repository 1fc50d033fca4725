"""Shared fixtures. Real PhysioNet files are used only when MELP_REAL_DATA points to them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The read-only folder of real records (``ludb/``, ``cinc-smoke/``), or a skip.

    Resolved to an absolute path, as the adapters resolve their roots: a relative
    MELP_REAL_DATA (the README's ``../shared/data``) then compares equal to what they write.
    """
    root = os.environ.get("MELP_REAL_DATA")
    if not root:
        pytest.skip("MELP_REAL_DATA is not set: real-record tests need the shared/data folder")
    path = Path(root).resolve()
    if not (path / "ludb").is_dir() or not (path / "cinc-smoke").is_dir():
        pytest.skip(f"MELP_REAL_DATA={root} does not hold ludb/ and cinc-smoke/")
    return path

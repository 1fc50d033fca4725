"""Helpers of the melp serve tests: a small model folder, WFDB records, a real server in a thread."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import numpy as np


def model_folder(root: Path) -> Path:
    """A small random model with a text tower, saved as a model folder ``melp.load`` opens."""
    import torch

    import melp
    from modelfixtures import small_config, small_text_model

    torch.manual_seed(0)
    small_text_model(root / "text")
    melp.MELP(small_config(root / "text")).save_pretrained(root / "model")
    return root / "model"


def write_record(folder: Path, name: str, seed: int) -> list[Path]:
    """A simulated 10 s, 500 Hz 12-lead record written as WFDB: [.hea, .dat]."""
    import wfdb

    from melp import synth
    from melp.data.leads import CANONICAL_LEADS

    signal = synth.simulate(1, seed=seed).signals[0]
    folder.mkdir(parents=True, exist_ok=True)
    wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                p_signal=np.asarray(signal, np.float64).T, fmt=["16"] * 12, write_dir=str(folder))
    return [folder / f"{name}.hea", folder / f"{name}.dat"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(app):
    """The app served by uvicorn on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)

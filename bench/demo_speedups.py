"""Two of `melp demo`'s speed levers, each against its own off setting in the same run (alternating,
every round printed):

- the caches built with 2 worker processes against 1 (a simulated PTB-XL folder);
- stage 2 under Lightning with ``text.cache_frozen_states`` on against off: the demo's settings on a
  small simulated corpus, 4 epochs, so that 3 of them reuse what the first one kept.

    python bench/demo_speedups.py [--records 704] [--rounds 2]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

from melp import synth
from melp.data.adapters import get_adapter
from melp.data.cache import build_cache
from melp.data.preprocess import PreprocessConfig
from melp.train.config import apply_values, load_config
from melp.train.demo import demo_settings
from melp.train.pretrain import pretrain


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=704, help="simulated records (704: 22 steps of 32 an epoch)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    stage2 = apply_values(load_config("tiny"), demo_settings(quick=False)["stage2"])
    fs = stage2["model_overrides"]["preprocess"]["fs"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synth.export("ptbxl", tmp / "ptbxl", n=3 * args.records, seed=1)
        synth.export("mimic-iv-ecg", tmp / "mimic", n=args.records, seed=2)
        for r in range(args.rounds):
            for workers in (1, 2):
                seconds = timed(lambda: build_cache(get_adapter("ptbxl"), tmp / "ptbxl", tmp / "ptbxl-cache",
                                                    PreprocessConfig(fs=fs), workers=workers, overwrite=True,
                                                    progress=False))
                print(f"round {r + 1} caches, {3 * args.records} records, {workers} worker(s): {seconds:.1f} s", flush=True)

        build_cache(get_adapter("mimic-iv-ecg"), tmp / "mimic", tmp / "cache", PreprocessConfig(fs=fs), progress=False)
        stage2["data"]["cache"], stage2["data"]["val_split"] = str(tmp / "cache"), None
        stage2["trainer"]["max_epochs"] = 4
        for r in range(args.rounds):
            for cached in (False, True):
                cfg = copy.deepcopy(stage2)
                cfg["model_overrides"]["text"]["cache_frozen_states"] = cached
                cfg["output"]["dir"] = str(tmp / f"run-{r}-{cached}")
                seconds = timed(lambda: pretrain(cfg, progress=False))
                print(f"round {r + 1} stage 2, 4 epochs, text cache {'on ' if cached else 'off'}: {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()

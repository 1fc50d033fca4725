"""How long idle OpenMP threads spin, and what it costs the demo's training step, idle and busy.

    python bench/openmp_spin.py [--steps 8] [--rounds 2]

torch's CPU threads are GNU OpenMP's; an idle one spins ``GOMP_SPINCOUNT`` times (300,000 by
default) before it sleeps. ``import melp`` sets 10,000 unless the user set a value. Each setting runs
the demo's stage-2 step (bench/demo_step.py's model, shipped settings) in a fresh process, since
libgomp reads the variable once: first on the idle machine, then beside one busy-looping process
(another job on the same cores). Settings alternate; every round is printed (median s/step).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

SETTINGS = {  # name -> environment
    "default (300,000)": {"GOMP_SPINCOUNT": "300000"},
    "melp (10,000)": {"GOMP_SPINCOUNT": "10000"},
    "sleep at once (OMP_WAIT_POLICY=PASSIVE)": {"OMP_WAIT_POLICY": "PASSIVE"},
}


def child(steps: int) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from demo_step import build, timed_steps

    from melp.train.demo import demo_settings

    times = timed_steps(*build(demo_settings(quick=False)["stage2"]), steps)
    print(f"{times[len(times) // 2]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.steps)
    print(f"{os.cpu_count()} CPUs; median s/step of {args.steps} demo steps (batch 32) per run")
    for busy in (False, True):
        hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
        try:
            for r in range(args.rounds):
                for name, env in SETTINGS.items():
                    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
                    out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(args.steps)],
                                         env={**clean, **env}, capture_output=True, text=True, check=True)
                    print(f"{'one busy process' if busy else 'idle':<17} round {r + 1}  {name:<40} "
                          f"{out.stdout.strip().splitlines()[-1]} s/step")
        finally:
            if hog:
                hog.kill()


if __name__ == "__main__":
    main()

"""PhysioNet/CinC Challenge layout (as the CPSC2018 copy of 2020): gN/ANNNN.{hea,mat}.

MATLAB v4 'val' (12, T) int16 at 1000 units/mV, header comments #Age, #Sex, #Dx (SNOMED codes
of the findings, CPSC conventions: 426783006 marks a normal ECG), #Rx/#Hx/#Sx Unknown.
1000 records per folder g1, g2, ...
"""
from __future__ import annotations

from tqdm.auto import tqdm

from melp.data.leads import CANONICAL_LEADS
from melp.synth.exporters.wfdb_io import to_digital, write_mat
from melp.synth.findings import names_of, table
from melp.synth.simulate import CHUNK, iter_batches

GAIN = 1000.0
PER_FOLDER = 1000


def dx_codes(names: list[str]) -> list[str]:
    findings = table()["findings"]
    return list(dict.fromkeys(code for name in names for code in findings[name]["snomed"]))


def write(out, n: int, seed: int, progress: bool = False) -> None:
    bar = tqdm(total=n, desc="writing cinc", unit="ecg", disable=not progress)
    width = max(4, len(str(n)))
    for c, batch in enumerate(iter_batches(n, seed)):
        for j in range(len(batch)):
            index = c * CHUNK + j
            record = f"A{index + 1:0{width}d}"
            folder = out / f"g{index // PER_FOLDER + 1}"
            day = 1 + (index % 28)
            comments = [
                f"Age: {int(batch.age[j])}",
                f"Sex: {'Female' if batch.sex[j] else 'Male'}",
                f"Dx: {','.join(dx_codes(names_of(batch.findings[j])))}",
                "Rx: Unknown",
                "Hx: Unknown",
                "Sx: Unknown",
            ]
            write_mat(folder, record, to_digital(batch.signals[j], GAIN), batch.fs, f"{GAIN:.0f}/mV",
                      CANONICAL_LEADS, time_date=f"{day:02d}-May-2020 12:33:59", comments=comments)
            bar.update()
    bar.close()

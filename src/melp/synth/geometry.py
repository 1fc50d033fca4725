"""Lead vectors: how the heart's 3-D dipole projects onto the 12 standard leads.

Coordinates of the dipole: x = patient's left, y = inferior (towards the feet), z = anterior.
Leads I and II are independent frontal-plane vectors; III, aVR, aVL and aVF are *defined* from
them (Einthoven/Goldberger), so the limb-lead identities hold exactly for the dipole signal and
for any noise added to the recorded I and II channels. The chest leads are unipolar vectors in
the horizontal plane (tilted slightly downwards) with gains > 1: the electrodes sit closer to the
heart than the limb electrodes, and closer still to the ventricles, whose QRS they see with a
further near-field gain.
"""
from __future__ import annotations

import numpy as np

from melp.data.leads import CANONICAL_LEADS

# Chest lead direction in the horizontal plane (degrees from +x towards +z) and gain.
_CHEST = {  # angles of the usual horizontal-plane reference; gains fitted to LUDB's P and T waves
    "V1": (118.0, 1.75),  # (bench/synth_realism.py, in mV)
    "V2": (92.0, 3.3),
    "V3": (68.0, 2.8),
    "V4": (46.0, 2.15),
    "V5": (32.0, 1.65),
    "V6": (5.0, 1.2),
}
# The chest electrodes lie a few centimetres from the ventricular walls, so the QRS made in them
# reaches the chest leads larger, against the P and T, than a distant dipole's projection: in
# LUDB's ECGs chest R and S waves are about 1.3x what the gains above give when they fit the T.
NEAR_FIELD_QRS_GAIN = 1.3
_CHEST_TILT = 0.06  # small inferior component of every chest lead

LEAD_I = np.array([1.0, 0.0, 0.0])
LEAD_II = np.array([np.cos(np.radians(60)), np.sin(np.radians(60)), 0.0])

# The recorded (independent) channels: I, II, V1-V6. Noise is added to these.
RECORDED = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def _chest(name: str) -> np.ndarray:
    angle, gain = _CHEST[name]
    a = np.radians(angle)
    v = np.array([np.cos(a), _CHEST_TILT, np.sin(a)])
    return gain * v / np.linalg.norm(v)


RECORDED_VECTORS = np.stack([LEAD_I, LEAD_II, *[_chest(f"V{k}") for k in range(1, 7)]]).astype(np.float32)
RECORDED_QRS_VECTORS = RECORDED_VECTORS * np.array([1.0, 1.0] + [NEAR_FIELD_QRS_GAIN] * 6, np.float32)[:, None]

# 12 x 8 matrix from the recorded channels to the canonical 12 leads (exact identities).
_DERIVE = np.zeros((12, 8), dtype=np.float32)
for _row, _name in enumerate(CANONICAL_LEADS):
    if _name in RECORDED:
        _DERIVE[_row, RECORDED.index(_name)] = 1.0
_DERIVE[CANONICAL_LEADS.index("III"), :2] = (-1.0, 1.0)  # III = II - I
_DERIVE[CANONICAL_LEADS.index("aVR"), :2] = (-0.5, -0.5)  # aVR = -(I + II) / 2
_DERIVE[CANONICAL_LEADS.index("aVL"), :2] = (1.0, -0.5)  # aVL = I - II / 2
_DERIVE[CANONICAL_LEADS.index("aVF"), :2] = (-0.5, 1.0)  # aVF = II - I / 2
DERIVE = _DERIVE

# A QRS dipole -> 12 leads in one matrix (to measure QRS voltages on templates before placing them).
QRS_LEAD_VECTORS = (DERIVE @ RECORDED_QRS_VECTORS).astype(np.float32)


def derive_12(recorded: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(n, 8, T) recorded channels (I, II, V1-V6) -> (n, 12, T) canonical leads (into out if given)."""
    n, _, t = recorded.shape
    if out is None:
        out = np.empty((n, 12, t), dtype=np.float32)
    i, ii = recorded[:, 0], recorded[:, 1]
    out[:, 0] = i
    out[:, 1] = ii
    np.subtract(ii, i, out=out[:, 2])  # III = II - I
    np.multiply(np.add(i, ii, out=out[:, 3]), -0.5, out=out[:, 3])  # aVR = -(I + II) / 2
    np.subtract(i, 0.5 * ii, out=out[:, 4])  # aVL = I - II / 2
    np.subtract(ii, 0.5 * i, out=out[:, 5])  # aVF = II - I / 2
    out[:, 6:] = recorded[:, 2:]
    return out


def project(matrix: np.ndarray, dipole: np.ndarray) -> np.ndarray:
    """(L, 3) lead vectors applied to (n, 3, T) dipole signals -> (n, L, T) float32."""
    return np.matmul(np.asarray(matrix, dtype=np.float32), dipole.astype(np.float32, copy=False))


def frontal_axis(lead_i, lead_avf):
    """Frontal-plane axis in degrees from net deflections in I and aVF (hexaxial convention)."""
    return np.degrees(np.arctan2(np.asarray(lead_avf) * 2.0 / np.sqrt(3.0), np.asarray(lead_i)))


def unit(*xyz) -> np.ndarray:
    v = np.stack(np.broadcast_arrays(*np.asarray(xyz, dtype=object)), axis=-1).astype(np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)

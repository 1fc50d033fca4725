"""The beat model: 12-lead ECGs from a 3-D heart dipole made of Gaussian bumps.

One beat is a sum of K Gaussian bumps in time (P, septal q, R, S, R', delta wave, infarct Q,
ST shift, two for the asymmetric T, pacing spike, the left atrium's late P, a J wave), each with a 3-D direction and amplitude.
For every ECG we render up to three beat templates (conducted, premature atrial, premature
ventricular) straight into the recorded channels I, II, V1-V6 (8, W) (the QRS's bumps with the
chest leads' near-field gain), place them at the beat times (the k-th beats of all ECGs of a
batch at once), add atrial activity (fibrillation or flutter waves, projected), add noise, and
derive III, aVR, aVL and aVF exactly (``geometry.derive_12``).

Findings act on parameters: rate and RR pattern (rhythms), PR (AV block, WPW), which bumps
exist and where they point (bundle branch blocks, infarcts, axis), amplitudes (LVH, low
voltage, T flattening), QT. QRS voltages are then calibrated on the rendered template so that
voltage findings (LVH, low voltage) are present exactly when they are labelled.
"""
from __future__ import annotations

import numpy as np

from melp.data.leads import CANONICAL_LEADS
from melp.synth import geometry as geo
from melp.synth.findings import INDEX

FS = 500
SECONDS = 10.0
N_SAMPLES = int(FS * SECONDS)
PRE_MS, POST_MS = 460.0, 780.0  # template window around QRS onset
PRE = int(PRE_MS * FS / 1000)
W = PRE + int(POST_MS * FS / 1000)
T_MS = ((np.arange(W) - PRE) * 1000.0 / FS).astype(np.float32)
MAX_BEATS = 48

# Bump indices.
P, QS, R, S, RP, DELTA, IQ, ST, T1, T2, SPIKE, P2, J = range(13)
K = 13
P_BUMPS = [P, P2]  # right then left atrial depolarisation
QRS_BUMPS = [QS, R, S, RP, DELTA, IQ]
NON_QRS_BUMPS = [k for k in range(K) if k not in QRS_BUMPS]  # the chest leads see these without near-field gain
LV_BUMPS = [QS, R, S]  # the left ventricle's own forces, which hypertrophy grows
LVH_PEAK_MV = 5.0  # about the tallest QRS deflection hypertrophy gives any lead
LVH_SOKOLOW_MIN = 3.7  # a Sokolow-Lyon index clearly above the 3.5 mV criterion
LEAD = {name: i for i, name in enumerate(CANONICAL_LEADS)}
MIN_NET_AXIS = 0.3  # least net QRS area along the axis, as a share of R's: a clearly defined axis


def _has(findings: np.ndarray, name: str) -> np.ndarray:
    return findings[:, INDEX[name]]


# Rhythms whose beat template has no P wave before the QRS, so no PR: no atrial depolarisation
# (fibrillation, flutter, ventricular pacing) or P waves that conduct to no QRS (complete AV block,
# whose P waves come with the atrial activity)
NO_PR_RHYTHMS = ("AFIB", "AFLT", "PACE", "3AVB")


def without_pr(findings: np.ndarray) -> np.ndarray:
    """(n,) bool: the ECGs whose rhythm is one of NO_PR_RHYTHMS."""
    return findings[:, [INDEX[name] for name in NO_PR_RHYTHMS]].any(1)


def _frontal(axis_deg, z):
    """Unit vectors with frontal angle axis_deg (0 = left, 90 = inferior) and anterior part z."""
    a = np.radians(axis_deg)
    v = np.stack([np.cos(a), np.sin(a), np.broadcast_to(z, np.shape(a))], axis=-1)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------------
# Subjects: anatomy and baseline physiology that stay with a person across recordings.


def sample_subjects(m: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    sex = rng.integers(0, 2, m)  # 0 male, 1 female (PTB-XL convention)
    age = np.clip(rng.normal(60, 16, m), 18, 95).round().astype(int)
    return {
        "sex": sex,
        "age": age,
        "hr": np.clip(rng.normal(67, 8, m), 58, 98),
        "pr": np.clip(rng.normal(154, 20, m), 122, 196),
        "qrsd": np.clip(rng.normal(90, 7, m), 76, 104),
        "qtc": np.clip(rng.normal(398 + 10 * sex, 14, m), 370, 440),
        # frontal QRS axis (degrees): normal adults span horizontal (-30 to +30) to vertical (+60 to
        # +90), turning leftwards with age; the ends are kept clear of the axis-deviation findings
        "axis": np.clip(rng.normal(45 - 0.4 * (age - 60), 25, m), -25, 88),
        "post": np.clip(rng.normal(-0.08, 0.1, m), -0.28, 0.15),  # anterior (+) / posterior (-) part of the main R vector
        "habitus": np.exp(rng.normal(-0.05 * sex, 0.16, m)),  # overall voltage (chest wall, body size)
        "p_amp": rng.uniform(0.1, 0.2, m),
        "p_axis": np.clip(rng.normal(55, 12, m), 20, 80),
        "t_amp": rng.uniform(0.26, 0.45, m),
        "t_axis_off": rng.normal(0, 12, m),
        "s_amp": rng.uniform(0.21, 0.4, m),
    }


def assign_subjects(n: int, rng: np.random.Generator) -> np.ndarray:
    """Local subject index for each of n ECGs: 1-6 recordings per subject (mostly 1-3)."""
    counts = np.minimum(rng.geometric(0.45, n), 6)
    owner = np.repeat(np.arange(n), counts)[:n]
    return owner


# ---------------------------------------------------------------------------------------------
# ECG parameters: the subject's values, jittered, then changed by the findings.


def ecg_parameters(findings: np.ndarray, subj: dict, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = len(findings)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    has = lambda name: _has(findings, name)  # noqa: E731

    hr = np.clip(subj["hr"] + rng.normal(0, 4, n), 61, 99)
    hr = np.where(has("STACH"), u(103, 145), hr)
    hr = np.where(has("SBRAD"), u(40, 56), hr)
    hr = np.where(has("SARRH"), np.clip(subj["hr"] - 8 + rng.normal(0, 4, n), 55, 85), hr)
    hr = np.where(has("AFIB"), u(65, 150), hr)
    flutter_rate = u(260, 320)
    flutter_ratio = rng.choice([2, 3, 4], n, p=[0.5, 0.15, 0.35])
    hr = np.where(has("AFLT"), flutter_rate / flutter_ratio, hr)
    hr = np.where(has("PACE"), u(60, 80), hr)
    # complete AV block: the sinus node goes on at its own rate, the ventricles follow a junctional escape
    atrial_rate = np.where(has("3AVB"), np.clip(subj["hr"] + rng.normal(4, 6, n), 60, 95), hr)
    hr = np.where(has("3AVB"), u(35, 50), hr)
    rr = 60.0 / hr

    pr = subj["pr"] + rng.normal(0, 5, n) - np.where(has("STACH"), 12, 0)
    # first-degree block over its whole range: most just above 200 ms, a tail to 330 ms (as in
    # clinical series); a normal PR reaches 198 ms, so the label follows the interval (the 12 ms
    # between them is about one sample at the demo's 100 Hz)
    pr = np.where(has("1AVB"), 210 + 120 * rng.beta(1.3, 2.6, n), np.clip(pr, 121, 198))
    pr = np.where(has("WPW"), u(90, 116), pr)
    pr = np.where(has("LAE"), np.maximum(pr, u(168, 190)), pr)  # room for the long P before the QRS
    # a wide QRS lengthens the QT; a labelled long QT is the QTc as read, whatever the QRS
    wide = has("LBBB") | has("PACE") | has("RBBB") | has("WPW")
    qtc = np.clip(subj["qtc"] + rng.normal(0, 5, n), 370, 448) + np.where(wide, 20.0, 0.0)
    qtc = np.where(has("LNGQT"), u(500, 580), qtc)
    qrsd = np.clip(subj["qrsd"] + rng.normal(0, 3, n), 76, 106)
    # a hypertrophied left ventricle takes longer to depolarise (QRS up to about 110 ms) and turns
    # the axis leftwards (grown along a near-vertical axis its forces would also pass 8 mV inferiorly)
    qrsd = np.where(has("LVH"), np.clip(qrsd + u(6, 14), 76, 112), qrsd)
    axis = subj["axis"] + rng.normal(0, 4, n)
    axis = np.where(has("LVH"), np.minimum(axis, u(0, 50)), axis)
    axis = np.where(has("LAD"), u(-42, -34), axis)
    axis = np.where(has("LAFB"), u(-78, -55), axis)
    axis = np.where(has("RAD"), u(100, 140), axis)

    return {
        "hr": hr, "rr": rr, "atrial_rate": atrial_rate, "pr": pr, "qtc": qtc, "qrsd": qrsd, "axis": axis,
        "flutter_rate": flutter_rate, "flutter_ratio": flutter_ratio,
        "sarrh": has("SARRH"),
    }


def conducted_bumps(findings, subj, prm, rng):
    """Bump parameters (mu ms, sd ms, amp, direction) of the conducted beat, per ECG."""
    n = len(findings)
    u = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    has = lambda name: _has(findings, name)  # noqa: E731
    mu = np.zeros((n, K))
    sd = np.ones((n, K))
    amp = np.zeros((n, K))
    dirs = np.zeros((n, K, 3))
    dirs[..., 0] = 1.0

    s = prm["qrsd"] / 90.0  # time scale of the normal QRS
    # a hypertrophied left ventricle turns the main vector posterior: deep S in V1-V3
    main = _frontal(prm["axis"], np.where(has("LVH"), u(-0.8, -0.4), subj["post"]))
    scale = subj["habitus"]

    # P wave: atrial depolarisation, ending at onset of QRS minus a short PQ segment.
    sd[:, P] = np.where(has("WPW"), u(14, 16), u(18, 23))  # WPW: the P ends where the delta wave starts
    amp[:, P] = subj["p_amp"]
    dirs[:, P] = _frontal(subj["p_axis"], 0.15)
    lae, rae = has("LAE"), has("RAE")
    if rae.any():  # P pulmonale: tall, peaked, vertical P (right atrium)
        amp[rae, P] = u(0.29, 0.38)[rae]  # >= 0.25 mV in II whatever its angle
        sd[rae, P] = u(14, 17)[rae]
        dirs[rae, P] = _frontal(u(68, 82)[rae], 0.35)
    mu[:, P] = -prm["pr"] + 2.4 * sd[:, P]  # P onset at -PR, whatever its width
    if lae.any():  # P mitrale: a late left-atrial part, leftward and posterior: notched P in II,
        # P >= 120 ms, deep terminal negative P in V1
        amp[lae, P2] = (subj["p_amp"] * u(0.9, 1.3))[lae]
        sd[lae, P2] = u(17, 21)[lae]
        mu[lae, P2] = mu[lae, P] + u(42, 55)[lae]
        dirs[lae, P2] = _frontal(u(15, 45)[lae], u(-0.9, -0.6)[lae])
    amp[np.ix_(without_pr(findings), P_BUMPS)] = 0.0

    # Normal ventricular depolarisation: septal (left to right, anterior), main, terminal.
    mu[:, QS], sd[:, QS], amp[:, QS] = 11 * s, 6 * s, u(0.11, 0.21) * scale
    dirs[:, QS] = geo.unit(-0.6, 0.2, 0.4)
    # R and S as narrow as real ones: their steep slopes carry the QRS's 15-40 Hz power
    mu[:, R], sd[:, R], amp[:, R] = 38 * s, 8.5 * s, u(1.09, 1.54) * scale
    dirs[:, R] = main
    mu[:, S], sd[:, S], amp[:, S] = 71 * s, 7 * s, subj["s_amp"] * scale
    dirs[:, S] = geo.unit(0.0, -0.4, -0.8)
    qrs_end = (71 + 2.3 * 7) * s

    # Repolarisation: T roughly along the main QRS vector but anterior; slow up, fast down.
    t_dir = _frontal(prm["axis"] * 0.3 + 28 + subj["t_axis_off"], 0.35)
    t_amp = subj["t_amp"] * np.sqrt(scale)
    mu[:, ST], sd[:, ST] = 0.0, 40.0
    dirs[:, ST] = t_dir

    lbbb, rbbb, wpw, pace = has("LBBB"), has("RBBB"), has("WPW"), has("PACE")
    if lbbb.any():  # no septal q, broad notched R leftwards-posterior, discordant ST-T
        w = u(135, 165)[lbbb] / 150.0
        amp[lbbb, QS] = 0
        mu[lbbb, R], sd[lbbb, R], amp[lbbb, R] = 52 * w, 20 * w, u(1.3, 1.8)[lbbb] * scale[lbbb]
        dirs[lbbb, R] = geo.unit(0.72, 0.2, -0.66)
        mu[lbbb, RP], sd[lbbb, RP], amp[lbbb, RP] = 104 * w, 19 * w, u(0.9, 1.3)[lbbb] * scale[lbbb]
        dirs[lbbb, RP] = geo.unit(0.85, 0.15, -0.5)
        amp[lbbb, S] = 0
        qrs_end[lbbb] = (104 + 2.3 * 19) * w
    if rbbb.any():  # normal start, late rightward-anterior R' and broad S in I/V6
        width = u(142, 168)[rbbb]
        sd[rbbb, RP] = 15.0
        mu[rbbb, RP] = width - 2.2 * 15.0
        amp[rbbb, RP] = u(0.45, 0.7)[rbbb] * scale[rbbb]
        dirs[rbbb, RP] = geo.unit(-0.6, 0.05, 0.8)
        sd[rbbb, S] = 14 * s[rbbb]
        mu[rbbb, S] = 70 * s[rbbb]
        qrs_end[rbbb] = width
    irbbb = has("IRBBB")
    if irbbb.any():  # incomplete: a small late R' in V1 (rSr'), QRS still under 120 ms
        width = u(100, 116)[irbbb]
        sd[irbbb, RP] = 11.0
        mu[irbbb, RP] = width - 2.2 * 11.0
        amp[irbbb, RP] = u(0.2, 0.32)[irbbb] * scale[irbbb]
        dirs[irbbb, RP] = geo.unit(-0.35, 0.1, 0.93)
        qrs_end[irbbb] = width
    if wpw.any():  # early slurred delta wave, the rest of the QRS later; secondary T changes
        d = 47.0
        # the delta wave starts the QRS (its onset at t = 0, as every QRS's): PR and QRS read from it
        mu[wpw, DELTA], sd[wpw, DELTA], amp[wpw, DELTA] = 2.3 * 16.0, 16.0, u(0.35, 0.55)[wpw] * scale[wpw]
        dirs[wpw, DELTA] = geo.unit(0.6, 0.4, 0.7)
        amp[wpw, QS] = 0
        mu[wpw, R] += d
        mu[wpw, S] += d
        qrs_end[wpw] += d
        t_amp = np.where(wpw, t_amp * 0.5, t_amp)
    if pace.any():  # right-ventricular apical pacing: spike, then wide LBBB-like QRS, superior axis
        w = u(150, 180)[pace] / 160.0
        amp[pace, QS] = 0
        mu[pace, R], sd[pace, R], amp[pace, R] = 55 * w, 22 * w, u(1.1, 1.5)[pace] * scale[pace]
        dirs[pace, R] = geo.unit(0.4, -0.65, -0.65)
        mu[pace, RP], sd[pace, RP], amp[pace, RP] = 105 * w, 22 * w, u(0.9, 1.3)[pace] * scale[pace]
        dirs[pace, RP] = geo.unit(0.8, -0.3, -0.5)
        amp[pace, S] = 0
        qrs_end[pace] = (105 + 2.4 * 22) * w
        mu[pace, SPIKE], sd[pace, SPIKE], amp[pace, SPIKE] = -4.0, 1.0, u(0.7, 1.6)[pace]
        dirs[pace, SPIKE] = geo.unit(0.3, 0.6, 0.75)
    if has("LAFB").any():  # initial inferior-rightward forces: q in I/aVL, r in II/III/aVF
        m = has("LAFB")
        dirs[m, QS] = geo.unit(-0.45, 0.8, 0.3)
        amp[m, QS] = u(0.19, 0.31)[m] * scale[m]

    secondary = lbbb | pace  # repolarisation opposite to the (abnormal) depolarisation
    if secondary.any():
        opp = -dirs[secondary, R]
        t_dir[secondary] = opp
        t_amp = np.where(secondary, u(0.3, 0.5) * np.sqrt(scale), t_amp)
        dirs[secondary, ST] = opp
        amp[secondary, ST] = u(0.08, 0.16)[secondary]
    if rbbb.any():  # T inverted in V1-V3 (posterior repolarisation of the right ventricle)
        t_dir[rbbb] = _frontal(prm["axis"][rbbb] * 0.6 + 20, -0.35)

    # Infarcts: an early vector pointing away from the dead wall (Q waves there), T inverted there.
    away = np.zeros((n, 3))
    for name, vec in (("IMI", (0.05, -1.0, 0.05)), ("AMI", (0.1, 0.05, -1.0)), ("LMI", (-1.0, 0.15, 0.1))):
        away += has(name)[:, None] * geo.unit(*vec)
    mi = np.linalg.norm(away, axis=1) > 0
    if mi.any():
        dirs[mi, IQ] = away[mi] / np.linalg.norm(away[mi], axis=1, keepdims=True)
        mu[mi, IQ], sd[mi, IQ] = 20.0, 12.0
        amp[mi, IQ] = u(0.72, 1.08)[mi] * scale[mi]  # about 0.7 of the normal R (1.09-1.54)
        amp[has("AMI"), IQ] *= 0.6  # the anterior chest leads, nearest to it, see it 2-3x larger
        amp[has("AMI"), QS] *= 0.2  # septal necrosis: the septal r of V1-V2 is lost
        t_dir[mi] = t_dir[mi] + 1.3 * dirs[mi, IQ]
        t_dir[mi] /= np.linalg.norm(t_dir[mi], axis=1, keepdims=True)

    # Primary repolarisation findings.
    if has("INVT").any():
        m = has("INVT")
        td = t_dir[m]
        t_dir[m] = geo.unit(-np.abs(td[:, 0]) - 0.3, 0.25 * td[:, 1], -np.abs(td[:, 2]) - 0.2)
        t_amp = np.where(m, u(0.25, 0.45), t_amp)
    t_amp = np.where(has("NST"), u(0.03, 0.08), t_amp)
    erp = has("ERP")
    if erp.any():  # early repolarisation: J-point notch, concave ST elevation in V2-V5 and inferior
        # leads, tall T; the benign mimic of an injury current
        mu[erp, J], sd[erp, J], amp[erp, J] = qrs_end[erp] - 4.0, 7.0, u(0.08, 0.18)[erp]
        dirs[erp, J] = _frontal(u(40, 70)[erp], 0.3)
        dirs[erp, ST] = _frontal(u(45, 70)[erp], u(0.5, 0.9)[erp])
        amp[erp, ST] = u(0.12, 0.25)[erp]
        t_amp = np.where(erp, t_amp * u(1.2, 1.5), t_amp)
    if has("STD").any():
        m = has("STD")
        dirs[m, ST] = geo.unit(-0.75, -0.45, -0.5)
        amp[m, ST] = u(0.17, 0.32)[m]

    # LVH: bigger voltages (calibrated later), a strain pattern in half, lower T waves in the others
    lvh = has("LVH")
    strain = lvh & (rng.random(n) < 0.5)
    t_amp = np.where(lvh & ~strain, t_amp * u(0.45, 0.85), t_amp)
    if strain.any():
        t_dir[strain] = -dirs[strain, R]
        t_amp = np.where(strain, u(0.2, 0.35), t_amp)
        dirs[strain, ST] = -dirs[strain, R]
        amp[strain, ST] = u(0.06, 0.12)[strain]

    sd[:, T2] = u(26, 34)
    t_peak = prm["qt"] - 2.6 * sd[:, T2]
    mu[:, T2], amp[:, T2] = t_peak, 0.7 * t_amp
    sd[:, T1] = 1.5 * sd[:, T2]  # the slow upstroke; it ends with the T2 downstroke, at QT
    mu[:, T1], amp[:, T1] = t_peak - 1.4 * sd[:, T2], 0.55 * t_amp
    dirs[:, T1] = dirs[:, T2] = t_dir
    mu[:, ST] = np.where(amp[:, ST] > 0, qrs_end + np.where(erp, 35.0, 55.0), 0.0)
    sd[:, ST] = np.where(amp[:, ST] > 0, 38.0, 40.0)

    return {"mu": mu, "sd": sd, "amp": amp, "dir": dirs, "qrs_end": qrs_end, "qt": prm["qt"]}


def pac_bumps(beat, findings, rng):
    """Premature atrial beat: a differently shaped (low atrial, superior) P, same QRS."""
    n = len(findings)
    out = {k: v.copy() for k, v in beat.items()}
    out["dir"][:, P] = _frontal(rng.uniform(-70, -20, n), 0.3)
    out["amp"][:, P] = rng.uniform(0.08, 0.16, n)
    out["amp"][:, P2] = 0.0  # one ectopic focus, one simple P
    out["mu"][:, P] = out["mu"][:, P] + rng.uniform(10, 40, n)  # shorter PR
    return out


def pvc_bumps(beat, findings, rng):
    """Premature ventricular beat: no P, wide bizarre QRS from an ectopic focus, discordant T."""
    n = len(findings)
    out = {k: v.copy() for k, v in beat.items()}
    out["amp"][:, [P, P2, QS, S, RP, DELTA, IQ, SPIKE, J]] = 0.0
    # a ventricular focus is never purely frontal: its wide complex is seen in the chest leads too
    focus = _frontal(rng.uniform(-100, 110, n), rng.choice([-1.0, 1.0], n) * rng.uniform(0.35, 0.9, n))
    out["mu"][:, R], out["sd"][:, R] = 62.0, rng.uniform(22, 28, n)
    out["amp"][:, R] = rng.uniform(1.8, 2.8, n)
    out["dir"][:, R] = focus
    out["mu"][:, RP], out["sd"][:, RP], out["amp"][:, RP] = 110.0, 18.0, rng.uniform(0.3, 0.6, n)
    out["dir"][:, RP] = focus
    out["dir"][:, [T1, T2, ST]] = -focus[:, None, :]
    out["amp"][:, [T1, T2]] = rng.uniform(0.25, 0.4, (n, 1)) * np.array([0.55, 0.7])
    out["mu"][:, [T1, T2]] += 40.0
    out["amp"][:, ST] = 0.1
    out["mu"][:, ST], out["sd"][:, ST] = 200.0, 40.0
    # its tallest deflection, wherever the focus points: 2-4.5 mV (the chest leads see it nearest)
    tallest = np.abs(_leads(out, [R, RP])).max((1, 2))
    out["amp"][:, [R, RP]] *= (rng.uniform(2.0, 4.5, n) / np.maximum(tallest, 1e-3))[:, None]
    return out


def render(bumps, groups=None) -> np.ndarray:
    """Dipole template (n, 3, W) as the sum of the Gaussian bumps; groups selects bump indices."""
    ks = list(range(K)) if groups is None else list(groups)
    mu = bumps["mu"][:, ks, None].astype(np.float32)
    sd = bumps["sd"][:, ks, None].astype(np.float32)
    g = np.exp(-0.5 * np.square((T_MS[None, None, :] - mu) / sd))
    vec = (bumps["amp"][:, ks, None] * bumps["dir"][:, ks, :]).astype(np.float32)
    return np.matmul(vec.transpose(0, 2, 1), g)  # (n, 3, K) @ (n, K, W)


def render_leads(bumps) -> np.ndarray:
    """Template (n, 8, W) in the recorded channels I, II, V1-V6: the QRS bumps with the chest
    leads' near-field gain, the rest as the dipole projects."""
    return (geo.project(geo.RECORDED_QRS_VECTORS, render(bumps, QRS_BUMPS))
            + geo.project(geo.RECORDED_VECTORS, render(bumps, NON_QRS_BUMPS)))


def calibrate_axis(bumps, findings, prm) -> None:
    """Point the main R vector so that the QRS axis measured on the template is the intended one.

    The axis a reader measures (net QRS area in I and aVF) differs from the direction of the
    main bump because the septal, terminal and infarct forces add to it; axis-defined findings
    (LAD, LAFB) need the measured value in their range. Wide-QRS rhythms keep their own axis.

    The net frontal area is linear in the R vector, so R is solved for in closed form: the other
    forces' area F plus R's (length A, any angle) must lie on the ray at the target angle. Where
    turning R cannot reach that ray (F outweighs A across it, or points against it), R is
    lengthened just enough for a net area of MIN_NET_AXIS * A along it.
    """
    keep = _has(findings, "LBBB") | _has(findings, "PACE") | _has(findings, "WPW")
    # an infarct's own vector moves the axis, as it does in patients (unless the axis is the finding)
    infarct = _has(findings, "IMI") | _has(findings, "AMI") | _has(findings, "LMI")
    keep |= infarct & ~(_has(findings, "LAD") | _has(findings, "LAFB") | _has(findings, "RAD"))
    rows = np.flatnonzero(~keep)
    if not rows.size:
        return
    sub = {k: v[rows] for k, v in bumps.items()}
    others = _frontal_area(sub, [k for k in range(K) if k != R])  # T and ST tails in the window count too
    reach = np.linalg.norm(_frontal_area(sub, [R]), axis=1)
    target = np.radians(prm["axis"][rows])
    ray = np.stack([np.cos(target), np.sin(target)], axis=1)
    along = (others * ray).sum(1)
    across = others[:, 1] * ray[:, 0] - others[:, 0] * ray[:, 1]
    net = np.maximum(along + np.sqrt(np.maximum(reach**2 - across**2, 0.0)), MIN_NET_AXIS * reach)
    r_area = net[:, None] * ray - others  # R's frontal area that puts the net area on the ray
    r_dir = sub["dir"][:, R]
    z = r_dir[:, 2] / np.linalg.norm(r_dir[:, :2], axis=1)  # its anterior part is kept
    bumps["dir"][rows, R] = _frontal(np.degrees(np.arctan2(r_area[:, 1], r_area[:, 0])), z)
    bumps["amp"][rows, R] *= np.linalg.norm(r_area, axis=1) / reach  # 1 wherever turning sufficed


def _frontal_area(bumps, ks) -> np.ndarray:
    """Net frontal (x, y) dipole area of bumps ks over the QRS window, i.e. leads I and aVF * 2/sqrt(3): (n, 2)."""
    mu, sd = (bumps[key][:, ks, None].astype(np.float32) for key in ("mu", "sd"))
    g = np.exp(-0.5 * np.square((T_MS - mu) / sd))
    win = ((T_MS >= 0) & (T_MS < bumps["qrs_end"][:, None])).astype(np.float32)
    area = np.matmul(g, win[:, :, None])[..., 0] * bumps["amp"][:, ks]
    return (area[..., None] * bumps["dir"][:, ks, :2]).sum(1)


def calibrate_voltage(bumps, findings, rng) -> None:
    """Scale QRS bumps so that voltage findings hold exactly when labelled (in place).

    Measured on the template projected to 12 leads: Sokolow-Lyon (max S in V1/V2 + max R in V5/V6),
    R in aVL, peak-to-peak in limb and chest leads. LVH is grown by ``hypertrophy_factor``.
    """
    n = len(findings)
    qrs = _leads(bumps, QRS_BUMPS)
    sokolow = _sokolow(qrs)
    ravl = qrs[:, LEAD["aVL"]].max(1)
    p2p = qrs.max(2) - qrs.min(2)
    limb, chest = p2p[:, :6].max(1), p2p[:, 6:].max(1)

    limb, chest, sokolow = (np.maximum(v, 1e-3) for v in (limb, chest, sokolow))
    lo = np.maximum(0.6 / limb, 1.15 / chest)  # clearly not low voltage
    hi = np.minimum(3.3 / sokolow, 1.0 / np.maximum(ravl, 1e-3))  # clearly no LVH voltage
    factor = np.clip(1.0, lo, np.maximum(lo, hi))
    lvh = _has(findings, "LVH")
    factor = np.where(lvh, 1.0, factor)  # grown below, through the left ventricle's forces alone
    sokolow_target = rng.uniform(3.9, 5.2, n)
    low = _has(findings, "LVOLT")
    factor = np.where(low, np.minimum(rng.uniform(0.28, 0.42, n) / limb, rng.uniform(0.65, 0.85, n) / chest), factor)
    wide = _has(findings, "LBBB") | _has(findings, "PACE")
    factor = np.where(wide & ~low, np.clip(factor, 0.6, 1.3), factor)
    bumps["amp"][:, QRS_BUMPS] *= factor[:, None]
    if lvh.any():
        grow = hypertrophy_factor({k: v[lvh] for k, v in bumps.items()}, sokolow_target[lvh])
        bumps["amp"][np.ix_(lvh, LV_BUMPS)] *= grow[:, None]
    if low.any():  # low-voltage ECGs have small P and T too
        bumps["amp"][np.ix_(low, [P, T1, T2])] *= 0.6


def hypertrophy_factor(bumps, target) -> np.ndarray:
    """Factor on the left ventricle's own forces (LV_BUMPS) that brings Sokolow-Lyon to target mV.

    The rest of the QRS (an infarct's vector, RBBB's right-ventricular R') does not hypertrophy.
    A factor of target / Sokolow grows without bound where the template has little S in V1 and
    R in V5/V6, so the target gives way where the tallest lead would pass LVH_PEAK_MV, though
    never below LVH_SOKOLOW_MIN: the label always holds. f is found by bisection between 1 and
    a factor that surely reaches the goal.
    """
    lv, rest = _leads(bumps, LV_BUMPS), _leads(bumps, [k for k in QRS_BUMPS if k not in LV_BUMPS])
    ceiling = (LVH_PEAK_MV - np.abs(rest).max((1, 2))) / np.abs(lv).max((1, 2))
    goal = np.clip(_sokolow(ceiling[:, None, None] * lv + rest), LVH_SOKOLOW_MIN, target)
    # the rest takes at most its highest V1/V2 and its deepest V5/V6 off f * Sokolow(LV)
    slack = rest[:, [LEAD["V1"], LEAD["V2"]]].max((1, 2)) - rest[:, [LEAD["V5"], LEAD["V6"]]].min((1, 2))
    lo = np.ones(len(lv))
    hi = np.maximum((goal + slack) / np.maximum(_sokolow(lv), 1e-3), lo)
    for _ in range(30):
        mid = (lo + hi) / 2
        reached = _sokolow(mid[:, None, None] * lv + rest) >= goal
        lo, hi = np.where(reached, lo, mid), np.where(reached, mid, hi)
    return np.where(_sokolow(lv + rest) >= goal, 1.0, hi)


def _leads(bumps, ks) -> np.ndarray:
    """The 12 leads (n, 12, W) of QRS bumps ks of the template."""
    return geo.project(geo.QRS_LEAD_VECTORS, render(bumps, ks))


def _sokolow(leads) -> np.ndarray:
    """Sokolow-Lyon index (mV), in its common form: the deeper S of V1 and V2 plus the taller R of
    V5 and V6 (V2's S is the deeper one when the forces turn posterior, as in hypertrophy)."""
    return -leads[:, [LEAD["V1"], LEAD["V2"]]].min((1, 2)) + leads[:, [LEAD["V5"], LEAD["V6"]]].max((1, 2))


# ---------------------------------------------------------------------------------------------
# Rhythm: beat times and beat types.


def beat_schedule(findings, prm, rng):
    """Beat onset times (n, MAX_BEATS) in seconds and types (0 conducted, 1 PAC, 2 PVC)."""
    n = len(findings)
    rr0 = prm["rr"][:, None]
    b = np.arange(MAX_BEATS)[None, :]
    resp_f = rng.uniform(0.2, 0.33, (n, 1))
    resp_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    resp_amp = np.where(prm["sarrh"], rng.uniform(0.1, 0.17, n), rng.uniform(0.005, 0.02, n))[:, None]
    jitter = rng.uniform(0.004, 0.015, (n, 1))
    sinus = rr0 * (1 + jitter * rng.standard_normal((n, MAX_BEATS)))
    sinus *= 1 + resp_amp * np.sin(2 * np.pi * resp_f * b * rr0 + resp_phase)

    af = _has(findings, "AFIB")[:, None]
    af_rr = rr0 * np.exp(rng.uniform(0.16, 0.3, (n, 1)) * rng.standard_normal((n, MAX_BEATS)))
    af_rr = np.maximum(af_rr / np.exp(0.5 * 0.23**2), 0.3)
    fixed = (_has(findings, "AFLT") | _has(findings, "PACE") | _has(findings, "3AVB"))[:, None]
    intervals = np.where(af, af_rr, np.where(fixed, rr0, sinus))

    # Premature beats: at least one of each labelled kind inside the 10 s, sometimes more.
    types = np.zeros((n, MAX_BEATS), dtype=np.int8)
    visible = np.maximum((SECONDS / prm["rr"]).astype(int), 4)
    first = 2 + (rng.random(n) * np.maximum(visible // 2 - 2, 1)).astype(int)
    second = first + 2 + (rng.random(n) * np.maximum(visible - first - 3, 1)).astype(int)
    pac, pvc = _has(findings, "PAC"), _has(findings, "PVC")
    rows = np.arange(n)
    types[rows[pvc], first[pvc]] = 2
    only_pac = pac & ~pvc
    types[rows[only_pac], first[only_pac]] = 1
    both = pac & pvc
    types[rows[both], second[both]] = 1
    extra = (rng.random((n, MAX_BEATS)) < 0.07) & (b >= 2)
    kind = np.where(pvc[:, None] & (~pac[:, None] | (rng.random((n, MAX_BEATS)) < 0.5)), 2, 1)
    extra &= (pac | pvc)[:, None]
    types = np.where(extra & (types == 0), kind, types).astype(np.int8)
    # never two premature beats in a row
    prev = np.concatenate([np.zeros((n, 1), np.int8), types[:, :-1]], axis=1)
    types = np.where(prev > 0, 0, types).astype(np.int8)

    coupling = np.where(types == 2, rng.uniform(0.55, 0.7, (n, 1)), rng.uniform(0.6, 0.78, (n, 1)))
    premature = types > 0
    after = np.concatenate([np.zeros((n, 1), bool), premature[:, :-1]], axis=1)
    after_pvc = np.concatenate([np.zeros((n, 1), bool), types[:, :-1] == 2], axis=1)
    prev_coupling = np.concatenate([np.ones((n, 1)), coupling[:, :-1]], axis=1)
    iv = np.where(premature, coupling * rr0, intervals)
    # compensatory pause after a PVC (sinus node undisturbed), reset after a PAC
    iv = np.where(after & after_pvc, (2 - prev_coupling) * rr0, iv)
    iv = np.where(after & ~after_pvc, rr0 * rng.uniform(1.0, 1.12, (n, 1)), iv)
    start = -rng.uniform(0.05, 1.0, (n, 1)) * rr0
    times = start + np.cumsum(iv, axis=1)
    return times, types


def mean_rr(times, rr) -> np.ndarray:
    """The RR interval (s) a reader measures: the mean over the beats inside the 10 s (rr if < 2)."""
    in_view = (times >= 0) & (times < SECONDS)
    count = in_view.sum(1)
    first = np.where(in_view, times, np.inf).min(1)
    last = np.where(in_view, times, -np.inf).max(1)
    return np.where(count > 1, (last - first) / np.maximum(count - 1, 1), rr)


# ---------------------------------------------------------------------------------------------
# Atrial activity between beats.


def atrial_waves(findings, prm, times, rng):
    """Rows with atrial activity of their own, and its dipole waveforms (rows, 3, T): fibrillation (f)
    or flutter (F) waves, or the P waves that complete AV block leaves unconducted."""
    rows = np.flatnonzero(_has(findings, "AFIB") | _has(findings, "AFLT") | _has(findings, "3AVB"))
    out = np.zeros((rows.size, 3, N_SAMPLES), dtype=np.float32)
    t = np.arange(N_SAMPLES, dtype=np.float32) / FS
    af = np.flatnonzero(_has(findings[rows], "AFIB"))
    if af.size:
        out[af] = fibrillation_waves(af.size, t, rng)
    fl = np.flatnonzero(_has(findings[rows], "AFLT"))
    fl_ecg = rows[fl]
    if fl.size:
        fa = prm["flutter_rate"][fl_ecg, None] / 60.0
        delay = 0.18  # F wave onset before the conducted QRS
        phase = (t[None, :] - (times[fl_ecg, :1] - delay)) * fa
        frac = np.mod(phase, 1.0)
        # slow downstroke, quick return: the inverted saw-tooth of inferior leads
        saw = np.where(frac < 0.75, -frac / 0.75, -(1 - frac) / 0.25) + 0.5
        out[fl] = (rng.uniform(0.18, 0.3, (fl.size, 1)) * saw)[:, None, :] * geo.unit(-0.1, 0.9, -0.35)[
            None, :, None
        ]
    dissociated = np.flatnonzero(_has(findings[rows], "3AVB"))
    if dissociated.size:
        out[dissociated] = dissociated_p_waves(prm["atrial_rate"][rows[dissociated]], t, rng)
    return rows, out


def dissociated_p_waves(rate: np.ndarray, t: np.ndarray, rng) -> np.ndarray:
    """Dipole P waves (m, 3, T) at the sinus rate, in no relation to the QRS complexes: some fall
    between beats, some on a QRS or a T wave."""
    m = len(rate)
    period = 60.0 / rate[:, None]
    onsets = -rng.uniform(0, 1, (m, 1)) * period + period * np.arange(int(SECONDS * rate.max() / 60) + 2)
    width = rng.uniform(0.018, 0.023, (m, 1, 1))  # a P of 85-105 ms
    bumps = np.exp(-0.5 * np.square((t[None, None, :] - onsets[..., None] - 2.4 * width) / width)).sum(1)
    size = rng.uniform(0.1, 0.2, (m, 1, 1))
    return (size * _frontal(rng.uniform(40, 70, m), 0.15)[:, :, None] * bumps[:, None, :]).astype(np.float32)


def fibrillation_waves(m: int, t: np.ndarray, rng) -> np.ndarray:
    """Dipole f waves (m, 3, T): disorganised atrial activity at 4-9 Hz, fine or coarse.

    Each dipole axis carries its own oscillation whose rate wanders (a random walk of the
    frequency) and whose size waxes and wanes, so the waves change shape and direction from
    second to second. About 45 % are fine (peak 0.02-0.05 mV, hardly visible), as in the
    long-standing AF of older patients: then only the irregular RR and the missing P waves tell.
    """
    steps = len(t) // 50  # the rate and the size change every 0.1 s
    f0 = rng.uniform(4.0, 9.0, (m, 1, 1))
    walk = np.cumsum(rng.normal(0, 0.25, (m, 3, steps)), axis=2)
    freq = np.repeat(np.clip(f0 + walk, 3.5, 10.0), 50, axis=2)[..., : len(t)]
    phase = 2 * np.pi * np.cumsum(freq, axis=2) / FS + rng.uniform(0, 2 * np.pi, (m, 3, 1))
    size = np.repeat(np.exp(np.cumsum(rng.normal(0, 0.12, (m, 3, steps)), axis=2)), 50, axis=2)[..., : len(t)]
    wave = size * np.sin(phase)
    # largest along the right atrium's axis (V1, inferior leads), as f waves usually are
    wave *= (geo.unit(-0.25, 0.45, 0.86) * 0.7 + 0.3)[None, :, None]
    peak = np.where(rng.random(m) < 0.45, rng.uniform(0.02, 0.05, m), rng.uniform(0.05, 0.2, m))
    wave *= peak[:, None, None] / np.abs(wave).max((1, 2), keepdims=True)
    return wave.astype(np.float32)

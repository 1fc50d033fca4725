"""Hospital export formats (melp.data.formats): each written from a known signal by a writer that
is not melp's reader (pydicom datasets, pyedflib, pandas, hand-built XML following each format),
read back through ``melp.read_record`` and compared sample by sample with the source, to the
quantisation step written. Sources: a simulated ECG (always) and a real LUDB record (with
MELP_REAL_DATA). Plus the sample files the libraries ship (pydicom's waveform_ecg.dcm,
pyedflib's test EDF, sierra-ecg-tools' Philips XLI file and its aECG conversion in tests/data)."""
from __future__ import annotations

import base64
import gzip
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest

import melp
from melp.data.formats import detect
from melp.data.leads import CANONICAL_LEADS
from melp.data.readers import RecordError, read_record

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
EIGHT = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
STATEMENTS = ["Sinus rhythm", "Left axis deviation", "Abnormal ECG"]
DATA = Path(__file__).parent / "data" / "sierra-ecg-tools"


# ----------------------------------------------------------------------------- sources

@pytest.fixture(scope="module")
def synthetic():
    from melp.synth import simulate

    batch = simulate(1, seed=0)
    return np.asarray(batch.signals[0], dtype=np.float64), float(batch.fs)


@pytest.fixture(params=["synthetic", "ludb"])
def source(request, synthetic):
    """(signal (12, T) mV in canonical order, fs) of a simulated or a real LUDB record."""
    if request.param == "synthetic":
        return synthetic
    real = request.getfixturevalue("real_data")
    record = read_record(real / "ludb" / "data" / "1")  # WFDB original, 500 Hz, 12 leads
    return record.signal.astype(np.float64), record.fs


def quantise(signal_mv: np.ndarray, lsb_mv: float) -> np.ndarray:
    return np.round(signal_mv / lsb_mv).astype(np.int16)


def assert_close(record, expected_mv, lsb_mv, leads=CANONICAL_LEADS):
    """Every lead within half a step of the source (plus float32 rounding)."""
    rows = [CANONICAL_LEADS.index(lead) for lead in leads]
    got = record.signal[rows].astype(np.float64)
    want = expected_mv[rows]
    assert got.shape == want.shape
    tolerance = 0.5 * lsb_mv + 1e-5 * max(1.0, np.abs(want).max())
    assert np.abs(got - want).max() <= tolerance


# ----------------------------------------------------------------------------- writers

def write_muse(path, signal_mv, fs, leads=CANONICAL_LEADS, uv_per_bit=4.88, units="MICROVOLTS",
               statements=STATEMENTS, doctype=True):
    """A GE MUSE RestingECG export: a Median and a Rhythm waveform, base64 int16 per lead."""
    root = ET.Element("RestingECG")
    demo = ET.SubElement(root, "PatientDemographics")
    for tag, text in (("PatientID", "P001"), ("PatientAge", "63"), ("AgeUnits", "YEARS"), ("Gender", "FEMALE")):
        ET.SubElement(demo, tag).text = text
    diagnosis = ET.SubElement(root, "Diagnosis")
    for k, text in enumerate(statements):
        # the first statement in two fragments, to test joining until ENDSLINE
        parts = [text[:6], text[6:]] if k == 0 else [text]
        for j, part in enumerate(parts):
            stmt = ET.SubElement(diagnosis, "DiagnosisStatement")
            if j == len(parts) - 1:
                ET.SubElement(stmt, "StmtFlag").text = "ENDSLINE"
            ET.SubElement(stmt, "StmtText").text = part.strip()
    original = ET.SubElement(root, "OriginalDiagnosis")
    stmt = ET.SubElement(original, "DiagnosisStatement")
    ET.SubElement(stmt, "StmtFlag").text = "ENDSLINE"
    ET.SubElement(stmt, "StmtText").text = "Machine reading"
    for kind, n in (("Median", 600), ("Rhythm", signal_mv.shape[1])):
        wave = ET.SubElement(root, "Waveform")
        ET.SubElement(wave, "WaveformType").text = kind
        ET.SubElement(wave, "SampleBase").text = f"{fs:g}"
        ET.SubElement(wave, "SampleExponent").text = "0"
        for lead in leads:
            data = quantise(signal_mv[CANONICAL_LEADS.index(lead), :n] * 1000, uv_per_bit).astype("<i2").tobytes()
            lead_data = ET.SubElement(wave, "LeadData")
            for tag, text in (("LeadByteCountTotal", str(2 * n)), ("LeadSampleCountTotal", str(n)),
                              ("LeadAmplitudeUnitsPerBit", str(uv_per_bit)), ("LeadAmplitudeUnits", units),
                              ("LeadID", lead), ("LeadSampleSize", "2"), ("LeadDataCRC32", str(zlib.crc32(data)))):
                ET.SubElement(lead_data, tag).text = text
            ET.SubElement(lead_data, "WaveFormData").text = base64.encodebytes(data).decode()
    body = ET.tostring(root, encoding="unicode")
    prologue = '<?xml version="1.0" encoding="ISO-8859-1"?>\n'
    if doctype:
        prologue += '<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
    Path(path).write_text(prologue + body, encoding="latin-1")
    return path


HL7 = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def write_aecg(path, signal_mv, fs, leads=CANONICAL_LEADS, scale_uv=2.5, origin_uv=-100.0,
               statements=STATEMENTS, increment_unit="ms"):
    """An HL7 aECG file: rhythm series, GLIST time sequence, SLIST_PQ lead sequences, statements."""
    ET.register_namespace("", HL7)
    ET.register_namespace("xsi", XSI)

    def el(parent, tag, **attrib):
        return ET.SubElement(parent, f"{{{HL7}}}{tag}", {k.replace("__", ":"): v for k, v in attrib.items()})

    root = ET.Element(f"{{{HL7}}}AnnotatedECG")
    subject = el(el(el(el(el(root, "componentOf"), "timepointEvent"), "componentOf"), "subjectAssignment"), "subject")
    trial = el(subject, "trialSubject")
    el(trial, "id", extension="S-17")
    el(el(trial, "subjectDemographicPerson"), "administrativeGenderCode", code="M")
    series = el(el(root, "component"), "series")
    el(series, "code", code="RHYTHM")
    sequence_set = el(el(series, "component"), "sequenceSet")
    time_seq = el(el(sequence_set, "component"), "sequence")
    el(time_seq, "code", code="TIME_ABSOLUTE")
    value = el(time_seq, "value", **{f"{{{XSI}}}type": "GLIST_TS"})
    el(value, "head", value="20240101120000.000")
    period = 1000.0 / fs if increment_unit == "ms" else 1.0 / fs
    el(value, "increment", value=f"{period:g}", unit=increment_unit)
    for lead in leads:
        seq = el(el(sequence_set, "component"), "sequence")
        el(seq, "code", code=f"MDC_ECG_LEAD_{lead.upper() if lead.startswith('a') else lead}")
        value = el(seq, "value", **{f"{{{XSI}}}type": "SLIST_PQ"})
        el(value, "origin", value=f"{origin_uv:g}", unit="uV")
        el(value, "scale", value=f"{scale_uv:g}", unit="uV")
        digits = quantise((signal_mv[CANONICAL_LEADS.index(lead)] * 1000 - origin_uv), scale_uv)
        el(value, "digits").text = " ".join(map(str, digits.tolist()))
    annotations = el(el(series, "subjectOf"), "annotationSet")
    for text in statements:
        annotation = el(el(annotations, "component"), "annotation")
        el(annotation, "code", code="MDC_ECG_INTERPRETATION_STATEMENT")
        el(annotation, "value", **{f"{{{XSI}}}type": "ST"}).text = text
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


PHILIPS = "http://www3.medical.philips.com"


def write_philips(path, signal_mv, fs, resolution_uv=5.0, statements=STATEMENTS, truncate=0, labels=True):
    """A Philips Sierra ECG 1.04 export with uncompressed base64 waveforms (lead after lead)."""
    ET.register_namespace("", PHILIPS)

    def el(parent, tag, text=None, **attrib):
        e = ET.SubElement(parent, f"{{{PHILIPS}}}{tag}", attrib)
        if text is not None:
            e.text = text
        return e

    root = ET.Element(f"{{{PHILIPS}}}restingecgdata")
    info = el(root, "documentinfo")
    el(info, "documenttype", "PhilipsECG")
    el(info, "documentversion", "1.04")
    patient = el(el(root, "patient"), "generalpatientdata")
    el(patient, "patientid", "PH-9")
    el(el(patient, "age"), "years", "71")
    el(patient, "sex", "Male")
    chars = el(el(root, "dataacquisition"), "signalcharacteristics")
    el(chars, "samplingrate", f"{fs:g}")
    el(chars, "resolution", f"{resolution_uv:g}")
    el(chars, "acquisitiontype", "STD-12")
    el(chars, "numberchannelsallocated", "12")
    interpretation = el(el(root, "interpretations"), "interpretation")
    el(interpretation, "severity", "- ABNORMAL ECG -", code="AB")
    for text in statements:
        statement = el(interpretation, "statement")
        el(statement, "statementcode", "XX")
        el(statement, "leftstatement", text)
        el(statement, "rightstatement", "criterion text")
    n = signal_mv.shape[1]
    data = np.concatenate([quantise(signal_mv[k] * 1000, resolution_uv) for k in range(12)]).astype("<i2").tobytes()
    if truncate:
        data = data[:-truncate]
    named = {"numberofleads": "12", "leadlabels": " ".join(CANONICAL_LEADS)} if labels else {}
    el(el(root, "waveforms"), "parsedwaveforms", base64.b64encode(data).decode(),
       dataencoding="Base64", durationperchannel=f"{n * 1000 / fs:g}", **named)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
    return path


def write_dicom(path, signal_mv, fs, order=MIMIC_ORDER, sensitivity_uv=2.5, unit="uV", median=True,
                statements=STATEMENTS):
    """A 12-lead ECG Waveform Storage dataset built with pydicom's Dataset API (the bytes are
    written here, interleaved int16, so pydicom's decoding is what the reader relies on)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    def group(data_mv, label):
        g = Dataset()
        g.MultiplexGroupLabel = label
        g.WaveformOriginality = "ORIGINAL"
        g.NumberOfWaveformChannels = len(order)
        g.NumberOfWaveformSamples = data_mv.shape[1]
        g.SamplingFrequency = f"{fs:g}"
        g.WaveformBitsAllocated = 16
        g.WaveformSampleInterpretation = "SS"
        channels = []
        for lead in order:
            ch = Dataset()
            source = Dataset()
            source.CodeValue, source.CodingSchemeDesignator = f"5.6.3-9-{len(channels) + 1}", "SCPECG"
            source.CodeMeaning = "Lead I (Einthoven)" if lead == "I" else f"Lead {lead}"
            ch.ChannelSourceSequence = [source]
            ch.ChannelSensitivity = f"{sensitivity_uv if unit == 'uV' else sensitivity_uv / 1000:g}"
            units = Dataset()
            units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = unit, "UCUM", unit
            ch.ChannelSensitivityUnitsSequence = [units]
            ch.ChannelSensitivityCorrectionFactor = "1"
            ch.ChannelBaseline = "0"
            ch.WaveformBitsStored = 16
            channels.append(ch)
        g.ChannelDefinitionSequence = channels
        raw = np.stack([quantise(data_mv[CANONICAL_LEADS.index(lead)] * 1000, sensitivity_uv) for lead in order],
                       axis=1)  # (samples, channels): multiplexed
        g.WaveformData = raw.astype("<i2").tobytes()
        return g

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.9.1.1"
    meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.1"  # fixed: the same bytes every run
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "ECG"
    ds.PatientID, ds.PatientAge, ds.PatientSex = "D-1", "054Y", "M"
    groups = [group(signal_mv, "RHYTHM")]
    if median:
        groups.insert(0, group(signal_mv[:, :600], "MEDIAN BEAT"))
    ds.WaveformSequence = groups
    notes = []
    for text in statements:
        a = Dataset()
        a.UnformattedTextValue = text
        notes.append(a)
    ds.WaveformAnnotationSequence = notes
    ds.save_as(path, enforce_file_format=True)
    return path


def write_edf(path, signal_mv, fs, labels=None, extra=None, rates=None, bdf=False):
    """EDF+ (or BDF+) written by pyedflib (the reader is edfio), physical unit uV, +-10 mV range."""
    pyedflib = pytest.importorskip("pyedflib")
    from pyedflib import highlevel

    labels = labels or [f"ECG {lead}" for lead in CANONICAL_LEADS]
    rates = rates or [fs] * 12
    digital = (-(2**23), 2**23 - 1) if bdf else (-32768, 32767)
    headers = [highlevel.make_signal_header(label, dimension="uV", sample_frequency=rate,
                                            physical_min=-10000, physical_max=10000,
                                            digital_min=digital[0], digital_max=digital[1])
               for label, rate in zip(labels, rates)]
    signals = [signal_mv[k] * 1000 if rates[k] == fs else signal_mv[k, ::2] * 1000 for k in range(12)]
    if extra:
        headers.append(highlevel.make_signal_header(extra, dimension="mV", sample_frequency=fs,
                                                    physical_min=-1, physical_max=1))
        signals.append(np.zeros(signal_mv.shape[1]))
    assert highlevel.write_edf(str(path), signals, headers, highlevel.make_header(sex="Female"),
                               file_type=pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS)
    return path


EDF_LSB_MV = 20.0 / 65535  # +-10 mV over the 16-bit digital range


# ----------------------------------------------------------------------------- each format vs its source

def test_muse_rhythm_matches_source(tmp_path, source):
    signal, fs = source
    path = write_muse(tmp_path / "muse.xml", signal, fs)
    assert detect(path) == "muse"
    record = melp.read_record(path)
    assert record.fs == fs and record.leads == list(CANONICAL_LEADS)
    assert record.signal.shape == signal.shape  # the Rhythm waveform, not the 600-sample Median
    assert_close(record, signal, 4.88e-3)
    assert record.meta["statements"] == STATEMENTS
    assert record.meta["original_statements"] == ["Machine reading"]
    assert record.meta["age"] == 63 and record.meta["sex"] == "F" and record.meta["patient_id"] == "P001"


def test_muse_eight_leads_derives_the_limb_leads(tmp_path, source):
    signal, fs = source
    record = read_record(write_muse(tmp_path / "muse8.xml", signal, fs, leads=EIGHT))
    lsb = 4.88e-3
    assert_close(record, signal, lsb, leads=EIGHT)
    i, ii = (np.round(signal[k] / lsb) * lsb for k in (0, 1))  # the stored, quantised I and II
    derived = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
    for lead, want in derived.items():
        np.testing.assert_allclose(record.signal[CANONICAL_LEADS.index(lead)], want, atol=1e-5)
    assert any("computed from I and II" in note for note in record.meta["notes"])
    # The simulator obeys Einthoven's law, so there the derived limb leads are its own, to rounding.
    # (Recordings need not: LUDB record 1's stored III is up to 0.36 mV from II - I.)
    if np.abs(signal[2] - (signal[1] - signal[0])).max() < 1e-5:
        assert_close(record, signal, 3 * lsb, leads=("III", "aVR", "aVL", "aVF"))


def test_aecg_matches_source(tmp_path, source):
    signal, fs = source
    path = write_aecg(tmp_path / "aecg.xml", signal, fs)
    assert detect(path) == "aecg"
    record = melp.read_record(path)
    assert record.fs == fs
    assert_close(record, signal, 2.5e-3)  # origin -100 uV undone
    assert record.meta["statements"] == STATEMENTS
    assert record.meta["sex"] == "M" and record.meta["patient_id"] == "S-17"


def test_aecg_seconds_increment_and_eight_leads(tmp_path, synthetic):
    signal, fs = synthetic
    record = read_record(write_aecg(tmp_path / "a8.xml", signal, fs, leads=EIGHT, increment_unit="s"))
    assert record.fs == fs
    assert_close(record, signal, 2.5e-3, leads=EIGHT)
    assert "computed from I and II" in " ".join(record.meta["notes"])


def test_philips_uncompressed_matches_source(tmp_path, source):
    signal, fs = source
    path = write_philips(tmp_path / "philips.xml", signal, fs)
    assert detect(path) == "philips"
    record = melp.read_record(path)
    assert record.fs == fs
    assert_close(record, signal, 5e-3)  # III..aVF as stored: no XLI residual step on plain data
    assert record.meta["statements"] == ["ABNORMAL ECG", *STATEMENTS]
    assert record.meta["age"] == 71 and record.meta["sex"] == "M"


def test_philips_calibration_pulse_is_cut(tmp_path, synthetic):
    signal, fs = synthetic  # 10 s of ECG, then as a PageWriter: 1 mV on every lead 10.7-10.9 s, zeros
    tail = np.zeros((12, int(fs)))
    tail[:, int(0.7 * fs):int(0.9 * fs)] = 1.0
    tail[:, :int(0.7 * fs)] = signal[:, -1:]  # the ECG's last value held until the pulse
    record = read_record(write_philips(tmp_path / "cal.xml", np.concatenate([signal, tail], axis=1), fs))
    assert record.signal.shape == (12, signal.shape[1] + int(0.7 * fs))
    assert_close(record, np.concatenate([signal, tail[:, :int(0.7 * fs)]], axis=1), 5e-3)
    assert "calibration pulse from 10.70 s" in " ".join(record.meta["notes"])


def test_philips_without_lead_labels_uses_the_standard_order(tmp_path, synthetic):
    signal, fs = synthetic  # 1.03 files may name no leads: acquisition STD-12 means the usual 12
    assert_close(read_record(write_philips(tmp_path / "p.xml", signal, fs, labels=False)), signal, 5e-3)


def test_dicom_matches_source_and_reorders_by_name(tmp_path, source):
    signal, fs = source
    path = write_dicom(tmp_path / "ecg.dcm", signal, fs)
    record = melp.read_record(path)
    assert record.fs == fs and record.signal.shape == signal.shape  # RHYTHM group, not MEDIAN BEAT
    assert_close(record, signal, 2.5e-3)
    assert record.meta["statements"] == STATEMENTS
    assert record.meta["age"] == 54 and record.meta["sex"] == "M"


def test_dicom_in_millivolts(tmp_path, synthetic):
    signal, fs = synthetic
    record = read_record(write_dicom(tmp_path / "mv.dcm", signal, fs, unit="mV", median=False))
    assert_close(record, signal, 2.5e-3)


@pytest.mark.parametrize("implicit_vr", [True, False])
def test_dicom_without_preamble(tmp_path, synthetic, implicit_vr):
    """Some archives write the bare data set: no 128-byte preamble, no DICM, no file meta."""
    import pydicom

    signal, fs = synthetic
    data_set = pydicom.Dataset(pydicom.dcmread(write_dicom(tmp_path / "full.dcm", signal, fs)))  # no file meta
    bare = tmp_path / "bare"  # no extension either, as PACS exports often are
    pydicom.dcmwrite(bare, data_set, implicit_vr=implicit_vr, little_endian=True, enforce_file_format=False)
    head = bare.read_bytes()[:132]
    assert head[128:132] != b"DICM" and head[:2] == b"\x08\x00"
    record = read_record(bare)
    assert_close(record, signal, 2.5e-3)
    assert record.meta["statements"] == STATEMENTS


def test_edf_matches_source(tmp_path, source):
    signal, fs = source
    labels = [("EKG " if k % 2 else "ECG ") + lead for k, lead in enumerate(CANONICAL_LEADS)]
    path = write_edf(tmp_path / "ecg.edf", signal, fs, labels=labels, extra="Resp")
    assert detect(path) == "edf"
    record = melp.read_record(path)
    assert record.fs == fs
    assert_close(record, signal, 2 * EDF_LSB_MV)  # pyedflib may truncate rather than round
    assert record.meta["sex"] == "F"
    assert "['Resp']" in " ".join(record.meta["notes"])


def test_bdf_24_bit(tmp_path, synthetic):
    signal, fs = synthetic
    path = write_edf(tmp_path / "ecg.bdf", signal, fs, bdf=True)
    assert detect(path) == "edf"
    record = read_record(path)
    assert record.meta["format"] == "BDF"
    assert_close(record, signal, 2 * 20.0 / 2**24)


@pytest.mark.parametrize("rate_from", ["comment", "time", "argument"])
def test_csv_matches_source(tmp_path, source, rate_from):
    import pandas as pd

    signal, fs = source
    table = pd.DataFrame({lead: signal[CANONICAL_LEADS.index(lead)] for lead in MIMIC_ORDER})
    if rate_from == "time":
        table.insert(0, "time", np.arange(signal.shape[1]) / fs)
    path = tmp_path / "ecg.csv"
    with open(path, "w") as f:
        if rate_from == "comment":
            f.write(f"# sampling_rate: {fs:g} Hz\n")
        table.to_csv(f, index=False, float_format="%.6f")
    record = melp.read_record(path, fs=fs if rate_from == "argument" else None)
    assert record.fs == pytest.approx(fs)
    assert_close(record, signal, 2e-6)


def test_csv_microvolt_comment_and_tab_separator(tmp_path, synthetic):
    signal, fs = synthetic
    rows = ["\t".join(CANONICAL_LEADS)] + ["\t".join(f"{v * 1000:.3f}" for v in col) for col in signal.T]
    path = tmp_path / "ecg.txt"  # no .csv name: recognised from the header row
    path.write_text("# fs=500\n# units: uV\n" + "\n".join(rows) + "\n")
    assert detect(path) == "csv"
    assert_close(read_record(path), signal, 2e-6)


# ----------------------------------------------------------------------------- the libraries' sample files

def test_pydicom_waveform_sample():
    import pydicom

    sample = Path(pydicom.__file__).parent / "data" / "test_files" / "waveform_ecg.dcm"
    if not sample.is_file():
        pytest.skip(f"{sample} is not in this pydicom install")
    record = read_record(sample)
    ds = pydicom.dcmread(sample)
    group = ds.WaveformSequence[0]  # RHYTHM: 12 channels x 10000 samples, 1.25 uV per unit
    raw = np.frombuffer(group.WaveformData, dtype="<i2").reshape(-1, 12).T
    assert record.fs == 1000 and record.signal.shape == (12, 10000)
    np.testing.assert_allclose(record.signal, raw * 1.25e-3, atol=1e-6)  # leads stored in canonical order
    assert record.meta["statements"] == ["RITMO SINUSALE", "ECG NORMALE"]
    assert record.meta["age"] == 42 and record.meta["sex"] == "F"


def test_pyedflib_sample_names_its_signals():
    pyedflib = pytest.importorskip("pyedflib")
    sample = Path(pyedflib.__file__).parent / "data" / "test_generator.edf"
    if not sample.is_file():
        pytest.skip(f"{sample} is not in this pyedflib install")
    with pytest.raises(RecordError, match="no ECG lead among the EDF signals .*'squarewave'"):
        read_record(sample)


def test_philips_xli_sample_agrees_with_its_aecg_conversion(tmp_path):
    """A real PageWriter export (XLI-compressed, decoded by sierraecg) and the same ECG converted to
    HL7 aECG (read by melp's own parser): two formats, two decoders, one signal."""
    paths = {}
    for name in ("philips_1-04_xli.xml", "philips_1-04_converted_aecg.xml"):
        paths[name] = tmp_path / name
        paths[name].write_bytes(gzip.decompress((DATA / f"{name}.gz").read_bytes()))
    philips = read_record(paths["philips_1-04_xli.xml"])
    aecg = read_record(paths["philips_1-04_converted_aecg.xml"])
    # 11 s stored; the cardiograph's 1 mV calibration pulse from 10.7 s on is cut from both
    assert philips.fs == aecg.fs == 500 and philips.signal.shape == aecg.signal.shape == (12, 5350)
    for record in (philips, aecg):
        assert "calibration pulse from 10.70 s" in " ".join(record.meta["notes"])
    assert philips.meta["format"] == "Philips Sierra XML (XLI)"
    # equal to a few 5 uV steps (the converter's own rounding); a lead mix-up or a wrong scale is far larger
    assert np.abs(philips.signal - aecg.signal).max() <= 0.0201
    assert np.abs(philips.signal).max() > 0.5
    assert philips.meta["statements"] == ["OTHERWISE NORMAL ECG", "SINUS BRADYCARDIA",
                                          "NO PREVIOUS TRACING AVAILABLE FOR COMPARISON"]
    assert aecg.meta["statements"][0].startswith("(SB) SINUS BRADYCARDIA")
    assert aecg.meta["sex"] == "F"


# ----------------------------------------------------------------------------- content sniffing

def test_formats_are_recognised_from_content_not_name(tmp_path, synthetic):
    signal, fs = synthetic
    dicom = write_dicom(tmp_path / "scan.txt", signal, fs)  # a DICOM file named .txt
    muse = write_muse(tmp_path / "export", signal, fs)  # no extension at all
    edf = write_edf(tmp_path / "ecg.bin", signal, fs)
    assert [detect(p) for p in (dicom, muse, edf)] == ["dicom", "muse", "edf"]
    for path in (dicom, muse, edf):
        assert read_record(path).signal.shape == signal.shape


def test_wfdb_still_read_by_name(tmp_path):
    import wfdb

    d = (np.arange(12 * 500).reshape(500, 12) % 300).astype(np.int16)
    wfdb.wrsamp("rec", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS), d_signal=d, fmt=["16"] * 12,
                adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(tmp_path))
    assert detect(tmp_path / "rec.hea") is None and detect(tmp_path / "rec.dat") is None
    np.testing.assert_allclose(read_record(tmp_path / "rec.hea").signal, d.T / 200.0, atol=1e-6)


# ----------------------------------------------------------------------------- damaged and unsupported files

def _error(path, *args, **kwargs) -> str:
    with pytest.raises(RecordError) as info:
        read_record(path, *args, **kwargs)
    message = str(info.value)
    assert str(path) in message  # the file is named
    return message


def test_damaged_muse_files(tmp_path, synthetic):
    signal, fs = synthetic
    text = write_muse(tmp_path / "ok.xml", signal, fs).read_text(encoding="latin-1")
    # truncated base64: the first lead's data cut short inside otherwise valid XML
    start = text.index("<WaveFormData>", text.index("<WaveformType>Rhythm")) + len("<WaveFormData>")
    end = text.index("</WaveFormData>", start)
    cut = tmp_path / "cut.xml"
    cut.write_text(text[:start] + text[start:end][:1001] + text[end:], encoding="latin-1")
    assert "not valid base64" in _error(cut) or "truncated" in _error(cut)
    shorter = tmp_path / "short.xml"
    cut_at = text[start:end].replace("\n", "")[:1000]
    shorter.write_text(text[:start] + cut_at + text[end:], encoding="latin-1")
    assert "LeadSampleCountTotal says" in _error(shorter)
    # one sample changed, length intact: only the lead's CRC-32 tells
    payload = bytearray(base64.b64decode(text[start:end]))
    payload[100] ^= 0x10
    flipped = tmp_path / "flipped.xml"
    flipped.write_text(text[:start] + base64.b64encode(payload).decode() + text[end:], encoding="latin-1")
    assert "lead I: the waveform data fails its CRC-32 check" in _error(flipped)
    # a CRC stored as a signed 32-bit number is the same CRC
    crc = int(text[text.rindex("<LeadDataCRC32>", 0, start) + 15 : text.rindex("</LeadDataCRC32>", 0, start)])
    signed = tmp_path / "signed.xml"
    signed.write_text(text.replace(f"<LeadDataCRC32>{crc}<", f"<LeadDataCRC32>{crc - 2**32}<"), encoding="latin-1")
    assert_close(read_record(signed), signal, 5e-3)
    # a lead missing
    missing = write_muse(tmp_path / "seven.xml", signal, fs, leads=EIGHT[:-1])
    assert "missing leads ['V6']" in _error(missing)
    assert read_record(missing, allow_missing_leads=True).meta["missing_leads"] == ["V6"]
    # unknown units
    assert "unknown signal unit 'FURLONGS'" in _error(write_muse(tmp_path / "u.xml", signal, fs, units="FURLONGS"))
    # XML cut in the middle
    half = tmp_path / "half.xml"
    half.write_text(text[: len(text) // 2], encoding="latin-1")
    assert "not well-formed XML" in _error(half)


def test_xml_entities_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>\n<RestingECG>&b;</RestingECG>\n')
    assert "declares entities" in _error(bomb)
    external = tmp_path / "external.xml"
    external.write_text('<?xml version="1.0"?>\n<!DOCTYPE RestingECG [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                        "<RestingECG>&x;</RestingECG>\n")
    assert "declares entities" in _error(external)


def test_unsupported_and_garbage_files(tmp_path):
    empty = tmp_path / "empty.xml"
    empty.write_bytes(b"")
    assert "empty file" in _error(empty)
    garbage = tmp_path / "noise.bin"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    assert "unrecognised file format" in _error(garbage) and "(binary data starting" in _error(garbage)
    other = tmp_path / "other.xml"
    other.write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n')
    assert "root element <svg>" in _error(other)
    scp = tmp_path / "ecg.scp"
    scp.write_bytes(b"\x00" * 16 + b"SCPECG" + b"\x00" * 100)
    assert "SCP-ECG is not supported" in _error(scp)
    scp_named_dat = tmp_path / "ecg_scp.raw"
    scp_named_dat.write_bytes(b"\x12\x34" + b"\x00" * 14 + b"SCPECG" + b"\x00" * 100)
    assert "SCP-ECG is not supported" in _error(scp_named_dat)


def test_damaged_csv_files(tmp_path, synthetic):
    signal, fs = synthetic
    no_leads = tmp_path / "table.csv"
    no_leads.write_text("# fs=500\nheight,weight\n1,2\n3,4\n")
    assert "CSV without lead columns" in _error(no_leads)
    no_rate = tmp_path / "norate.csv"
    no_rate.write_text(",".join(CANONICAL_LEADS) + "\n" + "\n".join(",".join(["0.1"] * 12) for _ in range(50)))
    assert "no sampling rate" in _error(no_rate)
    assert read_record(no_rate, fs=250, allow_missing_leads=False, strict=False).fs == 250
    bad_value = tmp_path / "bad.csv"
    bad_value.write_text("# fs=500\n" + ",".join(CANONICAL_LEADS) + "\n" + ",".join(["0.1"] * 11 + ["abc"]) + "\n")
    assert "not a number" in _error(bad_value)
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("# fs=500\n" + ",".join(CANONICAL_LEADS) + "\n" + ",".join(["0.1"] * 12) + "\n"
                      + ",".join(["0.1"] * 14) + "\n")
    assert "different numbers of fields" in _error(ragged)
    header_only = tmp_path / "header.csv"
    header_only.write_text("# fs=500\n" + ",".join(CANONICAL_LEADS) + "\n")
    assert "no samples" in _error(header_only)
    units = tmp_path / "units.csv"
    units.write_text("# fs=500\n# units: parsecs\n" + ",".join(CANONICAL_LEADS) + "\n" + ",".join(["1"] * 12) + "\n")
    assert "unknown signal unit 'parsecs'" in _error(units)
    uneven = tmp_path / "uneven.csv"
    uneven.write_text("time," + ",".join(CANONICAL_LEADS) + "\n" +
                      "\n".join(f"{t}," + ",".join(["0.1"] * 12) for t in (0, 0.002, 0.004, 0.010)))
    assert "not evenly spaced" in _error(uneven)


def test_damaged_edf_dicom_aecg_philips(tmp_path, synthetic):
    signal, fs = synthetic
    rates = [fs] * 11 + [fs / 2]
    unequal = write_edf(tmp_path / "rates.edf", signal, fs, rates=rates)
    assert "sampled at different rates" in _error(unequal)
    truncated_edf = tmp_path / "cut.edf"
    truncated_edf.write_bytes(write_edf(tmp_path / "full.edf", signal, fs).read_bytes()[:5000])
    assert "truncated: the header declares" in _error(truncated_edf)

    dicom = write_dicom(tmp_path / "full.dcm", signal, fs, median=False).read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(dicom[: len(dicom) - 5000])
    message = _error(cut)
    assert "DICOM" in message or "waveform group" in message
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    image = Dataset()
    image.file_meta = FileMetaDataset()
    image.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT image storage
    image.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    image.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    image.SOPClassUID = image.file_meta.MediaStorageSOPClassUID
    image.SOPInstanceUID = image.file_meta.MediaStorageSOPInstanceUID
    image.save_as(tmp_path / "ct.dcm", enforce_file_format=True)
    assert "DICOM without waveforms (SOP class CT Image Storage)" in _error(tmp_path / "ct.dcm")

    # an element whose value representation is garbage: pydicom's dcmread accepts the file and
    # fails only when the element is read (here PatientID, tag (0010,0020), VR 'LO' -> 'L\xff')
    dicom = bytearray(write_dicom(tmp_path / "vr.dcm", signal, fs, median=False).read_bytes())
    at = dicom.index(b"\x10\x00\x20\x00LO")
    dicom[at + 5] = 0xFF
    (tmp_path / "vr.dcm").write_bytes(bytes(dicom))
    assert "damaged DICOM (NotImplementedError" in _error(tmp_path / "vr.dcm")

    aecg = write_aecg(tmp_path / "a.xml", signal, fs).read_text()
    no_time = tmp_path / "notime.xml"
    no_time.write_text(aecg.replace('code="TIME_ABSOLUTE"', 'code="SOMETHING_ELSE"'))
    assert "sampling rate unknown" in _error(no_time)
    uneven = tmp_path / "uneven.xml"
    uneven.write_text(aecg.replace("<digits>", "<digits>1 2 3 ", 1))  # lead I three samples longer
    assert "leads hold different numbers of samples" in _error(uneven)
    bad_digits = tmp_path / "digits.xml"
    bad_digits.write_text(aecg.replace("<digits>", "<digits>12 x7 ", 1))
    assert "not a number" in _error(bad_digits)

    philips = write_philips(tmp_path / "p.xml", signal, fs, truncate=4000)
    assert "truncated" in _error(philips)


def test_mutilated_files_give_a_record_error_or_a_record(tmp_path, synthetic):
    """Files of every format cut short, with bytes overwritten or a block deleted: each read either
    succeeds (damage a format cannot detect, e.g. a changed sample) or raises RecordError, never
    another exception. A longer run of this found pydicom failing on damaged elements after dcmread
    had accepted the file: that case is pinned in test_damaged_edf_dicom_aecg_philips."""
    import pandas as pd

    signal, fs = synthetic
    csv = tmp_path / "src.csv"
    csv.write_text("# fs=500\n" + pd.DataFrame(signal.T, columns=CANONICAL_LEADS).to_csv(index=False))
    xli = tmp_path / "src_xli.xml"
    xli.write_bytes(gzip.decompress((DATA / "philips_1-04_xli.xml.gz").read_bytes()))
    sources = [write_muse(tmp_path / "src_muse.xml", signal, fs), write_aecg(tmp_path / "src_aecg.xml", signal, fs),
               write_philips(tmp_path / "src_philips.xml", signal, fs), xli, csv,
               write_dicom(tmp_path / "src.dcm", signal, fs), write_edf(tmp_path / "src.edf", signal, fs)]
    rng = np.random.default_rng(1)
    for source in sources:
        data = source.read_bytes()
        for trial in range(24):
            mutated = bytearray(data)
            if trial % 3 == 0:
                mutated = mutated[: int(rng.integers(1, len(data)))]
            elif trial % 3 == 1:
                for at in rng.integers(0, len(data), size=int(rng.integers(1, 20))):
                    mutated[int(at)] = int(rng.integers(0, 256))
            else:
                at = int(rng.integers(0, len(data)))
                del mutated[at:at + int(rng.integers(1, 2000))]
            target = tmp_path / f"mutated{source.suffix}"
            target.write_bytes(bytes(mutated))
            try:
                read_record(target)
            except RecordError as err:
                assert str(target) in str(err)


# ----------------------------------------------------------------------------- melp prepare folder

def test_folder_adapter_and_prepare(tmp_path, synthetic):
    from melp.cli import main
    from melp.data.adapters import get_adapter

    signal, fs = synthetic
    root = tmp_path / "export"
    (root / "ward2").mkdir(parents=True)
    write_muse(root / "muse1.xml", signal, fs)
    write_aecg(root / "ward2" / "trial7.xml", signal, fs)
    write_dicom(root / "ward2" / "dicom3.dcm", signal, fs)
    write_muse(root / "terse.xml", signal, fs, statements=["Normal"])
    write_edf(root / "holter.edf", signal, fs)  # readable, but no statements
    (root / "notes.txt").write_text("not an ECG at all\n")
    (root / ".hidden.xml").write_text("<x/>")
    (root / "rec7.atr").write_bytes(b"\x00\x01")  # beside a header: part of a WFDB record, skipped
    (root / "rec7.hea").write_text("rec7 1 500 0\n")  # read (through its header) and rejected

    table, tasks, rejects = get_adapter("folder").load_table(root)
    assert tasks == {}
    assert sorted(table["record_id"]) == ["dicom3", "muse1", "trial7"]
    muse = table.set_index("record_id").loc["muse1"]
    assert muse["report"] == "sinus rhythm. left axis deviation. abnormal ecg."
    assert muse["subject_id"] == "P001"
    reasons = dict(rejects)
    assert reasons["holter"] == "no machine statements"
    assert reasons["terse"] == "report shorter than 4 words"
    assert "RecordError" in reasons["notes"] and "unrecognised file format" in reasons["notes"]
    assert ".hidden" not in reasons and "rec7.atr" not in " ".join(reasons.values())
    assert "rec7" in reasons and "RecordError" in reasons["rec7"]

    only_muse, _, muse_rejects = get_adapter("folder").with_format("muse").load_table(root)
    assert list(only_muse["record_id"]) == ["muse1"]
    assert "format dicom, not the --format muse" in dict(muse_rejects)["dicom3"]

    out = tmp_path / "cache"
    assert main(["prepare", "folder", "--root", str(root), "--out", str(out), "--quiet", "--quality", "off"]) == 0
    import pandas as pd

    index = pd.read_parquet(out / "index.parquet")
    assert sorted(index["record_id"]) == ["dicom3", "muse1", "trial7"]
    assert main(["prepare", "ludb", "--root", str(root), "--out", str(tmp_path / "c2"), "--format", "muse"]) == 2


def test_cli_fs_option():
    from melp.cli import command_parser

    for name in ("classify", "report"):
        _, parser = command_parser(name)
        args = parser.parse_args(["x.csv", "--model", "m", "--fs", "250"] + (["--labels", "a"] if name == "classify" else []))
        assert args.fs == 250.0
        assert "DICOM" in parser.format_help()


def test_edf_header_check():
    """The EDF sniff reads fixed-width ASCII fields: a header byte count that disagrees with the
    signal count (256 x (n + 1)) is not taken for EDF."""
    from melp.data.formats.detect import _is_edf

    head = b"0       " + b" " * 176 + b"999     " + b" " * 60 + b"12  "
    assert len(head) == 256
    assert not _is_edf(head + b"\x00" * 3000)
    assert _is_edf(head.replace(b"999     ", b"3328    ") + b"\x00" * 10)


def test_classify_reads_hospital_files(tmp_path, synthetic, capsys):
    """`melp classify` on a MUSE file and on a CSV whose rate comes from --fs (`melp report` reads
    files through the same record_windows: its --fs is checked by test_cli_fs_option)."""
    torch = pytest.importorskip("torch")
    from melp.cli import main

    signal, fs = synthetic
    from modelfixtures import small_config, small_text_model

    torch.manual_seed(0)
    text = small_text_model(tmp_path / "text")
    melp.MELP(small_config(text)).save_pretrained(tmp_path / "model")
    muse = write_muse(tmp_path / "ecg.xml", signal, fs)
    csv = tmp_path / "ecg.csv"
    csv.write_text(",".join(CANONICAL_LEADS) + "\n" + "\n".join(",".join(f"{v:.5f}" for v in col) for col in signal.T))
    model = ["--model", str(tmp_path / "model")]
    assert main(["classify", str(muse), *model, "--labels", "sinus rhythm", "atrial fibrillation"]) == 0
    assert "10.0 s at 500 Hz" in capsys.readouterr().out
    assert main(["classify", str(csv), *model, "--labels", "sinus rhythm"]) == 2
    assert "no sampling rate" in capsys.readouterr().err
    assert main(["classify", str(csv), *model, "--fs", "500", "--labels", "sinus rhythm"]) == 0
    assert "10.0 s at 500 Hz" in capsys.readouterr().out

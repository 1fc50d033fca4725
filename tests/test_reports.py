import math

from melp.data.reports import clean_report, word_count


def test_clean_report_mimic_rules():
    parts = ["Sinus  rhythm", None, float("nan"), "", "Abnormal EKG.", "***", "  Borderline  ekg ***  ", "ST elev"]
    assert clean_report(parts) == "sinus rhythm. abnormal ecg. borderline ecg. st elev."


def test_clean_report_empty_and_word_count():
    assert clean_report([None, math.nan, "  ", "*** ***"]) == ""
    assert word_count(clean_report(["Normal", "ECG"])) == 2

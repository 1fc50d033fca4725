import math

from melp.data.reports import clean_report, split_sentences, word_count


def test_clean_report_mimic_rules():
    parts = ["Sinus  rhythm", None, float("nan"), "", "Abnormal EKG.", "***", "  Borderline  ekg ***  ", "ST elev"]
    assert clean_report(parts) == "sinus rhythm. abnormal ecg. borderline ecg. st elev"


def test_clean_report_empty_and_word_count():
    assert clean_report([None, math.nan, "  ", "*** ***"]) == ""
    assert word_count(clean_report(["Normal", "ECG"])) == 2


def test_split_sentences():
    assert split_sentences("sinus rhythm. left axis deviation.  . abnormal ecg") == [
        "sinus rhythm", "left axis deviation", "abnormal ecg"]
    assert split_sentences("") == []

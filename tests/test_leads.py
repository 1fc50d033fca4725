import pytest

from melp.data.leads import CANONICAL_LEADS, LeadNameError, canonical_lead_name, match_leads

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


@pytest.mark.parametrize("spelling, lead", [("AVR", "aVR"), ("avr", "aVR"), ("aVr", "aVR"), (" v1 ", "V1"),
                                            ("i", "I"), ("III", "III"), ("DII", "II"), ("avf", "aVF")])
def test_canonical_name_is_case_insensitive(spelling, lead):
    assert canonical_lead_name(spelling) == lead


def test_unknown_name_has_no_canonical_form():
    assert canonical_lead_name("MLII") is None
    assert canonical_lead_name("V7") is None


def test_match_leads_reorders_mimic_order_by_name():
    order, extra = match_leads(MIMIC_ORDER)
    assert [MIMIC_ORDER[i] for i in order] == list(CANONICAL_LEADS)
    assert order[4] == 5 and order[5] == 4  # aVL and aVF swap places
    assert extra == {}


def test_match_leads_keeps_frank_leads_apart_and_reports_missing():
    names = ["v6", "VX", "i", "vy", "vz"]
    order, extra = match_leads(names)
    assert order[0] == 2 and order[11] == 0
    assert sum(index is None for index in order) == 10
    assert extra == {"vx": 1, "vy": 3, "vz": 4}


def test_match_leads_rejects_unknown_and_repeated_names():
    with pytest.raises(LeadNameError, match="MLII"):
        match_leads([*CANONICAL_LEADS[:11], "MLII"])
    with pytest.raises(LeadNameError, match="twice"):
        match_leads(["I", "i", *CANONICAL_LEADS[1:]])

"""The 8 MIMIC-IV-ECG-style reports both training-step benches use (ours and the authors' harness):
no imports, so the authors' environment can load it too."""

REPORTS = [
    "sinus rhythm. normal ecg.",
    "sinus rhythm. left axis deviation. nonspecific t wave abnormality. abnormal ecg.",
    "atrial fibrillation with rapid ventricular response. low qrs voltages in limb leads. abnormal ecg.",
    "sinus bradycardia. first degree av block. right bundle branch block. inferior infarct - age undetermined. abnormal ecg.",
    "sinus tachycardia. possible left atrial enlargement. left ventricular hypertrophy with repolarization abnormality. st depression in lateral leads. prolonged qt interval. abnormal ecg.",
    "atrial flutter with 2:1 av conduction. borderline ecg.",
    "sinus rhythm with premature ventricular complexes. poor r wave progression - probable normal variant. borderline ecg.",
    "paced rhythm. no further analysis. abnormal ecg.",
]

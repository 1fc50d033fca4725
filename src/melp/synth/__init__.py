"""The embedded default: a physiological 12-lead ECG + report simulator and its exporters."""

"""Evaluation: zero-shot, linear probe, fine-tuning, retrieval, report generation."""

"""Training: stage 1 (text MLM), stage 2 (MELP on Lightning) and the demo."""

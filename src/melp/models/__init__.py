"""The MELP model: ECG encoder, text encoder, poolers, caption decoder."""

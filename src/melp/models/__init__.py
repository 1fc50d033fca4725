"""The MELP model: ECG encoder, text encoder, poolers, caption decoder.

Read in this order: config.py (sizes as data; presets in melp/configs/model/*.yaml),
attention.py (the one attention module), ecg_encoder.py, text_encoder.py, poolers.py, decoder.py,
melp.py (the model, its raw-signal API, save_pretrained / load) and generation.py.
"""

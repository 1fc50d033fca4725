"""The authors' checkpoints (HKU-MedAI/MELP) in melp's format: ``convert_official``.

Their Lightning checkpoint holds ``MELPModel.state_dict()`` under ``"state_dict"``: a fairseq-signals
wav2vec 2.0 encoder with CoCa poolers (``ecg_encoder.*``), a Hugging Face ``BertLMHeadModel``
(``lm_model.*``), the text projections (``proj_t``, ``sent_proj``) and an open_clip multimodal decoder
(``text_decoder.*``). Every key is either renamed (``KEY_RULES``) or on the explicit drop list
(``DROPPED``: parts their model holds but never uses); anything else, anything missing and any wrong
shape is an error that lists the keys. An ECG-encoder-only checkpoint (``ecg_encoder.*`` alone, or
the same without that prefix) converts to an ECG-only model folder.

Lead order: the authors pretrained on MIMIC-IV-ECG in file order (I, II, III, aVR, aVF, aVL, V1-V6)
without reordering, so their first convolution reads aVF in channel 4. melp reads leads by name into
canonical order (aVL before aVF), so by default the converter permutes that convolution's input
channels (``lead_order="pretraining"``): canonical input then means what the model learned.
``lead_order="as-evaluated"`` keeps their channels as they are, which reproduces their downstream
evaluation (they fed PTB-XL order, i.e. canonical, to the MIMIC-order model).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from melp.atomic import atomic_folder, sha256
from melp.data.leads import CANONICAL_LEADS

if TYPE_CHECKING:  # torch loads only when a conversion runs: `melp convert --help` stays instant
    from torch import Tensor

# MIMIC-IV-ECG's file order, the order the authors' encoder was pretrained on
MIMIC_LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
LEAD_ORDERS = ("pretraining", "as-evaluated")
FIRST_CONV = "ecg_encoder.ecg_encoder.feature_extractor.conv_layers.0.0.weight"

_W2V = r"ecg_encoder\.ecg_encoder\."
_POOLERS = {"contrast": "beat_pooler", "caption": "caption_pooler"}
_BLOCKS = {"resblocks": "self_blocks", "cross_attn": "cross_blocks"}
_BLOCK_PARTS = {"ln_1": "norm1", "ln_1_kv": "norm_context", "ln_2": "norm2", "attn.out_proj": "attn.out",
                "mlp.c_fc": "mlp.0", "mlp.c_proj": "mlp.2"}

# (pattern on the authors' key, melp key template); "{qkv}" marks a packed q/k/v tensor to split in 3
KEY_RULES: list[tuple[str, str]] = [
    (r"logit_scale", "loss_fn.logit_scale.log_scale"),
    (r"ecg_encoder\.proj_contrast", "beat_proj"),
    (_W2V + r"feature_extractor\.conv_layers\.(\d+)\.0\.weight", r"ecg_encoder.features.layers.\1.0.weight"),
    (_W2V + r"feature_extractor\.conv_layers\.0\.2\.(weight|bias)", r"ecg_encoder.features.layers.0.1.\1"),
    (_W2V + r"layer_norm\.(weight|bias)", r"ecg_encoder.feature_norm.\1"),
    (_W2V + r"post_extract_proj\.(weight|bias)", r"ecg_encoder.proj.\1"),
    (_W2V + r"conv_pos\.pos_conv\.0\.(bias|parametrizations\.weight\.original[01])", r"ecg_encoder.pos_conv.conv.\1"),
    (_W2V + r"encoder\.layer_norm\.(weight|bias)", r"ecg_encoder.norm.\1"),
    (_W2V + r"encoder\.layers\.(\d+)\.self_attn\.(q|k|v|out)_proj\.(weight|bias)", r"ecg_encoder.layers.\1.attn.\2.\3"),
    (_W2V + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"ecg_encoder.layers.\1.norm1.\2"),
    (_W2V + r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"ecg_encoder.layers.\1.norm2.\2"),
    (_W2V + r"encoder\.layers\.(\d+)\.(fc[12])\.(weight|bias)", r"ecg_encoder.layers.\1.\2.\3"),
    (r"ecg_encoder\.ln_contrast\.(weight|bias)", r"beat_norm.\1"),
    (r"ecg_encoder\.ln_caption\.(weight|bias)", r"caption_norm.\1"),
    *[(rf"ecg_encoder\.attn_pool_{src}\.{a}", f"{dst}.{b}") for src, dst in _POOLERS.items() for a, b in (
        (r"query", "queries"),
        (r"ln_q\.(weight|bias)", r"norm_q.\1"),
        (r"ln_k\.(weight|bias)", r"norm_context.\1"),
        (r"attn\.(q|k|v)_proj_weight", r"attn.\1.weight"),
        (r"attn\.in_proj_(weight|bias)", r"attn.{qkv}.\1"),
        (r"attn\.out_proj\.(weight|bias)", r"attn.out.\1"),
    )],
    (r"lm_model\.bert\.(.+)", r"text_encoder.model.\1"),
    (r"proj_t\.([02])\.(weight|bias)", r"text_encoder.global_mlp.\1.\2"),
    (r"sent_proj\.(weight|bias)", r"text_encoder.sentence_proj.\1"),
    (r"text_decoder\.text_projection", "decoder.vocab.weight"),  # (width, vocab): transposed
    (r"text_decoder\.ln_final\.(weight|bias)", r"decoder.norm.\1"),
    *[(rf"text_decoder\.{src}\.(\d+)\.{re.escape(a)}\.(weight|bias)", rf"decoder.{dst}.\1.{b}.\2")
      for src, dst in _BLOCKS.items() for a, b in _BLOCK_PARTS.items()],
    *[(rf"text_decoder\.{src}\.(\d+)\.attn\.in_proj_(weight|bias)", rf"decoder.{dst}.\1.attn.{{qkv}}.\2")
      for src, dst in _BLOCKS.items()],
]

# Held by the authors' model, never used by it: dropped with the reason recorded in conversion.json.
DROPPED: list[tuple[str, str]] = [
    (_W2V + r"(mask_emb|quantizer\..+|project_q\..+|final_proj\..+)", "wav2vec 2.0 pretraining head"),
    (r"ecg_encoder\.logit_scale", "the ECG encoder's own temperature (unused by MELP)"),
    (r"ecg_encoder\.bn\..+", "an unused batch-norm of the ECG encoder"),
    (r"lm_model\.cls\..+", "the BERT masked-LM head (unused in stage 2)"),
    (r"lm_model\.bert\.embeddings\.position_ids", "a constant buffer older transformers saved"),
]
_COMPILED_RULES = [(re.compile(p), t) for p, t in KEY_RULES]
_COMPILED_DROPS = [(re.compile(p), why) for p, why in DROPPED]


class ConversionError(ValueError):
    """The checkpoint does not match the authors' model; the message lists the offending keys."""


def _listing(keys, limit: int = 20) -> str:
    keys = sorted(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def map_key(key: str) -> list[str] | str | None:
    """The melp key(s) of one authors' key: a list (one key, or q/k/v for a packed tensor), the drop
    reason (a string), or None when the key is unknown."""
    for pattern, template in _COMPILED_RULES:
        m = pattern.fullmatch(key)
        if m:
            target = m.expand(template)
            return [target.replace("{qkv}", p) for p in "qkv"] if "{qkv}" in target else [target]
    for pattern, why in _COMPILED_DROPS:
        if pattern.fullmatch(key):
            return why
    return None


# ----------------------------------------------------------------------------- reading


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], str]:
    """A checkpoint file -> (state dict, format). Lightning ``.ckpt`` (``{"state_dict": ...}``) or a
    bare state dict (``.ckpt``/``.pt``/``.bin``/``.safetensors``). Never unpickles arbitrary objects."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), "safetensors"
        except Exception as e:  # safetensors raises its own error types
            raise ConversionError(f"{path}: not a readable safetensors file ({e})") from e
    try:
        try:  # memory-mapped: the tensors are read as they are converted, not all at once
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the old (non-zip) torch format cannot be memory-mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConversionError(f"{path}: not a readable PyTorch checkpoint ({e})") from e
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return obj["state_dict"], "lightning"
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "state_dict"
    raise ConversionError(f"{path}: neither a Lightning checkpoint with a 'state_dict' nor a state dict of tensors")


def _normalise_prefix(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], str]:
    """(state with the authors' full-model key names, kind): ``full`` or ``ecg-only``."""
    if any(k.startswith(("lm_model.", "text_decoder.", "proj_t.", "sent_proj.")) for k in state):
        return state, "full"
    if all(k.startswith("ecg_encoder.") for k in state) and any(
            k.startswith(("ecg_encoder.attn_pool_", "ecg_encoder.ln_contrast")) for k in state):
        return state, "ecg-only"
    # the ECG encoder's own state dict (its keys without the "ecg_encoder." prefix)
    return {f"ecg_encoder.{k}": v for k, v in state.items()}, "ecg-only"


# ----------------------------------------------------------------------------- the model's shape


def _count(state: dict, pattern: str) -> int:
    found = {int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))}
    return max(found) + 1 if found else 0


def infer_config(state: dict[str, Tensor], text_model: str | Path | None):
    """The paper preset with the sizes this checkpoint was built with (layers, widths, queries)."""
    from melp.models.config import MELPConfig

    cfg = MELPConfig.from_preset("paper")
    cfg.name = "paper (converted from the authors' checkpoint)"

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ConversionError(f"checkpoint has no {key!r}: not the authors' MELP model")
        return tuple(state[key].shape)

    ecg = cfg.ecg
    ecg.in_channels, ecg.conv_dim = shape(FIRST_CONV)[1], shape(FIRST_CONV)[0]
    ecg.width = shape("ecg_encoder.ecg_encoder.post_extract_proj.weight")[0]
    ecg.layers = _count(state, _W2V + r"encoder\.layers\.(\d+)\.fc1\.weight")
    ecg.ffn_dim = shape("ecg_encoder.ecg_encoder.encoder.layers.0.fc1.weight")[0]
    ecg.heads = ecg.width // 64  # fairseq-signals sizes: 768 wide -> 12 heads, 1024 -> 16
    _, per_group, ecg.pos_conv_kernel = shape("ecg_encoder.ecg_encoder.conv_pos.pos_conv.0.parametrizations.weight.original1")
    ecg.pos_conv_groups = ecg.width // per_group
    cfg.poolers.n_beats, cfg.embed_dim = shape("ecg_encoder.attn_pool_contrast.query")
    cfg.poolers.caption_queries, cfg.decoder.width = shape("ecg_encoder.attn_pool_caption.query")
    if text_model is None:
        cfg.text = None
    else:
        cfg.text.source = str(text_model)
        cfg.decoder.layers = _count(state, r"text_decoder\.resblocks\.(\d+)\.ln_1\.weight")
    return cfg


# ----------------------------------------------------------------------------- mapping


def map_state_dict(state: dict[str, Tensor], targets: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """(melp state dict, {dropped key: reason}); raises ConversionError listing unknown, unexpected,
    missing and mis-shaped keys, all at once."""
    mapped, dropped, unknown, unexpected, shapes = {}, {}, [], [], []
    for key, value in state.items():
        target = map_key(key)
        if target is None:
            unknown.append(key)
            continue
        if isinstance(target, str):
            dropped[key] = target
            continue
        if key.endswith("text_projection"):
            value = value.T.contiguous()
        # a packed q/k/v tensor becomes three tensors of their own (no shared storage on disk)
        parts = [p.clone() for p in value.chunk(3, dim=0)] if len(target) == 3 else (value,)
        for name, part in zip(target, parts):
            if name not in targets:
                unexpected.append(f"{key} -> {name}")
            elif tuple(part.shape) != tuple(targets[name].shape):
                shapes.append(f"{key} {tuple(value.shape)} (melp {name} wants {tuple(targets[name].shape)})")
            else:
                mapped[name] = part
    missing = sorted(set(targets) - set(mapped))
    problems = []
    if unknown:
        problems.append(f"{len(unknown)} key(s) not in the authors' model: {_listing(unknown)}")
    if unexpected:
        problems.append(f"{len(unexpected)} key(s) beyond this model's size: {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} key(s) of the wrong shape: {_listing(shapes)}")
    if missing:
        problems.append(f"{len(missing)} weight(s) missing from the checkpoint: {_listing(missing)}")
    if problems:
        raise ConversionError("; ".join(problems))
    return mapped, dropped


def lead_permutation(lead_order: str) -> list[int]:
    """Input channel c of the converted model reads channel ``perm[c]`` of the authors' model."""
    if lead_order not in LEAD_ORDERS:
        raise ValueError(f"lead_order must be one of {LEAD_ORDERS}, got {lead_order!r}")
    if lead_order == "as-evaluated":
        return list(range(len(CANONICAL_LEADS)))
    return [MIMIC_LEADS.index(lead) for lead in CANONICAL_LEADS]


def convert_official(checkpoint: str | Path, out_dir: str | Path, text_model: str | Path | None = None,
                     lead_order: str = "pretraining") -> Path:
    """The authors' checkpoint -> a melp model folder (``melp.load``-able) with ``conversion.json``.

    ``text_model``: a heart_bert-style folder (BERT config and tokenizer; its weights, if any, are not
    read: the text tower's weights are in the checkpoint). Needed for a full checkpoint; an
    ECG-encoder-only checkpoint converts without it to an ECG-only model."""
    import torch

    from melp.models.melp import MELP

    checkpoint, out_dir = Path(checkpoint), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} exists and is not empty; choose another output folder")
    perm = lead_permutation(lead_order)
    state, fmt = read_state_dict(checkpoint)
    state, kind = _normalise_prefix(state)
    if kind == "full" and text_model is None:
        raise ConversionError(f"{checkpoint} holds the whole MELP model: give its text model folder "
                              "(--text-model, e.g. the authors' heart_bert: config and tokenizer)")
    if FIRST_CONV in state:
        state[FIRST_CONV] = state[FIRST_CONV][:, perm]
    cfg = infer_config(state, text_model if kind == "full" else None)
    with torch.device("meta"):  # shapes only: every weight comes from the checkpoint (no second copy)
        model = MELP(cfg, load_text_weights=False)
    targets = model.state_dict()
    n_keys = len(state)
    if kind == "ecg-only":  # an encoder checkpoint has no temperature: keep the usual initial one
        state["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    mapped, dropped = map_state_dict(state, targets)
    del state
    model.load_state_dict(mapped, strict=True, assign=True)
    del mapped

    report = {
        "source": str(checkpoint.resolve()), "sha256": sha256(checkpoint), "format": fmt, "kind": kind,
        "text_model": None if kind != "full" else str(Path(text_model).resolve()),
        "lead_order": lead_order,
        "input_channel_from": {lead: MIMIC_LEADS[i] for lead, i in zip(CANONICAL_LEADS, perm)},
        "keys": {"checkpoint": n_keys, "mapped": n_keys - len(dropped), "dropped": len(dropped)},
        "dropped": dropped,
    }
    with atomic_folder(out_dir) as tmp:
        model.write_files(tmp)
        (tmp / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
    return out_dir


# ----------------------------------------------------------------------------- command line

HELP = """\
Convert the authors' pretrained MELP (HKU-MedAI/MELP) into a melp model folder.

  melp convert official MELP.ckpt --text-model heart_bert/ --out models/melp-official

MELP.ckpt: their Lightning checkpoint, or a bare state dict (.ckpt/.pt/.bin/.safetensors); an
ECG-encoder-only checkpoint (e.g. fuyingw/MELP_Encoder) converts without --text-model to a model
for probing, fine-tuning and embedding. heart_bert/: the authors' stage-1 text model folder
(fuyingw/heart_bert: config.json and the tokenizer files; its weights are not read). Download both
beforehand: nothing is fetched here. Then, e.g.:

  melp classify record.hea --model models/melp-official --labels "atrial fibrillation" "sinus rhythm"
"""


def add_arguments(parser) -> None:
    import argparse

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = HELP
    parser.add_argument("source", choices=["official"], help="whose checkpoint: 'official' = the authors'")
    parser.add_argument("checkpoint", help="the checkpoint file (.ckpt, .pt, .bin or .safetensors)")
    parser.add_argument("--text-model", default=None,
                        help="the authors' text model folder (heart_bert: BERT config + tokenizer); "
                             "required for a whole-model checkpoint")
    parser.add_argument("--out", required=True, help="the model folder to write (must not exist or be empty)")
    parser.add_argument("--lead-order", choices=LEAD_ORDERS, default="pretraining",
                        help="pretraining (default): canonical leads mean what the model learned on "
                             "MIMIC-IV-ECG (aVL/aVF input channels swapped); as-evaluated: keep the "
                             "channels as the authors' downstream evaluation fed them (reproduces their "
                             "published numbers)")


def run(args) -> int:
    import time

    start = time.perf_counter()  # a ConversionError is a ValueError: the CLI prints it in one line
    out = convert_official(args.checkpoint, args.out, args.text_model, args.lead_order)
    report = json.loads((out / "conversion.json").read_text())
    print(f"converted {report['kind']} checkpoint {args.checkpoint} -> {out} "
          f"({report['keys']['mapped']} keys mapped, {report['keys']['dropped']} unused keys dropped, "
          f"lead order: {report['lead_order']}) in {time.perf_counter() - start:.1f} s")
    return 0

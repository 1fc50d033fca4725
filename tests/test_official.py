"""The authors' checkpoint converts exactly: every output matches what their own code computed.

``shared/fixtures/official-melp`` holds the outputs of the authors' implementation for weights given
by a formula (tests/official_checkpoint.py builds that checkpoint). The conversion runs through the
CLI, in a child process that reports its peak memory.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import melp
from melp.models import attention
from melp.models.official import ConversionError, convert_official, read_state_dict
from official_checkpoint import build_state_dict, fixture_dir, write_lightning_checkpoint

FIXTURE = fixture_dir()
pytestmark = pytest.mark.skipif(FIXTURE is None, reason="shared/fixtures/official-melp not found "
                                "(set MELP_OFFICIAL_FIXTURE or MELP_REAL_DATA beside shared/fixtures)")
CANONICAL_FROM_MIMIC = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # aVL before aVF
EMB_TOL, LOSS_TOL = 1e-4, 1e-3

CONVERT = """
import resource, sys
from melp.cli import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    ckpt = write_lightning_checkpoint(FIXTURE, root / "melp.ckpt")
    out = root / "model"
    proc = subprocess.run([sys.executable, "-c", CONVERT, "convert", "official", str(ckpt),
                           "--text-model", str(FIXTURE / "text_model"), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    peak = int(proc.stdout.split("PEAK_KB")[1].split()[0]) * 1024
    return {"ckpt": ckpt, "out": out, "peak": peak, "model": melp.load(out), "stdout": proc.stdout}


@pytest.fixture(scope="module")
def expected():
    inputs = np.load(FIXTURE / "inputs.npz")
    return {"inputs": inputs, "outputs": np.load(FIXTURE / "outputs.npz"),
            "texts": json.loads((FIXTURE / "reports.json").read_text()),
            "ecg": torch.from_numpy(inputs["ecg_mimic_order"][:, CANONICAL_FROM_MIMIC].copy()),
            "lengths": inputs["attention_mask"].sum(axis=1)}


@pytest.fixture(scope="module")
def computed(converted, expected):
    model = converted["model"]
    with torch.no_grad():
        ecg = model.encode_ecg(expected["ecg"])
        tokens = model.tokenize(expected["texts"]["reports"])
        text = model.encode_text(tokens)
        logits = model.decoder.vocab(model.decoder.hidden(text["states"][:, :-1], ecg["tokens"]))
        losses = model(expected["ecg"], tokens)
    return {"ecg": ecg, "tokens": tokens, "text": text, "logits": logits, "losses": losses}


def close(actual, wanted, tol):
    actual = np.asarray(actual.detach() if isinstance(actual, torch.Tensor) else actual, dtype=np.float64)
    np.testing.assert_allclose(actual, np.asarray(wanted, dtype=np.float64), rtol=0, atol=tol)


def real(array, lengths, cut: int = 0):
    """The positions of each row that are real tokens (the reference pads to 127), concatenated."""
    return np.concatenate([np.asarray(array[b, : n - cut]) for b, n in enumerate(lengths)])


def test_conversion_report_and_memory(converted):
    report = json.loads((converted["out"] / "conversion.json").read_text())
    assert report["kind"] == "full" and report["format"] == "lightning"
    assert report["keys"] == {"checkpoint": 550, "mapped": 531, "dropped": 19}
    assert "ecg_encoder.ecg_encoder.quantizer.vars" in report["dropped"]
    assert "lm_model.cls.predictions.decoder.weight" in report["dropped"]
    assert report["input_channel_from"]["aVL"] == "aVL" and report["lead_order"] == "pretraining"
    size = converted["ckpt"].stat().st_size
    assert converted["peak"] < 3 * size, f"conversion peaked at {converted['peak'] / size:.2f}x the checkpoint"


def test_ecg_embeddings_match_the_authors(computed, expected):
    out, ecg = expected["outputs"], computed["ecg"]
    close(ecg["embedding"], out["ecg_global"], EMB_TOL)
    close(ecg["beats"], out["ecg_beats"], EMB_TOL)
    close(ecg["tokens"], out["ecg_tokens"], EMB_TOL)
    close(ecg["features"], out["ecg_features"], EMB_TOL)


def test_tokens_and_text_embeddings_match_the_authors(computed, expected):
    inputs, out, n = expected["inputs"], expected["outputs"], expected["lengths"]
    ids = computed["tokens"]["input_ids"].numpy()
    np.testing.assert_array_equal(real(ids, n), real(inputs["input_ids"], n))
    text = computed["text"]
    close(text["embedding"], out["text_global"], EMB_TOL)
    close(real(text["states"], n), real(out["text_token_states"], n), EMB_TOL)
    np.testing.assert_array_equal(text["sentence_mask"].sum(dim=1).numpy(), out["sentence_counts"])
    sentences = torch.cat([s[m] for s, m in zip(text["sentences"], text["sentence_mask"])])
    close(sentences, out["sentence_embs"], EMB_TOL)


def test_zero_shot_through_the_raw_signal_api(converted, expected):
    model, out = converted["model"], expected["outputs"]
    close(model.embed_text(expected["texts"]["prompts"]), out["prompt_global"], EMB_TOL)
    scores = model.zero_shot(expected["ecg"].numpy(), expected["texts"]["prompts"], fs=500)
    close(scores, out["zero_shot"], EMB_TOL)


def test_caption_log_probabilities_match_the_authors(computed, expected):
    out, n = expected["outputs"], expected["lengths"]
    logp = computed["logits"].log_softmax(dim=-1)
    labels = torch.from_numpy(out["caption_labels"])
    target_logp = logp.gather(-1, labels[:, : logp.shape[1], None])[..., 0]
    close(real(target_logp, n, cut=1), real(out["caption_target_logprob"], n, cut=1), LOSS_TOL)
    close(computed["logits"][:, :5], out["caption_logits_first5"], LOSS_TOL)
    top5 = computed["logits"].topk(5, dim=-1).indices.numpy()
    np.testing.assert_array_equal(real(top5, n, cut=1), real(out["caption_top5"], n, cut=1))


def test_each_loss_term_matches_the_authors_unweighted(computed, expected):
    out, losses = expected["outputs"], computed["losses"]
    close(losses["loss_global"], out["loss_clip_w1"] / 1.0, LOSS_TOL)
    close(losses["loss_caption"], out["loss_caption_w2"] / 2.0, LOSS_TOL)
    close(losses["loss_local"], out["loss_local_w02"] / 0.2, LOSS_TOL)
    close(losses["loss"], out["loss_total"], LOSS_TOL)
    close(losses["logit_scale"], out["logit_scale"], 1e-5)


def test_as_evaluated_lead_order_keeps_the_authors_channels(converted, expected, tmp_path):
    out = convert_official(converted["ckpt"], tmp_path / "as-eval", FIXTURE / "text_model", "as-evaluated")
    model = melp.load(out)
    mimic = torch.from_numpy(expected["inputs"]["ecg_mimic_order"])
    with torch.no_grad():
        close(model.encode_ecg(mimic)["embedding"], expected["outputs"]["ecg_global"], EMB_TOL)
        swapped = model.encode_ecg(expected["ecg"])["embedding"]  # canonical input: aVL/aVF trade places
    assert float((swapped - torch.from_numpy(expected["outputs"]["ecg_global"])).abs().max()) > 1e-3


# ----------------------------------------------------------------------------- ECG-only and errors


@pytest.fixture(scope="module")
def state():
    return build_state_dict(FIXTURE)


def test_ecg_encoder_only_checkpoint_gives_an_ecg_model(state, expected, tmp_path):
    from safetensors.torch import save_file

    # the ECG encoder's own state dict, without the "ecg_encoder." prefix, as a safetensors file
    encoder = {k[len("ecg_encoder."):]: v.contiguous() for k, v in state.items() if k.startswith("ecg_encoder.")}
    save_file(encoder, str(tmp_path / "encoder.safetensors"))
    out = convert_official(tmp_path / "encoder.safetensors", tmp_path / "ecg-only")
    model = melp.load(out)
    assert not model.config.has_text and json.loads((out / "conversion.json").read_text())["kind"] == "ecg-only"
    with torch.no_grad():
        close(model.encode_ecg(expected["ecg"])["embedding"], expected["outputs"]["ecg_global"], EMB_TOL)
    assert model.ecg_features(expected["ecg"].numpy(), fs=500).shape == (3, 256)
    with pytest.raises(ValueError, match="no text tower"):
        model.zero_shot(expected["ecg"].numpy(), ["sinus rhythm"], fs=500)
    proc = subprocess.run([sys.executable, "-m", "melp.cli", "classify", str(tmp_path / "any.hea"), "--model",
                           str(out), "--labels", "sinus rhythm"], capture_output=True, text=True)
    assert proc.returncode != 0 and "no text tower" in proc.stderr and "Traceback" not in proc.stderr


def _convert_error(state, tmp_path, **change) -> str:
    state = dict(state)
    for key, value in change.items():
        if value is None:
            del state[key.replace("__", ".")]
        else:
            state[key.replace("__", ".")] = value
    torch.save({"state_dict": state}, tmp_path / "bad.ckpt")
    with pytest.raises(ConversionError) as err:
        convert_official(tmp_path / "bad.ckpt", tmp_path / "out", FIXTURE / "text_model")
    assert not (tmp_path / "out").exists()  # nothing half-written
    return str(err.value)


def test_unknown_missing_and_misshaped_keys_are_named(state, tmp_path):
    message = _convert_error(state, tmp_path, extra__adapter__weight=torch.zeros(3))
    assert "not in the authors' model: extra.adapter.weight" in message
    message = _convert_error(state, tmp_path, sent_proj__bias=None)
    assert "missing from the checkpoint: text_encoder.sentence_proj.bias" in message
    message = _convert_error(state, tmp_path, proj_t__2__weight=torch.zeros(256, 128))
    assert "wrong shape: proj_t.2.weight (256, 128)" in message


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConversionError, match="junk.ckpt: not a readable PyTorch checkpoint"):
        read_state_dict(tmp_path / "junk.ckpt")


@pytest.mark.parametrize("amx", [False, True], ids=["blocked attention", "flash attention"])
def test_bf16_embeddings_stay_within_cosine_0999_of_fp32(converted, expected, amx, monkeypatch):
    """The fast inference path (bf16 autocast) on the authors' paper-size model: every ECG's
    embedding and probe features within cosine 0.999 of fp32, and zero-shot scores within 0.01, with
    either attention path (blocked on CPUs without AMX, SDPA's flash kernel with AMX)."""
    monkeypatch.setattr(attention, "cpu_has_amx", lambda: amx)
    model, ecg = converted["model"], expected["ecg"].numpy()
    prompts = expected["texts"]["prompts"]
    fp32 = {"emb": model.embed_ecg(ecg), "feat": model.ecg_features(ecg), "zs": model.zero_shot(ecg, prompts)}
    model.set_precision("bf16")
    try:
        bf16 = {"emb": model.embed_ecg(ecg), "feat": model.ecg_features(ecg), "zs": model.zero_shot(ecg, prompts)}
    finally:
        model.set_precision("fp32")

    def cosine(a, b):
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    assert cosine(bf16["emb"], fp32["emb"]).min() >= 0.999
    assert cosine(bf16["feat"], fp32["feat"]).min() >= 0.999
    assert np.abs(bf16["zs"] - fp32["zs"]).max() < 0.01
    assert not np.array_equal(bf16["emb"], fp32["emb"])  # bf16 did run

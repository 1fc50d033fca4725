"""The MELP model: sizes, shapes, causality, the model folder, and learning a few pairs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import melp
from melp.models.config import MELPConfig
from melp.models.ecg_encoder import ECGEncoder
from melp.models.poolers import AttentionalPooler
from modelfixtures import small_config, small_text_model

REPORTS = ["sinus rhythm. normal ecg.", "atrial fibrillation. abnormal ecg."]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    return small_text_model(tmp_path_factory.mktemp("text"))


def toy_ecgs(n: int = 4, fs: int = 500, seconds: float = 2.0) -> np.ndarray:
    """Even n: regular narrow spikes ("sinus"); odd n: irregular spikes on a wavy baseline ("AF")."""
    t = np.arange(int(fs * seconds)) / fs
    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        if i % 2 == 0:
            beats = np.arange(0.2, seconds, 0.6)
        else:
            beats = np.cumsum(rng.uniform(0.25, 0.9, 20))
            beats = beats[beats < seconds]
        s = np.exp(-(((t[:, None] - beats[None]) / 0.02) ** 2)).sum(axis=1)
        if i % 2 == 1:
            s = s + 0.2 * np.sin(2 * np.pi * 6 * t)
        x = np.stack([s * (1 + 0.1 * k) for k in range(12)]) + 0.05 * rng.standard_normal((12, t.size))
        out.append(x.astype(np.float32))
    return np.stack(out)


def test_paper_sizes_match_the_reference():
    cfg = MELPConfig.from_preset("paper")
    with torch.device("meta"):
        encoder = ECGEncoder(cfg.ecg)
        poolers = [AttentionalPooler(cfg.decoder.width, cfg.ecg.width, 8, 128),
                   AttentionalPooler(cfg.embed_dim, cfg.ecg.width, 8, cfg.poolers.n_beats)]
    n_encoder = sum(p.numel() for p in encoder.parameters())
    n_poolers = sum(p.numel() for m in poolers for p in m.parameters()) + cfg.embed_dim ** 2
    assert 62e6 <= n_encoder <= 67e6
    assert 64.5e6 <= n_encoder + n_poolers <= 65.5e6  # DESIGN 1.1: 65.1 M with the two poolers
    assert encoder.n_frames(5000) == 312
    sizes = {}
    for name in ("tiny", "base", "large"):
        with torch.device("meta"):
            sizes[name] = sum(p.numel() for p in ECGEncoder(MELPConfig.from_preset(name).ecg).parameters())
    assert sizes["tiny"] < 5e6 < n_encoder < sizes["base"] < sizes["large"]


def test_config_roundtrip_and_errors(tmp_path):
    cfg = MELPConfig.from_preset("tiny")
    assert MELPConfig.from_dict(cfg.to_dict()) == cfg
    cfg.to_yaml(tmp_path / "c.yaml")
    assert MELPConfig.from_yaml(tmp_path / "c.yaml") == cfg
    (tmp_path / "bad.yaml").write_text("ecg:\n  widht: 3\n")
    with pytest.raises(ValueError, match="bad.yaml.*widht"):
        MELPConfig.from_yaml(tmp_path / "bad.yaml")
    with pytest.raises(ValueError, match="unknown model preset"):
        MELPConfig.from_preset("huge")


def test_tokenize_gives_the_reference_layout_and_marks_sentences(text_dir):
    model = melp.MELP(small_config(text_dir))
    enc, max_length = model.text_encoder, model.config.text.max_length
    tok = model.tokenize(["sinus rhythm. normal ecg.", "sinus rhythm"])
    ids, mask, pos, sid = tok["input_ids"], tok["attention_mask"], tok["position_ids"], tok["sentence_ids"]
    assert ids.shape[1] == int(mask.sum(1).max())  # padded to the longest, not to max_length
    for b in range(2):
        n = int(mask[b].sum())  # [BOS] text [SEP] [CLS]: the [CLS] sits where the reference puts it
        assert ids[b, 0] == enc.bos_id and ids[b, n - 2] == enc.end_id == enc.tokenizer.sep_token_id
        assert ids[b, n - 1] == enc.tokenizer.cls_token_id and pos[b, n - 1] == max_length - 1
        assert pos[b, : n - 1].tolist() == list(range(n - 1))
        assert (ids[b, n:] == enc.pad_id).all() and (sid[b, n - 2:] == -1).all() and sid[b, 0] == -1
    # a sentence ends after each '.', which belongs to it; a report without one is one sentence
    assert sid[0].max() == 1 and sid[1].max() == 0
    words = enc.tokenizer.convert_ids_to_tokens(ids[0][sid[0] == 1].tolist())
    assert words[0] == "normal" and words[-1] == "." and "sinus" not in words
    # text after the last '.': a sentence in melp's presets, none in the reference's (paper)
    assert model.tokenize(["sinus rhythm. normal ecg"])["sentence_ids"].max() == 1
    model.config.text.sentence_tail = False
    assert model.tokenize(["sinus rhythm. normal ecg"])["sentence_ids"].max() == 0
    model.config.text.max_length = 7
    short = model.tokenize(["sinus rhythm. normal ecg. left axis deviation."])
    assert short["input_ids"].shape[1] == 7 and short["input_ids"][0, -2:].tolist() == [
        enc.end_id, enc.tokenizer.cls_token_id]


def test_caption_targets_stop_at_sep_and_skip_the_cls(text_dir):
    from melp.models.melp import caption_targets

    model = melp.MELP(small_config(text_dir))
    tok = model.tokenize(["sinus rhythm. normal ecg.", "sinus rhythm"])
    targets = caption_targets(tok)
    for b in range(2):
        n = int(tok["attention_mask"][b].sum())
        assert targets[b, : n - 2].tolist() == tok["input_ids"][b, 1: n - 1].tolist()  # up to and incl. [SEP]
        assert (targets[b, n - 2:] == -100).all()  # the [CLS] and padding are no target


def test_forward_shapes_losses_and_frozen_layers(text_dir):
    torch.manual_seed(0)
    model = melp.MELP(small_config(text_dir))
    x = torch.rand(3, 12, 2000)
    e = model.encode_ecg(x)
    d = model.config.embed_dim
    assert e["embedding"].shape == (3, d) and e["beats"].shape == (3, 13, d) and e["features"].shape == (3, d)
    assert e["tokens"].shape == (3, 8, model.config.decoder.width)
    assert torch.allclose(e["embedding"].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(e["embedding"], torch.nn.functional.normalize(e["beats"].mean(1), dim=-1))
    out = model(x, model.tokenize([*REPORTS, "sinus bradycardia"]))
    assert set(out) == {"loss", "loss_global", "loss_caption", "loss_local", "logit_scale"}
    w = model.config.loss
    expected = w.global_weight * out["loss_global"] + w.caption_weight * out["loss_caption"] + w.local_weight * out["loss_local"]
    assert torch.isfinite(out["loss"]) and torch.allclose(out["loss"], expected)
    out["loss"].backward()
    layers = model.text_encoder.model.encoder.layer
    assert all(p.grad is None for p in layers[0].parameters())  # first half frozen
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in layers[1].parameters())
    assert model.ecg_encoder.features.layers[0][0].weight.grad.abs().sum() > 0
    assert model.decoder.vocab.weight.grad.abs().sum() > 0


def test_a_caption_vocabulary_of_some_tokens_is_the_full_softmax_with_the_others_at_minus_infinity(text_dir):
    """``decoder.output_tokens``: the caption loss is the full vocabulary's cross-entropy with every
    other logit at -inf, a target outside the tokens counts as [UNK], and generation writes only them."""
    from melp.models.generation import generate_ids
    from melp.models.melp import caption_targets

    torch.manual_seed(0)
    full = melp.MELP(small_config(text_dir)).eval()
    tok = full.text_encoder.tokenizer
    kept = sorted({*tok(REPORTS, add_special_tokens=False)["input_ids"][0],
                   *tok(REPORTS, add_special_tokens=False)["input_ids"][1], tok.sep_token_id, tok.unk_token_id})
    cfg = small_config(text_dir)
    cfg.decoder.output_tokens = kept
    part = melp.MELP(cfg).eval()
    state = full.state_dict()
    state["decoder.vocab.weight"] = state["decoder.vocab.weight"][kept]
    part.load_state_dict(state)
    assert part.decoder.vocab.weight.shape[0] == len(kept) < full.decoder.vocab.weight.shape[0]

    x = torch.rand(3, 12, 1000)
    tokens = full.tokenize([*REPORTS, "left axis. normal ecg."])
    unseen = sorted(set(tok("left axis.", add_special_tokens=False)["input_ids"]) - set(kept))
    assert len(unseen) == 2  # "left", "axis"
    with torch.no_grad():
        ecg_tokens = full.encode_ecg(x)["tokens"]
        states = full.encode_text(tokens)["states"][:, :-1]
        targets = caption_targets(tokens)
        keep = targets != -100
        logits = full.decoder.vocab(full.decoder.hidden(states, ecg_tokens))[keep]
        outside = torch.ones(logits.shape[1], dtype=torch.bool)
        outside[kept] = False
        expected_targets = targets[keep].masked_fill(torch.isin(targets[keep], torch.tensor(unseen)), tok.unk_token_id)
        expected = F.cross_entropy(logits.masked_fill(outside, float("-inf")), expected_targets)
        torch.testing.assert_close(part(x, tokens)["loss_caption"], expected, rtol=1e-5, atol=1e-6)
        h = part.decoder.hidden(states, ecg_tokens)
        token_logits = part.decoder.token_logits(h)
        assert token_logits.shape[-1] == len(tok)
        assert torch.isneginf(token_logits[..., outside]).all()
        torch.testing.assert_close(token_logits[..., kept], full.decoder.vocab(h)[..., kept])
        generated = generate_ids(part, x, beams=2, max_len=12)
    assert all(set(ids) <= set(kept) for ids in generated) and any(generated)

    with pytest.raises(ValueError, match="UNK"):
        cfg.decoder.output_tokens = [i for i in kept if i != tok.unk_token_id]
        melp.MELP(cfg)


def test_feature_extractor_gradient_is_scaled(text_dir):
    cfg = small_config(text_dir).ecg
    grads = {}
    for scale in (1.0, 0.1):
        cfg.feature_grad_scale, cfg.dropout, cfg.attention_dropout = scale, 0.0, 0.0
        torch.manual_seed(0)
        enc = ECGEncoder(cfg)
        enc(torch.rand(2, 12, 2000)).sum().backward()
        grads[scale] = enc.features.layers[-1][0].weight.grad.clone()
    torch.testing.assert_close(grads[0.1], 0.1 * grads[1.0], rtol=1e-4, atol=1e-8)


def test_text_encoder_and_decoder_are_causal(text_dir):
    torch.manual_seed(0)
    model = melp.MELP(small_config(text_dir)).eval()
    tok = model.tokenize(["sinus rhythm with first degree av block. normal ecg."])
    ids = tok["input_ids"]
    t = 3
    changed = ids.clone()
    changed[0, t + 1] = model.text_encoder.tokenizer.convert_tokens_to_ids("tachycardia")
    assert changed[0, t + 1] != ids[0, t + 1]
    ecg_tokens = model.encode_ecg(torch.rand(1, 12, 2000))["tokens"]
    with torch.no_grad():
        states = [model.text_encoder.states(i, tok["attention_mask"]) for i in (ids, changed)]
        logits = [model.decoder.vocab(model.decoder.hidden(s[:, :-1], ecg_tokens)) for s in states]
    torch.testing.assert_close(states[0][:, : t + 1], states[1][:, : t + 1], rtol=0, atol=1e-5)
    torch.testing.assert_close(logits[0][:, : t + 1], logits[1][:, : t + 1], rtol=0, atol=1e-5)
    # the change is seen from t+1 on, including by the final [CLS] (it attends to every token)
    assert (states[0][:, t + 1] - states[1][:, t + 1]).abs().max() > 1e-3
    assert (states[0][:, -1] - states[1][:, -1]).abs().max() > 1e-3


@pytest.fixture(scope="module")
def overfit_model(text_dir):
    """A small model trained for a few dozen steps on four ECG-report pairs."""
    torch.manual_seed(0)
    cfg = small_config(text_dir)
    cfg.ecg.dropout = cfg.ecg.attention_dropout = 0.0
    model = melp.MELP(cfg)
    x = toy_ecgs(4)
    batch = torch.from_numpy(np.concatenate([melp.preprocess(s, 500, model.config.preprocess) for s in x]))
    tokens = model.tokenize(REPORTS * 2)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3, fused=True)
    warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 8))  # no collapse
    for _ in range(40):
        opt.zero_grad()
        model(batch, tokens)["loss"].backward()
        opt.step()
        warmup.step()
    return model.eval(), x


def test_zero_shot_ranks_the_matching_description_first(overfit_model):
    model, x = overfit_model
    scores = model.zero_shot(x, {"normal": "sinus rhythm. normal ecg.", "af": ["atrial fibrillation. abnormal ecg."]})
    assert scores.shape == (4, 2)
    assert (scores.argmax(axis=1) == np.array([0, 1, 0, 1])).all()


def test_generate_reproduces_the_training_reports(overfit_model):
    model, x = overfit_model
    expected = [REPORTS[i % 2] for i in range(4)]
    assert model.generate(x, beams=1) == expected
    assert model.generate(x, beams=3) == expected


def test_save_load_gives_identical_outputs(overfit_model, tmp_path, monkeypatch):
    model, x = overfit_model
    model.save_pretrained(tmp_path / "m")
    for name in ("config.json", "model.safetensors", "preprocess.json", "text_model/config.json",
                 "text_model/tokenizer.json"):
        assert (tmp_path / "m" / name).is_file()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = melp.load(tmp_path / "m")
    assert loaded.text_encoder.bos_id == model.text_encoder.bos_id
    np.testing.assert_array_equal(loaded.embed_ecg(x), model.embed_ecg(x))
    np.testing.assert_array_equal(loaded.ecg_features(x), model.ecg_features(x))
    np.testing.assert_array_equal(loaded.embed_text(REPORTS), model.embed_text(REPORTS))
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        melp.load(tmp_path / "m")


def test_embed_ecg_applies_preprocessing(overfit_model):
    model, x = overfit_model
    ref = model.embed_ecg(x[:2])
    # torch input, another rate: resampled back to 500 Hz gives (nearly) the same embedding
    from scipy.signal import resample_poly

    at_250 = resample_poly(x[:2], 1, 2, axis=-1).astype(np.float32)
    np.testing.assert_allclose(model.embed_ecg(torch.from_numpy(at_250), fs=250), ref, atol=0.05)
    # several windows: the embedding is the normalised mean of the windows' embeddings
    model.config.preprocess = melp.PreprocessConfig(seconds=2.0, windows="all")
    try:
        both = model.embed_ecg(np.concatenate([x[0], x[1]], axis=-1)[None])
    finally:
        model.config.preprocess = melp.PreprocessConfig(seconds=2.0)
    mean = ref.mean(axis=0)
    np.testing.assert_allclose(both[0], mean / np.linalg.norm(mean), atol=1e-5)
    with pytest.raises(ValueError, match=r"\(12, T\)"):
        model.embed_ecg(np.zeros((2, 8, 5000), np.float32))


def test_bf16_autocast_trains_and_embeds(text_dir):
    """The paper trains in bf16 mixed precision; the raw-signal API must still return float32."""
    torch.manual_seed(0)
    model = melp.MELP(small_config(text_dir))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(2, 12, 2000), model.tokenize(REPORTS))
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        emb = model.embed_ecg(toy_ecgs(2))
    assert emb.dtype == np.float32 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3)
    assert model.ecg_encoder.proj.weight.grad.abs().sum() > 0


def test_a_text_folder_without_weights_gives_a_random_tower_with_a_warning(text_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(text_dir, bare, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    with pytest.warns(UserWarning, match="holds no weights"):
        model = melp.MELP(small_config(bare))
    assert model.text_encoder.model.config.hidden_size == 32


def test_text_dropout_setting_reaches_every_text_dropout(text_dir):
    def text_dropouts(model):
        from melp.models.dropout import Dropout  # melp's, which replaces the text model's nn.Dropout

        return {m.p for m in model.text_encoder.model.modules() if isinstance(m, (torch.nn.Dropout, Dropout))}

    assert text_dropouts(melp.MELP(small_config(text_dir))) == {0.1}  # the BERT config's own
    cfg = small_config(text_dir)
    cfg.text.dropout = 0.0
    model = melp.MELP(cfg).train()
    assert text_dropouts(model) == {0.0} and model.text_encoder.model.config.attention_probs_dropout_prob == 0.0
    tokens = model.tokenize(REPORTS)
    with torch.no_grad():  # no dropout: training mode gives the same states twice
        a, b = (model.text_encoder.states(tokens["input_ids"], tokens["attention_mask"]) for _ in range(2))
    assert torch.equal(a, b)


def test_cached_frozen_text_states_give_the_same_losses_and_gradients(text_dir):
    cfg = small_config(text_dir)
    cfg.text.dropout = 0.0
    torch.manual_seed(0)
    plain = melp.MELP(cfg).train()
    cfg.text.cache_frozen_states = True
    cached = melp.MELP(cfg).train()
    cached.load_state_dict(plain.state_dict())
    x = torch.rand(3, 12, 2000)
    reports = ["Sinus rhythm. Normal ECG.", "Atrial fibrillation. Left axis deviation. Abnormal ECG.",
               "Sinus rhythm with 1st degree A-V block. Abnormal ECG."]
    first = plain.tokenize(reports)
    mixed = plain.tokenize([reports[1], "Sinus bradycardia. Borderline ECG.", reports[0]])  # cached, new, cached

    def loss_and_grads(model, tokens):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)  # the same ECG dropout in both models
        loss = model(x, tokens)["loss"]
        loss.backward()
        return loss, {n: p.grad for n, p in model.named_parameters() if p.grad is not None}

    for tokens in (first, mixed, first):
        (loss_p, grads_p), (loss_c, grads_c) = loss_and_grads(plain, tokens), loss_and_grads(cached, tokens)
        assert torch.allclose(loss_p, loss_c, atol=1e-6)
        assert grads_p.keys() == grads_c.keys()
        assert all(torch.allclose(grads_p[n], grads_c[n], atol=1e-6) for n in grads_p)
    assert len(cached.text_encoder._frozen_cache) == 4  # each distinct report once
    with torch.no_grad():  # new frozen weights (e.g. load_state_dict): the cache starts again
        for model in (plain, cached):
            model.text_encoder.model.encoder.layer[0].output.dense.weight.mul_(1.5)
    assert torch.allclose(loss_and_grads(plain, mixed)[0], loss_and_grads(cached, mixed)[0], atol=1e-6)
    assert len(cached.text_encoder._frozen_cache) == 3
    cached.eval()  # outside training nothing is cached (a retrieval over many reports)
    with torch.no_grad():
        cached.text_encoder(cached.tokenize(["Atrial fibrillation. Abnormal ECG."]))
    assert len(cached.text_encoder._frozen_cache) == 3


def test_length_groups_give_the_same_losses_and_gradients(text_dir):
    """Reports run in groups sorted by length, each padded to its own longest: the losses and every
    gradient as with the whole batch at one width, with the ECG encoder's dropout on, with and without
    the frozen-state cache, and with more groups than reports."""
    from melp.models.melp import length_groups

    reports = ["Sinus rhythm. Normal ECG.", "Atrial fibrillation with rapid ventricular response. Left axis "
               "deviation. Nonspecific T wave abnormality. Abnormal ECG.", "Sinus bradycardia.",
               "Sinus rhythm with 1st degree A-V block. Inferior infarct, age undetermined. Abnormal ECG.",
               "Borderline ECG.", "Sinus tachycardia. Left ventricular hypertrophy. Abnormal ECG."]
    x = torch.rand(len(reports), 12, 2000)
    for cache in (False, True):
        cfg = small_config(text_dir)
        cfg.text.dropout, cfg.text.cache_frozen_states = 0.0, cache
        torch.manual_seed(0)
        model = melp.MELP(cfg).train()
        tokens = model.tokenize(reports)
        groups = length_groups(tokens["attention_mask"], 3)
        lengths = tokens["attention_mask"].sum(1)
        assert sorted(torch.cat([rows for rows, _ in groups]).tolist()) == list(range(len(reports)))
        assert [width for _, width in groups] == [int(lengths[rows].max()) for rows, _ in groups]
        assert groups[0][1] < groups[-1][1] == tokens["input_ids"].shape[1]

        results = {}
        for n_groups in (1, 3, 1, 10):
            model.config.text.length_groups = n_groups
            model.zero_grad(set_to_none=True)
            torch.manual_seed(1)  # the same ECG dropout
            out = model(x, tokens)
            out["loss"].backward()
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            results.setdefault(n_groups, []).append((out, grads))
        (base, base_grads) = results[1][0]
        for out, grads in [results[3][0], results[10][0], results[1][1]]:
            for key in ("loss", "loss_global", "loss_caption", "loss_local"):
                assert torch.allclose(out[key], base[key], atol=1e-5), (key, out[key], base[key])
            assert grads.keys() == base_grads.keys()
            for name in grads:
                assert torch.allclose(grads[name], base_grads[name], atol=1e-5, rtol=1e-4), name


def test_paper_preset_asks_for_its_text_model():
    with pytest.raises(ValueError, match="text.source is not set.*BERT-base folder"):
        melp.MELP.from_preset("paper")


def cosine(a, b):
    """Row-wise cosine of two (N, D) arrays."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_bf16_embeddings_match_fp32_and_follow_weight_changes(overfit_model):
    """bf16 inference (a bf16 copy of the ECG side, autocast) stays within cosine 0.999 of fp32, also for a
    record with a near-flat lead (the first convolution and its GroupNorm stay fp32), and a weight changed
    in place after a bf16 call is seen by the next one (the copy is rebuilt)."""
    model, x = overfit_model
    quiet = x[:1].copy()
    quiet[0, 5] *= 0.01
    signals = np.concatenate([x, quiet])

    weight = model.ecg_encoder.layers[-1].fc2.weight
    saved = weight.detach().clone()
    try:
        fp32 = model.embed_ecg(signals)
        bf16 = model.set_precision("bf16").embed_ecg(signals)
        assert cosine(bf16, fp32).min() >= 0.999
        assert not np.array_equal(bf16, fp32)
        with torch.no_grad():
            weight.copy_(saved.roll(1, dims=0))
        changed_bf16 = model.embed_ecg(signals)
        changed_fp32 = model.set_precision("fp32").embed_ecg(signals)
        # the new weights are used: far closer to the new fp32 embeddings than to the old bf16 ones
        assert cosine(changed_bf16, changed_fp32).min() > 0.995 > 0.99 > cosine(changed_bf16, bf16).min(), (
            cosine(changed_bf16, changed_fp32), cosine(changed_bf16, bf16))
    finally:
        model.set_precision("fp32")
        with torch.no_grad():
            weight.copy_(saved)
    with pytest.raises(ValueError, match="precision must be one of"):
        model.set_precision("fp16")


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_embeddings_match_eager_fp32_and_follow_weight_changes(overfit_model, precision):
    """compile=True (torch.compile of the inference copy with Inductor's freezing, batches padded to a
    power of two) gives the eager fp32 embeddings within cosine 0.999 for 3 records in batches of
    2 (shapes 2 and 1, padded rows dropped) with no compiling left after ``precompile``, and a weight
    changed in place is seen by the next call (a compiled graph must not keep the old weights)."""
    model, x = overfit_model
    signals = x[:3]

    weight = model.ecg_encoder.layers[-1].fc2.weight
    saved = weight.detach().clone()
    try:
        eager = model.embed_ecg(signals)
        model.set_precision(precision, compile=True)
        assert model.precompile(max_batch=2) == [1, 2]
        frames = torch._dynamo.utils.counters["frames"]["ok"]
        compiled = model.embed_ecg(signals, batch_size=2)
        assert torch._dynamo.utils.counters["frames"]["ok"] == frames  # shapes 2 and 1: compiled beforehand
        assert compiled.shape == eager.shape and cosine(compiled, eager).min() >= 0.999
        with torch.no_grad():
            weight.copy_(saved.roll(1, dims=0))
        changed = model.embed_ecg(signals, batch_size=2)
        changed_eager = model.set_precision("fp32", compile=False).embed_ecg(signals)
        assert cosine(changed, changed_eager).min() > 0.995 > 0.99 > cosine(changed, compiled).min(), (
            cosine(changed, changed_eager), cosine(changed, compiled))
    finally:
        model.set_precision("fp32", compile=False)
        with torch.no_grad():
            weight.copy_(saved)


def test_compile_without_a_cxx_compiler_says_so(overfit_model, monkeypatch):
    import melp.models.fast_inference as fast

    model, _ = overfit_model
    monkeypatch.setattr(fast.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="needs a C\\+\\+ compiler"):
        model.set_precision("bf16", compile=True)
    assert (model.precision, model.compiled) == ("fp32", False)  # unchanged


def test_positional_convolution_through_the_fft_equals_the_direct_one():
    """The FFT path (GPUs, fp32 training on CPUs) gives the direct grouped convolution's output and
    gradients to fp32 rounding, for the paper's kernel (128, even: one frame trimmed) and an odd one."""
    from melp.models.ecg_encoder import PositionalConv

    torch.manual_seed(0)
    for width, kernel, groups, frames in ((64, 128, 16, 312), (32, 7, 4, 50)):
        conv = PositionalConv(width, kernel, groups)
        x = torch.randn(3, frames, width, requires_grad=True)
        assert PositionalConv.use_fft(x)  # fp32 with gradients on this CPU
        fft = conv(x)
        (fft ** 2).sum().backward()
        grads_fft = [x.grad.clone()] + [p.grad.clone() for p in conv.parameters()]
        x.grad = None
        conv.zero_grad()
        direct = F.gelu(conv.conv(x.transpose(1, 2))[..., : frames]).transpose(1, 2)
        (direct ** 2).sum().backward()
        grads_direct = [x.grad] + [p.grad for p in conv.parameters()]
        assert fft.shape == direct.shape == (3, frames, width)
        torch.testing.assert_close(fft, direct, rtol=1e-4, atol=1e-5)
        for a, b in zip(grads_fft, grads_direct):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        with torch.no_grad():
            assert not PositionalConv.use_fft(x)  # inference on a CPU: the direct convolution


def test_bf16_training_on_a_cpu_takes_the_fft_without_amx_and_the_direct_convolution_with_it(monkeypatch):
    from melp.models import ecg_encoder
    from melp.models.ecg_encoder import PositionalConv

    x = torch.randn(2, 10, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for amx in (False, True):
            monkeypatch.setattr(ecg_encoder, "cpu_has_amx", lambda amx=amx: amx)
            assert PositionalConv.use_fft(x) is not amx


def test_positional_convolution_spectrum_is_the_conjugated_rfft_in_fp32_under_bf16_autocast():
    """The DFT-basis spectrum equals torch's FFT of the weight, conjugated, in the (groups, bins, in, out)
    layout, and stays fp32 under bf16 autocast (the inference copy is built inside one)."""
    from melp.models.ecg_encoder import conv_spectrum

    torch.manual_seed(0)
    weight = torch.randn(32, 8, 7, dtype=torch.float64)  # 4 groups of 8 channels, kernel 7
    want = torch.fft.rfft(weight, n=20).conj().view(4, 8, 8, 11).permute(0, 3, 2, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        real, imag = conv_spectrum(weight.float(), groups=4, n_fft=20)
    assert real.dtype == imag.dtype == torch.float32 and real.shape == (4, 11, 8, 8)
    torch.testing.assert_close(real.double(), want.real, rtol=0, atol=1e-5)
    torch.testing.assert_close(imag.double(), want.imag, rtol=0, atol=1e-5)


def test_blocked_attention_is_sdpa_without_dropout_across_several_blocks(monkeypatch):
    """The bf16 CPU inference path computes SDPA's definition (float64: exactly up to rounding), with
    and without a causal mask, when the (batch x head) slices span several blocks and end in a partial one."""
    from melp.models import attention
    from melp.models.attention import blocked_attention, causal_mask

    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 5, 11, 8, dtype=torch.float64) for _ in range(3))
    monkeypatch.setattr(attention, "INFERENCE_BLOCK_BYTES", 4 * 11 * 11 * 8)  # 4 of the 15 slices per block
    assert len(attention._blocks(q.flatten(0, 1), k.flatten(0, 1), attention.INFERENCE_BLOCK_BYTES)) == 4
    for mask in (None, causal_mask(11, 11, q.device)):
        want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        torch.testing.assert_close(blocked_attention(q, k, v, mask), want, rtol=0, atol=1e-12)


def test_cpu_bf16_inference_attention_is_blocked_only_without_amx_and_without_gradients(monkeypatch):
    """Which path Attention takes: blocked_attention for bf16 without gradients on a CPU without AMX
    (its result within bf16 rounding of the fp32 module's), SDPA's kernels otherwise."""
    from melp.models import attention
    from melp.models.attention import Attention

    calls = []
    blocked = attention.blocked_attention
    monkeypatch.setattr(attention, "blocked_attention", lambda *a: calls.append(1) or blocked(*a))
    torch.manual_seed(0)
    attn = Attention(64, 4).eval()
    x = torch.randn(2, 30, 64)
    with torch.no_grad():
        want = attn(x, causal=True)
        for amx, grad, dtype, takes in ((False, False, torch.bfloat16, True), (True, False, torch.bfloat16, False),
                                        (False, True, torch.bfloat16, False), (False, False, torch.float32, False)):
            monkeypatch.setattr(attention, "cpu_has_amx", lambda amx=amx: amx)
            calls.clear()
            with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                y = attn(x, causal=True)
            assert bool(calls) is takes, (amx, grad, dtype)
            torch.testing.assert_close(y.float(), want, rtol=0, atol=0.05 if dtype == torch.bfloat16 else 1e-5)


def test_cpu_bf16_training_attention_runs_on_the_math_kernel_with_the_same_result(monkeypatch):
    from melp.models import attention
    from melp.models.attention import CPU_BF16_MATH_MAX_KEYS, Attention, attention_backend

    cpu = torch.device("cpu")
    assert attention_backend(50, torch.bfloat16, cpu) is not None
    assert type(attention_backend(50, torch.float32, cpu)).__name__ == "nullcontext"
    assert type(attention_backend(CPU_BF16_MATH_MAX_KEYS + 1, torch.bfloat16, cpu)).__name__ == "nullcontext"
    with torch.no_grad():  # inference: the flash forward is the fast one
        assert type(attention_backend(50, torch.bfloat16, cpu)).__name__ == "nullcontext"

    torch.manual_seed(0)
    attn = Attention(64, 4)
    x = torch.randn(3, 20, 64)
    results = []
    for max_keys in (CPU_BF16_MATH_MAX_KEYS, 0):  # math kernel, then the default (flash)
        monkeypatch.setattr(attention, "CPU_BF16_MATH_MAX_KEYS", max_keys)
        xi = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = attn(xi, causal=True)
        y.float().square().sum().backward()
        results.append((y.float(), xi.grad))
    (y_math, g_math), (y_flash, g_flash) = results
    assert torch.allclose(y_math, y_flash, atol=3e-2)
    assert torch.allclose(g_math, g_flash, atol=3e-2 * g_flash.abs().max().item())

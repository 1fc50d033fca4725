"""Generation mechanics: the decoder's key/value cache and the two search strategies."""
from __future__ import annotations

import pytest
import torch

import melp
from melp.models.generation import beam_search, generate_ids, greedy
from modelfixtures import small_config, small_text_model


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    text_dir = small_text_model(tmp_path_factory.mktemp("text"))
    torch.manual_seed(0)
    return melp.MELP(small_config(text_dir, ecg_layers=1, decoder_layers=2)).eval()


def test_cached_decoding_equals_a_full_pass(model):
    torch.manual_seed(1)
    ecg_tokens = model.encode_ecg(torch.rand(2, 12, 2000))["tokens"]
    ids = model.tokenize(["sinus rhythm. left axis deviation. abnormal ecg."] * 2)["input_ids"]
    with torch.no_grad():
        states = model.text_encoder.states(ids)
        full = model.decoder.hidden(states, ecg_tokens)
        state, steps = {}, []
        steps.append(model.decoder.hidden(states[:, :3], ecg_tokens, state))  # a prompt, then one at a time
        for t in range(3, ids.shape[1]):
            steps.append(model.decoder.hidden(states[:, t:t + 1], None, state))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=0, atol=1e-5)
    assert state["self"][0]["k"].shape[2] == ids.shape[1]


def test_reorder_state_selects_rows(model):
    ecg_tokens = model.encode_ecg(torch.rand(3, 12, 2000))["tokens"]
    states = torch.randn(3, 2, model.text_encoder.hidden_size)
    state = {}
    with torch.no_grad():
        model.decoder.hidden(states, ecg_tokens, state)
    before = state["self"][1]["v"].clone()
    model.decoder.reorder_state(state, torch.tensor([2, 2, 0]))
    torch.testing.assert_close(state["self"][1]["v"], before[[2, 2, 0]])
    assert state["cross"][0][0].shape[0] == 3


def test_one_beam_equals_greedy_and_outputs_are_clean(model):
    ecg = torch.rand(3, 12, 2000)
    g = greedy(model, ecg, max_len=8)
    assert beam_search(model, ecg, beams=1, max_len=8) == g
    enc = model.text_encoder
    special = {enc.bos_id, enc.pad_id, enc.end_id}
    for ids in [*g, *beam_search(model, ecg, beams=3, max_len=8)]:
        assert len(ids) <= 7 and not special & set(ids)
    with pytest.raises(ValueError):
        generate_ids(model, ecg, beams=0)


def test_text_encoder_cache_gives_the_same_search_as_re_encoding(model):
    ecg = torch.rand(2, 12, 2000)
    ids = model.tokenize(["sinus rhythm. left axis deviation."])["input_ids"][:, :-1]  # no final [CLS]
    with torch.no_grad():
        full = model.text_encoder.states(ids)
        first, cache = model.text_encoder.step(ids[:, :2])
        rest = [model.text_encoder.step(ids[:, t:t + 1], cache)[0] for t in range(2, ids.shape[1])]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, rtol=0, atol=1e-5)
    assert greedy(model, ecg, 8, use_cache=True) == greedy(model, ecg, 8, use_cache=False)
    assert beam_search(model, ecg, 3, 8, use_cache=True) == beam_search(model, ecg, 3, 8, use_cache=False)


def test_generation_never_writes_placeholder_or_special_tokens(model, monkeypatch):
    """A decoder that prefers BERT's [unusedN] placeholders (as a barely trained one can) still
    writes only real tokens, and ends reports with [SEP]."""
    enc = model.text_encoder
    vocab = enc.tokenizer.get_vocab()
    placeholders = [i for t, i in vocab.items() if t.startswith("[unused")]
    assert placeholders and set(placeholders) <= set(enc.never_generated_ids)
    assert enc.end_id not in enc.never_generated_ids
    real = enc.tokenizer.convert_tokens_to_ids("sinus")
    bias = torch.full((model.decoder.vocab.out_features,), -5.0)
    bias[placeholders] = 50.0  # the placeholders win every step, then 'sinus'
    bias[enc.tokenizer.mask_token_id] = 50.0
    bias[real] = 10.0
    original = model.decoder.vocab.forward
    monkeypatch.setattr(model.decoder.vocab, "forward", lambda h: original(h) * 0 + bias)
    for ids in (greedy(model, torch.rand(1, 12, 2000), max_len=4),
                beam_search(model, torch.rand(1, 12, 2000), beams=2, max_len=4)):
        assert ids[0] and all(i == real for i in ids[0])

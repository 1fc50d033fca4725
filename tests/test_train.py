"""Stage 2 on Lightning: configs, schedule, data module, exact resume after kill -9, CPU DDP, collapse guard.

Everything runs on a micro corpus written by the simulator in the MIMIC-IV-ECG layout and cached through
the real adapter, with a micro model (the tiny preset's structure, narrower; a small random BERT as
text model) so that each training run takes seconds.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from melp.train.config import apply_overrides, load_config
from melp.train.checkpoints import damage
from melp.train.lightning_module import cosine_restarts, mask_leads, param_groups, recall_at_k, warmup_cosine
from trainfixtures import KILL_POINTS, KILL_RUN, killed_run, melp_cmd, micro_setup, run_env, weights, write_config

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    """(micro training config dict, folder) on a 96-record simulated MIMIC-IV-ECG-layout cache."""
    root = tmp_path_factory.mktemp("train")
    return micro_setup(root), root


# ----------------------------------------------------------------------------- units


def test_overrides_parse_yaml_types_and_reject_bad_paths():
    cfg = apply_overrides(load_config("tiny"), ["optim.lr=2e-4", "trainer.devices=2", "data.val_split=null",
                                                "optim.betas=[0.8, 0.9]", "new.section.key=yes"])
    assert cfg["optim"]["lr"] == pytest.approx(2e-4)
    assert cfg["trainer"]["devices"] == 2 and cfg["data"]["val_split"] is None
    assert cfg["optim"]["betas"] == [0.8, 0.9] and cfg["new"]["section"]["key"] is True
    with pytest.raises(ValueError, match="key.sub=value"):
        apply_overrides(cfg, ["optim.lr"])
    with pytest.raises(ValueError, match="not a section"):
        apply_overrides(cfg, ["seed.x=1"])
    with pytest.raises(ValueError, match="unknown training preset"):
        load_config("no-such-preset")


def test_presets_hold_the_authors_recipe():
    paper = load_config("paper")
    o = paper["optim"]
    assert o["betas"] == [0.9, 0.95] and o["weight_decay"] == 0.2 and o["decay_all"] is True
    assert o["lr"] == 2e-4 and o["warmup_steps"] == 0 and o["schedule"] == "cosine_restarts"
    assert o["restart_epochs"] == 50 and o["min_lr"] == 1e-8
    assert paper["trainer"]["devices"] * paper["data"]["batch_size"] == 256
    assert paper["trainer"]["gradient_clip_val"] is None
    assert paper["trainer"]["precision"] == "bf16-mixed" and paper["data"]["lead_mask_prob"] == 0.5
    tiny = load_config("tiny")
    assert tiny["optim"]["warmup_steps"] > 0 and tiny["trainer"]["accelerator"] == "cpu"


def test_cosine_restarts_is_torchs_cosine_annealing_warm_restarts():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=2e-4)
    ref = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=7, T_mult=1, eta_min=1e-8)
    for step in range(20):
        assert opt.param_groups[0]["lr"] == pytest.approx(2e-4 * cosine_restarts(step, 7, 1e-8 / 2e-4), rel=1e-9)
        opt.step()
        ref.step()


def test_decay_all_puts_weight_decay_on_every_parameter():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    ours = param_groups(model, 0.2, 1e-3)
    assert sorted(sum(len(g["params"]) for g in ours if g["weight_decay"] == w) for w in (0.0, 0.2)) == [1, 3]
    reference = param_groups(model, 0.2, 1e-3, decay_all=True)
    assert [g["weight_decay"] for g in reference] == [0.2] and len(reference[0]["params"]) == 4


def test_warmup_then_cosine_schedule():
    lr = [warmup_cosine(s, 10, 110, 0.01) for s in range(110)]
    assert lr[0] == pytest.approx(0.1) and lr[9] == pytest.approx(1.0)  # linear warm-up from ~0
    assert all(a < b for a, b in zip(lr[:10], lr[1:10]))
    assert all(a >= b for a, b in zip(lr[10:], lr[11:]))  # then monotone cosine decay
    assert lr[60] == pytest.approx(0.01 + 0.99 * 0.5, abs=1e-9)  # half-way down at mid-decay
    assert lr[-1] == pytest.approx(0.01, abs=1e-3)


def test_lead_masking_is_reproducible_and_near_p():
    x = torch.ones(64, 12, 10)
    a, b = mask_leads(x, 0.5, (0, 1, 2)), mask_leads(x, 0.5, (0, 1, 2))
    assert torch.equal(a, b)  # same key, same mask: resumed runs see the same augmentation
    assert not torch.equal(a, mask_leads(x, 0.5, (0, 1, 3)))
    kept = a[:, :, 0].mean().item()
    assert 0.4 < kept < 0.6
    assert torch.all((a == 0) | (a == 1)) and torch.equal(mask_leads(x, 0.0, (0,)), x)


def test_precision_auto_picks_bf16_only_where_the_hardware_runs_it(monkeypatch):
    from melp.train import pretrain

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(pretrain, "native_bf16_cpu", lambda: True)
    assert pretrain.resolve_precision("auto", "cpu") == "bf16-mixed"
    assert pretrain.resolve_precision("32-true", "cpu") == "32-true"  # an explicit choice stays
    monkeypatch.setattr(pretrain, "native_bf16_cpu", lambda: False)
    assert pretrain.resolve_precision("auto", "auto") == "32-true"


def test_recall_counts_identical_reports_as_hits():
    ecg = torch.eye(4)
    text = torch.eye(4)[[1, 0, 2, 3]]  # ECG 0 is closest to text 1, ECG 1 to text 0
    ids = torch.tensor([7, 8, 9, 10])
    r = recall_at_k(ecg, text, ids, ks=(1, 2))
    assert r["ecg2report_r1"] == pytest.approx(0.5)  # ECGs 2 and 3 only
    ids_same = torch.tensor([7, 7, 9, 10])  # reports 0 and 1 are the same text
    assert recall_at_k(ecg, text, ids_same, ks=(1,))["ecg2report_r1"] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- training runs


def test_pretrain_writes_run_folder_and_loadable_model(micro, tmp_path):
    import melp
    from melp.train.pretrain import pretrain, read_metrics

    cfg, _ = micro
    cfg = apply_overrides(cfg, [f"output.dir={tmp_path / 'run'}", "trainer.max_epochs=1"])
    run_dir = pretrain(cfg, progress=False)
    assert yaml.safe_load((run_dir / "config.yaml").read_text()) == cfg
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["melp"]["config"] == cfg and "optimizer_states" in ckpt
    metrics = read_metrics(run_dir).columns
    for col in ("train/loss", "train/global", "train/caption", "train/local", "train/logit_scale",
                "val/loss", "val/ecg2report_r1", "val/ecg2report_r10"):
        assert col in metrics
    assert list((run_dir / "logs" / "tensorboard").glob("version_0/events.out.tfevents.*"))
    model = melp.load(run_dir / "model")
    sig = np.random.default_rng(0).normal(size=(2, 12, 1000)).astype(np.float32)
    emb = model.embed_ecg(sig, fs=100)
    assert emb.shape == (2, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert (run_dir / "model_best" / "model.safetensors").is_file()


def test_corpus_caption_vocab_is_the_training_reports_tokens_and_survives_save_and_load(micro, tmp_path):
    import melp
    from melp.data.cache import ECGCache
    from melp.models.text_encoder import load_tokenizer
    from melp.train.pretrain import pretrain, with_corpus_caption_vocab

    cfg, _ = micro
    with pytest.raises(ValueError, match="caption_vocab must be"):
        with_corpus_caption_vocab(apply_overrides(cfg, ["caption_vocab=some"]))
    cfg = apply_overrides(cfg, [f"output.dir={tmp_path / 'run'}", "trainer.max_epochs=1", "caption_vocab=corpus"])
    run_dir = pretrain(cfg, progress=False)

    cache = ECGCache(cfg["data"]["cache"])
    train = cache.index[(cache.index["split"] == "train") & (cache.index["report"].str.strip() != "")]
    tokenizer = load_tokenizer(Path(yaml.safe_load(Path(cfg["model"]).read_text())["text"]["source"]))
    expected = {tokenizer.sep_token_id, tokenizer.unk_token_id}
    for report in train["report"]:
        expected |= set(tokenizer(report, add_special_tokens=False)["input_ids"])
    assert 20 < len(expected) < 1000
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model_overrides"]["decoder"]["output_tokens"] == sorted(expected)
    for folder in ("model", "model_best"):  # model_best: rebuilt from the config and a Lightning checkpoint
        model = melp.load(run_dir / folder)
        assert model.config.decoder.output_tokens == sorted(expected)
        assert model.decoder.vocab.out_features == len(expected)
    from melp.models.generation import generate_ids

    ecg = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 12, 1000)).astype(np.float32))
    with torch.no_grad():
        written = generate_ids(model.eval(), ecg, beams=2, max_len=16)
    # the ids it writes, not a re-tokenised decoded text (word pieces can merge into other tokens)
    assert all(written) and set().union(*written) <= expected


def test_compiled_ecg_encoder_trains_as_the_eager_one(micro, tmp_path, monkeypatch):
    """trainer.compile_ecg_encoder: the same run (one epoch with validation) gives the eager run's losses
    and weights to fp32 rounding, under the same checkpoint keys (Module.compile keeps the state dict's
    names). Inductor's dropout draws from torch's generator here (fallback_random), so that both runs
    see the same masks; by default it has its own."""
    import torch._inductor.config

    from melp.train.pretrain import pretrain, read_metrics

    monkeypatch.setattr(torch._inductor.config, "fallback_random", True)
    cfg, _ = micro
    states, losses = {}, {}
    for compiled in (False, True):
        run = apply_overrides(cfg, [f"output.dir={tmp_path / str(compiled)}", "trainer.max_epochs=1",
                                    f"trainer.compile_ecg_encoder={str(compiled).lower()}"])
        run_dir = pretrain(run, progress=False)
        states[compiled] = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu",
                                      weights_only=True)["state_dict"]
        losses[compiled] = read_metrics(run_dir)[["train/loss"]].dropna().to_numpy().ravel()
    assert len(losses[True]) == len(losses[False]) > 5
    np.testing.assert_allclose(losses[True], losses[False], rtol=1e-4)
    eager, compiled = states[False], states[True]
    assert list(compiled) == list(eager)
    flat = [torch.cat([s[k].float().flatten() for k in eager if eager[k].is_floating_point()]) for s in (eager, compiled)]
    assert torch.linalg.vector_norm(flat[1] - flat[0]) < 1e-3 * torch.linalg.vector_norm(flat[0])


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``path`` exists with a stable size (the checkpoint write has finished)."""
    end, last = time.time() + timeout, -1
    while time.time() < end:
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"run ended (code {proc.returncode}) before {path} appeared:\n{out[-3000:]}")
        if path.is_file():
            size = path.stat().st_size
            if size > 0 and size == last:
                return
            last = size
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def test_kill_9_then_resume_gives_the_same_weights(micro, tmp_path):
    cfg, _ = micro
    config = write_config(cfg, tmp_path / "cfg.yaml", **{"trainer.max_epochs": 3})
    env = run_env()
    straight = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(tmp_path / "a")),
                              env=env, capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "stage 2: step" in straight.stdout and "done in" in straight.stdout  # progress lines off a terminal
    assert "Tip:" not in straight.stdout + straight.stderr and "LeafSpec" not in straight.stderr  # no noise

    b = tmp_path / "b"
    proc = subprocess.Popen(melp_cmd("pretrain", "--config", str(config), "--out", str(b)), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for_file(b / "checkpoints" / "last.ckpt", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not (b / "model").exists()  # it really died before the end
    resumed = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(b), "--resume"),
                             env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    wa, wb = weights(tmp_path / "a" / "model"), weights(b / "model")
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6, msg=f"{name} differs after resume")
    # the resumed run logs into a second version folder; together they cover every step once
    from melp.train.pretrain import read_metrics

    steps_a = read_metrics(tmp_path / "a").dropna(subset=["train/loss"])["step"].tolist()
    steps_b = read_metrics(b).dropna(subset=["train/loss"])["step"].tolist()
    assert len(list((b / "logs" / "csv").glob("version_*"))) == 2
    assert sorted(set(steps_b)) == sorted(set(steps_a))


@pytest.fixture(scope="module")
def no_val(micro, tmp_path_factory):
    """(config without validation, the uninterrupted run's folder)."""
    cfg, _ = micro
    root = tmp_path_factory.mktemp("noval")
    config = write_config(cfg, root / "cfg.yaml", **KILL_RUN)
    done = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(root / "straight")),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return config, root / "straight"


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=0, atol=1e-6, msg=f"{name} differs after resume")


def test_without_validation_last_ckpt_follows_every_epoch(no_val):
    _, straight = no_val
    ckpts = sorted(p.name for p in (straight / "checkpoints").iterdir())
    assert ckpts == ["last.ckpt", "last.prev.ckpt"]  # no best without validation; nothing half-written
    assert sorted(straight.rglob("*.ckpt")) == [straight / "checkpoints" / n for n in ckpts]
    epochs = [torch.load(straight / "checkpoints" / n, map_location="cpu", weights_only=True)["epoch"] for n in ckpts]
    assert epochs == [1, 0]


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_at_each_point_then_resume_gives_the_same_weights(no_val, tmp_path, point):
    import melp

    config, straight = no_val
    out = tmp_path / "run"
    proc = killed_run(config, out, point)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert not (out / "model").exists()
    for ckpt in out.rglob("[!.]*.ckpt"):  # a half-written file is a hidden temporary, never a .ckpt
        assert damage(ckpt) is None, ckpt
    with pytest.raises(FileNotFoundError):
        melp.load(out / "model")
    resumed = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(out), "--resume"),
                             env=run_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_same_weights(straight / "model", out / "model")
    melp.load(out / "model")
    assert not [p for p in out.iterdir() if p.name.startswith(".model")]


def test_resume_from_a_damaged_last_ckpt_says_so_and_uses_the_previous(no_val, tmp_path):
    import shutil

    config, straight = no_val
    out = tmp_path / "run"
    shutil.copytree(straight / "checkpoints", out / "checkpoints")
    last = out / "checkpoints" / "last.ckpt"
    os.truncate(last, last.stat().st_size // 3)
    resumed = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(out), "--resume"),
                             env=run_env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"{last} is damaged" in resumed.stderr and "resuming from" in resumed.stderr
    assert_same_weights(straight / "model", out / "model")


def test_resume_from_a_damaged_named_checkpoint_is_one_line(micro, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really")
    done = subprocess.run(melp_cmd("pretrain", "--out", str(tmp_path / "r"), "--resume", str(bad)),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"checkpoint {bad} is damaged" in done.stderr


def test_resume_refuses_a_missing_checkpoint(micro, tmp_path):
    from melp.train.pretrain import pretrain

    cfg, _ = micro
    cfg = apply_overrides(cfg, [f"output.dir={tmp_path / 'none'}"])
    with pytest.raises(FileNotFoundError, match="last.ckpt"):
        pretrain(cfg, resume="last", progress=False)


def test_a_cache_without_validation_pairs_trains_and_checkpoints(micro, tmp_path, capsys):
    """The tiny recipe on a small cache: no 'val' pairs, so training goes on without validation."""
    import melp
    from melp import synth
    from melp.data.adapters import get_adapter
    from melp.data.cache import ECGCache, build_cache
    from melp.data.preprocess import PreprocessConfig
    from melp.train.pretrain import pretrain

    cfg, _ = micro
    synth.export("mimic-iv-ecg", tmp_path / "mimic", n=16, seed=4)
    build_cache(get_adapter("mimic-iv-ecg"), tmp_path / "mimic", tmp_path / "cache", PreprocessConfig(fs=100),
                progress=False, quality="off")
    assert "val" not in set(ECGCache(tmp_path / "cache").index["split"])
    cfg = apply_overrides(cfg, [f"data.cache={tmp_path / 'cache'}", "data.val_split=val", "data.batch_size=4",
                                "trainer.max_epochs=1", f"output.dir={tmp_path / 'run'}"])
    run_dir = pretrain(cfg, progress=False)
    assert "no 'val' pairs: training without validation" in capsys.readouterr().err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["last.ckpt"]
    melp.load(run_dir / "model")


def test_two_process_cpu_ddp_run_completes_and_loads(micro, tmp_path):
    import melp

    cfg, _ = micro
    config = write_config(cfg, tmp_path / "cfg.yaml", **{"trainer.max_epochs": 1})
    out = tmp_path / "ddp"
    done = subprocess.run(melp_cmd("pretrain", "--config", str(config), "--out", str(out), "--devices", "2",
                                   "--strategy", "ddp", "--accelerator", "cpu"),
                          env=run_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] > 0
    model = melp.load(out / "model")
    state = {f"model.{k}": v for k, v in weights(out / "model").items()}
    for k, v in state.items():  # the folder holds the checkpoint's final weights
        torch.testing.assert_close(ckpt["state_dict"][k], v)
    assert model.embed_text(["sinus rhythm."]).shape == (1, 32)


# ----------------------------------------------------------------------------- collapse guard


def _embedding_spread(cfg: dict, steps: int) -> tuple[float, float]:
    """Train ``steps`` optimiser steps with the config's recipe, then (mean pairwise cosine, mean per-dim
    std) of the global ECG embeddings of 32 fixed training ECGs."""
    import lightning as L

    from melp.train.datamodule import ECGTextDataModule, TextCollate, pairs
    from melp.train.lightning_module import MELPLightning
    from melp.train.pretrain import build_model
    from melp.data.cache import ECGCache

    L.seed_everything(0, verbose=False)
    model = build_model(cfg)
    model.train()
    module = MELPLightning(model, cfg["optim"], lead_mask_prob=0.5, seed=0)
    data = ECGTextDataModule(cfg["data"]["cache"], model.tokenize, batch_size=16, val_split=None, seed=0)
    trainer = L.Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                        use_distributed_sampler=False, gradient_clip_val=1.0)
    trainer.fit(module, datamodule=data)
    batch = TextCollate(model.tokenize)(pairs(ECGCache(cfg["data"]["cache"]), "train").batch(list(range(32))))
    model.eval()
    with torch.no_grad():
        e = model.encode_ecg(batch["ecg"])["embedding"]
    n = len(e)
    return float(((e @ e.T).sum() - n) / (n * (n - 1))), float(e.std(dim=0).mean())


def test_warmup_guards_against_embedding_collapse(micro):
    """The tiny preset (linear warm-up) keeps ECG embeddings spread in the first steps; the same recipe
    without warm-up (lr at its full value from step 0) drifts towards one point, and at a 5x higher lr
    collapses to a constant outright (measured on this micro model: cosine 1.000, spread ~1e-3)."""
    cfg, _ = micro
    cfg = apply_overrides(cfg, [f"optim.warmup_steps={load_config('tiny')['optim']['warmup_steps']}"])  # the preset's
    steps = 20
    cos_w, std_w = _embedding_spread(cfg, steps)
    cos_0, std_0 = _embedding_spread(apply_overrides(cfg, ["optim.warmup_steps=0"]), steps)
    cos_hot, std_hot = _embedding_spread(apply_overrides(cfg, ["optim.warmup_steps=0", "optim.lr=5e-3"]), steps)
    assert cos_w < 0.97 and std_w > 0.02, (cos_w, std_w)  # the guard: no collapse with the preset
    assert cos_0 > cos_w and std_0 < std_w, ((cos_0, std_0), (cos_w, std_w))  # no warm-up: closer together
    assert cos_hot > 0.999 and std_hot < 0.005, (cos_hot, std_hot)  # and without it at a high lr: a constant


def test_bf16_run_with_gradient_clipping_uses_the_fused_optimiser(micro, tmp_path):
    """Lightning's mixed-precision plugin refuses to clip for a fused AdamW; melp clips itself."""
    from melp.train.pretrain import pretrain

    cfg, _ = micro
    cfg = apply_overrides(cfg, ["trainer.precision=bf16-mixed", "trainer.gradient_clip_val=1.0", "trainer.max_epochs=1",
                                "data.val_split=null", f"output.dir={tmp_path / 'run'}"])
    run_dir = pretrain(cfg, progress=False)
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["optimizer_states"][0]["param_groups"][0]["fused"] is True


@pytest.mark.parametrize("algorithm", ["norm", "value"])
def test_fused_optimiser_gradients_are_clipped(algorithm):
    from melp.train.lightning_module import MELPLightning

    net = torch.nn.Linear(6, 5)
    module = MELPLightning(net, {"lr": 1e-3, "betas": [0.9, 0.95], "weight_decay": 0.0})
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, fused=True)
    for p in net.parameters():
        p.grad = torch.full_like(p, 3.0)
    module.configure_gradient_clipping(opt, 0.5, algorithm)
    grads = [p.grad for p in net.parameters()]
    if algorithm == "norm":
        assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])).item() == pytest.approx(0.5, rel=1e-4)
    else:
        assert all(torch.all(g == 0.5) for g in grads)

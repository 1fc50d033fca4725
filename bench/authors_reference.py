"""Times the AUTHORS' MELP (HKU-MedAI/MELP) as the in-run baseline of bench/train_step.py and
bench/embed.py. Run it with the Python of the reference environment that
shared/refbench/README.md builds (e.g. /tmp/refbench); nothing of theirs is in this repository:
their code is imported from that folder.

    REF/venv/bin/python bench/authors_reference.py REF train --batch 8 --steps 3 [--bf16]
    REF/venv/bin/python bench/authors_reference.py REF embed --batches 1 16 256 [--bf16]

Prints one line ``RESULT {json}``. The model is the paper run's (main_pretrain.py's arguments:
ecgfm encoder, heart_bert text model, loss weights 1/2/0.2, 12 beat queries), randomly initialised;
the step is MELPModel.training_step + backward + their AdamW and scheduler; inference is
MELPModel.encode_ecg on already-normalised tensors (their preprocessing happens in the dataset).
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
import warnings

BENCH = os.path.dirname(os.path.abspath(__file__))  # before build_model changes the working folder
HPARAMS = dict(  # main_pretrain.py's argparse namespace for the paper's command line
    model_name="melp", model_size="base", seed=42, train_data_pct=1.0, batch_size=64, num_workers=4,
    num_devices=1, max_epochs=100, accumulate_grad_batches=1, lr=2e-4, ecg_encoder_name="ecgfm",
    ecg_encoder_weight="", text_encoder_name="fuyingw/heart_bert", clip_loss_weight=1.0,
    caption_loss_weight=2.0, local_loss_weight=0.2, n_queries_contrast=12,
    val_dataset_list=["ptbxl_super_class", "ptbxl_sub_class", "ptbxl_form", "ptbxl_rhythm", "icbeb", "chapman"],
)


def normalised_ecgs(torch, n, gen):
    """(n, 12, 5000) in [0, 1], min-max over each whole record (their dataset's normalisation)."""
    x = torch.randn(n, 12, 5000, generator=gen).cumsum(-1) * 0.05 + torch.randn(n, 12, 5000, generator=gen) * 0.1
    lo, hi = x.amin(dim=(1, 2), keepdim=True), x.amax(dim=(1, 2), keepdim=True)
    return ((x - lo) / (hi - lo + 1e-8)).float()


def build_model(ref):
    for p in ("stubs", "src/fss/src", "src/melp/src"):
        sys.path.insert(0, os.path.join(ref, p))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.chdir(ref)  # "fuyingw/heart_bert" is a folder there
    import torch
    import torch.distributed as dist

    # their loss asks torch.distributed for rank / world size: a 1-process group, no network
    store = os.path.join(tempfile.mkdtemp(prefix="authors_ref_"), "store")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    from lightning import seed_everything
    from melp.models.melp_model import MELPModel

    seed_everything(HPARAMS["seed"], verbose=False)
    return torch, MELPModel(**HPARAMS)


def time_training(torch, model, args):
    sys.path.insert(0, BENCH)
    from common import REPORTS, matmul_gflops

    [opt], [sched] = model.configure_optimizers()
    sched = sched["scheduler"]
    gen = torch.Generator().manual_seed(0)
    batch = {"ecg": normalised_ecgs(torch, args.batch, gen), "report": [REPORTS[i % len(REPORTS)] for i in range(args.batch)],
             "id": list(range(args.batch)), "patient_id": torch.arange(args.batch).long().unsqueeze(1)}
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    model.train()

    def step(i):  # batch_idx % 1000 != 0: no report generation inside the step
        opt.zero_grad(set_to_none=True)
        with precision:
            loss = model.training_step(batch, i)
        loss.backward()
        opt.step()
        sched.step()
        model.on_train_batch_end()
        return float(loss)

    step(1)  # warm-up
    times, rates, losses = [], [], []
    for i in range(args.steps):
        rates.append(matmul_gflops())
        start = time.perf_counter()
        losses.append(step(2 + i))
        times.append(time.perf_counter() - start)
    return {"step_s": times, "matmul_gflops": rates, "losses": losses}


def time_embedding(torch, model, args):
    model.eval()
    gen = torch.Generator().manual_seed(0)
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    out = {}
    with torch.no_grad(), precision:
        for b in args.batches:
            n = max(b, args.min_ecgs)
            ecgs = normalised_ecgs(torch, n, gen)
            model.encode_ecg(ecgs[:b], normalize=True, proj_contrast=True)  # warm-up
            start = time.perf_counter()
            for j in range(0, n, b):
                model.encode_ecg(ecgs[j:j + b], normalize=True, proj_contrast=True)
            out[str(b)] = n / (time.perf_counter() - start)
    return {"ecg_per_s": out}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="the reference folder (src/melp, src/fss, stubs, fuyingw/heart_bert)")
    ap.add_argument("what", choices=["train", "embed"])
    ap.add_argument("--batch", type=int, default=8, help="train: ECG-report pairs per step")
    ap.add_argument("--steps", type=int, default=3, help="train: timed steps after one warm-up")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256], help="embed: batch sizes")
    ap.add_argument("--min-ecgs", type=int, default=16, help="embed: ECGs timed per batch size, at least")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    torch, model = build_model(os.path.abspath(args.ref))
    result = time_training(torch, model, args) if args.what == "train" else time_embedding(torch, model, args)
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

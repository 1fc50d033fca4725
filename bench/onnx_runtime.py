"""Would an ONNX Runtime export beat melp's own CPU inference? The paper model's ECG side (encoder and
beat pooler) at batch 1, in the same run: ONNX Runtime fp32 and with dynamic int8 quantisation of
its matrix products, against melp's inference copy in bf16 (eager and compiled) and torch fp32.

    pip install onnxruntime onnx    # not dependencies of melp
    python bench/onnx_runtime.py [--rounds 2]

Prints ECG/s per round and the smallest cosine of each variant's embedding to torch fp32.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from melp.models.config import MELPConfig
from melp.models.fast_inference import InferenceSide, inference_side
from melp.models.melp import MELP
from melp.models.text_encoder import build_random_text_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_seconds  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    try:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError:
        raise SystemExit("this bench needs onnxruntime and onnx: pip install onnxruntime onnx")

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = MELPConfig.from_preset("paper")
        config.text.source = str(build_random_text_model(tmp, hidden_size=768, layers=12, heads=12))
        model = MELP(config).eval()
    frames = model.ecg_encoder.n_frames(config.preprocess.n_samples)
    fp32 = InferenceSide(model.ecg_encoder, model.beat_pooler).eval()
    bf16 = inference_side(model.ecg_encoder, model.beat_pooler, frames, bf16=True, compile=False)
    compiled = inference_side(model.ecg_encoder, model.beat_pooler, frames, bf16=True, compile=True)
    x = torch.rand(1, 12, config.preprocess.n_samples)

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory() as tmp:
        plain, quantised = Path(tmp) / "ecg.onnx", Path(tmp) / "ecg_int8.onnx"
        with torch.no_grad():  # the direct positional convolution: ONNX has no FFT operator
            torch.onnx.export(fp32, (x,), str(plain), input_names=["x"], output_names=["beats"], dynamo=False,
                              opset_version=17)
        quantize_dynamic(str(plain), str(quantised), weight_type=QuantType.QInt8)
        sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                    for name, path in [("onnxruntime fp32", plain), ("onnxruntime int8", quantised)]}

    def embedding(beats) -> torch.Tensor:
        return F.normalize(model._beat_outputs(torch.as_tensor(beats).float())["embedding"], dim=-1)

    variants = {name: (lambda s=s: s.run(None, {"x": x.numpy()})[0]) for name, s in sessions.items()}
    variants.update({"torch fp32": lambda: fp32(x), "melp bf16": lambda: bf16(x), "melp bf16 compiled": lambda: compiled(x)})
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {torch.get_num_threads()} threads; paper "
          f"model's ECG encoder + beat pooler, batch 1, ECG/s")
    with torch.no_grad():
        reference = embedding(fp32(x))
    for r in range(args.rounds):
        row = {}
        for name, call in variants.items():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in name):
                row[name] = 1.0 / median_seconds(call, 12)  # ECG/s of a batch-1 call
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    for name, call in variants.items():
        with torch.no_grad():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in name):
                beats = call()
            print(f"cosine to torch fp32: {name} {float((embedding(beats) * reference).sum()):.5f}")


if __name__ == "__main__":
    main()

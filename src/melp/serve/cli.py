"""``melp serve --model DIR``: the web page and HTTP API of one model, on 127.0.0.1:8000 by default.

The model is loaded once at start-up; uvicorn serves one process. Binding another address than
localhost exposes the server (no authentication) to that network: the command says so.
"""
from __future__ import annotations

import ipaddress
import sys

from melp.eval.cli_common import add_precision


def add_arguments(parser) -> None:
    parser.add_argument("--model", required=True, help="model folder (with its text tower: findings and reports)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default 127.0.0.1: this machine only; the server has no login)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=20.0,
                        help="largest request body in MB; larger uploads get 413 (default 20)")
    add_precision(parser)
    parser.add_argument("--no-batching", action="store_true",
                        help="one model call per request (for comparison; batching raises throughput under load)")
    parser.add_argument("--wait-ms", type=float, default=5.0,
                        help="how long the batcher waits for more requests before a model call (default 5 ms)")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(args) -> int:
    import uvicorn

    from melp.eval.embed import load_model
    from melp.serve.app import create_app

    if args.max_upload_mb <= 0:
        raise ValueError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    model = load_model(args.model, needs_text="serve", precision=args.precision, compile=args.compile)
    if args.compile:
        print("melp serve: compiling the ECG encoder for every batch shape (10-30 s each) ...", flush=True)
        print(f"melp serve: compiled for batches of {', '.join(map(str, model.precompile()))} ECG windows", flush=True)
    app = create_app(model, model_dir=args.model, max_upload_mb=args.max_upload_mb,
                     batching=not args.no_batching, wait_ms=args.wait_ms)
    if not _is_loopback(args.host):
        print(f"melp serve: warning: binding {args.host} makes the server reachable from other machines, "
              "without any login", file=sys.stderr)
    print(f"melp serve: {args.model} on http://{args.host}:{args.port}/ (API: /v1/..., schema: /openapi.json)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="info")
    return 0

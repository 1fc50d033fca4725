"""The HTTP routes of ``melp serve``: the JSON API under /v1 and the page at /.

Every error is JSON ``{"error": "..."}`` naming the file and what is wrong: 400 for a file that
cannot be used (empty, unreadable, a .hea without its .dat, a refused name), 413 for an upload over
the limit, 422 for bad labels or parameters and for a record failing the signal-quality gate
(then also ``"flags"``). No interactive docs: FastAPI's Swagger page loads its scripts from a CDN
and the server must work offline; the schema is at /openapi.json.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, File, Form, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from melp.serve import inference
from melp.serve.batcher import Batcher
from melp.serve.uploads import BodyLimit, UploadError, save_uploads

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("melp.serve")
# the page loads nothing from elsewhere; the browser enforces it
PAGE_POLICY = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'"


class Finding(BaseModel):
    label: str
    score: float  # cosine similarity, averaged over windows: compare by rank, not a probability


class ClassifyResponse(BaseModel):
    findings: list[Finding]
    record: dict


class ReportResponse(BaseModel):
    report: str  # of the first window
    windows: list[dict]  # {start_s, end_s, report} per window
    record: dict


class EmbedResponse(BaseModel):
    embedding: list[float]
    record: dict


class AnalyzeResponse(BaseModel):
    findings: list[Finding]
    report: str
    embedding: list[float]
    plot_png_base64: str
    record: dict


def create_app(model, model_dir: str | None = None, max_upload_mb: float = 20, batching: bool = True,
               max_windows: int = 64, wait_ms: float = 5) -> FastAPI:
    """The app around a loaded model (``melp.load``)."""
    cfg = model.config.preprocess
    work = inference.ModelWork(model)
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="melp-model")
    embedder = Batcher(work.embed_windows, model_thread, max_windows, wait_ms / 1000, batching)
    writer = Batcher(work.generate, model_thread, max_windows, wait_ms / 1000, batching)
    defaults = inference.default_labels()

    @asynccontextmanager
    async def lifespan(app):
        embedder.start()
        writer.start()
        yield
        await embedder.stop()
        await writer.stop()

    app = FastAPI(title="melp serve", version=_version(), lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Zero-shot findings, generated reports and embeddings of ECG records from a MELP "
                              "model. Upload a record's file(s) as multipart field 'file' (a WFDB record: its "
                              ".hea and .dat together).")
    app.state.embedder, app.state.writer = embedder, writer
    app.add_middleware(BodyLimit, limit=int(max_upload_mb * 2**20))

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        extra = getattr(error, "extra", None) or {}
        return JSONResponse({"error": str(error.detail), **extra}, status_code=error.status_code)

    @app.exception_handler(RequestValidationError)
    async def invalid(request, error: RequestValidationError):
        parts = [f"{'.'.join(map(str, e['loc'][1:])) or e['loc'][0]}: {e['msg']}" for e in error.errors()]
        return JSONResponse({"error": "; ".join(parts)}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request, error: Exception):  # a bug, not the client's input: logged, still JSON
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500)

    async def read(files: list[UploadFile], force: bool, fs: float | None = None) -> inference.Loaded:
        """Save the upload in a private temp folder, read it as one record, delete the folder."""
        with tempfile.TemporaryDirectory(prefix="melp-serve-") as folder:
            path = await save_uploads(files, Path(folder))
            name = path.name
            try:
                return await asyncio.to_thread(inference.load_record, path, name, cfg, force, fs)
            except Exception as error:  # the file's fault: its content is whatever the client sent
                from melp.eval.single import QualityError

                message = str(error).replace(f"{folder}/", "").replace(folder, "")
                if isinstance(error, QualityError):
                    raise _error(422, message.replace("--force", "force=true"),
                                 flags=[{"name": f.name, "detail": f.detail, "fails": f.fails}
                                        for f in error.quality.flags])
                if not isinstance(error, (ValueError, OSError)):
                    log.info("reading %s failed", name, exc_info=True)
                message = message.removeprefix(f"{name}: ")
                raise UploadError(f"{name}: cannot be read as an ECG record: {message}")

    def parse_labels(labels: list[str] | None) -> list[str]:
        """Absent: the default class list. One field holding a JSON list, or the field repeated."""
        if labels is None:
            return defaults
        if len(labels) == 1 and labels[0].lstrip().startswith("["):
            try:
                labels = json.loads(labels[0])
            except json.JSONDecodeError as e:
                raise _error(422, f"labels: not a JSON list of strings ({e})")
        try:
            return inference.check_labels(labels)
        except ValueError as e:
            raise _error(422, str(e))

    async def findings(loaded, labels):
        vectors = await embedder.submit(loaded.windows)
        label_vectors = await asyncio.get_running_loop().run_in_executor(model_thread, work.label_vectors, labels)
        return vectors, inference.rank(vectors, labels, label_vectors)

    async def reports(loaded, beams: int, max_len: int | None) -> list[dict]:
        texts = await writer.submit(loaded.windows, (beams, max_len))
        return [{"start_s": i * cfg.seconds, "end_s": (i + 1) * cfg.seconds, "report": text}
                for i, text in enumerate(texts)]

    FILES = File(..., description="the record's file(s); a WFDB record needs its .hea and .dat")
    FORCE = Query(False, description="score a record that fails the signal-quality gate")
    LABELS = Form(None, description="labels to rank: a JSON list in one field, or the field repeated; "
                                    "default: GET /v1/model's default_labels")
    BEAMS = Query(3, ge=1, le=8, description="beam width of report generation (1: greedy)")
    MAX_LEN = Query(None, ge=1, le=512, description="longest report in tokens (default: the model's)")
    FS = Query(None, gt=0, le=100000, description="sampling rate in Hz of a CSV file that carries none")

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/v1/model")
    async def model_info() -> dict:
        return {"config": model.config.to_dict(), "provenance": _provenance(model_dir),
                "embedding_size": int(model.config.embed_dim), "fs": float(cfg.fs),
                "window_s": float(cfg.seconds), "default_labels": defaults,
                "limits": {"max_upload_mb": max_upload_mb, "max_labels": inference.MAX_LABELS},
                "batching": batching}

    @app.post("/v1/classify", response_model=ClassifyResponse)
    async def classify(file: list[UploadFile] = FILES, labels: list[str] | None = LABELS, force: bool = FORCE,
                       fs: float | None = FS):
        """Rank labels by the cosine similarity of their text embedding with the ECG's (zero-shot)."""
        labels = parse_labels(labels)
        loaded = await read(file, force, fs)
        _, ranked = await findings(loaded, labels)
        return {"findings": ranked, "record": loaded.info(cfg.seconds)}

    @app.post("/v1/report", response_model=ReportResponse)
    async def report(file: list[UploadFile] = FILES, beams: int = BEAMS, max_len: int | None = MAX_LEN,
                     force: bool = FORCE, fs: float | None = FS):
        """A generated report per window of the record."""
        loaded = await read(file, force, fs)
        windows = await reports(loaded, beams, max_len)
        return {"report": windows[0]["report"], "windows": windows, "record": loaded.info(cfg.seconds)}

    @app.post("/v1/embed", response_model=EmbedResponse,
              responses={200: {"content": {"application/octet-stream": {}},
                               "description": "JSON, or with format=npy a float32 .npy array"}})
    async def embed(file: list[UploadFile] = FILES, format: str = Query("json", pattern="^(json|npy)$"),
                    force: bool = FORCE, fs: float | None = FS):
        """The record's L2-normalised embedding (its windows' embeddings averaged)."""
        loaded = await read(file, force, fs)
        vector = inference.record_embedding(await embedder.submit(loaded.windows))
        if format == "npy":
            return Response(inference.npy_bytes(vector), media_type="application/octet-stream",
                            headers={"content-disposition": f'attachment; filename="{Path(loaded.name).stem}.npy"'})
        return {"embedding": vector.tolist(), "record": loaded.info(cfg.seconds)}

    @app.post("/v1/plot", response_class=Response, responses={200: {"content": {"image/png": {}}}})
    async def plot(file: list[UploadFile] = FILES, fs: float | None = FS):
        """The 12-lead plot (3 x 4 + lead II strip, 25 mm/s, 10 mm/mV) as PNG; no quality gate."""
        loaded = await read(file, force=True, fs=fs)
        return Response(await asyncio.to_thread(inference.plot_png, loaded), media_type="image/png")

    @app.post("/v1/analyze", response_model=AnalyzeResponse)
    async def analyze(file: list[UploadFile] = FILES, labels: list[str] | None = LABELS, beams: int = BEAMS,
                      force: bool = FORCE, fs: float | None = FS):
        """Everything the page shows for one record, from one upload: findings, report, embedding, plot."""
        labels = parse_labels(labels)
        loaded = await read(file, force, fs)
        (vectors, ranked), windows, png = await asyncio.gather(
            findings(loaded, labels), reports(loaded, beams, None), asyncio.to_thread(inference.plot_png, loaded))
        return {"findings": ranked, "report": windows[0]["report"],
                "embedding": inference.record_embedding(vectors).tolist(),
                "plot_png_base64": base64.b64encode(png).decode("ascii"), "record": loaded.info(cfg.seconds)}

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", headers={"content-security-policy": PAGE_POLICY})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _error(status: int, message: str, **extra) -> HTTPException:
    error = HTTPException(status_code=status, detail=message)
    error.extra = extra
    return error


def _provenance(model_dir: str | None) -> dict:
    """What the model folder records about where it came from: its small JSON files other than the
    config (e.g. conversion.json of a converted checkpoint), and the folder itself."""
    if not model_dir:
        return {}
    folder = Path(model_dir)
    found = {"folder": str(folder.resolve())}
    for path in sorted(folder.glob("*.json")):
        if path.name in ("config.json", "manifest.json") or path.stat().st_size > 1 << 20:
            continue
        try:
            found[path.stem] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
    return found


def _version() -> str:
    from melp import __version__

    return __version__

"""melp serve's HTTP API on a small random model: every endpoint, its numbers against the command
line's own functions (melp classify / melp report on the same file), bad input of every kind, the
upload limit (declared and streamed), and the batcher handing each request its own result."""
from __future__ import annotations

import asyncio
import io
import json
import socket
import tempfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from servefixtures import model_folder, running_server, write_record  # noqa: E402

import melp  # noqa: E402
from melp.eval.single import classify_windows, record_windows  # noqa: E402
from melp.eval.single_report import report_file  # noqa: E402
from melp.serve.app import create_app  # noqa: E402
from melp.serve.batcher import Batcher  # noqa: E402

# the start of a valid multipart body: one file part whose bytes follow
PART = (b'--x\r\nContent-Disposition: form-data; name="file"; filename="big.dat"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n")
LABELS = ["atrial fibrillation", "normal sinus rhythm", "left bundle branch block"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("torch")
    return model_folder(tmp_path_factory.mktemp("serve-model"))


@pytest.fixture(scope="module")
def model(model_dir):
    return melp.load(model_dir)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    folder = tmp_path_factory.mktemp("records")
    return {name: write_record(folder, name, seed) for name, seed in (("rec1", 1), ("rec2", 2))}


@pytest.fixture(scope="module")
def client(model, model_dir):
    with TestClient(create_app(model, str(model_dir), max_upload_mb=1)) as client:
        yield client


def upload(paths, names=None):
    names = names or [p.name for p in paths]
    return [("file", (name, p.read_bytes())) for name, p in zip(names, paths)]


def error_of(response, status):
    assert response.status_code == status, response.text
    return response.json()["error"]


# ----------------------------------------------------------------------------- endpoints


def test_health_model_schema_and_page(client, model):
    assert client.get("/v1/health").json() == {"status": "ok"}
    info = client.get("/v1/model").json()
    assert info["embedding_size"] == model.config.embed_dim
    assert info["fs"] == model.config.preprocess.fs and info["window_s"] == model.config.preprocess.seconds
    assert info["config"]["embed_dim"] == model.config.embed_dim
    assert "preprocess" in info["provenance"] and info["default_labels"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/classify", "/v1/report", "/v1/embed", "/v1/plot", "/v1/analyze", "/v1/health", "/v1/model"):
        assert path in paths
    assert client.get("/docs").status_code == 404  # Swagger UI would load scripts from a CDN
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("app.js", "style.css"):
        assert client.get(f"/static/{asset}").status_code == 200
        assert "//" not in client.get(f"/static/{asset}").text.replace("// ", "")  # no URL: nothing from elsewhere
    assert "//" not in page.text


def test_classify_matches_the_classify_command(client, model, records):
    hea = records["rec1"][0]
    windows, _ = record_windows(str(hea), model.config.preprocess)
    expected = classify_windows(model, windows, LABELS)
    as_json = client.post("/v1/classify", files=upload(records["rec1"]), data={"labels": json.dumps(LABELS)})
    repeated = client.post("/v1/classify", files=upload(records["rec1"]), data={"labels": LABELS})
    for response in (as_json, repeated):
        assert response.status_code == 200, response.text
        body = response.json()
        assert [f["label"] for f in body["findings"]] == [label for label, _ in expected]
        np.testing.assert_allclose([f["score"] for f in body["findings"]], [s for _, s in expected], atol=1e-5)
    info = as_json.json()["record"]
    assert info["name"] == "rec1.hea" and info["fs"] == 500 and info["duration_s"] == 10
    assert info["windows"] == len(windows) and len(info["leads"]) == 12 and info["quality"]["passed"]


def test_classify_without_labels_ranks_the_default_classes(client, records):
    defaults = client.get("/v1/model").json()["default_labels"]
    body = client.post("/v1/classify", files=upload(records["rec2"])).json()
    assert sorted(f["label"] for f in body["findings"]) == sorted(defaults)


def test_report_matches_the_report_command(client, model, records):
    expected = report_file(model, str(records["rec1"][0]), beams=1, max_len=6)
    body = client.post("/v1/report?beams=1&max_len=6", files=upload(records["rec1"])).json()
    assert [w["report"] for w in body["windows"]] == [text for _, _, text in expected]
    assert body["report"] == expected[0][2]
    assert [(w["start_s"], w["end_s"]) for w in body["windows"]] == [(a, b) for a, b, _ in expected]


def test_embed_json_and_npy(client, model, records):
    windows, _ = record_windows(str(records["rec2"][0]), model.config.preprocess)
    mean = model.embed_ecg(windows, fs=model.config.preprocess.fs).mean(axis=0)
    expected = mean / np.linalg.norm(mean)
    body = client.post("/v1/embed", files=upload(records["rec2"])).json()
    np.testing.assert_allclose(body["embedding"], expected, atol=1e-5)
    npy = client.post("/v1/embed?format=npy", files=upload(records["rec2"]))
    assert npy.status_code == 200 and npy.headers["content-type"] == "application/octet-stream"
    vector = np.load(io.BytesIO(npy.content), allow_pickle=False)
    assert vector.dtype == np.float32 and vector.shape == (model.config.embed_dim,)
    np.testing.assert_allclose(vector, body["embedding"], atol=1e-6)
    assert error_of(client.post("/v1/embed?format=pickle", files=upload(records["rec2"])), 422)


def test_plot_and_analyze(client, records):
    import matplotlib.image

    png = client.post("/v1/plot", files=upload(records["rec1"]))
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    image = matplotlib.image.imread(io.BytesIO(png.content), format="png")
    assert image.shape[0] > 200 and image.shape[1] > 400 and image.std() > 0.01  # a drawing, not a blank
    body = client.post("/v1/analyze?beams=1", files=upload(records["rec1"]), data={"labels": json.dumps(LABELS)}).json()
    assert len(body["findings"]) == 3 and isinstance(body["report"], str) and len(body["embedding"]) > 1
    assert body["plot_png_base64"].startswith("iVBORw0KGgo")  # base64 of the PNG signature


# ----------------------------------------------------------------------------- bad input


def test_unusable_files_are_named_in_the_error(client, records, tmp_path):
    hea, dat = records["rec1"]
    assert "rec1.dat: the file is empty" in error_of(
        client.post("/v1/classify", files=[("file", ("rec1.hea", hea.read_bytes())), ("file", ("rec1.dat", b""))]), 400)
    noise = np.random.default_rng(0).bytes(20000)
    message = error_of(client.post("/v1/classify", files=[("file", ("noise.bin", noise))]), 400)
    assert message.startswith("noise.bin: cannot be read as an ECG record") and "melp-serve-" not in message
    broken = client.post("/v1/classify", files=[("file", ("rec1.hea", b"\x00garbage header\n" * 50)),
                                                ("file", ("rec1.dat", dat.read_bytes()))])
    assert "rec1" in error_of(broken, 400)
    message = error_of(client.post("/v1/classify", files=upload([hea])), 400)
    assert "rec1.hea" in message and "rec1.dat" in message and "not uploaded" in message
    assert "several" in error_of(client.post("/v1/classify", files=upload(records["rec1"] + records["rec2"][:1])), 400)
    assert "file" in error_of(client.post("/v1/classify", data={"labels": "x"}), 422)


def test_a_flat_record_fails_the_quality_gate_with_its_flags(client, tmp_path):
    import wfdb

    from melp.data.leads import CANONICAL_LEADS

    wfdb.wrsamp("flat", fs=500, units=["mV"] * 12, sig_name=list(CANONICAL_LEADS),
                p_signal=np.zeros((5000, 12)), fmt=["16"] * 12, write_dir=str(tmp_path))
    files = upload([tmp_path / "flat.hea", tmp_path / "flat.dat"])
    response = client.post("/v1/classify", files=files)
    assert response.status_code == 422 and "quality" in response.json()["error"]
    assert "flat" in {flag["name"] for flag in response.json()["flags"]}
    assert client.post("/v1/plot", files=files).status_code == 200  # a plot shows what is wrong


@pytest.mark.parametrize("labels, problem", [("[]", "empty"), ('["AF", 3]', "not text"), ('["AF", "  "]', "blank"),
                                             ('["AF", "AF"]', "twice"), ("[\"AF\"", "JSON"),
                                             (json.dumps(["x"] * 101), "at most")])
def test_bad_labels(client, records, labels, problem):
    response = client.post("/v1/classify", files=upload(records["rec1"]), data={"labels": labels})
    assert problem in error_of(response, 422)


def test_client_file_names_never_choose_a_path(client, records, tmp_path, monkeypatch):
    """Directories are stripped from names, odd names refused, and the temp folder is gone after."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    hea, dat = records["rec1"]
    traversal = client.post("/v1/classify", data={"labels": "[\"AF\"]"},
                            files=[("file", ("../../rec1.hea", hea.read_bytes())),
                                   ("file", ("..\\..\\rec1.dat", dat.read_bytes()))])
    assert traversal.status_code == 200 and traversal.json()["record"]["name"] == "rec1.hea"
    assert list(scratch.iterdir()) == []  # the request's folder was deleted
    assert not (tmp_path / "rec1.hea").exists() and not (scratch.parent.parent / "rec1.hea").exists()
    for name in ("..", ".hea", "a/..", "rec\x00.hea", "rec;rm.hea"):
        assert "not allowed" in error_of(client.post("/v1/classify", files=[("file", (name, b"abc"))]), 400)
    assert list(scratch.iterdir()) == []


def test_a_declared_100_mb_upload_is_refused_before_it_is_read(client):
    sent = 0

    def body():
        nonlocal sent
        for _ in range(100 * 16):
            sent += 1 << 16
            yield b"\0" * (1 << 16)

    response = client.post("/v1/classify", content=body(),
                           headers={"content-type": "multipart/form-data; boundary=x",
                                    "content-length": str(100 * 2**20)})
    assert "too large" in error_of(response, 413) and sent == 0


def test_a_body_without_length_is_counted(client):
    """No Content-Length (chunked): the bytes are counted as they arrive (1 MB limit here)."""
    def body():
        yield PART
        for _ in range(3 * 16):
            yield b"\0" * (1 << 16)

    response = client.post("/v1/classify", content=body(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert "too large" in error_of(response, 413)


def test_a_streamed_100_mb_upload_gets_413_long_before_its_end(model, model_dir):
    """A real server and a raw socket that streams 100 MB chunked: the 413 arrives after about the
    limit (1 MB), while the client is still sending."""
    with running_server(create_app(model, str(model_dir), max_upload_mb=1)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Content-Type: multipart/form-data; boundary=x\r\n\r\n")
            conn.sendall(b"%x\r\n%s\r\n" % (len(PART), PART))
            chunk, sent, answer = b"\0" * (1 << 16), 0, b""
            conn.settimeout(0.5)
            while sent < 100 * 2**20 and not answer:
                try:
                    conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    sent += len(chunk)
                    conn.setblocking(False)
                    answer = conn.recv(65536)
                except (BlockingIOError, socket.timeout):
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    break
                finally:
                    conn.settimeout(0.5)
            conn.settimeout(10)
            while not answer.rstrip().endswith(b"}"):  # the rest of the answer: its JSON body may come later
                more = conn.recv(65536)
                if not more:
                    break
                answer += more
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"too large" in answer
    assert sent < 10 * 2**20


# ----------------------------------------------------------------------------- batching


def test_batcher_runs_concurrent_requests_in_one_call_and_routes_each_result():
    calls = []

    def run_batch(items, key):
        calls.append([len(x) for x in items])
        return [x.sum() * (10 if key == "b" else 1) for x in items]

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(run_batch, executor, max_windows=100, wait_s=0.2)
            batcher.start()
            jobs = [batcher.submit(np.full((i + 1, 2), i), "a") for i in range(5)] + [batcher.submit(np.ones((1, 2)), "b")]
            results = await asyncio.gather(*jobs)
            await batcher.stop()
            return results

    results = asyncio.run(main())
    assert results == [2 * (i + 1) * i for i in range(5)] + [20]
    assert calls == [[1, 2, 3, 4, 5], [1]]  # key "a" together, key "b" (another beam width) apart


def test_batcher_disabled_makes_one_call_per_request():
    calls = []

    async def main():
        with ThreadPoolExecutor(1) as executor:
            batcher = Batcher(lambda items, key: calls.append(len(items)) or [0] * len(items), executor, enabled=False)
            batcher.start()
            await asyncio.gather(*[batcher.submit(np.zeros((1, 1))) for _ in range(4)])
            await batcher.stop()

    asyncio.run(main())
    assert calls == [1, 1, 1, 1]


def test_concurrent_requests_get_their_own_results(model, model_dir, records):
    """Two different records classified 8 times concurrently (batched together) score as sequentially."""
    with TestClient(create_app(model, str(model_dir), wait_ms=100)) as client:
        def classify(name):
            response = client.post("/v1/classify", files=upload(records[name]), data={"labels": json.dumps(LABELS)})
            assert response.status_code == 200, response.text
            return {f["label"]: f["score"] for f in response.json()["findings"]}

        alone = {name: classify(name) for name in records}
        assert alone["rec1"] != alone["rec2"]
        calls = client.app.state.embedder.calls
        names = ["rec1", "rec2"] * 4
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(classify, names))
        for name, scores in zip(names, together):
            assert scores.keys() == alone[name].keys()
            np.testing.assert_allclose([scores[k] for k in LABELS], [alone[name][k] for k in LABELS], atol=1e-5)
        assert client.app.state.embedder.calls - calls <= len(names)


# ----------------------------------------------------------------------------- the command


def test_melp_serve_starts_loads_the_model_and_answers(model_dir, capsys):
    """`melp serve` as a user starts it: a subprocess on a free port, then /v1/health and /v1/model."""
    import subprocess
    import sys
    import time

    import httpx
    from servefixtures import free_port

    from melp.cli import main
    from melp.serve.cli import _is_loopback

    assert main(["serve", "--model", str(model_dir), "--max-upload-mb", "0"]) == 2
    assert "--max-upload-mb must be positive" in capsys.readouterr().err
    assert _is_loopback("127.0.0.1") and _is_loopback("::1") and _is_loopback("localhost")
    assert not _is_loopback("0.0.0.0") and not _is_loopback("example.org")

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "melp.cli", "serve", "--model", str(model_dir), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "melp serve did not answer within 60 s"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/model").json()["provenance"]["folder"] == str(model_dir.resolve())
    finally:
        server.terminate()
        output = server.communicate(timeout=20)[0]
    assert f"http://127.0.0.1:{port}/" in output


def test_a_csv_without_a_rate_takes_fs_from_the_query(client, model, records, tmp_path):
    """A CSV without a rate gets the reader's clear error, and reads once ``fs`` is given."""
    import pandas as pd

    record = melp.read_record(records["rec2"][0])
    path = tmp_path / "rate-free.csv"
    pd.DataFrame(record.signal.T, columns=list(record.leads)).to_csv(path, index=False)
    upload_csv = lambda: {"file": (path.name, path.read_bytes(), "text/csv")}  # noqa: E731
    message = error_of(client.post("/v1/embed", files=upload_csv()), 400)
    assert "rate-free.csv" in message and "pass fs=" in message
    body = client.post(f"/v1/embed?fs={record.fs:g}", files=upload_csv()).json()
    expected = client.post("/v1/embed", files=upload(records["rec2"])).json()["embedding"]
    np.testing.assert_allclose(body["embedding"], expected, atol=1e-4)
    assert body["record"]["fs"] == record.fs
    assert error_of(client.post("/v1/embed?fs=-5", files=upload_csv()), 422)

"""Uploads: a request-size limit, safe file names, and one record's files in a private temp folder.

Nothing a client sends decides where a file lands: each name is reduced to a plain base name
(directories stripped, ``..``, hidden and odd names refused) inside a ``TemporaryDirectory`` the
server made for this request and deletes after it. Bytes are only written and read back by
``melp.read_record``; nothing is unpickled.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from starlette.exceptions import HTTPException

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._+-]{0,199}")
HEADER = ".hea"  # a WFDB header names the signal files of its record


class UploadError(HTTPException):
    """400: a file of the upload is unusable; the message names it."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(status_code=status_code, detail=message)


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``limit`` bytes. The declared Content-Length is
    checked before anything is read, and the bytes actually received are counted as they arrive, so
    a client that lies about (or omits) the length is stopped at the limit, not at the end."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    def _message(self) -> str:
        return f"upload too large: the limit is {self.limit / 2**20:g} MB per request (melp serve --max-upload-mb)"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            body = json.dumps({"error": self._message() if declared.isdigit() else "bad Content-Length"}).encode()
            await send({"type": "http.response.start", "status": 413 if declared.isdigit() else 400,
                        "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    # FastAPI re-raises an HTTPException met while parsing the body; the app's handler
                    # turns it into the JSON 413
                    raise HTTPException(status_code=413, detail=self._message())
            return message

        await self.app(scope, counted, send)


def safe_name(name: str | None) -> str:
    """The base name of a client's file name, or an UploadError when it is not a plain file name."""
    raw = name or ""
    base = re.split(r"[\\/]", raw)[-1].strip()
    if base in ("", ".", "..") or not SAFE_NAME.fullmatch(base) or ".." in base:
        raise UploadError(f"file name {raw!r} is not allowed: use a plain name of letters, digits, spaces and ._+- "
                          "(no folders, no leading dot)")
    return base


def header_signal_files(text: str) -> list[str]:
    """The signal file names a WFDB header's signal lines name (first field of each line after the
    record line; comments skipped). Best effort: the reader checks the header properly."""
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not lines:
        return []
    fields = lines[0].split()
    try:
        n = int(fields[1]) if len(fields) > 1 else 0
    except ValueError:
        return []
    return sorted({line.split()[0] for line in lines[1:1 + n] if line.split()})


def record_path(folder: Path, names: list[str]) -> Path:
    """The file ``melp.read_record`` should open for the files ``names`` saved in ``folder``: the
    ``.hea`` of a WFDB record (whose signal files must be there too), else the one file."""
    headers = [n for n in names if n.lower().endswith(HEADER)]
    if len(headers) > 1:
        raise UploadError(f"one record per request: got several headers {headers}")
    if headers:
        header = folder / headers[0]
        wanted = header_signal_files(header.read_text(errors="replace"))
        missing = [w for w in wanted if w not in names]
        if missing:
            raise UploadError(f"{headers[0]}: its signal file(s) {', '.join(missing)} were not uploaded with it "
                              "(send the .hea and its .dat/.mat together)")
        return header
    if len(names) > 1:
        raise UploadError(f"one record per request: got {len(names)} files {names} but no .hea header tying them "
                          "together")
    return folder / names[0]


async def save_uploads(files, folder: Path) -> Path:
    """Write the uploaded files (starlette UploadFiles) into ``folder`` under safe names; the path of
    the record to read."""
    if not files:
        raise UploadError("no file uploaded: send the record's file(s) as the multipart field 'file'")
    names = []
    for upload in files:
        name = safe_name(upload.filename)
        if name in names:
            raise UploadError(f"{name}: uploaded twice")
        size = 0
        with open(folder / name, "xb") as out:  # "x": never overwrite, never follow a planted link
            while chunk := await upload.read(1 << 20):
                out.write(chunk)
                size += len(chunk)
        if size == 0:
            raise UploadError(f"{name}: the file is empty")
        names.append(name)
    return record_path(folder, names)

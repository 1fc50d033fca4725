"""``melp serve``: a local web page and HTTP API around one loaded model (FastAPI + uvicorn).

app.py: the routes; batcher.py: micro-batching of concurrent requests; uploads.py: upload limit,
safe names, the private temp folder; inference.py: reading records and the model calls; cli.py: the
command; static/: the page (HTML, JS, CSS; no CDN).
"""

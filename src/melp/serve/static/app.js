// melp serve's page: group the chosen files into records, post each to /v1/analyze, show the answer.
"use strict";

const state = { defaults: [], records: [] };  // records: {name, files, card}
const $ = (selector) => document.querySelector(selector);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;  // textContent: file names and reports are never HTML
  return node;
}

// A WFDB record is a .hea plus its .dat (or .mat): files sharing a name without extension are one record.
function groupByStem(files) {
  const groups = new Map();
  for (const file of files) {
    const dot = file.name.lastIndexOf(".");
    const stem = dot > 0 ? file.name.slice(0, dot) : file.name;
    if (!groups.has(stem)) groups.set(stem, []);
    groups.get(stem).push(file);
  }
  return [...groups].map(([name, group]) => ({ name, files: group }));
}

function labels() {
  return $("#labels").value.split("\n").map((line) => line.trim()).filter((line) => line);
}

// A float32 vector as a NumPy .npy file (format 1.0), so the download opens with numpy.load.
function npyBlob(values) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${values.length},), }`;
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";  // pad so the data starts at a multiple of 64
  const head = new Uint8Array(10 + header.length);
  head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  for (let i = 0; i < header.length; i++) head[10 + i] = header.charCodeAt(i);
  return new Blob([head, new Float32Array(values)], { type: "application/octet-stream" });
}

function showError(card, message) {
  card.querySelector(".status").replaceWith(el("p", "error", message));
}

function showResult(card, record, data) {
  const info = data.record;
  card.querySelector(".meta").textContent =
    `${record.files.map((f) => f.name).join(" + ")} · ${info.fs} Hz · ${info.duration_s} s · ` +
    `${info.windows} window(s) of ${info.window_s} s · leads: ${info.leads.join(" ")}` +
    (info.missing_leads.length ? ` (zero-filled: ${info.missing_leads.join(" ")})` : "");
  const body = el("div", "body");
  const left = el("div");
  const img = el("img", "plot");
  img.alt = `12-lead plot of ${record.name}`;
  img.src = `data:image/png;base64,${data.plot_png_base64}`;
  left.append(img);
  for (const note of info.warnings) left.append(el("p", "warn", note));

  const right = el("div");
  right.append(el("h3", "", "Findings (zero-shot)"));
  const list = el("ol", "findings");
  const top = Math.max(...data.findings.map((f) => Math.abs(f.score)), 1e-6);
  for (const finding of data.findings) {
    const item = el("li");
    item.append(el("span", "label", finding.label), el("span", "score", finding.score.toFixed(3)));
    const bar = el("span", "bar");
    bar.style.width = `${Math.max(0, (finding.score / top) * 100)}%`;
    item.append(bar);
    list.append(item);
  }
  right.append(list, el("h3", "", "Generated report"), el("p", "report", data.report || "(empty report)"));
  const download = el("button", "download", "Download embedding (.npy)");
  download.type = "button";
  download.addEventListener("click", () => {
    const link = el("a");
    link.href = URL.createObjectURL(npyBlob(data.embedding));
    link.download = `${record.name}.embedding.npy`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 1000);
  });
  right.append(download);
  body.append(left, right);
  card.querySelector(".status").replaceWith(body);
}

async function analyze(record) {
  const card = record.card;
  card.querySelector(".body, .error, .status")?.remove();
  card.append(el("p", "status", "analysing…"));
  const form = new FormData();
  for (const file of record.files) form.append("file", file, file.name);
  form.append("labels", JSON.stringify(labels()));
  try {
    const fs = document.getElementById("fs").value.trim();  // only a CSV without a rate needs it
    const url = fs ? `/v1/analyze?fs=${encodeURIComponent(fs)}` : "/v1/analyze";
    const response = await fetch(url, { method: "POST", body: form });
    const data = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
    if (!response.ok) {
      const flags = (data.flags || []).map((f) => `\n • ${f.name}: ${f.detail}`).join("");
      showError(card, `${data.error}${flags}`);  // the server's message names the file
    } else {
      showResult(card, record, data);
    }
  } catch (error) {
    showError(card, `${record.name}: the server could not be reached (${error.message})`);
  }
}

function addFiles(fileList) {
  const results = $("#results");
  for (const record of groupByStem([...fileList])) {
    record.card = el("article", "record");
    record.card.dataset.name = record.name;
    record.card.append(el("h2", "", record.name), el("p", "meta", record.files.map((f) => f.name).join(" + ")));
    results.prepend(record.card);
    state.records.push(record);
    analyze(record);
  }
  $("#rerun").disabled = state.records.length === 0;
}

async function loadModelInfo() {
  try {
    const info = await (await fetch("/v1/model")).json();
    state.defaults = info.default_labels;
    if (!$("#labels").value.trim()) $("#labels").value = state.defaults.join("\n");
    $("#model-info").textContent = `model ${info.provenance.folder || ""} · embedding ${info.embedding_size} · ` +
      `${info.fs} Hz, ${info.window_s} s windows · uploads up to ${info.limits.max_upload_mb} MB`;
  } catch (error) {
    $("#model-info").textContent = `cannot reach the server: ${error.message}`;
  }
}

function setup() {
  const drop = $("#drop");
  $("#files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
  drop.addEventListener("keydown", (event) => { if (event.key === "Enter" || event.key === " ") $("#files").click(); });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.add("over"); });
  }
  for (const name of ["dragleave", "drop"]) {
    drop.addEventListener(name, (event) => { event.preventDefault(); drop.classList.remove("over"); });
  }
  drop.addEventListener("drop", (event) => addFiles(event.dataTransfer.files));
  $("#rerun").addEventListener("click", () => state.records.forEach(analyze));
  $("#reset-labels").addEventListener("click", () => { $("#labels").value = state.defaults.join("\n"); });
  loadModelInfo();
}

document.addEventListener("DOMContentLoaded", setup);

// The faceage page: talks only to this server (/api/...), loads nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { info: null, photo: null, name: "", running: false, again: false };

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  document.body.dataset.state = "error";
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setStatus(text) {
  $("status").textContent = text;
}

function currentMethod() {
  return state.info.methods.find((m) => m.name === $("method").value) || state.info.methods[0];
}

function fitSlider() {
  const m = currentMethod();
  const slider = $("age");
  slider.min = Math.floor(m.min_age);
  slider.max = Math.ceil(m.max_age);
  if (Number(slider.value) > Number(slider.max)) slider.value = slider.max;
  if (Number(slider.value) < Number(slider.min)) slider.value = slider.min;
  $("age-value").textContent = slider.value;
}

async function init() {
  try {
    const response = await fetch("/api/info");
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    state.info = await response.json();
  } catch (error) {
    showError(`Cannot reach the faceage server: ${error.message}`);
    return;
  }
  for (const m of state.info.methods) {
    const option = document.createElement("option");
    option.value = m.name;
    option.textContent = `${m.name}: ${m.summary}`;
    $("method").append(option);
  }
  $("method").value = state.info.default_method;
  fitSlider();
  setStatus("Upload a photo or use the example.");
  document.body.dataset.state = "ready";
}

function usePhoto(blob, name) {
  clearError();
  const limit = state.info.max_upload_bytes;
  if (blob.size > limit) {
    showError(`${name}: the file is ${(blob.size / 2 ** 20).toFixed(1)} MiB; the limit is ` +
              `${(limit / 2 ** 20).toFixed(1)} MiB`);
    return;
  }
  state.photo = blob;
  state.name = name;
  $("photo-name").textContent = name;
  const original = $("original");
  if (original.src) URL.revokeObjectURL(original.src);
  original.hidden = false;
  original.src = URL.createObjectURL(blob);
  $("run").disabled = false;
  run();
}

function stripAges() {
  if (!$("progression").checked) return "";
  return $("strip-ages").value.split(/[\s,;]+/).filter((t) => t !== "").join(",");
}

async function run() {
  if (!state.photo) return;
  if (state.running) {  // one request at a time; the latest settings run when this one is done
    state.again = true;
    return;
  }
  state.running = true;
  clearError();
  document.body.classList.add("busy");
  document.body.dataset.state = "busy";
  const age = $("age").value;
  setStatus(`Aging to ${age}…`);
  const params = new URLSearchParams({ method: $("method").value, to: age, name: state.name });
  const strip = stripAges();
  if (strip) params.set("strip", strip);
  try {
    const response = await fetch(`/api/age?${params}`, {
      method: "POST",
      body: state.photo,
      headers: { "X-Faceage-Token": document.querySelector('meta[name="faceage-token"]').content },
    });
    let payload = null;
    try {
      payload = await response.json();
    } catch (_) {
      payload = null;
    }
    if (!response.ok) {
      const message = payload && payload.error ? payload.error : `the server answered ${response.status}`;
      showError(message);
      setStatus("");
    } else {
      showResult(payload, age);
    }
  } catch (error) {
    showError(`The request failed: ${error.message}`);
    setStatus("");
  } finally {
    state.running = false;
    document.body.classList.remove("busy");
    if (state.again) {
      state.again = false;
      run();
    }
  }
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function showResult(r, requested) {
  const img = $("result");
  img.hidden = false;
  img.dataset.targetAge = requested;
  img.onload = () => { document.body.dataset.state = "done"; };
  img.onerror = () => showError("The result image could not be loaded; age the photo again.");
  img.src = r.image.url;
  const faces = r.faces.length === 1 ? "1 face" : `${r.faces.length} faces`;
  $("result-caption").textContent = `At ${r.target_age} (${r.method}, ${faces})`;
  const download = $("download");
  download.href = r.download;
  download.hidden = false;
  setStatus(r.warning ? `Done. ${r.warning}` : `Done in ${(r.total_ms / 1000).toFixed(1)} s.`);

  $("strip-section").hidden = !r.strip;
  if (r.strip) {
    $("strip").src = r.strip.url;
    $("strip-download").href = r.strip.download;
  }

  const body = $("faces").tBodies[0];
  body.replaceChildren();
  for (const f of r.faces) {
    const row = body.insertRow();
    const cells = [f.index + 1, fmt(f.source_age, 1), fmt(f.target_age, 0), fmt(f.reached_age, 1),
                   fmt(f.identity, 3), f.same_person === null ? "–" : (f.same_person ? "yes" : "no"),
                   fmt(f.ms, 0)];
    for (const value of cells) row.insertCell().textContent = value;
  }
  $("faces-section").hidden = r.faces.length === 0;
}

$("photo").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) usePhoto(file, file.name);
  event.target.value = "";  // choosing the same file again runs it again
});

$("example").addEventListener("click", async () => {
  clearError();
  try {
    const response = await fetch(state.info.example);
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    usePhoto(await response.blob(), "example.jpg");
  } catch (error) {
    showError(`Cannot load the example photo: ${error.message}`);
  }
});

$("age").addEventListener("input", () => { $("age-value").textContent = $("age").value; });
$("age").addEventListener("change", run);
$("method").addEventListener("change", () => { fitSlider(); run(); });
$("run").addEventListener("click", run);
$("progression").addEventListener("change", run);
$("strip-ages").addEventListener("change", () => { if ($("progression").checked) run(); });
$("original").addEventListener("error", () => { $("original").hidden = true; });

init();

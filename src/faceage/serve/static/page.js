// The faceage page: talks only to this server (/api/...), loads nothing from elsewhere.
//
// A photo is aged twice, one request after the other: first the whole photo at the slider's age
// (the first aged picture), then the largest face at every progression age, which the server
// sends as one picture of crops side by side. Moving the slider then only redraws the face from
// that picture (no request); letting go ages the whole photo at the new age.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  info: null,
  photo: null,
  name: "",
  generation: 0, // bumped by a new photo or new settings: older answers are dropped
  queue: Promise.resolve(),
  frames: null, // {image, ages, size}
  wholeAge: null,
  split: 50,
  requests: 0,
};

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

function progressionAges() {
  return currentMethod().progression;
}

function nearestAge(value) {
  const ages = progressionAges();
  return ages.reduce((best, a) => (Math.abs(a - value) < Math.abs(best - value) ? a : best), ages[0]);
}

function fitSlider() {
  const ages = progressionAges();
  const slider = $("age");
  slider.min = ages[0];
  slider.max = ages[ages.length - 1];
  slider.step = ages.length > 1 ? ages[1] - ages[0] : 1;
  slider.value = nearestAge(Number(slider.value));
  showAge();
}

function showAge() {
  $("age-value").textContent = $("age").value;
  $("face-age").textContent = $("age").value;
}

function buildOptions() {
  const box = $("options");
  box.replaceChildren();
  for (const option of currentMethod().options.filter((o) => o.web)) {
    const row = document.createElement("div");
    row.className = "option";
    const id = `option-${option.name}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = option.name.replace(/_/g, " ");
    const input = document.createElement("input");
    input.id = id;
    input.dataset.option = option.name;
    input.dataset.default = String(option.default);
    if (option.kind === "flag") {
      input.type = "checkbox";
      input.checked = Boolean(option.default);
      row.append(input, label);
    } else {
      const shown = document.createElement("output");
      input.type = option.low !== null && option.high !== null ? "range" : "number";
      if (option.low !== null) input.min = option.low;
      if (option.high !== null) input.max = option.high;
      input.step = option.kind === "integer" ? 1 : 0.1;
      input.value = option.default;
      shown.textContent = input.value;
      input.addEventListener("input", () => { shown.textContent = input.value; });
      row.append(label, input, shown);
    }
    const help = document.createElement("p");
    help.className = "note";
    help.textContent = option.help;
    row.append(help);
    input.addEventListener("change", restart);
    box.append(row);
  }
}

function optionValues() {
  const sets = [];
  for (const input of $("options").querySelectorAll("input[data-option]")) {
    const value = input.type === "checkbox" ? (input.checked ? "on" : "off") : input.value;
    const original = input.type === "checkbox" ? (input.dataset.default === "true" ? "on" : "off") : input.dataset.default;
    if (value !== original && Number(value) !== Number(original)) sets.push(`${input.dataset.option}=${value}`);
  }
  return sets;
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
  buildOptions();
  setStatus("Drop a photo in, paste one, choose a file or try the example.");
  document.body.dataset.state = "ready";
}

function usePhoto(blob, name) {
  clearError();
  if (!state.info) return;
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
  clearResult(); // the last photo's result must not stand beside this one
  restart();
}

function clearResult() {
  const img = $("result");
  img.hidden = true;
  img.removeAttribute("src");
  delete img.dataset.targetAge;
  $("result-age").textContent = "Aged";
  $("download").hidden = true;
  $("faces-section").hidden = true;
  $("faces-note").hidden = true;
}

// A new photo or new settings: the whole photo at the slider's age, then the progression.
function restart() {
  if (!state.photo) return;
  state.generation += 1;
  state.frames = null;
  state.wholeAge = null;
  $("compare").hidden = true;
  $("compare-wait").hidden = false;
  $("compare-wait").textContent = "The face at every age appears here once the whole photo is aged.";
  $("progression-downloads").hidden = true;
  delete document.body.dataset.progression;
  const generation = state.generation;
  enqueue(() => ageWhole(generation));
  enqueue(() => loadProgression(generation));
}

function enqueue(task) {
  state.queue = state.queue.then(task).catch((error) => showError(error.message));
}

function jobId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function describe(progress, what) {
  switch (progress.stage) {
    case "uploading": return `${what}: sending the photo…`;
    case "waiting": return `${what}: waiting, ${progress.done} photo(s) ahead…`;
    case "finding faces": return `${what}: finding faces…`;
    case "faces": return `${what}: ${progress.done} of ${progress.total} face(s) found…`;
    case "aging": return `${what}: ${progress.done} of ${progress.total} age(s) done…`;
    default: return `${what}…`;
  }
}

// POST the photo; shows the server's progress while it works; resolves to the JSON answer.
async function post(extra, what) {
  const job = jobId();
  const params = new URLSearchParams({ method: $("method").value, name: state.name, job, ...extra });
  const known = $("known-age").value.trim();
  if (known) params.set("from", known.replace(/[\s;]+/g, ","));
  for (const set of optionValues()) params.append("set", set);
  state.requests += 1;
  document.body.dataset.agingRequests = String(state.requests);
  document.body.classList.add("busy");
  document.body.dataset.state = "busy";
  const bar = $("progress");
  bar.hidden = false;
  bar.removeAttribute("value");
  setStatus(`${what}…`);
  let polling = true;
  const poll = async () => {
    while (polling) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      if (!polling) return;
      try {
        const response = await fetch(`/api/progress/${job}`);
        if (!response.ok || !polling) continue;
        const progress = await response.json();
        setStatus(describe(progress, what));
        if (progress.total > 0 && progress.stage === "aging") {
          bar.max = progress.total;
          bar.value = progress.done;
        }
      } catch (_) { /* the answer itself will say what went wrong */ }
    }
  };
  poll();
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
      throw new Error(payload && payload.error ? payload.error : `the server answered ${response.status}`);
    }
    return payload;
  } catch (error) {
    setStatus("");
    throw new Error(error.message.startsWith("Failed to fetch") ? `The request failed: ${error.message}` : error.message);
  } finally {
    polling = false;
    bar.hidden = true;
    document.body.classList.remove("busy");
  }
}

async function ageWhole(generation) {
  if (generation !== state.generation || !state.photo) return;
  const age = $("age").value;
  if (state.wholeAge === age) return;
  clearError();
  const r = await post({ to: age }, `Aging the whole photo to ${age}`);
  if (generation !== state.generation) return;
  state.wholeAge = age;
  showWhole(r, age);
}

async function loadProgression(generation) {
  if (generation !== state.generation || !state.photo) return;
  const r = await post({ to: $("age").value, progression: "1" }, "Aging the face across the ages");
  if (generation !== state.generation) return;
  const image = new Image();
  await new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("The progression could not be loaded; try again."));
    image.src = r.progression.frames;
  });
  if (generation !== state.generation) return;
  state.frames = { image, ages: r.progression.ages, size: r.progression.frame_size };
  $("strip-download").href = r.strip.download;
  $("gif-download").href = r.progression.gif;
  $("progression-downloads").hidden = false;
  $("compare").hidden = false;
  $("compare-wait").hidden = true;
  draw();
  setStatus("Done: slide to see every age; let go to age the whole photo.");
  document.body.dataset.progression = "ready";
  document.body.dataset.state = "done";
}

// The comparison: the face in the photo left of the handle, the face at the slider's age right of it.
function draw() {
  const f = state.frames;
  if (!f) return;
  const canvas = $("face");
  const ctx = canvas.getContext("2d");
  const age = nearestAge(Number($("age").value));
  const index = f.ages.indexOf(age) + 1; // frame 0 is the photo's own face
  const s = f.size;
  const w = canvas.width;
  const x = Math.round((w * state.split) / 100);
  ctx.drawImage(f.image, index * s, 0, s, s, 0, 0, w, w);
  if (x > 0) ctx.drawImage(f.image, 0, 0, (s * x) / w, s, 0, 0, x, w);
  ctx.fillStyle = "#ffffff";
  ctx.fillRect(x - 1, 0, 2, w);
  canvas.dataset.age = String(age);
  canvas.setAttribute("aria-label", `Left of the handle: the face in the photo; right: the face at ${age}`);
  $("after-tag").textContent = `at ${age}`;
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : Number(value).toFixed(digits);
}

function showWhole(r, requested) {
  const img = $("result");
  img.hidden = false;
  img.dataset.targetAge = requested;
  img.onload = () => {
    if (document.body.dataset.state === "busy") document.body.dataset.state = "done";
  };
  img.onerror = () => showError("The result image could not be loaded; age the photo again.");
  img.src = r.image.url;
  img.alt = `The whole photo at ${r.target_age}`;
  $("result-age").textContent = `At ${r.target_age} (${r.method})`;
  const download = $("download");
  download.href = r.download;
  download.hidden = false;
  setStatus(r.warning ? `Done. ${r.warning}` : `Whole photo done in ${(r.total_ms / 1000).toFixed(1)} s.`);

  const note = $("faces-note");
  note.hidden = !r.faces_note;
  note.textContent = r.faces_note ? `Note: ${r.faces_note} (the server ages at most ${r.faces_aged} per photo).` : "";

  const body = $("faces").tBodies[0];
  body.replaceChildren();
  for (const f of r.faces) {
    const row = body.insertRow();
    const start = f.source_from === "given"
      ? `${fmt(f.given_age, 0)} given (estimate ${fmt(f.estimated_age, 1)})`
      : `${fmt(f.source_age, 1)} estimated`;
    const cells = [f.index + 1, start, fmt(f.target_age, 0), fmt(f.reached_age, 1), fmt(f.identity, 3),
                   f.same_person === null ? "–" : (f.same_person ? "yes" : "no"), fmt(f.ms, 0)];
    for (const value of cells) row.insertCell().textContent = value;
  }
  $("faces-section").hidden = r.faces.length === 0;
}

function firstImage(list) {
  for (const item of list || []) {
    const file = item.getAsFile ? (item.kind === "file" ? item.getAsFile() : null) : item;
    if (file && (!file.type || file.type.startsWith("image/") || /\.\w+$/.test(file.name))) return file;
  }
  return null;
}

// --- events -------------------------------------------------------------------------------------

$("photo").addEventListener("change", (event) => {
  const file = event.target.files[0];
  if (file) usePhoto(file, file.name);
  event.target.value = ""; // choosing the same file again runs it again
});

$("example").addEventListener("click", async (event) => {
  event.stopPropagation();
  clearError();
  try {
    const response = await fetch(state.info.example);
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    usePhoto(await response.blob(), "example.jpg");
  } catch (error) {
    showError(`Cannot load the example photo: ${error.message}`);
  }
});

const drop = $("drop");
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  const file = firstImage(event.dataTransfer && event.dataTransfer.files);
  if (file) usePhoto(file, file.name || "dropped photo");
  else showError("Drop an image file (JPEG, PNG, WebP...).");
});
drop.addEventListener("keydown", (event) => {
  if (event.target === drop && (event.key === "Enter" || event.key === " ")) {
    event.preventDefault();
    $("photo").click();
  }
});
document.addEventListener("paste", (event) => {
  const file = firstImage(event.clipboardData && event.clipboardData.items);
  if (file) {
    event.preventDefault();
    usePhoto(file, file.name || "pasted photo");
  }
});

$("age").addEventListener("input", () => {
  showAge();
  draw(); // from the progression already here: no request
});
$("age").addEventListener("change", () => {
  const generation = state.generation;
  enqueue(() => ageWhole(generation));
});

$("split").addEventListener("input", () => {
  state.split = Number($("split").value);
  draw();
});
const face = $("face");
function splitAt(event) {
  const box = face.getBoundingClientRect();
  state.split = Math.max(0, Math.min(100, ((event.clientX - box.left) / box.width) * 100));
  $("split").value = Math.round(state.split);
  draw();
}
face.addEventListener("pointerdown", (event) => {
  face.setPointerCapture(event.pointerId);
  splitAt(event);
});
face.addEventListener("pointermove", (event) => {
  if (event.buttons) splitAt(event);
});

$("method").addEventListener("change", () => {
  fitSlider();
  buildOptions();
  restart();
});
$("known-age").addEventListener("change", restart);
$("original").addEventListener("error", () => { $("original").hidden = true; });

init();

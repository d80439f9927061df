// The agent desktop: the caller's story while the phone rings, the agent's state,
// wrap-up, the queues.  Everything shown comes from the broker (the agent's own
// topics, read-only, enforced by the broker) or the server's API; every change
// goes to the API with the session's CSRF token.  Data is put in the page with
// textContent only, never as HTML.
import { MqttClient } from "/static/agent/mqtt-ws.js";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") node.textContent = v;
    else if (k.startsWith("data-") || k === "role" || k.startsWith("aria-") || k === "class") {
      node.setAttribute(k, v);
    } else node[k] = v;
  }
  for (const c of children) if (c) node.append(c);
  return node;
};

const ui = { words: {}, lang: "en", me: null, desk: null, call: null, muted: false };
const t = (key, vars = {}) => {
  let s = (ui.words[ui.lang] || {})[key] || (ui.words.en || {})[key] || key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
};

async function api(path, body) {
  const init = { credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.headers["X-CSRF-Token"] = ui.me.csrf;
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401) {
    window.location.assign("/login");
    throw new Error("signed out");
  }
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw new Error(data.error || `HTTP ${r.status}`);
  return data;
}

function say(message) {
  const live = $("#announce");
  live.textContent = "";
  setTimeout(() => { live.textContent = message; }, 50);
}

function flash(message) {
  const box = $("#notice");
  box.textContent = message;
  box.hidden = !message;
}

// -- the ring -----------------------------------------------------------------------------
// The audio context is made on the agent's first click or key on the page:
// browsers keep a context made without a gesture silent, and making one takes
// tens of milliseconds (it must never delay a card).
let audio = null;
function unlockAudio() {
  if (audio) return;
  try { audio = new AudioContext(); } catch (e) { audio = null; }
}
for (const kind of ["pointerdown", "keydown"]) {
  document.addEventListener(kind, unlockAudio, { once: true, capture: true });
}
function ring() {
  if (ui.muted || !audio) return;
  try {
    for (const start of [0, 0.45]) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = 480;
      gain.gain.value = 0.08;
      osc.connect(gain).connect(audio.destination);
      osc.start(audio.currentTime + start);
      osc.stop(audio.currentTime + start + 0.3);
    }
  } catch (e) { /* no audio device: the card and the announcement still say it */ }
}

function notify(pop) {
  if (!("Notification" in window) || Notification.permission !== "granted") return;
  const who = pop.customer ? pop.customer.name : pop.caller_number;
  new Notification(t("agent.notify_title"), { body: `${who} (${pop.caller_number})`, tag: pop.call_id });
}

// -- the pop card ---------------------------------------------------------------------------
function money(value) { return value === null || value === undefined ? "–" : Number(value).toFixed(2); }

function renderPop(pop) {
  ui.call = pop;
  if (ui.desk) fillDispositions(pop.queue);
  const card = $("#card");
  card.replaceChildren();
  card.hidden = false;
  $("#waiting").hidden = true;
  card.setAttribute("data-testid", "screenpop");
  card.dataset.callId = pop.call_id;
  card.dataset.caller = pop.caller_number;
  const c = pop.customer;
  if (pop.callback) card.append(el("p", { class: "banner", "data-testid": "callback-banner", text: t("agent.callback_banner") }));
  card.append(el("h2", { text: c ? c.name : (pop.caller_name || t("agent.unknown_caller")) }));
  card.append(el("p", { class: "number", text: `${pop.caller_number} · ${t("agent.queue")} ${pop.queue || "–"}` }));
  if (pop.opener) card.append(el("p", { class: "opener", "data-testid": "opener", text: pop.opener }));
  const facts = el("dl", { class: "facts" });
  const fact = (k, v) => { if (v !== null && v !== undefined && v !== "") facts.append(el("dt", { text: k }), el("dd", { text: String(v) })); };
  if (c) {
    fact(t("agent.account"), c.account);
    fact(t("agent.balance"), money(c.balance));
    fact(t("agent.bill_due"), c.bill_due_date);
    fact(t("agent.open_issue"), c.open_ticket);
    if (c.flags && c.flags.length) fact(t("agent.flags"), c.flags.join(", "));
  }
  const ivr = pop.ivr;
  if (ivr) {
    fact(t("agent.language"), ivr.language);
    fact(t("agent.intent"), ivr.intent);
    const verified = (ivr.self_service || []).find((s) => s.task === "verify");
    if (verified) fact(t("agent.verified"), `${verified.outcome} (${verified.method || ""})`);
  }
  fact(t("agent.waited"), `${Math.round(pop.wait_seconds || 0)} s`);
  card.append(facts);
  if (ivr) {
    const steps = el("ol", { class: "timeline", "data-testid": "ivr-timeline" });
    const timeline = ivr.timeline || ivr.path.map((node) => ({ node }));
    for (const step of timeline) {
      const pressed = step.input || (ivr.inputs || {})[step.node];
      const bits = [step.node];
      if (pressed) bits.push(`→ ${pressed}`);
      if (step.said) bits.push(`“${step.said}”`);
      if (step.result) bits.push(`(${step.result})`);
      steps.append(el("li", { text: bits.join(" ") }));
    }
    card.append(el("h3", { text: t("agent.ivr_journey") }), steps);
    for (const s of ivr.self_service || []) {
      if (s.task === "verify") continue;
      card.append(el("p", { class: "selfservice", text: `${t("agent.self_service")}: ${s.task} – ${s.outcome}` }));
    }
  }
  const history = pop.history || (c ? c.recent_interactions : []) || [];
  if (history.length) {
    const list = el("ul", { class: "history", "data-testid": "history" });
    for (const h of history) {
      const when = (h.at || h.started_at || "").replace("T", " ").slice(0, 16);
      const what = [h.kind || "call", h.outcome, h.disposition].filter(Boolean).join(" · ");
      const summary = h.summary ? ` – ${h.summary}` : "";
      const note = h.disposition_note ? ` (“${h.disposition_note}”)` : "";
      list.append(el("li", { text: `${when} ${what}${summary}${note}` }));
    }
    card.append(el("h3", { text: t("agent.history") }), list);
  }
  say(t("agent.announce_pop", { who: c ? c.name : pop.caller_number, queue: pop.queue || "" }));
}

// -- state ------------------------------------------------------------------------------------
function renderState(s) {
  ui.state = s;
  const phase = s.phase || s.state;
  const label = $("#state");
  label.textContent = s.state;
  label.dataset.phase = phase;
  // The phase as the phone reads it, where it says more than Asterisk's state.
  const said = t(`agent.phase.${phase}`);
  const reason = s.pause_reason && phase === "paused" ? ` – ${s.pause_reason}` : "";
  $("#phase").textContent = said.toLowerCase() === String(s.state).toLowerCase() ? reason.slice(3) : said + reason;
  const wrap = $("#wrapup");
  const inWrapup = phase === "wrapup" || (s.pause_reason || "").toLowerCase() === "wrap-up";
  wrap.hidden = !(inWrapup && ui.lastCall);
  $("#wrapup-idle").hidden = !wrap.hidden;
  tickWrapup();
  if ((phase === "talking" || phase === "ringing") && ui.call) ui.lastCall = ui.call;
}

function tickWrapup() {
  const until = ui.state && ui.state.wrapup_until;
  $("#wrapup-left").textContent = until
    ? t("agent.wrapup_left", { s: Math.max(0, Math.round(until - Date.now() / 1000)) })
    : "";
}
setInterval(tickWrapup, 1000);

function renderQueue(q) {
  const id = `queue-${q.queue}`;
  let row = document.getElementById(id);
  if (!row) {
    row = el("tr", { id, "data-testid": "queue-row" });
    $("#queues tbody").append(row);
  }
  const sl = q.service_level_pct === undefined || q.service_level_pct === null ? "–" : `${Math.round(q.service_level_pct)}%`;
  row.replaceChildren(
    el("th", { text: q.queue, scope: "row" }),
    el("td", { text: String(q.waiting ?? 0) }),
    el("td", { text: `${Math.round(q.longest_wait_s ?? 0)} s` }),
    el("td", { text: sl }),
    el("td", { text: String(q.callbacks_waiting ?? 0) }),
  );
}

// -- connection -------------------------------------------------------------------------------
function renderConnection(state) {
  const c = $("#connection");
  c.textContent = state === "live" ? "live" : "reconnecting";
  c.dataset.state = state;
  $("#offline").hidden = state === "live";
}

async function connect() {
  const desk = ui.desk;
  const client = new MqttClient({
    url: desk.mqtt.url,
    clientId: `${desk.mqtt.client_id_prefix}-${crypto.randomUUID().slice(0, 8)}`,
    username: desk.mqtt.username,
    password: desk.mqtt.password,
    keepalive: 20,
    // Every (re)connect asks the server again: a refreshed or re-issued login
    // takes effect, and a session that ended sends the page to the login page.
    credentials: async (refused) => {
      const fresh = await api(refused ? "/api/agent/session?renew=1" : "/api/agent/session");
      return { username: fresh.mqtt.username, password: fresh.mqtt.password };
    },
  });
  client.addEventListener("state", (e) => renderConnection(e.detail.state));
  client.addEventListener("denied", (e) => console.warn("subscription refused", e.detail.filter));
  client.addEventListener("message", (e) => {
    const { topic, payload } = e.detail;
    let data;
    try { data = JSON.parse(payload); } catch { return; }
    if (topic.endsWith("/screenpop")) {
      renderPop(data);
      // The card first; the ring and the notification after it is drawn.
      setTimeout(() => { ring(); notify(data); }, 0);
    } else if (topic.endsWith("/state")) renderState(data);
    else if (topic.endsWith("/stats")) renderQueue(data);
  });
  client.subscribe(desk.mqtt.topics);
  ui.client = client;
  window.hotlineDesk = { client }; // for tests and integrators: the subscriptions' answers
  await client.connect();
}

// -- actions -------------------------------------------------------------------------------
async function setState(state) {
  const body = { state };
  if (state === "pause") body.reason = $("#reason").value;
  try {
    await api("/api/agent/state", body);
    flash("");
  } catch (e) { flash(e.message); }
}

async function finishWrapup(event) {
  if (event) event.preventDefault();
  const call = ui.lastCall || ui.call;
  try {
    if (call && $("#disposition").value) {
      await api("/api/agent/disposition", {
        call_id: call.call_id, disposition: $("#disposition").value, note: $("#note").value,
      });
    }
    await api("/api/agent/wrapup", { action: "finish" });
    $("#note").value = "";
    flash(t("agent.saved"));
  } catch (e) { flash(e.message); }
}

async function extendWrapup() {
  try {
    await api("/api/agent/wrapup", { action: "extend", seconds: 30 });
    flash("");
  } catch (e) { flash(e.message); }
}

function fillDispositions(queue) {
  const all = ui.desk.dispositions || {};
  const list = all[queue] || Object.values(all)[0] || [];
  $("#disposition").replaceChildren(el("option", { value: "", text: "–" }), ...list.map((d) => el("option", { value: d, text: d })));
}

function bindKeys() {
  document.addEventListener("keydown", (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    const k = e.key.toLowerCase();
    const actions = { r: () => setState("ready"), p: () => setState("pause"), w: () => finishWrapup(),
      x: () => extendWrapup(), o: () => setState("logout"),
      i: () => setState("login"), m: () => toggleMute() };
    if (actions[k]) { e.preventDefault(); actions[k](); }
  });
}

function toggleMute() {
  ui.muted = !ui.muted;
  $("#mute").setAttribute("aria-pressed", String(ui.muted));
  $("#mute").textContent = ui.muted ? t("agent.unmute") : t("agent.mute");
}

function translate() {
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
}

async function main() {
  ui.words = await (await fetch("/static/catalogue.json")).json();
  ui.me = await api("/api/me");
  ui.desk = await api("/api/agent/session");
  ui.lang = ui.desk.lang || (navigator.language || "en").slice(0, 2);
  document.documentElement.lang = ui.lang;
  translate();
  $("#who").textContent = `${ui.me.name} · ${t("agent.agent")} ${ui.desk.agent}`;
  $("#reason").replaceChildren(...ui.desk.pause_reasons.map((r) => el("option", { value: r, text: r })));
  fillDispositions((ui.desk.queues || [])[0]);
  $("#ready").addEventListener("click", () => setState("ready"));
  $("#pause").addEventListener("click", () => setState("pause"));
  $("#logout-queues").addEventListener("click", () => setState("logout"));
  $("#login-queues").addEventListener("click", () => setState("login"));
  $("#wrapup").addEventListener("submit", finishWrapup);
  $("#extend").addEventListener("click", extendWrapup);
  $("#mute").addEventListener("click", toggleMute);
  $("#notify").addEventListener("click", () => Notification.requestPermission());
  $("#signout").addEventListener("click", async () => {
    await fetch("/logout", { method: "POST", headers: { "X-CSRF-Token": ui.me.csrf }, credentials: "same-origin", redirect: "manual" });
    window.location.assign("/login");
  });
  bindKeys();
  // A reload mid-call: the server says what is going on now (the retained state
  // topic says it too, as soon as the broker answers).
  const now = ui.desk.snapshot || {};
  if (now.state) renderState(now.state);
  if (now.pop) { renderPop(now.pop); ui.lastCall = now.pop; }
  if (now.to_dispose) {
    // Reloaded in wrap-up: the call to dispose is the one the server remembers.
    ui.lastCall = { ...(ui.lastCall || {}), call_id: now.to_dispose.call_id, queue: now.to_dispose.queue };
    fillDispositions(now.to_dispose.queue);
    if (now.state) renderState(now.state);
  }
  for (const q of now.queues || []) renderQueue(q);
  await connect();
}

main().catch((e) => flash(String(e.message || e)));

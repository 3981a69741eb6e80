// The Beacon web chat page: one WebSocket to the gateway, the conversation in #log.
// Message data is only ever put in the page as text (textContent), never as HTML.
(() => {
  "use strict";
  const log = document.getElementById("log");
  const form = document.getElementById("composer");
  const input = document.getElementById("message");
  const status = document.getElementById("status");
  let lastSeq = 0;                 // the newest history entry shown: a reconnect asks for what follows
  const seen = new Set();          // history entries shown (a replay may overlap the live stream)
  const unacked = new Map();       // client_id -> send frame not yet acknowledged by the broker
  const pending = new Map();       // client_id -> its element, shown before the acknowledgement
  let ws = null;
  let retryDelay = 500;

  function newId() {
    if (crypto.randomUUID) return crypto.randomUUID();
    return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function setStatus(text, online) {
    status.textContent = text;
    status.classList.toggle("online", online);
  }

  function text(tag, value, className) {
    const el = document.createElement(tag);
    el.textContent = value;
    if (className) el.className = className;
    return el;
  }

  function safeLink(link) {
    try {
      const url = new URL(link, location.href);
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
    } catch (_e) {
      return null;
    }
  }

  function choiceButton(title, reply, description) {
    const b = text("button", title);
    b.type = "button";
    if (description) b.append(text("small", description));
    b.addEventListener("click", () => submit({ reply: { ...reply, title } }, title));
    return b;
  }

  function fill(el, frame) {
    el.replaceChildren();
    const media = frame.media;
    const link = media && media.link ? safeLink(media.link) : null;
    if (link && frame.kind === "image") {
      const img = document.createElement("img");
      img.src = link;
      img.alt = (media && media.caption) || "image";
      img.addEventListener("load", scroll);
      el.append(img);
    } else if (link) {
      const a = text("a", (media && (media.filename || media.caption)) || "attachment");
      a.href = link;
      a.target = "_blank";
      a.rel = "noopener noreferrer";
      el.append(a);
    }
    if (frame.text) el.append(text("p", frame.text));
    if (media && media.caption && frame.kind === "image") el.append(text("p", media.caption, "note"));
    const inter = frame.interactive;
    if (inter) {
      if (inter.body) el.append(text("p", inter.body));
      const choices = document.createElement("div");
      choices.className = "choices";
      for (const b of inter.buttons || []) choices.append(choiceButton(b.title, { type: "button_reply", id: b.id }));
      if (inter.list) {
        for (const section of inter.list.sections) {
          if (section.title) choices.append(text("h2", section.title));
          for (const r of section.rows) choices.append(choiceButton(r.title, { type: "list_reply", id: r.id }, r.description));
        }
      }
      el.append(choices);
    }
    if (!el.childNodes.length) el.append(text("p", `(${frame.kind})`, "note"));
  }

  function bubble(from) {
    const el = document.createElement("div");
    el.className = "msg";
    el.dataset.from = from;
    return el;
  }

  function scroll() {
    log.scrollTop = log.scrollHeight;
  }

  function onMessage(frame) {
    if (seen.has(frame.seq)) return;
    seen.add(frame.seq);
    lastSeq = Math.max(lastSeq, frame.seq);
    let el = frame.client_id ? pending.get(frame.client_id) : undefined;
    if (el) {
      pending.delete(frame.client_id);
      unacked.delete(frame.client_id);
      el.classList.remove("pending");
    } else {
      el = bubble(frame.from);
      log.append(el);
    }
    el.dataset.seq = String(frame.seq);
    fill(el, frame);
    scroll();
  }

  function onError(frame) {
    const el = frame.client_id ? pending.get(frame.client_id) : undefined;
    if (frame.code === "unavailable" && frame.client_id && unacked.has(frame.client_id)) {
      setTimeout(() => transmit(unacked.get(frame.client_id)), 2000);
      return;
    }
    if (frame.client_id) {
      unacked.delete(frame.client_id);
      pending.delete(frame.client_id);
    }
    if (el) {
      el.classList.remove("pending");
      el.classList.add("failed");
      el.append(text("p", frame.message, "note"));
    } else {
      const note = bubble("system");
      note.classList.add("failed");
      note.append(text("p", frame.message));
      log.append(note);
    }
    scroll();
  }

  function transmit(frame) {
    if (frame && ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
  }

  function submit(content, shown) {
    const frame = { type: "send", client_id: newId(), ...content };
    const el = bubble("user");
    el.classList.add("pending");
    el.append(text("p", shown));
    log.append(el);
    scroll();
    pending.set(frame.client_id, el);
    unacked.set(frame.client_id, frame);
    transmit(frame);
  }

  function connect() {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(`${proto}//${location.host}/ws`);
    ws.addEventListener("open", () => {
      retryDelay = 500;
      setStatus("online", true);
      ws.send(JSON.stringify({ type: "hello", after: lastSeq }));
      for (const frame of unacked.values()) transmit(frame);  // same ids: the gateway deduplicates
    });
    ws.addEventListener("message", (ev) => {
      const frame = JSON.parse(ev.data);
      if (frame.type === "message") onMessage(frame);
      else if (frame.type === "error") onError(frame);
    });
    ws.addEventListener("close", () => {
      setStatus("reconnecting…", false);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    });
  }

  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    input.value = "";
    submit({ text: value }, value);
  });

  connect();
})();

// TRT sandbox web chat: plays a Telegram user against the sandbox Bot API server.
// Plain JS, no build step. Talks to /sandbox/api/… (see trt/sandbox/client_api.py).
"use strict";

const api = "/sandbox/api";
const chat = document.getElementById("chat");
const userSelect = document.getElementById("user-select");
const textInput = document.getElementById("text-input");
const photoInput = document.getElementById("photo-input");
const toastBox = document.getElementById("toast");
let userId = null;
let cursor = 0;
let pollToken = 0;
const rendered = new Map(); // message_id -> element

async function getJSON(path) {
  const response = await fetch(api + path);
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function postJSON(path, body) {
  const response = await fetch(api + path, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body),
  });
  return response.json();
}

// Text with Telegram entities → DOM nodes (entity offsets are UTF-16, like JS strings).
function renderText(text, entities) {
  const root = document.createElement("span");
  if (!text) return root;
  const sorted = (entities || []).slice().sort((a, b) => a.offset - b.offset);
  let position = 0;
  for (const entity of sorted) {
    if (entity.offset < position) continue; // nested entities: outer one wins here
    root.append(text.slice(position, entity.offset));
    const inner = text.slice(entity.offset, entity.offset + entity.length);
    root.append(entityNode(entity, inner));
    position = entity.offset + entity.length;
  }
  root.append(text.slice(position));
  return root;
}

function entityNode(entity, inner) {
  const tags = {bold: "b", italic: "i", underline: "u", strikethrough: "s", code: "code",
                pre: "pre", blockquote: "blockquote"};
  let node;
  if (entity.type === "text_link" && /^https?:/.test(entity.url || "")) {
    node = document.createElement("a");
    node.href = entity.url;
    node.target = "_blank";
    node.rel = "noopener";
  } else if (entity.type === "spoiler") {
    node = document.createElement("span");
    node.className = "spoiler";
  } else {
    node = document.createElement(tags[entity.type] || "span");
  }
  node.textContent = inner;
  return node;
}

function fileUrl(fileId) {
  return `${api}/files/${encodeURIComponent(fileId)}`;
}

function renderMessage(message) {
  const fromBot = Boolean(message.from && message.from.is_bot);
  const row = document.createElement("div");
  row.className = `row ${fromBot ? "bot" : "user"}`;
  row.dataset.messageId = message.message_id;
  const bubble = document.createElement("div");
  bubble.className = "bubble";
  if (message.photo) {
    const img = document.createElement("img");
    img.src = fileUrl(message.photo[message.photo.length - 1].file_id);
    img.alt = "photo";
    bubble.append(img);
  }
  if (message.video) {
    const video = document.createElement("video");
    video.src = fileUrl(message.video.file_id);
    video.controls = true;
    bubble.append(video);
  }
  for (const kind of ["audio", "voice"]) {
    if (message[kind]) {
      const audio = document.createElement("audio");
      audio.src = fileUrl(message[kind].file_id);
      audio.controls = true;
      bubble.append(audio);
    }
  }
  if (message.document) {
    const link = document.createElement("a");
    link.href = fileUrl(message.document.file_id);
    link.textContent = `📄 ${message.document.file_name || "file"}`;
    link.download = message.document.file_name || "file";
    bubble.append(link);
  }
  if (message.invoice) {
    const invoice = document.createElement("div");
    invoice.className = "invoice";
    const total = message.invoice.currency === "XTR"
      ? `${message.invoice.total_amount} ⭐` : `${message.invoice.total_amount} ${message.invoice.currency}`;
    invoice.append(renderText(`${message.invoice.title}\n${message.invoice.description}\n${total}`, []));
    const pay = document.createElement("button");
    pay.className = "pay";
    pay.textContent = `Оплатить ${total}`;
    pay.addEventListener("click", () => payInvoice(message.message_id, pay));
    invoice.append(pay);
    bubble.append(invoice);
  }
  if (message.successful_payment) {
    bubble.append(renderText(`✅ Оплачено: ${message.successful_payment.total_amount} ${message.successful_payment.currency}`, []));
  }
  const text = message.text ?? message.caption;
  if (text) bubble.append(renderText(text, message.entities || message.caption_entities));
  row.append(bubble);
  const keyboard = message.reply_markup && message.reply_markup.inline_keyboard;
  if (keyboard) row.append(renderKeyboard(message.message_id, keyboard));
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = new Date((message.date || 0) * 1000).toLocaleTimeString()
    + (message.edit_date ? " · изменено" : "");
  row.append(meta);
  return row;
}

function renderKeyboard(messageId, rows) {
  const box = document.createElement("div");
  box.className = "keyboard";
  for (const buttons of rows) {
    const line = document.createElement("div");
    line.className = "kb-row";
    for (const button of buttons) {
      const element = document.createElement("button");
      element.type = "button";
      element.textContent = button.text;
      if (button.url) {
        element.addEventListener("click", () => window.open(button.url, "_blank"));
      } else if (button.callback_data !== undefined) {
        element.addEventListener("click", () => press(messageId, button.callback_data, element));
      }
      line.append(element);
    }
    box.append(line);
  }
  return box;
}

function upsertMessage(message) {
  const element = renderMessage(message);
  const old = rendered.get(message.message_id);
  if (old) {
    old.replaceWith(element);
  } else {
    chat.append(element);
  }
  rendered.set(message.message_id, element);
  chat.scrollTop = chat.scrollHeight;
}

function removeMessage(messageId) {
  const old = rendered.get(messageId);
  if (old) old.remove();
  rendered.delete(messageId);
}

let toastTimer = null;
function toast(text, alert) {
  toastBox.textContent = text;
  toastBox.className = alert ? "toast alert" : "toast";
  toastBox.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { toastBox.hidden = true; }, alert ? 5000 : 2500);
}

function showAction(action) {
  const status = document.getElementById("bot-status");
  status.textContent = {typing: "печатает…", upload_photo: "отправляет фото…",
                        upload_video: "отправляет видео…", upload_voice: "записывает голос…",
                        upload_document: "отправляет файл…"}[action] || action;
  setTimeout(() => { status.textContent = "sandbox"; }, 4000);
}

async function press(messageId, data, element) {
  element.disabled = true;
  try {
    await postJSON(`/users/${userId}/click`, {message_id: messageId, data});
  } finally {
    setTimeout(() => { element.disabled = false; }, 300);
  }
}

async function payInvoice(messageId, element) {
  element.disabled = true;
  const result = await postJSON(`/users/${userId}/pay`, {message_id: messageId});
  if (!result.ok) toast(result.error || result.description || "Оплата отклонена", true);
  element.disabled = false;
}

function applyEvent(event) {
  if (event.kind === "message" || event.kind === "edit") upsertMessage(event.payload);
  else if (event.kind === "delete") removeMessage(event.payload.message_id);
  else if (event.kind === "toast") toast(event.payload.text, event.payload.show_alert);
  else if (event.kind === "action") showAction(event.payload.action);
}

async function follow(token) {
  while (token === pollToken) {
    try {
      const batch = await getJSON(`/events?chat_id=${userId}&after=${cursor}&timeout=20`);
      if (token !== pollToken) return;
      for (const event of batch.events) {
        cursor = Math.max(cursor, event.seq);
        applyEvent(event);
      }
    } catch (error) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
}

async function openChat(id) {
  userId = id;
  pollToken += 1;
  rendered.clear();
  chat.replaceChildren();
  const info = await getJSON("/info");
  document.getElementById("bot-name").textContent = info.bot.first_name;
  const messages = await getJSON(`/users/${id}/messages`);
  messages.forEach(upsertMessage);
  cursor = info.last_event;
  follow(pollToken);
}

async function loadUsers() {
  const users = await getJSON("/users");
  userSelect.replaceChildren();
  for (const user of users) {
    const option = document.createElement("option");
    option.value = user.id;
    option.textContent = `${user.first_name} (${user.language_code || "ru"})`;
    userSelect.append(option);
  }
  const wanted = new URLSearchParams(location.search).get("user");
  if (wanted && users.some((u) => String(u.id) === wanted)) userSelect.value = wanted;
  await openChat(Number(userSelect.value));
}

document.getElementById("composer").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = textInput.value.trim();
  if (!text || userId === null) return;
  textInput.value = "";
  await postJSON(`/users/${userId}/send`, {text});
});

// How Telegram's apps send a picked file: pictures as photos, clips as video or audio with
// the length the app measured (the bot prices per-second models by it).
function mediaDuration(file, tag) {
  return new Promise((resolve) => {
    const element = document.createElement(tag);
    const url = URL.createObjectURL(file);
    const done = (seconds) => { URL.revokeObjectURL(url); resolve(seconds); };
    element.preload = "metadata";
    element.onloadedmetadata = () => done(Number.isFinite(element.duration) ? Math.ceil(element.duration) : 0);
    element.onerror = () => done(0);
    element.src = url;
  });
}

photoInput.addEventListener("change", async () => {
  const file = photoInput.files[0];
  if (!file || userId === null) return;
  const form = new FormData();
  form.append("file", file, file.name);
  const major = (file.type || "").split("/")[0];
  if (major === "video" || major === "audio") {
    form.append("as", major);
    form.append("duration", String(await mediaDuration(file, major)));
  } else {
    form.append("as", "photo");
  }
  const response = await fetch(`${api}/users/${userId}/upload`, {method: "POST", body: form});
  const result = await response.json();
  if (result.ok === false) toast(result.description, true);
  photoInput.value = "";
});

userSelect.addEventListener("change", () => openChat(Number(userSelect.value)));
loadUsers();

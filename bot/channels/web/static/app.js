/* The web chat of NJUPT's international office: the page's only script.
 *
 * Plain JavaScript, no build step, nothing loaded from elsewhere. Served by
 * bot/web.py (`make run`, http://localhost:8080/), it talks only to its own
 * origin: POST /api/message, GET /api/history/<sender> and GET /api/updates/<sender>.
 *
 * - Text from the bot (and the user) is inserted as text nodes only; http(s)
 *   URLs in it become <a> elements built here. No reply can inject HTML.
 * - The sender id, the language choice, messages not yet sent and the draft are
 *   kept in localStorage; the conversation itself is read back from the server
 *   (Rasa's tracker store) on every load.
 * - When the server or Rasa cannot be reached the page says so and retries
 *   (1 s, 2 s, 4 s, then every 8 s); queued messages wait, nothing is lost.
 * - While the office staff have the conversation (a hand-off), a line above the text box
 *   says so, and the page asks for their replies every 2 seconds (every 30 otherwise:
 *   a reply to a question passed on earlier) and shows them as they come.
 * - Each message carries the `lang` of its own text (see messageLanguage) and
 *   its speaker label the interface language it was shown in, so a screen
 *   reader reads a Chinese reply as Chinese in a Russian interface, and earlier
 *   messages keep their labels when the interface language changes.
 * - The language selector switches only when a choice is committed (a click,
 *   Enter, leaving it), not at each arrow key (see the selector below).
 */
(() => {
  "use strict";

  const DATA = JSON.parse(document.getElementById("texts").textContent);
  const STORE = "njupt-chat:";
  const SENDER = /^web-[A-Za-z0-9_-]{16,100}$/;
  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const scroller = $("scroller");
  const typing = $("typing");
  const alertBox = $("alert");
  const handoffBox = $("handoff");
  const form = $("composer");
  const input = $("message");
  const select = $("language");
  const suggestions = $("suggestions");
  const params = new URLSearchParams(location.search);

  const store = {
    get(name, fallback) {
      try {
        const value = localStorage.getItem(STORE + name);
        return value === null ? fallback : JSON.parse(value);
      } catch {
        return fallback;
      }
    },
    set(name, value) {
      try {
        localStorage.setItem(STORE + name, JSON.stringify(value));
      } catch {
        /* storage off (private mode): the chat still works for this visit */
      }
    },
  };

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  /* A browser or user language tag ("zh-TW", "fr_CA") to a supported code, as bot/languages.py does. */
  function normalize(tag) {
    if (typeof tag !== "string" || !tag.trim()) return null;
    const wanted = tag.trim().toLowerCase().replace(/_/g, "-");
    return DATA.aliases[wanted] || DATA.aliases[wanted.split("-")[0]] || null;
  }

  // --- state -------------------------------------------------------------------

  const codes = DATA.languages.map((l) => l.code);
  let sender = store.get("sender", null);
  if (typeof sender !== "string" || !SENDER.test(sender)) {
    sender = "web-" + randomId();
    store.set("sender", sender);
  }
  let choice = store.get("language", null); // "auto" or a language code
  if (choice !== "auto" && !codes.includes(choice)) choice = normalize(params.get("lang")) || "auto";
  let queue = store.get("queue", []); // messages not answered yet: {id, text, shown, hint}
  if (!Array.isArray(queue)) queue = [];

  const browserLanguage = () => navigator.language || (navigator.languages || [])[0] || DATA.default;
  const uiLanguage = () => (choice === "auto" ? normalize(browserLanguage()) || DATA.default : choice);
  // The language hint sent with each message: the choice, or the browser's language.
  const hint = () => (choice === "auto" ? browserLanguage() : choice);
  const t = (key) => (DATA.texts[uiLanguage()] || {})[key] || DATA.texts[DATA.default][key] || "";
  const nameOf = (code) => (DATA.languages.find((l) => l.code === code) || { name: code }).name;

  /* The page's texts in the interface language. Texts inside a message (a pending message's
     state) say which language they are in, as the message around them has its own. */
  function applyTexts() {
    const ui = uiLanguage();
    document.documentElement.lang = ui;
    document.title = t("web_page_title");
    for (const el of document.querySelectorAll("[data-text]")) {
      el.textContent = t(el.dataset.text);
      if (el.closest(".message")) el.lang = ui;
    }
    for (const el of document.querySelectorAll("[data-placeholder]")) el.placeholder = t(el.dataset.placeholder);
    for (const el of document.querySelectorAll("[data-label]")) el.setAttribute("aria-label", t(el.dataset.label));
    if (handoffBox.dataset.ref) {
      handoffBox.lang = ui;
      handoffBox.textContent = `${t("web_handoff_active")} (${handoffBox.dataset.ref})`;
    }
  }

  // --- the language of each message --------------------------------------------------

  const HAN = /[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]/g; // as HAN_RANGE in bot/core/languages.py
  const CYRILLIC = /[\u0400-\u04ff]/g;
  const LETTER = /\p{L}/gu;
  const isChinese = (code) => typeof code === "string" && code.startsWith("zh");
  const count = (text, pattern) => (text.match(pattern) || []).length;

  /* The `lang` of a message's text (the bot's replies take the language the bot answered in,
     the "language" of /api/message and /api/history, when it has one). `said`: the language
     the text was sent in, i.e. the interface language of the moment, kept unless the script
     tells otherwise: mostly Chinese characters are Chinese (the interface's Chinese, else "zh"),
     mostly Cyrillic is Russian. The page does not guess between Latin-script languages. */
  function messageLanguage(text, said) {
    const fallback = codes.includes(said) ? said : uiLanguage();
    const letters = count(text, LETTER);
    if (!letters) return fallback;
    if (count(text, HAN) * 2 > letters) {
      if (isChinese(fallback)) return fallback;
      return isChinese(uiLanguage()) ? uiLanguage() : "zh";
    }
    if (count(text, CYRILLIC) * 2 > letters) return "ru";
    return fallback;
  }

  /* The language a quick reply's title is in: a language button's own language, else its message's. */
  const CHANGE_LANGUAGE = /^\/change_language\{\s*"language"\s*:\s*"([^"]+)"\s*\}$/;
  function buttonLanguage(payload, messageLang) {
    const switched = CHANGE_LANGUAGE.exec(payload);
    return switched && codes.includes(switched[1]) ? switched[1] : messageLang;
  }

  // --- messages ---------------------------------------------------------------------

  const URL_PATTERN = /https?:\/\/[^\s<>"'`]+/gi;
  const TRAILING = /[.,;:!?)\]}'"»。，、；：！？）】」』]+$/;

  function link(url) {
    let parsed = null;
    try {
      parsed = new URL(url);
    } catch {
      /* not a URL after all: left as text */
    }
    if (!parsed || (parsed.protocol !== "http:" && parsed.protocol !== "https:")) {
      return document.createTextNode(url);
    }
    const a = document.createElement("a");
    a.href = parsed.href;
    a.textContent = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  /* Appends `text` to `parent` as text nodes, with http(s) URLs as links. */
  function appendText(parent, text) {
    let last = 0;
    for (const match of text.matchAll(URL_PATTERN)) {
      const url = match[0].replace(TRAILING, "");
      if (!url) continue;
      parent.append(document.createTextNode(text.slice(last, match.index)), link(url));
      last = match.index + url.length;
    }
    parent.append(document.createTextNode(text.slice(last)));
  }

  /* "You:" or "Assistant:" in the interface language of the moment, and kept so: a label says
     which language it is in and is not translated again when the interface changes. */
  function speaker(key) {
    const who = document.createElement("span");
    who.className = "visually-hidden speaker";
    who.lang = uiLanguage();
    who.textContent = t(key);
    return who;
  }

  /* A message: its own `lang` (`language`: the bot's tag, or for the user the language it was
     sent in), its speaker label, its text, and the bot's quick replies. */
  function messageElement(role, text, { buttons = [], pending = null, language = null } = {}) {
    const item = document.createElement("div");
    item.className = role === "staff" ? "message bot staff" : `message ${role}`;
    item.lang = role !== "user" && codes.includes(language) ? language : messageLanguage(String(text), language);
    const bubble = document.createElement("p");
    bubble.className = "bubble";
    appendText(bubble, String(text));
    item.append(speaker({ user: "web_you", staff: "web_staff" }[role] || "web_bot"), bubble);
    if (pending) {
      item.classList.add("pending");
      item.dataset.pending = pending;
      const state = document.createElement("span");
      state.className = "state";
      state.lang = uiLanguage();
      state.dataset.text = "web_pending";
      state.textContent = t("web_pending");
      item.append(state);
    }
    if (Array.isArray(buttons) && buttons.length) {
      const group = document.createElement("div");
      group.className = "quick-replies";
      group.setAttribute("role", "group");
      group.lang = uiLanguage(); // its name; each button says its own language
      group.setAttribute("aria-label", t("web_quick_replies"));
      for (const button of buttons) {
        const title = String(button.title || button.payload || "");
        const payload = String(button.payload || button.title || "");
        const el = document.createElement("button");
        el.type = "button";
        el.className = "chip";
        el.lang = buttonLanguage(payload, item.lang);
        el.textContent = title;
        el.addEventListener("click", () => {
          send(payload, title, el.lang);
          focusInput();
        });
        group.append(el);
      }
      item.append(group);
    }
    return item;
  }

  function scrollDown() {
    scroller.scrollTop = scroller.scrollHeight;
  }

  /* Shows the suggestions only before the first message; scrolls to the end, or to
     `from` (a question and its long answer) when the end would hide its start. */
  function refresh(from = null) {
    const empty = log.children.length === 0;
    suggestions.hidden = !empty;
    if (empty) {
      scroller.scrollTop = 0; // the welcome and the suggestions, from their start
      return;
    }
    let target = scroller.scrollHeight - scroller.clientHeight;
    if (from) {
      const top = from.getBoundingClientRect().top - scroller.getBoundingClientRect().top;
      target = Math.min(target, scroller.scrollTop + top - 12);
    }
    scroller.scrollTop = target;
  }

  /* After a click: the text box is next (not on touch screens, where it would open the keyboard). */
  function focusInput() {
    if (matchMedia("(pointer: fine)").matches) input.focus();
  }

  // --- talking to the server ---------------------------------------------------------

  let ready = false; // the history is on the page
  let busy = false; // a message is on its way
  let retryTimer = 0;
  let retryTask = null;
  let delay = 1000;

  /* The alert says why messages wait: the bot cannot be reached (`web_unreachable`),
     or the user is over the rate limit (`web_rate_limited`, after a 429). */
  function showAlert(show, key = "web_unreachable") {
    if (show && (alertBox.hidden || alertBox.dataset.text !== key)) {
      alertBox.dataset.text = key;
      alertBox.textContent = t(key);
      alertBox.hidden = false;
    } else if (!show) {
      alertBox.hidden = true;
    }
  }

  /* Tries `task` again later: after `after` ms when the server said so (Retry-After),
     else after 1, 2, 4, then every 8 seconds. */
  function retryLater(task, after = 0, key = "web_unreachable") {
    typing.hidden = true;
    showAlert(true, key);
    clearTimeout(retryTimer);
    retryTask = task;
    retryTimer = setTimeout(retryNow, after || delay);
    if (!after) delay = Math.min(delay * 2, 8000);
  }

  function retryNow() {
    clearTimeout(retryTimer);
    retryTimer = 0;
    const task = retryTask;
    retryTask = null;
    if (task) task();
  }

  function reached() {
    showAlert(false);
    delay = 1000;
  }

  function roleOf(m) {
    return m.role === "user" || m.role === "staff" ? m.role : "bot";
  }

  // --- the office staff's replies (a hand-off) -------------------------------------------

  const FAST = 2000; // while the staff have the conversation
  const SLOW = 30000; // otherwise: a reply to a question passed on earlier
  let handoff = null; // the open hand-off's reference
  let lastUpdate = 0; // the newest staff reply or notice on the page
  let pollTimer = 0;

  function setHandoff(ref) {
    handoff = typeof ref === "string" && ref ? ref : null;
    handoffBox.hidden = !handoff;
    handoffBox.dataset.ref = handoff || "";
    if (handoff) {
      handoffBox.lang = uiLanguage();
      handoffBox.textContent = `${t("web_handoff_active")} (${handoff})`;
    }
  }

  function pollLater(after) {
    clearTimeout(pollTimer);
    pollTimer = setTimeout(poll, after);
  }

  async function poll() {
    let data;
    try {
      const url = `/api/updates/${encodeURIComponent(sender)}?after=${lastUpdate}`;
      const reply = await fetch(url, { cache: "no-store" });
      if (!reply.ok) throw new Error(`updates: ${reply.status}`);
      data = await reply.json();
      if (!Array.isArray(data.messages)) throw new Error("updates: no messages");
    } catch {
      pollLater(handoff ? FAST * 2 : SLOW);
      return;
    }
    const fresh = data.messages.filter((m) => m.text);
    for (const m of fresh) log.append(messageElement(roleOf(m), m.text, { language: m.language }));
    if (fresh.length) refresh();
    lastUpdate = Math.max(lastUpdate, Number(data.last) || 0);
    const ended = handoff && !data.handoff;
    setHandoff(data.handoff);
    pollLater(handoff || ended ? FAST : SLOW); // once more soon after it ended: the staff's last words
  }

  async function loadHistory() {
    let data;
    try {
      const reply = await fetch("/api/history/" + encodeURIComponent(sender), { cache: "no-store" });
      if (!reply.ok) throw new Error(`history: ${reply.status}`);
      data = await reply.json();
      if (!Array.isArray(data.messages)) throw new Error("history: no messages");
    } catch {
      retryLater(loadHistory);
      return;
    }
    reached();
    const fragment = document.createDocumentFragment();
    for (const m of data.messages) {
      const role = roleOf(m);
      const buttons = role === "bot" ? m.buttons : [];
      fragment.append(messageElement(role, m.text || "", { buttons, language: m.language }));
    }
    log.prepend(fragment); // before the messages still waiting to be sent
    lastUpdate = Number(data.last) || 0;
    setHandoff(data.handoff);
    pollLater(handoff ? FAST : SLOW);
    ready = true;
    refresh();
    pump();
  }

  async function pump() {
    if (busy || !ready || !queue.length || retryTimer) return;
    const item = queue[0];
    busy = true;
    typing.hidden = false;
    scrollDown();
    let outcome;
    let wait = 0;
    try {
      const reply = await fetch("/api/message", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ sender, message: item.text, language: item.hint }),
      });
      if (reply.ok) outcome = await reply.json();
      else if (reply.status === 429) {
        outcome = "slow";
        wait = Math.min(Math.max(Number(reply.headers.get("Retry-After")) || 2, 1), 120) * 1000;
      } else outcome = reply.status >= 500 || reply.status === 408 ? "retry" : "failed";
    } catch {
      outcome = "retry";
    }
    busy = false;
    if (outcome === "retry" || outcome === "slow") {
      retryLater(pump, wait, outcome === "slow" ? "web_rate_limited" : "web_unreachable");
      return;
    }
    reached();
    typing.hidden = true;
    queue = queue.filter((q) => q.id !== item.id);
    store.set("queue", queue);
    const shown = log.querySelector(`[data-pending="${item.id}"]`);
    if (shown) {
      shown.classList.remove("pending");
      shown.removeAttribute("data-pending");
      const state = shown.querySelector(".state");
      if (outcome === "failed") {
        shown.classList.add("failed");
        state.dataset.text = "web_failed";
        state.lang = uiLanguage();
        state.textContent = t("web_failed");
      } else {
        state.remove();
      }
    }
    for (const r of Array.isArray(outcome) ? outcome : []) {
      log.append(messageElement("bot", r.text || "", { buttons: r.buttons, language: r.language }));
      if (r.handoff && r.handoff !== handoff) {
        setHandoff(r.handoff); // the staff have the conversation now: ask for their replies often
        pollLater(FAST);
      }
    }
    if (Array.isArray(outcome) && handoff && !outcome.some((r) => r.handoff)) pollLater(0); // back to the bot?
    refresh(shown);
    pump();
  }

  /* Sends `text`, shown as `shown` (a quick reply's title) in `language` (default: the
     interface language, or what the script of the text says: messageLanguage). */
  function send(text, shown, language) {
    if (!text.trim()) return;
    const item = { id: randomId(), text, shown: shown || text, hint: hint() };
    item.language = messageLanguage(item.shown, language || uiLanguage());
    queue.push(item);
    store.set("queue", queue);
    log.append(messageElement("user", item.shown, { pending: item.id, language: item.language }));
    refresh();
    if (retryTimer && ready) retryNow(); // the user is here: try again at once
    else pump();
  }

  // --- the page ----------------------------------------------------------------------

  for (const { code, name } of DATA.languages) {
    const option = document.createElement("option");
    option.value = code;
    option.lang = code;
    option.textContent = name;
    select.append(option);
  }
  select.value = choice;
  applyTexts();
  if (params.has("embed")) {
    document.body.classList.add("embedded");
    // Escape closes the panel of embed.js, wherever the focus is in the chat.
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape") window.parent.postMessage({ type: "njupt-chat:close" }, "*");
    });
  }

  /* The language selector. A closed <select> changes its value (and fires "change") at each
     arrow key: the choice is committed only by a change that no key is making (a click, a
     phone's picker), by Enter, or when the focus leaves the selector. Escape goes back. */
  function commitLanguage() {
    if (select.value === choice) return;
    choice = select.value;
    store.set("language", choice);
    applyTexts();
    // A conversation under way keeps its language unless told: tell it, as a language button does.
    if (choice !== "auto" && log.children.length) {
      send(`/change_language{"language":"${choice}"}`, nameOf(choice), choice);
    }
  }

  let stepping = false; // a key is being handled: the change it makes is a step, not a choice
  select.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      commitLanguage();
    } else if (event.key === "Escape") {
      select.value = choice;
    } else {
      stepping = true; // the key's own change comes before this task ends
      setTimeout(() => (stepping = false));
    }
  });
  select.addEventListener("change", () => {
    if (!stepping) commitLanguage();
  });
  select.addEventListener("blur", commitLanguage);

  for (const chip of suggestions.querySelectorAll("button")) {
    chip.addEventListener("click", () => {
      send(chip.textContent);
      focusInput();
    });
  }

  input.value = store.get("draft", "");
  input.addEventListener("input", () => store.set("draft", input.value));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = input.value;
    if (text.trim()) {
      input.value = "";
      store.set("draft", "");
      send(text);
    }
    input.focus();
  });

  window.addEventListener("online", () => retryTimer && retryNow());

  for (const item of queue) {
    log.append(messageElement("user", item.shown, { pending: item.id, language: item.language }));
  }
  refresh();
  loadHistory();
  if (!params.has("embed")) focusInput();
})();

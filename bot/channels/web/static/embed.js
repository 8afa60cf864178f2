/* The NJUPT international office's web chat on another site, with one tag:
 *
 *   <script src="https://CHAT-SERVER/embed.js" defer></script>
 *
 * Adds a chat button at the bottom right; it opens the chat page of CHAT-SERVER
 * in a panel (an iframe, created on the first click, so the chat only ever talks
 * to its own origin). Its language: the tag's data-language="fr", else the host
 * page's <html lang>, else the browser's. Served by bot/web.py, which fills in
 * the texts below (data/texts, keys web_*).
 */
(function () {
  "use strict";
  var DATA = /*TEXTS*/null;
  var script = document.currentScript;
  if (!DATA || !script) return;
  var origin = new URL(script.src, location.href).origin;

  function normalize(tag) {
    if (typeof tag !== "string" || !tag.trim()) return null;
    var wanted = tag.trim().toLowerCase().replace(/_/g, "-");
    return DATA.aliases[wanted] || DATA.aliases[wanted.split("-")[0]] || null;
  }
  var lang = normalize(script.getAttribute("data-language")) || normalize(document.documentElement.lang) ||
    normalize(navigator.language) || DATA.default;
  var T = DATA.texts[lang];

  function start() {
    var panel = document.createElement("div");
    panel.id = "njupt-chat-panel";
    Object.assign(panel.style, {
      display: "none", position: "fixed", right: "16px", bottom: "84px", zIndex: "2147483000",
      width: "min(26rem, calc(100vw - 32px))", height: "min(42rem, calc(100vh - 110px))",
      borderRadius: "16px", overflow: "hidden", background: "#fff",
      boxShadow: "0 12px 40px rgba(8,40,80,.28)"
    });

    var button = document.createElement("button");
    button.type = "button";
    button.setAttribute("aria-expanded", "false");
    button.setAttribute("aria-controls", panel.id);
    Object.assign(button.style, {
      position: "fixed", right: "16px", bottom: "16px", zIndex: "2147483000",
      display: "inline-flex", alignItems: "center", gap: "8px", padding: "12px 18px",
      font: "600 15px system-ui, sans-serif", color: "#fff", background: "#0b4f96",
      border: "0", borderRadius: "999px", cursor: "pointer", boxShadow: "0 6px 20px rgba(8,40,80,.3)"
    });
    var svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "20");
    svg.setAttribute("height", "20");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z");
    path.setAttribute("fill", "currentColor");
    svg.appendChild(path);
    var label = document.createElement("span");
    label.textContent = T.open_chat;
    button.appendChild(svg);
    button.appendChild(label);

    var frame = null;
    function toggle(open) {
      if (open && !frame) {
        frame = document.createElement("iframe");
        frame.src = origin + "/?embed=1&lang=" + encodeURIComponent(lang);
        frame.title = T.page_title;
        Object.assign(frame.style, { width: "100%", height: "100%", border: "0", display: "block" });
        panel.appendChild(frame);
      }
      panel.style.display = open ? "block" : "none";
      button.setAttribute("aria-expanded", String(open));
      label.textContent = open ? T.close_chat : T.open_chat;
    }
    button.addEventListener("click", function () {
      toggle(panel.style.display === "none");
    });
    function close() {
      if (panel.style.display !== "none") {
        toggle(false);
        button.focus();
      }
    }
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape") close();
    });
    // Escape pressed inside the chat (see app.js)
    window.addEventListener("message", function (event) {
      if (frame && event.source === frame.contentWindow && event.origin === origin &&
          event.data && event.data.type === "njupt-chat:close") close();
    });
    document.body.appendChild(panel);
    document.body.appendChild(button);
  }

  if (document.body) start();
  else document.addEventListener("DOMContentLoaded", start);
})();

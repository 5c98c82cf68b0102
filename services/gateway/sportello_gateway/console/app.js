// Sportello's operators' console: plain ES modules over the gateway's API, no build step.
// Tokens never reach this script: they live in HttpOnly cookies; changes carry the CSRF
// cookie's value in X-CSRF-Token. Everything shown is built with DOM nodes (text, never HTML).
import { WORDS } from "/console/i18n.js";

const state = { me: null, lang: "en", route: "", etag: null, stream: null, refresh: null, page: 0 };
// state.page grows with every navigation: a page still loading when the user has moved on
// must not draw over the new one.

// --- words and small DOM helpers -------------------------------------------------------------

function t(key) { return (WORDS[state.lang] || WORDS.en)[key] || WORDS.en[key] || key; }

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function field(id, label, control) {
  control.id = id;
  return h("div", {}, h("label", { for: id }, label), control);
}

function notice(text, kind = "") {
  const box = document.getElementById("notice");
  box.className = kind;
  box.textContent = text;
}

function translatePage() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-t]")) node.textContent = t(node.dataset.t);
  document.getElementById("language").value = state.lang;
}

// --- the API, with the session renewed when it expires -----------------------------------

function csrf() {
  const found = document.cookie.split("; ").find((c) => c.startsWith("sportello_csrf="));
  return found ? decodeURIComponent(found.split("=")[1]) : "";
}

class Refused extends Error {
  constructor(status, body) { super(body.message || `HTTP ${status}`); this.status = status; this.body = body; }
}

async function api(method, path, body, headers = {}) {
  for (let attempt = 0; attempt < 3; attempt++) {
    const options = { method, headers: { ...headers }, credentials: "same-origin" };
    if (method !== "GET") options.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    if (response.status === 401 && !path.startsWith("/api/auth/")) {
      // The access token expired: renew it from the refresh cookie, or ask to sign in
      // again in a dialog over the page, so that nothing typed is lost; then retry.
      const renewed = await fetch("/api/auth/console/refresh", {
        method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
      if (!renewed.ok) await signIn(t("session_expired"));
      continue;
    }
    const text = await response.text();
    const data = text ? JSON.parse(text) : null;
    if (!response.ok) throw new Refused(response.status, data || {});
    return { data, etag: response.headers.get("ETag") };
  }
  throw new Refused(401, { message: t("session_expired") });
}

// --- signing in -------------------------------------------------------------------------------

function signIn(why = "") {
  const dialog = document.getElementById("signin");
  document.getElementById("signin-why").textContent = why;
  document.getElementById("signin-error").textContent = "";
  return new Promise((resolve) => {
    const form = document.getElementById("signin-form");
    form.onsubmit = async (event) => {
      event.preventDefault();
      const response = await fetch("/api/auth/console/login", {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ username: form.username.value, password: form.password.value }) });
      if (!response.ok) {
        document.getElementById("signin-error").textContent =
          response.status === 423 ? t("locked") : t("wrong_login");
        return;
      }
      form.password.value = "";
      dialog.close();
      await started(await response.json());
      resolve();
    };
    if (!dialog.open) dialog.showModal();
    document.getElementById("username").focus();
  });
}

async function started(me) {
  state.me = me;
  state.lang = me.language || "en";
  document.getElementById("top").hidden = false;
  document.getElementById("who").textContent = `${me.name || me.username} (${me.role}${me.level ? " " + me.level : ""})`;
  buildNav();
  translatePage();
  listen();
}

function can(permission) { return state.me && state.me.permissions.includes(permission); }

function buildNav() {
  const nav = document.getElementById("nav");
  nav.replaceChildren();
  const links = [["#/queue", "queue", "tickets.read"], ["#/board", "board", "staff.read"],
                 ["#/admin", "admin", "admin"]];
  for (const [href, key, permission] of links) {
    if (can(permission)) nav.append(h("a", { href, "data-t": key }, t(key)));
  }
}

// --- the live stream --------------------------------------------------------------------------

function listen() {
  if (state.stream || !can("tickets.read")) return;
  state.stream = new EventSource("/api/stream");
  const changed = (event) => {
    let data = {};
    try { data = JSON.parse(event.data); } catch { /* a keep-alive */ }
    clearTimeout(state.refresh);
    state.refresh = setTimeout(() => refreshView(data), 250);
  };
  for (const type of ["ticket.created", "ticket.assigned", "ticket.escalated", "ticket.status_changed",
    "ticket.message_added", "ticket.priority_changed", "ticket.triaged", "sla.warning", "sla.breached",
    "sla.met", "sla.time_limit_set", "reload"]) {
    state.stream.addEventListener(type, changed);
  }
}

function refreshView(data) {
  const [page, arg] = currentRoute();
  if (page === "queue") renderQueue(true);
  else if (page === "ticket" && (!data.number || data.number === arg)) refreshTicket(arg);
  else if (page === "board") renderBoard();
}

// --- routing between pages -------------------------------------------------------------------

function currentRoute() {
  const hash = location.hash.replace(/^#\/?/, "") || "queue";
  const [path, query] = hash.split("?");
  const [page, arg] = path.split("/");
  return [page, arg ? decodeURIComponent(arg) : undefined, new URLSearchParams(query || "")];
}

async function route() {
  if (!state.me) return;
  state.page += 1;
  const [page, arg] = currentRoute();
  for (const link of document.querySelectorAll("#nav a")) {
    link.toggleAttribute("aria-current", link.getAttribute("href") === `#/${page}`);
    if (link.hasAttribute("aria-current")) link.setAttribute("aria-current", "page");
  }
  notice("");
  if (page === "ticket" && arg) await renderTicket(arg);
  else if (page === "board") await renderBoard();
  else if (page === "admin") await renderAdmin();
  else await renderQueue(false);
}

// --- queues ----------------------------------------------------------------------------------

const VIEWS = ["open", "mine", "groups", "unassigned", "breaching", "waiting", "all"];

function dueCell(line) {
  if (!line.due_at) return h("td", {}, "—");
  const left = new Date(line.due_at) - Date.now();
  const state_ = line.sla_state === "breached" || left < 0 ? "breached"
    : line.sla_state === "warning" || left < 30 * 60 * 1000 ? "warning" : "ok";
  // The time shown is the requester's time limit; a warning or a breach may come from
  // another clock (the first response), so it is named too.
  const label = line.sla_state === "breached" ? `${t("sla_breached")} · ` : line.sla_state === "warning" ? `${t("sla_warning")} · ` : "";
  return h("td", { class: `due-${state_}`, "data-due": state_ }, label, left < 0 ? `${t("overdue")} ${span(-left)}` : span(left));
}

function span(ms) {
  const minutes = Math.round(ms / 60000);
  if (minutes < 60) return `${minutes} min`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} d`;
}

async function renderQueue(live) {
  const page_ = state.page;
  const [, , params] = currentRoute();
  const view = params.get("view") || "open";
  const query = new URLSearchParams({ view, limit: "50" });
  for (const name of ["priority", "status", "q", "next", "sort"]) if (params.get(name)) query.set(name, params.get(name));
  let page;
  try { page = (await api("GET", `/api/tickets?${query}`)).data; } catch (error) { notice(error.message, "conflict"); return; }
  if (page_ !== state.page) return;
  const main = document.getElementById("main");
  const search = h("input", { type: "search", name: "q", value: params.get("q") || "" });
  const priority = h("select", { name: "priority" }, h("option", { value: "" }, t("any")),
    ["P1", "P2", "P3", "P4"].map((p) => h("option", { value: p, selected: params.get("priority") === p }, p)));
  const sort = h("select", { name: "sort" }, ["priority", "created", "-created", "due", "-updated"].map((k) =>
    h("option", { value: k, selected: (params.get("sort") || "priority") === k }, t(`sort_${k}`))));
  const filters = h("form", { class: "row", role: "search", onsubmit: (e) => {
    e.preventDefault();
    const next = new URLSearchParams({ view });
    if (search.value) next.set("q", search.value);
    if (priority.value) next.set("priority", priority.value);
    if (sort.value !== "priority") next.set("sort", sort.value);
    location.hash = `#/queue?${next}`;
  } }, field("queue-q", t("search"), search), field("queue-priority", t("priority"), priority),
  field("queue-sort", t("sort"), sort), h("button", { type: "submit" }, t("filter")));
  const rows = page.items.map((line) => h("tr", { "data-number": line.number },
    h("td", {}, h("a", { href: `#/ticket/${line.number}` }, line.number)),
    h("td", {}, line.subject || ""), h("td", {}, line.requester_name || ""),
    h("td", {}, line.priority || ""), h("td", {}, t(`status_${line.status}`)),
    h("td", {}, line.group_name || line.group_id || ""), h("td", {}, line.agent_id || "—"), dueCell(line)));
  const table = page.items.length ? h("table", { id: "queue" },
    h("thead", {}, h("tr", {}, ["number", "subject", "requester", "priority", "status", "group", "agent", "due"]
      .map((k) => h("th", { scope: "col" }, t(k))))), h("tbody", {}, rows))
    : h("p", { id: "queue-empty" }, t("no_tickets"));
  const same = new URLSearchParams(params);
  same.delete("next");
  const paging = h("p", {}, params.get("next") ? h("a", { href: `#/queue?${same}` }, t("first_page")) : null, " ",
    page.next ? h("a", { href: `#/queue?${same}&next=${encodeURIComponent(page.next)}`, id: "next-page" }, t("next_page")) : null);
  const area = document.getElementById("queue-area");
  if (live && area) {  // only the lines: the filters keep what is being typed
    area.replaceChildren(table, paging);
    return;
  }
  main.replaceChildren(h("h1", {}, t("queue")),
    h("nav", { class: "tabs", "aria-label": t("queue") }, VIEWS.map((v) => h("a", {
      href: `#/queue?view=${v}`, "aria-current": v === view ? "page" : null }, t(`view_${v}`)))),
    filters, h("div", { id: "queue-area" }, table, paging), h("p", { class: "muted" }, t("shortcuts")));
}

// --- the ticket workspace -----------------------------------------------------------------

function unavailable(part) { return part && part.unavailable; }

async function refreshTicket(number, acted = false) {
  // Only the parts that show state are redrawn: forms keep what is being typed.
  try {
    const { data, etag } = await api("GET", `/api/tickets/${number}`);
    state.etag = etag;
    fillTicket(data);
  } catch (error) {
    // Gone from view right after the operator's own command (escalated or handed away):
    // that is the command's effect, not a fault.
    if (acted && error.status === 404) notice(t("left_view"), "done");
    else notice(error.status === 404 ? t("not_found") : error.message, "conflict");
  }
}

async function renderTicket(number) {
  const main = document.getElementById("main");
  main.replaceChildren(h("div", { class: "grid" },
    h("section", { "aria-labelledby": "ticket-title" }, h("h1", { id: "ticket-title" }, number),
      h("p", { id: "ticket-summary" }), h("h2", {}, t("conversation")), h("div", { id: "conversation" }),
      actions(number)),
    h("aside", {}, h("h2", {}, t("clocks")), h("div", { id: "clocks", class: "panel" }),
      h("h2", {}, t("assignment")), h("div", { id: "history", class: "panel" }),
      h("h2", {}, t("suggestions")), h("div", { id: "suggestions", class: "panel" }),
      h("h2", {}, t("other_tickets")), h("div", { id: "others", class: "panel" }))));
  await refreshTicket(number);
}

function fillTicket(ws) {
  if (!document.getElementById("ticket-title")) return;  // the user has moved on
  const ticket = unavailable(ws.ticket) ? null : ws.ticket;
  const assignment = unavailable(ws.assignment) ? null : ws.assignment;
  document.getElementById("ticket-title").textContent = ticket ? `${ticket.number} · ${ticket.subject}` : ws.line?.number;
  document.getElementById("ticket-summary").replaceChildren(
    h("span", { id: "ticket-status" }, ticket ? t(`status_${ticket.status}`) : ""), " · ",
    h("span", { id: "ticket-priority" }, assignment?.priority || ws.line?.priority || ""), " · ",
    h("span", { id: "ticket-group" }, assignment ? `${assignment.level} ${assignment.group_name}` : ""), " · ",
    h("span", { id: "ticket-agent" }, assignment?.agent_id || "—"), " · ",
    ticket ? `${ticket.requester.name} <${ticket.requester.email || ticket.requester.phone || ""}>` : "");
  document.getElementById("conversation").replaceChildren(...(ticket ? ticket.messages.map((m) => h("article", {
    class: `message ${m.visibility}`, "data-visibility": m.visibility },
    h("div", { class: "meta" }, h("span", { class: `tag ${m.visibility}` }, t(m.visibility)), " ",
      m.author_name || m.author, " · ", new Date(m.at).toLocaleString(state.lang)),
    h("div", { class: "body" }, m.body))) : [h("p", { class: "error" }, t("unavailable"))]));
  document.getElementById("clocks").replaceChildren(...(unavailable(ws.sla) ? [h("p", { id: "sla-unavailable", class: "error" }, t("unavailable"))]
    : (ws.sla?.clocks || []).map((c) => h("p", { class: c.breached ? "due-breached" : c.warned?.length ? "due-warning" : "due-ok" },
      `${c.metric}${c.level ? " " + c.level : ""}: `, c.state === "running" && c.remaining_s !== null
        ? span(c.remaining_s * 1000) : t(c.met === true ? "met" : c.state === "paused" ? "paused" : "stopped")))));
  document.getElementById("history").replaceChildren(...(assignment ? assignment.history.map((step) => h("p", {},
    `${new Date(step.at).toLocaleString(state.lang)}: ${step.kind} ${step.to_group || ""} ${step.agent_id || ""} ${step.reason ? "— " + step.reason : ""}`))
    : [h("p", { class: "muted" }, t("unavailable"))]));
  const kb = ws.suggestions && !unavailable(ws.suggestions) ? ws.suggestions : {};
  document.getElementById("suggestions").replaceChildren(
    ...(kb.suggestions || []).map((s) => h("p", { class: "suggestion" }, h("span", { class: "tag" }, t("kb_public")), " ",
      s.url ? h("a", { href: s.url, target: "_blank", rel: "noopener" }, s.title) : s.title)),
    ...(kb.internal || []).map((s) => h("p", { class: "suggestion" }, h("span", { class: "tag internal" }, t("kb_internal")), " ", s.title)),
    ...(kb.similar_cases || []).map((c) => h("p", { class: "suggestion" }, h("span", { class: "tag" }, t("kb_case")), " ",
      h("a", { href: `#/ticket/${c.number}` }, c.number), ` ${c.title}`)));
  if (ticket?.requester?.email) {
    api("GET", `/api/tickets?view=all&limit=10&requester=${encodeURIComponent(ticket.requester.email)}`).then(({ data }) => {
      document.getElementById("others")?.replaceChildren(...data.items.filter((l) => l.number !== ticket.number)
        .map((l) => h("p", {}, h("a", { href: `#/ticket/${l.number}` }, l.number), ` ${l.subject}`)));
    }).catch(() => {});
  }
}

function actions(number) {
  const act = async (command, body, form) => {
    notice("");  // a conflict shown for the last attempt is not this one's
    let acted = false;
    try {
      await api("POST", `/api/tickets/${number}/${command}`, body, { "If-Match": state.etag || "" });
      form?.reset();
      acted = true;
      notice(t("done"), "done");
    } catch (error) {
      if (error.status === 412) notice(t("conflict"), "conflict");
      else notice(`${t("failed")}: ${error.message}`, "conflict");
    }
    await refreshTicket(number, acted);
  };
  const box = (id, title, controls, button, submit) => h("form", { id, class: "panel", onsubmit: (e) => {
    e.preventDefault(); submit(e.target);
  } }, h("h2", {}, title), controls, h("button", { type: "submit" }, button));
  const text = (id, label, attrs = {}) => field(id, label, h("textarea", { name: id, ...attrs }));
  const input = (id, label, attrs = {}) => field(id, label, h("input", { name: id, ...attrs }));
  const statuses = ["in_progress", "waiting_customer", "resolved", "closed", "reopened"];
  const forms = [
    h("p", {}, h("button", { type: "button", id: "take", onclick: () => act("take") }, t("take"))),
    box("reply-form", t("reply"), text("reply-body", t("reply"), { required: true }), t("send_reply"),
      (f) => act("replies", { body: f["reply-body"].value }, f)),
    box("note-form", t("note"), text("note-body", t("note"), { required: true }), t("add_note"),
      (f) => act("notes", { body: f["note-body"].value }, f)),
    box("status-form", t("change_status"), h("div", { class: "row" },
      field("status-value", t("status"), h("select", { name: "status-value" }, statuses.map((s) => h("option", { value: s }, t(`status_${s}`))))),
      input("status-reason", t("reason")), text("status-resolution", t("resolution"))), t("apply"),
      (f) => act("status", { status: f["status-value"].value, reason: f["status-reason"].value || null,
        resolution: f["status-resolution"].value || null }, f)),
    box("escalate-form", t("escalate"), h("div", { class: "row" }, input("escalate-reason", t("reason"), { required: true }),
      input("escalate-group", t("to_group"))), t("escalate"),
      (f) => act("escalate", { reason: f["escalate-reason"].value, to_group: f["escalate-group"].value || null }, f)),
    box("handback-form", t("hand_back"), h("div", { class: "row" }, input("handback-group", t("hand_back_to"), { required: true }),
      input("handback-reason", t("reason"), { required: true })), t("hand_back"),
      (f) => act("hand-back", { to_group: f["handback-group"].value, reason: f["handback-reason"].value }, f)),
    box("call-form", t("log_call"), h("div", { class: "row" }, input("call-minutes", t("duration_min"), { type: "number", min: 0, value: 5 }),
      field("call-outcome", t("outcome"), h("select", { name: "call-outcome" }, h("option", { value: "follow_up" }, t("follow_up")),
        h("option", { value: "resolved" }, t("resolved_on_call")))), text("call-notes", t("notes"), { required: true })), t("log_call"),
      (f) => act("calls", { duration_s: Number(f["call-minutes"].value) * 60, notes: f["call-notes"].value,
        outcome: f["call-outcome"].value, public: false }, f)),
    box("article-form", t("link_article"), h("div", { class: "row" }, input("article-id", t("article_id"), { required: true }),
      input("article-title", t("title"))), t("link"),
      (f) => act("articles", { article_id: f["article-id"].value, title: f["article-title"].value || null }, f)),
  ];
  if (can("tickets.assign")) forms.push(box("assign-form", t("assign_to"), input("assign-agent", t("agent"), { required: true }),
    t("assign"), (f) => act("assign", { agent_id: f["assign-agent"].value }, f)));
  if (can("tickets.priority")) forms.push(box("priority-form", t("override_priority"), h("div", { class: "row" },
    field("priority-value", t("priority"), h("select", { name: "priority-value" }, ["P1", "P2", "P3", "P4"].map((p) => h("option", { value: p }, p)))),
    input("priority-reason", t("reason"), { required: true })), t("apply"),
    (f) => act("priority", { priority: f["priority-value"].value, reason: f["priority-reason"].value }, f)));
  return h("div", { id: "actions" }, forms);
}

// --- the coordinator's board ----------------------------------------------------------------

async function renderBoard() {
  const page_ = state.page;
  const [agents, open, unassigned, breaching] = await Promise.all([
    api("GET", "/api/staff/agents"), api("GET", "/api/tickets?view=open&limit=200"),
    api("GET", "/api/tickets?view=unassigned&limit=200"), api("GET", "/api/tickets?view=breaching&limit=200")]);
  const byLevel = {};
  const byGroup = {};
  for (const line of open.data.items) {
    byLevel[line.level || "?"] = (byLevel[line.level || "?"] || 0) + 1;
    const group = line.group_name || line.group_id || "?";
    byGroup[group] = (byGroup[group] || 0) + 1;
  }
  const rows = agents.data.map((a) => h("tr", { "data-agent": a.id }, h("td", {}, a.name), h("td", {}, a.level),
    h("td", {}, a.groups.join(", ")), h("td", {}, `${a.open_tickets} / ${a.capacity}`),
    h("td", {}, a.available ? t("on_shift") : t("away")),
    h("td", {}, can("tickets.assign") ? h("button", { type: "button", class: "secondary", onclick: async () => {
      await api("PUT", `/api/staff/agents/${a.id}/availability`, { available: !a.available });
      await renderBoard();
    } }, a.available ? t("set_away") : t("set_on_shift")) : "")));
  if (page_ !== state.page) return;
  document.getElementById("main").replaceChildren(h("h1", {}, t("board")),
    h("p", {}, `${t("open_count")}: ${open.data.items.length} · `, h("span", { id: "unassigned-count" }, `${t("unassigned_count")}: ${unassigned.data.items.length}`),
      ` · ${t("breaching_count")}: ${breaching.data.items.length} · `,
      Object.entries(byLevel).map(([level, count]) => `${level} ${count} `)),
    h("table", { id: "group-load" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, t("group")),
      h("th", { scope: "col" }, t("open_count")))), h("tbody", {}, Object.entries(byGroup).map(([group, count]) =>
      h("tr", {}, h("td", {}, group), h("td", {}, String(count)))))),
    h("table", { id: "agents" }, h("thead", {}, h("tr", {}, ["name", "level", "group", "load", "on_shift", ""].map((k) => h("th", { scope: "col" }, k ? t(k) : "")))),
      h("tbody", {}, rows)));
}

// --- admin pages ----------------------------------------------------------------------------

async function renderAdmin() {
  const page_ = state.page;
  const [users, groups, agents] = await Promise.all([api("GET", "/api/admin/users"), api("GET", "/api/staff/groups"),
    api("GET", "/api/staff/agents")]);
  const value = (f, name) => f[name].value.trim();
  const list = (text) => text.split(",").map((s) => s.trim()).filter(Boolean);
  const addUser = h("form", { id: "user-form", class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target;
    const role = value(f, "user-role");
    const body = { username: value(f, "user-username"), name: value(f, "user-name"), role,
      password: f["user-password"].value, level: value(f, "user-level") || null, groups: list(value(f, "user-groups")) };
    if (role === "agent" || role === "vendor") body.agent = { capacity: Number(value(f, "user-capacity") || 5), skills: list(value(f, "user-skills")) };
    try { await api("POST", "/api/admin/users", body); notice(t("done")); await renderAdmin(); }
    catch (error) { notice(`${t("failed")}: ${error.message}${error.body.detail ? " — " + error.body.detail.map((d) => d.field).join(", ") : ""}`, "conflict"); }
  } }, h("h2", {}, t("add_user")), h("div", { class: "row" },
    field("user-username", t("username"), h("input", { name: "user-username", required: true })),
    field("user-name", t("name"), h("input", { name: "user-name", required: true })),
    field("user-role", t("role"), h("select", { name: "user-role" }, ["agent", "vendor", "coordinator", "admin", "sre"].map((r) => h("option", { value: r }, r)))),
    field("user-level", t("level"), h("select", { name: "user-level" }, h("option", { value: "" }, "—"), ["L1", "L2", "L3"].map((l) => h("option", { value: l }, l)))),
    field("user-groups", t("groups_csv"), h("input", { name: "user-groups" })),
    field("user-capacity", t("capacity"), h("input", { name: "user-capacity", type: "number", min: 0, value: 5 })),
    field("user-skills", t("skills_csv"), h("input", { name: "user-skills" })),
    field("user-password", t("password"), h("input", { name: "user-password", type: "password", autocomplete: "new-password", required: true }))),
  h("button", { type: "submit" }, t("create")));
  const jsonEditor = (id, title, path, method) => {
    const area = h("textarea", { name: id, rows: 12 });
    api("GET", path).then(({ data }) => {
      // Saved as a new version of the one shown: if someone saved meanwhile, it is refused.
      const { version, ...rest } = data;
      area.value = JSON.stringify({ ...rest, based_on_version: version }, null, 2);
    }).catch(() => {});
    return h("form", { id, class: "panel", onsubmit: async (e) => {
      e.preventDefault();
      try { await api(method, path, JSON.parse(area.value)); notice(t("done")); } catch (error) { notice(`${t("failed")}: ${error.message}`, "conflict"); }
    } }, h("h2", {}, title), field(`${id}-json`, title, area), h("button", { type: "submit" }, t("save")));
  };
  const agentRows = agents.data.map((a) => {
    const capacity = h("input", { type: "number", min: 0, max: 200, value: a.capacity, id: `capacity-${a.id}`, class: "narrow" });
    const skills = h("input", { value: a.skills.join(", "), id: `skills-${a.id}` });
    return h("tr", { "data-agent": a.id }, h("td", {}, a.name), h("td", {}, a.level), h("td", {}, a.groups.join(", ")),
      h("td", {}, h("label", { for: `capacity-${a.id}`, class: "sr" }, `${t("capacity")} ${a.name}`), capacity),
      h("td", {}, h("label", { for: `skills-${a.id}`, class: "sr" }, `${t("skills_csv")} ${a.name}`), skills),
      h("td", {}, h("button", { type: "button", class: "secondary", onclick: async () => {
        try {
          await api("PUT", `/api/admin/agents/${a.id}`, { name: a.name, level: a.level, groups: a.groups,
            skills: list(skills.value), capacity: Number(capacity.value), available: a.available });
          notice(t("done"));
        } catch (error) { notice(`${t("failed")}: ${error.message}`, "conflict"); }
      } }, t("save_agent"))));
  });
  const previewOut = h("pre", { id: "preview-result", "aria-live": "polite" });
  const preview = h("form", { id: "preview-form", class: "panel", onsubmit: async (e) => {
    e.preventDefault();
    const f = e.target;
    try {
      const { data } = await api("POST", "/api/admin/triage/preview", { subject: value(f, "preview-subject"),
        description: value(f, "preview-description"), sender_email: value(f, "preview-sender") || null });
      previewOut.textContent = `${data.category} · ${data.priority} (${t("rules_matched")}: ${data.matched_rules.join(", ") || "—"})`;
    } catch (error) { notice(`${t("failed")}: ${error.message}`, "conflict"); }
  } }, h("h2", {}, t("preview")), field("preview-subject", t("subject"), h("input", { name: "preview-subject", required: true })),
  field("preview-description", t("description"), h("textarea", { name: "preview-description" })),
  field("preview-sender", t("sender"), h("input", { name: "preview-sender", type: "email" })),
  h("button", { type: "submit" }, t("preview")), previewOut);
  if (page_ !== state.page) return;
  document.getElementById("main").replaceChildren(h("h1", {}, t("admin")),
    h("h2", {}, t("users")),
    h("table", { id: "users" }, h("thead", {}, h("tr", {}, ["username", "name", "role", "level", "group", ""].map((k) => h("th", { scope: "col" }, k ? t(k) : "")))),
      h("tbody", {}, users.data.map((u) => {
        const role = h("select", { id: `role-${u.username}` }, ["agent", "vendor", "coordinator", "admin", "sre"]
          .map((r) => h("option", { value: r, selected: r === u.role }, r)));
        const save = async (change) => {
          try { await api("PATCH", `/api/admin/users/${u.username}`, change); notice(t("done")); await renderAdmin(); }
          catch (error) { notice(`${t("failed")}: ${error.message}`, "conflict"); }
        };
        return h("tr", { "data-user": u.username }, h("td", {}, u.username), h("td", {}, u.name),
          h("td", {}, h("label", { for: `role-${u.username}`, class: "sr" }, `${t("role")} ${u.username}`), role,
            h("button", { type: "button", class: "secondary", onclick: () => save(["agent", "vendor"].includes(role.value)
              ? { role: role.value } : { role: role.value, level: null, groups: [] }) }, t("save_agent"))),
          h("td", {}, u.level || ""), h("td", {}, u.groups.join(", ")),
          h("td", {}, u.username === state.me.username ? "" : h("button", { type: "button", class: "secondary",
            onclick: () => save({ disabled: !u.disabled }) }, u.disabled ? t("enable") : t("disable"))));
      }))),
    addUser, h("h2", {}, t("groups")),
    h("ul", { id: "groups" }, groups.data.map((g) => h("li", {}, `${g.level} ${g.name} (${g.id})`,
      g.escalates_to ? ` → ${t("escalates_to")} ${g.escalates_to}` : ""))),
    h("h2", {}, t("agents")),
    h("table", { id: "agent-setup" }, h("thead", {}, h("tr", {}, ["name", "level", "group", "capacity", "skills_csv", ""]
      .map((k) => h("th", { scope: "col" }, k ? t(k) : "")))), h("tbody", {}, agentRows)),
    jsonEditor("triage-form", t("triage"), "/api/admin/triage/policy", "PUT"), preview,
    jsonEditor("sla-form", t("sla_policy"), "/api/admin/sla/policy", "PUT"));
}

// --- keyboard shortcuts ---------------------------------------------------------------------

let pendingG = false;
document.addEventListener("keydown", (event) => {
  const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
  if (typing || event.ctrlKey || event.metaKey || event.altKey || !state.me) return;
  const focus = (id) => { const node = document.getElementById(id); if (node) { event.preventDefault(); node.focus(); } };
  if (pendingG) { pendingG = false; if (event.key === "q") location.hash = "#/queue"; return; }
  if (event.key === "g") pendingG = true;
  else if (event.key === "/") focus("queue-q");
  else if (event.key === "t") document.getElementById("take")?.click();
  else if (event.key === "r") focus("reply-body");
  else if (event.key === "n") focus("note-body");
  else if (event.key === "e") focus("escalate-reason");
  else if (event.key === "?") notice(t("shortcuts"));
});

// --- start ----------------------------------------------------------------------------------

document.getElementById("language").addEventListener("change", async (event) => {
  const { data } = await api("PUT", "/api/me/language", { language: event.target.value });
  state.lang = data.language;
  translatePage();
  buildNav();
  await route();
});
document.getElementById("logout").addEventListener("click", async () => {
  await api("POST", "/api/auth/logout").catch(() => {});
  state.stream?.close();
  state.stream = null;
  state.me = null;
  document.getElementById("top").hidden = true;
  document.getElementById("main").replaceChildren();
  await signIn();
  await route();
});
window.addEventListener("hashchange", route);

(async () => {
  const response = await fetch("/api/me", { credentials: "same-origin" });
  if (response.ok) await started(await response.json());
  else {
    const renewed = await fetch("/api/auth/console/refresh", {
      method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": csrf() } });
    if (renewed.ok) await started(await (await fetch("/api/me", { credentials: "same-origin" })).json());
    else await signIn();
  }
  await route();
})();

// The requester portal's only script: while the requester types the subject of a new
// request, the knowledge base's matching articles are shown first. Everything is built
// as text nodes (a snippet's matched words in <b>), so nothing typed or found is markup.
// Without this script the page still works: the form is sent and suggestions are drawn
// by the server for a subject given in the address.

const subject = document.querySelector("input[data-search]");
const list = document.getElementById("suggestion-list");

function draw(hits, query) {
  if (!hits.length) {
    const none = document.createElement("p");
    none.className = "muted";
    none.textContent = query ? list.dataset.none || "" : "";
    list.replaceChildren(none);
    return;
  }
  const ul = document.createElement("ul");
  ul.className = "hits";
  for (const hit of hits) {
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = hit.href;
    a.textContent = hit.title;
    const snippet = document.createElement("p");
    snippet.className = "snippet";
    for (const [text, bold] of hit.parts) {
      const node = bold ? document.createElement("b") : document.createTextNode(text);
      if (bold) node.textContent = text;
      snippet.append(node);
    }
    li.append(a, snippet);
    ul.append(li);
  }
  list.replaceChildren(ul);
}

if (subject && list) {
  let timer = null;
  let asked = 0;
  subject.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const query = subject.value.trim();
      const mine = ++asked;
      if (query.length < 3) return;
      try {
        const response = await fetch(`${subject.dataset.search}?q=${encodeURIComponent(query)}`,
          { credentials: "same-origin", headers: { Accept: "application/json" } });
        if (!response.ok || mine !== asked) return;
        draw((await response.json()).hits, query);
      } catch { /* suggestions are a help, not a step: the form still works */ }
    }, 300);
  });
}

"use strict";
// Renders the xcheck report from the JSON data embedded in the page.
(function () {
  const D = JSON.parse(document.getElementById("xcheck-data").textContent);
  const S = D.strings;
  const K = D.kinds;
  const T = D.targets;
  const FAILING = new Set(D.failing);
  const $ = (id) => document.getElementById(id);
  const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" };
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ESC[c]);
  const rows = D.rows.map((r, i) => ({
    i, path: S[r[0]], folder: S[r[1]], scenario: S[r[2]], label: r[3], op: S[r[4]],
    el: String(r[5]), differs: r[6] === 1, model: r[7], cells: r[8],
  }));
  const failing = (c) => c !== 0 && FAILING.has(c[0]);
  const expandable = (c) => c !== 0 && c.length > 2;
  const open = new Set();  // "row:target" of the expanded cells

  function counts(list, t) {
    const n = K.map(() => 0);
    for (const r of list) { const c = r.cells[t]; if (c !== 0) n[c[0]] += 1; }
    return n;
  }
  function badges(n, named) {
    return n.map((v, k) => v ? `<span class="n o-${K[k]}" title="${K[k]}">${v}` +
      (named ? ` ${K[k]}` : "") + "</span>" : "").join("");
  }

  function fill(id, values, text) {
    const sel = $(id);
    for (const v of values) {
      const o = document.createElement("option");
      o.value = v;
      o.textContent = text ? text(v) : v;
      sel.appendChild(o);
    }
  }
  const uniq = (xs) => [...new Set(xs)].filter((x) => x !== "").sort();

  // Targets: version, counts, and why a target could not be used.
  $("targets").innerHTML = T.map((t, i) =>
    `<div class="target"><b>${esc(t.label)}</b> <span class="ver">${esc(t.version || "?")}` +
    `</span><br>${badges(counts(rows, i), true)}` +
    (t.cannot ? `<div class="cannot">could not test: ${esc(t.cannot)}</div>` : "") +
    "</div>").join("");

  // Summary per scenario folder, one column per target; a click filters by folder.
  const folders = uniq(rows.map((r) => r.folder));
  $("folders").innerHTML = "<thead><tr><th>folder</th><th>probes</th>" +
    T.map((t) => `<th>${esc(t.label)}</th>`).join("") + "</tr></thead><tbody>" +
    folders.map((f) => {
      const list = rows.filter((r) => r.folder === f);
      return `<tr><td class="folder" data-folder="${esc(f)}">${esc(f)}</td>` +
        `<td class="mono">${list.length}</td>` +
        T.map((_, t) => `<td>${badges(counts(list, t))}</td>`).join("") + "</tr>";
    }).join("") + "</tbody>";
  $("legend").innerHTML = K.map((k) => `<span class="n o-${k}">${k}</span>`).join("");
  $("folders").addEventListener("click", (ev) => {
    const f = ev.target.closest("td.folder");
    if (!f) return;
    $("f-folder").value = f.dataset.folder;
    refilter();
    $("probes").scrollIntoView();
  });

  fill("f-folder", folders);
  fill("f-op", uniq(rows.map((r) => r.op)));
  fill("f-el", uniq(rows.map((r) => r.el)), (v) => "EL" + v);
  fill("f-outcome", K.map((_, k) => String(k)), (v) => K[Number(v)]);
  fill("f-target", T.map((_, t) => String(t)), (v) => T[Number(v)].label);
  if (rows.length > D.allRows) $("f-outcome").value = "attention";

  function filters() {
    return {
      folder: $("f-folder").value, text: $("f-text").value.trim().toLowerCase(),
      op: $("f-op").value, el: $("f-el").value, outcome: $("f-outcome").value,
      target: $("f-target").value,
    };
  }

  function shown(r, f) {
    if (f.folder && r.folder !== f.folder) return false;
    if (f.op && r.op !== f.op) return false;
    if (f.el && r.el !== f.el) return false;
    if (f.text && !`${r.scenario} ${r.label} ${r.path}`.toLowerCase().includes(f.text)) {
      return false;
    }
    const cells = f.target === "" ? r.cells : [r.cells[Number(f.target)]];
    switch (f.outcome) {
      case "": return cells.some((c) => c !== 0);
      case "attention": return r.differs || cells.some(failing);
      case "failing": return cells.some(failing);
      case "differs": return r.differs;
      default: return cells.some((c) => c !== 0 && c[0] === Number(f.outcome));
    }
  }

  function cellHtml(r, c, t) {
    if (c === 0) return "<td class=\"absent\">-</td>";
    const key = `${r.i}:${t}`;
    const cls = `cell o-${K[c[0]]}` + (expandable(c) ? " x" : "") + (open.has(key) ? " open" : "");
    return `<td class="${cls}" data-key="${key}">${K[c[0]]}${c[1] ? " 0x" + c[1] : ""}</td>`;
  }

  function detailHtml(r, t, span) {
    const c = r.cells[t];
    const text = c[2].map((i) => S[i]).join("\n");
    return `<tr class="detail" data-key="${r.i}:${t}"><td colspan="${span}">` +
      `<div class="who">${esc(T[t].label)} ${esc(T[t].version)}</div>` +
      `<pre>${esc(text)}</pre></td></tr>`;
  }

  const PAGE = 500;  // rows drawn at a time: a table of thousands of rows lays out slowly
  let limit = PAGE;

  function render() {
    const f = filters();
    const cols = f.target === "" ? T.map((_, t) => t) : [Number(f.target)];
    const span = cols.length + 2;
    $("probes").tHead.innerHTML = "<tr><th>probe</th>" + cols.map((t) =>
      `<th>${esc(T[t].label)} <span class="ver">${esc(T[t].version || "?")}</span></th>`)
      .join("") + "<th>model</th></tr>";
    const out = [];
    let n = 0;
    for (const r of rows) {
      if (!shown(r, f)) continue;
      n += 1;
      if (n > limit) continue;
      out.push(`<tr class="probe-row${r.differs ? " differs" : ""}" data-row="${r.i}">` +
        `<td class="probe" title="${esc(r.path)}">${esc(r.scenario)} ${esc(r.label)}` +
        "</td>" +
        cols.map((t) => cellHtml(r, r.cells[t], t)).join("") +
        `<td class="model">${esc(r.model || "-")}</td></tr>`);
      for (const t of cols) if (open.has(`${r.i}:${t}`)) out.push(detailHtml(r, t, span));
    }
    if (n > limit) {
      out.push(`<tr><td colspan="${span}"><button id="more" type="button">show ` +
        `${Math.min(PAGE, n - limit)} more of the ${n - limit} not shown</button></td></tr>`);
    }
    $("probes").tBodies[0].innerHTML = out.join("");
    $("count").textContent = `${n} of ${rows.length} probes match the filters` +
      (n > limit ? `, the first ${limit} shown` : "");
  }

  function refilter() {
    limit = PAGE;
    render();
  }

  $("probes").tBodies[0].addEventListener("click", (ev) => {
    if (ev.target.id === "more") {
      limit += PAGE;
      render();
      return;
    }
    const td = ev.target.closest("td.x");
    if (!td) return;
    const key = td.dataset.key;
    if (open.has(key)) open.delete(key); else open.add(key);
    render();
  });
  for (const id of ["f-folder", "f-op", "f-el", "f-outcome", "f-target"]) {
    $(id).addEventListener("change", refilter);
  }
  $("f-text").addEventListener("input", refilter);
  render();
})();

// Runs report.html's inline script under node with a tiny stand-in for the DOM, so the
// tests can check what the host tables show without a browser.
//
// usage: node dom_shim.js SPEC.json  -> prints a JSON list of snapshots
// SPEC: {"script": "...", "data": "...", "roots": {ID: {"inputs": [[name, value]...],
//        "cols": [n...]}}, "steps": [{"table": ID, "set": {name: value}, "fire": name,
//        "head": n, "page": "next"}...]}
"use strict";
const fs = require("fs");
const spec = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));

class Node {
  constructor(tag, attrs) {
    this.tagName = tag;
    this.attrs = Object.assign({}, attrs || {});
    this.children = [];
    this.listeners = {};
    this.className = "";
    this.title = "";
    this.hidden = true;
    this.colSpan = 1;
    this.value = this.attrs.value || "";
    this.own = "";
    this.q = {};
  }
  get firstChild() { return this.children[0]; }
  appendChild(child) {
    if (child.tagName === "#fragment") { this.children.push(...child.children); }
    else { this.children.push(child); }
    return child;
  }
  removeChild(child) { this.children.splice(this.children.indexOf(child), 1); }
  set textContent(text) { this.own = String(text); this.children = []; }
  get textContent() { return this.own + this.children.map((c) => c.textContent).join(""); }
  set innerHTML(_) { throw new Error("the report script must not use innerHTML"); }
  insertAdjacentHTML() { throw new Error("the report script must not use insertAdjacentHTML"); }
  getAttribute(name) { return name in this.attrs ? this.attrs[name] : null; }
  setAttribute(name, value) {
    if (/^on/i.test(name) || name === "src" || name === "href") {
      throw new Error("the report script set attribute " + name);
    }
    this.attrs[name] = String(value);
  }
  removeAttribute(name) { delete this.attrs[name]; }
  addEventListener(event, fn) { (this.listeners[event] = this.listeners[event] || []).push(fn); }
  fire(event) { (this.listeners[event] || []).forEach((fn) => fn()); }
  querySelector(sel) { return this.querySelectorAll(sel)[0] || null; }
  querySelectorAll(sel) { return this.q[sel] || []; }
}

const roots = {};
for (const [id, desc] of Object.entries(spec.roots)) {
  const root = new Node("div", {id});
  const inputs = desc.inputs.map(([name, value]) => new Node("input", {"data-f": name, value}));
  const heads = desc.cols.map((n) => {
    const th = new Node("th", {"data-col": String(n)});
    th.q = {button: [new Node("button")]};
    return th;
  });
  const pager = ["first", "prev", "next", "last"].map((p) => new Node("button", {"data-p": p}));
  root.q = {
    "tbody": [new Node("tbody")],
    "[data-role=status]": [new Node("span")],
    "[data-f]": inputs,
    "th[data-col]": heads,
    "[data-p]": pager,
  };
  roots[id] = root;
}

global.window = {JSON, Intl, setTimeout: (fn) => fn(), clearTimeout: () => {}};
global.document = {
  querySelector: () => null,
  getElementById: (id) => (id === "audit-data" ? {textContent: spec.data} : roots[id] || null),
  createElement: (tag) => new Node(tag),
  createTextNode: (text) => { const n = new Node("#text"); n.own = String(text); return n; },
  createDocumentFragment: () => new Node("#fragment"),
};

// The page's own script, run as the browser would.
new Function(spec.script)();

function snapshot(id) {
  const root = roots[id];
  const tbody = root.q.tbody[0];
  return {
    table: id,
    hidden: root.hidden,
    status: root.q["[data-role=status]"][0].textContent,
    rows: tbody.children.map((tr) => tr.children.map((td) => td.textContent)),
    classes: tbody.children.map((tr) => tr.children.map((td) =>
      td.children.map((c) => c.className).filter(Boolean).join(" "))),
    sorted: root.q["th[data-col]"].map((th) => th.getAttribute("aria-sort")),
  };
}

const out = [];
for (const id of Object.keys(roots)) { out.push(snapshot(id)); }
for (const step of spec.steps || []) {
  const root = roots[step.table];
  const inputs = root.q["[data-f]"];
  for (const [name, value] of Object.entries(step.set || {})) {
    inputs.find((i) => i.attrs["data-f"] === name).value = value;
  }
  if (step.fire) { inputs.find((i) => i.attrs["data-f"] === step.fire).fire(step.fire === "q" ? "input" : "change"); }
  if (step.head !== undefined) {
    root.q["th[data-col]"].find((th) => th.attrs["data-col"] === String(step.head)).q.button[0].fire("click");
  }
  if (step.page) { root.q["[data-p]"].find((b) => b.attrs["data-p"] === step.page).fire("click"); }
  out.push(snapshot(step.table));
}
process.stdout.write(JSON.stringify(out));

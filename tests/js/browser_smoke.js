/* Runs REPORT.html's script (argv[2]) in node against a minimal stand-in for the DOM, on the example
   data of argv[3] (one browser's JSON), sets the mode to "A right, B wrong" with A and B from argv[4],
   argv[5], and prints what the browser shows: {count: the count line, shown: ids of the cards drawn on
   the first page}; then clicks a confusion-matrix cell (technique argv[4], expected argv[6], answered
   argv[7]) and adds what it shows as {cell: {count, shown}}. */
"use strict";
const fs = require("fs");
const [script, dataFile, a, b, expected, parsed] = process.argv.slice(2);
const dataText = fs.readFileSync(dataFile, "utf8");

class Node {
  constructor(tag) {
    this.tagName = tag.toUpperCase(); this.children = []; this.attributes = {}; this.dataset = {};
    this.listeners = {}; this._text = ""; this.value = ""; this.hidden = false; this.disabled = false;
    this.className = ""; this.parentNode = null;
  }
  set textContent(text) { this._text = String(text); this.children = []; }
  get textContent() { return this._text + this.children.map((c) => c.textContent).join(""); }
  setAttribute(key, value) { this.attributes[key] = String(value); }
  getAttribute(key) { return key in this.attributes ? this.attributes[key] : null; }
  removeAttribute(key) { delete this.attributes[key]; }
  appendChild(child) { child.parentNode = this; this.children.push(child); return child; }
  replaceChildren(...children) { this.children = []; children.forEach((c) => this.appendChild(c)); }
  addEventListener(type, listener) { (this.listeners[type] = this.listeners[type] || []).push(listener); }
  fire(type) { (this.listeners[type] || []).forEach((listener) => listener({ target: this })); }
  all(tag) { return this.children.flatMap((c) => (c.tagName === tag ? [c] : []).concat(c.all(tag))); }
  querySelector(tag) { return this.all(tag.toUpperCase())[0] || null; }
  scrollIntoView() {}
}

const root = new Node("div");
root.dataset.source = "examples-0";
const cell = new Node("button");
Object.assign(cell.dataset, { browser: "0", tech: a, expected: expected, parsed: parsed });
global.document = {
  createElement: (tag) => new Node(tag),
  querySelectorAll: (selector) => ({ "div.browser": [root], "button.cm": [cell] })[selector] || [],
  getElementById: () => ({ textContent: dataText }),
};
global.module = { exports: {} };
eval(fs.readFileSync(script, "utf8")); /* the page's script, as the page runs it */

const selects = root.all("SELECT");
const [mode, pickA, pickB] = selects;
pickA.value = a; pickA.fire("change");
pickB.value = b; pickB.fire("change");
mode.value = "a-right-b-wrong"; mode.fire("change");
function showing() {
  const cards = root.all("DIV").filter((d) => d.className === "example");
  const count = root.all("DIV").find((d) => d.className === "muted").textContent;
  return { count, shown: cards.map((card) => card.children[0].textContent.split(" · ")[0]) };
}
const filtered = showing();
cell.fire("click");
process.stdout.write(JSON.stringify({ ...filtered, cell: showing() }));

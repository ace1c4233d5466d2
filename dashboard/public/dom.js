// Building DOM from data without ever parsing it as HTML: text goes in as text nodes.

/** h("a", {href: "#/"}, "Fleet") -> <a href="#/">Fleet</a>; attributes starting with "on" are listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else if (name in el && typeof value !== "string") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
const absolute = new Intl.DateTimeFormat("en", { dateStyle: "medium", timeStyle: "medium" });
const STEPS = [
  [60, "second"],
  [60, "minute"],
  [24, "hour"],
  [7, "day"],
  [4.35, "week"],
  [12, "month"],
  [Infinity, "year"],
];

/** "3 minutes ago", for a time within reach; the exact time is in the element's title. */
export function ago(iso) {
  let value = (Date.parse(iso) - Date.now()) / 1000;
  for (const [size, unit] of STEPS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return iso;
}

export function time(iso) {
  if (!iso) return h("span", {}, "never");
  return h("time", { datetime: iso, title: absolute.format(new Date(iso)) }, ago(iso));
}

export const statusText = { good: "good", fair: "fair", poor: "poor", unknown: "no data" };

/** A score with its band in words, never by colour alone. */
export function scoreBadge(score, status, big = false) {
  const label = score === null ? "no data" : `${Math.round(score)}`;
  return h(
    "span",
    {
      class: `score ${status}${big ? " big" : ""}`,
      title: `health ${label}${score === null ? "" : ` of 100, ${statusText[status]}`}`,
    },
    h("span", { class: "value" }, label),
    score === null ? null : h("span", { class: "band" }, statusText[status]),
  );
}

export const signed = (n, digits = 2) => (n > 0 ? `+${n.toFixed(digits)}` : n.toFixed(digits)).replace("-", "\u2212");

// Small DOM helpers shared by the views.

/** `el('td', {class: 'x'}, 'text', child)`: an element with attributes and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter((c) => c !== undefined && c !== null));
  return node;
}

export const $ = (id) => document.getElementById(id);

/** Shows a message for a few seconds (errors stay until clicked). */
export function say(text, kind = 'ok') {
  const node = el('div', { class: `message ${kind}`, role: kind === 'error' ? 'alert' : undefined }, text);
  node.addEventListener('click', () => node.remove());
  $('messages').append(node);
  if (kind !== 'error') setTimeout(() => node.remove(), 5000);
  return node;
}

/** Reports an API error (status and message) or any other failure. */
export function fail(error, doing) {
  const text = typeof error?.describe === 'function' ? error.describe() : String(error?.message ?? error);
  say(doing ? `${doing}: ${text}` : text, 'error');
}

/** Runs `work`, reporting a failure instead of throwing; resolves to its result or undefined. */
export async function attempt(doing, work) {
  try {
    return await work();
  } catch (error) {
    fail(error, doing);
    return undefined;
  }
}

export function formatSize(bytes) {
  if (bytes === undefined || bytes === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

export function formatDate(text) {
  if (!text) return '';
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString();
}

/** Splits "a, b ,c" into ["a", "b", "c"]; empty gives null (no restriction). */
export function listOf(text) {
  const items = text.split(',').map((s) => s.trim()).filter(Boolean);
  return items.length ? items : null;
}

// Previews: the bytes are downloaded with the user's credentials and shown from an object URL
// (the page's CSP allows `blob:` for images, media and the PDF frame, nothing from elsewhere).

import { el } from './ui.js';

/** Larger objects are not fetched for a preview; the user can still download them. */
export const PREVIEW_LIMIT = 25 * 1024 * 1024;
const TEXT_LIMIT = 512 * 1024;

let current = null;

/** Frees the previous preview's object URL. */
export function clearPreview(container) {
  if (current) URL.revokeObjectURL(current);
  current = null;
  container.replaceChildren();
}

function isText(type) {
  return (
    type.startsWith('text/') ||
    /^application\/(json|xml|javascript|x-yaml|yaml|toml|sql|x-sh)\b/.test(type) ||
    type.endsWith('+json') ||
    type.endsWith('+xml')
  );
}

/** What kind of preview a type gets, or null. */
export function previewKind(type) {
  if (type.startsWith('image/')) return 'image';
  if (type === 'application/pdf') return 'pdf';
  if (type.startsWith('audio/')) return 'audio';
  if (type.startsWith('video/')) return 'video';
  if (isText(type)) return 'text';
  return null;
}

/** Shows `blob` (of the object's `type`) in `container`. */
export async function showPreview(container, blob, type, name) {
  clearPreview(container);
  const kind = previewKind(type);
  if (kind === 'text') {
    const text = await blob.slice(0, TEXT_LIMIT).text();
    const more = blob.size > TEXT_LIMIT ? `\n… (${blob.size - TEXT_LIMIT} more bytes)` : '';
    container.append(el('pre', { id: 'preview-text' }, text + more));
    return;
  }
  if (!kind) {
    container.append(el('p', { class: 'note' }, `No preview for ${type || 'this type'}.`));
    return;
  }
  current = URL.createObjectURL(new Blob([blob], { type }));
  if (kind === 'image') container.append(el('img', { id: 'preview-image', src: current, alt: name }));
  if (kind === 'pdf') container.append(el('iframe', { id: 'preview-pdf', src: current, title: name }));
  if (kind === 'audio') container.append(el('audio', { id: 'preview-audio', src: current, controls: true }));
  if (kind === 'video') container.append(el('video', { id: 'preview-video', src: current, controls: true }));
}

// The object pane: preview, info (metadata, sha256, owner), download, rename/move, copy,
// delete, and signed URLs.

import { PREVIEW_LIMIT, clearPreview, previewKind, showPreview } from './preview.js';
import { $, attempt, el, fail, formatDate, formatSize, say } from './ui.js';

export function initObject(ctx) {
  const pane = $('object-pane');
  let info = null;

  function close() {
    pane.hidden = true;
    ctx.selected = null;
    info = null;
    clearPreview($('preview'));
    for (const row of document.querySelectorAll('tr[data-object]')) row.setAttribute('aria-selected', 'false');
  }

  function renderInfo(answer) {
    const rows = [
      ['Size', `${formatSize(answer.size)} (${answer.size} bytes)`],
      ['Type', answer.content_type],
      ['SHA-256', answer.sha256],
      ['ETag', answer.etag],
      ['Owner', answer.owner_id || '(none)'],
      ['Cache-Control', answer.cache_control],
      ['Modified', formatDate(answer.last_modified)],
      ['Created', formatDate(answer.created_at)],
      ['Id', answer.id],
      ['Metadata', JSON.stringify(answer.metadata ?? {})],
    ];
    $('object-info').replaceChildren(
      ...rows.flatMap(([term, value]) => [el('dt', {}, term), el('dd', { 'data-field': term }, value ?? '')]),
    );
  }

  ctx.select = async (name) => {
    const bucket = ctx.bucket;
    ctx.selected = name;
    for (const row of document.querySelectorAll('tr[data-object]')) {
      row.setAttribute('aria-selected', String(row.dataset.object === name));
    }
    pane.hidden = false;
    $('object-title').textContent = name;
    $('object-info').replaceChildren();
    $('signed').hidden = true;
    $('move-bucket').value = bucket;
    $('move-path').value = name;
    const preview = $('preview');
    clearPreview(preview);
    info = await attempt('Reading the object', () => ctx.api.info(bucket, name));
    if (!info || ctx.selected !== name) return;
    renderInfo(info);
    const type = info.content_type ?? '';
    if (!previewKind(type)) {
      preview.append(el('p', { class: 'note' }, `No preview for ${type || 'this type'}.`));
    } else if (info.size > PREVIEW_LIMIT) {
      preview.append(el('p', { class: 'note' }, `Too large to preview (${formatSize(info.size)}); download it instead.`));
    } else {
      const blob = await attempt('Downloading the preview', () => ctx.api.download(bucket, name));
      if (blob && ctx.selected === name) await showPreview(preview, blob, type, name);
    }
  };

  $('object-close').addEventListener('click', close);

  $('object-download').addEventListener('click', async () => {
    const name = ctx.selected;
    const blob = await attempt('Downloading', () => ctx.api.download(ctx.bucket, name));
    if (!blob) return;
    const url = URL.createObjectURL(blob);
    const link = el('a', { href: url, download: name.split('/').pop() });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  });

  $('object-delete').addEventListener('click', async () => {
    const name = ctx.selected;
    if (!confirm(`Delete ${name}?`)) return;
    const done = await attempt('Deleting', () => ctx.api.remove(ctx.bucket, name));
    if (done === undefined) return;
    say(`${name} deleted`);
    close();
    await ctx.reload();
  });

  $('object-move-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const action = event.submitter?.value === 'copy' ? 'copy' : 'move';
    const name = ctx.selected;
    const toBucket = $('move-bucket').value.trim() || ctx.bucket;
    const toPath = $('move-path').value.trim();
    if (toBucket === ctx.bucket && toPath === name) {
      fail(new Error('the destination is the object itself'));
      return;
    }
    const done = await attempt(action === 'copy' ? 'Copying' : 'Moving', () =>
      ctx.api[action](ctx.bucket, name, toBucket, toPath),
    );
    if (done === undefined) return;
    say(`${name} ${action === 'copy' ? 'copied' : 'moved'} to ${toBucket}/${toPath}`);
    if (action === 'move') close();
    await ctx.reload();
  });

  $('sign-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const seconds = Number($('sign-expires').value);
    const url = await attempt('Signing a URL', () => ctx.api.sign(ctx.bucket, ctx.selected, seconds));
    if (!url) return;
    $('signed-url').value = url;
    $('signed-open').href = url;
    $('signed').hidden = false;
  });

  $('signed-copy').addEventListener('click', async () => {
    const field = $('signed-url');
    try {
      await navigator.clipboard.writeText(field.value);
      say('Signed URL copied');
    } catch {
      // No clipboard permission (or not a secure context): leave it selected to copy by hand.
      field.select();
      say('Press Ctrl+C to copy the selected URL');
    }
  });

  ctx.closeObject = close;
}

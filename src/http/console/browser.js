// The folder browser: one folder of the open bucket at a time, in cursor pages of
// `POST /object/list-v2` (the cursor of each page visited is kept, for "previous").

import { $, attempt, el, formatDate, formatSize } from './ui.js';

export function initBrowser(ctx) {
  let cursors = [undefined];
  let page = 0;
  let loading = 0;

  async function load() {
    const ticket = ++loading;
    const bucket = ctx.bucket;
    const prefix = ctx.prefix;
    const limit = Number($('page-size').value);
    const answer = await attempt('Listing the folder', () =>
      ctx.api.list(bucket, { prefix, cursor: cursors[page], limit }),
    );
    // A later navigation won the race: its answer is the one to show.
    if (ticket !== loading) return;
    renderCrumbs(bucket, prefix);
    const body = $('listing').tBodies[0];
    body.replaceChildren();
    if (!answer) return;
    for (const folder of answer.folders ?? []) {
      body.append(
        el(
          'tr',
          { 'data-folder': folder.name },
          el('td', {}, el('button', { type: 'button', onclick: () => ctx.browse(folder.name) }, `📁 ${folder.key}/`)),
          el('td'),
          el('td', {}, 'folder'),
          el('td'),
        ),
      );
    }
    for (const object of answer.objects ?? []) {
      const meta = object.metadata ?? {};
      body.append(
        el(
          'tr',
          { 'data-object': object.name, 'aria-selected': String(object.name === ctx.selected) },
          el('td', {}, el('button', { type: 'button', onclick: () => ctx.select(object.name) }, object.key)),
          el('td', {}, formatSize(meta.size)),
          el('td', {}, meta.mimetype ?? ''),
          el('td', {}, formatDate(object.updated_at)),
        ),
      );
    }
    if (!answer.folders?.length && !answer.objects?.length) {
      body.append(el('tr', {}, el('td', { colspan: '4', class: 'note' }, 'Nothing here that this identity may list.')));
    }
    if (answer.hasNext) cursors[page + 1] = answer.nextCursor;
    $('page-next').disabled = !answer.hasNext;
    $('page-prev').disabled = page === 0;
    $('page-number').textContent = `page ${page + 1}`;
  }

  function renderCrumbs(bucket, prefix) {
    const crumbs = $('breadcrumbs');
    crumbs.replaceChildren(el('button', { type: 'button', onclick: () => ctx.browse('') }, bucket));
    let path = '';
    for (const part of prefix.split('/').filter(Boolean)) {
      path += `${part}/`;
      const target = path;
      crumbs.append(' / ', el('button', { type: 'button', onclick: () => ctx.browse(target) }, part));
    }
  }

  ctx.browse = (prefix) => {
    ctx.prefix = prefix;
    cursors = [undefined];
    page = 0;
    return load();
  };
  ctx.reload = load;

  $('page-next').addEventListener('click', () => {
    page += 1;
    load();
  });
  $('page-prev').addEventListener('click', () => {
    page = Math.max(0, page - 1);
    load();
  });
  $('page-size').addEventListener('change', () => ctx.browse(ctx.prefix));
  $('refresh').addEventListener('click', load);
}

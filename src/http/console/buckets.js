// The buckets pane: list, create, open by id, edit (public, size limit, MIME types), empty,
// delete.

import { $, attempt, el, listOf, say } from './ui.js';

/** A bucket form's settings as the API takes them (empty fields: no limit). */
function settingsOf(form) {
  const limit = form.elements.file_size_limit.value.trim();
  return {
    public: form.elements.public.checked,
    file_size_limit: limit === '' ? null : /^\d+$/.test(limit) ? Number(limit) : limit,
    allowed_mime_types: listOf(form.elements.allowed_mime_types.value),
  };
}

export async function loadBuckets(ctx) {
  const list = $('bucket-list');
  const buckets = await attempt('Listing the buckets', () => ctx.api.listBuckets());
  list.replaceChildren();
  if (!buckets) return;
  if (buckets.length === 0) {
    list.append(el('li', { class: 'note' }, 'No bucket is visible to this identity.'));
  }
  for (const bucket of buckets) {
    list.append(
      el(
        'li',
        {},
        el(
          'button',
          {
            type: 'button',
            'data-bucket': bucket.id,
            'aria-current': String(bucket.id === ctx.bucket),
            onclick: () => ctx.openBucket(bucket.id),
          },
          bucket.name ?? bucket.id,
          bucket.public ? el('span', { class: 'badge' }, 'public') : null,
        ),
      ),
    );
  }
}

/** Marks the open bucket in the list. */
export function markCurrent(id) {
  for (const button of $('bucket-list').querySelectorAll('button[data-bucket]')) {
    button.setAttribute('aria-current', String(button.dataset.bucket === id));
  }
}

export function initBuckets(ctx) {
  $('bucket-create-form').addEventListener('submit', async (event) => {
    event.preventDefault();
    const form = event.currentTarget;
    const name = form.elements.name.value.trim();
    const created = await attempt('Creating the bucket', () =>
      ctx.api.createBucket({ name, ...settingsOf(form) }),
    );
    if (created === undefined) return;
    say(`Bucket ${name} created`);
    form.reset();
    $('bucket-create').open = false;
    await loadBuckets(ctx);
    ctx.openBucket(name);
  });

  $('open-bucket-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const id = $('open-bucket-id').value.trim();
    if (id) ctx.openBucket(id);
  });

  const editForm = $('bucket-edit-form');
  $('bucket-edit').addEventListener('click', async () => {
    const bucket = await attempt('Reading the bucket', () => ctx.api.getBucket(ctx.bucket));
    if (!bucket) return;
    editForm.elements.public.checked = Boolean(bucket.public);
    editForm.elements.file_size_limit.value = bucket.file_size_limit ?? '';
    editForm.elements.allowed_mime_types.value = (bucket.allowed_mime_types ?? []).join(', ');
    editForm.hidden = false;
  });
  $('bucket-edit-cancel').addEventListener('click', () => {
    editForm.hidden = true;
  });
  editForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const id = ctx.bucket;
    const saved = await attempt('Saving the bucket', () => ctx.api.updateBucket(id, settingsOf(editForm)));
    if (saved === undefined) return;
    editForm.hidden = true;
    say(`Bucket ${id} saved`);
    await loadBuckets(ctx);
  });

  $('bucket-empty').addEventListener('click', async () => {
    const id = ctx.bucket;
    if (!confirm(`Delete every object in bucket ${id}?`)) return;
    const done = await attempt('Emptying the bucket', () => ctx.api.emptyBucket(id));
    if (done === undefined) return;
    say(`Bucket ${id} emptied`);
    ctx.browse('');
  });

  $('bucket-delete').addEventListener('click', async () => {
    const id = ctx.bucket;
    if (!confirm(`Delete bucket ${id}? It must be empty.`)) return;
    const done = await attempt('Deleting the bucket', () => ctx.api.deleteBucket(id));
    if (done === undefined) return;
    say(`Bucket ${id} deleted`);
    ctx.closeBucket();
    await loadBuckets(ctx);
  });
}

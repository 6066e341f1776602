// Uploads into the open folder, by drag-and-drop or the file picker, each with a progress bar:
// a single POST (XMLHttpRequest, for its progress events) up to 6 MB, resumable (TUS) above.

import { tusUpload } from './tus.js';
import { encodePath } from './api.js';
import { $, el, fail, formatSize, say } from './ui.js';

/** Above this size a file goes through the resumable endpoint, in chunks. */
export const RESUMABLE_ABOVE = 6 * 1024 * 1024;

async function uploadOne(ctx, file) {
  const bucket = ctx.bucket;
  const name = ctx.prefix + file.name;
  const upsert = $('upsert').checked;
  const bar = el('progress', { max: String(file.size || 1), value: '0', 'aria-label': `upload of ${file.name}` });
  const status = el('span', { class: 'upload-status' }, '0%');
  const row = el('li', { 'data-upload': name }, el('span', {}, `${file.name} (${formatSize(file.size)})`), bar, status);
  $('uploads').append(row);
  // Bytes sent are not bytes stored: the bar reads 100% only once the server has answered.
  const progress = (done) => {
    bar.value = Math.min(done, file.size);
    const percent = file.size ? Math.floor((100 * Math.min(done, file.size)) / file.size) : 100;
    status.textContent = `${Math.min(percent, 99)}%`;
  };
  try {
    if (file.size > RESUMABLE_ABOVE) {
      await tusUpload(ctx.api, { bucket, name, file, upsert, onProgress: progress });
    } else {
      await ctx.api.send(
        'POST',
        `/object/${encodeURIComponent(bucket)}/${encodePath(name)}`,
        file,
        {
          'Content-Type': file.type || 'application/octet-stream',
          ...(upsert ? { 'x-upsert': 'true' } : {}),
        },
        progress,
      );
    }
    bar.value = bar.max;
    status.textContent = '100%';
    row.classList.add('done');
    return true;
  } catch (error) {
    // The bytes may all have left before the refusal came: the bar must not read as done.
    bar.value = 0;
    status.textContent = 'failed';
    status.classList.add('failed');
    fail(error, `Uploading ${name}`);
    return false;
  }
}

async function uploadAll(ctx, files) {
  if (!ctx.bucket || files.length === 0) return;
  let uploaded = 0;
  // One at a time: the progress bars stay readable and the server sees one stream per user.
  for (const file of files) {
    if (await uploadOne(ctx, file)) uploaded += 1;
  }
  if (uploaded) say(`${uploaded} file${uploaded === 1 ? '' : 's'} uploaded`);
  await ctx.reload();
}

export function initUpload(ctx) {
  const zone = $('dropzone');
  $('file-input').addEventListener('change', async (event) => {
    const files = [...event.target.files];
    event.target.value = '';
    await uploadAll(ctx, files);
  });
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', async (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    const files = [...(event.dataTransfer?.files ?? [])];
    if (files.length === 0) {
      fail(new Error('only files can be dropped here (not folders or text)'));
      return;
    }
    await uploadAll(ctx, files);
  });
}

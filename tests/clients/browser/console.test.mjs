// The web console in a real browser: Debian's Chromium, headless, driven by playwright-core
// (never a downloaded browser). Run by tests/console.rs with a live server's URL and keys in the
// environment; screenshots go to $CONSOLE_ARTIFACTS.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { deflateSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const URL_ROOT = process.env.PGSTORAGE_URL;
const SERVICE_KEY = process.env.PGSTORAGE_SERVICE_KEY;
const USER1_KEY = process.env.PGSTORAGE_USER1_KEY;
const ARTIFACTS = process.env.CONSOLE_ARTIFACTS ?? join(process.cwd(), 'artifacts');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
assert.ok(URL_ROOT && SERVICE_KEY && USER1_KEY, 'PGSTORAGE_URL and the keys must be set');
mkdirSync(ARTIFACTS, { recursive: true });

const TIMEOUT = 20_000;
let context;
let profile;

before(async () => {
  profile = mkdtempSync(join(tmpdir(), 'pgstorage-console-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1400, height: 900 },
    acceptDownloads: false,
  });
  context.setDefaultTimeout(TIMEOUT);
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: URL_ROOT });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/** A page that fails the test on a script error or a CSP violation. */
async function openConsole(path = '/console') {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && /Content Security Policy|Refused to/i.test(message.text())) {
      problems.push(`CSP: ${message.text()}`);
    }
  });
  page.on('dialog', (dialog) => dialog.accept());
  await page.goto(URL_ROOT + path);
  await page.waitForSelector('body[data-ready="true"]');
  return { page, problems };
}

async function shot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

async function signIn(page, key, expected) {
  await page.fill('#sign-in-key', key);
  await page.click('#sign-in');
  await page.waitForFunction(
    (text) => document.getElementById('whoami').textContent.includes(text),
    expected,
  );
}

async function api(method, path, key, body, headers = {}) {
  const init = { method, headers: { Authorization: `Bearer ${key}`, ...headers } };
  if (body !== undefined) {
    if (typeof body === 'string' || body instanceof Uint8Array) init.body = body;
    else {
      init.body = JSON.stringify(body);
      init.headers['Content-Type'] = 'application/json';
    }
  }
  return fetch(URL_ROOT + path, init);
}

/** A w×h PNG in two colours (valid, so that the preview really decodes). */
function png(width, height) {
  const table = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (bytes) => {
    let c = 0xffffffff;
    for (const byte of bytes) c = table[(c ^ byte) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'ascii');
    data.copy(out, 8);
    out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = [];
  for (let y = 0; y < height; y += 1) {
    const row = Buffer.alloc(1 + width * 3);
    for (let x = 0; x < width; x += 1) row.set(x < width / 2 ? [51, 103, 145] : [230, 120, 40], 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A one-page PDF with a line of text (offsets in the xref table computed, so it is valid). */
function pdf() {
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 100] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    null,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  const text = 'BT /F1 18 Tf 20 50 Td (pgstorage console) Tj ET';
  objects[3] = `<< /Length ${text.length} >>\nstream\n${text}\nendstream`;
  let out = '%PDF-1.4\n';
  const offsets = objects.map((body, i) => {
    const at = out.length;
    out += `${i + 1} 0 obj\n${body}\nendobj\n`;
    return at;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  out += offsets.map((at) => `${String(at).padStart(10, '0')} 00000 n \n`).join('');
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

/** Half a second of a 440 Hz tone, 8 kHz 8-bit mono PCM in a WAV file. */
function wav() {
  const rate = 8000;
  const samples = rate / 2;
  const out = Buffer.alloc(44 + samples);
  out.write('RIFF', 0, 'ascii');
  out.writeUInt32LE(36 + samples, 4);
  out.write('WAVEfmt ', 8, 'ascii');
  out.writeUInt32LE(16, 16);
  out.writeUInt16LE(1, 20); // PCM
  out.writeUInt16LE(1, 22); // mono
  out.writeUInt32LE(rate, 24);
  out.writeUInt32LE(rate, 28);
  out.writeUInt16LE(1, 32);
  out.writeUInt16LE(8, 34);
  out.write('data', 36, 'ascii');
  out.writeUInt32LE(samples, 40);
  for (let i = 0; i < samples; i += 1) out[44 + i] = 128 + Math.round(100 * Math.sin((2 * Math.PI * 440 * i) / rate));
  return out;
}

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex');

/** The large file the page builds for the drop: byte i is (i * 7) mod 251. */
function patternBytes(size) {
  const bytes = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) bytes[i] = (i * 7) % 251;
  return bytes;
}

test('service_role: bucket, uploads with progress, preview, signed URL, delete, policy check', async () => {
  const { page, problems } = await openConsole();
  // /console redirects to /console/, where the relative asset URLs resolve.
  assert.match(page.url(), /\/console\/$/);
  await shot(page, '01-sign-in');
  await signIn(page, SERVICE_KEY, 'service_role');

  // Create a bucket.
  await page.click('#bucket-create summary');
  await page.fill('#bucket-name', 'console-photos');
  await page.click('#bucket-create-submit');
  await page.waitForFunction(() => document.getElementById('bucket-title').textContent === 'console-photos');
  await page.waitForSelector('#bucket-list button[data-bucket="console-photos"][aria-current="true"]');

  // Edit it: a size limit and a MIME allow-list, read back through the API.
  await page.click('#bucket-edit');
  await page.waitForSelector('#bucket-edit-form:not([hidden])');
  await page.fill('#bucket-edit-form input[name="file_size_limit"]', '20MB');
  await page.fill('#bucket-edit-form input[name="allowed_mime_types"]', 'image/*, application/octet-stream, text/plain');
  await page.click('#bucket-edit-form button[type="submit"]');
  await page.waitForSelector('#bucket-edit-form[hidden]', { state: 'attached' });
  const bucket = await (await api('GET', '/bucket/console-photos', SERVICE_KEY)).json();
  assert.equal(bucket.file_size_limit, 20 * 1000 * 1000, JSON.stringify(bucket));
  assert.deepEqual(bucket.allowed_mime_types, ['image/*', 'application/octet-stream', 'text/plain']);

  // Record every value each progress bar takes.
  await page.evaluate(() => {
    window.progressSeen = {};
    new MutationObserver(() => {
      for (const bar of document.querySelectorAll('#uploads progress')) {
        const name = bar.closest('li').dataset.upload;
        (window.progressSeen[name] ??= []).push([Number(bar.value), Number(bar.max)]);
      }
    }).observe(document.getElementById('uploads'), { subtree: true, attributes: true, childList: true });
  });

  // Upload an image with the file picker.
  const image = png(64, 48);
  await page.setInputFiles('#file-input', { name: 'photo.png', mimeType: 'image/png', buffer: image });
  const upload = page.locator('#uploads li[data-upload="photo.png"]');
  await upload.locator('.upload-status', { hasText: '100%' }).waitFor();
  assert.deepEqual(
    await upload.locator('progress').evaluate((bar) => [bar.value, bar.max]),
    [image.length, image.length],
  );
  await page.waitForSelector('tr[data-object="photo.png"]');

  // Drop a 7 MB file: it goes through the resumable endpoint in chunks, and its bar moves.
  const large = 7 * 1024 * 1024;
  await page.evaluate((size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 1) bytes[i] = (i * 7) % 251;
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], 'large.bin', { type: 'application/octet-stream' }));
    const zone = document.getElementById('dropzone');
    zone.dispatchEvent(new DragEvent('dragover', { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, large);
  const dropped = page.locator('#uploads li[data-upload="large.bin"]');
  await dropped.locator('.upload-status', { hasText: '100%' }).waitFor({ timeout: 60_000 });
  await page.waitForSelector('tr[data-object="large.bin"]');
  await shot(page, '02-uploaded');
  const seen = await page.evaluate(() => window.progressSeen['large.bin']);
  assert.ok(
    seen.some(([value, max]) => value > 0 && value < max),
    `the large file's bar never showed partial progress: ${JSON.stringify(seen)}`,
  );
  assert.deepEqual(seen.at(-1), [large, large]);
  const stored = await api('GET', '/object/authenticated/console-photos/large.bin', SERVICE_KEY);
  assert.equal(stored.status, 200);
  assert.equal(sha256(Buffer.from(await stored.arrayBuffer())), sha256(patternBytes(large)));

  // Select the image: its preview decodes, and the info shows its sha256.
  await page.click('tr[data-object="photo.png"] button');
  await page.waitForFunction(() => {
    const img = document.getElementById('preview-image');
    return img && img.complete && img.naturalWidth === 64 && img.naturalHeight === 48;
  });
  assert.match(await page.getAttribute('#preview-image', 'src'), /^blob:/);
  await page.waitForFunction(
    (hash) => document.querySelector('dd[data-field="SHA-256"]')?.textContent === hash,
    sha256(image),
  );
  await shot(page, '03-preview');

  // Sign a URL; fetched with no credentials it answers the image's bytes.
  await page.fill('#sign-expires', '120');
  await page.click('#sign-submit');
  await page.waitForSelector('#signed:not([hidden])');
  const signedUrl = await page.inputValue('#signed-url');
  assert.match(signedUrl, /^http:\/\/.+\/object\/sign\/console-photos\/photo\.png\?token=/);
  const signed = await fetch(signedUrl);
  assert.equal(signed.status, 200);
  assert.deepEqual(Buffer.from(await signed.arrayBuffer()), image);
  await page.click('#signed-copy');
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), signedUrl);
  await shot(page, '04-signed-url');

  // Copy, then rename (move) the copy, then delete the original.
  await page.fill('#move-path', 'copies/photo-copy.png');
  await page.click('#object-copy');
  await page.waitForSelector('tr[data-folder="copies/"]');
  await page.click('tr[data-folder="copies/"] button');
  await page.click('tr[data-object="copies/photo-copy.png"] button');
  await page.waitForFunction(() => document.getElementById('move-path').value === 'copies/photo-copy.png');
  await page.fill('#move-path', 'copies/renamed.png');
  await page.click('#object-move');
  await page.waitForSelector('tr[data-object="copies/renamed.png"]');
  assert.equal(await page.locator('tr[data-object="copies/photo-copy.png"]').count(), 0);
  await page.click('#breadcrumbs button >> nth=0');
  await page.click('tr[data-object="photo.png"] button');
  await page.waitForSelector('#preview-image');
  await page.click('#object-delete');
  await page.waitForSelector('tr[data-object="photo.png"]', { state: 'detached' });
  assert.equal((await api('GET', '/object/info/console-photos/photo.png', SERVICE_KEY)).status, 404);

  // An error from the API is shown with its status: a second bucket of the same name.
  await page.click('#bucket-create summary');
  await page.fill('#bucket-name', 'console-photos');
  await page.click('#bucket-create-submit');
  await page.locator('.message.error', { hasText: '409' }).waitFor();

  // The policy tester: allowed in one's own folder, denied in another's (tests/clients/fixtures.sql).
  await page.click('#nav .tab[data-view="policy"]');
  await page.waitForSelector('#policy-view:not([hidden])');
  const form = page.locator('#policy-form');
  await form.locator('select[name="role"]').selectOption('authenticated');
  await form.locator('input[name="sub"]').fill('u1');
  await form.locator('select[name="operation"]').selectOption('storage.upload');
  await form.locator('input[name="bucket"]').fill('console-photos');
  await form.locator('input[name="path"]').fill('u1/x.png');
  await page.click('#policy-submit');
  await page.locator('#policy-verdict', { hasText: 'ALLOWED' }).waitFor();
  assert.match(await page.textContent('#policy-result'), /own_folder/);
  await shot(page, '05-policy-allowed');
  await form.locator('input[name="path"]').fill('u2/x.png');
  await page.click('#policy-submit');
  await page.locator('#policy-verdict', { hasText: 'REFUSED (denied)' }).waitFor();
  assert.match(await page.textContent('#policy-result'), /FAIL/);
  await shot(page, '06-policy-denied');

  // Sign out: back to the sign-in form, and the key is forgotten.
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in-view:not([hidden])');
  await page.reload();
  await page.waitForSelector('#sign-in-view:not([hidden])');
  assert.deepEqual(problems, []);
  await page.close();
});

test('authenticated user: sees only their own folder, and the tester refuses them', async () => {
  // Set up as service_role through the API: a private bucket with two users' files.
  let response = await api('POST', '/bucket', SERVICE_KEY, { name: 'console-shared' });
  assert.equal(response.status, 200, await response.text());
  const files = [['u1/mine.txt', 'only u1 reads this'], ['u2/theirs.txt', 'u2 secret']];
  // Twelve more in u1's folder, so that it takes two pages of ten.
  for (let n = 0; n < 12; n += 1) files.push([`u1/page/f${String(n).padStart(2, '0')}.txt`, `file ${n}`]);
  for (const [path, text] of files) {
    response = await api('POST', `/object/console-shared/${path}`, SERVICE_KEY, text, { 'Content-Type': 'text/plain' });
    assert.equal(response.status, 200, await response.text());
  }
  for (const [path, bytes, type] of [['u1/media/doc.pdf', pdf(), 'application/pdf'], ['u1/media/tone.wav', wav(), 'audio/wav']]) {
    response = await api('POST', `/object/console-shared/${path}`, SERVICE_KEY, bytes, { 'Content-Type': type });
    assert.equal(response.status, 200, await response.text());
  }

  // Served under /storage/v1 too: the console then calls the API under that prefix.
  const { page, problems } = await openConsole('/storage/v1/console/');
  await signIn(page, USER1_KEY, 'authenticated (u1)');
  // The bucket is private: RLS hides it from the list, but it can be opened by id.
  assert.equal(await page.locator('#bucket-list button[data-bucket="console-shared"]').count(), 0);
  await page.fill('#open-bucket-id', 'console-shared');
  await page.click('#open-bucket-form button[type="submit"]');
  await page.waitForSelector('tr[data-folder="u1/"]');
  assert.equal(await page.locator('tr[data-folder="u2/"]').count(), 0);
  await page.click('tr[data-folder="u1/"] button');
  await page.click('tr[data-object="u1/mine.txt"] button');
  await page.locator('#preview-text', { hasText: 'only u1 reads this' }).waitFor();
  await page.waitForFunction(() => document.querySelector('dd[data-field="Owner"]')?.textContent === '(none)');
  await shot(page, '07-user-own-folder');

  // PDF and audio previews, from blob: URLs that the CSP lets through.
  await page.click('tr[data-folder="u1/media/"] button');
  await page.click('tr[data-object="u1/media/doc.pdf"] button');
  await page.waitForSelector('#preview-pdf');
  assert.match(await page.getAttribute('#preview-pdf', 'src'), /^blob:/);
  // Chromium's PDF viewer (an extension page) loads inside the blob frame.
  for (let tries = 0; !page.frames().some((f) => f.url().startsWith('chrome-extension://')); tries += 1) {
    assert.ok(tries < 100, `no PDF viewer in the frame: ${page.frames().map((f) => f.url())}`);
    await page.waitForTimeout(100);
  }
  await shot(page, '07a-user-pdf');
  await page.click('tr[data-object="u1/media/tone.wav"] button');
  await page.waitForFunction(() => {
    const audio = document.getElementById('preview-audio');
    return audio && audio.readyState >= 1 && Math.abs(audio.duration - 0.5) < 0.05;
  });
  await shot(page, '07b-user-audio');
  await page.click('#breadcrumbs button >> nth=1');

  // Cursor pages: ten entries, then the last two, and back.
  await page.click('tr[data-folder="u1/page/"] button');
  await page.selectOption('#page-size', '10');
  const names = () => page.$$eval('tr[data-object]', (rows) => rows.map((row) => row.dataset.object));
  await page.waitForFunction(() => document.querySelectorAll('tr[data-object]').length === 10);
  assert.deepEqual(await names(), Array.from({ length: 10 }, (_, n) => `u1/page/f${String(n).padStart(2, '0')}.txt`));
  assert.equal(await page.isDisabled('#page-prev'), true);
  await page.click('#page-next');
  await page.waitForFunction(() => document.querySelectorAll('tr[data-object]').length === 2);
  assert.deepEqual(await names(), ['u1/page/f10.txt', 'u1/page/f11.txt']);
  assert.equal(await page.isDisabled('#page-next'), true);
  await page.click('#page-prev');
  await page.waitForFunction(() => document.querySelectorAll('tr[data-object]').length === 10);
  assert.match(await page.textContent('#page-number'), /page 1/);

  // An upload outside their folder is refused, and the refusal is shown.
  await page.click('#breadcrumbs button >> nth=0');
  await page.setInputFiles('#file-input', { name: 'stray.txt', mimeType: 'text/plain', buffer: Buffer.from('x') });
  await page.locator('.message.error', { hasText: '403' }).waitFor();

  await page.click('#nav .tab[data-view="policy"]');
  await page.waitForSelector('#policy-not-service:not([hidden])');
  await page.locator('#policy-form input[name="bucket"]').fill('console-shared');
  await page.click('#policy-submit');
  await page.locator('#policy-error', { hasText: '403' }).waitFor();
  assert.match(await page.textContent('#policy-error'), /service_role/);
  await shot(page, '08-user-policy-refused');
  assert.deepEqual(problems, []);
  await page.close();
});

test('anon: public buckets only, reads what the public-read policy allows; bad keys are refused', async () => {
  let response = await api('POST', '/bucket', SERVICE_KEY, { name: 'console-readable', public: true });
  assert.equal(response.status, 200, await response.text());
  response = await api('POST', '/object/console-readable/hello.txt', SERVICE_KEY, 'hello, anyone', {
    'Content-Type': 'text/plain',
  });
  assert.equal(response.status, 200, await response.text());

  const { page, problems } = await openConsole();
  // Not a JWT: refused before any request.
  await page.fill('#sign-in-key', 'not-a-token');
  await page.click('#sign-in');
  await page.locator('.message.error', { hasText: 'not a JWT' }).waitFor();
  // A JWT the server does not accept (wrong signature): its refusal is shown, no session starts.
  const [head, claims] = SERVICE_KEY.split('.');
  await page.fill('#sign-in-key', `${head}.${claims}.AAAA`);
  await page.click('#sign-in');
  await page.locator('.message.error', { hasText: /^Signing in: 4\d\d/ }).waitFor();
  assert.equal(await page.isVisible('#sign-in-view'), true);

  await page.click('#sign-in-anon');
  await page.waitForFunction(() => document.getElementById('whoami').textContent.includes('anon'));
  // The public bucket is listed (the shipped policy), the private ones are not.
  await page.waitForSelector('#bucket-list button[data-bucket="console-readable"]');
  assert.equal(await page.locator('#bucket-list button[data-bucket="console-photos"]').count(), 0);
  await page.click('#bucket-list button[data-bucket="console-readable"]');
  await page.click('tr[data-object="hello.txt"] button');
  await page.locator('#preview-text', { hasText: 'hello, anyone' }).waitFor();
  // Writing is another matter.
  await page.setInputFiles('#file-input', { name: 'graffiti.txt', mimeType: 'text/plain', buffer: Buffer.from('x') });
  await page.locator('.message.error', { hasText: /Uploading graffiti\.txt: 4\d\d/ }).waitFor();
  const refused = page.locator('#uploads li[data-upload="graffiti.txt"]');
  assert.equal(await refused.locator('.upload-status').textContent(), 'failed');
  assert.equal(await refused.locator('progress').evaluate((bar) => bar.value), 0);
  await shot(page, '09-anon');
  assert.deepEqual(problems, []);
  await page.close();
});

test('a resumable upload whose chunk is cut off resumes from the offset the server reports', async () => {
  const { page, problems } = await openConsole();
  await signIn(page, SERVICE_KEY, 'service_role');
  await page.click('#bucket-list button[data-bucket="console-photos"]');
  await page.waitForSelector('#bucket-title:text("console-photos")');
  // Fail the second PATCH as a dropped connection would; let everything else through.
  const seen = [];
  await page.route('**/upload/resumable/**', async (route) => {
    const request = route.request();
    seen.push(`${request.method()} ${request.headers()['upload-offset'] ?? ''}`);
    if (request.method() === 'PATCH' && seen.filter((s) => s.startsWith('PATCH')).length === 2) {
      await route.abort('connectionreset');
      return;
    }
    await route.continue();
  });
  const size = 13 * 1024 * 1024;
  const chunk = 6 * 1024 * 1024;
  await page.evaluate((size) => {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 1) bytes[i] = (i * 7) % 251;
    const transfer = new DataTransfer();
    transfer.items.add(new File([bytes], 'resumed.bin', { type: 'application/octet-stream' }));
    document.getElementById('dropzone').dispatchEvent(new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, size);
  await page
    .locator('#uploads li[data-upload="resumed.bin"] .upload-status', { hasText: '100%' })
    .waitFor({ timeout: 90_000 });
  // The cut-off chunk is asked about (HEAD) and sent again from the durable offset.
  assert.deepEqual(seen, [`PATCH 0`, `PATCH ${chunk}`, 'HEAD ', `PATCH ${chunk}`, `PATCH ${2 * chunk}`]);
  const stored = await api('GET', '/object/authenticated/console-photos/resumed.bin', SERVICE_KEY);
  assert.equal(stored.status, 200);
  assert.equal(sha256(Buffer.from(await stored.arrayBuffer())), sha256(patternBytes(size)));
  assert.deepEqual(problems, []);
  await page.close();
});

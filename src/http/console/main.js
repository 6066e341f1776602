// Wires the views together: sign-in and sign-out, the tabs, and the shared context that the
// views read (the API client, the open bucket and folder, the selected object).

import { Api } from './api.js';
import { initBrowser } from './browser.js';
import { initBuckets, loadBuckets, markCurrent } from './buckets.js';
import { initObject } from './object.js';
import { initPolicy } from './policy.js';
import { claimsOf, describe, forget, remember, savedKey } from './session.js';
import { $, fail } from './ui.js';
import { initUpload } from './upload.js';

const ctx = {
  api: null,
  claims: null,
  bucket: null,
  prefix: '',
  selected: null,
  onSignIn: [],
};

ctx.openBucket = (id) => {
  ctx.bucket = id;
  ctx.closeObject();
  markCurrent(id);
  $('no-bucket').hidden = true;
  $('bucket-open').hidden = false;
  $('bucket-edit-form').hidden = true;
  $('bucket-title').textContent = id;
  $('uploads').replaceChildren();
  return ctx.browse('');
};

ctx.closeBucket = () => {
  ctx.bucket = null;
  ctx.closeObject();
  $('no-bucket').hidden = false;
  $('bucket-open').hidden = true;
};

function showView(name) {
  for (const view of ['sign-in', 'files', 'policy']) $(`${view}-view`).hidden = view !== name;
  for (const tab of document.querySelectorAll('#nav .tab')) {
    tab.setAttribute('aria-pressed', String(tab.dataset.view === name));
  }
}

/** Checks the key against the server (a bucket listing) before keeping it. */
async function signIn(key) {
  let claims;
  try {
    claims = claimsOf(key);
  } catch (error) {
    fail(error, 'Signing in');
    return false;
  }
  const api = new Api(key);
  try {
    await api.listBuckets();
  } catch (error) {
    // 401/403 here mean the server does not accept the key; anything else is worth showing too.
    fail(error, 'Signing in');
    return false;
  }
  ctx.api = api;
  ctx.claims = claims;
  $('messages').replaceChildren();
  remember(key);
  $('whoami').textContent = `Signed in as ${describe(claims)}`;
  $('identity').hidden = false;
  $('nav').hidden = false;
  ctx.closeBucket();
  for (const listener of ctx.onSignIn) listener(claims);
  showView('files');
  await loadBuckets(ctx);
  return true;
}

function signOut() {
  forget();
  $('messages').replaceChildren();
  ctx.api = null;
  ctx.claims = null;
  ctx.closeBucket();
  $('bucket-list').replaceChildren();
  $('identity').hidden = true;
  $('nav').hidden = true;
  $('sign-in-key').value = '';
  showView('sign-in');
}

initBrowser(ctx);
initObject(ctx);
initBuckets(ctx);
initUpload(ctx);
initPolicy(ctx);

$('sign-in-form').addEventListener('submit', async (event) => {
  event.preventDefault();
  const key = $('sign-in-key').value.trim();
  if (!key) {
    fail(new Error('paste a key or token, or continue as anon'));
    return;
  }
  await signIn(key);
});
$('sign-in-anon').addEventListener('click', () => signIn(''));
$('sign-out').addEventListener('click', signOut);
for (const tab of document.querySelectorAll('#nav .tab')) {
  tab.addEventListener('click', () => showView(tab.dataset.view));
}

const saved = savedKey();
if (saved !== null) {
  signIn(saved).then((ok) => ok || signOut());
} else {
  showView('sign-in');
}
document.body.dataset.ready = 'true';

// tus-js-client, configured as Supabase documents it, against a live pgstorage. Driven by
// tests/resumable_clients.rs, which starts the servers (and kills one, or cuts connections, in
// the middle); run as `node tus/tus.mjs <scenario>`. Exits non-zero with the reason on failure.
//
// Environment: PGSTORAGE_URL (where the client uploads: a server, or a proxy in front of two),
// PGSTORAGE_DIRECT_URL (a server, for setup and checks), the keys of tests/clients.rs.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import * as tus from 'tus-js-client'

const env = (name) => {
  const value = process.env[name]
  if (!value) throw new Error(`${name} is not set: run through tests/resumable_clients.rs`)
  return value.replace(/\/+$/, '')
}
const url = env('PGSTORAGE_URL')
const direct = process.env.PGSTORAGE_DIRECT_URL?.replace(/\/+$/, '') ?? url
const serviceKey = env('PGSTORAGE_SERVICE_KEY')
const user1Key = env('PGSTORAGE_USER1_KEY')
const MiB = 1024 * 1024

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

async function rest(method, path, key, body) {
  const response = await fetch(`${direct}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await response.text()
  let json
  try {
    json = JSON.parse(text)
  } catch {
    json = text
  }
  return { status: response.status, json }
}

async function createBucket(name, options = {}) {
  const { status, json } = await rest('POST', '/bucket', serviceKey, { name, ...options })
  assert.equal(status, 200, JSON.stringify(json))
}

async function download(bucket, name) {
  const response = await fetch(`${direct}/object/authenticated/${bucket}/${name}`, {
    headers: { authorization: `Bearer ${serviceKey}` },
  })
  assert.equal(response.status, 200, `downloading ${bucket}/${name}`)
  return Buffer.from(await response.arrayBuffer())
}

/** Uploads `data` the way Supabase's documentation does; resolves with the upload URL. */
function upload(data, { bucket, name, key = serviceKey, headers = {}, endpoint, onProgress, extra = {} }) {
  return new Promise((resolve, reject) => {
    const u = new tus.Upload(data, {
      endpoint: endpoint ?? `${url}/storage/v1/upload/resumable`,
      // Long enough to outlast a server restart.
      retryDelays: [0, 300, 500, 1000, 1000, 2000, 2000, 3000, 3000, 5000, 5000, 5000],
      headers: { authorization: `Bearer ${key}`, 'x-upsert': 'true', ...headers },
      uploadDataDuringCreation: true,
      removeFingerprintOnSuccess: true,
      metadata: {
        bucketName: bucket,
        objectName: name,
        contentType: 'application/octet-stream',
        cacheControl: '3600',
      },
      chunkSize: 6 * MiB,
      onError: reject,
      onProgress,
      onSuccess: () => resolve(u.url),
      ...extra,
    })
    u.start()
  })
}

/** The HTTP status of a failed upload. */
function statusOf(error) {
  return error?.originalResponse?.getStatus?.()
}

const scenarios = {
  // 50 MiB in 6 MiB chunks, every request on a new connection (the proxy in front alternates
  // them between two servers and cuts one mid-chunk), or a server killed while it runs.
  async big() {
    const bucket = `tus-${randomBytes(4).toString('hex')}`
    await createBucket(bucket)
    const data = randomBytes(50 * MiB)
    const location = await upload(data, {
      bucket,
      name: 'dir/big.bin',
      headers: { connection: 'close' },
    })
    assert.match(location, /\/storage\/v1\/upload\/resumable\/[A-Za-z0-9_-]+$/)
    const got = await download(bucket, 'dir/big.bin')
    assert.equal(got.length, data.length)
    assert.equal(sha256(got), sha256(data), 'the object is the file')
    console.log(`uploaded 50 MiB to ${location}`)
  },

  // Signed uploads, RLS, bucket limits, termination.
  async rules() {
    const bucket = `tus-${randomBytes(4).toString('hex')}`
    await createBucket(bucket)
    const small = `tus-small-${randomBytes(4).toString('hex')}`
    await createBucket(small, { file_size_limit: 1000, allowed_mime_types: ['image/png'] })

    // A signed upload URL made by user1 for their folder; the upload needs no credentials.
    const signed = await rest('POST', `/object/upload/sign/${bucket}/u1/signed.bin`, user1Key)
    assert.equal(signed.status, 200, JSON.stringify(signed.json))
    const data = randomBytes(3 * MiB)
    await upload(data, {
      bucket,
      name: 'u1/signed.bin',
      key: 'unused',
      endpoint: `${url}/storage/v1/upload/resumable/sign`,
      headers: { 'x-signature': signed.json.token, authorization: '' },
      extra: { chunkSize: 1 * MiB },
    })
    assert.equal(sha256(await download(bucket, 'u1/signed.bin')), sha256(data))

    // RLS: user1 may not start an upload in user2's folder.
    const refused = await upload(randomBytes(10), { bucket, name: 'u2/x.bin', key: user1Key, extra: { retryDelays: [] } })
      .then(() => null, (e) => e)
    assert.equal(statusOf(refused), 403, String(refused))
    await upload(randomBytes(10), { bucket, name: 'u1/x.bin', key: user1Key })

    // Bucket limits: size from Upload-Length (413), MIME type at creation (415).
    const tooBig = await upload(randomBytes(1001), { bucket: small, name: 'a.png', extra: { retryDelays: [], metadata: { bucketName: small, objectName: 'a.png', contentType: 'image/png' } } })
      .then(() => null, (e) => e)
    assert.equal(statusOf(tooBig), 413, String(tooBig))
    const wrongType = await upload(randomBytes(10), { bucket: small, name: 'a.txt', extra: { retryDelays: [], metadata: { bucketName: small, objectName: 'a.txt', contentType: 'text/plain' } } })
      .then(() => null, (e) => e)
    assert.equal(statusOf(wrongType), 415, String(wrongType))

    // Termination: abort(true) deletes the upload; its URL is gone.
    const started = await new Promise((resolve, reject) => {
      const u = new tus.Upload(randomBytes(4 * MiB), {
        endpoint: `${url}/storage/v1/upload/resumable`,
        headers: { authorization: `Bearer ${serviceKey}` },
        metadata: { bucketName: bucket, objectName: 'aborted.bin' },
        chunkSize: 1 * MiB,
        onError: reject,
        onChunkComplete: () => {
          if (u.url) {
            u.abort(true).then(() => resolve(u.url), reject)
          }
        },
      })
      u.start()
    })
    const head = await fetch(started, {
      method: 'HEAD',
      headers: { authorization: `Bearer ${serviceKey}`, 'tus-resumable': '1.0.0' },
    })
    assert.equal(head.status, 404)
    console.log('signed, RLS, limits, termination: ok')
  },
}

const name = process.argv[2]
if (!scenarios[name]) {
  console.error(`usage: node tus/tus.mjs ${Object.keys(scenarios).join('|')}`)
  process.exit(2)
}
try {
  await scenarios[name]()
} catch (error) {
  console.error(error)
  process.exit(1)
}

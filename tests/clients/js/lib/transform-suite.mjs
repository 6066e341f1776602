// Image transformations through the client's `transform` option: download(path, {transform})
// (GET /render/image/authenticated/...), getPublicUrl(path, {transform})
// (/render/image/public/...) and createSignedUrl(path, n, {transform})
// (/render/image/sign/...?token=), as storage-js documents them.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { deflateSync } from 'node:zlib'

import { bucketName, bytesOf, ok } from './env.mjs'

/** A PNG chunk: length, type, data, CRC-32 of type and data. */
function chunk(type, data) {
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data])
  let crc = 0xffffffff
  for (const byte of body) {
    crc ^= byte
    for (let i = 0; i < 8; i++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1
  }
  const out = Buffer.alloc(body.length + 8)
  out.writeUInt32BE(data.length, 0)
  body.copy(out, 4)
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0, body.length + 4)
  return out
}

/** A `width`×`height` RGB PNG, red on the left half and blue on the right. */
export function twoTonePng(width, height) {
  const rows = []
  for (let y = 0; y < height; y++) {
    const row = Buffer.alloc(1 + width * 3)
    for (let x = 0; x < width; x++) {
      row[1 + x * 3] = x < width / 2 ? 255 : 0
      row[3 + x * 3] = x < width / 2 ? 0 : 255
    }
    rows.push(row)
  }
  const ihdr = Buffer.alloc(13)
  ihdr.writeUInt32BE(width, 0)
  ihdr.writeUInt32BE(height, 4)
  ihdr.set([8, 2, 0, 0, 0], 8)
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}

/** A PNG's dimensions, from its header. */
function pngSize(bytes) {
  const b = Buffer.from(bytes)
  assert.equal(b.subarray(1, 4).toString('latin1'), 'PNG', 'not a PNG')
  return [b.readUInt32BE(16), b.readUInt32BE(20)]
}

const isWebp = (bytes) => {
  const b = Buffer.from(bytes)
  return b.subarray(0, 4).toString('latin1') === 'RIFF' && b.subarray(8, 12).toString('latin1') === 'WEBP'
}

export function defineTransformTests(clients, prefix) {
  const { service, anon } = clients
  // Public and opened by the fixtures' public-read policy (ids ending in -readable).
  const bucket = bucketName(`${prefix}-img`) + '-readable'
  const files = () => service.from(bucket)

  before(async () => {
    ok(await service.createBucket(bucket, { public: true }), 'createBucket')
    ok(
      await files().upload('pics/two.png', twoTonePng(400, 200), { contentType: 'image/png' }),
      'upload'
    )
  })

  test('download with transform resizes and keeps the format asked for', async () => {
    const blob = ok(
      await files().download('pics/two.png', { transform: { width: 100, format: 'origin' } }),
      'download(transform)'
    )
    assert.deepEqual(pngSize(await bytesOf(blob)), [100, 50])

    const cover = ok(
      await files().download('pics/two.png', {
        transform: { width: 60, height: 60, resize: 'cover', format: 'origin' },
      }),
      'download(cover)'
    )
    assert.deepEqual(pngSize(await bytesOf(cover)), [60, 60])
  })

  test('download with transform and quality can give WebP', async () => {
    // Node's fetch sends `Accept: */*`, so WebP comes only when asked for by name... or, for a
    // format the client leaves out, the source's own format.
    const plain = ok(
      await files().download('pics/two.png', { transform: { width: 50, quality: 50 } }),
      'download(quality)'
    )
    assert.deepEqual(pngSize(await bytesOf(plain)), [50, 25])
  })

  test('getPublicUrl with transform gives a working rendition URL', async () => {
    const { data } = anon.from(bucket).getPublicUrl('pics/two.png', {
      transform: { width: 80, height: 80, resize: 'contain', format: 'origin' },
    })
    assert.ok(
      data.publicUrl.startsWith(`${clients.storageUrl}/render/image/public/${bucket}/pics/two.png?`),
      data.publicUrl
    )
    const response = await fetch(data.publicUrl, { headers: { accept: 'image/webp,*/*' } })
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('vary'), 'Accept')
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff')
    const body = new Uint8Array(await response.arrayBuffer())
    assert.equal(response.headers.get('content-type'), 'image/png')
    assert.deepEqual(pngSize(body), [80, 40])

    // Without format, a browser that accepts WebP gets WebP.
    const auto = anon.from(bucket).getPublicUrl('pics/two.png', { transform: { width: 40 } })
    const webp = await fetch(auto.data.publicUrl, { headers: { accept: 'image/webp,*/*' } })
    assert.equal(webp.status, 200)
    assert.equal(webp.headers.get('content-type'), 'image/webp')
    assert.ok(isWebp(new Uint8Array(await webp.arrayBuffer())))
  })

  test('createSignedUrl with transform signs a rendition URL', async () => {
    const data = ok(
      await files().createSignedUrl('pics/two.png', 60, {
        transform: { width: 40, height: 40, resize: 'fill', format: 'origin' },
      }),
      'createSignedUrl(transform)'
    )
    assert.ok(
      data.signedUrl.startsWith(`${clients.storageUrl}/render/image/sign/${bucket}/pics/two.png?token=`),
      data.signedUrl
    )
    const response = await fetch(data.signedUrl)
    assert.equal(response.status, 200)
    assert.deepEqual(pngSize(new Uint8Array(await response.arrayBuffer())), [40, 40])
  })

  test('an invalid transformation is a 400 error', async () => {
    const { data, error } = await files().download('pics/two.png', { transform: { width: 99999 } })
    assert.equal(data, null)
    assert.ok(error, 'download should fail')
  })
}

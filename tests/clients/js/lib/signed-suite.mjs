// Signed URLs: createSignedUrl(s) (POST /object/sign/...), the signed download itself
// (GET /object/sign/...?token=), createSignedUploadUrl (POST /object/upload/sign/...) and
// uploadToSignedUrl (PUT /object/upload/sign/...?token=), as the storage-js documentation and
// Supabase Storage describe them. A signed URL needs no credentials of its own.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'

import { bucketName, bytesOf, exists, failed, ok, text } from './env.mjs'

/** Fetches a URL with no credentials at all, as a browser given the link would. */
async function fetchBytes(url) {
  const response = await fetch(url)
  const body = new Uint8Array(await response.arrayBuffer())
  return { status: response.status, headers: response.headers, body }
}

export function defineSignedTests(clients, prefix) {
  const { service, anon, user1 } = clients
  const bucket = bucketName(`${prefix}-signed`)
  const files = () => service.from(bucket)

  before(async () => {
    ok(await service.createBucket(bucket), 'createBucket')
    ok(await files().upload('docs/a b.txt', text('signed bytes'), { contentType: 'text/plain' }))
    ok(await files().upload('docs/other.txt', text('other bytes')))
    ok(await files().upload('u2/private.txt', text('u2 only')))
  })

  // -------------------------------------------------------------------------------------------
  // Signed download URLs
  // -------------------------------------------------------------------------------------------

  test('createSignedUrl answers an absolute URL that serves the bytes without credentials', async () => {
    const data = ok(await files().createSignedUrl('docs/a b.txt', 60), 'createSignedUrl')
    assert.ok(
      data.signedUrl.startsWith(`${clients.storageUrl}/object/sign/${bucket}/docs/a%20b.txt?token=`),
      data.signedUrl
    )
    const { status, headers, body } = await fetchBytes(data.signedUrl)
    assert.equal(status, 200)
    assert.deepEqual(body, text('signed bytes'))
    assert.equal(headers.get('content-type'), 'text/plain')
  })

  test('createSignedUrl with download sets Content-Disposition: attachment', async () => {
    const plain = ok(
      await files().createSignedUrl('docs/a b.txt', 60, { download: true }),
      'createSignedUrl(download)'
    )
    assert.match(plain.signedUrl, /\?token=[^&]+&download=$/)
    const response = await fetchBytes(plain.signedUrl)
    assert.equal(response.status, 200)
    assert.match(response.headers.get('content-disposition'), /^attachment;.*a b\.txt/)

    const named = ok(
      await files().createSignedUrl('docs/a b.txt', 60, { download: 'renamed.txt' }),
      'createSignedUrl(download name)'
    )
    const renamed = await fetchBytes(named.signedUrl)
    assert.match(renamed.headers.get('content-disposition'), /^attachment;.*renamed\.txt/)
  })

  test('createSignedUrl of a missing object is a 404 error', async () => {
    const error = failed(await files().createSignedUrl('docs/none.txt', 60), 'createSignedUrl')
    assert.equal(error.statusCode, '404')
    assert.equal(error.code, 'NoSuchKey')
  })

  test('a signed URL is bound to its path and refuses a forged token', async () => {
    const data = ok(await files().createSignedUrl('docs/a b.txt', 60), 'createSignedUrl')
    const token = new URL(data.signedUrl).searchParams.get('token')

    const elsewhere = `${clients.storageUrl}/object/sign/${bucket}/docs/other.txt?token=${token}`
    const wrongPath = await fetchBytes(elsewhere)
    assert.ok(wrongPath.status >= 400 && wrongPath.status < 500, `status ${wrongPath.status}`)

    const forged = data.signedUrl.replace(/token=([^&]+)/, (_, t) => `token=${t.slice(0, -2)}xx`)
    const bad = await fetchBytes(forged)
    assert.ok(bad.status >= 400 && bad.status < 500, `status ${bad.status}`)
    const body = JSON.parse(new TextDecoder().decode(bad.body))
    assert.equal(typeof body.statusCode, 'string')
    assert.ok(body.message, JSON.stringify(body))
  })

  test('a signed URL stops working once it expires', async () => {
    const data = ok(await files().createSignedUrl('docs/other.txt', 1), 'createSignedUrl(1 s)')
    await sleep(2100)
    const { status } = await fetchBytes(data.signedUrl)
    assert.ok(status >= 400 && status < 500, `status ${status}`)
  })

  test('createSignedUrls signs many paths in order, with an error for a missing one', async () => {
    const data = ok(
      await files().createSignedUrls(['docs/a b.txt', 'docs/none.txt', 'docs/other.txt'], 60),
      'createSignedUrls'
    )
    assert.deepEqual(
      data.map((d) => d.path),
      ['docs/a b.txt', 'docs/none.txt', 'docs/other.txt']
    )
    assert.equal(data[0].error, null)
    assert.equal(data[2].error, null)
    assert.equal(typeof data[1].error, 'string')
    assert.equal(data[1].signedURL, null)
    assert.equal(data[1].signedUrl, null)
    assert.deepEqual((await fetchBytes(data[0].signedUrl)).body, text('signed bytes'))
    assert.deepEqual((await fetchBytes(data[2].signedUrl)).body, text('other bytes'))

    const downloads = ok(
      await files().createSignedUrls(['docs/other.txt'], 60, { download: true }),
      'createSignedUrls(download)'
    )
    const response = await fetchBytes(downloads[0].signedUrl)
    assert.match(response.headers.get('content-disposition'), /^attachment;/)
  })

  test('signing goes through Row Level Security: a user cannot sign another user\'s file', async () => {
    const error = failed(
      await user1.from(bucket).createSignedUrl('u2/private.txt', 60),
      'createSignedUrl as u1'
    )
    assert.equal(error.statusCode, '404')
    assert.equal(error.code, 'NoSuchKey')
    const many = ok(
      await user1.from(bucket).createSignedUrls(['u2/private.txt'], 60),
      'createSignedUrls as u1'
    )
    assert.equal(many[0].signedUrl, null)
    assert.equal(typeof many[0].error, 'string')
  })

  // -------------------------------------------------------------------------------------------
  // Signed upload URLs
  // -------------------------------------------------------------------------------------------

  test('createSignedUploadUrl + uploadToSignedUrl upload without credentials', async () => {
    const signed = ok(await files().createSignedUploadUrl('up/new.txt'), 'createSignedUploadUrl')
    assert.equal(signed.path, 'up/new.txt')
    assert.ok(signed.token)
    assert.ok(
      signed.signedUrl.startsWith(`${clients.storageUrl}/object/upload/sign/${bucket}/up/new.txt?token=`),
      signed.signedUrl
    )

    // Anyone holding the token may upload, even with the anon key.
    const uploaded = ok(
      await anon
        .from(bucket)
        .uploadToSignedUrl('up/new.txt', signed.token, text('via token'), { contentType: 'text/csv' }),
      'uploadToSignedUrl'
    )
    assert.deepEqual(uploaded, { path: 'up/new.txt', fullPath: `${bucket}/up/new.txt` })
    assert.deepEqual(await bytesOf(ok(await files().download('up/new.txt'))), text('via token'))
    assert.equal(ok(await files().info('up/new.txt')).contentType, 'text/csv')

    // The token did not ask for upsert: a second upload is a duplicate.
    const again = failed(
      await anon.from(bucket).uploadToSignedUrl('up/new.txt', signed.token, text('again')),
      'uploadToSignedUrl(again)'
    )
    assert.equal(again.statusCode, '409')
    assert.deepEqual(await bytesOf(ok(await files().download('up/new.txt'))), text('via token'))
  })

  test('a signed upload URL made with upsert replaces an existing object', async () => {
    ok(await files().upload('up/replace.txt', text('old')), 'upload')
    const signed = ok(
      await files().createSignedUploadUrl('up/replace.txt', { upsert: true }),
      'createSignedUploadUrl(upsert)'
    )
    const blob = new Blob([text('new via multipart')], { type: 'text/markdown' })
    ok(
      await anon.from(bucket).uploadToSignedUrl('up/replace.txt', signed.token, blob),
      'uploadToSignedUrl(Blob)'
    )
    assert.deepEqual(
      await bytesOf(ok(await files().download('up/replace.txt'))),
      text('new via multipart')
    )
    assert.equal(ok(await files().info('up/replace.txt')).contentType, 'text/markdown')
  })

  test('a signed upload token is bound to its path', async () => {
    const signed = ok(await files().createSignedUploadUrl('up/bound.txt'), 'createSignedUploadUrl')
    const error = failed(
      await anon.from(bucket).uploadToSignedUrl('up/elsewhere.txt', signed.token, text('x')),
      'uploadToSignedUrl(other path)'
    )
    assert.ok(Number(error.statusCode) >= 400 && Number(error.statusCode) < 500, error.statusCode)
    assert.equal(await exists(files(), 'up/elsewhere.txt'), false)
  })

  test('createSignedUploadUrl checks the caller\'s insert policy now', async () => {
    const mine = ok(
      await user1.from(bucket).createSignedUploadUrl('u1/by-token.txt'),
      'createSignedUploadUrl as u1 in u1/'
    )
    ok(
      await anon.from(bucket).uploadToSignedUrl('u1/by-token.txt', mine.token, text('mine')),
      'uploadToSignedUrl(u1 token)'
    )
    assert.equal(await exists(user1.from(bucket), 'u1/by-token.txt'), true)

    const denied = failed(
      await user1.from(bucket).createSignedUploadUrl('u2/by-token.txt'),
      'createSignedUploadUrl as u1 in u2/'
    )
    assert.equal(denied.statusCode, '403')
    const anonymous = failed(
      await anon.from(bucket).createSignedUploadUrl('anon.txt'),
      'createSignedUploadUrl as anon'
    )
    assert.equal(anonymous.statusCode, '403')
  })
}

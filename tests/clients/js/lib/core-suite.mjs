// Every bucket and object method of storage-js's StorageClient, against a live pgstorage, each
// checked for what the client's documentation promises. Shared by the storage-js suite (the
// client built by hand) and the supabase-js suite (`createClient(...).storage`), which hand in
// one client per identity.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'

import { bucketName, bytesOf, exists, failed, ok, text } from './env.mjs'

/**
 * @param {object} clients StorageClient instances: `service` (service_role), `anon`, `user1`
 *   (sub 'u1') and `user2` (sub 'u2').
 * @param {string} prefix Bucket id prefix for this file.
 */
export function defineCoreTests(clients, prefix) {
  const { service, anon, user1, user2 } = clients
  const privateBucket = bucketName(`${prefix}-private`)
  // Public, and opened to anon by the fixture's objects_public_read policy.
  const readableBucket = `${bucketName(`${prefix}-public`)}-readable`
  // Public too, but no policy lets anyone read its objects.
  const closedBucket = bucketName(`${prefix}-public-closed`)
  const files = () => service.from(privateBucket)

  before(async () => {
    ok(await service.createBucket(privateBucket), 'createBucket(private)')
    ok(await service.createBucket(readableBucket, { public: true }), 'createBucket(readable)')
    ok(await service.createBucket(closedBucket, { public: true }), 'createBucket(closed)')
  })

  // -------------------------------------------------------------------------------------------
  // Buckets
  // -------------------------------------------------------------------------------------------

  test('createBucket answers the name; getBucket answers the whole bucket', async () => {
    const id = bucketName(`${prefix}-made`)
    const created = ok(
      await service.createBucket(id, {
        public: false,
        fileSizeLimit: '1mb',
        allowedMimeTypes: ['image/png', 'text/plain'],
      }),
      'createBucket'
    )
    assert.deepEqual(created, { name: id })

    const bucket = ok(await service.getBucket(id), 'getBucket')
    assert.equal(bucket.id, id)
    assert.equal(bucket.name, id)
    assert.equal(bucket.public, false)
    assert.equal(bucket.owner, '', 'no sub in the service key: owner is ""')
    assert.equal(bucket.file_size_limit, 1_000_000)
    assert.deepEqual(bucket.allowed_mime_types, ['image/png', 'text/plain'])
    assert.ok(!Number.isNaN(Date.parse(bucket.created_at)), bucket.created_at)
    assert.ok(!Number.isNaN(Date.parse(bucket.updated_at)), bucket.updated_at)
  })

  test('createBucket of an existing id is a 409 error', async () => {
    const error = failed(await service.createBucket(privateBucket), 'createBucket(duplicate)')
    assert.equal(error.name, 'StorageApiError')
    assert.equal(error.statusCode, '409')
    assert.equal(error.status, 409)
    assert.equal(error.code, 'BucketAlreadyExists')
  })

  test('getBucket of a missing bucket is a 404 error', async () => {
    const error = failed(await service.getBucket(`${prefix}-no-such-bucket`), 'getBucket')
    assert.equal(error.statusCode, '404')
    assert.equal(error.code, 'NoSuchBucket')
  })

  test('listBuckets lists the buckets, with search, sort and limit', async () => {
    const all = ok(await service.listBuckets(), 'listBuckets')
    const ids = all.map((b) => b.id)
    for (const id of [privateBucket, readableBucket, closedBucket]) {
      assert.ok(ids.includes(id), `${id} in ${ids}`)
    }
    const readable = all.find((b) => b.id === readableBucket)
    assert.equal(readable.public, true)
    assert.equal(readable.owner, '')

    const found = ok(
      await service.listBuckets({ search: `${prefix}-public`, sortColumn: 'name', sortOrder: 'desc' }),
      'listBuckets(search)'
    )
    const foundIds = found.map((b) => b.id)
    assert.ok(foundIds.includes(readableBucket) && foundIds.includes(closedBucket), `${foundIds}`)
    assert.ok(!foundIds.includes(privateBucket), `${foundIds}`)
    assert.deepEqual(foundIds, [...foundIds].sort().reverse(), 'sorted by name, descending')

    const one = ok(await service.listBuckets({ limit: 1, offset: 0 }), 'listBuckets(limit)')
    assert.equal(one.length, 1)
  })

  test('listBuckets as anon shows the public buckets only (buckets_public_read policy)', async () => {
    const ids = ok(await anon.listBuckets(), 'listBuckets(anon)').map((b) => b.id)
    assert.ok(ids.includes(readableBucket) && ids.includes(closedBucket), `${ids}`)
    assert.ok(!ids.includes(privateBucket), `${ids}`)
  })

  test('updateBucket changes public, the size limit and the mime types', async () => {
    const id = bucketName(`${prefix}-upd`)
    ok(await service.createBucket(id), 'createBucket')
    const answer = ok(
      await service.updateBucket(id, {
        public: true,
        fileSizeLimit: 2048,
        allowedMimeTypes: ['text/plain'],
      }),
      'updateBucket'
    )
    assert.deepEqual(answer, { message: 'Successfully updated' })
    let bucket = ok(await service.getBucket(id), 'getBucket')
    assert.equal(bucket.public, true)
    assert.equal(bucket.file_size_limit, 2048)
    assert.deepEqual(bucket.allowed_mime_types, ['text/plain'])

    ok(
      await service.updateBucket(id, { public: false, fileSizeLimit: null, allowedMimeTypes: null }),
      'updateBucket(clear)'
    )
    bucket = ok(await service.getBucket(id), 'getBucket')
    assert.equal(bucket.public, false)
    assert.equal(bucket.file_size_limit, null)
    assert.equal(bucket.allowed_mime_types, null)

    const error = failed(
      await service.updateBucket(`${prefix}-no-such-bucket`, { public: true }),
      'updateBucket(missing)'
    )
    assert.equal(error.statusCode, '404')
  })

  test('a bucket size limit refuses a larger upload with 413', async () => {
    const id = bucketName(`${prefix}-small`)
    ok(await service.createBucket(id, { public: false, fileSizeLimit: 10 }), 'createBucket')
    ok(await service.from(id).upload('fits.txt', text('0123456789')), 'upload(10 bytes)')
    const error = failed(
      await service.from(id).upload('too-big.txt', text('0123456789a')),
      'upload(11 bytes)'
    )
    assert.equal(error.statusCode, '413')
    assert.equal(error.code, 'EntityTooLarge')
  })

  test('allowed mime types refuse another content type with 415', async () => {
    const id = bucketName(`${prefix}-png`)
    ok(await service.createBucket(id, { public: false, allowedMimeTypes: ['image/png'] }), 'createBucket')
    ok(
      await service.from(id).upload('a.png', text('png'), { contentType: 'image/png' }),
      'upload(image/png)'
    )
    const error = failed(
      await service.from(id).upload('a.jpg', text('jpg'), { contentType: 'image/jpeg' }),
      'upload(image/jpeg)'
    )
    assert.equal(error.statusCode, '415')
    assert.equal(error.code, 'InvalidMimeType')
  })

  test('emptyBucket removes every object; deleteBucket then deletes the bucket', async () => {
    const id = bucketName(`${prefix}-gone`)
    ok(await service.createBucket(id), 'createBucket')
    const bucket = service.from(id)
    ok(await bucket.upload('a.txt', text('a')), 'upload a')
    ok(await bucket.upload('dir/b.txt', text('b')), 'upload b')

    const notEmpty = failed(await service.deleteBucket(id), 'deleteBucket(not empty)')
    assert.equal(notEmpty.statusCode, '409')

    assert.deepEqual(ok(await service.emptyBucket(id), 'emptyBucket'), {
      message: 'Successfully emptied',
    })
    assert.equal(await exists(bucket, 'a.txt'), false)
    assert.equal(await exists(bucket, 'dir/b.txt'), false)
    assert.deepEqual(ok(await service.emptyBucket(id), 'emptyBucket(again)'), {
      message: 'Successfully emptied',
    })

    assert.deepEqual(ok(await service.deleteBucket(id), 'deleteBucket'), {
      message: 'Successfully deleted',
    })
    assert.equal(failed(await service.getBucket(id), 'getBucket').statusCode, '404')
    assert.equal(failed(await service.deleteBucket(id), 'deleteBucket(again)').statusCode, '404')
  })

  // -------------------------------------------------------------------------------------------
  // Upload, update, download, info, exists
  // -------------------------------------------------------------------------------------------

  test('upload (raw bytes) answers id, path and fullPath; options reach the object', async () => {
    const data = ok(
      await files().upload('docs/report.json', text('{"ok":true}'), {
        contentType: 'application/json',
        cacheControl: '60',
        metadata: { author: 'Adà Lovelace', pages: 3 },
      }),
      'upload'
    )
    assert.equal(data.path, 'docs/report.json')
    assert.equal(data.fullPath, `${privateBucket}/docs/report.json`)
    assert.match(data.id, /^[0-9a-f-]{36}$/)

    const info = ok(await files().info('docs/report.json'), 'info')
    assert.equal(info.id, data.id)
    assert.equal(info.name, 'docs/report.json')
    assert.equal(info.bucketId, privateBucket)
    assert.equal(info.size, 11)
    assert.equal(info.contentType, 'application/json')
    assert.equal(info.cacheControl, 'max-age=60')
    assert.deepEqual(info.metadata, { author: 'Adà Lovelace', pages: 3 })
    assert.ok(info.etag, 'an etag')
    assert.ok(!Number.isNaN(Date.parse(info.lastModified)), info.lastModified)
    assert.ok(!Number.isNaN(Date.parse(info.createdAt)), info.createdAt)

    const blob = ok(await files().download('docs/report.json'), 'download')
    assert.deepEqual(await bytesOf(blob), text('{"ok":true}'))
    assert.equal(blob.type, 'application/json')
  })

  test('active content (SVG, HTML) downloads with its bytes and type; a list of types is a 400', async () => {
    for (const [name, type, body] of [
      ['active/logo.svg', 'image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>'],
      ['active/page.html', 'text/html', '<script>alert(1)</script>'],
    ]) {
      ok(await files().upload(name, text(body), { contentType: type }), `upload ${name}`)
      const blob = ok(await files().download(name), `download ${name}`)
      assert.deepEqual(await bytesOf(blob), text(body))
      assert.equal(blob.type, type)
    }
    const bad = failed(
      await files().upload('active/list.png', text('x'), { contentType: 'image/png, text/html' }),
      'upload with a list of types'
    )
    assert.equal(bad.statusCode, '400')
    assert.match(bad.message, /content type/)
  })

  test('upload with defaults: text/plain;charset=UTF-8, max-age=3600, metadata {}', async () => {
    ok(await files().upload('plain.txt', text('hello')), 'upload')
    const info = ok(await files().info('plain.txt'), 'info')
    assert.equal(info.contentType, 'text/plain;charset=UTF-8')
    assert.equal(info.cacheControl, 'max-age=3600')
    assert.deepEqual(info.metadata, {})
  })

  test('upload of a Blob goes as multipart, with cacheControl and metadata fields', async () => {
    const bytes = new Uint8Array(70_000).map((_, i) => (i * 7) % 256)
    const blob = new Blob([bytes], { type: 'application/octet-stream' })
    ok(
      await files().upload('blobs/one.bin', blob, { cacheControl: '120', metadata: { kind: 'blob' } }),
      'upload(Blob)'
    )
    const info = ok(await files().info('blobs/one.bin'), 'info')
    assert.equal(info.size, bytes.length)
    assert.equal(info.contentType, 'application/octet-stream')
    assert.equal(info.cacheControl, 'max-age=120')
    assert.deepEqual(info.metadata, { kind: 'blob' })
    assert.deepEqual(await bytesOf(ok(await files().download('blobs/one.bin'), 'download')), bytes)
  })

  test('a second upload of one path is a 409 Duplicate; upsert replaces it', async () => {
    ok(await files().upload('dup.txt', text('first')), 'upload')
    const error = failed(await files().upload('dup.txt', text('second')), 'upload(again)')
    assert.equal(error.name, 'StorageApiError')
    assert.equal(error.statusCode, '409')
    assert.equal(error.message, 'The resource already exists')
    assert.equal(error.code, 'KeyAlreadyExists')
    assert.deepEqual(await bytesOf(ok(await files().download('dup.txt'))), text('first'))

    const first = ok(await files().info('dup.txt'), 'info')
    const data = ok(
      await files().upload('dup.txt', text('third'), { upsert: true, contentType: 'text/csv' }),
      'upload(upsert)'
    )
    assert.equal(data.id, first.id, 'an upsert keeps the object id')
    assert.deepEqual(await bytesOf(ok(await files().download('dup.txt'))), text('third'))
    assert.equal(ok(await files().info('dup.txt')).contentType, 'text/csv')
  })

  test('update replaces the bytes and options of an existing object', async () => {
    ok(await files().upload('upd/a.txt', text('old bytes')), 'upload')
    const data = ok(
      await files().update('upd/a.txt', text('new'), {
        contentType: 'text/markdown',
        cacheControl: '10',
        metadata: { v: 2 },
      }),
      'update'
    )
    assert.equal(data.path, 'upd/a.txt')
    assert.equal(data.fullPath, `${privateBucket}/upd/a.txt`)
    assert.deepEqual(await bytesOf(ok(await files().download('upd/a.txt'))), text('new'))
    const info = ok(await files().info('upd/a.txt'), 'info')
    assert.equal(info.size, 3)
    assert.equal(info.contentType, 'text/markdown')
    assert.equal(info.cacheControl, 'max-age=10')
    assert.deepEqual(info.metadata, { v: 2 })
  })

  test('download and info of a missing object are 404 errors; exists() is false', async () => {
    const dl = failed(await files().download('nope/missing.txt'), 'download(missing)')
    assert.equal(dl.statusCode, '404')
    assert.equal(dl.status, 404)

    const info = failed(await files().info('nope/missing.txt'), 'info(missing)')
    assert.equal(info.statusCode, '404')
    assert.equal(info.code, 'NoSuchKey')

    const missing = await files().exists('nope/missing.txt')
    assert.equal(missing.data, false)
    assert.equal(missing.error.statusCode, '404', 'exists() hands back the NoSuchKey error')
  })

  test('exists() is true for an object that is there', async () => {
    ok(await files().upload('here.txt', text('x')), 'upload')
    assert.deepEqual(await files().exists('here.txt'), { data: true, error: null })
  })

  test('download of an object in a missing bucket is a 404 error', async () => {
    const error = failed(
      await service.from(`${prefix}-no-such-bucket`).download('a.txt'),
      'download(missing bucket)'
    )
    assert.equal(error.statusCode, '404')
  })

  test('names with spaces and unicode go through upload, info and download', async () => {
    const name = 'folder with space/résumé ü 1.txt'
    ok(await files().upload(name, text('unicode')), 'upload')
    assert.equal(ok(await files().info(name), 'info').name, name)
    assert.deepEqual(await bytesOf(ok(await files().download(name), 'download')), text('unicode'))
    assert.equal(await exists(files(), name), true)
  })

  // -------------------------------------------------------------------------------------------
  // Move, copy, remove
  // -------------------------------------------------------------------------------------------

  test('move renames an object within a bucket and into another bucket', async () => {
    ok(await files().upload('mv/from.txt', text('moving')), 'upload')
    const before = ok(await files().info('mv/from.txt'), 'info')
    assert.deepEqual(ok(await files().move('mv/from.txt', 'mv/to.txt'), 'move'), {
      message: 'Successfully moved',
      Id: before.id,
      Key: 'mv/to.txt',
    })
    assert.equal(await exists(files(), 'mv/from.txt'), false)
    assert.deepEqual(await bytesOf(ok(await files().download('mv/to.txt'))), text('moving'))

    const moved = ok(
      await files().move('mv/to.txt', 'arrived.txt', { destinationBucket: closedBucket }),
      'move(other bucket)'
    )
    assert.equal(moved.message, 'Successfully moved')
    assert.equal(await exists(files(), 'mv/to.txt'), false)
    assert.deepEqual(
      await bytesOf(ok(await service.from(closedBucket).download('arrived.txt'))),
      text('moving')
    )

    const missing = failed(await files().move('mv/none.txt', 'mv/x.txt'), 'move(missing)')
    assert.equal(missing.statusCode, '404')
  })

  test('move onto an existing object is a 409 error', async () => {
    ok(await files().upload('mv2/a.txt', text('a')), 'upload a')
    ok(await files().upload('mv2/b.txt', text('b')), 'upload b')
    const error = failed(await files().move('mv2/a.txt', 'mv2/b.txt'), 'move(onto existing)')
    assert.equal(error.statusCode, '409')
    assert.deepEqual(await bytesOf(ok(await files().download('mv2/b.txt'))), text('b'))
  })

  test('copy answers the new path with its bucket; both objects remain', async () => {
    ok(
      await files().upload('cp/src.txt', text('copied'), { metadata: { tag: 'orig' } }),
      'upload'
    )
    assert.deepEqual(ok(await files().copy('cp/src.txt', 'cp/dst.txt'), 'copy'), {
      path: `${privateBucket}/cp/dst.txt`,
    })
    assert.deepEqual(await bytesOf(ok(await files().download('cp/src.txt'))), text('copied'))
    assert.deepEqual(await bytesOf(ok(await files().download('cp/dst.txt'))), text('copied'))
    assert.deepEqual(ok(await files().info('cp/dst.txt')).metadata, { tag: 'orig' })

    assert.deepEqual(
      ok(
        await files().copy('cp/src.txt', 'copy.txt', { destinationBucket: closedBucket }),
        'copy(other bucket)'
      ),
      { path: `${closedBucket}/copy.txt` }
    )
    assert.equal(await exists(service.from(closedBucket), 'copy.txt'), true)

    const missing = failed(await files().copy('cp/none.txt', 'cp/x.txt'), 'copy(missing)')
    assert.equal(missing.statusCode, '404')
  })

  test('remove deletes many and answers the deleted objects; missing names are skipped', async () => {
    ok(await files().upload('rm/a.txt', text('a')), 'upload a')
    ok(await files().upload('rm/b.txt', text('b')), 'upload b')
    const removed = ok(await files().remove(['rm/a.txt', 'rm/b.txt', 'rm/none.txt']), 'remove')
    assert.deepEqual(removed.map((o) => o.name).sort(), ['rm/a.txt', 'rm/b.txt'])
    for (const object of removed) {
      assert.equal(object.bucket_id, privateBucket)
      assert.match(object.id, /^[0-9a-f-]{36}$/)
    }
    assert.equal(await exists(files(), 'rm/a.txt'), false)
    assert.equal(await exists(files(), 'rm/b.txt'), false)
    assert.deepEqual(ok(await files().remove(['rm/a.txt']), 'remove(again)'), [])
  })

  // -------------------------------------------------------------------------------------------
  // Public URLs: `public` is a flag policies read, not a bypass of Row Level Security
  // -------------------------------------------------------------------------------------------

  test('getPublicUrl of a public bucket with a read policy serves the bytes', async () => {
    const bucket = service.from(readableBucket)
    ok(await bucket.upload('pics/a b.txt', text('public bytes'), { contentType: 'text/plain' }), 'upload')
    const { data } = bucket.getPublicUrl('pics/a b.txt')
    assert.equal(data.publicUrl, `${clients.storageUrl}/object/public/${readableBucket}/pics/a%20b.txt`)

    const response = await fetch(data.publicUrl)
    assert.equal(response.status, 200)
    assert.equal(response.headers.get('content-type'), 'text/plain')
    assert.deepEqual(new Uint8Array(await response.arrayBuffer()), text('public bytes'))

    const download = await fetch(bucket.getPublicUrl('pics/a b.txt', { download: true }).data.publicUrl)
    assert.equal(download.status, 200)
    assert.match(download.headers.get('content-disposition'), /^attachment;.*a b\.txt/)
    await download.arrayBuffer()

    const named = await fetch(bucket.getPublicUrl('pics/a b.txt', { download: 'x.txt' }).data.publicUrl)
    assert.match(named.headers.get('content-disposition'), /^attachment;.*x\.txt/)
    await named.arrayBuffer()

    // The anonymous client reads it through the ordinary route too.
    assert.deepEqual(
      await bytesOf(ok(await anon.from(readableBucket).download('pics/a b.txt'), 'download(anon)')),
      text('public bytes')
    )
  })

  test('getPublicUrl of a public bucket without a read policy answers 404', async () => {
    const bucket = service.from(closedBucket)
    ok(await bucket.upload('secret.txt', text('not for anon')), 'upload')
    const response = await fetch(bucket.getPublicUrl('secret.txt').data.publicUrl)
    assert.equal(response.status, 404)
    const body = await response.json()
    assert.equal(body.statusCode, '404')
    assert.equal(body.code, 'NoSuchKey')
  })

  test('the public route runs as anon even when a service key comes with it', async () => {
    ok(await files().upload('private.txt', text('private')), 'upload')
    const response = await fetch(files().getPublicUrl('private.txt').data.publicUrl, {
      headers: { Authorization: `Bearer ${clients.serviceKey}`, apikey: clients.serviceKey },
    })
    assert.equal(response.status, 404)
    await response.arrayBuffer()
  })

  // -------------------------------------------------------------------------------------------
  // Row Level Security, as the clients see it
  // -------------------------------------------------------------------------------------------

  test('anon upload with no policy allowing it is a 403 error', async () => {
    const error = failed(await anon.from(privateBucket).upload('anon.txt', text('x')), 'upload(anon)')
    assert.equal(error.statusCode, '403')
    assert.equal(error.code, 'AccessDenied')
    assert.equal(await exists(files(), 'anon.txt'), false)
  })

  test('users work in their own folder and cannot see or write another user\'s', async () => {
    const mine = user1.from(privateBucket)
    const data = ok(await mine.upload('u1/notes.txt', text('u1 notes')), 'upload(u1)')
    assert.equal(data.fullPath, `${privateBucket}/u1/notes.txt`)
    assert.deepEqual(await bytesOf(ok(await mine.download('u1/notes.txt'), 'download(u1)')), text('u1 notes'))
    ok(await mine.upload('u1/notes.txt', text('u1 notes v2'), { upsert: true }), 'upsert(u1)')
    ok(await mine.update('u1/notes.txt', text('u1 notes v3')), 'update(u1)')
    assert.equal(ok(await mine.info('u1/notes.txt'), 'info(u1)').size, 11)

    const denied = failed(await mine.upload('u2/intruder.txt', text('x')), 'upload(u1 into u2)')
    assert.equal(denied.statusCode, '403')

    const theirs = user2.from(privateBucket)
    assert.equal(await exists(theirs, 'u1/notes.txt'), false)
    assert.equal(failed(await theirs.download('u1/notes.txt'), 'download(u2)').statusCode, '404')
    assert.equal(failed(await theirs.info('u1/notes.txt'), 'info(u2)').statusCode, '404')
    assert.deepEqual(ok(await theirs.remove(['u1/notes.txt']), 'remove(u2)'), [])
    assert.equal(await exists(mine, 'u1/notes.txt'), true)

    ok(await mine.move('u1/notes.txt', 'u1/archive/notes.txt'), 'move(u1)')
    assert.equal(
      failed(await mine.move('u1/archive/notes.txt', 'u2/notes.txt'), 'move(u1 into u2)').statusCode,
      '403'
    )
    const removed = ok(await mine.remove(['u1/archive/notes.txt']), 'remove(u1)')
    assert.deepEqual(removed.map((o) => o.name), ['u1/archive/notes.txt'])
  })
}

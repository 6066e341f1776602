// Listing: list() (POST /object/list/{bucket}) and listV2() (POST /object/list-v2/{bucket}), as
// the storage-js documentation and Supabase Storage describe them.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'

import { bucketName, ok, text } from './env.mjs'

const OBJECTS = [
  'a.txt',
  'b.txt',
  'docs/one.txt',
  'docs/two.md',
  'docs/deep/three.txt',
  'images/cat.png',
  'images/dog.png',
  'u1/mine.txt',
  'u2/theirs.txt',
]

const isDate = (value) => typeof value === 'string' && !Number.isNaN(Date.parse(value))

/** Asserts a file entry carries what list() documents for files. */
function assertFile(entry, size) {
  assert.match(entry.id, /^[0-9a-f-]{36}$/, JSON.stringify(entry))
  assert.ok(isDate(entry.created_at), JSON.stringify(entry))
  assert.ok(isDate(entry.updated_at), JSON.stringify(entry))
  assert.equal(entry.metadata.size, size, JSON.stringify(entry))
  assert.ok(entry.metadata.mimetype, JSON.stringify(entry))
  assert.ok(entry.metadata.eTag, JSON.stringify(entry))
}

/** Asserts a folder entry of list(): only a name, everything else null. */
function assertFolder(entry) {
  assert.equal(entry.id, null, JSON.stringify(entry))
  assert.equal(entry.metadata, null, JSON.stringify(entry))
}

export function defineListTests(clients, prefix) {
  const { service, user1 } = clients
  const bucket = bucketName(`${prefix}-list`)
  const files = () => service.from(bucket)

  before(async () => {
    ok(await service.createBucket(bucket), 'createBucket')
    for (const name of OBJECTS) {
      // Sizes differ so entries can be told apart: the name's length.
      ok(await files().upload(name, text(name), { contentType: 'text/plain' }), `upload ${name}`)
    }
  })

  // -------------------------------------------------------------------------------------------
  // list (v1): one level, names relative to the folder, folders first
  // -------------------------------------------------------------------------------------------

  test('list() at the root: folders (id null) and files with metadata, by name', async () => {
    const entries = ok(await files().list(), 'list()')
    assert.deepEqual(
      entries.map((e) => e.name),
      ['a.txt', 'b.txt', 'docs', 'images', 'u1', 'u2']
    )
    entries.slice(2).forEach(assertFolder)
    assertFile(entries[0], 'a.txt'.length)
    assertFile(entries[1], 'b.txt'.length)
  })

  test('list() by name interleaves folders and files in case-insensitive order, as Supabase', async () => {
    const id = bucketName(`${prefix}-mixed`)
    ok(await service.createBucket(id), 'createBucket')
    const names = ['zz.txt', 'Zeta/x.txt', 'sub/x.txt', 'Sub2/y.txt', 'sub.txt', 'C.md', 'c/d.txt', 'B.txt', 'a.txt']
    for (const name of names) {
      ok(await service.from(id).upload(name, text(name), { contentType: 'text/plain' }), `upload ${name}`)
    }
    const order = ['a.txt', 'B.txt', 'C.md', 'c', 'sub.txt', 'sub', 'Sub2', 'Zeta', 'zz.txt']
    const entries = ok(await service.from(id).list(), 'list()')
    assert.deepEqual(entries.map((e) => e.name), order)
    assertFile(entries[2], 'C.md'.length)
    assertFolder(entries[3])

    const desc = ok(
      await service.from(id).list('', { sortBy: { column: 'name', order: 'desc' } }),
      'list(desc)'
    )
    assert.deepEqual(desc.map((e) => e.name), [...order].reverse())

    const pages = []
    for (let offset = 0; offset < order.length; offset += 4) {
      pages.push(...ok(await service.from(id).list('', { limit: 4, offset }), `list(offset ${offset})`))
    }
    assert.deepEqual(pages.map((e) => e.name), order)

    const found = ok(await service.from(id).list('', { search: 'SU' }), 'list(search)')
    assert.deepEqual(found.map((e) => e.name), ['sub.txt', 'sub', 'Sub2'])
  })

  test('list(folder) answers names relative to the folder, with or without a trailing /', async () => {
    for (const path of ['docs', 'docs/']) {
      const entries = ok(await files().list(path), `list(${path})`)
      assert.deepEqual(
        entries.map((e) => e.name),
        ['deep', 'one.txt', 'two.md'],
        path
      )
      assertFolder(entries[0])
      assertFile(entries[1], 'docs/one.txt'.length)
    }
    const deep = ok(await files().list('docs/deep'), 'list(docs/deep)')
    assert.deepEqual(deep.map((e) => e.name), ['three.txt'])
  })

  test('list() pages with limit and offset', async () => {
    const first = ok(await files().list('images', { limit: 1, offset: 0 }), 'list(page 1)')
    assert.deepEqual(first.map((e) => e.name), ['cat.png'])
    const second = ok(await files().list('images', { limit: 1, offset: 1 }), 'list(page 2)')
    assert.deepEqual(second.map((e) => e.name), ['dog.png'])
    const past = ok(await files().list('images', { limit: 1, offset: 2 }), 'list(page 3)')
    assert.deepEqual(past, [])
  })

  test('list() sorts by the given column and order', async () => {
    const desc = ok(
      await files().list('images', { sortBy: { column: 'name', order: 'desc' } }),
      'list(desc)'
    )
    assert.deepEqual(desc.map((e) => e.name), ['dog.png', 'cat.png'])
    const byDate = ok(
      await files().list('images', { sortBy: { column: 'created_at', order: 'asc' } }),
      'list(created_at)'
    )
    assert.deepEqual(byDate.map((e) => e.name), ['cat.png', 'dog.png'])
  })

  test('list() search is a case-insensitive "starts with" inside the folder', async () => {
    const found = ok(await files().list('docs', { search: 'TW' }), 'list(search)')
    assert.deepEqual(found.map((e) => e.name), ['two.md'])
    const none = ok(await files().list('docs', { search: 'zzz' }), 'list(search none)')
    assert.deepEqual(none, [])
  })

  test('list() of an empty or missing folder is an empty array', async () => {
    assert.deepEqual(ok(await files().list('nothing/here'), 'list(missing folder)'), [])
  })

  test('list() shows a user only what the policies let them see', async () => {
    const mine = user1.from(bucket)
    const root = ok(await mine.list(), 'list() as u1')
    assert.deepEqual(root.map((e) => e.name), ['u1'])
    const own = ok(await mine.list('u1'), 'list(u1) as u1')
    assert.deepEqual(own.map((e) => e.name), ['mine.txt'])
    assert.deepEqual(ok(await mine.list('u2'), 'list(u2) as u1'), [])
  })

  // -------------------------------------------------------------------------------------------
  // listV2: full keys, folders with a trailing /, cursor pagination
  // -------------------------------------------------------------------------------------------

  test('listV2() without a delimiter lists every object flat, by full key', async () => {
    const data = ok(await files().listV2(), 'listV2()')
    assert.equal(data.hasNext, false)
    assert.equal(data.nextCursor, undefined)
    assert.deepEqual(data.folders, [])
    assert.deepEqual(
      data.objects.map((o) => o.name),
      [...OBJECTS].sort()
    )
    for (const object of data.objects) {
      assertFile(object, object.name.length)
    }
  })

  test('listV2() with a delimiter groups sub-folders (name ending in /)', async () => {
    const root = ok(await files().listV2({ with_delimiter: true }), 'listV2(root)')
    assert.deepEqual(
      root.folders.map((f) => f.name),
      ['docs/', 'images/', 'u1/', 'u2/']
    )
    assert.deepEqual(root.objects.map((o) => o.name), ['a.txt', 'b.txt'])

    const docs = ok(
      await files().listV2({ prefix: 'docs/', with_delimiter: true }),
      'listV2(docs/)'
    )
    assert.deepEqual(docs.folders.map((f) => f.name), ['docs/deep/'])
    if (docs.folders[0].key !== undefined) assert.equal(docs.folders[0].key, 'deep')
    assert.deepEqual(docs.objects.map((o) => o.name), ['docs/one.txt', 'docs/two.md'])
    assertFile(docs.objects[0], 'docs/one.txt'.length)
    assert.equal(docs.hasNext, false)
  })

  test('listV2() prefixes are raw strings, not folders', async () => {
    const data = ok(await files().listV2({ prefix: 'doc', with_delimiter: true }), 'listV2(doc)')
    assert.deepEqual(data.folders.map((f) => f.name), ['docs/'])
    assert.deepEqual(data.objects, [])
  })

  test('listV2() pages with limit and the opaque nextCursor', async () => {
    const first = ok(await files().listV2({ prefix: 'images/', limit: 1 }), 'listV2(page 1)')
    assert.deepEqual(first.objects.map((o) => o.name), ['images/cat.png'])
    assert.equal(first.hasNext, true)
    assert.equal(typeof first.nextCursor, 'string')
    assert.equal(first.nextCursorKey, 'images/cat.png', 'the last name of the page, as Supabase')

    const second = ok(
      await files().listV2({ prefix: 'images/', limit: 1, cursor: first.nextCursor }),
      'listV2(page 2)'
    )
    assert.deepEqual(second.objects.map((o) => o.name), ['images/dog.png'])
    assert.equal(second.hasNext, false)
    assert.equal(second.nextCursor, undefined)
    assert.equal(second.nextCursorKey, undefined)
  })

  test('listV2() pages through a whole bucket without loss or repeats', async () => {
    const seen = []
    let cursor
    for (let page = 0; page < 20; page++) {
      const data = ok(await files().listV2({ limit: 2, cursor }), `listV2(page ${page})`)
      seen.push(...data.objects.map((o) => o.name))
      if (!data.hasNext) break
      cursor = data.nextCursor
    }
    assert.deepEqual(seen, [...OBJECTS].sort())
  })

  test('listV2() shows a user only what the policies let them see', async () => {
    const data = ok(await user1.from(bucket).listV2(), 'listV2() as u1')
    assert.deepEqual(data.objects.map((o) => o.name), ['u1/mine.txt'])
  })
}

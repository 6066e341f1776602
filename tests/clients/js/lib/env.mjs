// The live server and keys, handed over by tests/clients.rs (or set by hand against any
// pgstorage: see ../README.md).
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'

function required(name) {
  const value = process.env[name]
  if (!value) {
    throw new Error(`${name} is not set: run these suites through \`cargo nextest run clients\``)
  }
  return value
}

export const url = required('PGSTORAGE_URL').replace(/\/+$/, '')
export const serviceKey = required('PGSTORAGE_SERVICE_KEY')
export const anonKey = required('PGSTORAGE_ANON_KEY')
/** An `authenticated` user whose `sub` is 'u1'. */
export const user1Key = required('PGSTORAGE_USER1_KEY')
/** An `authenticated` user whose `sub` is 'u2'. */
export const user2Key = required('PGSTORAGE_USER2_KEY')

/** A bucket id no other file uses, also when a suite is run twice on one server. */
export function bucketName(prefix) {
  return `${prefix}-${randomBytes(4).toString('hex')}`
}

/** The data of a `{data, error}` answer, or a failure that shows the client's error. */
export function ok(result, what = 'the call') {
  if (result.error) {
    const e = result.error
    assert.fail(
      `${what} failed: ${e.name} status=${e.status} statusCode=${e.statusCode} ` +
        `code=${e.code} message=${JSON.stringify(e.message)}`
    )
  }
  return result.data
}

/** The error of a `{data, error}` answer that must have failed. */
export function failed(result, what = 'the call') {
  assert.ok(result.error, `${what} should have failed, got ${JSON.stringify(result.data)}`)
  assert.equal(result.data, null, `${what}: data must be null on error`)
  return result.error
}

export const text = (s) => new TextEncoder().encode(s)

/** Reads a Blob (what download() returns) as bytes. */
export async function bytesOf(blob) {
  return new Uint8Array(await blob.arrayBuffer())
}

/**
 * `exists()` as documented: `{data: true, error: null}` when the object is there, and
 * `{data: false, error}` (the NoSuchKey error) when it is not. Any other error is thrown.
 */
export async function exists(bucketApi, path) {
  const { data, error } = await bucketApi.exists(path)
  if (data) {
    assert.equal(error, null)
  } else {
    assert.equal(error?.code, 'NoSuchKey', `exists(${path}) is false only for a missing object`)
  }
  return data
}

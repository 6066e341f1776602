// supabase-js (`createClient(url, key).storage`) against pgstorage: buckets, objects, public
// URLs, errors.
import { test } from 'node:test'
import assert from 'node:assert/strict'

import { url } from '../lib/env.mjs'
import { supabaseJsClients } from '../lib/clients.mjs'
import { defineCoreTests } from '../lib/core-suite.mjs'

const clients = supabaseJsClients()

test('supabase-js points storage at <url>/storage/v1', () => {
  assert.equal(clients.supabase.storageUrl.href, `${url}/storage/v1`)
  const { data } = clients.service.from('b').getPublicUrl('a/b.txt')
  assert.equal(data.publicUrl, `${url}/storage/v1/object/public/b/a/b.txt`)
})

defineCoreTests(clients, 'supajs-core')

// One client per identity, built the way each library's documentation shows.
import { StorageClient } from '@supabase/storage-js'
import { createClient } from '@supabase/supabase-js'

import { anonKey, serviceKey, url, user1Key, user2Key } from './env.mjs'

export const storageUrl = `${url}/storage/v1`

/** @supabase/storage-js's StorageClient, built by hand: the key as apikey and bearer token. */
export function storageJsClients() {
  const client = (key) =>
    new StorageClient(storageUrl, { apikey: key, Authorization: `Bearer ${key}` })
  return {
    service: client(serviceKey),
    anon: client(anonKey),
    user1: client(user1Key),
    user2: client(user2Key),
    serviceKey,
    storageUrl,
  }
}

/**
 * supabase-js's `createClient(url, key)`, whose `.storage` appends /storage/v1 itself and sends
 * the key as `apikey` plus a bearer token (the session's, the `accessToken` option's, or the key).
 * Also returns the SupabaseClient of the service key as `supabase`.
 */
export function supabaseJsClients() {
  // A server-side client: no session to keep or refresh.
  const auth = { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false }
  const service = createClient(url, serviceKey, { auth })
  const anon = createClient(url, anonKey, { auth })
  // A signed-in user as third-party auth does it: the `accessToken` option.
  const user1 = createClient(url, anonKey, { accessToken: async () => user1Key })
  // A signed-in user through a global Authorization header (the anon key stays the apikey).
  const user2 = createClient(url, anonKey, {
    auth,
    global: { headers: { Authorization: `Bearer ${user2Key}` } },
  })
  return {
    supabase: service,
    service: service.storage,
    anon: anon.storage,
    user1: user1.storage,
    user2: user2.storage,
    serviceKey,
    storageUrl,
  }
}

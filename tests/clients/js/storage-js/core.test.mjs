// @supabase/storage-js's StorageClient against pgstorage: buckets, objects, public URLs, errors.
import { storageJsClients } from '../lib/clients.mjs'
import { defineCoreTests } from '../lib/core-suite.mjs'

defineCoreTests(storageJsClients(), 'sjs-core')

// supabase-js: image transformations (the `transform` option) against pgstorage.
import { supabaseJsClients } from '../lib/clients.mjs'
import { defineTransformTests } from '../lib/transform-suite.mjs'

defineTransformTests(supabaseJsClients(), 'supajs')

// supabase-js: list() and listV2() against pgstorage.
import { supabaseJsClients } from '../lib/clients.mjs'
import { defineListTests } from '../lib/list-suite.mjs'

defineListTests(supabaseJsClients(), 'supajs')

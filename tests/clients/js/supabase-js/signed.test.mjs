// supabase-js: signed download and upload URLs against pgstorage.
import { supabaseJsClients } from '../lib/clients.mjs'
import { defineSignedTests } from '../lib/signed-suite.mjs'

defineSignedTests(supabaseJsClients(), 'supajs')

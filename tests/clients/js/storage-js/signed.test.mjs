// storage-js: signed download and upload URLs against pgstorage.
import { storageJsClients } from '../lib/clients.mjs'
import { defineSignedTests } from '../lib/signed-suite.mjs'

defineSignedTests(storageJsClients(), 'sjs')

// storage-js: list() and listV2() against pgstorage.
import { storageJsClients } from '../lib/clients.mjs'
import { defineListTests } from '../lib/list-suite.mjs'

defineListTests(storageJsClients(), 'sjs')

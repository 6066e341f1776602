// storage-js: image transformations (the `transform` option) against pgstorage.
import { storageJsClients } from '../lib/clients.mjs'
import { defineTransformTests } from '../lib/transform-suite.mjs'

defineTransformTests(storageJsClients(), 'sjs')

// Copies the files tsc does not emit (the inspector's page, the checkpointer's thread) into dist/.
import { cpSync } from 'node:fs'

cpSync('persistence/sqlite/checkpoint-worker.mjs', 'dist/persistence/sqlite/checkpoint-worker.mjs')

cpSync('src/tools/inspector/page', 'dist/src/tools/inspector/page', { recursive: true })

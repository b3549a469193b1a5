// Copies the files tsc does not emit (the inspector's page) into dist/.
import { cpSync, existsSync } from 'node:fs'

if (existsSync('src/inspector/page')) cpSync('src/inspector/page', 'dist/src/inspector/page', { recursive: true })

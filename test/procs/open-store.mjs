// How a test process opens the store its test names: a SQLite path, or
// "postgres://...|<schema>" for a PostgreSQL schema.
import { createOrchestrator } from '../../dist/src/index.js'

export function openStore(store, options = {}) {
  if (/^postgres(ql)?:\/\//.test(store)) {
    const [url, schema] = store.split('|')
    return createOrchestrator({ url, schema, ...options })
  }
  return createOrchestrator({ path: store, ...options })
}

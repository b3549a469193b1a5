// Opens (and migrates) a PostgreSQL schema from a separate OS process, starting at a given
// moment so several processes race. usage: node pg-open.mjs <url> <schema> <startAtMs>
import { openPool } from '../../dist/persistence/postgres/connection.js'
import { migrate } from '../../dist/persistence/postgres/migrations.js'

const [url, schema, startAt] = process.argv.slice(2)
const conn = await openPool(url, { schema })
const wait = Number(startAt) - Date.now()
if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
try {
  const result = await migrate(conn)
  process.stdout.write(JSON.stringify(result) + '\n')
} catch (error) {
  process.stdout.write(JSON.stringify({ error: error.code ?? error.message, message: error.message }) + "\n")
  process.exitCode = 1
} finally {
  await conn.close()
}

// The background checkpointer's thread (see checkpointer.ts). Plain JavaScript so that it
// runs the same from the sources and from dist/.
import { parentPort, workerData } from 'node:worker_threads'
import Database from 'better-sqlite3'

const { path, intervalMs } = workerData
const db = new Database(path)
// Never wait for the write lock: a PASSIVE checkpoint that cannot run now runs next time.
db.pragma('busy_timeout = 0')

const timer = setInterval(() => {
  try {
    db.pragma('wal_checkpoint(PASSIVE)')
  } catch {
    // Busy or locked: the next tick tries again.
  }
}, intervalMs)

parentPort.on('message', (message) => {
  if (message !== 'stop') return
  clearInterval(timer)
  db.close()
  parentPort.close()
})

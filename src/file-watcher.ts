/**
 * Watching source files for hot reloads (the MCP server's tools, machine modules).
 */
import { statSync, watch, type FSWatcher } from 'node:fs'
import { basename, dirname } from 'node:path'

/**
 * fs.watch on the files' directories (a compiler or editor may replace a file, which a
 * watch on the file itself would miss), plus a bounded mtime/size poll as a safety net;
 * `onChange(path)` after `debounceMs` without further events for that path.
 */
export class FileWatcher {
  private readonly watchers: FSWatcher[] = []
  private readonly timers = new Map<string, NodeJS.Timeout>()
  private readonly stamps = new Map<string, string>()
  private readonly poll: NodeJS.Timeout
  private closed = false

  constructor(
    private readonly paths: string[],
    private readonly debounceMs: number,
    pollMs: number,
    log: (line: string) => void,
    private readonly onChange: (path: string) => void,
  ) {
    const byDir = new Map<string, string[]>()
    for (const path of paths) {
      byDir.set(dirname(path), [...(byDir.get(dirname(path)) ?? []), path])
      this.stamps.set(path, stampOf(path))
    }
    for (const [dir, files] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, filename) => {
          for (const path of files) if (!filename || basename(path) === String(filename)) this.schedule(path)
        })
        w.on('error', (error) => log(`watching ${dir}: ${(error as Error).message} (polling continues)`))
        this.watchers.push(w)
      } catch (error) {
        log(`cannot watch ${dir}: ${(error as Error).message} (polling every ${pollMs} ms)`)
      }
    }
    this.poll = setInterval(() => {
      for (const path of this.paths) {
        const stamp = stampOf(path)
        if (stamp === this.stamps.get(path)) continue
        this.stamps.set(path, stamp)
        this.schedule(path)
      }
    }, pollMs)
    this.poll.unref()
  }

  private schedule(path: string): void {
    if (this.closed) return
    clearTimeout(this.timers.get(path))
    const timer = setTimeout(() => {
      this.timers.delete(path)
      if (!this.closed) this.onChange(path)
    }, this.debounceMs)
    timer.unref()
    this.timers.set(path, timer)
  }

  close(): void {
    this.closed = true
    clearInterval(this.poll)
    for (const timer of this.timers.values()) clearTimeout(timer)
    for (const w of this.watchers) w.close()
  }
}

/** Inode, size and modification time: changes whenever the file does. */
export function stampOf(path: string): string {
  try {
    const s = statSync(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}`
  } catch {
    return 'missing'
  }
}

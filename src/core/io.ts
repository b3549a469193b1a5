/**
 * Programs over a store: the committed step and the write bodies are generator functions
 * that yield store operations (`yield* io((s) => s.loadActor(...))`) instead of calling a
 * database. One program runs on any store:
 * - `runSync` feeds each answer straight back (SQLite: better-sqlite3 answers
 *   synchronously inside its transaction, so the step costs no promise and no tick);
 * - `runAsync` awaits each answer (PostgreSQL: a round trip per operation between BEGIN
 *   and COMMIT).
 * A failing operation is thrown into the program at its `yield`, so `try`/`finally` in a
 * program behave as in ordinary code.
 */
import type { Awaitable, StepStore } from '../../persistence/store.js'

/** One store operation, as data: a function of the store the driver runs. */
export type StoreCall = (store: StepStore) => unknown

/** A program that yields store operations and returns a T. */
export type Io<T> = Generator<StoreCall, T, unknown>

/** Run one store operation inside a program: `const row = yield* io((s) => s.loadActor(t, id))`. */
export function* io<T>(call: (store: StepStore) => Awaitable<T>): Io<T> {
  return (yield call) as T
}

/** Run `program` against a store that answers synchronously. */
export function runSync<T>(program: Io<T>, store: StepStore): T {
  let next = program.next()
  while (!next.done) {
    let answer: unknown
    try {
      answer = next.value(store)
    } catch (error) {
      next = program.throw(error)
      continue
    }
    if (answer instanceof Promise) {
      // A synchronous store never answers with a promise; a program must not pretend it can wait.
      program.return(undefined as never)
      throw new Error('a synchronous store answered with a promise')
    }
    next = program.next(answer)
  }
  return next.value
}

/** Run `program` against a store that may answer with promises. */
export async function runAsync<T>(program: Io<T>, store: StepStore): Promise<T> {
  let next = program.next()
  while (!next.done) {
    let answer: unknown
    try {
      answer = await next.value(store)
    } catch (error) {
      next = program.throw(error)
      continue
    }
    next = program.next(answer)
  }
  return next.value
}

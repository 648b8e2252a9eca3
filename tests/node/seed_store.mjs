// Runs the seed guide's Pinia store (copied verbatim from shared/seed/websocket-guide.zh.md into
// frontend-adapter/test/fixtures/, whose tests check the copy against the guide) against a
// running gateway's plain /ws endpoint and prints what each store saw.
//
// The only things supplied from outside are what a browser page would supply:
//  - globalThis.WebSocket: the `ws` package, reporting Symbol.toStringTag "WebSocket" like a
//    browser's native WebSocket so Vue's ref() leaves it unproxied; it also points the seed's
//    hard-coded ws://localhost:8087 at the test server's port.
//  - globalThis.handleMessage: the seed calls it but leaves it to the application to define.
//
// Usage: GATEWAY_PORT=... TOKEN_A=... TOKEN_B=... node seed_store.mjs
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import ts from 'typescript'
import WS from 'ws'
import { createPinia } from 'pinia'

const here = dirname(fileURLToPath(import.meta.url))
const port = process.env.GATEWAY_PORT
const ROOM = 'chat:room001'
const TIMEOUT_MS = 10_000

class BrowserLikeWebSocket extends WS {
  constructor(url, protocols) {
    super(url.replace('ws://localhost:8087', `ws://127.0.0.1:${port}`), protocols)
  }
  get [Symbol.toStringTag]() {
    return 'WebSocket'
  }
}
globalThis.WebSocket = BrowserLikeWebSocket
const handled = []
globalThis.handleMessage = (data) => handled.push(data.type)

// Transpile the store verbatim; write it next to node_modules so 'pinia' and 'vue' resolve.
const source = readFileSync(join(here, '..', '..', 'frontend-adapter', 'test', 'fixtures', 'seed-websocket-store.ts'), 'utf8')
const { outputText } = ts.transpileModule(source, {
  compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
})
mkdirSync(join(here, 'build'), { recursive: true })
const outFile = join(here, 'build', 'seed-websocket-store.mjs')
writeFileSync(outFile, outputText)
const { useWebSocketStore } = await import(pathToFileURL(outFile).href)

function waitFor(predicate, what) {
  return new Promise((resolve, reject) => {
    const started = Date.now()
    const timer = setInterval(() => {
      const value = predicate()
      if (value) {
        clearInterval(timer)
        resolve(value)
      } else if (Date.now() - started > TIMEOUT_MS) {
        clearInterval(timer)
        reject(new Error(`timed out waiting for ${what}`))
      }
    }, 10)
  })
}

const pongs = (store) => store.messages.filter((m) => m.type === 'pong').length
async function pingAndWait(store, name) {
  const before = pongs(store)
  store.send({ type: 'ping' })
  await waitFor(() => pongs(store) > before, `${name} pong`)
}

const alice = useWebSocketStore(createPinia())
const bob = useWebSocketStore(createPinia())
alice.connect(process.env.TOKEN_A)
bob.connect(process.env.TOKEN_B)
await waitFor(() => alice.connected && bob.connected, 'both stores connected')
await waitFor(() => alice.messages.some((m) => m.type === 'welcome'), 'alice welcome')

// the chat component: join the room, then chat
alice.send({ type: 'join_room', content: ROOM })
bob.send({ type: 'join_room', content: ROOM })
await pingAndWait(alice, 'alice') // frames are handled in order: the join is done
await pingAndWait(bob, 'bob')
alice.send({ type: 'room_message', content: { room: ROOM, text: 'hello from alice' } })
await waitFor(() => bob.messages.some((m) => m.type === 'room_message'), 'bob room_message')
bob.send({ type: 'room_message', content: { room: ROOM, text: 'hi alice' } })
await waitFor(
  () => alice.messages.filter((m) => m.type === 'room_message').length === 2,
  'alice sees both room messages',
)
const report = { alice: alice.messages, bob: bob.messages, handled }
alice.disconnect()
bob.disconnect()
console.log(JSON.stringify(report))
process.exit(0)

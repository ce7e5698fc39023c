// The Deno side of rlm-deno: owns the process's real stdin/stdout and speaks the framed
// protocol of rlm_core/bridge (docs/protocol.md). Pyodide runs in a Worker (worker.mjs) so that
// this thread stays free to receive an `interrupt` frame while a cell runs; tool calls from the
// worker block on a SharedArrayBuffer that this thread fills with the host's reply.
//
// It imports nothing: Pyodide is loaded by the worker from the local directory named in the
// configuration (argv[0], JSON), so no registry or CDN is touched at run time.

const config = JSON.parse(Deno.args[0]);
const stdin = Deno.stdin;
const stdout = Deno.stdout;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// Control block shared with the worker (Int32 slots):
//   0: reply state (0 waiting, 1 reply ready, 2 interrupted)   1: reply length
//   2: id of the cell the host timed out   3: id of the tool call the worker waits for
//   4: id of the cell being run (set here when forwarded, cleared by the worker when done)
//   5: id of the cell the worker has delivered its timeout to
// The worker writes its frames to stdout itself; these slots are all this thread needs.
const control = new Int32Array(new SharedArrayBuffer(32));
const REPLY_STATE = 0;
const TIMED_OUT = 2;
const PENDING_CALL = 3;
const RUNNING = 4;
const DELIVERED = 5;
// CPython reads and clears the interrupt buffer in two plain steps, so a signal stored between
// them is lost; the interrupt is pressed again at this interval until the worker delivers it.
const REPRESS_MS = 20;
const interrupt = new Int32Array(new SharedArrayBuffer(4));
// Growable so a tool reply of any size fits without chunking; only touched bytes are committed.
const replies = new SharedArrayBuffer(64 * 1024, { maxByteLength: 1024 * 1024 * 1024 });

function fatal(message) {
  try {
    Deno.stderr.writeSync(encoder.encode(`rlm deno runner: ${message}\n`));
  } finally {
    Deno.exit(1);
  }
}

// ---- input: a buffered reader that can fill a caller's buffer directly ------------------

const chunk = new Uint8Array(1 << 20);
let pending = new Uint8Array(0);

async function readInto(target) {
  let filled = 0;
  const fromPending = Math.min(pending.length, target.length);
  target.set(pending.subarray(0, fromPending));
  pending = pending.subarray(fromPending);
  filled = fromPending;
  while (filled < target.length) {
    const want = target.length - filled;
    if (want >= chunk.length) {
      const n = await stdin.read(target.subarray(filled));
      if (n === null) return false;
      filled += n;
    } else {
      const n = await stdin.read(chunk);
      if (n === null) return false;
      const take = Math.min(n, want);
      target.set(chunk.subarray(0, take), filled);
      filled += take;
      pending = chunk.slice(take, n);
    }
  }
  return true;
}

const header = new Uint8Array(12);
const view = new DataView(header.buffer);

async function readFrame() {
  if (!(await readInto(header))) return null;
  const jsonLength = view.getUint32(0);
  const blobLength = Number(view.getBigUint64(4));
  const body = new Uint8Array(jsonLength);
  if (!(await readInto(body))) return null;
  let blob = null;
  if (blobLength) {
    try {
      blob = new Uint8Array(new ArrayBuffer(blobLength));
    } catch (error) {
      fatal(`cannot allocate ${blobLength} bytes for an attachment: ${error}`);
    }
    if (!(await readInto(blob))) return null;
  }
  const text = decoder.decode(body);
  const message = JSON.parse(text);
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    fatal("a frame is not a JSON object");
  }
  return { message, text, body, blob };
}

// ---- the worker ------------------------------------------------------------------------

const worker = new Worker(new URL("./worker.mjs", import.meta.url), { type: "module" });

worker.onerror = (event) => {
  event.preventDefault();
  fatal(`the Pyodide worker failed: ${event.message}`);
};

worker.onmessage = async (event) => {
  const message = event.data;
  switch (message.kind) {
    case "snapshot":
      // Only in snapshot-making mode, where this process may write exactly this one file.
      await Deno.writeFile(config.makeSnapshot, message.bytes);
      Deno.exit(0);
      break;
    case "debug": Deno.stderr.writeSync(encoder.encode(message.e + "\n")); break;
    case "fatal":
      fatal(message.message);
      break;
    default:
      fatal(`unexpected worker message ${message.kind}`);
  }
};

// Takes the reply frame's UTF-8 bytes as they came: the worker decodes them once.
function deliverReply(bytes) {
  if (bytes.length > replies.maxByteLength) {
    const error = { ok: false, error: { type: "ValueError", message: "the tool's reply is too large" } };
    return deliverReply(encoder.encode(JSON.stringify(error)));
  }
  if (bytes.length > replies.byteLength) replies.grow(bytes.length);
  new Uint8Array(replies, 0, bytes.length).set(bytes);
  Atomics.store(control, PENDING_CALL, 0);
  Atomics.store(control, 1, bytes.length);
  Atomics.store(control, REPLY_STATE, 1);
  Atomics.notify(control, REPLY_STATE);
}

// Signals the timeout of cell `id` on every route a running cell can be reached by, unless the
// cell has ended or the worker has delivered it already; says whether it is still pending.
function pressInterrupt(id) {
  if (Atomics.load(control, RUNNING) !== id || Atomics.load(control, DELIVERED) === id) {
    return false;
  }
  if (Atomics.load(interrupt, 0) === 0) {
    Atomics.store(interrupt, 0, 2); // SIGINT for Pyodide's interrupt buffer
    Atomics.notify(interrupt, 0); // wakes a cell in time.sleep
  }
  if (Atomics.load(control, PENDING_CALL) !== 0) { // a cell waiting on a tool's reply
    Atomics.store(control, PENDING_CALL, 0);
    Atomics.store(control, REPLY_STATE, 2);
    Atomics.notify(control, REPLY_STATE);
  }
  return true;
}

worker.postMessage({
  kind: "init",
  config,
  control,
  interrupt,
  replies,
});

// ---- the frame loop ----------------------------------------------------------------------

for (;;) {
  const frame = await readFrame();
  if (frame === null) {
    if (config.makeSnapshot) await new Promise(() => {}); // the worker exits us when done
    break;
  }
  const { message, text, body, blob } = frame;
  switch (message.t) {
    case "interrupt":
      if (message.id !== 0 && message.id === Atomics.load(control, RUNNING)) {
        Atomics.store(control, TIMED_OUT, message.id);
        pressInterrupt(message.id);
        worker.postMessage({ kind: "interrupt" }); // reaches a cell suspended in `await`
        const timer = setInterval(() => {
          if (!pressInterrupt(message.id)) clearInterval(timer);
        }, REPRESS_MS);
      }
      break;
    case "reply":
      // A reply to a call an interrupt abandoned is dropped, as the CPython guest does.
      if (message.id !== 0 && message.id === Atomics.load(control, PENDING_CALL)) {
        deliverReply(body);
      }
      break;
    case "shutdown":
      Deno.exit(0);
      break;
    case "exec":
      Atomics.store(control, RUNNING, message.id);
      worker.postMessage({ kind: "frame", text, blob: null });
      break;
    case "deno-config":
    case "boot":
    case "configure":
    case "register":
    case "vars":
      worker.postMessage({ kind: "frame", text, blob }, blob ? [blob.buffer] : []);
      break;
    default:
      fatal(`unknown message type ${JSON.stringify(message.t)}`);
  }
}
Deno.exit(0);

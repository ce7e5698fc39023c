// The Deno side of rlm-deno. Each session is a Pyodide worker (worker.mjs) that speaks the
// framed protocol of rlm_core/bridge (docs/protocol.md) itself, reading and writing its byte
// streams synchronously, so a tool call's reply goes straight from the host to the thread
// waiting for it. This thread stays free while a cell runs, to do what a worker cannot do then:
// enforce the cell's timeout (the host's `interrupt` frame waits unread while Python runs),
// write the memory snapshot, and end the session.
//
// Two modes, chosen by the configuration (argv[0], JSON):
// - one session (the default): the worker uses this process's stdin and stdout, and the
//   process ends with it;
// - shared (`config.shared`): several sessions live here as workers, each on its own pair of
//   named pipes; stdin carries JSON lines `{"op": "open"|"close", "id", "input", "output"}`
//   and stdout answers `{"id", "ended", "reason"}` when a session's worker stops by itself.
//
// It imports nothing: Pyodide is loaded by the worker from the local directory named in the
// configuration, so no registry or CDN is touched at run time.

const config = JSON.parse(Deno.args[0]);
const encoder = new TextEncoder();

// Control block shared with a worker (Int32 slots):
//   0: id of the cell being run, 0 between cells (written by the worker)
//   1: id of the cell that ran out of time (written here, or by the worker when it reads the
//      host's `interrupt` while waiting for a tool)
//   2: id of the cell the worker has delivered its timeout to (written by the worker)
const RUNNING = 0;
const TIMED_OUT = 1;
const DELIVERED = 2;
// CPython reads and clears the interrupt buffer in two plain steps, so a signal stored between
// them is lost; the interrupt is pressed again at this interval until the worker delivers it.
const REPRESS_MS = 20;

function fatal(message) {
  try {
    Deno.stderr.writeSync(encoder.encode(`rlm deno runner: ${message}\n`));
  } finally {
    Deno.exit(1);
  }
}

// A process shared by sessions reads the memory snapshot once, into memory its workers share,
// instead of a 30 MB copy per booting session.
let sharedSnapshot;

function snapshotForWorkers() {
  if (!config.shared || !config.snapshot) return null;
  if (sharedSnapshot === undefined) {
    try {
      const bytes = Deno.readFileSync(config.snapshot);
      sharedSnapshot = new Uint8Array(new SharedArrayBuffer(bytes.length));
      sharedSnapshot.set(bytes);
    } catch {
      sharedSnapshot = null; // each worker tries itself, and boots normally if that fails
    }
  }
  return sharedSnapshot;
}

// Starts one session's worker; `end(reason)` is called once when it stops by itself (reason
// "" for a normal end). Returns a function that stops it.
function startSession(pipes, end) {
  const control = new Int32Array(new SharedArrayBuffer(12));
  // Pyodide's interrupt buffer (2 = SIGINT); `time.sleep` in the guest waits on it too.
  const interrupt = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL("./worker.mjs", import.meta.url), { type: "module" });
  let ended = false;
  const stop = (reason) => {
    if (ended) return;
    ended = true;
    worker.terminate();
    end(reason);
  };

  // Sets the interrupt buffer unless cell `id` has ended or has its timeout already; says
  // whether the timeout is still pending.
  const pressInterrupt = (id) => {
    if (Atomics.load(control, RUNNING) !== id || Atomics.load(control, DELIVERED) === id) {
      return false;
    }
    if (Atomics.load(interrupt, 0) === 0) {
      Atomics.store(interrupt, 0, 2);
      Atomics.notify(interrupt, 0); // wakes a cell in time.sleep
    }
    return true;
  };

  // Cell `id` ran out of time: interrupt it on every route a running cell can be reached by.
  const expire = (id) => {
    if (ended || Atomics.load(control, RUNNING) !== id) return; // it finished in time
    Atomics.store(control, TIMED_OUT, id);
    if (!pressInterrupt(id)) return;
    worker.postMessage({ kind: "interrupt" }); // reaches a cell suspended in `await`
    const timer = setInterval(() => {
      if (ended || !pressInterrupt(id)) clearInterval(timer);
    }, REPRESS_MS);
  };

  worker.onerror = (event) => {
    event.preventDefault();
    stop(`the Pyodide worker failed: ${event.message}`);
  };

  worker.onmessage = async (event) => {
    const message = event.data;
    switch (message.kind) {
      case "deadline": { // an absolute time: the message itself may be slow to arrive
        const now = performance.timeOrigin + performance.now();
        setTimeout(() => expire(message.id), message.at - now);
        break;
      }
      case "exit":
        stop("");
        break;
      case "snapshot":
        // Only in snapshot-making mode, where this process may write exactly this one file.
        await Deno.writeFile(config.makeSnapshot, message.bytes);
        stop("");
        break;
      case "fatal":
        stop(message.message);
        break;
      default:
        stop(`unexpected worker message ${message.kind}`);
    }
  };

  const snapshot = snapshotForWorkers();
  worker.postMessage({ kind: "init", config, control, interrupt, pipes, snapshot });
  return () => stop(null);
}

async function serveShared() {
  const sessions = new Map();
  const report = (id, reason) => {
    sessions.delete(id);
    Deno.stdout.writeSync(encoder.encode(JSON.stringify({ id, ended: true, reason }) + "\n"));
  };
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of Deno.stdin.readable) {
    pending += decoder.decode(chunk, { stream: true });
    let newline;
    while ((newline = pending.indexOf("\n")) >= 0) {
      const request = JSON.parse(pending.slice(0, newline));
      pending = pending.slice(newline + 1);
      if (request.op === "open") {
        const pipes = { input: request.input, output: request.output };
        sessions.set(request.id, startSession(pipes, (reason) => {
          if (reason !== null) report(request.id, reason);
        }));
      } else if (request.op === "close") {
        const stop = sessions.get(request.id);
        sessions.delete(request.id);
        if (stop) stop();
      } else {
        fatal(`unknown request ${JSON.stringify(request.op)}`);
      }
    }
  }
  Deno.exit(0); // the host closed our stdin: every session ends with this process
}

if (config.shared) {
  serveShared().catch((error) => fatal(String(error && error.stack || error)));
} else {
  startSession(null, (reason) => (reason ? fatal(reason) : Deno.exit(0)));
}
// The first timer of a Deno isolate fires several milliseconds late; pay that now, not in the
// first timeout.
setTimeout(() => {}, 0);

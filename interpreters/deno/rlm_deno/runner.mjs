// The Deno side of rlm-deno. The Pyodide worker (worker.mjs) speaks the framed protocol of
// rlm_core/bridge (docs/protocol.md) itself: it reads stdin and writes stdout, so a tool call's
// reply goes straight from the host to the thread waiting for it. This thread stays free while
// a cell runs, to do what the worker cannot do then: enforce the cell's timeout (the host's
// `interrupt` frame waits unread in the pipe while Python runs), write the memory snapshot, and
// end the process.
//
// It imports nothing: Pyodide is loaded by the worker from the local directory named in the
// configuration (argv[0], JSON), so no registry or CDN is touched at run time.

const config = JSON.parse(Deno.args[0]);
const encoder = new TextEncoder();

// Control block shared with the worker (Int32 slots):
//   0: id of the cell being run, 0 between cells (written by the worker)
//   1: id of the cell that ran out of time (written here, or by the worker when it reads the
//      host's `interrupt` while waiting for a tool)
//   2: id of the cell the worker has delivered its timeout to (written by the worker)
const control = new Int32Array(new SharedArrayBuffer(12));
const RUNNING = 0;
const TIMED_OUT = 1;
const DELIVERED = 2;
// Pyodide's interrupt buffer (2 = SIGINT); `time.sleep` in the guest waits on it too.
const interrupt = new Int32Array(new SharedArrayBuffer(4));
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

const worker = new Worker(new URL("./worker.mjs", import.meta.url), { type: "module" });

worker.onerror = (event) => {
  event.preventDefault();
  fatal(`the Pyodide worker failed: ${event.message}`);
};

worker.onmessage = async (event) => {
  const message = event.data;
  switch (message.kind) {
    case "deadline": // an absolute time: the message itself may be slow to arrive
      setTimeout(() => expire(message.id), message.at - (performance.timeOrigin + performance.now()));
      break;
    case "exit":
      Deno.exit(0);
      break;
    case "snapshot":
      // Only in snapshot-making mode, where this process may write exactly this one file.
      await Deno.writeFile(config.makeSnapshot, message.bytes);
      Deno.exit(0);
      break;
    case "fatal":
      fatal(message.message);
      break;
    default:
      fatal(`unexpected worker message ${message.kind}`);
  }
};

// Cell `id` ran out of time: interrupt it on every route a running cell can be reached by.
function expire(id) {
  if (Atomics.load(control, RUNNING) !== id) return; // it finished in time
  Atomics.store(control, TIMED_OUT, id);
  if (!pressInterrupt(id)) return;
  worker.postMessage({ kind: "interrupt" }); // reaches a cell suspended in `await`
  const timer = setInterval(() => {
    if (!pressInterrupt(id)) clearInterval(timer);
  }, REPRESS_MS);
}

// Sets the interrupt buffer unless cell `id` has ended or has its timeout already; says
// whether the timeout is still pending.
function pressInterrupt(id) {
  if (Atomics.load(control, RUNNING) !== id || Atomics.load(control, DELIVERED) === id) {
    return false;
  }
  if (Atomics.load(interrupt, 0) === 0) {
    Atomics.store(interrupt, 0, 2);
    Atomics.notify(interrupt, 0); // wakes a cell in time.sleep
  }
  return true;
}

worker.postMessage({ kind: "init", config, control, interrupt });
// The first timer of a Deno isolate fires several milliseconds late; pay that now, not in the
// first timeout.
setTimeout(() => {}, 0);

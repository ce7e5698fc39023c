// The Pyodide side of rlm-deno, running in a Worker started by runner.mjs. It boots Pyodide
// (from a memory snapshot when one is given and loads, else normally), loads the guest runtime
// the host sent (rlm_core/bridge/guest.py) and serves it (guest.PyodideDriver) over the
// process's stdin and stdout, or the session's named pipes when it shares the process, read and
// written synchronously from this thread: a tool call writes its frame and blocks reading until
// the reply, so it works from plain synchronous Python and no other thread is woken on the way.
// While a cell runs nobody reads the input, so runner.mjs enforces the cell's timeout and
// interrupts it through Pyodide's interrupt buffer.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

let config;
let control; // Int32Array shared with runner.mjs, which describes its slots
const RUNNING = 0;
const TIMED_OUT = 1;
const DELIVERED = 2;
let interruptBuffer;
let pyodide;
let driver; // the session's rlm_guest.PyodideDriver (a PyProxy)
let handle; // its bound handle_text method
let bootInfo = {};
let currentExec = 0;
let sharedSnapshot = null; // the memory snapshot, read once by runner.mjs for all its sessions

// Loads guest.py (rlm_core/bridge/guest.py, whose PyodideDriver serves the protocol) as module
// rlm_guest, unless the memory snapshot already holds this very source. Loaded once and kept in
// the snapshot; a byte comparison, not a hash, because hashing 30 KB with code the snapshot has
// not run yet costs milliseconds on a pooled start.
const GLUE = String.raw`
import sys, types


def load_guest(blob):
    source = blob.to_bytes()
    module = sys.modules.get("rlm_guest")
    if module is not None and getattr(module, "__rlm_source__", None) == source:
        return module
    module = types.ModuleType("rlm_guest")
    module.__rlm_source__ = source
    exec(compile(source, "<rlm-guest>", "exec"), module.__dict__)
    sys.modules["rlm_guest"] = module
    return module
`;

// Taken before lockDown() removes Deno from the globals; guest code cannot reach a
// module-scope binding. A session sharing its process reads and writes named pipes instead
// (see `init`).
let stdoutWrite = Deno.stdout.writeSync.bind(Deno.stdout);
let stdinRead = Deno.stdin.readSync.bind(Deno.stdin);

function usePipes(pipes) {
  // The host holds both ends of each pipe open, so neither open blocks.
  const input = Deno.openSync(pipes.input, { read: true });
  const output = Deno.openSync(pipes.output, { write: true });
  stdinRead = input.readSync.bind(input);
  stdoutWrite = output.writeSync.bind(output);
}

// Small frames (tool calls, most results) are encoded straight into one reused buffer behind
// their header: no allocation or copy per frame. UTF-8 needs at most 3 bytes per UTF-16 unit.
const frameBuffer = new Uint8Array(64 * 1024);
const frameView = new DataView(frameBuffer.buffer);

function writeAll(bytes) {
  let offset = 0;
  while (offset < bytes.length) offset += stdoutWrite(bytes.subarray(offset));
}

function sendFrame(jsonText) {
  if (12 + jsonText.length * 3 <= frameBuffer.length) {
    const { written } = encoder.encodeInto(jsonText, frameBuffer.subarray(12));
    frameView.setUint32(0, written);
    frameView.setBigUint64(4, 0n);
    writeAll(frameBuffer.subarray(0, 12 + written));
    return;
  }
  const body = encoder.encode(jsonText);
  const header = new Uint8Array(12);
  new DataView(header.buffer).setUint32(0, body.length);
  writeAll(header);
  writeAll(body);
}

// ---- frames from the host: blocking reads through one buffer ----------------------------

const inbox = new Uint8Array(64 * 1024);
let inboxStart = 0;
let inboxEnd = 0;

function readInto(target) {
  let filled = Math.min(inboxEnd - inboxStart, target.length);
  target.set(inbox.subarray(inboxStart, inboxStart + filled));
  inboxStart += filled;
  while (filled < target.length) {
    const want = target.length - filled;
    if (want >= inbox.length) { // large attachments are read in place
      const n = stdinRead(target.subarray(filled));
      if (!n) return false;
      filled += n;
    } else {
      const n = stdinRead(inbox);
      if (!n) return false;
      const take = Math.min(n, want);
      target.set(inbox.subarray(0, take), filled);
      filled += take;
      inboxStart = take;
      inboxEnd = n;
    }
  }
  return true;
}

const inHeader = new Uint8Array(12);
const inHeaderView = new DataView(inHeader.buffer);

// The next frame as { message, text, blob }, or null at the end of the stream.
function readFrame() {
  if (!readInto(inHeader)) return null;
  const jsonLength = inHeaderView.getUint32(0);
  const blobLength = Number(inHeaderView.getBigUint64(4));
  const body = new Uint8Array(jsonLength);
  if (!readInto(body)) return null;
  let blob = null;
  if (blobLength) {
    try {
      blob = new Uint8Array(new ArrayBuffer(blobLength));
    } catch (error) {
      fatal(`cannot allocate ${blobLength} bytes for an attachment: ${error}`);
    }
    if (!readInto(blob)) return null;
  }
  const text = decoder.decode(body);
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    message = null;
  }
  if (typeof message !== "object" || message === null || Array.isArray(message)) {
    fatal("a frame is not a JSON object");
  }
  return { message, text, blob };
}

function post(message, transfer = []) {
  postMessage(message, transfer);
}

// runner.mjs ends the process on these; this thread stops here and reads nothing more.
const parked = new Int32Array(new SharedArrayBuffer(4));

function stop(kind, message) {
  post({ kind, message: String(message) });
  for (;;) Atomics.wait(parked, 0, 0);
}

function fatal(message) {
  stop("fatal", message);
}

// ---- what `import js` sees -------------------------------------------------------------

const SAFE_GLOBALS = [
  "Object", "Array", "Promise", "JSON", "Math", "Date", "Error", "TypeError", "RangeError",
  "SyntaxError", "Symbol", "Map", "Set", "WeakMap", "WeakSet", "Number", "String", "Boolean",
  "BigInt", "ArrayBuffer", "DataView", "Uint8Array", "Int8Array", "Uint16Array", "Int16Array",
  "Uint32Array", "Int32Array", "Float32Array", "Float64Array", "BigInt64Array",
  "BigUint64Array", "Uint8ClampedArray", "TextEncoder", "TextDecoder", "setTimeout",
  "clearTimeout", "setInterval", "clearInterval", "queueMicrotask", "structuredClone", "URL",
  "URLSearchParams", "atob", "btoa", "Intl", "RegExp", "Reflect",
];
const NET_GLOBALS = [
  "fetch", "Request", "Response", "Headers", "AbortController", "AbortSignal", "FormData",
  "Blob", "WebSocket",
];

function makeJsGlobals() {
  const names = config.network ? SAFE_GLOBALS.concat(NET_GLOBALS) : SAFE_GLOBALS;
  const globals = Object.create(null);
  for (const name of names) {
    if (name in globalThis) globals[name] = globalThis[name];
  }
  return globals;
}

// ---- host files made visible (read-only copies) --------------------------------------

function mountHostPath(FS, hostPath) {
  const info = Deno.statSync(hostPath);
  if (info.isDirectory) {
    FS.mkdirTree(hostPath);
    for (const entry of Deno.readDirSync(hostPath)) {
      mountHostPath(FS, `${hostPath.replace(/\/$/, "")}/${entry.name}`);
    }
    FS.chmod(hostPath, 0o555);
  } else if (info.isFile) {
    const parent = hostPath.slice(0, hostPath.lastIndexOf("/")) || "/";
    FS.mkdirTree(parent);
    FS.writeFile(hostPath, Deno.readFileSync(hostPath));
    FS.chmod(hostPath, 0o444);
  }
}

// ---- boot ------------------------------------------------------------------------------

// Writes to file descriptors 1 and 2 (os.write, C extensions) cannot call back into Python
// from Pyodide's stdio handler, so they are kept here, bounded, until the cell's flush hook
// collects them: the first and the last FD_KEEP bytes, and a count of the rest.
const FD_KEEP = 4 * 1024 * 1024;
const fdOutput = [newFdBuffer(), newFdBuffer()];

function newFdBuffer() {
  return { head: [], headLength: 0, tail: new Uint8Array(0), dropped: 0 };
}

function fdWriter(index) {
  return (buffer) => {
    const state = fdOutput[index];
    let bytes = buffer;
    if (state.headLength < FD_KEEP) {
      const take = bytes.subarray(0, FD_KEEP - state.headLength);
      state.head.push(take.slice());
      state.headLength += take.length;
      bytes = bytes.subarray(take.length);
    }
    if (bytes.length) {
      const joined = new Uint8Array(state.tail.length + bytes.length);
      joined.set(state.tail);
      joined.set(bytes, state.tail.length);
      const excess = Math.max(0, joined.length - FD_KEEP);
      state.dropped += excess;
      state.tail = joined.slice(excess);
    }
    return buffer.length;
  };
}

function takeFdOutput(index) {
  const state = fdOutput[index];
  fdOutput[index] = newFdBuffer();
  const head = new Uint8Array(state.headLength);
  let offset = 0;
  for (const part of state.head) {
    head.set(part, offset);
    offset += part.length;
  }
  return [decoder.decode(head), state.dropped, decoder.decode(state.tail)];
}

// The Python heap is Pyodide's wasm memory; Emscripten grows it through Memory.grow, which
// fails softly (malloc returns NULL, Python raises MemoryError) when this throws.
function limitWasmMemory(limit) {
  const grow = WebAssembly.Memory.prototype.grow;
  WebAssembly.Memory.prototype.grow = function (pages) {
    if (this.buffer.byteLength + pages * 65536 > limit) {
      throw new RangeError("the sandbox's memory limit is reached");
    }
    return grow.call(this, pages);
  };
}

// Import name -> Pyodide package, for packages the lock file knows but this directory lacks:
// importing one fails with a message that says so instead of a bare ModuleNotFoundError.
function missingPackages() {
  const missing = {};
  try {
    for (const info of Object.values(pyodide.lockfile.packages)) {
      let present = false;
      try {
        present = Deno.statSync(`${config.pyodideDir}/${info.file_name}`).isFile;
      } catch {
        present = false;
      }
      if (present) continue;
      for (const name of info.imports || []) missing[name] = info.name;
    }
  } catch {
    // no lock file: plain ModuleNotFoundError messages
  }
  return missing;
}

async function loadPackages(names) {
  const errors = [];
  await pyodide.loadPackage(names, {
    messageCallback: () => {},
    errorCallback: (text) => errors.push(text),
  });
  // loadPackage resolves even when a package failed; its errors only reach the callback.
  if (errors.length) {
    throw new Error(
      `cannot load the Pyodide package(s) ${names.join(", ")} from ${config.pyodideDir} ` +
        `(the sandbox does not fetch packages from the network): ${errors.join(" ")}`,
    );
  }
}

// Restoring the memory snapshot copies it whole into fresh (all-zero) WebAssembly memory,
// which makes every page resident, though half of them are zeros. While Pyodide loads, the copy
// of a large array to offset 0 skips the 4 KiB pages that are zero on both sides: the result
// is the same, and those pages stay unallocated (15 MB less per session).
const PAGE = 4096;

function sparseSet(plainSet) {
  return function (source, offset = 0) {
    if (offset !== 0 || !(source instanceof Uint8Array) || source.length < (1 << 20) ||
        source.length > this.length || source.byteOffset % 4 !== 0 || this.byteOffset % 4 !== 0) {
      return plainSet.call(this, source, offset);
    }
    const words = source.length >>> 2;
    const from = new Uint32Array(source.buffer, source.byteOffset, words);
    const to = new Uint32Array(this.buffer, this.byteOffset, words);
    for (let start = 0; start < source.length; start += PAGE) {
      const end = Math.min(start + PAGE, source.length);
      let zero = end % 4 === 0;
      for (let i = start >>> 2; zero && i < end >>> 2; i++) zero = from[i] === 0 && to[i] === 0;
      if (!zero) plainSet.call(this, source.subarray(start, end), start);
    }
  };
}

async function boot() {
  const bootStarted = performance.now();
  if (config.memoryLimit && !config.makeSnapshot) limitWasmMemory(config.memoryLimit);
  const { loadPyodide } = await import(config.pyodideModule);
  const options = {
    indexURL: config.pyodideDir.endsWith("/") ? config.pyodideDir : `${config.pyodideDir}/`,
    jsglobals: makeJsGlobals(),
    env: { HOME: "/home/pyodide" },
    stdout: () => {},
    stderr: () => {},
    checkAPIVersion: true,
  };
  let snapshotError = null;
  if (config.makeSnapshot) {
    pyodide = await loadPyodide({ ...options, _makeSnapshot: true });
  } else if (config.snapshot) {
    const plainSet = Int8Array.prototype.set;
    let bytes = null;
    try {
      bytes = sharedSnapshot || Deno.readFileSync(config.snapshot);
      Int8Array.prototype.set = sparseSet(plainSet);
      // The snapshot's file name hashes this file and guest.py, so its glue is this glue.
      pyodide = await loadPyodide({ ...options, _loadSnapshot: bytes });
    } catch (error) {
      snapshotError = String(error && error.message || error).slice(0, 500);
      pyodide = undefined;
    } finally {
      Int8Array.prototype.set = plainSet;
      // Pyodide keeps its options, this 30 MB copy among them: detach the buffer to free it
      // (the shared copy stays, for the next session in this process).
      if (bytes && !(bytes.buffer instanceof SharedArrayBuffer)) {
        structuredClone(bytes.buffer, { transfer: [bytes.buffer] });
      }
    }
  }
  if (pyodide === undefined) pyodide = await loadPyodide(options);
  bootInfo.pyodide_boot_ms = Math.round(performance.now() - bootStarted);
  bootInfo.snapshot = Boolean(config.snapshot) && snapshotError === null && !config.makeSnapshot;
  bootInfo.snapshot_error = snapshotError;
  const haveGlue = pyodide.runPython("import sys; '_rlm_deno_glue' in sys.modules");
  if (!haveGlue) {
    const glue = pyodide.runPython(
      "import types, sys; m = types.ModuleType('_rlm_deno_glue'); sys.modules[m.__name__] = m; m",
    );
    pyodide.runPython(GLUE, { globals: glue.__dict__ });
    glue.destroy();
  }
  pyodide.setStdout({ write: fdWriter(0), isatty: false });
  pyodide.setStderr({ write: fdWriter(1), isatty: false });
  // Pyodide's default stdin would read the process's stdin, which carries the protocol: a
  // cell's input() would block there and swallow the host's frames. It reads end of file, as
  // the CPython guest's /dev/null does.
  pyodide.setStdin({ stdin: () => null, isatty: false });
  if (!config.makeSnapshot) {
    pyodide.setInterruptBuffer(interruptBuffer);
    for (const path of config.mounts || []) {
      try {
        mountHostPath(pyodide.FS, path);
      } catch (error) {
        throw new Error(`cannot make host path ${path} visible inside: ${error.message}`);
      }
    }
    if (config.packages && config.packages.length) await loadPackages(config.packages);
    importHints = missingPackages();
    const guest = pyodide.runPython("import sys; sys.modules.get('rlm_guest')");
    if (guest) {
      // The driver the snapshot's guest gives the next session is built now, and a throwaway
      // one takes the route the host's first cell takes (JSON frame in, result text out), so
      // that code is compiled while the runner waits in the pool; its answer is dropped.
      const warm = guest.PyodideDriver.prepare(JS_API);
      const cell = { t: "exec", id: 0, code: "x = [1, 'a']\nprint(x)\nx", max_output_chars: 1000 };
      warm.handle_text(JSON.stringify(cell), undefined);
      takeFdOutput(0);
      takeFdOutput(1);
      warm.destroy();
      guest.destroy();
    }
    bootInfo.python = pyodide.runPython("import platform; platform.python_version()");
  }
}

let importHints = {};

function lockDown() {
  // Defence in depth: guest code can reach globalThis through any function's constructor, so
  // take away the Deno namespace and the real console (whose output would go to the protocol's
  // stdout). The Deno permission flags remain the boundary.
  const quiet = () => {};
  globalThis.console = Object.freeze({
    log: quiet, info: quiet, warn: quiet, error: quiet, debug: quiet, trace: quiet, dir: quiet,
  });
  // `process` (Deno's Node compatibility, which Pyodide used while booting) tells the host's
  // working directory, the runner's arguments and the deno executable's path.
  for (const name of ["Deno", "process"]) {
    try {
      delete globalThis[name];
    } catch {
      // not configurable in this Deno version; the permission flags still hold
    }
  }
}

// ---- frames ----------------------------------------------------------------------------

function sleepInterruptibly(seconds) {
  const deadline = performance.now() + seconds * 1000;
  for (;;) {
    if (Atomics.load(interruptBuffer, 0) !== 0) {
      Atomics.store(interruptBuffer, 0, 0);
      if (takeInterrupt()) return true;
    }
    const left = deadline - performance.now();
    if (left <= 0) return false;
    Atomics.wait(interruptBuffer, 0, 0, left);
  }
}

function timeoutRequested() {
  return currentExec !== 0 && Atomics.load(control, TIMED_OUT) === currentExec;
}

// True once per timed-out cell: the caller raises the timeout in it, and runner.mjs stops
// pressing the interrupt.
function takeInterrupt() {
  if (!timeoutRequested() || Atomics.load(control, DELIVERED) === currentExec) return false;
  Atomics.store(control, DELIVERED, currentExec);
  return true;
}

// Sends a tool call and reads frames until its reply (its JSON text), or undefined when the
// host's interrupt for this cell arrives first.
function callTool(id, text) {
  sendFrame(text);
  for (;;) {
    const frame = readFrame();
    if (frame === null) stop("exit", "");
    const { message } = frame;
    if (message.t === "reply") {
      if (message.id === id) return frame.text;
    } else if (message.t === "interrupt") {
      if (currentExec !== 0 && message.id === currentExec) {
        Atomics.store(control, TIMED_OUT, currentExec);
        if (takeInterrupt()) return undefined;
      }
    } else {
      fatal(`a ${JSON.stringify(message.t)} frame arrived while a tool call waited`);
    }
    // otherwise a reply or interrupt for a call or cell that has ended: dropped
  }
}

// What the Python side may call; handed to each PyodideDriver.
const JS_API = {
  timeoutRequested: (...args) => timeoutRequested(...args),
  takeInterrupt: (...args) => takeInterrupt(...args),
  callTool: (...args) => callTool(...args),
  takeFdOutput: (...args) => takeFdOutput(...args),
  importHint: (...args) => importHint(...args),
  sleepInterruptibly: (...args) => sleepInterruptibly(...args),
};

async function handleBoot(message, blob) {
  const started = performance.now();
  const glue = pyodide.pyimport("_rlm_deno_glue");
  if (config.makeSnapshot) {
    glue.load_guest(blob);
    glue.destroy();
    const bytes = pyodide.makeMemorySnapshot();
    post({ kind: "snapshot", bytes }, [bytes.buffer]);
    return;
  }
  if (message.env && Object.keys(message.env).length) {
    const environ = pyodide.pyimport("os").environ;
    for (const [key, value] of Object.entries(message.env)) environ.__setitem__(key, value);
    environ.destroy();
  }
  const guest = glue.load_guest(blob);
  driver = guest.PyodideDriver.take(JS_API);
  handle = driver.handle_text;
  guest.destroy();
  const ready = {
    t: "ready",
    protocol: message.protocol,
    implementation: "Pyodide " + pyodide.version,
    pid: 0,
    ...bootInfo,
    boot_frame_ms: 0,
  };
  glue.destroy();
  lockDown();
  ready.boot_frame_ms = Math.round((performance.now() - started) * 100) / 100;
  sendFrame(JSON.stringify(ready));
}

function importHint(name) {
  return Object.hasOwn(importHints, name) ? importHints[name] : undefined;
}

const ASYNC_CODE = /\b(await|async)\b/;
let awaitingCell = false;

function cancelTasks() {
  // The timeout is delivered by cancelling; a signal still pending would only be dropped.
  Atomics.store(interruptBuffer, 0, 0);
  try {
    driver.cancel_tasks();
  } catch {
    // the host kills the process after its grace period
  }
}

function startCell(message) {
  currentExec = message.id;
  takeFdOutput(0);
  takeFdOutput(1);
  Atomics.store(control, TIMED_OUT, 0);
  Atomics.store(interruptBuffer, 0, 0);
  Atomics.store(control, RUNNING, currentExec);
  const timeout = message.timeout;
  if (typeof timeout === "number" && Number.isFinite(timeout) && timeout > 0) {
    const at = performance.timeOrigin + performance.now() + timeout * 1000;
    post({ kind: "deadline", id: currentExec, at });
  }
}

function endCell() {
  currentExec = 0;
  Atomics.store(control, RUNNING, 0);
  Atomics.store(interruptBuffer, 0, 0);
}

async function handleFrame(message, text, blob) {
  const isExec = message.t === "exec";
  if (isExec) startCell(message);
  const pyBlob = blob === null ? undefined : blob;
  let answer;
  try {
    // A cell with top-level `await`/`async` is entered through callPromising so that it can
    // stack-switch (JSPI); everything else takes the cheaper synchronous call.
    if (isExec && ASYNC_CODE.test(message.code)) {
      awaitingCell = true;
      try {
        answer = await handle.callPromising(text, pyBlob);
      } finally {
        awaitingCell = false;
      }
    } else {
      answer = handle(text, pyBlob);
    }
  } finally {
    if (isExec) endCell();
  }
  if (answer !== undefined && answer !== null) sendFrame(answer);
}

// Reads and answers the host's frames until the end of the stream or `shutdown`.
async function serve() {
  let env = {};
  for (;;) {
    const frame = readFrame();
    if (frame === null) stop("exit", "");
    const { message, text, blob } = frame;
    switch (message.t) {
      case "deno-config":
        env = message.env || {};
        break;
      case "boot":
        message.env = env;
        await handleBoot(message, blob);
        if (config.makeSnapshot) return; // runner.mjs writes it and exits
        break;
      case "configure":
      case "register":
      case "vars":
      case "exec":
        await handleFrame(message, text, blob);
        break;
      case "reply":
      case "interrupt":
        break; // for a call or a cell that has ended
      case "shutdown":
        stop("exit", "");
        break;
      default:
        fatal(`unknown message type ${JSON.stringify(message.t)}`);
    }
  }
}

// Pyodide cannot recover from a stack overflow inside WebAssembly (deep C-level recursion:
// repr or json of data nested thousands deep, a recursion limit raised far above 1000).
function describeFailure(error) {
  const text = String(error && error.stack || error);
  if (!text.includes("Maximum call stack size exceeded")) return text;
  return "a cell recursed too deeply for the WebAssembly stack, which Pyodide cannot recover " +
    "from; keep sys.setrecursionlimit near its default and data nested less than a few " +
    `thousand levels deep (${text.slice(0, 200)})`;
}

self.onmessage = (event) => {
  const data = event.data;
  if (data.kind === "init") {
    config = data.config;
    sharedSnapshot = data.snapshot || null;
    control = data.control;
    interruptBuffer = data.interrupt;
    try {
      if (data.pipes) usePipes(data.pipes);
    } catch (error) {
      fatal(`cannot open the session's pipes: ${error}`);
    }
    boot().then(serve).catch((error) => fatal(describeFailure(error)));
  } else if (data.kind === "interrupt") {
    // Only reaches this thread while a cell is suspended in `await` (otherwise Python holds the
    // thread and the interrupt buffer does the job): cancel its tasks so the cell resumes.
    if (awaitingCell && takeInterrupt()) cancelTasks();
  }
};

// The rlm run viewer: reads the JSONL events embedded in the page (or polled in --follow mode)
// and draws the run tree. Only what is open is in the DOM: a step's details, and the child runs
// it started, are built the first time the step is opened, so a log of thousands of steps opens
// at once. No dependencies, no network besides the --follow poll to the page's own origin.
"use strict";

(function () {
  const CONFIG = JSON.parse(document.getElementById("rlm-config").textContent);
  const FOLD_CHARS = 1500;
  const FOLD_LINES = 24;
  const STEP_CHUNK = 100;
  const RESULT_LIMIT = 200;
  const BUILTIN_TOOLS = new Set(["llm_query", "llm_query_batched", "rlm_query", "SUBMIT"]);

  // ---- model ----------------------------------------------------------------------------

  const model = {
    runs: new Map(), // run_id -> run
    order: [], // run ids in start order
    roots: [],
    t0: null,
    ledger: [], // {t, calls, tokens, usd}
    budget: null,
    events: 0,
  };

  function newRun(id) {
    return {
      id, parent: null, path: String(id), depth: 0, start: null, end: null, steps: [],
      pending: new Map(), // step index -> sub_call events of a step still running
      tools: new Map(), // step index -> tool_call events
      children: new Map(), // step index -> [child runs]
      parentStep: null, codeLine: null, restarts: [], el: null,
    };
  }

  function runOf(id) {
    let run = model.runs.get(id);
    if (!run) { run = newRun(id); model.runs.set(id, run); model.order.push(id); }
    return run;
  }

  function ingest(events) {
    for (const ev of events) {
      model.events += 1;
      if (typeof ev.ts === "number" && model.t0 === null) model.t0 = ev.ts;
      const run = runOf(ev.run_id);
      if (ev.event === "run_start") {
        run.start = ev;
        run.depth = ev.depth || 0;
        run.path = ev.path || String(ev.run_id);
        run.parent = ev.parent_id == null ? null : ev.parent_id;
        if (run.parent === null) {
          model.roots.push(run);
          if (ev.budget) model.budget = ev.budget;
        } else {
          const parent = runOf(run.parent);
          // v1 logs have no parent_step: a child starts during the parent's next step.
          run.parentStep = ev.parent_step != null ? ev.parent_step : parent.steps.length + 1;
          run.codeLine = ev.code_line == null ? null : ev.code_line;
          if (!parent.children.has(run.parentStep)) parent.children.set(run.parentStep, []);
          parent.children.get(run.parentStep).push(run);
        }
      } else if (ev.event === "step") {
        const step = ev.step;
        step._ts = ev.ts;
        step._run = run;
        run.steps.push(step);
        run.pending.delete(step.index);
        if (ev.ledger && typeof ev.ts === "number") {
          model.ledger.push({
            t: ev.ts - model.t0, calls: ev.ledger.calls, tokens: ev.ledger.total_tokens,
            usd: ev.ledger.cost_usd || 0,
          });
        }
      } else if (ev.event === "sub_call") {
        const idx = ev.step == null ? 0 : ev.step;
        if (!run.pending.has(idx)) run.pending.set(idx, []);
        run.pending.get(idx).push(ev.call);
      } else if (ev.event === "tool_call") {
        if (!run.tools.has(ev.step)) run.tools.set(ev.step, []);
        run.tools.get(ev.step).push(ev);
      } else if (ev.event === "run_end") {
        run.end = ev;
      } else if (ev.event === "session_restart") {
        run.restarts.push(ev);
      }
    }
  }

  // ---- small helpers --------------------------------------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v == null || v === false) continue;
        if (k === "class") node.className = v;
        else if (k === "text") node.textContent = v;
        else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
        else node.setAttribute(k, v === true ? "" : v);
      }
    }
    for (const c of children) {
      if (c == null || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  const fmtInt = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));
  const fmtSec = (s) => (s == null ? "–" : s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`);
  const fmtUsd = (u) => (u == null ? "–" : `$${u < 0.01 && u > 0 ? u.toFixed(5) : u.toFixed(4)}`);
  const tokensOf = (u) => (u ? (u.prompt_tokens || 0) + (u.completion_tokens || 0) : 0);
  const isTruncated = (s) => !!s && typeof s.stdout === "string" && s.output_chars > s.stdout.length + 0 &&
    /\[[\d,]+ characters omitted\]/.test(s.stdout);

  function badge(text, kind, title) {
    return el("span", { class: `badge ${kind || ""}`, title }, text);
  }

  // Long text: the head, and a button that shows all of it.
  function folded(text, cls, maxChars, maxLines) {
    text = text == null ? "" : String(text);
    const lines = text.split("\n");
    const pre = el("pre", { class: cls || null });
    const limitChars = maxChars || FOLD_CHARS;
    const limitLines = maxLines || FOLD_LINES;
    if (text.length <= limitChars && lines.length <= limitLines) {
      pre.textContent = text;
      return pre;
    }
    let head = lines.slice(0, limitLines).join("\n");
    if (head.length > limitChars) head = head.slice(0, limitChars);
    pre.textContent = head + "\n…";
    const button = el("button", { class: "more show-all", type: "button" },
      `show all (${fmtInt(text.length)} chars, ${fmtInt(lines.length)} lines)`);
    button.addEventListener("click", () => { pre.textContent = text; button.remove(); });
    return el("div", { class: "folded" }, pre, button);
  }

  // ---- a tiny Python highlighter ----------------------------------------------------------

  const KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif " +
    "else except finally for from global if import in is lambda nonlocal not or pass raise return try " +
    "while with yield match case").split(" "));
  const BUILTINS = new Set(("print len range enumerate zip sorted sum min max map filter list dict set " +
    "tuple str int float bool isinstance open any all repr type abs round reversed").split(" "));
  const TOKEN = /(#[^\n]*)|([rRbBuUfF]{0,2}(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))|(\b\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?\b)|([A-Za-z_]\w*)(\s*\()?/g;

  // Returns one array of nodes per source line.
  function highlight(code, toolNames) {
    const lines = [[]];
    const push = (text, cls) => {
      const parts = text.split("\n");
      parts.forEach((part, i) => {
        if (i > 0) lines.push([]);
        if (part) lines[lines.length - 1].push(cls ? el("span", { class: cls }, part) : document.createTextNode(part));
      });
    };
    let last = 0;
    TOKEN.lastIndex = 0;
    let m;
    while ((m = TOKEN.exec(code)) !== null) {
      if (m[0] === "") { TOKEN.lastIndex += 1; continue; }
      if (m.index > last) push(code.slice(last, m.index));
      if (m[1]) push(m[1], "tok-com");
      else if (m[2]) push(m[2], "tok-str");
      else if (m[3]) push(m[3], "tok-num");
      else if (m[4]) {
        const word = m[4];
        let cls = null;
        if (KEYWORDS.has(word)) cls = "tok-kw";
        else if (m[5] && (BUILTIN_TOOLS.has(word) || toolNames.has(word))) cls = "tok-tool";
        else if (m[5] && BUILTINS.has(word)) cls = "tok-bi";
        else if (m[5]) cls = "tok-fn";
        push(word, cls);
        if (m[5]) push(m[5]);
      }
      last = TOKEN.lastIndex;
    }
    if (last < code.length) push(code.slice(last));
    return lines;
  }

  // ---- summary, outputs, budget ---------------------------------------------------------------

  function root() { return model.roots[0] || null; }

  function renderSummary() {
    const box = document.getElementById("summary");
    box.replaceChildren();
    const r = root();
    if (!r) { box.append(el("div", { class: "empty" }, CONFIG.follow ? "Waiting for the run to start…" : "No run in this log.")); return; }
    document.getElementById("run-title").textContent = `${CONFIG.title} — ${r.start ? r.start.signature : ""}`;
    let steps = 0; let runs = 0;
    for (const run of model.runs.values()) { steps += run.steps.length; runs += 1; }
    const end = r.end;
    const usage = end && end.usage ? end.usage : null;
    const last = model.ledger.length ? model.ledger[model.ledger.length - 1] : null;
    let status = "running"; let cls = "status-warn";
    if (end) {
      if (end.error) { status = "failed"; cls = "status-bad"; }
      else if (end.extracted) { status = "extracted"; cls = "status-warn"; }
      else { status = "submitted"; cls = "status-ok"; }
    }
    const card = (k, v, c) => el("div", { class: "card" }, el("div", { class: "k" }, k), el("div", { class: `v ${c || ""}`, title: String(v) }, v));
    box.append(el("div", { class: "cards" },
      card("status", status, cls),
      card("model", r.start ? r.start.model : "–", "small"),
      card("steps", `${fmtInt(steps)} in ${fmtInt(runs)} run${runs === 1 ? "" : "s"}`),
      card("model calls", fmtInt(usage ? usage.calls : last && last.calls)),
      card("tokens", fmtInt(usage ? usage.total_tokens : last && last.tokens)),
      card("cost", fmtUsd(usage ? usage.cost_usd : last && last.usd)),
      card("wall time", fmtSec(usage ? usage.wall_time_s : last && last.t)),
    ));
    if (end) {
      const panel = el("div", { class: "panel outputs" }, el("h2", null, "Final outputs"));
      if (end.error) {
        panel.append(el("pre", { class: "err" }, end.error));
      } else {
        const kv = el("div", { class: "kv" });
        for (const [k, v] of Object.entries(end.outputs || {})) {
          kv.append(el("div", { class: "k" }, k), folded(typeof v === "string" ? v : JSON.stringify(v, null, 2)));
        }
        panel.append(kv);
      }
      const final = r.steps.find((s) => s.final);
      const rejected = r.steps.filter((s) => s.submitted && !s.final);
      const note = end.error ? null : end.extracted
        ? "Extracted from the history after the step budget ran out (no valid SUBMIT)."
        : `Validated against the signature at step ${final ? final.index : "?"}.`;
      if (note) panel.append(el("div", { class: `from ${end.extracted ? "status-warn" : "status-ok"}` }, note));
      for (const s of rejected) {
        panel.append(el("div", { class: "from status-bad" }, `Step ${s.index}: SUBMIT rejected — ${s.error || ""}`));
      }
      box.append(panel);
    }
  }

  function chart(label, key, limit) {
    const pts = model.ledger;
    const w = 300; const h = 70;
    const maxT = Math.max(1e-9, ...pts.map((p) => p.t));
    const maxV = Math.max(1e-9, limit || 0, ...pts.map((p) => p[key]));
    const xy = (p) => `${((p.t / maxT) * (w - 4) + 2).toFixed(1)},${(h - 4 - (p[key] / maxV) * (h - 8)).toFixed(1)}`;
    const ns = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(ns, "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", ["2," + (h - 4), ...pts.map(xy)].join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", "#2f5fd0");
    line.setAttribute("stroke-width", "2");
    line.setAttribute("vector-effect", "non-scaling-stroke");
    svg.append(line);
    if (limit) {
      const y = (h - 4 - (limit / maxV) * (h - 8)).toFixed(1);
      const lim = document.createElementNS(ns, "line");
      lim.setAttribute("x1", "0"); lim.setAttribute("x2", String(w));
      lim.setAttribute("y1", y); lim.setAttribute("y2", y);
      lim.setAttribute("class", "limit");
      lim.setAttribute("vector-effect", "non-scaling-stroke");
      svg.append(lim);
    }
    const lastV = pts.length ? pts[pts.length - 1][key] : 0;
    const shown = key === "usd" ? fmtUsd(lastV) : fmtInt(lastV);
    const limitText = limit ? ` of ${key === "usd" ? fmtUsd(limit) : fmtInt(limit)}` : "";
    return el("div", { class: "chart" }, el("div", { class: "k" }, `${label}: ${shown}${limitText} over ${fmtSec(maxT)}`), svg);
  }

  function renderBudget() {
    const box = document.getElementById("budget");
    box.replaceChildren();
    if (model.ledger.length < 1) return;
    const b = model.budget || {};
    box.append(el("div", { class: "charts" },
      chart("model calls", "calls", null),
      chart("tokens", "tokens", b.max_tokens),
      chart("cost", "usd", b.max_cost_usd)));
  }

  // ---- the run tree -------------------------------------------------------------------------

  function runHead(run) {
    const end = run.end;
    const bits = [el("span", { class: "twisty" }, "▸"),
      el("span", { class: "name" }, run.parent === null ? "root run" : `child run ${run.path}`),
      el("span", { class: "muted" }, run.start ? run.start.model : "")];
    bits.push(badge(`${run.steps.length} step${run.steps.length === 1 ? "" : "s"}`));
    if (end && end.error) bits.push(badge("failed", "bad", end.error));
    else if (end && end.extracted) bits.push(badge("extracted", "warn"));
    else if (end) bits.push(badge("submitted", "ok"));
    else bits.push(badge("running…", "warn"));
    if (end && end.outputs && end.outputs.answer !== undefined && run.parent !== null) {
      const answer = String(typeof end.outputs.answer === "string" ? end.outputs.answer : JSON.stringify(end.outputs.answer));
      bits.push(el("span", { class: "gist" }, `→ ${answer.slice(0, 120)}`));
    }
    return el("div", { class: "run-head" }, ...bits);
  }

  function renderRun(run) {
    const node = el("div", { class: `run depth-${Math.min(run.depth, 3)}`, "data-run": run.path });
    const head = runHead(run);
    head.addEventListener("click", () => node.classList.toggle("collapsed"));
    const body = el("div", { class: "run-body" });
    node.append(head, body);
    run.el = node;
    run.body = body;
    run.shown = 0;
    run.moreButton = null;
    showMoreSteps(run);
    return node;
  }

  function showMoreSteps(run) {
    if (run.moreButton) { run.moreButton.remove(); run.moreButton = null; }
    const upto = Math.min(run.steps.length, run.shown + STEP_CHUNK);
    for (let i = run.shown; i < upto; i++) run.body.append(renderStep(run.steps[i]));
    run.shown = upto;
    if (run.shown < run.steps.length) {
      const left = run.steps.length - run.shown;
      run.moreButton = el("button", { class: "more show-steps", type: "button" }, `show ${Math.min(left, STEP_CHUNK)} more steps (${fmtInt(left)} left)`);
      run.moreButton.addEventListener("click", () => showMoreSteps(run));
      run.body.append(run.moreButton);
    }
  }

  function stepGist(step) {
    const text = step.kind === "code" ? step.code : step.kind === "extract" ? step.reasoning : step.error || step.output;
    const first = String(text || "").split("\n").find((l) => l.trim() && !l.trim().startsWith("#")) || "";
    return first.trim().slice(0, 140);
  }

  function renderStep(step, withPath) {
    const run = step._run;
    const kids = run.children.get(step.index) || [];
    const calls = step.sub_calls || [];
    const llm = calls.filter((c) => c.kind === "llm_query").length;
    const head = el("div", { class: "step-head" },
      el("span", { class: "twisty" }, "▸"),
      el("span", { class: "idx" }, withPath ? `${run.parent === null ? "root" : run.path} · step ${step.index}` : `step ${step.index}`),
      badge(step.kind),
      badge(`${fmtSec(step.lm_duration_s)} model · ${fmtSec(step.duration_s)} cell`),
      llm ? badge(`${llm} sub-call${llm === 1 ? "" : "s"}`) : null,
      kids.length ? badge(`${kids.length} child run${kids.length === 1 ? "" : "s"}`, "child") : null,
      step.error ? badge(step.final ? "error" : "error", "bad", step.error) : null,
      isTruncated(step) ? badge("truncated", "warn", `${fmtInt(step.output_chars)} chars printed`) : null,
      step.session_restarted ? badge("sandbox replaced", "bad") : null,
      step.final ? badge("final", "ok") : null,
      el("span", { class: "gist" }, stepGist(step)));
    const node = el("div", { class: "step", "data-step": String(step.index), "data-run": run.path });
    node.append(head);
    head.addEventListener("click", () => toggleStep(node, step));
    node._step = step;
    return node;
  }

  function toggleStep(node, step, open) {
    const want = open === undefined ? !node.classList.contains("open") : open;
    if (want === node.classList.contains("open")) return;
    if (want) {
      if (!node._body) { node._body = renderStepBody(step); node.append(node._body); }
      node._body.hidden = false;
      node.classList.add("open");
    } else {
      if (node._body) node._body.hidden = true;
      node.classList.remove("open");
    }
  }

  function renderStepBody(step) {
    const run = step._run;
    const body = el("div", { class: "step-body" });
    const kids = run.children.get(step.index) || [];
    if (step.reasoning) {
      body.append(el("div", { class: "label" }, step.kind === "extract" ? "reply" : "reasoning"), folded(step.reasoning, "reasoning"));
    }
    if (step.code) {
      body.append(el("div", { class: "label" }, "code"), renderCode(step, kids));
    }
    const out = (label, text, cls) => { if (text != null && text !== "") body.append(el("div", { class: "label" }, label), folded(text, cls)); };
    if (step.kind === "code") {
      const truncated = isTruncated(step) ? ` — truncated: ${fmtInt(step.output_chars)} chars printed, the model saw head and tail` : "";
      out(`stdout${truncated}`, step.stdout);
      out("stderr", step.stderr, "err");
      out("value", step.value);
      if (step.kind === "code" && !step.stdout && !step.stderr && step.value == null && !step.error) out("stdout", "(no output)");
    } else if (step.output) {
      out("shown to the model", step.output);
    }
    out("error", step.error, "err");
    if (step.submitted) out(step.final ? "submitted (valid)" : "submitted (rejected)", JSON.stringify(step.submitted, null, 2));
    const tools = run.tools.get(step.index) || [];
    if (tools.length) {
      const table = el("table", { class: "calls" }, el("tr", null, ...["tool", "line", "seconds", "error"].map((h) => el("th", null, h))));
      for (const t of tools) {
        table.append(el("tr", null, el("td", null, `${t.name}()`), el("td", { class: "num" }, t.code_line || "–"),
          el("td", { class: "num" }, fmtSec(t.duration_s)), el("td", null, t.error || "")));
      }
      body.append(el("div", { class: "label" }, "host tool calls"), table);
    }
    const calls = (step.sub_calls && step.sub_calls.length ? step.sub_calls : run.pending.get(step.index) || [])
      .filter((c) => c.kind === "llm_query");
    if (calls.length) body.append(el("div", { class: "label" }, `sub-calls (${calls.length})`), renderCalls(calls));
    if (kids.length) {
      const box = el("div", { class: "children" });
      for (const kid of kids) {
        const line = kid.codeLine ? step.code.split("\n")[kid.codeLine - 1] : null;
        box.append(el("div", { class: "from" }, `child run ${kid.path}, started `,
          line ? el("span", null, `by line ${kid.codeLine}: `, el("code", null, line.trim())) : "by this step"));
        box.append(kid.el && kid.el.isConnected ? kid.el : renderRun(kid));
      }
      body.append(el("div", { class: "label" }, `child runs (${kids.length})`), box);
    }
    return body;
  }

  function renderCode(step, kids) {
    const run = step._run;
    const toolNames = new Set();
    for (const t of run.tools.values()) for (const c of t) toolNames.add(c.name);
    const notes = new Map(); // line -> [text, child run]
    for (const kid of kids) if (kid.codeLine) {
      if (!notes.has(kid.codeLine)) notes.set(kid.codeLine, []);
      notes.get(kid.codeLine).push(kid);
    }
    const pre = el("pre", { class: "code" });
    highlight(step.code, toolNames).forEach((nodes, i) => {
      const line = el("span", { class: "ln" }, ...nodes);
      const here = notes.get(i + 1);
      if (here) {
        line.classList.add("marked");
        for (const kid of here) {
          const note = el("span", { class: "note", title: "show the child run" }, `↳ child run ${kid.path}`);
          note.addEventListener("click", () => { if (kid.el) { kid.el.scrollIntoView({ block: "center" }); kid.el.classList.add("flash"); } });
          line.append(note);
        }
      }
      pre.append(line);
    });
    return pre;
  }

  function callRow(c, slot) {
    const u = c.usage || {};
    return el("tr", null,
      el("td", { class: "num" }, slot),
      el("td", null, folded(c.prompt, null, 300, 4)),
      el("td", null, c.error ? folded(c.error, "err", 300, 4) : folded(c.response, null, 300, 4)),
      el("td", null, c.model || ""),
      el("td", { class: "num" }, fmtInt(tokensOf(u))),
      el("td", { class: "num" }, fmtUsd(u.cost_usd)),
      el("td", { class: "num" }, fmtSec(c.duration_s)));
  }

  function callTable(rows) {
    return el("table", { class: "calls" },
      el("tr", null, ...["#", "prompt", "answer", "model", "tokens", "USD", "seconds"].map((h) => el("th", null, h))),
      ...rows);
  }

  function renderCalls(calls) {
    const box = el("div");
    const batches = new Map();
    const single = [];
    for (const c of calls) {
      if (c.batch) { if (!batches.has(c.batch)) batches.set(c.batch, []); batches.get(c.batch).push(c); }
      else single.push(c);
    }
    if (single.length) box.append(callTable(single.map((c, i) => callRow(c, c.code_line ? `${i + 1} (line ${c.code_line})` : i + 1))));
    for (const [key, group] of batches) {
      const slotOf = (c) => Number(String(c.site || "").split(".").pop());
      group.sort((a, b) => slotOf(a) - slotOf(b));
      const secs = Math.max(...group.map((c) => c.duration_s || 0));
      const tokens = group.reduce((n, c) => n + tokensOf(c.usage), 0);
      const line = group[0].code_line ? `, line ${group[0].code_line}` : "";
      box.append(el("div", { class: "batch" },
        el("div", { class: "batch-head" }, `llm_query_batched · ${group.length} prompts${line} · ${fmtInt(tokens)} tokens · ${fmtSec(secs)} (concurrent)`),
        callTable(group.map((c) => callRow(c, Number.isFinite(slotOf(c)) ? slotOf(c) : "")))));
      void key;
    }
    return box;
  }

  function renderTree() {
    const tree = document.getElementById("tree");
    tree.replaceChildren();
    if (!model.roots.length) return;
    for (const r of model.roots) tree.append(renderRun(r));
  }

  // ---- search -------------------------------------------------------------------------------

  function haystack(step) {
    if (step._hay === undefined) {
      const parts = [step.reasoning, step.code, step.stdout, step.stderr, step.value, step.error, step.output];
      for (const c of step.sub_calls || []) parts.push(c.prompt, c.response, c.error);
      if (step.submitted) parts.push(JSON.stringify(step.submitted));
      step._hay = parts.filter(Boolean).join("\n").toLowerCase();
    }
    return step._hay;
  }

  function runSearch(query) {
    const results = document.getElementById("results");
    const tree = document.getElementById("tree");
    const q = query.trim().toLowerCase();
    if (!q) { results.hidden = true; results.replaceChildren(); tree.hidden = false; return; }
    const matches = [];
    for (const id of model.order) {
      const run = model.runs.get(id);
      for (const s of run.steps) if (haystack(s).includes(q)) matches.push(s);
    }
    results.replaceChildren(el("div", { class: "label", id: "result-count" },
      `${fmtInt(matches.length)} step${matches.length === 1 ? "" : "s"} match “${query.trim()}”`));
    const list = el("div", { class: "run" });
    for (const s of matches.slice(0, RESULT_LIMIT)) list.append(renderStep(s, true));
    if (matches.length > RESULT_LIMIT) list.append(el("div", { class: "empty" }, `${fmtInt(matches.length - RESULT_LIMIT)} more; refine the search`));
    if (matches.length) results.append(list);
    results.hidden = false;
    tree.hidden = true;
  }

  // ---- wiring -------------------------------------------------------------------------------

  function renderAll() {
    renderSummary();
    renderBudget();
    renderTree();
    const q = document.getElementById("search").value;
    if (q) runSearch(q);
  }

  let searchTimer = null;
  document.getElementById("search").addEventListener("input", (e) => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => runSearch(e.target.value), 120);
  });
  document.getElementById("expand-all").addEventListener("click", () => {
    const scope = document.getElementById("results").hidden ? document.getElementById("tree") : document.getElementById("results");
    for (const r of scope.querySelectorAll(".run.collapsed")) r.classList.remove("collapsed");
    // Only the steps already drawn: expanding thousands at once would build them all.
    for (const node of Array.from(scope.querySelectorAll(".step")).slice(0, 300)) toggleStep(node, node._step, true);
  });
  document.getElementById("collapse-all").addEventListener("click", () => {
    for (const node of document.querySelectorAll(".step.open")) toggleStep(node, node._step, false);
  });

  ingest(JSON.parse(document.getElementById("rlm-data").textContent));
  renderAll();

  if (CONFIG.follow) {
    // --follow: poll the local server for events appended since the last read, and redraw
    // what changed while keeping open steps open.
    document.getElementById("live").hidden = false;
    let offset = 0;
    const poll = async () => {
      try {
        const response = await fetch(`${CONFIG.follow}?offset=${offset}`, { cache: "no-store" });
        const data = await response.json();
        offset = data.offset;
        if (data.events.length) {
          const open = new Set(Array.from(document.querySelectorAll(".step.open")).map((n) => `${n.dataset.run}#${n.dataset.step}`));
          ingest(data.events);
          renderAll();
          for (const n of document.querySelectorAll(".step")) if (open.has(`${n.dataset.run}#${n.dataset.step}`)) toggleStep(n, n._step, true);
        }
        const r = root();
        if (r && r.end) { document.getElementById("live").textContent = "● finished"; return; }
      } catch (err) {
        document.getElementById("live").textContent = "● disconnected";
        return;
      }
      setTimeout(poll, 1000);
    };
    poll();
  }
  window.__rlmViewer = { model, ready: true };
})();

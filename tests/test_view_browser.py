"""The run viewer in a real browser (Debian's chromium through chromedriver and WebDriver).

A realistic run over the bundled observatory log (a scripted model, the subprocess backend) is
rendered with ``rlm view``; the page must show the tree, a nested child run under the line that
started it, a truncated output that expands, and search that filters steps, without one
JavaScript error. Without chromium the tests skip, or fail when ``RLM_REQUIRE_BROWSER=1`` (CI).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from rlm_core.cli import main as rlm_main
from rlm_core.errors import OutputValidationError
from rlm_core.lm import Message, Usage
from rlm_core.observe.viewer import FollowServer
from rlm_core.rlm import RLM
from rlm_core.testing import ScriptedLM

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "examples" / "data" / "observatory_log.txt"
REQUIRE_ENV = "RLM_REQUIRE_BROWSER"

# Collects errors before any page script runs (installed through the DevTools protocol).
ERROR_HOOK = """
window.__errors = [];
window.addEventListener('error', e => window.__errors.push(String(e.message || e)));
window.addEventListener('unhandledrejection', e => window.__errors.push('rejection: ' + e.reason));
"""


def py(reasoning: str, src: str) -> str:
    return f"{reasoning}\n```python\n{src}\n```"


ROOT_STEPS = [
    py(
        "The log is large; first look at its shape.",
        "print(len(context))\nprint(context[:400])\n"
        "lines = context.splitlines()\nprint(len(lines), 'lines')",
    ),
    py(
        "Parse every entry and count the severities.",
        "import re, collections\n"
        "pat = re.compile(r'^(\\S+ \\S+) #(\\d+) \\[(\\w+)\\] ([^:]+): (.*)$')\n"
        "entries = [m.groups() for m in map(pat.match, lines) if m]\n"
        "by_level = collections.Counter(e[2] for e in entries)\n"
        "print(by_level)\n"
        "critical = [e for e in entries if e[2] == 'CRITICAL']\n"
        "for e in critical:\n    print(e[0], e[3], '-', e[4])",
    ),
    py(
        "Ask the sub-model to summarise the critical events of each quarter, concurrently.",
        "quarters = collections.defaultdict(list)\n"
        "for e in critical:\n"
        "    quarters[(int(e[0][5:7]) - 1) // 3 + 1].append(f'{e[3]}: {e[4]}')\n"
        "prompts = [f'Summarise these Q{q} critical events in one sentence:\\n'\n"
        "           + '\\n'.join(v[:20]) for q, v in sorted(quarters.items())]\n"
        "summaries = llm_query_batched(prompts)\n"
        "for q, s in zip(sorted(quarters), summaries):\n    print(f'Q{q}:', s)",
    ),
    py(
        "Hand the per-subsystem question to a child agent with the critical lines as context.",
        "text = '\\n'.join(f'{e[3]}: {e[4]}' for e in critical)\n"
        "top = rlm_query('Which subsystem has the most critical events? Answer name=count.',\n"
        "                context=text)\n"
        "print('child says:', top)",
    ),
    py(
        "Check the child's answer against the parsed data, then submit.",
        "counts = collections.Counter(e[3] for e in critical)\n"
        "name, n = counts.most_common(1)[0]\n"
        "print(name, n, top)\n"
        "SUBMIT(answer=f'{name}: {n} critical events', critical_count=len(critical))",
    ),
]

CHILD_STEPS = [
    py(
        "Count subsystems.",
        "import collections\n"
        "c = collections.Counter(l.split(':')[0] for l in context.splitlines())\n"
        "print(c.most_common(3)[0][1] / undefined_total)",
    ),
    py(
        "Fix the name error.",
        "best = c.most_common(1)[0]\nprint(best)\nSUBMIT(answer=f'{best[0]}={best[1]}')",
    ),
]


def sub_model(messages: list[Message]) -> str:
    if messages[0]["role"] == "system":  # the child run's own steps
        return CHILD_STEPS[(len(messages) - 2) // 2]
    prompt = messages[-1]["content"]
    quarter = prompt.split()[2] if len(prompt.split()) > 2 else "?"
    return (
        f"In {quarter} the critical events were mostly shutter and drive faults during cold nights."
    )


def observatory_log(path: Path) -> Path:
    """Run a scripted RLM over the bundled observatory log on the subprocess backend."""
    rlm = RLM(
        "context, query -> answer: str, critical_count: int",
        lm=ScriptedLM(
            ROOT_STEPS, model="openai/gpt-4o", usage=Usage(2400, 180, 0.0078), latency_s=0.2
        ),
        sub_lm=ScriptedLM(
            sub_model, model="openai/gpt-4o-mini", usage=Usage(900, 40, 0.0002), latency_s=0.05
        ),
        interpreter="subprocess",
        max_output_chars=3000,
        log=path,
    )
    result = rlm(
        context=DOCUMENT.read_text(encoding="utf-8"),
        query="Which subsystem logged the most CRITICAL events, and how many?",
    )
    assert result.critical_count == 210
    return path


def large_log(path: Path, *, root_steps: int = 1000, children: int = 200) -> Path:
    """A synthetic log: ``root_steps`` root steps and ``children`` child runs of 3 steps each."""
    t = 1_700_000_000.0
    lines: list[dict[str, Any]] = [
        {
            "event": "run_start",
            "run_id": 1,
            "parent_id": None,
            "depth": 0,
            "path": "0",
            "ts": t,
            "format_version": 2,
            "signature": "context -> answer",
            "model": "big",
            "inputs": {},
            "budget": {
                "max_llm_calls": 5000,
                "max_tokens": None,
                "max_cost_usd": 50.0,
                "max_time_s": None,
            },
        },
    ]
    every = root_steps // children
    run_id = 1
    for i in range(1, root_steps + 1):
        t += 1.0
        code = (
            f"x{i} = rlm_query('part {i}')\nprint(x{i} * 3)"
            if i % every == 0
            else f"print('step {i}' * 40)"
        )
        if i % every == 0:
            run_id += 1
            path_ = f"0/{i}.1"
            lines.append(
                {
                    "event": "run_start",
                    "run_id": run_id,
                    "parent_id": 1,
                    "depth": 1,
                    "path": path_,
                    "ts": t,
                    "parent_step": i,
                    "parent_site": f"0#s{i}.c1",
                    "code_line": 1,
                    "signature": "prompt -> answer",
                    "model": "small",
                    "inputs": {},
                }
            )
            for j in range(1, 4):
                lines.append(
                    {
                        "event": "step",
                        "run_id": run_id,
                        "parent_id": 1,
                        "depth": 1,
                        "path": path_,
                        "ts": t,
                        "step": _step(
                            j, f"print('child {i} step {j}')", f"child {i} step {j}\n", final=j == 3
                        ),
                    }
                )
            lines.append(
                {
                    "event": "run_end",
                    "run_id": run_id,
                    "parent_id": 1,
                    "depth": 1,
                    "path": path_,
                    "ts": t,
                    "outputs": {"answer": f"child {i}"},
                    "extracted": False,
                }
            )
        lines.append(
            {
                "event": "step",
                "run_id": 1,
                "parent_id": None,
                "depth": 0,
                "path": "0",
                "ts": t,
                "step": _step(i, code, f"step {i}" * 40 + "\n", final=i == root_steps),
                "ledger": {
                    "calls": i * 2,
                    "sub_calls": i,
                    "total_tokens": i * 1500,
                    "cost_usd": i * 0.01,
                    "wall_time_s": i,
                },
            }
        )
    lines.append(
        {
            "event": "run_end",
            "run_id": 1,
            "parent_id": None,
            "depth": 0,
            "path": "0",
            "ts": t,
            "outputs": {"answer": "done"},
            "extracted": False,
            "usage": {
                "calls": 2000,
                "sub_calls": 1000,
                "total_tokens": 1_500_000,
                "cost_usd": 10.0,
                "wall_time_s": t,
            },
        }
    )
    path.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    return path


def _step(index: int, code: str, stdout: str, *, final: bool) -> dict[str, Any]:
    return {
        "index": index,
        "kind": "code",
        "reasoning": f"Reasoning for step {index}.",
        "code": code,
        "stdout": stdout,
        "stderr": "",
        "value": None,
        "error": None,
        "submitted": None,
        "output": stdout,
        "output_chars": len(stdout),
        "duration_s": 0.01,
        "lm_duration_s": 0.5,
        "usage": {"prompt_tokens": 1000, "completion_tokens": 100, "cost_usd": 0.01},
        "sub_calls": [],
        "session_restarted": False,
        "final": final,
    }


# ---- the browser -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        reason = "chromium and chromium-driver are not installed (apt-get install chromium "
        reason += "chromium-driver)"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}; {REQUIRE_ENV}=1 requires them", pytrace=False)
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1600",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    except WebDriverException as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"chromium did not start: {exc}", pytrace=False)
        pytest.skip(f"chromium did not start: {exc}")
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ERROR_HOOK})
    yield driver
    driver.quit()


def open_page(driver: WebDriver, page: Path) -> None:
    driver.get(page.resolve().as_uri())
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script("return !!(window.__rlmViewer && window.__rlmViewer.ready)")
    )


def js_errors(driver: WebDriver) -> list[str]:
    errors: list[str] = list(driver.execute_script("return window.__errors || []"))
    for entry in driver.get_log("browser"):  # type: ignore[no-untyped-call]  # selenium: untyped
        if entry.get("level") == "SEVERE":
            errors.append(str(entry.get("message")))
    return errors


def result_count(driver: WebDriver) -> str:
    script = "const n = document.getElementById('result-count'); return n ? n.textContent : ''"
    return str(driver.execute_script(script))


def click(driver: WebDriver, element: WebElement) -> None:
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


@pytest.fixture(scope="module")
def observatory_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("view")
    log = observatory_log(folder / "observatory.jsonl")
    out = folder / "observatory.html"
    assert rlm_main(["view", str(log), "--out", str(out), "--no-open"]) == 0
    return out


def test_tree_child_run_truncation_and_search(browser: WebDriver, observatory_page: Path) -> None:
    driver = browser
    open_page(driver, observatory_page)
    text = driver.find_element(By.ID, "summary").text
    assert "submitted" in text
    assert "210" in text
    steps = driver.find_elements(By.CSS_SELECTOR, "#tree .run[data-run='0'] > .run-body > .step")
    assert len(steps) == 5

    # Step 4 started the child run: it is nested under that step, at the rlm_query line.
    step4 = driver.find_element(By.CSS_SELECTOR, "#tree .step[data-run='0'][data-step='4']")
    assert "1 child run" in step4.text
    click(driver, step4.find_element(By.CSS_SELECTOR, ".step-head"))
    child = step4.find_element(By.CSS_SELECTOR, ".run[data-run='0/4.1']")
    assert "child run 0/4.1" in child.text
    assert "2 steps" in child.text
    marked = step4.find_element(By.CSS_SELECTOR, ".code .ln.marked")
    assert "rlm_query" in marked.text
    assert "child run 0/4.1" in marked.text
    assert "by line 2" in step4.text
    child_step = child.find_element(By.CSS_SELECTOR, ".step[data-step='1'] .step-head")
    assert "error" in child_step.text
    click(driver, child_step)
    assert "NameError" in child.text

    # Step 2 printed more than max_output_chars: flagged, folded, and expandable.
    step2 = driver.find_element(By.CSS_SELECTOR, "#tree .step[data-run='0'][data-step='2']")
    assert "truncated" in step2.find_element(By.CSS_SELECTOR, ".step-head").text
    click(driver, step2.find_element(By.CSS_SELECTOR, ".step-head"))
    body = step2.find_element(By.CSS_SELECTOR, ".step-body")
    assert "characters omitted" not in body.text  # folded: the marker sits past the fold
    click(driver, body.find_element(By.CSS_SELECTOR, "button.show-all"))
    assert "characters omitted" in body.text

    # Step 3's batched sub-calls are grouped, with model, tokens and cost.
    step3 = driver.find_element(By.CSS_SELECTOR, "#tree .step[data-run='0'][data-step='3']")
    click(driver, step3.find_element(By.CSS_SELECTOR, ".step-head"))
    batch = step3.find_element(By.CSS_SELECTOR, ".batch")
    assert "llm_query_batched · 4 prompts" in batch.text
    assert "openai/gpt-4o-mini" in batch.text
    assert "$0.00020" in batch.text

    # Search filters steps across the tree (root and child).
    search = driver.find_element(By.ID, "search")
    search.send_keys("undefined_total")
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "results").is_displayed())
    found = driver.find_elements(By.CSS_SELECTOR, "#results .step")
    assert [f.get_attribute("data-run") for f in found] == ["0/4.1"]
    assert not driver.find_element(By.ID, "tree").is_displayed()
    search.clear()
    search.send_keys("most_common(1)")
    WebDriverWait(driver, 10).until(lambda d: "2 steps match" in result_count(d))
    search.clear()
    search.send_keys(" ")
    WebDriverWait(driver, 10).until(lambda d: d.find_element(By.ID, "tree").is_displayed())
    assert js_errors(driver) == []


def test_screenshot_of_the_observatory_run(browser: WebDriver, observatory_page: Path) -> None:
    driver = browser
    open_page(driver, observatory_page)
    for index in ("3", "4"):
        click(
            driver,
            driver.find_element(
                By.CSS_SELECTOR, f"#tree .step[data-run='0'][data-step='{index}'] .step-head"
            ),
        )
    shot = Path(os.environ.get("RLM_VIEW_SCREENSHOT", str(observatory_page.with_suffix(".png"))))
    driver.execute_script("window.scrollTo(0, 0)")
    assert driver.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    child = driver.find_element(By.CSS_SELECTOR, ".run[data-run='0/4.1']")
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'})", child)
    assert driver.save_screenshot(str(shot.with_name(shot.stem + "-child.png")))
    assert js_errors(driver) == []


def test_a_thousand_steps_and_two_hundred_children_open_at_once(
    browser: WebDriver, tmp_path: Path
) -> None:
    driver = browser
    log = large_log(tmp_path / "large.jsonl")
    out = tmp_path / "large.html"
    assert rlm_main(["view", str(log), "--out", str(out), "--no-open"]) == 0
    started = time.perf_counter()
    open_page(driver, out)
    print(f"opened a 1,000-step, 200-child log in {time.perf_counter() - started:.2f} s")
    # Lazy: only the first chunk of root steps is drawn, no step details yet.
    assert len(driver.find_elements(By.CSS_SELECTOR, "#tree .step")) == 100
    assert driver.find_elements(By.CSS_SELECTOR, ".step-body") == []
    assert "1,600 in 201 runs" in driver.find_element(By.ID, "summary").text
    click(driver, driver.find_element(By.CSS_SELECTOR, "button.show-steps"))
    assert (
        len(driver.find_elements(By.CSS_SELECTOR, "#tree .run[data-run='0'] > .run-body > .step"))
        == 200
    )
    step = driver.find_element(By.CSS_SELECTOR, "#tree .step[data-step='10'] .step-head")
    click(driver, step)
    assert driver.find_element(By.CSS_SELECTOR, ".run[data-run='0/10.1']").is_displayed()
    search = driver.find_element(By.ID, "search")
    search.send_keys("child 990 step 2")
    WebDriverWait(driver, 10).until(lambda d: "1 step match" in result_count(d))
    assert js_errors(driver) == []


def test_follow_mode_updates_the_open_page_as_the_log_grows(
    browser: WebDriver, observatory_page: Path, tmp_path: Path
) -> None:
    driver = browser
    lines = observatory_page.with_suffix(".jsonl").read_text().splitlines(keepends=True)
    first_step = next(i for i, line in enumerate(lines) if '"event": "step"' in line)
    live = tmp_path / "live.jsonl"
    live.write_text("".join(lines[: first_step + 1]))
    server = FollowServer(live)
    server.start()
    try:
        driver.get(server.url)
        tree_steps = "#tree .run[data-run='0'] > .run-body > .step"
        WebDriverWait(driver, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, tree_steps)) == 1
        )
        assert "running" in driver.find_element(By.ID, "summary").text
        click(driver, driver.find_element(By.CSS_SELECTOR, f"{tree_steps} .step-head"))
        with live.open("a") as f:
            f.write("".join(lines[first_step + 1 :]))
        WebDriverWait(driver, 20).until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, tree_steps)) == 5
        )
        WebDriverWait(driver, 20).until(
            lambda d: "submitted" in d.find_element(By.ID, "summary").text
        )
        assert (
            driver.find_element(By.CSS_SELECTOR, "#tree .step[data-step='1']").get_attribute(
                "class"
            )
            == "step open"
        )
        assert driver.find_element(By.ID, "live").text == "● finished"
        assert js_errors(driver) == []
    finally:
        server.stop()


V2_FIELDS = ("path", "ts", "format_version", "budget", "parent_step", "parent_site", "code_line")


def test_a_version_1_log_still_renders(
    browser: WebDriver, observatory_page: Path, tmp_path: Path
) -> None:
    """Logs written before format v2 (no paths, sites, timestamps or ledger) still show the tree."""
    old = []
    for line in observatory_page.with_suffix(".jsonl").read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "tool_call":
            continue
        for key in (*V2_FIELDS, "ledger"):
            event.pop(key, None)
        calls = event["step"]["sub_calls"] if event["event"] == "step" else []
        for call in calls:
            for key in ("site", "batch", "code_line", "child_path"):
                call.pop(key, None)
        old.append(json.dumps(event))
    log = tmp_path / "v1.jsonl"
    log.write_text("\n".join(old) + "\n")
    out = tmp_path / "v1.html"
    assert rlm_main(["view", str(log), "--out", str(out), "--no-open"]) == 0
    open_page(browser, out)
    step4 = browser.find_element(By.CSS_SELECTOR, "#tree .step[data-step='4']")
    assert "1 child run" in step4.text  # placed under the step that was running
    click(browser, step4.find_element(By.CSS_SELECTOR, ".step-head"))
    assert "2 steps" in step4.find_element(By.CSS_SELECTOR, ".run .run-head").text
    assert browser.find_elements(By.CSS_SELECTOR, "#budget .chart") == []  # no ledger in v1
    assert js_errors(browser) == []


def test_a_failed_run_shows_why(browser: WebDriver, tmp_path: Path) -> None:
    log = tmp_path / "failed.jsonl"
    lm = ScriptedLM(
        ["I will think first.", "```js\nconsole.log(1)\n```", "no JSON here", "still none"]
    )
    rlm = RLM("q -> n: int", lm=lm, interpreter="mock", max_iterations=2, log=log)
    with pytest.raises(OutputValidationError):
        rlm(q="?")
    out = tmp_path / "failed.html"
    assert rlm_main(["view", str(log), "--out", str(out), "--no-open"]) == 0
    open_page(browser, out)
    summary = browser.find_element(By.ID, "summary").text
    assert "failed" in summary
    assert "OutputValidationError" in summary
    heads = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#tree .step-head")]
    assert ["no_code" in heads[0], "bad_fence" in heads[1], "extract" in heads[2]] == [True] * 3
    click(browser, browser.find_elements(By.CSS_SELECTOR, "#tree .step-head")[1])
    assert "non-Python code block" in browser.find_element(By.CSS_SELECTOR, "#tree .step-body").text
    assert js_errors(browser) == []

"""Attackers beside a classroom: `python benchmarks/demo_load.py --attackers` runs this.

The Copilot demo runs as the teacher runs it (`python -m demos copilot`, a child process, so its
RSS is the server's alone), its Hub a loopback stand-in (tests/hub_server.py, another child)
holding crafted repos. 30 ordinary students generate the whole time; after a quiet phase the
attackers start, all at once:

    tabs        load a repo whose tokenizer has tab_size 100,000; prompts of 300 and 10,000 tabs
    layers      load a repo whose config.json says n_layer 1,000,000 (125 KB of weights)
    llama       load a repo with model_type llama and 300 MB of weights
    big         two students load a 50M-parameter model (200 MB of weights)
    departing   50 students each fine-tune 10 steps, download the zip and leave
    uploads     6 uploads of a 99 KB file of 11,000 `def` lines inside a string
    nan         load a repo whose weights hold a NaN
    html        load repos with <img> in provenance (loads) and in model_type (refused)
    oracle      load an existing server file, a folder's missing child, and a path that is nowhere
    deep        load a repo whose config.json is nested 100,000 levels deep
    heads       load a 4.74M-parameter repo with 512 heads and a context of 3,000, then a 10,000-
                character prompt; and a 0.83M one with a context of 12,000, then Look inside
    padded      load the copilot with a 100 MB transformer.h.0.attn.bias beside its weights
    memory      30 students each load a 4.3M-parameter model, fine-tune it 10 steps and stay
    replaced    a 300-step fine-tune, then Load 1.5 s later; another, then Reset and a new one
    race        /download and /reset submitted together, 5 times

Printed: each attacker's outcome and time; the students' generate p50/p95 before, during and
after; the server's RSS and its tinytorch-demo-* folders before, during (peak) and at the end of
a quiet phase after the attacks (default 120 s; departed sessions go 30 s after they leave), and
how many fine-tuned copies were spilled to disk at the peak (the server runs with a budget of
--copies-mb for them, TINYTORCH_DEMO_COPIES_MB).
"""

from __future__ import annotations

import json
import os
from html import unescape
from itertools import islice, product
from string import ascii_lowercase
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from demos.screenshots import free_port

ROOT = Path(__file__).resolve().parent.parent
# 11,000 lines `def abcd` inside a string: 99 KB, within the 100,000-character training text limit
DEF_BOMB = 'DOC = """\n' + "".join(f"def {''.join(n)}\n" for n in islice(product(ascii_lowercase, repeat=4), 11_000)) + '"""\n'



def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------ the crafted repos
def crafted_repos(checkpoint: Path, out: Path) -> dict[str, Path]:
    """Write each attacker repo's files into out/<name>/; returns {repo id: folder}."""
    from tinytorch.checkpoint import save_pretrained, write_weights
    from tinytorch.nn import GPT, GPTConfig
    from tinytorch.text import CharTokenizer

    files = {p.name: p.read_bytes() for p in checkpoint.iterdir() if p.name in ("config.json", "model.safetensors")}
    config = json.loads(files["config.json"])
    repos = {}

    def repo(name, config_values=None, weights=None):
        folder = out / name
        folder.mkdir(parents=True)
        text = config_values if isinstance(config_values, str) else json.dumps(config_values or config)
        (folder / "config.json").write_text(text)
        if isinstance(weights, Path):
            shutil.copyfile(weights, folder / "model.safetensors")
        else:
            (folder / "model.safetensors").write_bytes(weights if weights is not None else files["model.safetensors"])
        repos[f"attack/{name}"] = folder

    repo("tabs", {**config, "tokenizer": {**config["tokenizer"], "tab_size": 100_000}})
    repo("layers", {**config, "n_layer": 10**6})
    repo("llama", {**config, "model_type": "llama"}, b"\0" * 300_000_000)
    big_config = GPTConfig(vocab_size=98, n_positions=128, n_embd=512, n_layer=16, n_head=8)  # 50.4M parameters
    big = GPT(big_config)
    big_folder = save_pretrained(big, out / "big-src", tokenizer=CharTokenizer.python())
    del big
    repo("big", json.loads((big_folder / "config.json").read_text()), big_folder / "model.safetensors")
    shutil.rmtree(big_folder)
    nan = GPT.from_pretrained(checkpoint).state_dict()
    nan["transformer.h.0.mlp.c_fc.weight"][0, 0] = np.nan
    write_weights(out / "nan.safetensors", nan)
    repo("nan", None, out / "nan.safetensors")
    repo("html", {**config, "provenance": {"tasks_right": "<img src=x onerror=alert(1)>", "tasks_total": 1}})
    repo("html-type", {**config, "model_type": "<img src=x onerror=alert(1)>"})
    deep = json.dumps({**config, "provenance": "X"}).replace('"X"', "[" * 100_000 + "]" * 100_000)
    repo("deep", deep)
    repo("heads", {**config, "n_embd": 512, "n_layer": 1, "n_head": 512, "n_positions": 3000})  # 4.74M parameters
    repo("positions", {**config, "n_embd": 64, "n_layer": 1, "n_head": 64, "n_positions": 12_000})  # 0.83M
    from safetensors.numpy import save_file

    padded = {k: np.ascontiguousarray(v) for k, v in GPT.from_pretrained(checkpoint).state_dict().items()}
    padded["transformer.h.0.attn.bias"] = np.zeros((25, 1024, 1024), dtype=np.float32)  # 100 MB
    save_file(padded, str(out / "padded.safetensors"))
    del padded
    repo("padded", None, out / "padded.safetensors")
    wide = GPT(GPTConfig(vocab_size=98, n_positions=128, n_embd=224, n_layer=7, n_head=4))  # 4.3M parameters
    wide_folder = save_pretrained(wide, out / "wide-src", tokenizer=CharTokenizer.python())
    del wide
    repo("wide", json.loads((wide_folder / "config.json").read_text()), wide_folder / "model.safetensors")
    shutil.rmtree(wide_folder)
    return repos


HUB_SCRIPT = """
import sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from hub_server import FakeHub
hub = FakeHub().start()
for folder in sys.argv[2:]:
    name, folder = folder.split("=", 1)
    hub.add_commit(name, {p.name: p.read_bytes() for p in Path(folder).iterdir()})
print(hub.endpoint, flush=True)
while True:
    time.sleep(3600)
"""


def connect(url: str):
    """A gradio_client Client; a busy server can time out the first request, so try three times."""
    from gradio_client import Client

    for attempt in range(3):
        try:
            return Client(url, verbose=False)
        except Exception:  # noqa: BLE001 - httpx timeouts: retried, then raised
            if attempt == 2:
                raise
            time.sleep(2)


def ask(client, *args, api_name: str, timeout: float = 120.0):
    """client.predict with a deadline. gradio_client's heartbeat gives up after one read of 20 s
    without a beat (a server stalled by a loaded machine), and the server then drops that
    client's pending requests: predict() would wait for ever. A browser reloads; this raises."""
    return client.submit(*args, api_name=api_name).result(timeout=timeout)


def said(err: Exception) -> str:
    """What the page showed, as text: the error toast's message is HTML-escaped by the demo."""
    return " ".join(unescape(str(err)).split())


def crowd(students: int, visit) -> tuple[int, list[str]]:
    """visit(i) for each of `students`, 10 at a time (students come and go): (how many did all
    of it, what the others were told)."""
    arriving, done, errors = threading.Semaphore(10), [0], []

    def one(i):
        with arriving:
            try:
                visit(i)
                done[0] += 1
            except Exception as err:  # noqa: BLE001 - counted, reported
                errors.append(f"{type(err).__name__}: {said(err)[:100]}")

    pool = [threading.Thread(target=one, args=(i,)) for i in range(students)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return done[0], errors


# ------------------------------------------------------------------ the run
def run(checkpoint: str, students: int = 30, quiet_before: float = 20.0, quiet_after: float = 120.0,
        departing: int = 50, staying: int = 30, copies_mb: float = 256, new_chars: int = 20, control: bool = False,
        log=print) -> dict:
    """control: the same phases with no attacker (what the students alone cost). staying: the
    students of the memory attack; copies_mb: the server's budget for fine-tuned copies."""
    from gradio_client import handle_file

    checkpoint = Path(checkpoint).resolve()
    work = Path(tempfile.mkdtemp(prefix="tinytorch-attack-"))
    procs = []
    try:
        log("writing the crafted repos (300 MB of llama, 200 MB of a 50M model)...")
        repos = crafted_repos(checkpoint, work / "repos")
        hub = subprocess.Popen([sys.executable, "-c", HUB_SCRIPT, str(ROOT / "tests"),
                                *[f"{name}={folder}" for name, folder in repos.items()]],
                               stdout=subprocess.PIPE, text=True)
        procs.append(hub)
        endpoint = hub.stdout.readline().strip()
        server_tmp = work / "server-tmp"
        server_tmp.mkdir()
        port = free_port()
        env = {**os.environ, "HF_ENDPOINT": endpoint, "HF_HOME": str(work / "hf-home"), "TMPDIR": str(server_tmp),
               "GRADIO_TEMP_DIR": str(server_tmp / "gradio"), "GRADIO_ANALYTICS_ENABLED": "False",
               "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
               "TINYTORCH_DEMO_COPIES_MB": str(copies_mb),
               # room for every attacker's Hub load at once, so that each is answered on its own merits
               # (tests/test_classroom_safety.py checks the limit of 4 itself)
               "TINYTORCH_DEMO_HUB_MODELS": "16"}
        env.pop("HF_HUB_OFFLINE", None)
        server = subprocess.Popen([sys.executable, "-m", "demos", "copilot", "--checkpoint", str(checkpoint),
                                   "--port", str(port)], cwd=work, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        procs.append(server)
        for line in server.stdout:
            if "running at" in line:
                break
        threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()  # drain its log
        url = f"http://127.0.0.1:{port}/"

        def folders() -> int:
            return sum(p.name.startswith("tinytorch-demo-") for p in server_tmp.iterdir())

        def spilled() -> int:
            return len(list(server_tmp.glob("tinytorch-demo-*/spilled.safetensors")))

        # ------------------------------------------------ monitor and ordinary students
        phase = ["before"]
        samples: list[tuple[str, float, float, int, int]] = []  # (phase, time, RSS MB, demo folders, spilled copies)
        latencies: dict[str, list[float]] = {"before": [], "during": [], "after": []}
        failures: list[str] = []
        stop = threading.Event()
        lock = threading.Lock()

        def monitor():
            while not stop.is_set():
                samples.append((phase[0], time.monotonic(), rss_mb(server.pid), folders(), spilled()))
                time.sleep(1.0)

        def student():
            client = None
            while not stop.is_set():
                started, now = phase[0], time.perf_counter()
                try:
                    client = client or connect(url)
                    ask(client, "def ", new_chars, 0.0, 0, 1.0, 0, api_name="/generate", timeout=60)
                    with lock:
                        if phase[0] == started:  # a request that spans two phases counts in neither
                            latencies[started].append(time.perf_counter() - now)
                except Exception as err:  # noqa: BLE001 - counted, reported; then a fresh session
                    with lock:
                        failures.append(f"{started}: {type(err).__name__}: {said(err)[:120]}")
                    if client is not None:
                        client.close()
                    client = None
            if client is not None:
                client.close()

        # One student fine-tunes, downloads and leaves first, so that what any first use costs once
        # (imports, gradio's caches, malloc's arenas) is in the baseline, not counted as a leak.
        from demos.common import examples

        warm = connect(url)
        ask(warm, next(iter(examples().values())), 10, None, 8, api_name="/finetune", timeout=600)
        ask(warm, api_name="/download")
        warm.close()
        threads = [threading.Thread(target=monitor)] + [threading.Thread(target=student) for _ in range(students)]
        for t in threads:
            t.start()
        log(f"{students} students generating on {url}; quiet for {quiet_before:.0f} s")
        time.sleep(quiet_before)

        # ------------------------------------------------ the attackers
        outcomes: dict[str, list[str]] = {}
        seconds: dict[str, float] = {}
        rss_at_end: dict[str, float] = {}  # the server's RSS when each attacker was answered

        def load(client, repo, limit=160):
            try:
                ask(client, repo, api_name="/load")
                return "loaded"
            except Exception as err:  # noqa: BLE001 - the refusal is the point
                return said(err)[:limit]

        def attacker(name, fn):
            start = time.perf_counter()
            try:
                outcomes[name] = fn()
            except Exception as err:  # noqa: BLE001
                outcomes[name] = [f"attacker failed: {type(err).__name__}: {str(err)[:160]}"]
            seconds[name] = time.perf_counter() - start
            rss_at_end[name] = rss_mb(server.pid)

        def tabs():
            c = connect(url)
            out = [load(c, "attack/tabs")]
            for n in (300, 10_000):
                try:
                    details = ask(c, "\t" * n + "x", 5, 0.0, 0, 1.0, 0, api_name="/generate")[1]
                    out.append(f"{n} tabs: generated, prompt of {len(details['prompt']):,} characters")
                except Exception as err:  # noqa: BLE001
                    out.append(f"{n} tabs: " + said(err)[:120])
            c.close()
            return out

        def single(repo):
            def fn():
                c = connect(url)
                out = [load(c, repo)]
                c.close()
                return out
            return fn

        def big():
            clients = [connect(url) for _ in range(2)]
            out = [load(c, "attack/big") for c in clients]
            for c in clients:
                c.close()
            return out

        def departing_students():
            texts = list(examples().values())

            def one(i):
                c = connect(url)
                ask(c, texts[i % len(texts)], 10, None, 8, api_name="/finetune", timeout=600)
                ask(c, api_name="/download")
                c.close()

            done, errors = crowd(departing, one)
            return [f"{done}/{departing} fine-tuned, downloaded and left"] + errors[:3]

        def uploads():
            path = work / "defs.py"
            path.write_text(DEF_BOMB)
            clients = [connect(url) for _ in range(6)]
            results, pool = [None] * 6, []

            def one(i):
                start = time.perf_counter()
                try:
                    ask(clients[i], handle_file(str(path)), api_name="/upload")
                    results[i] = f"{time.perf_counter() - start:.2f} s"
                except Exception as err:  # noqa: BLE001
                    results[i] = said(err)[:80]

            pool = [threading.Thread(target=one, args=(i,)) for i in range(6)]
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            for c in clients:
                c.close()
            return [f"6 uploads of {len(DEF_BOMB):,} characters answered in " + ", ".join(map(str, results))]

        def html():
            c = connect(url)
            card = ask(c, "attack/html", api_name="/load")
            out = [f"loaded; its card holds no <img> tag: {'<img' not in card}, shows it as text: {'&#60;img' in card}",
                   load(c, "attack/html-type")]
            c.close()
            return out

        def oracle():
            c = connect(url)
            (work / "exists").mkdir(exist_ok=True)
            (work / "exists" / "file.py").write_text("x = 1\n")  # relative to the server's folder
            answers = {load(c, name, None).replace(name, "NAME") for name in ("exists/file.py", "exists/nothing",
                                                                               "nothing/nothing")}
            c.close()
            return [f"{len(answers)} distinct answer(s) for an existing file, a missing child of an existing "
                    f"folder, and nothing: " + " | ".join(sorted(answers))[:200]]

        def heads():
            c = connect(url)
            out = [load(c, "attack/heads")]
            try:
                ask(c, "x = 1\n" * 1666, 5, 0.0, 0, 1.0, 0, api_name="/generate")
                out.append("then a 10,000-character prompt: answered by the model the session kept")
            except Exception as err:  # noqa: BLE001
                out.append("then a 10,000-character prompt: " + said(err)[:120])
            out.append(load(c, "attack/positions"))
            try:
                ask(c, "x = 1\n" * 1666, 0, 0, api_name="/attention")
                out.append("then Look inside: answered by the model the session kept")
            except Exception as err:  # noqa: BLE001
                out.append("then Look inside: " + said(err)[:120])
            c.close()
            return out

        def memory():
            texts, clients = list(examples().values()), []

            def one(i):
                c = connect(url)
                clients.append(c)
                ask(c, "attack/wide", api_name="/load")
                ask(c, texts[i % len(texts)], 10, None, 8, api_name="/finetune", timeout=600)

            done, errors = crowd(staying, one)
            peak = max((n for *_, n in samples), default=0)
            out = [f"{done}/{staying} loaded the 4.3M model and fine-tuned it (17 MB each); copies spilled to "
                   f"disk at the peak: {peak}"] + errors[:3]
            for c in clients:  # they leave at the end of the attacks
                c.close()
            return out

        def replaced():
            from gradio_client.utils import Status

            c, out, text = connect(url), [], next(iter(examples().values()))

            def started(job):
                while job.status().code not in (Status.PROCESSING, Status.ITERATING) and not job.done():
                    time.sleep(0.05)
                time.sleep(1.5)

            job = c.submit(text, 300, None, 8, api_name="/finetune")
            started(job)
            ask(c, str(checkpoint), api_name="/load")
            last = unescape(str(job.result(timeout=600)[0]))
            out.append("300 steps, then Load: " + ("the stream said it was replaced" if "took over" in last
                                                     else "the stream ended: " + " ".join(last.split())[:100]))
            try:
                ask(c, "", 20, 0.0, 0, 1.0, 0, "line", api_name="/compare")
                out.append("then Compare: compared")
            except Exception as err:  # noqa: BLE001
                out.append("then Compare: " + said(err)[:80])
            old = c.submit(text, 300, None, 8, api_name="/finetune")
            started(old)
            ask(c, api_name="/reset")
            new = ask(c, text, 10, None, 8, api_name="/finetune", timeout=600)
            first = unescape(str(old.result(timeout=600)[0]))
            out.append("300 steps, Reset, 10 steps: the first " + ("said it was replaced" if "took over" in first
                                                                   else "ended: " + first[:80])
                       + "; the second " + ("finished 10/10" if "step 10/10" in unescape(str(new[0])) else
                                            "did not finish"))
            c.close()
            return out

        def race():
            c, zips, nothing, other = connect(url), 0, 0, []
            for _ in range(5):
                ask(c, next(iter(examples().values())), 10, None, 8, api_name="/finetune", timeout=600)
                download = c.submit(api_name="/download")
                c.submit(api_name="/reset").result(timeout=120)
                try:
                    download.result(timeout=120)
                    zips += 1
                except Exception as err:  # noqa: BLE001
                    if "Nothing to download yet" in said(err):
                        nothing += 1
                    else:
                        other.append(said(err)[:80])
            c.close()
            return [f"5 rounds: {zips} zips, {nothing} 'nothing to download yet' (the reset came first), "
                    f"{len(other)} other answers" + (f" ({other[0]})" if other else "")]

        attacks = {"tabs": tabs, "layers": single("attack/layers"), "llama": single("attack/llama"), "big": big,
                   "departing": departing_students, "uploads": uploads, "nan": single("attack/nan"), "html": html,
                   "oracle": oracle, "deep": single("attack/deep"), "heads": heads, "padded": single("attack/padded"),
                   "memory": memory, "replaced": replaced, "race": race}
        if control:
            attacks = {}
        phase[0] = "during"
        log(f"attackers: {', '.join(attacks) or 'none (a control run)'}")
        attack_start = time.perf_counter()
        pool = [threading.Thread(target=attacker, args=item) for item in attacks.items()]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        attack_seconds = time.perf_counter() - attack_start
        attacks_over = time.monotonic()
        phase[0] = "after"
        log(f"attacks over after {attack_seconds:.0f} s; quiet for {quiet_after:.0f} s")
        time.sleep(quiet_after)
        stop.set()
        for t in threads:
            t.join(120)
        hub_cache = sum(f.stat().st_size for f in (work / "hf-home").rglob("*") if f.is_file()) / 1e6
        return {"outcomes": outcomes, "seconds": seconds, "rss_at_end": rss_at_end, "latencies": latencies, "samples": samples,
                "failures": failures, "attack_seconds": attack_seconds, "hub_cache_mb": hub_cache,
                "attacks_over": attacks_over, "copies_mb": copies_mb,
                "students": students}
    finally:
        for proc in procs:
            proc.send_signal(2 if proc is procs[-1] else 15)  # the server: Ctrl-C, as a teacher stops it
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def report(out: dict) -> None:
    ms = lambda xs, q: f"{1000 * float(np.percentile(xs, q)):.0f} ms" if xs else "n/a"  # noqa: E731
    print(f"attackers (all at once, {out['attack_seconds']:.0f} s until the last was answered; the server's RSS "
          "when each was answered):")
    for name, lines in out["outcomes"].items():
        print(f"  {name:10s} {out['seconds'][name]:6.1f} s  {out['rss_at_end'][name]:5.0f} MB  "
              + "\n                                ".join(lines))
    print(f"{out['students']} students' generate (the default line completion, at most 20 new chars):")
    for phase, xs in out["latencies"].items():
        print(f"  {phase:7s} p50 {ms(xs, 50)}, p95 {ms(xs, 95)} over {len(xs)} requests")
    by_phase = {p: [(rss, n) for q, _, rss, n, _ in out["samples"] if q == p] for p in ("before", "during", "after")}
    before = np.median([r for r, _ in by_phase["before"]]) if by_phase["before"] else float("nan")
    during = max((r for r, _ in by_phase["during"]), default=float("nan"))
    peak_folders = max((n for _, n in by_phase["during"]), default=0)
    end_rss, end_folders = by_phase["after"][-1] if by_phase["after"] else (float("nan"), -1)
    print(f"server RSS: before {before:.0f} MB, during (peak) {during:.0f} MB, at the end of the quiet phase "
          f"{end_rss:.0f} MB")
    left = [t for q, t, _, n, _ in out["samples"] if q == "after" and n > 0]
    gone = f"{left[-1] + 1 - out['attacks_over']:.0f} s after the attacks ended" if left else "when the attacks ended"
    print(f"server tinytorch-demo-* folders: peak {peak_folders} during, {end_folders} at the end (all gone {gone})")
    print(f"fine-tuned copies spilled to disk (budget --copies-mb {out['copies_mb']:g} MB): peak "
          f"{max((s for *_, s in out['samples']), default=0)}")
    print(f"Hub cache after the attacks: {out['hub_cache_mb']:.1f} MB; student requests failed or timed out "
          f"(60 s): {len(out['failures'])}" + (f" (first: {out['failures'][0]})" if out["failures"] else ""))

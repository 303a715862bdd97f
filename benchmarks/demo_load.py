"""A classroom on the Copilot demo: the app launched in this process on 127.0.0.1 (a free port),
driven through its API with gradio_client from threads, as browsers would: N sessions generating
(Try it's default mode, the line completion; each asks again as soon as it has its answer, or
after --think seconds, as a student reads and types) while M sessions fine-tune at once. Prints
requests done/failed, generation latency p50/p95 while the fine-tunes run, fine-tune wall times (and the queue place the waiting ones were shown), the
process's peak RSS, and whether every session's model is its own. Fine-tunes use the shipped
examples in turn; the sessions that share an example take one more step each (see run()).

    python benchmarks/demo_load.py [--sessions 30] [--finetunes 5] [--steps 30] [--think 5]
                                   [--checkpoint checkpoints/copilot-tiny]
    python benchmarks/demo_load.py --attackers [--sessions 30] [--quiet-after 120] [--copies-mb 256]

Bounded: each generating session makes at most --requests requests and stops at --max-seconds
(or as soon as the fine-tunes are done and it has made --min-requests); nothing listens beyond
127.0.0.1; the server closes at the end. The peak RSS is the whole process: server, models and
the clients' threads together.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import threading
import time

if __name__ == "__main__":  # as `python -m demos` does, before numpy loads (see demos/__init__.py)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    import demos

    demos.prefer_one_blas_thread()

import numpy as np  # noqa: E402

from demos.screenshots import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROMPT = "def "  # what the generating sessions send, in Try it's default mode
PROBE = "sample"  # the isolation checks compare greedy characters (temperature 0): always some, never a tie


def percentile(values, q) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def session_of(demo, client):
    """The server-side CopilotSession of this client (gr.State, kept by gradio per session hash)."""
    from demos.copilot import CopilotSession

    found = [v for v in demo.state_holder[client.session_hash].state_data.values()
             if isinstance(v, CopilotSession)]
    return found[0] if len(found) == 1 else None


def run(checkpoint: str, sessions: int = 30, finetunes: int = 5, steps: int = 30, new_chars: int = 80,
        requests: int = 40, min_requests: int = 2, max_seconds: float = 240.0, think: float = 0.0,
        log=print) -> dict:
    """Launch, load, measure, check isolation, close. Returns the figures and checks as a dict."""
    from gradio_client import Client

    from demos import copilot as C
    from demos.app import build_app
    from demos.common import ModelStore, examples
    from demos.ui import FINETUNES, launch_kwargs

    checkpoint = os.path.abspath(checkpoint)
    texts = list(examples().values())
    demo = build_app(("copilot",), copilot_checkpoints=[checkpoint])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    assert url.startswith("http://127.0.0.1:"), url
    out = {"url": url, "finetune_concurrency": FINETUNES}
    errors: list[str] = []
    lock = threading.Lock()
    try:
        t0 = time.perf_counter()
        gen_clients = [None] * sessions
        ft_clients = [None] * finetunes

        def connect(i, box):
            try:
                box[i] = Client(url, verbose=False)
            except Exception as err:  # noqa: BLE001 - counted, reported
                with lock:
                    errors.append(f"connect: {type(err).__name__}: {err}")

        threads = [threading.Thread(target=connect, args=(i, gen_clients)) for i in range(sessions)]
        threads += [threading.Thread(target=connect, args=(i, ft_clients)) for i in range(finetunes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        out["connect_seconds"] = time.perf_counter() - t0
        if None in gen_clients or None in ft_clients:
            raise RuntimeError(f"could not connect every session: {errors[:3]}")

        # Each fine-tuner: its own run, so that every fine-tuned model differs from every other, not
        # only from the pretrained one. A fine-tune draws its batches with a fixed seed, so the same
        # text and steps give the same weights; a line appended to the text is rarely in a batch
        # (that gave equal pairs), so the sessions sharing an example take one more step each.
        ft_texts = [texts[i % len(texts)] for i in range(finetunes)]
        ft_steps = [steps + i // len(texts) for i in range(finetunes)]
        ft_prompts = [(C.names.default_prompts(t) or [t[:20]])[0] for t in ft_texts]
        latencies: list[tuple[float, float, float]] = []  # (start, end, seconds) of each generate
        later: list[float] = []  # the seconds of every generating session's requests after its first
        done = {"ok": 0, "failed": 0}
        ft_results: list[dict] = [{} for _ in range(finetunes)]
        finetunes_left = threading.Semaphore(0)
        all_ft_done = threading.Event()
        if finetunes == 0:
            all_ft_done.set()
        deadline = time.perf_counter() + max_seconds

        def generate(client, prompt=PROMPT, mode=C.MODE):
            start = time.perf_counter()
            try:
                _, details = client.predict(prompt, new_chars, 0.0, 0, 1.0, 0, mode, api_name="/generate")
            except Exception as err:  # noqa: BLE001 - counted, reported
                end = time.perf_counter()
                with lock:
                    done["failed"] += 1
                    errors.append(f"generate: {type(err).__name__}: {str(err)[:200]}")
                return None
            end = time.perf_counter()
            with lock:
                done["ok"] += 1
                latencies.append((start, end, end - start))
            return details["completion"]

        def generating(client, seed):
            pause = np.random.default_rng(seed)
            made = 0
            while made < requests and time.perf_counter() < deadline:
                if finetunes and made >= min_requests and all_ft_done.is_set():
                    break  # (without fine-tunes, each makes its `requests`)
                start = time.perf_counter()
                if generate(client) is not None and made:  # the first: all sessions at once
                    with lock:
                        later.append(time.perf_counter() - start)
                made += 1
                if think:  # a student reads the suggestion, types on, presses again: 0.5-1.5 x think
                    time.sleep(think * pause.uniform(0.5, 1.5))

        def finetuning(i, client):
            result = ft_results[i]
            generate(client)  # the session starts on the pretrained model, like everyone's
            from gradio_client.utils import Status

            start = time.perf_counter()
            result["start"] = start
            try:
                job = client.submit(ft_texts[i], ft_steps[i], None, C.BATCH, api_name="/finetune")
                ranks = []
                first_update = None
                while not job.done() and time.perf_counter() < deadline:
                    status = job.status()
                    if status.code == Status.IN_QUEUE and status.rank is not None:
                        ranks.append(status.rank)
                    if first_update is None and status.code in (Status.PROCESSING, Status.ITERATING):
                        first_update = time.perf_counter() - start
                    time.sleep(0.05)
                final = job.outputs()[-1] if job.outputs() else None
                result.update(seconds=time.perf_counter() - start, max_queue_place=max(ranks, default=None),
                              started_after=first_update)
                if not job.done():
                    raise TimeoutError(f"fine-tune {i} still running at --max-seconds")
                job.result()  # raises if the fine-tune ended in an error
                status_html = final[0] if final else ""
                if f"step {ft_steps[i]}/{ft_steps[i]}" not in status_html:
                    raise RuntimeError(f"fine-tune {i} did not finish: {status_html[:200]}")
                with lock:
                    done["ok"] += 1
                result["ok"] = True
            except Exception as err:  # noqa: BLE001 - counted, reported
                result["ok"] = False
                result.setdefault("seconds", time.perf_counter() - start)
                with lock:
                    done["failed"] += 1
                    errors.append(f"finetune: {type(err).__name__}: {str(err)[:200]}")
            result["end"] = time.perf_counter()
            finetunes_left.release()

        def watch_finetunes():
            for _ in range(finetunes):
                finetunes_left.acquire()
            all_ft_done.set()

        log(f"{sessions} generating + {finetunes} fine-tuning sessions on {url} "
            f"({os.path.basename(checkpoint)}, {min(ft_steps, default=steps)}-{max(ft_steps, default=steps)} steps, at most {FINETUNES} fine-tunes at once)")
        t1 = time.perf_counter()
        workers = [threading.Thread(target=watch_finetunes)]
        workers += [threading.Thread(target=finetuning, args=(i, c)) for i, c in enumerate(ft_clients)]
        workers += [threading.Thread(target=generating, args=(c, i)) for i, c in enumerate(gen_clients)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(max(1.0, deadline - time.perf_counter() + 60))
        out["load_seconds"] = time.perf_counter() - t1
        ft_windows = [(r["start"], r["end"]) for r in ft_results if "end" in r]
        window = (min(s for s, _ in ft_windows), max(e for _, e in ft_windows)) if ft_windows else None
        during = [s for a, b, s in latencies if window and a >= window[0] and b <= window[1]]
        out.update(
            requests_ok=done["ok"], requests_failed=done["failed"],
            generate_all=[s for _, _, s in latencies], generate_during_finetunes=during, generate_later=later,
            finetune_seconds=[r.get("seconds") for r in ft_results], finetune_steps=ft_steps,
            finetune_queue_places=[r.get("max_queue_place") for r in ft_results],
            finetunes_ok=sum(bool(r.get("ok")) for r in ft_results),
        )

        # ---------------------------------------------- isolation: is every session's model its own?
        fresh = ModelStore().get(checkpoint, [checkpoint])  # loaded again from disk, in no session
        app = C.Copilot([checkpoint], store=ModelStore())

        def reference(prompt):
            settings = app.sampling(new_chars, 0.0, 0, 1.0, 0, fresh.tokenizer.vocab_size)
            return app.complete(fresh.model, fresh.tokenizer, prompt, settings, PROBE)[0][0]

        fresh_weights = {k: v.copy() for k, v in fresh.model.state_dict().items()}

        def same_weights(model):
            return all(np.array_equal(fresh_weights[k], v) for k, v in model.state_dict().items())

        checks = {}
        # Untouched sessions: same completion as the fresh load, and the very weights from disk.
        untouched = [generate(c, mode=PROBE) for c in gen_clients]
        want = reference(PROMPT)
        checks["untouched_equal_fresh"] = sum(u == want for u in untouched)
        gen_sessions = [session_of(demo, c) for c in gen_clients]
        checks["untouched_weights_equal_fresh"] = sum(
            s is not None and s.model is None and same_weights(s.current) for s in gen_sessions)
        # Fine-tuned sessions: on a prompt from their own text, a completion unlike the fresh load's,
        # and weights that differ from the pretrained ones and from each other's.
        ft_sessions = [session_of(demo, c) for c in ft_clients]
        ft_out = [generate(c, p, PROBE) for c, p in zip(ft_clients, ft_prompts)]
        checks["finetuned_differ_from_fresh"] = sum(o is not None and o != reference(p)
                                                    for o, p in zip(ft_out, ft_prompts))
        models = [s.model for s in ft_sessions if s is not None and s.model is not None]
        checks["finetuned_own_models"] = len({id(m) for m in models})
        checks["finetuned_weights_differ_from_fresh"] = sum(not same_weights(m) for m in models)
        flat = [np.concatenate([v.ravel() for v in m.state_dict().values()]) for m in models]
        checks["finetuned_pairs_equal"] = sum(np.array_equal(flat[i], flat[j])
                                              for i in range(len(flat)) for j in range(i + 1, len(flat)))
        checks["base_shared"] = len({id(s.base.model) for s in gen_sessions + ft_sessions if s is not None})
        # The server still answers a newcomer, and the same as a fresh load.
        late = Client(url, verbose=False)
        checks["newcomer_equal_fresh"] = generate(late, mode=PROBE) == want
        out["checks"] = checks
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
        out["errors"] = errors
        return out
    finally:
        demo.close()


def report(out: dict, args) -> None:
    ms = lambda xs, q: f"{1000 * percentile(xs, q):.0f} ms"  # noqa: E731
    gen, during = out["generate_all"], out["generate_during_finetunes"]
    fts = [s for s in out["finetune_seconds"] if s is not None]
    print(f"requests: {out['requests_ok']} done, {out['requests_failed']} failed "
          f"(in {out['load_seconds']:.1f} s; connecting {args.sessions + args.finetunes} clients took "
          f"{out['connect_seconds']:.1f} s)")
    later = out["generate_later"]
    print(f"generate (Try it's default mode, at most {args.new} new chars): p50 {ms(during, 50)}, p95 {ms(during, 95)} over "
          f"{len(during)} requests while fine-tunes ran; all {len(gen)}: p50 {ms(gen, 50)}, p95 {ms(gen, 95)}; "
          f"after each session's first (which all make at once): p50 {ms(later, 50)}, p95 {ms(later, 95)}")
    print(f"fine-tunes ({out['finetune_steps']} steps, {out['finetune_concurrency']} at once): "
          f"{out['finetunes_ok']}/{args.finetunes} ok, wall " + ", ".join(f"{s:.1f}" for s in fts) + " s"
          + f"; highest queue place each was shown (0 = next in line, None = started at once): "
          f"{out['finetune_queue_places']}")
    print(f"peak RSS (server + models + {args.sessions + args.finetunes + 1} clients, one process): "
          f"{out['peak_rss_mb']:.0f} MB")
    c = out["checks"]
    print(f"isolation: untouched sessions equal to a fresh load: {c['untouched_equal_fresh']}/{args.sessions} "
          f"completions, {c['untouched_weights_equal_fresh']}/{args.sessions} weights; fine-tuned: "
          f"{c['finetuned_own_models']} own models, {c['finetuned_weights_differ_from_fresh']} with weights unlike "
          f"the fresh load, {c['finetuned_differ_from_fresh']}/{args.finetunes} completions unlike it, "
          f"{c['finetuned_pairs_equal']} pairs equal; pretrained copies shared: {c['base_shared']}; "
          f"a newcomer afterwards equals a fresh load: {c['newcomer_equal_fresh']}")
    for err in out["errors"][:10]:
        print("  error:", err)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30, help="sessions generating (default 30)")
    parser.add_argument("--finetunes", type=int, default=5, help="sessions fine-tuning at once (default 5)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="seconds a generating session waits between requests, drawn from 0.5-1.5x this "
                             "(default 0: each asks again as soon as it has its answer, the worst case)")
    parser.add_argument("--steps", type=int, default=30, help="steps of each fine-tune (10 to 300; default 30)")
    parser.add_argument("--checkpoint", default=os.path.join(ROOT, "checkpoints", "copilot-tiny"))
    parser.add_argument("--new", type=int, default=80, help="characters each generate request writes at most "
                        "(Try it's default: 80)")
    parser.add_argument("--requests", type=int, default=40, help="most generate requests per session")
    parser.add_argument("--max-seconds", type=float, default=240.0, help="stop generating after this")
    parser.add_argument("--attackers", action="store_true",
                        help="instead: the server as `python -m demos` runs it, --sessions students generating, "
                             "and crafted checkpoints, uploads and departing students (benchmarks/classroom_attackers.py)")
    parser.add_argument("--quiet-after", type=float, default=120.0,
                        help="with --attackers: seconds measured after the attacks (default 120)")
    parser.add_argument("--copies-mb", type=float, default=256,
                        help="with --attackers: the server's budget for fine-tuned copies (TINYTORCH_DEMO_COPIES_MB; "
                             "default 256, below what the memory attack's 30 copies of 17 MB need)")
    parser.add_argument("--control", action="store_true",
                        help="with --attackers: the same phases without attackers, for comparison")
    args = parser.parse_args()
    if not os.path.isdir(args.checkpoint):
        sys.exit(f"no checkpoint folder {args.checkpoint}")
    if args.attackers:
        import classroom_attackers
        import harness

        print(harness.machine(1, malloc="malloc: as python -m demos sets it", compare_torch=False))
        out = classroom_attackers.run(args.checkpoint, students=args.sessions, quiet_after=args.quiet_after,
                                      new_chars=args.new, copies_mb=args.copies_mb, control=args.control)
        classroom_attackers.report(out)
        sys.exit(1 if out["failures"] else 0)
    demos.configure_process()  # the malloc settings python -m demos runs with
    out = run(args.checkpoint, args.sessions, args.finetunes, args.steps, args.new, args.requests,
              max_seconds=args.max_seconds, think=args.think)
    report(out, args)
    failed = out["requests_failed"] or out["finetunes_ok"] < args.finetunes
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

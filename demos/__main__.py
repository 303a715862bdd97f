"""python -m demos [all|copilot|level1] [--checkpoint PATH_OR_REPO_ID] [--port 7860] [--host 127.0.0.1]"""

from __future__ import annotations

import argparse
import os
import signal
import socket

from . import configure_process, prefer_one_blas_thread


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demos", description="Open a tinytorch demo in the browser.")
    parser.add_argument("demo", nargs="?", default="all", choices=["all", "copilot", "level1"],
                        help="which demo to open: all (the default) is both, as tabs, the Copilot first")
    parser.add_argument("--checkpoint", help="the model to start with: a folder or a Hub repo id "
                                             "(default: the shipped checkpoint)")
    # a string default goes through `type` too: a bad GRADIO_SERVER_PORT is refused the same way
    parser.add_argument("--port", type=port_number, default=os.environ.get("GRADIO_SERVER_PORT", "7860"),
                        help="the port to serve on, 1-65535 (default: GRADIO_SERVER_PORT, else 7860)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; 127.0.0.1 (the default) is this machine only, "
                             "0.0.0.0 opens it to your network")
    return parser


def port_number(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: a whole number from 1 to 65535 "
                                         "(from --port, or else GRADIO_SERVER_PORT)")
    return port


def check_host(host: str) -> None:
    """Refuse a --host that names no address, before gradio's misleading 'Cannot find empty port'."""
    try:
        socket.getaddrinfo(host, None)
    except (socket.gaierror, UnicodeError) as err:
        raise SystemExit(f"Cannot serve on --host {host!r}: it names no address ({err}). Use 127.0.0.1 (this "
                         "machine only, the default) or 0.0.0.0 (your network).") from None


def main(argv=None) -> None:
    prefer_one_blas_thread()  # first: nothing has imported numpy yet
    args = build_parser().parse_args(argv)
    check_host(args.host)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    print("Starting the demo (importing gradio takes a few seconds)...", flush=True)
    from .settings import SettingError
    try:  # the modules read their TINYTORCH_DEMO_* settings as they load
        from .app import build_app
        from .common import close_temp_folders
        from .ui import launch_kwargs
    except SettingError as err:
        raise SystemExit(str(err)) from None

    configure_process()
    tabs = ("copilot", "level1") if args.demo == "all" else (args.demo,)
    copilot_checkpoints = None
    if args.checkpoint and args.demo in ("copilot", "all"):
        from .copilot import offered

        copilot_checkpoints = offered(args.checkpoint)
    level1_checkpoint = args.checkpoint if args.checkpoint and args.demo == "level1" else None
    demo = build_app(tabs, copilot_checkpoints, level1_checkpoint)
    # never share=True: a classroom demo stays on this machine unless --host says otherwise
    try:
        _, url, _ = demo.launch(server_name=args.host, server_port=args.port, share=False,
                                prevent_thread_lock=True, quiet=True, **launch_kwargs())
    except OSError as err:
        raise SystemExit(f"Cannot serve on {args.host}:{args.port} ({err}). Is another demo running? "
                         f"Try --port {args.port + 1} (with make: make demo PORT={args.port + 1}).") from None
    print(f"tinytorch {args.demo} demo running at {url}  (Ctrl+C to stop)", flush=True)
    # Ctrl+C and `kill` stop it alike, sessions' files removed; SIGINT is installed too, as a
    # background job of a script starts with it ignored (and would never stop on `kill -INT`)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
        close_temp_folders()


def stop(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()

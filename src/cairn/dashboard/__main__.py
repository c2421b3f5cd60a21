"""``python -m cairn.dashboard [--host H] [--port P]``: the dashboard alone, open (no accounts),
over the embedded store the environment names (CAIRN_DIR). For a shared, signed-in dashboard
run `cairn server`, which serves it at ``/``."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cairn.dashboard", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args(argv)

    import uvicorn

    from cairn.dashboard import create_dashboard_app
    from cairn.sdk.backend import EmbeddedBackend

    backend = EmbeddedBackend()
    try:
        print(f"Cairn dashboard (open, no sign-in) on http://{args.host}:{args.port}/")
        uvicorn.run(create_dashboard_app(backend), host=args.host, port=args.port)
    finally:
        backend.close()


if __name__ == "__main__":
    main()

"""``python -m linli …`` runs ``linli …`` (e.g. in a venv that is not activated, or under systemd)."""

from __future__ import annotations

from hub.cli import main

if __name__ == "__main__":
    main(prog_name="linli")

"""``python -m cryomigrate``: the same CLI as the console script."""

from cryomigrate.cli import run

run()

"""`python -m pyllmd.sim.config [--markdown]`: the simulator's usage, or its flags page."""

import sys

from pyllmd.sim.config.model import flags_markdown, sim_usage

if sys.argv[1:] == ["--markdown"]:
    sys.stdout.write(flags_markdown())
else:
    sys.stdout.write(sim_usage())

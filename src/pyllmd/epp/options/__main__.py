"""`python -m pyllmd.epp.options [--markdown]`: the EPP's usage, or its flags page."""

import sys

from pyllmd.epp.options.model import flags_markdown, help_text

if sys.argv[1:] == ["--markdown"]:
    sys.stdout.write(flags_markdown())
else:
    sys.stdout.write(help_text())

"""Lets ``python -m pyllmd`` run the same CLI as the ``pyllmd`` console script."""

from pyllmd.cli import main

raise SystemExit(main())

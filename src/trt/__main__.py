"""`python -m trt` is the same as the `trt` console script."""

from trt.cli import main

raise SystemExit(main())

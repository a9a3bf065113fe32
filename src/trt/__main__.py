"""`python -m trt` is the same as the `trt` console script."""

import gc

gc.disable()  # while the command's imports load; trt.cli.imports_settled turns it back on

from trt.cli import main  # noqa: E402

raise SystemExit(main())

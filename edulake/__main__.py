from edulake.cli import main

raise SystemExit(main())

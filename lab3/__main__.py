from lab3.cli import main

raise SystemExit(main())

from otel_fim.cli import main

raise SystemExit(main())

from otel_fim.commands import main

raise SystemExit(main())

"""``python -m bitlatent.kubeflow compile -o pipeline.yaml``."""

from bitlatent.kubeflow.cli import main

raise SystemExit(main())

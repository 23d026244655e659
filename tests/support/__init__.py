"""Code the tests share that is not a test itself: harnesses that run the real sensor and agent, a
real OTLP receiver, rule and plugin helpers. Synthetic events and processes are in tests/factories.py;
fixtures are in the conftest.py files. Nothing here imports a test module (tests/test_tree_rules.py)."""

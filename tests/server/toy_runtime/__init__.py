"""A toy third runtime used only by the tests (runtime.py); registered by one line in
tests/server/runtime_contract/conftest.py."""

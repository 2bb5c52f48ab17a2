"""Developer tools: a project-local PostgreSQL cluster for `make demo` and the test suite."""

// The Outputs module. See docs/architecture.md.

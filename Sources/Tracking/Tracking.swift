// The Tracking module. See docs/architecture.md.

// The Vision module. See docs/architecture.md.

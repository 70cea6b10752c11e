// The FPNStream module. See docs/architecture.md.

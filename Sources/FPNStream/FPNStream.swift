// The FPNStream module. See docs/design/architecture.md.

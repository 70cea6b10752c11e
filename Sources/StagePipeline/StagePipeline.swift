// The StagePipeline module. See docs/architecture.md.

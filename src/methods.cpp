// Explicit instantiations of the published method aliases and the CLI runner.

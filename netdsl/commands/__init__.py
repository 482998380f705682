"""One module per CLI subcommand: register(subparsers) adds its arguments, args.run(args) does the work."""

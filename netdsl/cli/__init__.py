"""The `netdsl` command: main.py parses arguments and dispatches; one module per subcommand registers its
arguments (register(subparsers)) and runs it (args.run(args)), calling the library and rendering with rich."""

"""The commands: argv in, exit status out; each wires a library layer to the terminal.

- `main`: `pywg` itself (keys in `wg`'s formats, and the subcommands below);
- `daemon`: `pywgd`, wireguard-go's command line;
- `up`: `pywg up CONFIG`, a tunnel from a wg-quick style file in the foreground;
- `show`: `pywg show`, the `wg show`-style status;
- `demo`, `demo_memory`: `pywg demo` (two namespaces) and `pywg demo --in-memory`;
- `coordinator`, `join`: the mesh's `pywg coordinator` and `pywg join`;
- `interop`: `pywg interop`, the conformance suite.

Nothing here is imported by the library layers below it.
"""

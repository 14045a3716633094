"""Platform targets: each sub-package registers a ``packager.target.Target`` by entry point."""

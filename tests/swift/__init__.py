"""Swift toolchain for the tests: Debian trixie's swiftc in a chroot, stub modules of the Apple/ORT APIs."""
